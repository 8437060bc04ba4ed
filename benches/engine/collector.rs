//! The collector's figures (issue 12), each beside its baseline:
//!
//! 1. CPU of `forkscope run` itself (its own utime + stime from
//!    `/proc/PID/stat`, scenario processes not included; its `collector`
//!    thread on its own) at ~10 000 events/s: `benches/stress.toml`
//!    defaults, `--format jsonl`;
//! 2. sustained ingest: 200 workers writing without sleep
//!    (`period_ms=0 writes=1000`, 600 000 events), `--format jsonl`; beside
//!    it, 200 forked writers writing the same number of event-sized lines
//!    into one pipe that one reader reads (the raw pipe), and the cost of
//!    parsing one event line;
//! 3. event → model latency: a `Session` in this process (the bench
//!    binary is its own runner), every event applied to a `World`; for each
//!    event of the load, `now − t_ns` right after `World::apply` (the
//!    process stamped `t_ns` just before it sent the event). At ~10 000
//!    events/s, with the reorder window the app uses (40 ms: events are held
//!    that long on purpose) and without it (as gated runs do). Without
//!    it also by a consumer thread on the kernel's default slices (as
//!    before h-latency, `src/sched.rs`), and with the model applied on
//!    the collector's thread itself (`Reading::Direct`: one wake-up
//!    per batch instead of two), and with the consumer's thread reading
//!    (`Reading::Pull`, as the race lab does: one wake-up too),
//!    interleaved run by run; and for
//!    each run, how often
//!    the collector thread and the bench's thread were woken and preempted
//!    per 1 000 events; beside them, in each round, the floor under the
//!    figure (`floor.rs`): the same load read by two bare threads (and by
//!    one: one wake-up);
//! 4. `parse`: the CPU time of parsing one line of each kind the flood
//!    sends (`sleep`, `wake`, `write`), as the collector parses it
//!    (`Event::from_line`).
//!
//! Every run checks that the events of the load that came out (`sleep`,
//! `wake`, `write`) are exactly the `3 × workers × writes` the processes
//! sent, and that the collector dropped none.

use super::{BIN, STRESS, cpu_ns, median};
use forkscope::protocol::{Body, Event, now_ns};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPEAT: usize = 5;
const WORKERS: usize = 200;

/// All three, or those named among the arguments (`cpu`, `ingest`,
/// `latency`: `cargo bench --bench engine -- collector latency`).
pub fn benches() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let some = ["cpu", "ingest", "latency", "parse"]
        .iter()
        .any(|p| args.iter().any(|a| a == p));
    let wants = |part: &str| !some || args.iter().any(|a| a == part);
    if wants("cpu") {
        cpu_at_10k()?;
    }
    if wants("ingest") {
        ingest()?;
    }
    if wants("latency") {
        latency()?;
    }
    if wants("parse") {
        parse()?;
    }
    Ok(())
}

/// The lines one iteration of the flood sends (as the probe writes them).
fn flood_lines(seq: u64) -> [String; 3] {
    let (t, p, pid) = (
        1_000_000_000_000u64 + seq * 1_000,
        seq % 200 + 1,
        100_000 + seq % 200,
    );
    [
        format!(
            "{{\"t_ns\":{t},\"seq\":{},\"proc\":\"main.{p}\",\"pid\":{pid},\"line\":6,\
             \"kind\":\"sleep\",\"duration_ms\":0.0}}",
            3 * seq
        ),
        format!(
            "{{\"t_ns\":{},\"seq\":{},\"proc\":\"main.{p}\",\"pid\":{pid},\"line\":6,\
             \"kind\":\"wake\"}}",
            t + 300,
            3 * seq + 1
        ),
        format!(
            "{{\"t_ns\":{},\"seq\":{},\"proc\":\"main.{p}\",\"pid\":{pid},\"line\":7,\
             \"kind\":\"write\",\"name\":\"v\",\"value\":{}}}",
            t + 600,
            3 * seq + 2,
            seq % 1000
        ),
    ]
}

