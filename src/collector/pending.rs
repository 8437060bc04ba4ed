//! Events waiting for the reorder window, let go in (stamp, arrival) order.
//!
//! A process stamps its events in the order it does them, so what one
//! connection sends is almost always in stamp order already. Each
//! connection has a *lane*: a queue its events join at the back while
//! their stamps do not go down, with no allocation per event (the queue
//! keeps its room). The lanes are merged by a small heap of their first
//! events (one entry per busy connection, not one per event). An event
//! that would break its lane's order (a thread of the process stamped it
//! before the one ahead of it), and events the collector makes itself
//! (exits, output read from pipes), wait in a heap of their own, as all
//! events did before. The order that comes out is the same: by stamp, and
//! by arrival for equal stamps.

use crate::protocol::Event;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

/// Room for this many events is kept on a lane that emptied.
const KEEP_EVENTS: usize = 64;

#[derive(Default)]
pub(super) struct Pending {
    lanes: Vec<Lane>,
    /// Lanes whose connection is gone and that are empty: reused.
    free: Vec<usize>,
    /// The first event of every lane that has one.
    heads: BinaryHeap<Key>,
    /// Events that are on no lane.
    others: BinaryHeap<Waiting>,
    len: usize,
    /// What the waiting events hold ([`Event::bytes`]).
    bytes: usize,
}

#[derive(Default)]
struct Lane {
    /// (arrival, event), in (stamp, arrival) order.
    queue: VecDeque<(u64, Event)>,
    /// Its connection still sends.
    open: bool,
}

/// Where an event waits: a min-heap on (stamp, arrival).
#[derive(PartialEq, Eq)]
struct Key {
    t_ns: u64,
    arrival: u64,
    lane: usize,
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed: the heap's top is the oldest. Arrivals are unique.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.t_ns, other.arrival).cmp(&(self.t_ns, self.arrival))
    }
}

/// An event on no lane. Boxed: the heap moves 24 bytes, not a whole event.
struct Waiting {
    t_ns: u64,
    arrival: u64,
    event: Box<Event>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.t_ns, self.arrival) == (other.t_ns, other.arrival)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    /// Reversed: the heap's top is the oldest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.t_ns, other.arrival).cmp(&(self.t_ns, self.arrival))
    }
}

impl Pending {
    /// A lane for a new connection.
    pub(super) fn open_lane(&mut self) -> usize {
        let lane = match self.free.pop() {
            Some(l) => l,
            None => {
                self.lanes.push(Lane::default());
                self.lanes.len() - 1
            }
        };
        self.lanes[lane].open = true;
        lane
    }

