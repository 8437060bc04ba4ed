//! Exhaustive exploration of a small scenario: run it once per distinct
//! interleaving of its observable steps (steps nobody else can see are not
//! permuted: they commute with everything), depth first, each run a real
//! gated run that replays a prefix of choices and then takes the first
//! enabled process at every later choice.

use super::outcome::Outcome;
use super::{Driven, Lost, Scheduler, Sleeper, Then, final_values, independent};
use std::collections::BTreeMap;

/// A branch still to try: the prefix to replay and the sleep set after it.
type Branch = (Vec<String>, Vec<Sleeper>);

/// What every explored schedule led to.
#[derive(Debug, Default)]
pub struct Explored {
    /// Each distinct outcome: how many schedules reach it, and the first
    /// schedule found that does.
    pub outcomes: BTreeMap<Outcome, (u64, Vec<String>)>,
    /// Per outcome: the schedules reaching it in which a writer reported a
    /// lost update (a `race` event).
    pub with_lost_updates: BTreeMap<Outcome, u64>,
    pub runs: u64,
    /// False when `max_schedules` stopped the search early.
    pub complete: bool,
    /// Runs that did not follow their prefix (should not happen).
    pub diverged: u64,
    /// Runs stopped early because they would only repeat other branches.
    pub pruned: u64,
}

/// Explores with `run` (which starts a real gated run with the scheduler
/// it is given) until every schedule is tried or `max_schedules` ran.
pub fn explore<E>(
    max_schedules: u64,
    run: impl FnMut(&mut Scheduler) -> Result<Driven, E>,
) -> Result<Explored, E> {
    explore_with_progress(max_schedules, run, |_, _| {})
}

/// [`explore`], telling `progress` after every run what was found so far
/// and how many branches are still to be tried.
pub fn explore_with_progress<E>(
    max_schedules: u64,
    mut run: impl FnMut(&mut Scheduler) -> Result<Driven, E>,
    mut progress: impl FnMut(&Explored, usize),
) -> Result<Explored, E> {
    let mut out = Explored {
        complete: true,
        ..Default::default()
    };
    let mut stack: Vec<Branch> = vec![(Vec::new(), Vec::new())];
    while let Some((prefix, sleep)) = stack.pop() {
        if out.runs >= max_schedules {
            out.complete = false;
            break;
        }
        let mut sched = Scheduler::new(prefix.clone(), Then::First, true);
        sched.sleep = sleep;
        let d = run(&mut sched)?;
        out.runs += 1;
        out.tally(&d, &prefix, &mut stack);
        progress(&out, stack.len());
    }
    Ok(out)
}

