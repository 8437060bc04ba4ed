//! Everything the app keeps about the current run: the event log, the live
//! World, checkpoints for scrubbing back, and what the timeline draws
//! (spans and message arrows), all updated once per event as it arrives.
//!
//! A paused or scrubbed view is just a different read of the same store:
//! the World after the first `k` events, rebuilt from the nearest
//! checkpoint.

use crate::model::{EventLog, ProcState, Process, World};
use crate::protocol::{Body, Event};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A copy of the World is kept every this many events: scrubbing replays
/// at most this many events.
pub const CHECKPOINT_EVERY: usize = 2000;

/// What a timeline span shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneState {
    Running,
    Sleeping,
    Blocked,
    Stopped,
    Zombie,
    /// Gated runs: announced its next step, waits for its go.
    WaitsTurn,
}

impl LaneState {
    fn of(p: &Process) -> Option<LaneState> {
        Some(match &p.state {
            ProcState::Running if p.pending.is_some() => LaneState::WaitsTurn,
            ProcState::Running => LaneState::Running,
            ProcState::Sleeping => LaneState::Sleeping,
            ProcState::Blocked(_) => LaneState::Blocked,
            ProcState::Stopped => LaneState::Stopped,
            ProcState::Zombie => LaneState::Zombie,
            ProcState::Reaped => return None,
        })
    }

    /// The `ProcState` whose colour this span uses.
    pub fn as_proc_state(self) -> ProcState {
        match self {
            LaneState::Running | LaneState::WaitsTurn => ProcState::Running,
            LaneState::Sleeping => ProcState::Sleeping,
            LaneState::Blocked => ProcState::Blocked(String::new()),
            LaneState::Stopped => ProcState::Stopped,
            LaneState::Zombie => ProcState::Zombie,
        }
    }
}

/// A stretch of time; `end_t_ns` is `None` while it lasts.
#[derive(Clone, Debug, PartialEq)]
pub struct Span<T> {
    pub start_t_ns: u64,
    pub end_t_ns: Option<u64>,
    pub what: T,
}

/// One process's swim lane.
#[derive(Clone, Debug, Default)]
pub struct Lane {
    pub states: Vec<Span<LaneState>>,
    /// Locks held (the lock's name).
    pub holds: Vec<Span<String>>,
    /// Pool tasks run ("task 3").
    pub tasks: Vec<Span<String>>,
}

impl Lane {
    fn set_state(&mut self, t_ns: u64, state: Option<LaneState>) {
        let current = self
            .states
            .last()
            .filter(|s| s.end_t_ns.is_none())
            .map(|s| s.what);
        if current == state {
            return;
        }
        if let Some(open) = self.states.last_mut().filter(|s| s.end_t_ns.is_none()) {
            open.end_t_ns = Some(t_ns.max(open.start_t_ns));
        }
        if let Some(what) = state {
            self.states.push(Span {
                start_t_ns: t_ns,
                end_t_ns: None,
                what,
            });
        }
    }

    fn open(spans: &mut Vec<Span<String>>, t_ns: u64, what: String) {
        spans.push(Span {
            start_t_ns: t_ns,
            end_t_ns: None,
            what,
        });
    }

    fn close(spans: &mut [Span<String>], t_ns: u64, what: &str) {
        if let Some(open) = spans
            .iter_mut()
            .rev()
            .find(|s| s.end_t_ns.is_none() && s.what == what)
        {
            open.end_t_ns = Some(t_ns.max(open.start_t_ns));
        }
    }
}

/// A message from one lane to another.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrow {
    pub from: String,
    pub to: String,
    pub sent_t_ns: u64,
    pub recv_t_ns: u64,
    pub channel: String,
}

/// Who sends into and who receives from a channel (over the whole run):
/// the stage draws the channel between them.
#[derive(Clone, Debug, Default)]
pub struct ChannelUsers {
    pub senders: BTreeSet<String>,
    pub receivers: BTreeSet<String>,
}

