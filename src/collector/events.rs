//! The collector's events, handed over in batches: one channel message per
//! pass of the collector (everything its reorder window lets go at once),
//! not one per event, so a busy run costs the consumer one wake-up per
//! batch. The consumer may still take them one at a time
//! ([`Events::try_recv`], [`Events::recv_timeout`]) or a batch at a time
//! ([`Events::try_recv_batch`], [`Events::recv_batch_timeout`]).
//!
//! The bound is in events, and in bytes ([`Bound`]): a few thousand
//! events of 4 KiB lines hold as much memory as a flood's hundred
//! thousand. Long before either is reached, the collector stops
//! reading the processes' connections ([`EventTx::should_pause`]): their
//! socket buffers fill and their writes wait, so a consumer that is slower
//! than the processes slows them down instead of losing their events; the
//! consumer wakes the collector when it has caught up. The collector hands
//! over no more than there is room for ([`EventTx::room`]) and keeps the
//! rest in order; only what is still left when it cannot wait any longer
//! (a while after the end of a run, or a consumer gone) is dropped past
//! the bound and counted (`Stats::dropped`), never queued without end.

use crate::protocol::Event;
use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError, unbounded};
use nix::sys::eventfd::EventFd;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pair: the collector's end and the consumer's end. `wake` is the
/// collector's eventfd: the consumer writes it when it has caught up with
/// a collector that paused.
pub fn channel(capacity: usize, wake: Arc<EventFd>) -> (EventTx, Events) {
    bounded(
        Bound {
            events: capacity,
            bytes: CHANNEL_BYTES,
        },
        wake,
    )
}

/// The collector stops reading when what it handed over and the consumer
/// has not taken reaches half of this many bytes (and goes on when it is
/// down to a quarter): 64 MiB is 16,384 events of 4 KiB lines (the
/// protocol's longest), or over 200,000 of a flood's events, more than
/// the bound in events lets through.
pub const CHANNEL_BYTES: usize = 64 << 20;

/// How much a channel holds: events, and their bytes ([`Event::bytes`]).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Past this many, events are dropped (and counted).
    pub events: usize,
    /// The collector pauses at half of this many bytes. Not a hard
    /// limit: what the collector read before it paused still goes in.
    pub bytes: usize,
}

/// The consumer's work on the collector's thread: each batch is handed to
/// it there, in order, instead of crossing the channel (one wake-up less
/// per batch: the consumer's thread is not woken). The consumer must be
/// quick: while it runs, nothing is read. See [`direct`].
pub type Sink = Box<dyn FnMut(Vec<Event>) + Send>;

/// A pair whose collector's end hands every batch to `sink` on the
/// collector's thread: nothing is queued (so nothing is dropped and the
/// collector never pauses for a consumer); the consumer's end gets no
/// events, and disconnects when the collector's run is over.
pub fn direct(capacity: usize, wake: Arc<EventFd>, sink: Sink) -> (EventTx, Events) {
    let (mut tx, rx) = channel(capacity, wake);
    tx.sink = Some(sink);
    (tx, rx)
}

/// A pair bounded by `bound` (see [`channel`]).
pub fn bounded(bound: Bound, wake: Arc<EventFd>) -> (EventTx, Events) {
    let capacity = bound.events;
    let (tx, rx) = unbounded();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        abandoned: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        resume_at: capacity / 4,
        pause_bytes: bound.bytes / 2,
        resume_bytes: bound.bytes / 4,
        wake,
    });
    (
        EventTx {
            tx,
            shared: shared.clone(),
            capacity,
            sink: None,
        },
        Events {
            rx,
            taken: Arc::new(Mutex::new(VecDeque::new())),
            shared,
        },
    )
}

struct Shared {
    /// Events sent and not taken yet (in the channel or in a consumer's
    /// hands, not yet popped).
    queued: AtomicUsize,
    /// The bytes of the events sent and not received yet (out of the
    /// channel and into a consumer's hands).
    queued_bytes: AtomicUsize,
    /// The consumer's side is being dropped: nobody will take more, so the
    /// collector does not wait for room at the end of a run.
    abandoned: AtomicBool,
    /// The collector stopped reading until the consumer catches up.
    paused: AtomicBool,
    /// Caught up: this few events left.
    resume_at: usize,
    /// Behind: this many bytes queued.
    pause_bytes: usize,
    /// Caught up: this few bytes left.
    resume_bytes: usize,
    wake: Arc<EventFd>,
}

