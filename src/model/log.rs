//! The append-only event log: the one source of truth every view and every
//! projection is rebuilt from.

use std::collections::BTreeMap;

use super::world::World;
use crate::protocol::Event;

/// The events of a run, in arrival order, never edited.
///
/// Keeping the raw events (not just the [`World`]) is what lets time control
/// scrub back, the timeline draw spans, and traces be written unchanged.
///
/// A flood of events must not take all memory, so the log keeps only the
/// newest events: when the kept ones cost more than the budget, the owner
/// calls [`EventLog::thin_to`] and the oldest are let go (the recording
/// keeps a copy of the World where they end, so scrubbing still reaches
/// those moments). Indexes stay those of the whole run: event `i` is the
/// `i`-th that arrived, kept or not.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Events `first_kept..len()`.
    events: Vec<Event>,
    /// `prefix_max_t_ns[i]` is the latest time among all events up to and
    /// including kept event `i` (monotone even if events came late).
    prefix_max_t_ns: Vec<u64>,
    /// How many of the oldest events are no longer kept.
    first_kept: usize,
    /// Estimated memory of the kept events.
    kept_bytes: usize,
    /// Events lost before reaching the log (a full channel, an overlong line).
    /// Set by the collector side; shown so overload is never hidden.
    pub dropped: u64,
    /// Lines that arrived but were not valid events.
    pub garbage: u64,
    counts_by_kind: BTreeMap<&'static str, u64>,
    min_t_ns: Option<u64>,
    max_t_ns: Option<u64>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one event and returns its index in the log.
    pub fn push(&mut self, event: Event) -> usize {
        *self.counts_by_kind.entry(event.body.kind()).or_insert(0) += 1;
        self.min_t_ns = Some(self.min_t_ns.map_or(event.t_ns, |t| t.min(event.t_ns)));
        self.max_t_ns = Some(self.max_t_ns.map_or(event.t_ns, |t| t.max(event.t_ns)));
        self.prefix_max_t_ns
            .push(self.max_t_ns.unwrap_or(event.t_ns));
        self.kept_bytes += event_bytes(&event);
        self.events.push(event);
        self.len() - 1
    }

    /// The kept events (the newest ones): event `first_kept() + i` is
    /// `kept()[i]`.
    pub fn kept(&self) -> &[Event] {
        &self.events
    }

    /// Index of the oldest kept event: how many were let go before it.
    pub fn first_kept(&self) -> usize {
        self.first_kept
    }

    /// The kept events among `start..end`.
    pub fn range(&self, start: usize, end: usize) -> &[Event] {
        let a = start.saturating_sub(self.first_kept).min(self.events.len());
        let b = end.saturating_sub(self.first_kept).min(self.events.len());
        self.events.get(a..b.max(a)).unwrap_or_default()
    }

    /// Event `index` of the run, if it is still kept.
    pub fn get(&self, index: usize) -> Option<&Event> {
        self.events.get(index.checked_sub(self.first_kept)?)
    }

    /// How many events arrived (kept or not).
    pub fn len(&self) -> usize {
        self.first_kept + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Roughly the memory the kept events use.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// Lets go of every event before `index` (no-op if already gone).
    pub fn thin_to(&mut self, index: usize) {
        let n = index.saturating_sub(self.first_kept).min(self.events.len());
        if n == 0 {
            return;
        }
        let freed: usize = self.events[..n].iter().map(event_bytes).sum();
        self.events.drain(..n);
        self.prefix_max_t_ns.drain(..n);
        self.first_kept += n;
        self.kept_bytes = self.kept_bytes.saturating_sub(freed);
        // Give back what a flood made the vectors grow to.
        if self.events.capacity() > 2 * self.events.len() + 1024 {
            self.events.shrink_to(self.events.len() * 3 / 2);
            self.prefix_max_t_ns.shrink_to(self.events.len() * 3 / 2);
        }
    }

    /// How many events happened at or before `t_ns`, if that moment is
    /// within the kept events (`None` if it is older).
    pub fn count_at(&self, t_ns: u64) -> Option<usize> {
        let first = self.prefix_max_t_ns.first()?;
        if *first > t_ns && self.first_kept > 0 {
            return None;
        }
        Some(self.first_kept + self.prefix_max_t_ns.partition_point(|t| *t <= t_ns))
    }

    /// How many events of each `kind` arrived (sorted by kind name).
    pub fn counts_by_kind(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts_by_kind
    }

    /// Earliest timestamp in the log. Events arrive from many processes, so
    /// this is not necessarily the first event's.
    pub fn min_t_ns(&self) -> Option<u64> {
        self.min_t_ns
    }

    /// Latest timestamp in the log.
    pub fn max_t_ns(&self) -> Option<u64> {
        self.max_t_ns
    }

    /// The world as it was after the first `count` events (all of them if
    /// `count` is past the end): the slow, always-correct path that
    /// checkpoints must agree with. Only the kept events are replayed, so
    /// this is that World only while nothing was thinned.
    pub fn world_at(&self, count: usize) -> World {
        let mut world = World::new();
        for event in self.range(0, count) {
            world.apply(event);
        }
        world
    }
}

/// Roughly the memory one logged event uses: the event and the running
/// maximum next to it.
pub fn event_bytes(e: &Event) -> usize {
    e.bytes() + std::mem::size_of::<u64>()
}

impl Extend<Event> for EventLog {
    fn extend<I: IntoIterator<Item = Event>>(&mut self, events: I) {
        for event in events {
            self.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;

    fn narrate(t_ns: u64, text: &str) -> Event {
        Event {
            t_ns,
            seq: 0,
            proc_id: "main".into(),
            pid: 10,
            line: None,
            thread: None,
            tid: None,
            body: Body::Narrate {
                text: text.into(),
                pause: false,
            },
        }
    }

    #[test]
    fn log_counts_and_replays_a_prefix() {
        let mut log = EventLog::new();
        log.extend([narrate(30, "a"), narrate(10, "b"), narrate(20, "c")]);
        assert_eq!(log.len(), 3);
        assert_eq!(log.counts_by_kind().get("narrate"), Some(&3));
        assert_eq!((log.min_t_ns(), log.max_t_ns()), (Some(10), Some(30)));
        assert_eq!(log.world_at(2).caption.as_deref(), Some("b"));
        assert_eq!(log.world_at(99).caption.as_deref(), Some("c"));
        assert_eq!(log.world_at(0).caption, None);
    }
    #[test]
    fn thinning_keeps_indexes_counts_and_times_of_the_whole_run() {
        let mut log = EventLog::new();
        log.extend((0..10).map(|i| narrate(100 + i * 10, "x")));
        log.push(narrate(105, "late"));
        let before = log.kept_bytes();
        log.thin_to(4);
        assert_eq!(log.len(), 11, "still counts every event");
        assert_eq!(log.first_kept(), 4);
        assert!(log.kept_bytes() < before);
        assert!(log.get(3).is_none());
        assert_eq!(log.get(4).map(|e| e.t_ns), Some(140));
        assert_eq!(log.range(0, 6).len(), 2, "events 4 and 5");
        assert_eq!(log.counts_by_kind().get("narrate"), Some(&11));
        assert_eq!(log.min_t_ns(), Some(100));
        // Times before the kept events are not answered here.
        assert_eq!(log.count_at(120), None);
        assert_eq!(log.count_at(145), Some(5));
        // The late event does not make the count go back.
        assert_eq!(log.count_at(195), Some(11));
        log.thin_to(2);
        assert_eq!(log.first_kept(), 4, "thinning never goes back");
    }
}
