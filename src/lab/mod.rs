//! The race lab: gated runs, where every step of every scenario process
//! waits for `go` and a scheduler (a seed, a saved schedule, an explorer
//! or the user) chooses who goes next. The processes are still real and
//! the race is real; only the order of their steps is chosen.
//!
//! [`Gatekeeper`] follows the event stream and knows who is waiting and
//! whether everyone is waiting (only then may the next one go: that is
//! what makes a schedule repeatable). [`Scheduler`] picks. [`drive`] runs a
//! whole gated session with them. `deadlock` explains a run where nobody
//! can go; `outcome` summarizes how a run ended (for `stats`, `explore`).

pub mod deadlock;
pub mod explore;
pub mod outcome;
pub mod schedule;

use crate::model::{ProcState, World};
use crate::protocol::{Body, Event, RUNNER_ID, Value, now_ns};
use crate::rng::SplitMix64;
use crate::session::Session;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a waiting process announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub action: String,
    pub local: bool,
    /// What the action needs to go through.
    pub waits_for: Option<String>,
    /// Its last try found that unavailable.
    pub retry: bool,
    pub touches: Vec<String>,
}

/// One process that could be told to go now.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub action: String,
    pub local: bool,
    pub touches: Vec<String>,
    /// False while what it waits for cannot have changed.
    pub enabled: bool,
}

/// Follows a gated run's events: who waits for `go`, who is moving.
#[derive(Debug, Default, Clone)]
pub struct Gatekeeper {
    waiting: BTreeMap<String, Waiting>,
    /// Told to go; its next announcement (or its end) is not in yet.
    moving: Option<String>,
    /// Children announced by a spawn whose first announcement is not in yet.
    unborn: BTreeSet<String>,
    /// Processes that announced something or ended (a spawn event can
    /// arrive after its child's first announcement).
    seen: BTreeSet<String>,
    /// Came back blocked right after a go, with nothing happening since:
    /// not worth another try until someone else moves.
    stuck: BTreeSet<String>,
    /// Threads (each gated on its own, by name) and their process.
    threads: BTreeMap<String, String>,
}

impl Gatekeeper {
    pub fn observe(&mut self, e: &Event) {
        // A thread waits and goes on its own: it is named for itself.
        let me = e.thread.as_deref().unwrap_or(e.proc_id.as_str());
        match &e.body {
            // A program (`exec`) and Python's own helper processes (they
            // never take a step of the program) are not waited for.
            Body::Spawn { child, role, .. }
                if !matches!(role.as_str(), "exec" | "resource_tracker" | "forkserver")
                    && !self.seen.contains(child) =>
            {
                self.unborn.insert(child.clone());
            }
            Body::ThreadStart { .. } => {
                self.threads.insert(me.to_string(), e.proc_id.clone());
                if !self.seen.contains(me) {
                    self.unborn.insert(me.to_string());
                }
            }
            Body::ThreadEnd { .. } => self.gone(me),
            Body::Pending {
                action,
                local,
                waits_for,
                retry,
                touches,
            } => {
                self.seen.insert(me.to_string());
                self.unborn.remove(me);
                if self.moving.as_deref() == Some(me) {
                    self.moving = None;
                    if *retry {
                        self.stuck.insert(me.to_string());
                    } else {
                        self.stuck.clear();
                    }
                }
                self.waiting.insert(
                    me.to_string(),
                    Waiting {
                        action: action.clone(),
                        local: *local,
                        waits_for: waits_for.clone(),
                        retry: *retry,
                        touches: touches.clone(),
                    },
                );
            }
            Body::Go {} => {
                self.waiting.remove(me);
            }
            // A helper of a traced Python program (a Manager's server, an
            // executor's worker, a library thread): never waits for go.
            Body::Free {} => {
                self.seen.insert(me.to_string());
                self.unborn.remove(me);
                self.waiting.remove(me);
                if self.moving.as_deref() == Some(me) {
                    self.moving = None;
                }
            }
            // A child that has not announced a step yet and execs is a
            // traced Python program on its way (`forkscope trace`: a
            // `spawn` child, or `main` itself): it connects again and
            // announces its first step then. (A scenario's `exec` child
            // has role `exec` and is never waited for.)
            Body::Exec { .. } if self.unborn.contains(me) => {}
            Body::Exit { .. } | Body::Reaped { .. } | Body::Exec { .. } => {
                self.gone(me);
                // Its threads end with it.
                let threads: Vec<String> = self
                    .threads
                    .iter()
                    .filter(|(_, p)| p.as_str() == me)
                    .map(|(t, _)| t.clone())
                    .collect();
                for t in threads {
                    self.gone(&t);
                }
            }
            _ => {}
        }
    }