impl Shared {
    /// `n` events were taken, and batches of `bytes` received.
    ///
    /// Sequentially consistent, as the collector's side in
    /// [`EventTx::should_pause`]: each side writes one flag and then reads
    /// the other's, and with weaker orders both could read the old values
    /// (the collector sleeping, the consumer not waking it). On x86 these
    /// read-modify-writes cost the same either way.
    fn taken(&self, n: usize, bytes: usize) {
        let left = self.queued.fetch_sub(n, Ordering::SeqCst).saturating_sub(n);
        let left_bytes = self
            .queued_bytes
            .fetch_sub(bytes, Ordering::SeqCst)
            .saturating_sub(bytes);
        if left <= self.resume_at
            && left_bytes <= self.resume_bytes
            && self.paused.swap(false, Ordering::SeqCst)
        {
            let _ = self.wake.write(1);
        }
    }

    /// The consumer is behind with `waiting` more events, of
    /// `waiting_bytes`, on their way.
    fn behind(&self, capacity: usize, waiting: usize, waiting_bytes: usize) -> bool {
        self.queued.load(Ordering::Acquire) + waiting >= capacity / 2
            || self.queued_bytes.load(Ordering::Acquire) + waiting_bytes >= self.pause_bytes
    }

    /// It has caught up (or nearly: see `taken`).
    fn caught_up(&self) -> bool {
        self.queued.load(Ordering::SeqCst) <= self.resume_at
            && self.queued_bytes.load(Ordering::SeqCst) <= self.resume_bytes
    }
}

/// What crosses the channel: events, and their bytes (counted once, by
/// the sender).
struct Batch {
    events: Vec<Event>,
    bytes: usize,
}

/// What [`EventTx::send`] did with a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// All in, or this many events did not fit and were dropped.
    Dropped(usize),
    /// Nobody listens any more.
    Disconnected,
}

/// The collector's end.
pub struct EventTx {
    tx: Sender<Batch>,
    shared: Arc<Shared>,
    capacity: usize,
    /// Takes every batch on the collector's thread instead of the
    /// channel ([`direct`]).
    sink: Option<Sink>,
}

impl EventTx {
    /// The consumer is so far behind (with `waiting` more events on their
    /// way) that the collector should stop reading until it catches up.
    /// True also sets the flag the consumer looks at to wake it.
    /// Never with a [`Sink`]: it has taken everything already.
    pub fn should_pause(&self, waiting: usize, waiting_bytes: usize) -> bool {
        if self.sink.is_some() {
            return false;
        }
        let s = &self.shared;
        if !s.behind(self.capacity, waiting, waiting_bytes) {
            return false;
        }
        s.paused.store(true, Ordering::SeqCst);
        // It may have caught up in between: then nobody would wake us.
        if s.caught_up() {
            s.paused.store(false, Ordering::SeqCst);
            return s.behind(self.capacity, waiting, waiting_bytes);
        }
        true
    }

    /// How many events the channel takes now without dropping any (all
    /// of its capacity with a [`Sink`]: nothing is ever queued).
    pub fn room(&self) -> usize {
        self.capacity
            .saturating_sub(self.shared.queued.load(Ordering::Acquire))
    }

    /// The bound of the channel, in events.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The consumer will take nothing more ([`Events::abandon`]).
    pub fn abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// Sends a batch (in order); what would pass `capacity` is dropped.
    /// With a [`Sink`], it gets the whole batch, now, on this thread.
    pub fn send(&mut self, mut batch: Vec<Event>) -> Sent {
        if batch.is_empty() {
            return Sent::Dropped(0);
        }
        if let Some(sink) = self.sink.as_mut() {
            sink(batch);
            return Sent::Dropped(0);
        }
        let room = self
            .capacity
            .saturating_sub(self.shared.queued.load(Ordering::Acquire));
        let dropped = batch.len().saturating_sub(room);
        batch.truncate(room);
        if batch.is_empty() {
            return Sent::Dropped(dropped);
        }
        let n = batch.len();
        let bytes = batch.iter().map(Event::bytes).sum();
        self.shared.queued.fetch_add(n, Ordering::AcqRel);
        self.shared.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if self
            .tx
            .send(Batch {
                events: batch,
                bytes,
            })
            .is_err()
        {
            self.shared.queued.fetch_sub(n, Ordering::AcqRel);
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Sent::Disconnected;
        }
        Sent::Dropped(dropped)
    }
}

