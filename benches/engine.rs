//! Engine throughput, through the real `forkscope` binary:
//!
//!     cargo bench --bench engine
//!
//! 1. free run: `forkscope run benches/stress.toml --set period_ms=0 …
//!    --format jsonl`: 200 workers write as fast as they can; events/s the
//!    collector and the CLI sustain (JSON lines read / wall time);
//! 2. gated run: `forkscope run unlocked-counter --schedule seeded` with
//!    500 and 2000 adds; the cost of one gated step is the difference in
//!    wall time over the difference in steps (start-up cancels out);
//! 3. the runner (`engine/runner.rs`): the cost of a short-lived child
//!    next to a bare fork loop, and `explore unlocked-counter --set
//!    workers=2 --set adds=2`: schedules/s.
//!
//! 4. the collector (`engine/collector.rs`): CPU of `forkscope run` at
//!    ~10 000 events/s, sustained ingest beside a raw pipe, event → model
//!    latency.
//!
//! Each is run 5 times; the median is reported. Arguments pick parts:
//! `cargo bench --bench engine -- collector` runs only the collector's
//! (`-- latency`, `-- cpu`, `-- ingest`, `-- parse`: one part of it;
//! `-- latency rounds=9 paths=pull,direct,floor-one`: more rounds, some
//! of its cases).
//! `FORKSCOPE_BEFORE=/path/to/forkscope` measures an older build side by
//! side (collector figures). `-- collector_start`: what starting and
//! ending a collector costs a run, a thread per run beside one thread for
//! all runs (`engine/serve.rs`).

// A crate root looks for `collector.rs` beside itself, where cargo would
// take it for a bench of its own: the path says where it is.
#[path = "engine/collector.rs"]
mod collector;
#[path = "engine/floor.rs"]
mod floor;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_forkscope");
const STRESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/stress.toml");
const REPEAT: usize = 5;

fn main() -> ExitCode {
    // The baseline fork loop runs in a fresh, small copy of this binary.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__bare_fork_loop")
    {
        let n = std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        return match runner::bare_fork_loop_main(n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("engine: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // The floor under the latency figure runs in a fresh process.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__latency_floor")
    {
        let slice_ns = std::env::args()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let spread = std::env::args().nth(3).is_some_and(|s| s == "spread");
        let one = std::env::args().nth(4).is_some_and(|s| s == "one");
        return match floor::floor_main(slice_ns, spread, one) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("engine: latency floor: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // The latency bench starts a `Session`: this binary is its runner.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        let code = forkscope::runner::runner_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine: {e}");
            ExitCode::FAILURE
        }
    }
}

#[path = "engine/runner.rs"]
mod runner;
#[path = "engine/serve.rs"]
mod serve;

/// What one `forkscope` command did.
struct Ran {
    wall: Duration,
    /// All it printed on stdout (only if asked: see [`run_keeping`]).
    stdout: String,
    /// Lines it printed on stdout.
    lines: usize,
    /// Its first stdout line.
    first: String,
    stderr: String,
}

/// Runs `forkscope ARGS`, reading its stdout line by line as it comes.
fn run(args: &[&str]) -> Result<Ran, String> {
    run_keeping(args, false)
}

/// [`run`], keeping all of stdout in [`Ran::stdout`] when `keep`.
fn run_keeping(args: &[&str], keep: bool) -> Result<Ran, String> {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {BIN}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = 0;
    let mut first = String::new();
    let mut all = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if lines == 0 {
            first = line.clone();
        }
        if keep {
            all.push_str(&line);
            all.push('\n');
        }
        lines += 1;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("forkscope {} failed: {stderr}", args.join(" ")));
    }
    Ok(Ran {
        wall,
        stdout: all,
        lines,
        first,
        stderr,
    })
}