    /// A process or thread ended: it will never wait again.
    fn gone(&mut self, me: &str) {
        self.seen.insert(me.to_string());
        self.unborn.remove(me);
        self.waiting.remove(me);
        self.stuck.remove(me);
        if self.moving.as_deref() == Some(me) {
            self.moving = None;
            self.stuck.clear();
        }
    }

    /// Is every process either waiting for `go` or gone?
    pub fn settled(&self) -> bool {
        self.moving.is_none() && self.unborn.is_empty()
    }

    /// Who could go, in logical-id order.
    pub fn candidates(&self, world: &World) -> Vec<Candidate> {
        self.waiting
            .iter()
            .filter(|(id, _)| {
                world
                    .process(id)
                    .is_none_or(|p| p.is_alive() && p.state != ProcState::Stopped)
            })
            .map(|(id, w)| Candidate {
                id: id.clone(),
                action: w.action.clone(),
                local: w.local,
                touches: w.touches.clone(),
                enabled: !self.stuck.contains(id)
                    && w.waits_for
                        .as_deref()
                        .is_none_or(|b| can_wake(world, id, b)),
            })
            .collect()
    }

    pub fn waiting(&self) -> &BTreeMap<String, Waiting> {
        &self.waiting
    }

    /// Notes that `id` was told to go.
    pub fn went(&mut self, id: &str) {
        self.moving = Some(id.to_string());
        self.waiting.remove(id);
    }

    /// Tells `id` to go and notes it; if it died between its announcement
    /// and now, notes its end instead of waiting for it.
    pub fn release(&mut self, session: &Session, id: &str) {
        self.went(id);
        if !session.go(id) {
            self.observe(&Event {
                t_ns: now_ns(),
                seq: 0,
                proc_id: id.to_string(),
                pid: 0,
                line: None,
                thread: None,
                tid: None,
                body: Body::Exit {
                    code: None,
                    signal: None,
                },
            });
        }
    }
}

/// Could the thing `id` is blocked on have changed, judging by the model?
/// (A wrong "yes" costs one more try; the process itself has the last word.)
pub fn can_wake(world: &World, id: &str, blocked: &str) -> bool {
    let (kind, what) = blocked.split_once(':').unwrap_or((blocked, ""));
    match kind {
        "lock" => world.locks.get(what).is_none_or(|l| l.holder.is_none()),
        "queue-get" => world.channels.get(what).is_some_and(|c| c.depth() > 0),
        "queue-put" => world.channels.get(what).is_none_or(|c| !c.is_full()),
        "recv" => world.channels.values().any(|c| {
            c.ends.iter().any(|e| e == what)
                && c.in_flight
                    .iter()
                    .any(|m| m.end.as_deref() != Some(what) || !c.duplex)
        }),
        "join" => world
            .process(what)
            .is_none_or(|p| !p.is_alive() || p.exit.is_some()),
        "wait" => world
            .children(id)
            .iter()
            .any(|c| c.exit.is_some() || !c.is_alive()),
        "pool-tasks" => world
            .channels
            .get(&format!("{what}.tasks"))
            .is_some_and(|c| c.depth() > 0),
        "pool-results" => world
            .channels
            .get(&format!("{what}.results"))
            .is_some_and(|c| c.depth() > 0),
        _ => true,
    }
}

