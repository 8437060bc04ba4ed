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