/// CPU time used so far by the calling thread or this process (`clock`:
/// `CLOCK_THREAD_CPUTIME_ID` or `CLOCK_PROCESS_CPUTIME_ID`), in
/// nanoseconds: what it used, however loaded the machine is.
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn bench() -> Result<(), String> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // `collector cpu` etc.: parts of the collector's bench.
    let wants = |part: &str| {
        only.is_empty()
            || only.iter().any(|a| a == part)
            || (part == "collector"
                && only
                    .iter()
                    .any(|a| ["cpu", "ingest", "latency"].contains(&a.as_str())))
    };
    if wants("collector") {
        collector::benches()?;
    }
    if wants("collector_start") {
        serve::collector_start()?;
    }
    if !wants("engine") {
        return Ok(());
    }
    let tmp = scratch_dir()?;
    let result = benches(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn benches(tmp: &Path) -> Result<(), String> {
    // 1. Free run, as fast as the workers go.
    let mut rates = Vec::new();
    for _ in 0..REPEAT {
        let Ran {
            wall,
            lines,
            stderr,
            ..
        } = run(&[
            "run",
            STRESS,
            "--max-procs",
            "256",
            "--set",
            "period_ms=0",
            "--set",
            "writes=1000",
            "--set",
            "spread=0",
            "--format",
            "jsonl",
        ])?;
        if !stderr.trim().is_empty() {
            println!("  (forkscope said: {})", stderr.trim());
        }
        let rate = lines as f64 / wall.as_secs_f64();
        println!(
            "  free run: {lines} events in {:.2} s = {rate:.0} events/s",
            wall.as_secs_f64()
        );
        rates.push(rate);
    }
    println!(
        "free run (200 workers × 1000 writes, no sleep, --format jsonl): median {:.0} events/s",
        median(rates)
    );

    // 2. Gated steps: the slope between a short and a long seeded run.
    let schedule = tmp.join("run.schedule");
    let gated = |adds: u32| -> Result<(Duration, usize), String> {
        let adds = format!("adds={adds}");
        let wall = run(&[
            "run",
            "unlocked-counter",
            "--schedule",
            "seeded",
            "--seed",
            "1",
            "--set",
            "workers=2",
            "--set",
            &adds,
            "--time-scale",
            "0",
            "--save-schedule",
            schedule.to_str().ok_or("temp path")?,
            "--format",
            "jsonl",
        ])?
        .wall;
        let text = std::fs::read_to_string(&schedule).map_err(|e| e.to_string())?;
        let steps = text.lines().filter(|l| !l.starts_with('#')).count();
        Ok((wall, steps))
    };
    let mut per_step = Vec::new();
    for _ in 0..REPEAT {
        let (w1, s1) = gated(500)?;
        let (w2, s2) = gated(2000)?;
        let us = (w2.as_secs_f64() - w1.as_secs_f64()) * 1e6 / (s2 - s1) as f64;
        println!(
            "  gated: {s1} steps in {:.3} s, {s2} steps in {:.3} s: {us:.1} µs/step",
            w1.as_secs_f64(),
            w2.as_secs_f64()
        );
        per_step.push(us);
    }
    let us = median(per_step);
    println!(
        "gated run (unlocked-counter, 2 workers, --schedule seeded --time-scale 0): median \
         {us:.1} µs/step ({:.0} steps/s)",
        1e6 / us
    );

    // 3. The runner (benches/engine/runner.rs).
    runner::benches(tmp)
}

/// "… 34 schedules run to the end (99 more cut short as repeats) …" → 133:
/// every schedule started, whole or cut short, is a run.
fn schedules_in(summary: &str) -> Option<usize> {
    let number_before = |word: &str| -> Option<usize> {
        let at = summary.find(word)?;
        summary[..at]
            .split_whitespace()
            .last()?
            .trim_start_matches('(')
            .parse()
            .ok()
    };
    let whole = number_before(" schedules run to the end")?;
    let cut = number_before(" more cut short").unwrap_or(0);
    Some(whole + cut)
}

fn scratch_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("forkscope-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