/// [`explore_with_progress`] with up to `jobs` runs going on at a time,
/// reporting exactly what it reports (the same runs counted, the same
/// outcomes, the same first schedule of each, in the same order).
///
/// Every branch pushed on the stack is run sooner or later (the search
/// only ever pops), and a gated run is determined by its branch alone:
/// so the branches nearest the top of the stack can run ahead, each on a
/// runner of its own (`run`'s first argument: which one, `0..jobs`), while
/// their results are counted in the order the search pops them. Only
/// runs started ahead of `max_schedules` are wasted (not counted).
pub fn explore_parallel<E: Send>(
    max_schedules: u64,
    jobs: usize,
    run: impl Fn(usize, &mut Scheduler) -> Result<Driven, E> + Sync,
    mut progress: impl FnMut(&Explored, usize),
) -> Result<Explored, E> {
    use std::collections::{HashMap, HashSet};
    let jobs = jobs.max(1);
    let mut out = Explored {
        complete: true,
        ..Default::default()
    };
    // Each branch with a number: the results come back by it.
    let mut stack: Vec<(u64, Branch)> = vec![(0, (Vec::new(), Vec::new()))];
    let mut next_id = 1u64;
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<(u64, Branch)>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(u64, Result<Driven, E>)>();
    std::thread::scope(|scope| {
        for worker in 0..jobs {
            let (job_rx, done_tx, run) = (job_rx.clone(), done_tx.clone(), &run);
            scope.spawn(move || {
                for (id, (prefix, sleep)) in job_rx {
                    let mut sched = Scheduler::new(prefix, Then::First, true);
                    sched.sleep = sleep;
                    if done_tx.send((id, run(worker, &mut sched))).is_err() {
                        break;
                    }
                }
            });
        }
        drop((job_rx, done_tx));
        // Started, result not counted yet.
        let mut started: HashSet<u64> = HashSet::new();
        let mut results: HashMap<u64, Result<Driven, E>> = HashMap::new();
        let mut going = 0usize;
        // Sends the next branches to the idle runners: `first` if it is
        // not started yet, then the top of the stack, as long as not too
        // many results wait to be counted.
        let feed = |first: Option<(u64, &Branch)>,
                    stack: &[(u64, Branch)],
                    started: &mut HashSet<u64>,
                    going: &mut usize,
                    waiting: usize| {
            let ahead = stack.iter().rev().map(|(i, b)| (*i, b));
            for (i, (p, s)) in first.into_iter().chain(ahead) {
                if *going >= jobs || (first.map(|f| f.0) != Some(i) && waiting >= 4 * jobs) {
                    break;
                }
                if started.insert(i) {
                    *going += 1;
                    let _ = job_tx.send((i, (p.clone(), s.clone())));
                }
            }
        };
        let result: Result<(), Option<E>> = loop {
            let Some((id, branch)) = stack.pop() else {
                break Ok(());
            };
            if out.runs >= max_schedules {
                out.complete = false;
                break Ok(());
            }
            feed(
                Some((id, &branch)),
                &stack,
                &mut started,
                &mut going,
                results.len(),
            );
            let d = loop {
                if let Some(d) = results.remove(&id) {
                    break Some(d);
                }
                // Every worker gone while we hold job_tx: one panicked
                // (the scope passes the panic on).
                let Ok((i, d)) = done_rx.recv() else {
                    break None;
                };
                going -= 1;
                results.insert(i, d);
                // Keep the runners busy while we wait (this one first:
                // they may all have been busy when it was popped).
                feed(
                    Some((id, &branch)),
                    &stack,
                    &mut started,
                    &mut going,
                    results.len(),
                );
            };
            let d = match d {
                Some(Ok(d)) => d,
                Some(Err(e)) => break Err(Some(e)),
                None => break Err(None),
            };
            started.remove(&id);
            out.runs += 1;
            let mut pushed = Vec::new();
            out.tally(&d, &branch.0, &mut pushed);
            for b in pushed {
                stack.push((next_id, b));
                next_id += 1;
            }
            progress(&out, stack.len());
        };
        // The runs still going end (they are not counted); the workers
        // see the end of the jobs and stop.
        drop(job_tx);
        match result {
            Ok(()) => Ok(out),
            Err(Some(e)) => Err(e),
            Err(None) => Ok(out),
        }
    })
}

