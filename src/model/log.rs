//! The append-only event log: the one source of truth every view and every
//! projection is rebuilt from.

use std::collections::BTreeMap;

use super::world::World;
use crate::protocol::Event;

/// Every event of a run, in arrival order, never edited.
///
/// Keeping the raw events (not just the [`World`]) is what lets time control
/// scrub back, the timeline draw spans, and traces be written unchanged.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    events: Vec<Event>,
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
        self.events.push(event);
        self.events.len() - 1
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn get(&self, index: usize) -> Option<&Event> {
        self.events.get(index)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
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
    /// checkpoints must agree with.
    pub fn world_at(&self, count: usize) -> World {
        let mut world = World::new();
        for event in self.events.iter().take(count) {
            world.apply(event);
        }
        world
    }
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
            body: Body::Narrate { text: text.into() },
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
}
