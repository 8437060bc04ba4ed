//! `forkscope stats` and `forkscope explore`: many real runs of one
//! scenario, summarized by outcome (final shared values, deadlock or not).

use super::progress::Progress;
use super::run::{Prepared, catch_interrupts, interrupted, prepare, write_schedule};
use super::{ExploreArgs, Format, ScheduleMode, StatsArgs};
use crate::lab::outcome::Outcome;
use crate::lab::{self, Driven, Lost, Scheduler, Then, final_values};
use crate::session::RunnerHost;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `println!` that ends quietly when stdout is closed (`| head -1`):
/// nobody reads the rest, and a closed pipe is no reason to panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// One runner for all the runs (see [`RunnerHost`]).
type Host = Arc<Mutex<RunnerHost>>;

fn gated_run(p: &Prepared, host: &Host, sched: &mut Scheduler) -> anyhow::Result<Driven> {
    let mut session = p.start_on(host)?;
    Ok(lab::run_gated(
        &mut session,
        sched,
        p.opts.limits.timeout_s,
        interrupted,
    ))
}

fn free_run(p: &Prepared, host: &Host) -> anyhow::Result<(Outcome, Lost)> {
    let mut session = p.start_on(host)?;
    Ok(lab::run_free_counted(
        &mut session,
        p.opts.limits.timeout_s,
        interrupted,
    ))
}

/// Runs that ended one way, and the lost updates their writers reported.
#[derive(Default)]
struct Tally {
    runs: u64,
    /// Runs with at least one `race` event.
    runs_with_lost: u64,
    lost: Lost,
}

pub fn stats(args: &StatsArgs) -> i32 {
    let gated = args.schedule == ScheduleMode::Seeded;
    let mut p = match prepare(&args.common, gated) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    if args.runs == 0 {
        eprintln!("forkscope: --runs must be at least 1");
        return 2;
    }
    catch_interrupts();
    let host = match RunnerHost::start() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("forkscope: {e:#}");
            return 1;
        }
    };
    let base_seed = p.opts.seed;
    let mut histogram: BTreeMap<Outcome, Tally> = BTreeMap::new();
    let progress = Progress::runs(args.format, u64::from(args.runs));
    for i in 0..args.runs {
        if interrupted() {
            progress.finish();
            eprintln!("forkscope: interrupted after {i} runs");
            return 1;
        }
        p.opts.seed = base_seed.wrapping_add(u64::from(i));
        let outcome = if gated {
            let mut sched = Scheduler::new(Vec::new(), Then::Seeded(p.opts.seed), true);
            gated_run(&p, &host, &mut sched).map(|d| {
                (
                    Outcome::new(&final_values(&d.world), d.deadlock.is_some()),
                    Lost::of(&d.world),
                )
            })
        } else {
            free_run(&p, &host)
        };
        match outcome {
            Ok((o, lost)) => {
                let t = histogram.entry(o).or_default();
                t.runs += 1;
                t.runs_with_lost += u64::from(lost.total > 0);
                t.lost.add(lost);
                progress.step(u64::from(i) + 1, || {
                    super::progress::outcomes(histogram.len())
                });
            }
            Err(e) => {
                progress.finish();
                eprintln!("forkscope: {e:#}");
                return 1;
            }
        }
    }
    progress.finish();
    match args.format {
        Format::Jsonl => {
            for (o, t) in &histogram {
                say!(
                    "{{\"outcome\":{},\"deadlock\":{},\"runs\":{},\"runs_with_lost_updates\":{},\"erasing_writes\":{},\"lost\":{}}}",
                    o.values_json(),
                    o.deadlock,
                    t.runs,
                    t.runs_with_lost,
                    t.lost.writes,
                    t.lost.total
                );
            }
        }
        Format::Text => {
            let how = if gated {
                format!(
                    "seeded schedules, seeds {base_seed}..{}",
                    base_seed.wrapping_add(u64::from(args.runs) - 1)
                )
            } else {
                "scheduled by the operating system".into()
            };
            say!("{}: {} runs ({how})", p.loaded.scenario.name, args.runs);
            let width = histogram.keys().map(|o| o.text().len()).max().unwrap_or(0);
            let most = histogram.values().map(|t| t.runs).max().unwrap_or(1).max(1);
            for (o, t) in &histogram {
                let n = t.runs;
                let bar = "#".repeat(((n * 40).div_ceil(most)) as usize);
                say!("  {:width$}  {bar} {n}", o.text());
            }
            let mut all = Lost::default();
            let mut runs_with_lost = 0;
            for t in histogram.values() {
                all.add(t.lost);
                runs_with_lost += t.runs_with_lost;
            }
            if all.total > 0 {
                say!(
                    "  lost updates: {} updates lost, by {} writes that erased others' work, in {runs_with_lost} of {} runs (the writers' race events)",
                    all.total,
                    all.writes,
                    args.runs
                );
            } else if all.writes > 0 {
                say!(
                    "  lost updates: none in the end ({} writes erased updates that later writes put back)",
                    all.writes
                );
            } else {
                say!("  lost updates: none (no race event in any run)");
            }
        }
    }
    0
}