/// The collector's parse of one line (`Event::from_line`), per kind of the
/// flood's lines: 5 rounds of 100 000 lines each, the median of the CPU
/// time this thread used per line (wall time swings with the machine's
/// load; CPU time much less).
fn parse() -> Result<(), String> {
    let lines: Vec<[String; 3]> = (0..100_000).map(flood_lines).collect();
    for (k, kind) in ["sleep", "wake", "write"].iter().enumerate() {
        let mut ns = Vec::new();
        for _ in 0..REPEAT {
            let t0 = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            let mut ok = 0usize;
            for l in &lines {
                if let Ok(e) = Event::from_line(l[k].as_bytes()) {
                    ok += usize::from(e.body.kind() == *kind);
                }
            }
            let used = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(t0);
            if ok != lines.len() {
                return Err(format!("{kind} lines do not parse"));
            }
            ns.push(used as f64 / lines.len() as f64);
        }
        println!(
            "parsing one `{kind}` line into an Event: median {:.0} ns of CPU",
            median(ns)
        );
    }
    Ok(())
}

/// What one `forkscope run … --format jsonl` did, watched from outside.
struct Watched {
    wall: Duration,
    /// Load events (sleep, wake, write) it printed.
    load: usize,
    /// From the first to the last load event read.
    load_span: Duration,
    /// CPU seconds of the forkscope process (all its threads) and of its
    /// collector thread, at the last look before it exited.
    cpu_s: f64,
    collector_cpu_s: f64,
    stderr: String,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// utime + stime (fields 14, 15) of a `/proc/…/stat`, in ticks.
fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn collector_thread_ticks(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in dir.flatten() {
        let path = t.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "collector" {
            return stat_ticks(&format!("{}/stat", path.display()));
        }
    }
    None
}

fn watch_run(bin: &str, sets: &[&str]) -> Result<Watched, String> {
    let mut args = vec!["run", STRESS, "--max-procs", "256", "--format", "jsonl"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The output is counted as it comes, a big read at a time, with no
    // line made (as the raw pipe's reader counts its lines): this reader
    // shares the two cores with what it measures.
    let reader = std::thread::spawn(move || {
        let kinds = [
            memchr::memmem::Finder::new(b"\"kind\":\"sleep\""),
            memchr::memmem::Finder::new(b"\"kind\":\"wake\""),
            memchr::memmem::Finder::new(b"\"kind\":\"write\""),
        ];
        let mut stdout = stdout;
        let mut load = 0usize;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        // A line cut by a read waits here for its end.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let got = &buf[..n];
            let Some(end) = memchr::memrchr(b'\n', got) else {
                carry.extend_from_slice(got);
                continue;
            };
            // Each event line names its kind once (a quote inside a
            // string is escaped): one match is one load event.
            let count =
                |bytes: &[u8]| -> usize { kinds.iter().map(|k| k.find_iter(bytes).count()).sum() };
            // The line a read cut is whole with this read's first line.
            let whole_from = if carry.is_empty() {
                0
            } else {
                let first_end = memchr::memchr(b'\n', got).unwrap_or(end);
                carry.extend_from_slice(&got[..=first_end]);
                first_end + 1
            };
            let here = count(&carry) + count(&got[whole_from..=end]);
            carry.clear();
            carry.extend_from_slice(&got[end + 1..]);
            if here > 0 {
                load += here;
                last = Instant::now();
                first.get_or_insert(last);
            }
        }
        (load, first.map_or(Duration::ZERO, |f| last - f))
    });
    let hz = clock_ticks();
    let (mut cpu, mut coll) = (0u64, 0u64);
    loop {
        if let Some(t) = stat_ticks(&format!("/proc/{pid}/stat")) {
            cpu = cpu.max(t);
        }
        if let Some(t) = collector_thread_ticks(pid) {
            coll = coll.max(t);
        }
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = start.elapsed();
    let (load, load_span) = reader.join().map_err(|_| "reader panicked")?;
    let stderr = err_reader.join().map_err(|_| "reader panicked")?;
    Ok(Watched {
        wall,
        load,
        load_span,
        cpu_s: cpu as f64 / hz,
        collector_cpu_s: coll as f64 / hz,
        stderr,
    })
}

/// Every event the processes sent came out, and nothing was dropped.
fn check_all(w: &Watched, expected: usize) -> Result<(), String> {
    if w.load != expected {
        return Err(format!(
            "{} load events came out of {expected} sent; forkscope said: {}",
            w.load,
            w.stderr.trim()
        ));
    }
    if w.stderr.contains("dropped") {
        return Err(format!("forkscope dropped events: {}", w.stderr.trim()));
    }
    Ok(())
}

/// The binary to compare with (`FORKSCOPE_BEFORE=/path/to/forkscope`,
/// e.g. a release build of an older commit), measured side by side.
fn binaries() -> Vec<(String, String)> {
    let mut bins = vec![("this".to_string(), BIN.to_string())];
    if let Ok(before) = std::env::var("FORKSCOPE_BEFORE")
        && !before.is_empty()
    {
        bins.push(("before".to_string(), before));
    }
    bins
}

fn cpu_at_10k() -> Result<(), String> {
    let expected = 3 * WORKERS * 170;
    for (name, bin) in binaries() {
        let mut pct = Vec::new();
        let mut coll_pct = Vec::new();
        for _ in 0..REPEAT {
            let w = watch_run(&bin, &[])?;
            match check_all(&w, expected) {
                Err(e) if name != "this" => println!("  [{name}] LOST: {e}"),
                r => r?,
            }
            let wall = w.wall.as_secs_f64();
            let p = 100.0 * w.cpu_s / wall;
            let c = 100.0 * w.collector_cpu_s / wall;
            println!(
                "  [{name}] ~10k events/s: {} events in {wall:.2} s; forkscope run used \
                 {:.2} s CPU = {p:.1} % of a core (collector thread {c:.1} %)",
                w.load, w.cpu_s
            );
            pct.push(p);
            coll_pct.push(c);
        }
        println!(
            "[{name}] CPU of `forkscope run` at ~10 000 events/s (stress.toml defaults, jsonl): \
             median {:.1} % of a core (collector thread {:.1} %) (of {expected} events each)",
            median(pct),
            median(coll_pct)
        );
    }
    Ok(())
}

/// A line of the size and shape of a load event.
fn sample_line(seq: u64) -> String {
    format!(
        "{{\"t_ns\":{},\"seq\":{seq},\"proc\":\"main.{}\",\"pid\":{},\"line\":6,\
         \"kind\":\"sleep\",\"duration_ms\":0.0}}\n",
        1_000_000_000_000u64 + seq * 1_000,
        seq % 200 + 1,
        100_000 + seq % 200
    )
}

/// 200 forked writers, `lines` lines each, one `write` per line, into one
/// pipe; one reader. Lines per second from the first fork to the last read.
fn raw_pipe(writers: usize, lines: usize) -> Result<f64, String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut pids = Vec::new();
    for k in 0..writers {
        let text: Vec<String> = (0..lines)
            .map(|i| sample_line((k * lines + i) as u64))
            .collect();
        // SAFETY: this bench is single-threaded here (the reader threads of
        // earlier runs have ended); the child only writes and `_exit`s.
        match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
            nix::unistd::ForkResult::Child => {
                for line in &text {
                    let _ = nix::unistd::write(&w, line.as_bytes());
                }
                // SAFETY: `_exit` ends the child without running the parent's
                // destructors.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => pids.push(child),
        }
    }
    drop(w);
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        match nix::unistd::read(&r, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let wall = start.elapsed();
    for p in pids {
        let _ = nix::sys::wait::waitpid(p, None);
    }
    if got != writers * lines {
        return Err(format!("raw pipe: {got} lines of {}", writers * lines));
    }
    Ok(got as f64 / wall.as_secs_f64())
}

fn ingest() -> Result<(), String> {
    let expected = 3 * WORKERS * 1000;
    let mut base = Vec::new();
    for _ in 0..REPEAT {
        let rate = raw_pipe(WORKERS, 3000)?;
        println!("  raw pipe: 200 writers × 3000 lines: {rate:.0} lines/s");
        base.push(rate);
    }
    // Parsing one line into an `Event` as the collector does, on one core.
    let lines: Vec<String> = (0..100_000).map(sample_line).collect();
    let t = Instant::now();
    let mut ok = 0;
    for l in &lines {
        if Event::from_line(l.trim_end().as_bytes()).is_ok() {
            ok += 1;
        }
    }
    let parse_ns = t.elapsed().as_nanos() as f64 / lines.len() as f64;
    if ok != lines.len() {
        return Err("sample lines do not parse".into());
    }
    for (name, bin) in binaries() {
        let mut rates = Vec::new();
        let mut spans = Vec::new();
        let mut cpus = Vec::new();
        let mut collector_us = Vec::new();
        for _ in 0..REPEAT {
            let w = watch_run(&bin, &["period_ms=0", "writes=1000", "spread=0"])?;
            // An older build may lose events: said, not fatal.
            match check_all(&w, expected) {
                Err(e) if name != "this" => println!("  [{name}] LOST: {e}"),
                r => r?,
            }
            let rate = w.load as f64 / w.wall.as_secs_f64();
            let span = w.load as f64 / w.load_span.as_secs_f64().max(1e-9);
            let cpu = 100.0 * w.cpu_s / w.wall.as_secs_f64();
            // The collector thread's CPU per event (load disturbs it less
            // than wall time).
            let coll_us = 1e6 * w.collector_cpu_s / w.load.max(1) as f64;
            println!(
                "  [{name}] flood: {} events in {:.2} s = {rate:.0} events/s over the whole \
                 command, {span:.0} events/s from the first to the last; forkscope run: {cpu:.0} % \
                 of a core; collector thread {coll_us:.2} µs of CPU per event",
                w.load,
                w.wall.as_secs_f64()
            );
            collector_us.push(coll_us);
            rates.push(rate);
            spans.push(span);
            cpus.push(cpu);
        }
        println!(
            "[{name}] sustained ingest (200 workers × 1000 writes, no sleep, jsonl): median \
             {:.0} events/s whole command, {:.0} events/s first to last event; forkscope run \
             {:.0} % of a core, collector thread {:.2} µs of CPU per event (of {expected} \
             events each)",
            median(rates),
            median(spans),
            median(cpus),
            median(collector_us)
        );
    }
    println!(
        "baseline: raw pipe, 200 writers × 3000 event-sized lines, one reader: median {:.0} \
         lines/s; parsing one event line: {parse_ns:.0} ns ({:.1} M/s on one core)",
        median(base),
        1e3 / parse_ns
    );
    Ok(())
}

/// Percentile `p` (0–100) of sorted `v`.
fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() - 1) as f64 * p / 100.0).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A thread of this process.
#[derive(Clone, Copy)]
enum Thread<'a> {
    /// The calling one.
    This,
    /// The one whose `comm` this is.
    Named(&'a str),
}