/// How the next process is chosen once the fixed part is used up.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// A seeded random choice among the enabled processes.
    Seeded(u64),
    /// The first enabled process by logical id.
    First,
    /// Nobody: wait for [`Scheduler::push`] (step mode).
    Manual,
}

/// A process whose next action need not be tried here, with what that
/// action touches (see [`Scheduler::sleep`]).
pub type Sleeper = (String, Vec<String>);

/// Do two actions commute (touch nothing in common that one of them
/// changes)?
pub fn independent(a: &[String], b: &[String]) -> bool {
    let conflict = |x: &str, y: &str| {
        if x == "*" || y == "*" {
            return true;
        }
        match (x.split_once(':'), y.split_once(':')) {
            (Some((kx @ ("r" | "w"), rx)), Some((ky @ ("r" | "w"), ry))) => {
                rx == ry && (kx == "w" || ky == "w")
            }
            _ => x == y,
        }
    };
    !a.iter().any(|x| b.iter().any(|y| conflict(x, y)))
}

/// Picks who goes next: first the ids of `prefix` in order, then by `then`.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub prefix: Vec<String>,
    pub pos: usize,
    pub then: Then,
    /// Let steps nobody can observe go at once, without making a choice of
    /// them: they commute with everything, so no order of them matters.
    pub auto_local: bool,
    /// After the prefix: processes not to choose until something that does
    /// not commute with their next action has happened (exploration's
    /// sleep sets: those orders were tried on another branch already).
    pub sleep: Vec<Sleeper>,
    /// Local steps let go at once in a row while a process with an
    /// observable step waited (see [`LOCAL_RUN_MAX`]).
    local_run: usize,
    rng: SplitMix64,
}

/// How many local steps in a row may go at once while another process's
/// observable step waits, in a seeded run or step by step. A process that
/// only ever computes, prints and sleeps (a ticker's endless loop) would
/// otherwise go forever, and the waiting one never: then the next go is
/// chosen among the observable steps, as if the local ones had come to an
/// end. Not when exploring (`Then::First`): there, which of a long run of
/// local steps' end and a waiting observable step comes first is a choice
/// the search must keep (cutting the run short would lose the orders in
/// which the runner's next observable step comes first), so an endless
/// loop of local steps still runs until the run's timeout.
pub const LOCAL_RUN_MAX: usize = 32;

/// What the scheduler says.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Go(String),
    /// Nothing to choose yet (step mode waits for the user).
    Wait,
    /// Processes wait and none can go.
    Stuck,
    /// The saved schedule names a process that cannot go now.
    Diverged(String),
    /// Every process that could go sleeps: this branch only repeats
    /// orders explored elsewhere.
    Prune,
}

impl Scheduler {
    pub fn new(prefix: Vec<String>, then: Then, auto_local: bool) -> Scheduler {
        let rng = SplitMix64(match then {
            Then::Seeded(seed) => seed ^ 0x5eed_5eed_5eed_5eed,
            _ => 0,
        });
        Scheduler {
            prefix,
            pos: 0,
            then,
            auto_local,
            sleep: Vec::new(),
            local_run: 0,
            rng,
        }
    }

    /// Step mode: the user chose `id`.
    pub fn push(&mut self, id: &str) {
        self.prefix.push(id.to_string());
    }