    /// Its connection is gone: the lane is reused once its events left.
    pub(super) fn close_lane(&mut self, lane: usize) {
        if let Some(l) = self.lanes.get_mut(lane) {
            if !l.open {
                // Closed already (and maybe free): not a second time,
                // or two connections would share it.
                return;
            }
            l.open = false;
            if l.queue.is_empty() {
                l.queue = VecDeque::new();
                self.free.push(lane);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The memory the waiting events hold, roughly ([`Event::bytes`]).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues an event that arrived `arrival`-th (numbers only grow), on
    /// `lane` if it keeps that lane in order.
    pub(super) fn push(&mut self, lane: Option<usize>, arrival: u64, event: Event) {
        self.len += 1;
        self.bytes += event.bytes();
        let t_ns = event.t_ns;
        if let Some(l) = lane.and_then(|l| self.lanes.get_mut(l).map(|q| (l, q)))
            && l.1.open
        {
            let (lane, q) = l;
            match q.queue.back() {
                None => {
                    self.heads.push(Key {
                        t_ns,
                        arrival,
                        lane,
                    });
                    q.queue.push_back((arrival, event));
                    return;
                }
                Some((_, last)) if last.t_ns <= t_ns => {
                    q.queue.push_back((arrival, event));
                    return;
                }
                Some(_) => {}
            }
        }
        self.others.push(Waiting {
            t_ns,
            arrival,
            event: Box::new(event),
        });
    }

    /// The stamp of the oldest waiting event.
    pub(super) fn first_t_ns(&self) -> Option<u64> {
        match (self.heads.peek(), self.others.peek()) {
            (Some(a), Some(b)) => Some(a.t_ns.min(b.t_ns)),
            (Some(a), None) => Some(a.t_ns),
            (None, Some(b)) => Some(b.t_ns),
            (None, None) => None,
        }
    }

    /// The oldest waiting event, if its stamp is at most `horizon`.
    #[cfg(test)]
    pub(super) fn pop_due(&mut self, horizon: u64) -> Option<Event> {
        let mut out = Vec::with_capacity(1);
        self.pop_due_into(horizon, &mut out).then(|| out.pop())?
    }

    /// Moves the oldest waiting event to the end of `out` (one copy of
    /// it), if its stamp is at most `horizon`; false if none is due.
    pub(super) fn pop_due_into(&mut self, horizon: u64, out: &mut Vec<Event>) -> bool {
        let lane_first = match (self.heads.peek(), self.others.peek()) {
            (Some(a), Some(b)) => (a.t_ns, a.arrival) < (b.t_ns, b.arrival),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if lane_first {
            let Some(mut top) = self.heads.peek_mut() else {
                return false;
            };
            if top.t_ns > horizon {
                return false;
            }
            let lane = top.lane;
            let q = &mut self.lanes[lane];
            let Some((_, event)) = q.queue.pop_front() else {
                return false;
            };
            out.push(event);
            match q.queue.front() {
                Some((arrival, next)) => {
                    // The lane's next event takes its place (one sift).
                    top.t_ns = next.t_ns;
                    top.arrival = *arrival;
                }
                None => {
                    PeekMut::pop(top);
                    // Room kept for the next burst, not a flood's worth
                    // for every process that once had one.
                    if !q.open {
                        q.queue = VecDeque::new();
                        self.free.push(lane);
                    } else if q.queue.capacity() > KEEP_EVENTS {
                        q.queue.shrink_to(KEEP_EVENTS);
                    }
                }
            }
        } else {
            let Some(top) = self.others.peek_mut() else {
                return false;
            };
            if top.t_ns > horizon {
                return false;
            }
            out.push(*PeekMut::pop(top).event);
        }
        self.len -= 1;
        if let Some(e) = out.last() {
            self.bytes = self.bytes.saturating_sub(e.bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, test_event};

    /// Lanes, strays and the other heap come out as one heap of every
    /// event would let them go: by stamp, then by arrival.
    #[test]
    fn a_lane_closed_twice_is_given_to_one_connection_only() {
        let mut p = Pending::default();
        let lane = p.open_lane();
        p.close_lane(lane);
        p.close_lane(lane);
        let (a, b) = (p.open_lane(), p.open_lane());
        assert_ne!(a, b);
    }

    #[test]
    fn events_come_out_by_stamp_then_arrival_whatever_lane_they_took() {
        let mut p = Pending::default();
        let a = p.open_lane();
        let b = p.open_lane();
        // (lane, stamp), in arrival order.
        let input: [(Option<usize>, u64); 12] = [
            (Some(a), 10),
            (Some(a), 20),
            (Some(b), 15),
            (Some(a), 20),
            (None, 12),
            (Some(b), 5), // out of order on its lane
            (Some(a), 30),
            (Some(b), 15),
            (None, 20),
            (Some(b), 40),
            (Some(a), 25),
            (Some(b), 41),
        ];
        let mut want: Vec<(u64, u64)> = Vec::new();
        for (arrival, (lane, t)) in input.into_iter().enumerate() {
            let arrival = arrival as u64;
            let mut e = test_event(t, "p", Body::Wake {});
            e.seq = arrival;
            p.push(lane, arrival, e);
            want.push((t, arrival));
        }
        want.sort();
        assert_eq!(p.len(), 12);
        assert!(p.bytes() >= 12 * std::mem::size_of::<Event>());
        assert_eq!(p.first_t_ns(), Some(5));
        let mut got = Vec::new();
        while let Some(e) = p.pop_due(20) {
            got.push((e.t_ns, e.seq));
        }
        assert_eq!(p.first_t_ns(), Some(25));
        p.close_lane(a);
        // A new connection does not get a lane that still has events.
        let c = p.open_lane();
        assert_ne!(c, a);
        p.push(Some(c), 100, test_event(1, "q", Body::Wake {}));
        while let Some(e) = p.pop_due(u64::MAX) {
            got.push((e.t_ns, if e.proc_id == "q" { 100 } else { e.seq }));
        }
        // The late one is let go when asked: first in the second round.
        let k = want.iter().take_while(|&&(t, _)| t <= 20).count();
        want.insert(k, (1, 100));
        assert_eq!(got, want);
        assert_eq!(p.len(), 0);
        assert_eq!(p.bytes(), 0, "what came out is no longer counted");
        // Now empty and closed: lane `a` is reused.
        assert_eq!(p.open_lane(), a);
    }
}