/// Context switches of a thread of this process so far, from
/// `/proc/self/task/TID/status`: (voluntary: it slept and was woken,
/// involuntary: it was preempted while it could run), and its CPU time
/// in ns (`schedstat`'s first field).
fn switches(thread: Thread) -> Option<(u64, u64, u64)> {
    let dir = match thread {
        Thread::This => std::path::PathBuf::from("/proc/thread-self"),
        Thread::Named(name) => std::fs::read_dir("/proc/self/task")
            .ok()?
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })?
            .path(),
    };
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let cpu_ns = std::fs::read_to_string(dir.join("schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let field = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
        cpu_ns,
    ))
}

/// `after - before` of two [`switches`], per 1 000 events (and the CPU
/// time, per event).
fn per_1000(
    before: Option<(u64, u64, u64)>,
    after: Option<(u64, u64, u64)>,
    events: usize,
) -> String {
    match (before, after) {
        (Some(b), Some(a)) => {
            let k = 1000.0 / events.max(1) as f64;
            format!(
                "{:.0} wake-ups, {:.0} preemptions, CPU {:.2} µs/event",
                a.0.saturating_sub(b.0) as f64 * k,
                a.1.saturating_sub(b.1) as f64 * k,
                a.2.saturating_sub(b.2) as f64 * k / 1e6
            )
        }
        _ => "not known".to_string(),
    }
}