/// The consumer's end. Clones share one queue: an event is taken once,
/// by whichever clone asks first.
#[derive(Clone)]
pub struct Events {
    rx: Receiver<Batch>,
    /// Events of a batch received but not taken yet.
    taken: Arc<Mutex<VecDeque<Event>>>,
    shared: Arc<Shared>,
}

impl Events {
    /// Events sent and not taken yet.
    pub fn len(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says that nobody will take events any more (the collector is being
    /// dropped): the collector then drops what did not fit at once instead
    /// of waiting for room.
    pub(super) fn abandon(&self) {
        self.shared.abandoned.store(true, Ordering::Release);
    }

    fn pop(&self) -> Option<Event> {
        let mut q = self.taken.lock().ok()?;
        let e = q.pop_front()?;
        drop(q);
        self.shared.taken(1, 0);
        Some(e)
    }

    /// A received batch, to be taken one event at a time: its bytes are
    /// in the consumer's hands now.
    fn push_back(&self, batch: Batch) {
        match self.taken.lock() {
            Ok(mut q) => {
                q.extend(batch.events);
                drop(q);
                self.shared.taken(0, batch.bytes);
            }
            // A consumer panicked while holding the queue: its events
            // are lost with it; so are these.
            Err(_) => self.shared.taken(batch.events.len(), batch.bytes),
        }
    }

    /// The next event, if one is there now.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        if let Some(e) = self.pop() {
            return Ok(e);
        }
        let batch = self.rx.try_recv()?;
        self.push_back(batch);
        self.pop().ok_or(TryRecvError::Empty)
    }

    /// The next event, waiting at most `timeout` for it.
    /// Like [`Events::recv_timeout`], but also wakes when `other` has
    /// something: then `Err(Some(msg))`; a timeout or a collector gone is
    /// `Err(None)` (a shared runner's exit code races the run's events).
    pub fn recv_or<T>(
        &self,
        other: &crossbeam_channel::Receiver<T>,
        timeout: Duration,
    ) -> Result<Event, Option<Result<T, crossbeam_channel::RecvError>>> {
        if let Some(e) = self.pop() {
            return Ok(e);
        }
        crossbeam_channel::select! {
            recv(self.rx) -> batch => match batch {
                Ok(b) => {
                    self.push_back(b);
                    self.pop().ok_or(None)
                }
                Err(_) => Err(None),
            },
            recv(other) -> msg => Err(Some(msg)),
            default(timeout) => Err(None),
        }
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        if let Some(e) = self.pop() {
            return Ok(e);
        }
        let batch = self.rx.recv_timeout(timeout)?;
        self.push_back(batch);
        self.pop().ok_or(RecvTimeoutError::Timeout)
    }

    /// The next event, waiting for it as long as it takes (an error once
    /// the collector is gone and everything was taken).
    pub fn recv(&self) -> Result<Event, RecvError> {
        if let Some(e) = self.pop() {
            return Ok(e);
        }
        loop {
            let batch = self.rx.recv()?;
            self.push_back(batch);
            if let Some(e) = self.pop() {
                return Ok(e);
            }
        }
    }

