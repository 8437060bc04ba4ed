//! What a collector start costs a run (issue 12, "a persistent runner
//! and collector for many runs"): `N` runs with no process, each a
//! collector started, told to finish, drained and dropped, in this
//! process; first each with a thread of its own (`Collector::start`, as a
//! lone `forkscope run` does), then all on one thread
//! (`CollectorHost::start`, as `stats`, `explore` and Many runs do: since
//! h-pull one kit, read on the run's consumer's thread, no thread at all).
//! Wall time and CPU (this process, every thread) per run.

use super::cpu_ns;
use forkscope::collector::{Collector, CollectorHost};
use std::time::{Duration, Instant};

const RUNS: u32 = 2000;

fn one(c: &mut Collector) {
    c.trust(std::process::id());
    c.finish();
    // (A host's collector is read here, on this thread.)
    while c.recv_timeout(Duration::from_secs(2)).is_ok() {}
}

pub fn collector_start() -> Result<(), String> {
    let mut host = CollectorHost::new();
    for round in 0..3 {
        for shared in [false, true] {
            let (t, c0) = (Instant::now(), cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID));
            for _ in 0..RUNS {
                let mut c = if shared {
                    host.start(1 << 12, 0)
                } else {
                    Collector::start(1 << 12, 0)
                }
                .map_err(|e| format!("collector: {e}"))?;
                one(&mut c);
            }
            let wall_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS);
            let cpu_us =
                (cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - c0) as f64 / 1e3 / f64::from(RUNS);
            println!(
                "collector start to end, round {round}, {}: {wall_us:.1} µs wall, {cpu_us:.1} µs CPU a run",
                if shared {
                    "one kit for all runs, read on this thread"
                } else {
                    "a thread per run"
                }
            );
        }
    }
    Ok(())
}
