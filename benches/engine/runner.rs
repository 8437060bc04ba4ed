//! The runner's figures (issue 12), side by side with their baselines:
//!
//! 3a. cost of one short-lived child: `forkscope run benches/spawn.toml`
//!    with 1,000 children (main spawns them one after the other, each does
//!    nothing, then joins them all) minus the same run with none, per
//!    child; next to a bare `fork` + `_exit` + `waitpid` loop of 1,000
//!    children in a fresh copy of this bench (the baseline), in the same minute. Every
//!    child must be seen (1,000 spawns, 1,000 hellos, 1,000 reaps);
//! 3b. explore: `forkscope explore unlocked-counter --set workers=2
//!    --set adds=2`: schedules/s, and the outcome set (counter = 2, 3, 4);
//!    with the CPU time it took, and the same with `--jobs 1` (one
//!    schedule at a time) beside it.

use crate::{REPEAT, Ran, median, run_keeping, schedules_in};
use std::path::Path;
use std::time::{Duration, Instant};

const SPAWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/spawn.toml");
const CHILDREN: u32 = 1000;

/// `fork` + `_exit(0)` + `waitpid`, `n` times, one child at a time, in a
/// fresh copy of this bench (`__bare_fork_loop N`): forking this process
/// after the other benches, with their memory still mapped, would measure
/// the copying of its page tables, not the kernel's cost of a child.
fn bare_fork_loop(n: u32) -> Result<Duration, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["__bare_fork_loop", &n.to_string()])
        .output()
        .map_err(|e| format!("bare fork loop: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("bare fork loop said {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}

/// The loop itself (in the fresh process): prints its wall time in ns.
pub fn bare_fork_loop_main(n: u32) -> Result<(), String> {
    use nix::sys::wait::waitpid;
    use nix::unistd::{ForkResult, fork};
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: the child calls only `_exit`, which is async-signal-safe,
        // so forking this process is sound.
        match unsafe { fork() } {
            // SAFETY: `_exit` is always safe to call; it never returns.
            Ok(ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(ForkResult::Parent { child }) => {
                waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
            }
            Err(e) => return Err(format!("fork: {e}")),
        }
    }
    println!("{}", start.elapsed().as_nanos());
    Ok(())
}

/// One run of benches/spawn.toml with `children` children; its wall time,
/// after checking that every child was born, seen and reaped.
fn spawn_run(children: u32) -> Result<Duration, String> {
    let set = format!("children={children}");
    let ran: Ran = run_keeping(
        &[
            "run",
            SPAWN,
            "--max-procs",
            "1024",
            "--set",
            &set,
            "--format",
            "jsonl",
        ],
        true,
    )?;
    let count = |kind: &str| {
        let needle = format!("\"kind\":\"{kind}\"");
        ran.stdout.lines().filter(|l| l.contains(&needle)).count()
    };
    let n = children as usize;
    // main's spawns; the runner's and main's hellos too; main and the
    // children reaped.
    let (spawns, hellos, reaps) = (count("spawn"), count("hello"), count("reaped"));
    if spawns != n + 1 || hellos != n + 2 || reaps != n + 1 {
        return Err(format!(
            "spawn run with {children} children: {spawns} spawns, {hellos} hellos, \
             {reaps} reaps (want {}, {}, {}); its stderr: {}; its first lines: {}",
            n + 1,
            n + 2,
            n + 1,
            ran.stderr.trim(),
            ran.stdout.lines().take(8).collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(ran.wall)
}

pub fn benches(tmp: &Path) -> Result<(), String> {
    // 3a. Short-lived children, next to the bare fork loop.
    let mut per_child = Vec::new();
    let mut bare = Vec::new();
    // Each round's ratio too: the machine's speed drifts from minute to
    // minute for both alike, and a round's two runs are seconds apart.
    let mut ratios = Vec::new();
    for _ in 0..REPEAT {
        let empty = spawn_run(0)?;
        let full = spawn_run(CHILDREN)?;
        let base = bare_fork_loop(CHILDREN)?;
        let us = (full.as_secs_f64() - empty.as_secs_f64()) * 1e6 / f64::from(CHILDREN);
        let base_us = base.as_secs_f64() * 1e6 / f64::from(CHILDREN);
        println!(
            "  children: empty run {:.3} s, {CHILDREN} children {:.3} s: {us:.0} µs/child; \
             bare fork loop {base_us:.0} µs/child ({:.2}×)",
            empty.as_secs_f64(),
            full.as_secs_f64(),
            us / base_us
        );
        per_child.push(us);
        bare.push(base_us);
        ratios.push(us / base_us);
    }
    let (us, base_us) = (median(per_child), median(bare));
    println!(
        "short-lived child (benches/spawn.toml, {CHILDREN} children minus none): median \
         {us:.0} µs/child; bare fork+_exit+waitpid loop: {base_us:.0} µs/child ({:.2}×, \
         the rounds' own ratios: median {:.2}×; goal ≤ 1.5×)",
        us / base_us,
        median(ratios)
    );

    // 3b. Explore: as a user runs it (twice as many schedules at a time
    // as there are CPUs, up to 8), and one at a time (`--jobs 1`, the cost of
    // a schedule alone), with the CPU time of everything it started.
    let out_dir = tmp.join("explore");
    let mut rates = Vec::new();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut alone_walls = Vec::new();
    let mut alone_cpus = Vec::new();
    for _ in 0..REPEAT {
        for jobs in [None, Some("1")] {
            let _ = std::fs::remove_dir_all(&out_dir);
            let mut args = vec![
                "explore",
                "unlocked-counter",
                "--set",
                "workers=2",
                "--set",
                "adds=2",
                "--out",
                out_dir.to_str().ok_or("temp path")?,
            ];
            if let Some(j) = jobs {
                args.extend(["--jobs", j]);
            }
            let cpu_before = children_cpu_s();
            let ran = run_keeping(&args, true)?;
            let cpu = children_cpu_s() - cpu_before;
            let wall = ran.wall;
            let schedules = schedules_in(&ran.first)
                .ok_or_else(|| format!("cannot read explore's summary: {:?}", ran.first))?;
            // The same outcome set, every time.
            let outcomes: Vec<&str> = ran
                .stdout
                .lines()
                .skip(1)
                .filter_map(|l| l.trim().split(':').next())
                .collect();
            if outcomes != ["counter = 2", "counter = 3", "counter = 4"] {
                return Err(format!("explore found other outcomes: {outcomes:?}"));
            }
            let rate = schedules as f64 / wall.as_secs_f64();
            println!(
                "  explore{}: {schedules} schedules in {:.3} s = {rate:.0} schedules/s \
                 ({:.2} ms each), CPU {cpu:.3} s ({:.2} ms each): {}",
                if jobs.is_some() { " --jobs 1" } else { "" },
                wall.as_secs_f64(),
                1e3 / rate,
                cpu * 1e3 / schedules as f64,
                ran.first
            );
            if jobs.is_some() {
                alone_walls.push(wall.as_secs_f64());
                alone_cpus.push(cpu);
            } else {
                rates.push(rate);
                walls.push(wall.as_secs_f64());
                cpus.push(cpu);
            }
        }
    }
    println!(
        "explore unlocked-counter --set workers=2 --set adds=2: median {:.3} s, {:.0} \
         schedules/s (goal ≤ 0.3 s, ≥ 500 schedules/s), CPU {:.3} s; one at a time \
         (--jobs 1): {:.3} s, CPU {:.3} s",
        median(walls),
        median(rates),
        median(cpus),
        median(alone_walls),
        median(alone_cpus)
    );
    Ok(())
}

/// User + system CPU time of our children that ended and were waited for
/// (and of theirs), in seconds.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(u.ru_utime) + s(u.ru_stime)
}