    /// The events there now, one by one (as `Receiver::try_iter`).
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Every event there now (empty: none yet).
    pub fn try_recv_batch(&self) -> Result<Vec<Event>, TryRecvError> {
        let mut out: Vec<Event> = match self.taken.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let mut bytes = 0;
        loop {
            match self.rx.try_recv() {
                Ok(batch) if out.is_empty() => {
                    bytes += batch.bytes;
                    out = batch.events;
                }
                Ok(batch) => {
                    bytes += batch.bytes;
                    out.extend(batch.events);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if out.is_empty() => {
                    return Err(TryRecvError::Disconnected);
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        self.shared.taken(out.len(), bytes);
        Ok(out)
    }

    /// The next batch as the collector handed it over (events a
    /// `try_recv` left first), waiting at most `timeout` for it. Unlike
    /// [`Events::recv_batch_timeout`] no events are copied to join batches:
    /// in a flood that copying, into fresh memory, was a sixth of the
    /// consumer's time.
    pub fn recv_one_batch_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Vec<Event>, RecvTimeoutError> {
        let left: Vec<Event> = match self.taken.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        if !left.is_empty() {
            self.shared.taken(left.len(), 0);
            return Ok(left);
        }
        let batch = self.rx.recv_timeout(timeout)?;
        self.shared.taken(batch.events.len(), batch.bytes);
        Ok(batch.events)
    }

    /// Every event there now, waiting at most `timeout` for the first.
    pub fn recv_batch_timeout(&self, timeout: Duration) -> Result<Vec<Event>, RecvTimeoutError> {
        match self.try_recv_batch() {
            Ok(b) if !b.is_empty() => return Ok(b),
            Ok(_) => {}
            Err(_) => return Err(RecvTimeoutError::Disconnected),
        }
        let first = self.rx.recv_timeout(timeout)?;
        self.shared.taken(first.events.len(), first.bytes);
        let mut out = first.events;
        if let Ok(more) = self.try_recv_batch() {
            out.extend(more);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;

    fn ev(seq: u64) -> Event {
        Event {
            t_ns: seq,
            seq,
            proc_id: "p".into(),
            pid: 1,
            line: None,
            thread: None,
            tid: None,
            body: Body::Wake {},
        }
    }

    #[test]
    fn one_batch_at_a_time_comes_as_sent_after_what_a_single_take_left() {
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let (mut tx, rx) = channel(100, wake);
        assert_eq!(tx.send((0..3).map(ev).collect()), Sent::Dropped(0));
        assert_eq!(tx.send((3..5).map(ev).collect()), Sent::Dropped(0));
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(0));
        let seqs = |b: Vec<Event>| b.iter().map(|e| e.seq).collect::<Vec<u64>>();
        let t = Duration::from_millis(1);
        assert_eq!(rx.recv_one_batch_timeout(t).map(seqs), Ok(vec![1, 2]));
        assert_eq!(rx.recv_one_batch_timeout(t).map(seqs), Ok(vec![3, 4]));
        assert!(rx.is_empty());
        assert_eq!(
            rx.recv_one_batch_timeout(t).map(seqs),
            Err(RecvTimeoutError::Timeout)
        );
        drop(tx);
        assert_eq!(
            rx.recv_one_batch_timeout(t).map(seqs),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn long_events_pause_the_collector_at_half_the_bytes_and_taking_them_wakes_it() {
        // 20 events of 4 KiB text fill half of 128 KiB long before half
        // of 1,000 events.
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let bound = Bound {
            events: 1000,
            bytes: 128 << 10,
        };
        let (mut tx, rx) = bounded(bound, wake.clone());
        let long = |seq| Event {
            body: Body::Narrate {
                text: "x".repeat(4096),
                pause: false,
            },
            ..ev(seq)
        };
        assert!(!tx.should_pause(0, 0));
        assert!(tx.should_pause(0, 64 << 10), "what is on its way counts");
        assert_eq!(tx.send((0..20).map(long).collect()), Sent::Dropped(0));
        assert!(tx.should_pause(0, 0), "20 long events held");
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(0));
        // Received (the batch is in the consumer's hands): caught up.
        assert!(!tx.should_pause(0, 0));
        assert_eq!(wake.read().ok(), Some(1), "the collector was woken");
    }

    #[test]
    fn a_sink_takes_every_batch_whole_and_nothing_is_queued() {
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let got: Arc<Mutex<Vec<u64>>> = Arc::default();
        let into = got.clone();
        let sink: Sink = Box::new(move |b: Vec<Event>| {
            if let Ok(mut g) = into.lock() {
                g.extend(b.iter().map(|e| e.seq));
            }
        });
        let (mut tx, rx) = direct(5, wake, sink);
        assert_eq!(tx.send((0..3).map(ev).collect()), Sent::Dropped(0));
        // Past the bound: still all of it (nothing waits in a queue).
        assert_eq!(tx.send((3..10).map(ev).collect()), Sent::Dropped(0));
        assert_eq!(tx.room(), 5);
        assert!(!tx.should_pause(1000, 1 << 30), "nothing to wait for");
        assert!(rx.is_empty());
        assert_eq!(*got.lock().expect("sink"), (0..10).collect::<Vec<u64>>());
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn batches_come_out_one_by_one_in_order_and_past_the_bound_are_dropped() {
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let (mut tx, rx) = channel(5, wake);
        assert_eq!(tx.send((0..3).map(ev).collect()), Sent::Dropped(0));
        assert_eq!(tx.send((3..7).map(ev).collect()), Sent::Dropped(2));
        assert_eq!(rx.len(), 5);
        let other = rx.clone();
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(0));
        assert_eq!(other.try_recv().map(|e| e.seq), Ok(1));
        let rest: Vec<u64> = rx
            .try_recv_batch()
            .unwrap_or_default()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(rest, vec![2, 3, 4]);
        assert!(rx.is_empty());
        assert_eq!(tx.send((7..9).map(ev).collect()), Sent::Dropped(0));
        let seqs: Vec<u64> = rx.try_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![7, 8]);
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