impl Explored {
    /// Counts one run and pushes the branches it opens.
    fn tally(&mut self, d: &Driven, prefix: &[String], stack: &mut Vec<Branch>) {
        let out = self;
        if d.pruned {
            out.pruned += 1;
            return;
        }
        if d.diverged.is_some() || d.timed_out {
            out.diverged += 1;
            return;
        }
        let outcome = Outcome::new(&final_values(&d.world), d.deadlock.is_some());
        if Lost::of(&d.world).total > 0 {
            *out.with_lost_updates.entry(outcome.clone()).or_default() += 1;
        }
        let entry = out
            .outcomes
            .entry(outcome)
            .or_insert_with(|| (0, d.schedule.clone()));
        entry.0 += 1;
        // Every later choice point: try each other process there, with
        // the ones tried before it asleep (sleep sets): an order that only
        // swaps independent steps is not tried twice.
        for cp in d.choices.iter().rev().filter(|cp| cp.at >= prefix.len()) {
            for i in (1..cp.enabled.len()).rev() {
                let (alt, alt_touches) = &cp.enabled[i];
                let asleep: Vec<Sleeper> = cp
                    .sleep
                    .iter()
                    .chain(&cp.enabled[..i])
                    .filter(|(_, t)| independent(t, alt_touches))
                    .cloned()
                    .collect();
                let mut next = d.schedule[..cp.at].to_vec();
                next.push(alt.clone());
                stack.push((next, asleep));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{Candidate, Decision, choice_point};
    use crate::protocol::{Body, ResourceKind, Value, test_event};

    /// Processes, each a list of steps, each step what it touches.
    type Model = Vec<(&'static str, Vec<Vec<String>>)>;

    /// Two or three processes: each writes `x` (they conflict) and
    /// touches something of its own (independent of everybody).
    fn model(procs: &[&'static str], writes: usize) -> Model {
        procs
            .iter()
            .map(|id| {
                let mut steps = Vec::new();
                for _ in 0..writes {
                    steps.push(vec![format!("w:own-{id}")]);
                    steps.push(vec!["w:x".to_string()]);
                }
                (*id, steps)
            })
            .collect()
    }

    /// A run of `model` chosen by `sched`, recorded as `drive` does (its
    /// choice points by the same `choice_point`);
    /// `x` ends as the id of its last writer.
    fn fake_run(model: &Model, sched: &mut Scheduler) -> Driven {
        let mut pos = vec![0usize; model.len()];
        let mut out = Driven::default();
        let mut last = String::new();
        loop {
            let candidates: Vec<Candidate> = model
                .iter()
                .zip(&pos)
                .filter(|((_, steps), p)| **p < steps.len())
                .map(|((id, steps), p)| Candidate {
                    id: id.to_string(),
                    action: String::new(),
                    local: false,
                    touches: steps[*p].clone(),
                    enabled: true,
                })
                .collect();
            let sleep_before = sched.sleep.clone();
            match sched.decide(&candidates) {
                Decision::Go(id) => {
                    if let Some(c) =
                        choice_point(&candidates, sleep_before, &id, out.schedule.len())
                    {
                        out.choices.push(c);
                    }
                    let i = model.iter().position(|(p, _)| *p == id).unwrap();
                    if model[i].1[pos[i]] == ["w:x"] {
                        last = id.clone();
                    }
                    pos[i] += 1;
                    out.schedule.push(id);
                }
                Decision::Prune => {
                    out.pruned = true;
                    break;
                }
                Decision::Diverged(id) => {
                    out.diverged = Some(id);
                    break;
                }
                Decision::Wait | Decision::Stuck => break,
            }
        }
        let declare = Body::Resource {
            res: ResourceKind::Value,
            name: "x".into(),
            value: Some(Value::Str(String::new())),
            size: None,
            ends: Vec::new(),
            duplex: false,
        };
        out.world.apply(&test_event(1, "runner", declare));
        let write = Body::Write {
            name: "x".into(),
            value: Value::Str(last),
            private: false,
        };
        out.world.apply(&test_event(2, "main", write));
        out
    }

    /// Everything explore reports, comparable.
    fn report(x: &Explored) -> String {
        format!(
            "{:?} {:?} runs={} complete={} diverged={} pruned={}",
            x.outcomes, x.with_lost_updates, x.runs, x.complete, x.diverged, x.pruned
        )
    }

    #[test]
    fn running_schedules_at_a_time_reports_exactly_what_one_at_a_time_does() {
        for (procs, writes) in [(&["a", "b"][..], 2), (&["a", "b", "c"][..], 1)] {
            let m = model(procs, writes);
            for max in [2, 4, 5000] {
                let one = explore(max, |s| Ok::<_, ()>(fake_run(&m, s))).unwrap();
                if max == 5000 {
                    // The model exercises what matters: every writer can
                    // be last, and sleep sets cut branches short.
                    assert!(one.complete && one.pruned > 0, "{}", report(&one));
                    assert_eq!(one.outcomes.len(), procs.len(), "{}", report(&one));
                } else {
                    assert!(!one.complete && one.runs == max, "{}", report(&one));
                }
                for jobs in 1..=4 {
                    let mut seen = Vec::new();
                    let many = explore_parallel(
                        max,
                        jobs,
                        |_, s| Ok::<_, ()>(fake_run(&m, s)),
                        |so_far, _| seen.push(so_far.runs),
                    )
                    .unwrap();
                    assert_eq!(
                        report(&many),
                        report(&one),
                        "{procs:?} max {max} jobs {jobs}"
                    );
                    // Progress after every counted run, in order.
                    assert_eq!(seen, (1..=one.runs).collect::<Vec<_>>());
                }
            }
        }
    }

    #[test]
    fn an_error_ends_the_search_as_one_at_a_time_does() {
        let m = model(&["a", "b"], 2);
        // Fails on the fourth branch the search pops, whichever runs first.
        let failing = |s: &mut Scheduler| {
            let d = fake_run(&m, s);
            if s.prefix.len() == 3 && s.prefix[..2] == ["a", "a"] {
                Err(format!("failed at {:?}", s.prefix))
            } else {
                Ok(d)
            }
        };
        let one = explore(5000, failing).unwrap_err();
        for jobs in 1..=4 {
            let many = explore_parallel(5000, jobs, |_, s| failing(s), |_, _| {});
            assert_eq!(many.unwrap_err(), one, "jobs {jobs}");
        }
    }
}