    pub fn decide(&mut self, candidates: &[Candidate]) -> Decision {
        let enabled: Vec<&Candidate> = candidates.iter().filter(|c| c.enabled).collect();
        if enabled.is_empty() {
            return if candidates.is_empty() {
                Decision::Wait
            } else {
                Decision::Stuck
            };
        }
        if let Some(want) = self.prefix.get(self.pos) {
            self.pos += 1;
            self.local_run = 0;
            return if enabled.iter().any(|c| &c.id == want) {
                Decision::Go(want.clone())
            } else {
                Decision::Diverged(want.clone())
            };
        }
        let awake: Vec<&Candidate> = enabled
            .into_iter()
            .filter(|c| !self.sleep.iter().any(|(id, _)| *id == c.id))
            .collect();
        if awake.is_empty() {
            return Decision::Prune;
        }
        // Someone whose step others can observe waits while local steps go.
        let bypassing = awake.iter().any(|c| !c.local);
        let starved =
            bypassing && self.local_run >= LOCAL_RUN_MAX && !matches!(self.then, Then::First);
        let chosen = if self.auto_local
            && !starved
            && let Some(c) = awake.iter().copied().find(|c| c.local)
        {
            self.local_run = if bypassing { self.local_run + 1 } else { 0 };
            c
        } else {
            let pool: Vec<&Candidate> = if starved {
                awake.iter().copied().filter(|c| !c.local).collect()
            } else {
                awake
            };
            match self.then {
                Then::Manual => return Decision::Wait,
                Then::First => {
                    self.local_run = 0;
                    pool[0]
                }
                Then::Seeded(_) => {
                    self.local_run = 0;
                    let i = (self.rng.next_u64() % pool.len() as u64) as usize;
                    pool[i]
                }
            }
        };
        self.sleep
            .retain(|(_, touches)| independent(touches, &chosen.touches));
        Decision::Go(chosen.id.clone())
    }
}

/// A place where the schedule had a real choice: the enabled processes
/// whose next step others can observe, and which one went.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicePoint {
    /// Index into the schedule of the go that was chosen here.
    pub at: usize,
    /// The processes that could go (and were not asleep), with what their
    /// next action touches; the first is the one that went.
    pub enabled: Vec<Sleeper>,
    /// The sleep set before the choice.
    pub sleep: Vec<Sleeper>,
}

/// The choice `chosen` made among `candidates` at schedule index `at`
/// (with `sleep_before`, the sleep set before it), if it was a real one:
/// another enabled process not asleep whose next step others can observe
/// could have gone instead, and the chosen one's step is observable too.
pub(crate) fn choice_point(
    candidates: &[Candidate],
    sleep_before: Vec<Sleeper>,
    chosen: &str,
    at: usize,
) -> Option<ChoicePoint> {
    if candidates.iter().any(|c| c.id == chosen && c.local) {
        return None;
    }
    let mut observable: Vec<Sleeper> = candidates
        .iter()
        .filter(|c| c.enabled && !c.local)
        .filter(|c| !sleep_before.iter().any(|(s, _)| *s == c.id))
        .map(|c| (c.id.clone(), c.touches.clone()))
        .collect();
    if observable.len() < 2 {
        return None;
    }
    // The chosen one first.
    if let Some(i) = observable.iter().position(|(c, _)| c == chosen) {
        let first = observable.remove(i);
        observable.insert(0, first);
    }
    Some(ChoicePoint {
        at,
        enabled: observable,
        sleep: sleep_before,
    })
}

/// How a driven run ended.
#[derive(Debug, Default)]
pub struct Driven {
    pub world: World,
    /// Every `go`, in order: replaying it repeats the run.
    pub schedule: Vec<String>,
    pub choices: Vec<ChoicePoint>,
    pub deadlock: Option<String>,
    /// The runner's exit code (main's), if it ended by itself.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Stopped because `stop_early` said so (Ctrl-C, a cancel button).
    pub interrupted: bool,
    pub diverged: Option<String>,
    /// Stopped early: the rest would only repeat other branches.
    pub pruned: bool,
}