/// How many of explore's runs go on at a time: `--jobs`, else twice the
/// number of CPUs, at most 8. A gated run is mostly its processes waiting
/// for each other (one step at a time), so one run per CPU leaves them
/// idle between steps; the CPU time is the same whatever the number.
fn explore_jobs(asked: Option<u32>) -> usize {
    asked.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| (2 * n.get()).min(8)),
        |n| n.max(1) as usize,
    )
}

pub fn explore(args: &ExploreArgs) -> i32 {
    let p = match prepare(&args.common, true) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    // Our own directory: a fresh private one (a predictable name in /tmp
    // could be another user's, full of symlinks), or the one asked for if
    // it is ours.
    let dir = match &args.out {
        Some(out) => crate::safe_fs::own_dir(out).map(|()| out.clone()),
        None => crate::safe_fs::private_dir(
            &std::env::temp_dir(),
            &format!("forkscope-explore-{}", p.loaded.scenario.name),
        ),
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            let shown = args
                .out
                .as_deref()
                .unwrap_or(std::path::Path::new("$TMPDIR"));
            eprintln!("forkscope: cannot use {}: {e}", shown.display());
            return 2;
        }
    };
    catch_interrupts();
    let jobs = explore_jobs(args.jobs);
    // A runner for each run at a time.
    let mut hosts = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        match RunnerHost::start() {
            Ok(h) => hosts.push(h),
            Err(e) => {
                eprintln!("forkscope: {e:#}");
                return 1;
            }
        }
    }
    let progress = Progress::schedules(args.format);
    let explored = lab::explore::explore_parallel(
        args.max_schedules,
        jobs,
        |worker, sched| {
            if interrupted() {
                anyhow::bail!("interrupted");
            }
            gated_run(&p, &hosts[worker], sched)
        },
        |so_far, left| {
            progress.step(so_far.runs, || {
                format!(
                    "{}, {left} branches left to try",
                    super::progress::outcomes(so_far.outcomes.len())
                )
            })
        },
    );
    progress.finish();
    let explored = match explored {
        Ok(x) => x,
        Err(e) => {
            eprintln!("forkscope: {e:#}");
            return 1;
        }
    };
    let name = &p.loaded.scenario.name;
    if args.format == Format::Text {
        say!(
            "{name}: {} schedules run to the end ({} more cut short as repeats), {} distinct outcomes{}",
            explored.runs - explored.pruned,
            explored.pruned,
            explored.outcomes.len(),
            if explored.complete {
                " (every interleaving of the observable steps)"
            } else {
                " (stopped at --max-schedules: there may be more)"
            }
        );
    }
    for (i, (o, (n, schedule))) in explored.outcomes.iter().enumerate() {
        let file = dir.join(format!("{name}-{}.schedule", i + 1));
        if let Err(e) = write_schedule(&file, &p, schedule) {
            eprintln!("forkscope: cannot write {}: {e}", file.display());
            return 1;
        }
        match args.format {
            Format::Jsonl => say!(
                "{{\"outcome\":{},\"deadlock\":{},\"schedules\":{n},\"schedules_with_lost_updates\":{},\"schedule_file\":{}}}",
                o.values_json(),
                o.deadlock,
                explored.with_lost_updates.get(o).copied().unwrap_or(0),
                serde_json::to_string(&file.display().to_string()).unwrap_or_default()
            ),
            Format::Text => {
                let lost = explored.with_lost_updates.get(o).copied().unwrap_or(0);
                let lost = if lost > 0 {
                    format!(" ({lost} with a lost update)")
                } else {
                    String::new()
                };
                say!(
                    "  {}: {n} schedules{lost}, e.g. {}",
                    o.text(),
                    file.display()
                )
            }
        }
    }
    if explored.diverged > 0 {
        eprintln!(
            "forkscope: {} runs did not follow their schedule and were left out",
            explored.diverged
        );
    }
    0
}