#[derive(Default)]
pub struct Recording {
    pub log: EventLog,
    pub live: World,
    pub lanes: BTreeMap<String, Lane>,
    pub arrows: Vec<Arrow>,
    pub channel_users: BTreeMap<String, ChannelUsers>,
    /// Signals sent: (t, from, to, signal), drawn as arrows on the stage.
    pub signals: Vec<(u64, String, String, String)>,
    /// `checkpoints[i]` is the World after `(i + 1) * CHECKPOINT_EVERY` events.
    checkpoints: Vec<World>,
    /// Running maximum of event times: monotone, so a time maps to an
    /// event count with a binary search even if a few events came late.
    t_prefix_max: Vec<u64>,
    sends: HashMap<(String, String), (String, u64)>,
    /// The last World built for a past moment, and how many events it has.
    view: Option<(usize, World)>,
}

impl Recording {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// First and last event time.
    pub fn t_range(&self) -> Option<(u64, u64)> {
        Some((self.log.min_t_ns()?, self.log.max_t_ns()?))
    }

    pub fn push(&mut self, event: Event) {
        self.live.apply(&event);
        self.observe(&event);
        let t_max = self
            .t_prefix_max
            .last()
            .map_or(event.t_ns, |t| (*t).max(event.t_ns));
        self.t_prefix_max.push(t_max);
        self.log.push(event);
        if self.log.len().is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.push(self.live.clone());
        }
    }

    /// How many events happened at or before `t_ns`.
    pub fn count_at(&self, t_ns: u64) -> usize {
        self.t_prefix_max.partition_point(|t| *t <= t_ns)
    }

    /// The World after the first `count` events. Reuses the last one built
    /// when moving forward a little, else starts from a checkpoint.
    pub fn world_at(&mut self, count: usize) -> &World {
        let count = count.min(self.log.len());
        if count == self.log.len() {
            return &self.live;
        }
        let reuse =
            matches!(&self.view, Some((k, _)) if *k <= count && count - *k <= CHECKPOINT_EVERY);
        if !reuse {
            let slot = count / CHECKPOINT_EVERY;
            self.view = Some(
                match slot.checked_sub(1).and_then(|i| self.checkpoints.get(i)) {
                    Some(w) => (slot * CHECKPOINT_EVERY, w.clone()),
                    None => (0, World::new()),
                },
            );
        }
        let events = self.log.events();
        match &mut self.view {
            Some((k, world)) => {
                for e in events.get(*k..count).unwrap_or_default() {
                    world.apply(e);
                }
                *k = count;
                world
            }
            None => &self.live,
        }
    }

    /// The World last built by [`Self::world_at`] if it has `count`
    /// events, else the live one.
    pub fn cached_world(&self, count: usize) -> &World {
        match &self.view {
            Some((k, w)) if *k == count => w,
            _ => &self.live,
        }
    }

    /// Timeline bookkeeping for one event, read off the World after it.
    fn observe(&mut self, e: &Event) {
        let t = e.t_ns;
        let mut touched = vec![e.proc_id.clone()];
        match &e.body {
            Body::Signal { target, signal, .. } => {
                touched.push(target.clone());
                self.signals
                    .push((t, e.proc_id.clone(), target.clone(), signal.clone()));
            }
            Body::Spawn { child, .. } => touched.push(child.clone()),
            Body::LockAcquire { lock } => {
                Lane::open(&mut self.lane(&e.proc_id).holds, t, lock.clone());
            }
            Body::LockRelease { lock } => {
                Lane::close(&mut self.lane(&e.proc_id).holds, t, lock);
            }
            Body::TaskStart { task, .. } => {
                Lane::open(&mut self.lane(&e.proc_id).tasks, t, format!("task {task}"));
            }
            Body::TaskDone { task, .. } => {
                Lane::close(&mut self.lane(&e.proc_id).tasks, t, &format!("task {task}"));
            }
            Body::Send { channel, msg, .. } | Body::Put { channel, msg, .. } => {
                self.sends
                    .insert((channel.clone(), msg.clone()), (e.proc_id.clone(), t));
                self.channel_users
                    .entry(channel.clone())
                    .or_default()
                    .senders
                    .insert(e.proc_id.clone());
            }
            Body::Recv { channel, msg, .. } | Body::Get { channel, msg, .. } => {
                self.channel_users
                    .entry(channel.clone())
                    .or_default()
                    .receivers
                    .insert(e.proc_id.clone());
                if let Some((from, sent_t_ns)) = self.sends.remove(&(channel.clone(), msg.clone()))
                {
                    self.arrows.push(Arrow {
                        from,
                        to: e.proc_id.clone(),
                        sent_t_ns,
                        recv_t_ns: t,
                        channel: channel.clone(),
                    });
                }
            }
            _ => {}
        }
        for id in touched {
            let state = self.live.process(&id).and_then(LaneState::of);
            let lane = self.lane(&id);
            lane.set_state(t, state);
            if state.is_none() {
                // Gone: whatever it held or ran ends here on its lane.
                for s in lane.holds.iter_mut().chain(lane.tasks.iter_mut()) {
                    if s.end_t_ns.is_none() {
                        s.end_t_ns = Some(t.max(s.start_t_ns));
                    }
                }
            }
        }
    }

    fn lane(&mut self, id: &str) -> &mut Lane {
        self.lanes.entry(id.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Value;

    fn ev(t_ns: u64, proc_id: &str, body: Body) -> Event {
        Event {
            t_ns,
            seq: 0,
            proc_id: proc_id.into(),
            pid: 1,
            line: None,
            body,
        }
    }

    fn write(t_ns: u64, value: i64) -> Event {
        ev(
            t_ns,
            "main",
            Body::Write {
                name: "v".into(),
                value: Value::Int(value),
                private: false,
            },
        )
    }

    #[test]
    fn scrubbing_agrees_with_a_full_replay_across_checkpoints() {
        let mut rec = Recording::new();
        let n = CHECKPOINT_EVERY * 3 + 17;
        for i in 0..n {
            rec.push(write(i as u64 * 10, i as i64));
        }
        for count in [0, 1, CHECKPOINT_EVERY, CHECKPOINT_EVERY + 5, n - 1, 5, n] {
            let fast = rec.world_at(count).clone();
            assert_eq!(fast, rec.log.world_at(count), "after {count} events");
        }
        assert_eq!(rec.count_at(0), 1);
        assert_eq!(rec.count_at(15), 2);
        assert_eq!(rec.count_at(u64::MAX), n);
    }

    #[test]
    fn lanes_follow_states_locks_and_messages() {
        let mut rec = Recording::new();
        let lock = |t, p: &str, body| ev(t, p, body);
        rec.push(lock(1, "a", Body::LockAcquire { lock: "l".into() }));
        rec.push(lock(2, "b", Body::LockWait { lock: "l".into() }));
        rec.push(lock(3, "a", Body::LockRelease { lock: "l".into() }));
        rec.push(lock(4, "b", Body::LockAcquire { lock: "l".into() }));
        let put = Body::Put {
            channel: "q".into(),
            msg: "m1".into(),
            value: Value::Int(1),
        };
        let get = Body::Get {
            channel: "q".into(),
            msg: "m1".into(),
            value: Value::Int(1),
        };
        rec.push(ev(5, "a", put));
        rec.push(ev(7, "b", get));
        let b = &rec.lanes["b"];
        let states: Vec<LaneState> = b.states.iter().map(|s| s.what).collect();
        // b's first event is its wait: blocked from the start, then running.
        assert_eq!(states, [LaneState::Blocked, LaneState::Running]);
        assert_eq!(rec.lanes["a"].holds[0].end_t_ns, Some(3));
        assert_eq!(b.holds[0].end_t_ns, None);
        assert_eq!(rec.arrows.len(), 1);
        assert_eq!((rec.arrows[0].sent_t_ns, rec.arrows[0].recv_t_ns), (5, 7));
        assert!(rec.channel_users["q"].senders.contains("a"));
    }
}