/// What the model of one latency run took in.
struct Applied {
    world: forkscope::model::World,
    /// `now − t_ns` of each load event, right after it was applied.
    lat_ns: Vec<u64>,
    /// Context switches of the collector thread and of the bench's own
    /// thread, when the last load event was applied.
    coll_after: Option<(u64, u64, u64)>,
    cons_after: Option<(u64, u64, u64)>,
}

impl Applied {
    /// Applies a batch; `collector`: the collector thread, `consumer`:
    /// the bench's own thread (the one that started the session).
    fn batch(&mut self, batch: &[Event], expected: usize, collector: Thread, consumer: Thread) {
        for e in batch {
            self.world.apply(e);
            if matches!(
                e.body,
                Body::Sleep { .. } | Body::Wake {} | Body::Write { .. }
            ) {
                self.lat_ns.push(now_ns().saturating_sub(e.t_ns));
            }
        }
        if self.lat_ns.len() == expected && self.coll_after.is_none() {
            self.coll_after = switches(collector);
            self.cons_after = switches(consumer);
        }
    }
}

/// Who applies the model in a latency run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// The bench's thread, fed by the collector thread through the channel.
    Channel,
    /// The collector's thread (`Reading::Direct`).
    Direct,
    /// The bench's thread, which reads too (`Reading::Pull`).
    Pull,
}