/// Runs a gated session to its end, choosing with `sched`. Every event
/// (and the `deadlock` event found on the way) goes to `on_event`.
/// A deadlock stops the run; so do `timeout` and `stop_early` (asked, like
/// the timeout, on every pass, however fast events come).
pub fn drive(
    session: &mut Session,
    sched: &mut Scheduler,
    timeout: Duration,
    stop_early: impl Fn() -> bool,
    mut on_event: impl FnMut(&Event),
) -> Driven {
    let mut out = Driven::default();
    let mut gk = Gatekeeper::default();
    let events = session.collector.events.clone();
    let started = Instant::now();
    let mut stopping = false;
    loop {
        let mut more = false;
        match session.recv_event(Duration::from_millis(2)) {
            Ok(e) => {
                out.world.apply(&e);
                gk.observe(&e);
                on_event(&e);
                more = !events.is_empty();
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
        if let Some(code) = session.poll_exit() {
            out.exit_code.get_or_insert(code);
            continue;
        }
        if stopping {
            continue;
        }
        if started.elapsed() > timeout {
            out.timed_out = true;
            stopping = true;
            session.stop();
            continue;
        }
        if stop_early() {
            out.interrupted = true;
            stopping = true;
            session.stop();
            continue;
        }
        // Take in everything that is there before deciding.
        if more || !gk.settled() {
            continue;
        }
        let candidates = gk.candidates(&out.world);
        let sleep_before = sched.sleep.clone();
        match sched.decide(&candidates) {
            Decision::Go(id) => {
                if let Some(c) = choice_point(&candidates, sleep_before, &id, out.schedule.len()) {
                    out.choices.push(c);
                }
                out.schedule.push(id.clone());
                gk.release(session, &id);
            }
            Decision::Wait => {}
            Decision::Stuck => {
                let cycle = deadlock::explain(&out.world, gk.waiting());
                let e = deadlock_event(&cycle);
                out.world.apply(&e);
                on_event(&e);
                out.deadlock = Some(cycle);
                stopping = true;
                session.stop();
            }
            Decision::Diverged(id) => {
                out.diverged = Some(id);
                stopping = true;
                session.stop();
            }
            Decision::Prune => {
                out.pruned = true;
                stopping = true;
                session.stop();
            }
        }
    }
    out
}

/// A whole gated run, quietly: how it ended.
pub fn run_gated(
    session: &mut Session,
    sched: &mut Scheduler,
    timeout_s: f64,
    stop_early: impl Fn() -> bool,
) -> Driven {
    drive(
        session,
        sched,
        Duration::from_secs_f64(timeout_s),
        stop_early,
        |_| {},
    )
}

/// The lost updates the writers reported in a run (`race` events): how
/// many writes erased others' work, and how many updates are lost in all
/// (writes that put erased updates back counted against them: for a
/// counter only ever added to, exactly adds − (final − initial)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub writes: u64,
    pub total: i64,
}

impl Lost {
    pub fn of(world: &World) -> Lost {
        let mut out = Lost::default();
        for v in world.values.values() {
            out.writes += v.lost_updates.iter().filter(|lu| lu.erased()).count() as u64;
            out.total += v.updates_lost();
        }
        out
    }

    pub fn add(&mut self, other: Lost) {
        self.writes += other.writes;
        self.total += other.total;
    }
}

/// A whole free run (the operating system schedules), quietly: its outcome.
/// A deadlock the model can see (a circle of processes waiting for each
/// other's locks, or to end) stops the run at once and counts as one.
/// `stop_early` is asked now and then (e.g. Ctrl-C).
pub fn run_free(
    session: &mut Session,
    timeout_s: f64,
    stop_early: impl Fn() -> bool,
) -> outcome::Outcome {
    run_free_counted(session, timeout_s, stop_early).0
}

/// [`run_free`], and the lost updates its writers reported.
pub fn run_free_counted(
    session: &mut Session,
    timeout_s: f64,
    stop_early: impl Fn() -> bool,
) -> (outcome::Outcome, Lost) {
    let timeout = Duration::from_secs_f64(timeout_s);
    let mut world = World::new();
    let mut deadlocked = false;
    let mut stopping = false;
    loop {
        match session.recv_event(Duration::from_millis(20)) {
            Ok(e) => {
                world.apply(&e);
                let waits = matches!(e.body, Body::LockWait { .. } | Body::Block { .. });
                if waits && !deadlocked && deadlock::in_world(&world).is_some() {
                    deadlocked = true;
                    stopping = true;
                    session.stop();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(_) => {}
        }
        // Asked on every turn, so a busy run stops early too (and the
        // runner's end tells the collector to finish).
        let ended = session.poll_exit().is_some();
        if !stopping && !ended && (session.started.elapsed() > timeout || stop_early()) {
            stopping = true;
            session.stop();
        }
    }
    (
        outcome::Outcome::new(&final_values(&world), deadlocked),
        Lost::of(&world),
    )
}

/// The event that reports a deadlock (from the app, not a process).
pub fn deadlock_event(cycle: &str) -> Event {
    Event {
        t_ns: now_ns(),
        seq: 0,
        proc_id: RUNNER_ID.to_string(),
        pid: 0,
        line: None,
        thread: None,
        tid: None,
        body: Body::Deadlock {
            cycle: cycle.to_string(),
        },
    }
}

/// Final values of every shared value: what `stats` and `explore` compare.
pub fn final_values(world: &World) -> BTreeMap<String, Value> {
    world
        .values
        .iter()
        .map(|(k, v)| (k.clone(), v.current.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, local: bool) -> Candidate {
        Candidate {
            id: id.into(),
            action: String::new(),
            local,
            touches: if local { Vec::new() } else { vec!["*".into()] },
            enabled: true,
        }
    }

    /// Decisions while `looper` always has a local step and `main` an
    /// observable one: how many went before main did.
    fn local_steps_before_main(then: Then) -> Option<usize> {
        let mut sched = Scheduler::new(Vec::new(), then, true);
        let candidates = [cand("main", false), cand("main.1", true)];
        (0..10 * LOCAL_RUN_MAX).find(|_| sched.decide(&candidates) == Decision::Go("main".into()))
    }

    #[test]
    fn an_endless_run_of_local_steps_lets_a_waiting_observable_step_go() {
        for then in [Then::Seeded(1), Then::Seeded(2)] {
            assert_eq!(
                local_steps_before_main(then.clone()),
                Some(LOCAL_RUN_MAX),
                "{then:?}"
            );
        }
        // Exploring keeps the order a choice: the local run is not cut.
        assert_eq!(local_steps_before_main(Then::First), None);
        // Step mode: the user is asked instead.
        let mut sched = Scheduler::new(Vec::new(), Then::Manual, true);
        let candidates = [cand("main", false), cand("main.1", true)];
        for _ in 0..LOCAL_RUN_MAX {
            assert_eq!(sched.decide(&candidates), Decision::Go("main.1".into()));
        }
        assert_eq!(sched.decide(&candidates), Decision::Wait);
        sched.push("main");
        assert_eq!(sched.decide(&candidates), Decision::Go("main".into()));
        // After a choice, local steps go at once again.
        assert_eq!(sched.decide(&candidates), Decision::Go("main.1".into()));
    }

    #[test]
    fn local_steps_with_nobody_waiting_go_on_without_a_bound() {
        let mut sched = Scheduler::new(Vec::new(), Then::Seeded(1), true);
        let looper = [cand("main.1", true)];
        for _ in 0..10 * LOCAL_RUN_MAX {
            assert_eq!(sched.decide(&looper), Decision::Go("main.1".into()));
        }
        // Nobody waited meanwhile: the bound starts from nothing.
        let both = [cand("main", false), cand("main.1", true)];
        for _ in 0..LOCAL_RUN_MAX {
            assert_eq!(sched.decide(&both), Decision::Go("main.1".into()));
        }
        assert_eq!(sched.decide(&both), Decision::Go("main".into()));
    }
}