/// The floor under the latency figure (`floor.rs`), in a fresh process:
/// p50, p99 and max in ns. `one`: one wake-up (the reader thread takes
/// the stamps itself).
fn latency_floor(slice_ns: u64, spread: bool, one: bool) -> Result<(u64, u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let shape = if spread { "spread" } else { "as forked" };
    let hops = if one { "one" } else { "two" };
    let out = Command::new(exe)
        .args(["__latency_floor", &slice_ns.to_string(), shape, hops])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<u64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match (out.status.success(), figures.as_slice()) {
        (true, &[p50, p99, max, _]) => Ok((p50, p99, max)),
        _ => Err(format!("latency floor: {} ({text})", out.status)),
    }
}

/// How many interleaved rounds the latency bench runs (`rounds=N`; 5:
/// one round's p99 moves by tens of µs with how soon the VM wakes an idle
/// vCPU, and the median of five is steadier than that of three).
fn latency_rounds() -> usize {
    std::env::args()
        .find_map(|a| a.strip_prefix("rounds=")?.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5)
}

/// The latency cases and floors asked for (`paths=pull,direct,floor-one`),
/// or None: all of them.
fn picked_paths() -> Option<Vec<String>> {
    std::env::args().find_map(|a| {
        a.strip_prefix("paths=")
            .map(|p| p.split(',').map(str::to_string).collect())
    })
}

fn latency() -> Result<(), String> {
    use forkscope::cli::load_target;
    use forkscope::model::World;
    use forkscope::scenario::{self, limits::Limits};
    use forkscope::session::{Reading, RunOptions, Session};
    let loaded = load_target(STRESS).map_err(|e| e.to_string())?;
    let limits = Limits {
        max_procs: 256,
        ..Limits::default()
    };
    // `spread = 1` (the default): the load comes evenly; `spread = 0`:
    // each worker starts when main has spawned it, so the load comes in
    // bursts as fast as main starts processes (the load before the fourth
    // round, docs/PERFORMANCE.md).
    let mut params = Vec::new();
    for spread in ["1", "0"] {
        let sets = [("spread".to_string(), spread.to_string())];
        let p = scenario::resolve_params(&loaded.scenario, &sets).map_err(|e| e.to_string())?;
        scenario::limits::check(&loaded.scenario, &p, &limits).map_err(|e| e.to_string())?;
        params.push(p);
    }
    let expected = 3 * WORKERS * 170;
    use forkscope::sched::{EVENT_THREAD_SLICE_NS, set_event_thread_slice_ns};
    // (what, its name for `paths=`, reorder window, slice the collector
    // and consumer ask for, which load: 0 spread, 1 as spawned, who
    // applies the model)
    use How::{Channel, Direct, Pull};
    let cases = [
        (
            "reorder window 0, the consumer's thread reads (pull), model applied (as the lab: gated runs, explore, Many runs)",
            "pull",
            0,
            EVENT_THREAD_SLICE_NS,
            0,
            Pull,
        ),
        (
            "reorder window 0, a consumer thread fed through the channel",
            "channel",
            0,
            EVENT_THREAD_SLICE_NS,
            0,
            Channel,
        ),
        (
            "reorder window 0, the model applied on the collector's thread (one wake-up)",
            "direct",
            0,
            EVENT_THREAD_SLICE_NS,
            0,
            Direct,
        ),
        (
            "reorder window 0, the kernel's default slices (before h-latency)",
            "default-slices",
            0,
            0,
            0,
            Channel,
        ),
        (
            "reorder window 40 ms (the app's)",
            "window",
            forkscope::collector::REORDER_WINDOW_NS,
            EVENT_THREAD_SLICE_NS,
            0,
            Channel,
        ),
        (
            "reorder window 0, the load in bursts (spread=0, as before the fourth round)",
            "bursts",
            0,
            EVENT_THREAD_SLICE_NS,
            1,
            Channel,
        ),
    ];
    // The floor (`floor.rs`): the same load read by bare threads.
    // (what, its name for `paths=`, slice, spread, one wake-up)
    let floors = [
        ("spread", "floor-two", EVENT_THREAD_SLICE_NS, true, false),
        (
            "in bursts, as forked",
            "floor-bursts",
            EVENT_THREAD_SLICE_NS,
            false,
            false,
        ),
        (
            "spread, one wake-up (the reader thread is the consumer)",
            "floor-one",
            EVENT_THREAD_SLICE_NS,
            true,
            true,
        ),
    ];
    let picked = picked_paths();
    let wants = |name: &str| picked.as_ref().is_none_or(|p| p.iter().any(|n| n == name));
    let mut floor_p50s = vec![Vec::new(); floors.len()];
    let mut floor_p99s = vec![Vec::new(); floors.len()];
    let mut p50s = vec![Vec::new(); cases.len()];
    let mut p99s = vec![Vec::new(); cases.len()];
    // Interleaved: one run of each case per round, so that a change in
    // the machine's load meets every case alike.
    for _ in 0..latency_rounds() {
        for (k, &(what, name, window_ns, slice_ns, load, how)) in cases.iter().enumerate() {
            if !wants(name) {
                continue;
            }
            set_event_thread_slice_ns(slice_ns);
            // This thread is the consumer: as `forkscope run`'s does.
            forkscope::sched::event_thread();
            let opts = RunOptions {
                time_scale: 1.0,
                seed: 1,
                limits,
                gated: false,
                stdout: None,
                python: None,
            };
            let fresh = || Applied {
                world: World::new(),
                lat_ns: Vec::with_capacity(expected),
                coll_after: None,
                cons_after: None,
            };
            let mut a = fresh();
            // The model on the collector's thread: the sink applies each
            // batch there (it is the consumer, `Thread::This` in it).
            let on_collector = Arc::new(Mutex::new(fresh()));
            let reading = match how {
                Direct => {
                    let into = on_collector.clone();
                    let sink: forkscope::collector::Sink = Box::new(move |batch: Vec<Event>| {
                        if let Ok(mut a) = into.lock() {
                            a.batch(&batch, expected, Thread::This, Thread::This);
                        }
                    });
                    Reading::Direct(sink)
                }
                Pull => Reading::Pull,
                Channel => Reading::Thread,
            };
            let mut session = Session::start_with_window(
                &loaded.text,
                &loaded.origin,
                params[load].clone(),
                &opts,
                window_ns,
                reading,
            )
            .map_err(|e| format!("{e:#}"))?;
            let events = session.collector.events.clone();
            // Wake-ups of the collector thread and of this consumer while
            // the load's events come (up to the last one applied).
            let coll_before = switches(if how == Pull {
                Thread::This
            } else {
                Thread::Named("collector")
            });
            let cons_before = switches(Thread::This);
            // The consumer's thread reads: this one is the collector,
            // an event at a time, as the lab takes them.
            loop {
                if how == Pull {
                    match session.recv_event(Duration::from_millis(20)) {
                        Ok(e) => a.batch(&[e], expected, Thread::This, Thread::This),
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                        Err(_) => {
                            let _ = session.poll_exit();
                        }
                    }
                    continue;
                }
                // (Nothing comes here with the model on the collector's
                // thread: the stream's end only.)
                match events.recv_batch_timeout(Duration::from_millis(20)) {
                    Ok(batch) => {
                        a.batch(&batch, expected, Thread::Named("collector"), Thread::This);
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    Err(_) => {}
                }
                let _ = session.poll_exit();
            }
            if how == Direct {
                let mut took = on_collector.lock().map_err(|e| e.to_string())?;
                a = std::mem::replace(&mut *took, fresh());
            }
            let dropped = session
                .collector
                .stats
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed);
            if a.lat_ns.len() != expected || dropped > 0 {
                return Err(format!(
                    "latency run: {} load events applied of {expected} sent, {dropped} dropped",
                    a.lat_ns.len()
                ));
            }
            let lat_ns = &mut a.lat_ns;
            lat_ns.sort_unstable();
            let (p50, p99, max) = (pct(lat_ns, 50.0), pct(lat_ns, 99.0), pct(lat_ns, 100.0));
            println!(
                "  latency, {what}: {} events applied; p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; \
                 per 1000 events: collector thread {}, bench thread {}",
                lat_ns.len(),
                p50 as f64 / 1e3,
                p99 as f64 / 1e3,
                max as f64 / 1e3,
                per_1000(coll_before, a.coll_after, expected),
                if how == Pull {
                    "(the same thread: it reads and applies)".to_string()
                } else if how == Direct {
                    "(no consumer thread: the collector's is)".to_string()
                } else {
                    per_1000(cons_before, a.cons_after, expected)
                },
            );
            p50s[k].push(p50);
            p99s[k].push(p99);
        }
        for (k, &(what, name, slice_ns, spread, one)) in floors.iter().enumerate() {
            if !wants(name) {
                continue;
            }
            let (p50, p99, max) = latency_floor(slice_ns, spread, one)?;
            println!(
                "  latency floor, {what}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                p50 as f64 / 1e3,
                p99 as f64 / 1e3,
                max as f64 / 1e3
            );
            floor_p50s[k].push(p50);
            floor_p99s[k].push(p99);
        }
    }
    set_event_thread_slice_ns(EVENT_THREAD_SLICE_NS);
    for (k, &(what, _, _, _, one)) in floors.iter().enumerate() {
        if floor_p99s[k].is_empty() {
            continue;
        }
        let path = if one {
            "bare pipes → reader thread"
        } else {
            "bare pipes → reader thread → consumer thread"
        };
        println!(
            "latency floor at the same load ({path}), \
             {what}: median p50 {:.1} µs, p99 {:.1} µs",
            median(floor_p50s[k].clone()) as f64 / 1e3,
            median(floor_p99s[k].clone()) as f64 / 1e3
        );
    }
    for (k, (what, _, _, _, _, _)) in cases.iter().enumerate() {
        if p50s[k].is_empty() {
            continue;
        }
        println!(
            "event → model latency at ~10 000 events/s, {what}: median p50 {:.1} µs, p99 {:.1} µs \
             (rounds' p99: {}); all {expected} events applied, none dropped",
            median(p50s[k].clone()) as f64 / 1e3,
            median(p99s[k].clone()) as f64 / 1e3,
            p99s[k]
                .iter()
                .map(|p| format!("{:.1}", *p as f64 / 1e3))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(())
}
