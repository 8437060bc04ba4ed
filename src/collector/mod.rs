//! The collector: one thread that listens on a private Unix socket, reads
//! every scenario process's events and its stdout/stderr pipes, notices the
//! exact moment each process dies (a pidfd), and sends the events, in time
//! order, over a bounded channel to whoever shows them.
//!
//! It is event-driven: every descriptor (the socket, each connection, each
//! output pipe, each pidfd, and an eventfd for `finish`) is registered once
//! with one epoll instance, and the thread sleeps in `epoll_wait` until one
//! of them has something or the oldest waiting event's reorder window ends.
//! A wake-up costs in proportion to what is ready, not to how many
//! processes there are. Reads are big (64 KiB), lines are parsed where
//! they lie in the read buffer, and the events the window lets go in one
//! pass reach the consumer as one batch (`events.rs`).
//!
//! Or it has no thread (pull mode, [`Collector::start_pull`], the race
//! lab's runs): the consumer's thread runs the same loop, one turn at a
//! time, in [`Collector::recv_timeout`] whenever the channel is empty; a
//! process's write then wakes the consumer directly (one wake-up per batch
//! instead of two), and the end of a run never waits for a consumer.
//!
//! It trusts nothing it reads: lines that are not JSON, too long, of an
//! unknown kind, or connections that never say hello are counted in
//! [`Stats`] and dropped, and the run goes on. Nor does it trust who a peer
//! says it is: a connection is bound to the kernel's pid of its peer, a
//! hello must come from the pid its parent announced, and events about
//! other processes are taken only from their parent or reaper (see
//! `trust.rs` and PROTOCOL.md §9.6).

mod events;
mod exits;
#[cfg(test)]
mod identity_tests;
mod output;
mod pending;
mod serve;
mod trust;

pub use events::{Events, Sink};
pub(crate) use exits::pidfd_open;
pub use serve::CollectorHost;

use crate::protocol::{Body, Event, MAX_LINE_BYTES, RUNNER_ID, now_ns};
use events::{EventTx, Sent};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, getsockopt, recvmsg, sockopt::PeerCredentials,
};
use output::{Budget, OutPipe};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use trust::{Judge, Peer};

/// Events are held this long and sent sorted by time, so that events from
/// different processes that arrive out of order are put back in order.
pub const REORDER_WINDOW_NS: u64 = 40_000_000;
/// A connection must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// After `finish`, wait at most this long for the last bytes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// A hello nobody has vouched for yet (its parent's `spawn` has not
/// arrived) is held this long, then refused.
const HELD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 4096;
/// Connections that have not said hello yet, at most; past it the oldest
/// is closed. A real process says hello as soon as it connects.
const MAX_SILENT: usize = 1024;
/// Hellos waiting for their parent's `spawn`, at most.
const MAX_HELD: usize = 2048;
/// New connections taken per pass, so that a crowd at the door does not
/// keep the collector from reading the ones it has.
const MAX_ACCEPTS_PER_PASS: usize = 256;
/// One read of a connection or a pipe takes up to this much.
const READ_BYTES: usize = 64 * 1024;
/// Reads of one connection per wake-up, at most, so that one busy process
/// does not keep the collector from the others (epoll reports it again).
const MAX_READS_PER_WAKE: usize = 4;
/// Ready descriptors taken from one `epoll_wait`.
const MAX_READY: usize = 1024;
/// How often connections that have not said hello (or wait for their
/// parent's `spawn`) are checked for their deadline; when there is none,
/// the collector still looks around this rarely.
const HOUSEKEEPING_BUSY: Duration = Duration::from_millis(100);
const HOUSEKEEPING_IDLE: Duration = Duration::from_secs(1);
/// With a reorder window of at least [`COALESCE_MIN_WINDOW_NS`], the
/// connections are read, and events let go, at most once per this: the
/// events wait for their window anyway, and a busy run then wakes the
/// collector and its consumer a few hundred times a second instead of once
/// per event. Pidfds and pipes (whose stamps are taken on reading) still
/// wake it at once. Gated runs (no window) read everything at once.
const COALESCE: Duration = Duration::from_millis(5);
const COALESCE_MIN_WINDOW_NS: u64 = 10_000_000;
/// epoll tokens: the kind of source in the top bits, a number that is
/// never used twice below them.
const TOKEN_LISTENER: u64 = 0;
const TOKEN_WAKE: u64 = 1;
/// The epoll instance of the connections, itself watched by the main one.
const TOKEN_CONNS: u64 = 2;
/// The pidfd of the runner the app started ([`Collector::finish_when_exits`]).
const TOKEN_END: u64 = 3;
const CONNS_FLAGS: EpollFlags = EpollFlags::EPOLLIN.union(EpollFlags::EPOLLONESHOT);
const TOKEN_FIRST: u64 = 16;
/// Longest that events wait behind an announcement whose bytes have not
/// come through the pipe yet (a process stopped between the two).
const MAX_HOLD_NS: u64 = 200_000_000;

/// What the collector counted and dropped, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub events: AtomicU64,
    /// Events the consumer was too slow for (channel full).
    pub dropped: AtomicU64,
    pub not_json: AtomicU64,
    pub too_long: AtomicU64,
    pub unknown_kind: AtomicU64,
    pub no_hello: AtomicU64,
    /// Connections closed at accept, by why: from a live process outside
    /// the run, from another user, with no credentials to check, or past
    /// [`MAX_CONNECTIONS`].
    pub refused: AtomicU64,
    pub refused_other_user: AtomicU64,
    pub refused_no_credentials: AtomicU64,
    pub refused_over_limit: AtomicU64,
    /// Hellos for an id that is not theirs (not the pid its parent
    /// announced, already taken, or never announced).
    pub impostors: AtomicU64,
    /// Events of kinds only forkscope makes, or about a process that is
    /// not the sender's child.
    pub forged: AtomicU64,
    /// Events stamped later than the collector read them: a process's
    /// clock cannot be ahead of ours (one `CLOCK_MONOTONIC`), so they are
    /// shown when they arrived, not held in the window until that time.
    pub future_stamps: AtomicU64,
    /// Descriptors a hello named as its event pipe that were no pipe
    /// (closed; the connection stays and its own lines are read).
    pub bad_fds: AtomicU64,
    pub output_dropped_bytes: AtomicU64,
    /// Connections, output pipes and connections not yet accepted that
    /// were still there when the collector stopped waiting for them
    /// ([`DRAIN_TIMEOUT`] after the run ended): what they held is lost.
    pub unread_at_end: AtomicU64,
}

impl Stats {
    /// Lines and connections that were garbage.
    pub fn garbage(&self) -> u64 {
        self.not_json.load(Ordering::Relaxed)
            + self.too_long.load(Ordering::Relaxed)
            + self.unknown_kind.load(Ordering::Relaxed)
            + self.no_hello.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.refused_other_user.load(Ordering::Relaxed)
            + self.refused_no_credentials.load(Ordering::Relaxed)
            + self.refused_over_limit.load(Ordering::Relaxed)
            + self.impostors.load(Ordering::Relaxed)
            + self.forged.load(Ordering::Relaxed)
            + self.future_stamps.load(Ordering::Relaxed)
            + self.bad_fds.load(Ordering::Relaxed)
    }

    /// One line for humans, empty when nothing went wrong.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |n: &AtomicU64, what: &str| {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(&self.not_json, "lines that were not JSON");
        add(&self.too_long, "lines over 4 KiB");
        add(&self.unknown_kind, "lines of an unknown kind");
        add(&self.no_hello, "connections that never said hello");
        add(
            &self.refused,
            "connections refused (from a process outside the run)",
        );
        add(
            &self.refused_other_user,
            "connections refused (from another user)",
        );
        add(
            &self.refused_no_credentials,
            "connections refused (no credentials to check)",
        );
        add(
            &self.refused_over_limit,
            "connections refused (over the connection limit)",
        );
        add(&self.impostors, "hellos under an identity not theirs");
        add(&self.forged, "events forged for other processes");
        add(
            &self.future_stamps,
            "events stamped later than they arrived (shown when they arrived)",
        );
        add(&self.bad_fds, "event pipes that were not pipes");
        add(&self.dropped, "events dropped (display too slow)");
        add(
            &self.output_dropped_bytes,
            "bytes of output dropped (flood)",
        );
        add(
            &self.unread_at_end,
            "connections or pipes still unread when the run's drain timed out",
        );
        parts.join(", ")
    }
}

/// A running collector. Dropping it stops the thread (and so closes the
/// socket: there is no file to remove).
pub struct Collector {
    /// The address for [`crate::protocol::SOCKET_ENV`]: `@` and a random
    /// name in the abstract namespace.
    pub socket: PathBuf,
    /// Where to write `go` to a process of a gated run, by logical id.
    pub gates: Gates,
    /// The events, in time order, handed over in batches.
    pub events: Events,
    pub stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
    /// Written by [`Collector::finish`] to wake the thread at once.
    wake: Arc<EventFd>,
    /// The pid of the process the app started (see [`Collector::trust`]).
    root: Arc<AtomicI32>,
    /// A pidfd of that process, for the thread to take in
    /// ([`Collector::finish_when_exits`]).
    end_watch: Arc<std::sync::Mutex<Option<OwnedFd>>>,
    /// Waited for when dropped.
    thread: Option<Ending>,
}

/// How a collector's run is known to be over.
enum Ending {
    /// Its own thread ends with it.
    Thread(JoinHandle<()>),
    /// No thread: the consumer's thread reads ([`Collector::recv_timeout`]).
    Pulled(Box<Pull>),
}

/// Kits kept for the next run ([`CollectorHost`]): one at most.
type Shelf = Arc<std::sync::Mutex<Option<Kit>>>;

/// A pulled collector's run: its state, read by the consumer's thread
/// one turn at a time ([`Pull::pump`]), and where it is in its end.
struct Pull {
    /// None once the run is over (the event channel disconnects then).
    state: Option<State>,
    /// `finish` was seen: the reading ends by then at the latest.
    drain_deadline: Option<Instant>,
    /// The reading is over: what is left is handed over until then.
    handing_until: Option<Instant>,
    /// Where the kit goes when the run is over (a host's, for its next
    /// run), or nowhere (it is closed).
    shelf: Option<Shelf>,
}

thread_local! {
    /// This thread asked for a short slice already ([`Pull::pump`]).
    static EVENT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Pull {
    /// One turn of the collector on this thread, waiting at most `at_most`
    /// for something to read (never for a consumer: it is the caller).
    /// False once the run is over.
    fn pump(&mut self, at_most: Duration) -> bool {
        let Some(state) = self.state.as_mut() else {
            return false;
        };
        if !EVENT_THREAD.get() {
            // Run as soon as an event comes, as a collector thread does
            // (`sched.rs`): once per thread.
            EVENT_THREAD.set(true);
            crate::sched::event_thread();
        }
        if self.handing_until.is_none() {
            if state.turn(&mut self.drain_deadline, Some(at_most)) {
                return true;
            }
            state.end_of_reading();
            self.handing_until = Some(Instant::now() + DRAIN_TIMEOUT);
        }
        if state.hand_over(self.handing_until.unwrap_or_else(Instant::now)) {
            return true;
        }
        self.end();
        false
    }

    /// Closes everything of the run (its channel disconnects once the
    /// consumer has taken the rest) and puts the kit on the shelf.
    fn end(&mut self) {
        if let Some(state) = self.state.take() {
            let kit = state.into_kit();
            if let Some(shelf) = &self.shelf {
                *shelf.lock().unwrap_or_else(|p| p.into_inner()) = Some(kit);
            }
        }
    }
}

/// What a wait on a pulled collector got instead of an event.
enum Missed<T> {
    Timeout,
    /// The run is over and every event was taken.
    Disconnected,
    /// The other channel had this.
    Other(Result<T, crossbeam_channel::RecvError>),
}

/// The next event of a pulled collector, reading on this thread for at
/// most `timeout` (one turn at least), or what `other` has first.
fn pull_recv<T>(
    events: &Events,
    pull: &mut Pull,
    other: Option<&crossbeam_channel::Receiver<T>>,
    timeout: Duration,
) -> Result<Event, Missed<T>> {
    use crossbeam_channel::TryRecvError;
    let deadline = Instant::now() + timeout;
    let mut turned = false;
    loop {
        // What is in the channel first (the lab takes in everything there
        // before it decides), then whatever the processes wrote.
        match events.try_recv() {
            Ok(e) => return Ok(e),
            Err(TryRecvError::Disconnected) => return Err(Missed::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        if let Some(other) = other {
            match other.try_recv() {
                Ok(m) => return Err(Missed::Other(Ok(m))),
                Err(TryRecvError::Disconnected) => {
                    return Err(Missed::Other(Err(crossbeam_channel::RecvError)));
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        let now = Instant::now();
        if turned && now >= deadline {
            return Err(Missed::Timeout);
        }
        turned = true;
        // Over: the channel has the rest, then disconnects.
        pull.pump(deadline.saturating_duration_since(now));
    }
}

/// Wakes a pulled collector's reader from another thread (a shared
/// runner's exit line: [`Collector::recv_or`] looks at it after a turn).
#[derive(Clone)]
pub struct Waker(Arc<EventFd>);

impl Waker {
    pub fn wake(&self) {
        let _ = self.0.write(1);
    }
}

impl Collector {
    /// Listens on a fresh abstract socket and starts the thread.
    /// `capacity` bounds the channel to the consumer.
    pub fn start(capacity: usize, reorder_window_ns: u64) -> io::Result<Collector> {
        Collector::start_sink(capacity, reorder_window_ns, None)
    }

    /// [`Collector::start`], with the consumer's work on the collector's
    /// thread: `sink` gets every batch there, in order, instead of
    /// [`Collector::events`] (which gets none, and disconnects when the
    /// run is over). One wake-up less per batch (the consumer's thread is
    /// not woken), but the consumer must be quick: while `sink` runs,
    /// nothing is read. Nothing waits for a consumer: the collector never
    /// pauses, and drops nothing (`capacity` still bounds the reorder
    /// window, as [`Collector::start`]'s).
    pub fn start_direct(
        capacity: usize,
        reorder_window_ns: u64,
        sink: Sink,
    ) -> io::Result<Collector> {
        Collector::start_sink(capacity, reorder_window_ns, Some(sink))
    }

    fn start_sink(
        capacity: usize,
        reorder_window_ns: u64,
        sink: Option<Sink>,
    ) -> io::Result<Collector> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let (mut collector, mut state) =
            Collector::open_run(Kit::new(wake)?, capacity, reorder_window_ns, sink)
                .map_err(|back| back.0)?;
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                // Run as soon as an event comes, even in a crowd of
                // waking scenario processes (`sched.rs`).
                crate::sched::event_thread();
                state.run()
            })?;
        collector.thread = Some(Ending::Thread(thread));
        Ok(collector)
    }

    /// A run on `kit`: a fresh listening socket, the event channel (to
    /// `sink` if given), the run's state and the handles the app keeps of
    /// it. Who reads it (`Collector::thread`) is the caller's to say: a
    /// thread of its own, or the consumer's. The kit comes back with an
    /// error.
    fn open_run(
        kit: Kit,
        capacity: usize,
        reorder_window_ns: u64,
        sink: Option<Sink>,
    ) -> Result<(Collector, State), Box<(io::Error, Kit)>> {
        let bound = bind_abstract().and_then(|(listener, socket)| {
            listener.set_nonblocking(true)?;
            Ok((listener, socket))
        });
        let (listener, socket) = match bound {
            Ok(b) => b,
            Err(e) => return Err(Box::new((e, kit))),
        };
        let wake = kit.wake.clone();
        let (tx, events) = match sink {
            Some(sink) => events::direct(capacity, wake.clone(), sink),
            None => events::channel(capacity, wake.clone()),
        };
        let stats = Arc::new(Stats::default());
        let finish = Arc::new(AtomicBool::new(false));
        let mut state = State::with_kit(listener, tx, kit, stats.clone(), finish.clone())?;
        let gates = Gates::default();
        state.gates = gates.clone();
        state.window_ns = reorder_window_ns;
        let collector = Collector {
            socket,
            gates,
            events,
            stats,
            finish,
            wake,
            root: state.root.clone(),
            end_watch: state.end_watch.clone(),
            thread: None,
        };
        Ok((collector, state))
    }

    /// [`Collector::start`] with no thread of its own: the consumer's
    /// thread reads, in [`Collector::recv_timeout`] (or
    /// [`Collector::recv_or`]): it waits in the collector's `epoll` itself,
    /// reads, parses, reorders and puts what is due into
    /// [`Collector::events`], then takes from there. A process's write
    /// wakes the consumer's thread directly: one wake-up per batch instead
    /// of two. While the consumer does anything else nothing is read (the
    /// processes' writes wait in their full sockets and pipes: nothing is
    /// lost), so it is for a thread that loops on `recv_timeout` (the race
    /// lab's runs), not for a thread that must never block (a GUI's).
    /// `events.recv_timeout` alone reads nothing.
    pub fn start_pull(capacity: usize, reorder_window_ns: u64) -> io::Result<Collector> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        Collector::pulled(Kit::new(wake)?, None, capacity, reorder_window_ns)
    }

    /// A pulled collector's run on `kit`, which goes back to `shelf` (if
    /// any) when the run is over, or if it cannot start.
    fn pulled(
        kit: Kit,
        shelf: Option<Shelf>,
        capacity: usize,
        reorder_window_ns: u64,
    ) -> io::Result<Collector> {
        let (mut collector, state) =
            match Collector::open_run(kit, capacity, reorder_window_ns, None) {
                Ok(run) => run,
                Err(back) => {
                    let (e, kit) = *back;
                    if let Some(shelf) = &shelf {
                        *shelf.lock().unwrap_or_else(|p| p.into_inner()) = Some(kit);
                    }
                    return Err(e);
                }
            };
        collector.thread = Some(Ending::Pulled(Box::new(Pull {
            state: Some(state),
            drain_deadline: None,
            handing_until: None,
            shelf,
        })));
        Ok(collector)
    }

    /// Whether this collector is read by its consumer's thread
    /// ([`Collector::start_pull`], [`CollectorHost::start`]).
    pub fn is_pulled(&self) -> bool {
        matches!(self.thread, Some(Ending::Pulled(_)))
    }

    /// Wakes whoever reads a pulled collector (nothing else for one with
    /// a thread: its thread only wakes up once for nothing).
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// The next event, waiting at most `timeout` for it. A pulled
    /// collector reads on this thread meanwhile (one turn at least, even
    /// with a zero `timeout`); one with a thread only waits for the
    /// channel. Disconnected once the run is over and everything taken.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Event, crossbeam_channel::RecvTimeoutError> {
        use crossbeam_channel::RecvTimeoutError;
        let Some(Ending::Pulled(pull)) = &mut self.thread else {
            return self.events.recv_timeout(timeout);
        };
        match pull_recv::<()>(&self.events, pull, None, timeout) {
            Ok(e) => Ok(e),
            Err(Missed::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// [`Collector::recv_timeout`], but also returns when `other` has
    /// something: `Err(Some(msg))`; a timeout or a run over is `Err(None)`
    /// (see [`Events::recv_or`]). A pulled collector looks at `other`
    /// between its turns: whoever sends on it must also wake this reader
    /// ([`Collector::waker`]), or it is seen only at the next turn.
    pub fn recv_or<T>(
        &mut self,
        other: &crossbeam_channel::Receiver<T>,
        timeout: Duration,
    ) -> Result<Event, Option<Result<T, crossbeam_channel::RecvError>>> {
        let Some(Ending::Pulled(pull)) = &mut self.thread else {
            return self.events.recv_or(other, timeout);
        };
        match pull_recv(&self.events, pull, Some(other), timeout) {
            Ok(e) => Ok(e),
            Err(Missed::Other(m)) => Err(Some(m)),
            Err(_) => Err(None),
        }
    }

    /// Names the process the app started for this run (the runner): only
    /// it and its descendants may speak on the socket, and the runner core
    /// among them is the one that may say hello as `runner`. Call it
    /// before the runner can connect (before handing it its run spec).
    pub fn trust(&self, root_pid: u32) {
        let pid = i32::try_from(root_pid).unwrap_or(0);
        self.root.store(pid, Ordering::SeqCst);
    }

    /// Finishes (as [`Collector::finish`]) the moment process `pid` ends:
    /// the runner the app started, its own child, which nobody reaps
    /// before the app has called this. Then its last events are handed
    /// over at once, not when the app next looks whether it has ended.
    /// (Without a pidfd, the app's look is all there is.)
    pub fn finish_when_exits(&self, pid: u32) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or
        // -1; nothing else is touched.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let Ok(fd) = i32::try_from(fd) else {
            return;
        };
        if fd < 0 {
            return;
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by
        // nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        *self.end_watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(fd);
        let _ = self.wake.write(1);
    }

    /// Asks the thread to take in what is left and stop; the event channel
    /// disconnects when it has.
    pub fn finish(&self) {
        // Once is enough (a served run's thread goes on to the next run:
        // a second wake-up would only wake that one for nothing).
        if !self.finish.swap(true, Ordering::SeqCst) {
            let _ = self.wake.write(1);
        }
    }
}

/// Binds a listening socket in Linux's abstract namespace: it is no file,
/// so nothing is left behind however the app ends (the kernel frees the
/// name with the last fd), and no `TMPDIR` is too long for it. Any local
/// user could connect to a name they know, so the name is 128 random bits
/// (not guessable), and `accept` still refuses peers of another uid.
fn bind_abstract() -> io::Result<(UnixListener, PathBuf)> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..8 {
        let name = format!("forkscope-{}", random_hex_128()?);
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        match UnixListener::bind_addr(&addr) {
            Ok(l) => return Ok((l, PathBuf::from(format!("@{name}")))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// 16 bytes from the kernel's random source, as 32 hex digits.
fn random_hex_128() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut got = 0;
    while got < bytes.len() {
        let rest = &mut bytes[got..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // a live, writable buffer of that length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Nobody takes events any more: the thread must not wait for room.
        self.events.abandon();
        self.finish();
        match self.thread.take() {
            Some(Ending::Thread(t)) => {
                let _ = t.join();
            }
            Some(Ending::Pulled(mut pull)) => {
                // The end of the run, here: nothing waits for a consumer
                // (abandoned), only for what is still being written
                // (`DRAIN_TIMEOUT` at most, as a thread would).
                while pull.pump(Duration::from_millis(10)) {}
            }
            None => {}
        }
    }
}

/// The write side of every connection that said hello: in a gated run the
/// app tells a process to take its next step by writing `go` to it.
#[derive(Clone, Default)]
pub struct Gates(Arc<std::sync::Mutex<BTreeMap<String, Arc<UnixStream>>>>);

impl Gates {
    /// Tells a waiting process (`main.1`: `go`) or thread of a process
    /// (`main.1.t2`: `go main.1.t2` on `main.1`'s connection) to go; false
    /// if there is no such process.
    pub fn go(&self, id: &str) -> bool {
        use std::io::Write;
        let Ok(map) = self.0.lock() else {
            return false;
        };
        if let Some(s) = map.get(id) {
            return (&**s).write_all(b"go\n").is_ok();
        }
        // A thread: its name is its process's id and `.tN` parts.
        let mut owner = id;
        while let Some((head, last)) = owner.rsplit_once('.') {
            if !last.starts_with('t') {
                return false;
            }
            owner = head;
            if let Some(s) = map.get(owner) {
                return (&**s).write_all(format!("go {id}\n").as_bytes()).is_ok();
            }
        }
        false
    }

    fn insert(&self, proc_id: &str, stream: Arc<UnixStream>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(proc_id.to_string(), stream);
        }
    }

    /// Forgets `proc_id`'s gate if it is this connection (closed now; a
    /// program the process `exec`'d may have taken its place already).
    /// Without this every connection of a run stayed open until the run
    /// ended: a run that starts thousands of short-lived processes one
    /// after the other would hold thousands of descriptors.
    fn remove(&self, proc_id: &str, stream: &Arc<UnixStream>) {
        if let Ok(mut map) = self.0.lock()
            && map.get(proc_id).is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            map.remove(proc_id);
        }
    }
}

/// Who is on the other end of a connection, once it said hello.
struct Who {
    id: Arc<str>,
    pid: i32,
}

struct Conn {
    /// Shared with its gate (one descriptor: no `dup` per connection).
    stream: Arc<UnixStream>,
    /// Its epoll token.
    token: u64,
    /// Its lane in the reorder queue (`pending.rs`).
    lane: usize,
    /// Which epoll watches it (none while its hello is held).
    watched: Watch,
    /// What came on the socket itself (the hello; a probe without an
    /// event pipe sends everything here).
    lines: Lines,
    /// The process's event pipe (sent with its hello, or with a line
    /// after it), once its hello is accepted: read like the socket, into
    /// the same lane (PROTOCOL.md §1).
    events: Option<EventPipe>,
    who: Option<Who>,
    /// Descriptors that came before the hello was taken in.
    fds: Vec<OwnedFd>,
    /// More bytes followed the hello in the read that completed it: the
    /// descriptors of that read came with a later line, unless the hello
    /// names them (PROTOCOL.md §2).
    after_hello: bool,
    opened: Instant,
    peer_pid: i32,
    /// What the kernel said about the peer when it connected.
    peer: Peer,
    /// A pidfd of the peer as it connected (`SO_PEERPIDFD`), for the
    /// watch on its end once it said hello.
    pidfd: Option<OwnedFd>,
    /// A hello waiting for its parent's `spawn`; the connection is not read
    /// meanwhile.
    held: Option<Held>,
    dead: bool,
}

/// A line being put together from what one source sent.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    /// Inside a line that is too long: drop bytes up to the next newline.
    skipping: bool,
}

/// The read end of a process's event pipe, watched in `conn_epoll` beside
/// its connection.
struct EventPipe {
    fd: OwnedFd,
    token: u64,
    lines: Lines,
}

/// Which of a connection's two sources a read was from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Socket,
    Pipe,
}

/// A hello that is not vouched for yet, and the lines that came after it.
struct Held {
    hello: Event,
    rest: Vec<Vec<u8>>,
    since: Instant,
}

/// A logical id as its parent announced it (or as the runner took it).
struct Ident {
    pid: i32,
    /// Who announced it (empty for the runner).
    parent: String,
    /// A connection said hello as it.
    bound: bool,
}

/// What the collector knows of each process (for exits; adoption is found in `Tree`).
#[derive(Default)]
struct ProcInfo {
    pid: i32,
    exited: bool,
    pidfd: Option<OwnedFd>,
    /// The epoll token of `pidfd`.
    pidfd_token: u64,
}

/// What an epoll token stands for.
#[derive(Clone)]
enum Slot {
    Conn(usize),
    /// The event pipe of connection `usize`.
    Events(usize),
    Out(usize),
    Pidfd(String),
}

/// The reorder window holds at most this many times the channel's bound
/// (then connections wait, as for a slow consumer): 131,072 events with
/// the CLI's channel, 40 ms of a flood of 3 M events/s.
const MAX_PENDING_PER_CAPACITY: usize = 2;

/// The reorder window holds at most this many bytes ([`Event::bytes`]):
/// 16,384 events of the protocol's longest lines (4 KiB), or some
/// 300,000 of a flood's (beyond the bound in events). With the channel's
/// pause at half of [`events::CHANNEL_BYTES`], what the window and the
/// channel hold stops growing at about 100 MiB, whatever the processes
/// send; past that, only what a process's end drains (its pipes and its
/// socket, as much as they hold: `exited`) and output announced and
/// waiting for its bytes (at most 4 MiB a pipe) are still taken in.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// At most this many events go to the consumer in one batch: a batch's
/// memory (~250 KiB) is reused warm from batch to batch, where one batch of
/// every due event (tens of thousands in a flood) was fresh pages each time.
const BATCH_EVENTS: usize = 1024;

struct State {
    listener: UnixListener,
    tx: EventTx,
    /// Every descriptor the collector reads, registered once; the
    /// connections through `conn_epoll`, which the main one watches
    /// one-shot: it is armed again after [`COALESCE`] (if the window
    /// allows), and not while the consumer is far behind.
    epoll: Epoll,
    conn_epoll: Epoll,
    conns_armed: bool,
    /// Armed level-triggered (no pause between reads: a gated run, or the
    /// end of a run), so it stays armed after it fired: one `epoll_ctl`
    /// less per wake-up. Disarmed by hand when the consumer falls behind.
    conns_level: bool,
    /// What `epoll_wait` returns, kept from pass to pass.
    ready_main: Vec<EpollEvent>,
    ready_conns: Vec<EpollEvent>,
    /// Not before then.
    rearm_at: Instant,
    last_flush: Instant,
    /// Woken by [`Collector::finish`], and by a consumer that caught up.
    wake: Arc<EventFd>,
    /// `finish` was asked: nothing waits for the consumer any more.
    finishing: bool,
    /// The very end: what does not fit in the channel is dropped (and
    /// counted) instead of kept for the consumer ([`State::drain_to_consumer`]).
    no_wait: bool,
    /// What each epoll token stands for.
    slots: HashMap<u64, Slot>,
    next_token: u64,
    /// Reused for every read of a connection, and of a pipe.
    rbuf: Vec<u8>,
    pbuf: Vec<u8>,
    /// Events on their way to the consumer, sent as one batch.
    outbox: Vec<Event>,
    next_housekeeping: Instant,
    stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
    conns: Vec<Conn>,
    outs: Vec<OutPipe>,
    procs: BTreeMap<String, ProcInfo>,
    runner_pid: i32,
    /// Events waiting for the reorder window, with their arrival number.
    pending: pending::Pending,
    /// [`MAX_PENDING_BYTES`] (smaller in tests).
    max_pending_bytes: usize,
    /// Some output pipes are out of the epoll while the consumer is behind
    /// (see [`State::pause_out`]).
    outs_paused: bool,
    /// When the connection or pipe being read was read: no event of it
    /// was stamped later than that (see [`State::line`]).
    read_ns: u64,
    arrivals: u64,
    last_sent_t_ns: u64,
    uid: u32,
    closed: bool,
    /// Who is whose child, in the order the stream is sent.
    tree: Tree,
    gates: Gates,
    window_ns: u64,
    /// Output each process may still show (announced and read from pipes).
    budgets: BTreeMap<String, Budget>,
    /// The process the app started: the root of trust (0 = not known yet).
    root: Arc<AtomicI32>,
    /// Its pidfd, handed over by [`Collector::finish_when_exits`], and
    /// once taken in, watched in `epoll`: it ends the run when it is
    /// readable.
    end_watch: Arc<std::sync::Mutex<Option<OwnedFd>>>,
    end_pidfd: Option<OwnedFd>,
    judge: Judge,
    /// Every logical id announced by a parent's `spawn` (and `runner`).
    ids: BTreeMap<String, Ident>,
    /// Processes that handed us their output pipes.
    piped: BTreeSet<String>,
}

/// Parents and deaths as seen in the sorted stream. When a process dies,
/// its children still alive at that moment are orphans: the kernel hands
/// them to the nearest subreaper, the runner.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<String, TreeNode>,
}

#[derive(Default)]
struct TreeNode {
    parent: Option<String>,
    pid: i32,
    exited: bool,
}

impl Tree {
    /// Learns from one event; the orphans (id, pid) it makes.
    fn observe(&mut self, e: &Event) -> Vec<(String, i32)> {
        match &e.body {
            Body::Hello { parent, .. } => {
                let n = self.nodes.entry(e.proc_id.clone()).or_default();
                n.pid = e.pid;
                if n.parent.is_none() {
                    n.parent = parent.clone();
                }
            }
            Body::Spawn {
                child, child_pid, ..
            } => {
                let n = self.nodes.entry(child.clone()).or_default();
                n.parent = Some(e.proc_id.clone());
                n.pid = *child_pid;
            }
            Body::Exit { .. } => {
                self.nodes.entry(e.proc_id.clone()).or_default().exited = true;
                if e.proc_id == crate::protocol::RUNNER_ID {
                    return Vec::new();
                }
                let mut orphans = Vec::new();
                for (id, n) in &mut self.nodes {
                    if n.parent.as_deref() == Some(e.proc_id.as_str()) && !n.exited {
                        n.parent = Some(crate::protocol::RUNNER_ID.to_string());
                        orphans.push((id.clone(), n.pid));
                    }
                }
                return orphans;
            }
            _ => {}
        }
        Vec::new()
    }
}

/// Where a connection is watched: before its hello in the main epoll
/// (read at once, whatever the consumer does: a hello is due within
/// [`HELLO_TIMEOUT`]), after it in `conn_epoll`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    No,
    Main,
    Conns,
}

/// What one read of a connection found.
enum Read {
    /// The buffer was filled: there may be more.
    Full,
    /// Everything that was there.
    Drained,
    Nothing,
    Closed,
}

/// The answer to a hello.
#[derive(Debug, PartialEq, Eq)]
enum Vouch {
    Yes,
    /// Nobody announced this id yet: wait for the parent's `spawn`.
    Later,
    No,
}

/// What a collector thread keeps from run to run when it serves many
/// (`serve.rs`): its two epolls (the wake eventfd and the connections'
/// epoll stay registered in the main one), its buffers, and the token
/// count, which only grows, so that no token of one run ever names
/// something of the next.
struct Kit {
    epoll: Epoll,
    conn_epoll: Epoll,
    wake: Arc<EventFd>,
    ready_main: Vec<EpollEvent>,
    ready_conns: Vec<EpollEvent>,
    rbuf: Vec<u8>,
    pbuf: Vec<u8>,
    outbox: Vec<Event>,
    next_token: u64,
    /// How the connections' epoll is watched now (see `State`'s fields):
    /// the next run goes on from there.
    conns_armed: bool,
    conns_level: bool,
}

impl Kit {
    fn new(wake: Arc<EventFd>) -> io::Result<Kit> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let conn_epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&*wake, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE))?;
        epoll.add(&conn_epoll.0, EpollEvent::new(CONNS_FLAGS, TOKEN_CONNS))?;
        Ok(Kit {
            epoll,
            conn_epoll,
            wake,
            ready_main: Vec::new(),
            ready_conns: Vec::new(),
            rbuf: vec![0; READ_BYTES],
            pbuf: vec![0; READ_BYTES],
            outbox: Vec::new(),
            next_token: TOKEN_FIRST,
            conns_armed: true,
            conns_level: false,
        })
    }
}

impl State {
    /// A run's state on a kit of its own (the collector's tests).
    #[cfg(test)]
    fn new(
        listener: UnixListener,
        tx: EventTx,
        wake: Arc<EventFd>,
        stats: Arc<Stats>,
        finish: Arc<AtomicBool>,
    ) -> io::Result<State> {
        State::with_kit(listener, tx, Kit::new(wake)?, stats, finish).map_err(|b| b.0)
    }

    /// A run's state on a collector thread's `kit` (given back with the
    /// error if the run's listener cannot be watched).
    fn with_kit(
        listener: UnixListener,
        tx: EventTx,
        kit: Kit,
        stats: Arc<Stats>,
        finish: Arc<AtomicBool>,
    ) -> Result<State, Box<(io::Error, Kit)>> {
        let listen = EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LISTENER);
        if let Err(e) = kit.epoll.add(&listener, listen) {
            return Err(Box::new((e.into(), kit)));
        }
        let Kit {
            epoll,
            conn_epoll,
            wake,
            ready_main,
            ready_conns,
            rbuf,
            pbuf,
            outbox,
            next_token,
            conns_armed,
            conns_level,
        } = kit;
        Ok(State {
            listener,
            tx,
            epoll,
            conn_epoll,
            conns_armed,
            conns_level,
            ready_main,
            ready_conns,
            rearm_at: Instant::now(),
            last_flush: Instant::now(),
            wake,
            finishing: false,
            no_wait: false,
            slots: HashMap::new(),
            next_token,
            rbuf,
            pbuf,
            outbox,
            next_housekeeping: Instant::now(),
            stats,
            finish,
            conns: Vec::new(),
            outs: Vec::new(),
            procs: BTreeMap::new(),
            runner_pid: 0,
            pending: pending::Pending::default(),
            max_pending_bytes: MAX_PENDING_BYTES,
            outs_paused: false,
            read_ns: 0,
            arrivals: 0,
            last_sent_t_ns: 0,
            uid: nix::unistd::getuid().as_raw(),
            closed: false,
            tree: Tree::default(),
            gates: Gates::default(),
            window_ns: REORDER_WINDOW_NS,
            budgets: BTreeMap::new(),
            root: Arc::new(AtomicI32::new(0)),
            end_watch: Arc::default(),
            end_pidfd: None,
            judge: Judge::default(),
            ids: BTreeMap::new(),
            piped: BTreeSet::new(),
        })
    }

    fn run(&mut self) {
        let mut drain_deadline: Option<Instant> = None;
        while self.turn(&mut drain_deadline, None) {}
        self.end_of_reading();
        self.drain_to_consumer();
    }

    /// One turn of the collector's loop: waits (at most `at_most`, if
    /// given) for what is ready, reads it, and hands over what is due.
    /// False once the run's reading is over: closed, or finished and
    /// drained (or given up on, [`DRAIN_TIMEOUT`] after `finish`). A
    /// collector thread loops over it ([`State::run`]); a pulled collector
    /// takes one turn per [`Pull::pump`], on its consumer's thread.
    fn turn(&mut self, drain_deadline: &mut Option<Instant>, at_most: Option<Duration>) -> bool {
        if self.closed {
            return false;
        }
        if drain_deadline.is_none() && self.finish.load(Ordering::SeqCst) {
            *drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            self.finishing = true;
        }
        if let Some(d) = *drain_deadline {
            let backlog = os_readable_raw(self.listener.as_raw_fd());
            // A late process may still wait in the backlog (behind a
            // crowd of strangers, say).
            if self.conns.is_empty() && self.outs.is_empty() && !backlog {
                return false;
            }
            if Instant::now() >= d {
                // Given up on: said, not lost in silence.
                let left = self.conns.iter().filter(|c| !c.dead).count()
                    + self.outs.iter().filter(|o| !o.closed).count()
                    + usize::from(backlog);
                self.stats
                    .unread_at_end
                    .fetch_add(left as u64, Ordering::Relaxed);
                return false;
            }
        }
        self.arm_conns();
        self.resume_outs();
        let timeout = self.next_timeout(*drain_deadline, at_most);
        self.pass(timeout);
        if Instant::now() >= self.next_housekeeping {
            self.housekeeping();
        }
        self.flush(false);
        true
    }

    /// Reading is over: deaths nobody reported yet, and everything left
    /// in the reorder window, go into the outbox (as far as it has room).
    fn end_of_reading(&mut self) {
        self.check_all_exits();
        self.flush(true);
    }

    /// At the end of a run, what did not fit in the channel waits for the
    /// consumer to take some ([`DRAIN_TIMEOUT`] at most, not at all if
    /// nobody listens any more); what is left then is dropped and counted.
    fn drain_to_consumer(&mut self) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let give_up = Instant::now() + DRAIN_TIMEOUT;
        while self.hand_over(give_up) {
            // True asks the consumer to wake us when it has taken enough;
            // the timeout covers a consumer dropped meanwhile.
            let left = self.outbox.len() + self.pending.len();
            if left > 0 && self.tx.should_pause(left, self.pending.bytes()) {
                let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(10u8));
                let _ = self.wake.read();
            }
        }
    }

    /// One step of the end of a run: hands over what is left as far as
    /// the channel has room. True while some is still left (for when the
    /// consumer has taken some); false once all of it is handed over, or
    /// dropped and counted (nobody listens, the consumer is gone, or
    /// `give_up` has passed). Never waits: a pulled collector's consumer
    /// is the thread that calls this.
    fn hand_over(&mut self, give_up: Instant) -> bool {
        let left = self.outbox.len() + self.pending.len();
        if left == 0 || self.closed || self.tx.abandoned() || Instant::now() >= give_up {
            self.no_wait = true;
            self.flush(true);
            self.deliver();
            return false;
        }
        self.flush(true);
        true
    }

    /// Ends the run for good and gives back what the next run on this
    /// thread reuses. Everything of this run leaves the epolls and is
    /// closed: its listening socket (a late process of this run cannot
    /// even connect), its connections (their gates are forgotten), output
    /// pipes and pidfds. The event channel closes with `tx`.
    fn into_kit(mut self) -> Kit {
        let _ = self.epoll.delete(&self.listener);
        for i in 0..self.conns.len() {
            self.unwatch_conn(i);
            if let Some(p) = &self.conns[i].events {
                let _ = self.conn_epoll.delete(&p.fd);
            }
            let c = &self.conns[i];
            if let Some(who) = &c.who {
                self.gates.remove(&who.id, &c.stream);
            }
        }
        for o in self.outs.iter().filter(|o| !o.closed) {
            let _ = self.epoll.delete(&o.fd);
        }
        for p in self.procs.values() {
            if let Some(fd) = &p.pidfd
                && self.slots.contains_key(&p.pidfd_token)
            {
                let _ = self.epoll.delete(fd);
            }
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        outbox.clear();
        Kit {
            epoll: self.epoll,
            conn_epoll: self.conn_epoll,
            wake: self.wake,
            ready_main: self.ready_main,
            ready_conns: self.ready_conns,
            rbuf: self.rbuf,
            pbuf: self.pbuf,
            outbox,
            next_token: self.next_token,
            conns_armed: self.conns_armed,
            conns_level: self.conns_level,
        }
    }

    /// How long the next wait may sleep: until the oldest waiting event's
    /// window has passed, the next housekeeping, the end of the drain, or
    /// `at_most` (a pulled collector's caller waits no longer).
    /// Nothing else wakes the collector but its descriptors.
    fn next_timeout(
        &self,
        drain_deadline: Option<Instant>,
        at_most: Option<Duration>,
    ) -> EpollTimeout {
        let now = Instant::now();
        let mut until = self.next_housekeeping;
        if let Some(d) = drain_deadline {
            until = until.min(d);
        }
        let mut wait = until.saturating_duration_since(now);
        if let Some(m) = at_most {
            wait = wait.min(m);
        }
        if !self.conns_armed && !self.behind() {
            wait = wait.min(self.rearm_at.saturating_duration_since(now));
        }
        // With no room in the channel nothing due can go; the consumer
        // wakes us when it has caught up (`should_pause` asks it to).
        // Waiting on what is due would wake us every millisecond while a
        // consumer stalls (a window that stopped drawing, a blocked stdout).
        let stalled =
            || !self.finishing && self.tx.room() == 0 && self.tx.should_pause(self.outbox.len(), 0);
        if let Some(top_t_ns) = self.pending.first_t_ns()
            && !stalled()
        {
            let now_ns = now_ns();
            let spaced_ns = (self.last_flush + self.coalesce())
                .saturating_duration_since(now)
                .as_nanos() as u64;
            let due_ns = top_t_ns
                .saturating_add(self.window_ns)
                .max(now_ns + spaced_ns);
            let left_ns = if due_ns > now_ns {
                due_ns - now_ns
            } else {
                // Due, yet still here: held back behind an announcement
                // whose bytes have not come; they wake us when they come,
                // or the hold ends.
                self.outs
                    .iter()
                    .filter_map(OutPipe::oldest_kept_t_ns)
                    .map(|t| t.saturating_add(MAX_HOLD_NS).saturating_sub(now_ns))
                    .min()
                    .unwrap_or(0)
                    .max(1_000_000)
            };
            wait = wait.min(Duration::from_nanos(left_ns));
        }
        // epoll counts in milliseconds: round up, so that a wake-up never
        // comes before what it waits for.
        let ms = wait.as_nanos().div_ceil(1_000_000);
        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
    }

    /// Waits (at most `timeout`) for descriptors that have something, and
    /// reads them. Only ready descriptors cost anything.
    fn pass(&mut self, timeout: EpollTimeout) {
        let mut ready = std::mem::take(&mut self.ready_main);
        ready.resize(MAX_READY, EpollEvent::empty());
        let n = self.epoll.wait(&mut ready, timeout).unwrap_or(0);
        // Deaths last, after what the processes sent before them (as the
        // poll loop did): their `exit` drains their pipes first anyway.
        let mut died: Vec<(u64, String)> = Vec::new();
        for ev in ready.iter().take(n) {
            let token = ev.data();
            match token {
                TOKEN_LISTENER => self.accept(),
                TOKEN_WAKE => {
                    let _ = self.wake.read();
                    self.take_end_watch();
                }
                TOKEN_END => {
                    // The runner has ended, and with it every process of
                    // the run: what they sent is all in.
                    if let Some(fd) = self.end_pidfd.take() {
                        let _ = self.epoll.delete(&fd);
                    }
                    self.finish.store(true, Ordering::SeqCst);
                }
                TOKEN_CONNS if self.conns_level => {
                    // Level-triggered: still armed, unless the consumer
                    // is far behind (then as one-shot would be).
                    if !self.behind() {
                        self.read_ready_conns();
                    }
                    if self.behind() || !self.coalesce().is_zero() {
                        self.disarm_conns();
                    }
                }
                TOKEN_CONNS => {
                    // One-shot: disarmed now; armed again by `arm_conns`.
                    self.conns_armed = false;
                    self.rearm_at = Instant::now() + self.coalesce();
                    self.read_ready_conns();
                }
                _ => match self.slots.get(&token) {
                    Some(Slot::Conn(_) | Slot::Events(_)) => self.read_conn_slot(token),
                    Some(Slot::Out(i)) => {
                        let i = *i;
                        self.read_out(i);
                    }
                    Some(Slot::Pidfd(id)) => died.push((token, id.clone())),
                    None => {}
                },
            }
        }
        self.ready_main = ready;
        for (token, id) in died {
            self.slots.remove(&token);
            let current = self
                .procs
                .get(&id)
                .is_some_and(|p| p.pidfd.is_some() && p.pidfd_token == token);
            if current {
                self.process_died(&id);
            }
        }
        self.compact();
    }

    /// Reads what a connection's socket or its event pipe (by token) has.
    fn read_conn_slot(&mut self, token: u64) {
        match self.slots.get(&token) {
            Some(&Slot::Conn(i)) => self.read_conn(i),
            Some(&Slot::Events(i)) => self.read_events(i),
            _ => {}
        }
    }

    /// Reads the connections that have something (while the consumer
    /// keeps up: the rest stay ready for later).
    fn read_ready_conns(&mut self) {
        let mut ready = std::mem::take(&mut self.ready_conns);
        ready.resize(MAX_READY, EpollEvent::empty());
        let n = self
            .conn_epoll
            .wait(&mut ready, EpollTimeout::ZERO)
            .unwrap_or(0);
        for ev in ready.iter().take(n) {
            self.read_conn_slot(ev.data());
            if self.behind() {
                break;
            }
        }
        self.ready_conns = ready;
    }

    /// The consumer is so far behind that connections are not read, or the
    /// reorder window holds as many events as it may.
    ///
    /// The window's events do not count as the consumer's: at a flood's
    /// rate the window alone holds tens of thousands of events (40 ms at
    /// 1 M events/s), and counting them stopped the reading while the
    /// consumer had nothing to do (every process then waited on its full
    /// pipe). [`Self::flush`] never hands over more than the channel has
    /// room for, so nothing is dropped however many the window holds.
    ///
    /// Both are bounded in bytes as well as in events: a window of
    /// 4 KiB lines reaches [`MAX_PENDING_BYTES`] long before its bound in
    /// events. (The outbox, at most a batch or the channel's room, is
    /// counted in events only.)
    fn behind(&self) -> bool {
        !self.finishing
            && (self.tx.should_pause(self.outbox.len(), 0)
                || self.pending.len() >= MAX_PENDING_PER_CAPACITY * self.tx.capacity()
                || self.pending.bytes() >= self.max_pending_bytes)
    }

    /// How long reads of connections and releases of events are spaced.
    fn coalesce(&self) -> Duration {
        if self.window_ns >= COALESCE_MIN_WINDOW_NS && !self.finishing {
            COALESCE
        } else {
            Duration::ZERO
        }
    }

    /// Watches the connections again once their pause is over, unless the
    /// consumer is far behind (their processes' writes wait then, nothing
    /// is lost; the consumer wakes us when it caught up).
    fn arm_conns(&mut self) {
        if self.conns_armed || Instant::now() < self.rearm_at || self.behind() {
            return;
        }
        // With no pause between reads, level-triggered: it stays armed
        // (see `conns_level`).
        let level = self.coalesce().is_zero();
        let flags = if level {
            EpollFlags::EPOLLIN
        } else {
            CONNS_FLAGS
        };
        let mut ev = EpollEvent::new(flags, TOKEN_CONNS);
        self.conns_armed = self.epoll.modify(&self.conn_epoll.0, &mut ev).is_ok();
        self.conns_level = level && self.conns_armed;
    }

    /// Stops watching output pipe `i` while the consumer is behind, as the
    /// connections are not read then: reading it would read its process's
    /// connection too ([`Self::read_announcements`]), past the bounds.
    /// Its process's writes wait when the pipe is full; nothing is lost.
    /// It leaves the epoll: left there unread, level-triggered, it would
    /// wake us at once again, and asking for no events is not enough (a
    /// pipe whose writers are gone reports its hang-up regardless).
    fn pause_out(&mut self, i: usize) {
        if self.epoll.delete(&self.outs[i].fd).is_ok() {
            self.outs[i].paused = true;
            self.outs_paused = true;
        }
    }

    /// Watches the paused output pipes again once the consumer caught up.
    fn resume_outs(&mut self) {
        if !self.outs_paused || self.behind() {
            return;
        }
        self.outs_paused = false;
        for o in self.outs.iter_mut().filter(|o| o.paused && !o.closed) {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, o.token);
            if self.epoll.add(&o.fd, ev).is_ok() {
                o.paused = false;
            } else {
                self.outs_paused = true; // tried again on the next pass
            }
        }
    }

    /// Stops watching the connections (level-triggered) until `arm_conns`.
    fn disarm_conns(&mut self) {
        let mut ev = EpollEvent::new(EpollFlags::empty(), TOKEN_CONNS);
        let _ = self.epoll.modify(&self.conn_epoll.0, &mut ev);
        self.conns_armed = false;
        self.conns_level = false;
        self.rearm_at = Instant::now() + self.coalesce();
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Starts watching connection `i` (again).
    fn watch_conn(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.watched != Watch::No || c.dead {
            return;
        }
        let ev = EpollEvent::new(EpollFlags::EPOLLIN, c.token);
        let (epoll, watch) = if c.who.is_some() {
            (&self.conn_epoll, Watch::Conns)
        } else {
            (&self.epoll, Watch::Main)
        };
        if epoll.add(&c.stream, ev).is_ok() {
            c.watched = watch;
        } else {
            c.dead = true;
        }
    }

    /// Watches the runner's pidfd that [`Collector::finish_when_exits`]
    /// handed over (with a wake-up, which brings us here).
    fn take_end_watch(&mut self) {
        let fd = self
            .end_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(fd) = fd
            && self
                .epoll
                .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_END))
                .is_ok()
        {
            self.end_pidfd = Some(fd);
        }
    }

    /// The epoll that watches a connection so (none while its hello is
    /// held).
    fn epoll_of(&self, watched: Watch) -> Option<&Epoll> {
        match watched {
            Watch::No => None,
            Watch::Main => Some(&self.epoll),
            Watch::Conns => Some(&self.conn_epoll),
        }
    }

    /// Stops watching connection `i` (its hello is held: it is not read).
    fn unwatch_conn(&mut self, i: usize) {
        let c = &self.conns[i];
        if let Some(epoll) = self.epoll_of(c.watched) {
            let _ = epoll.delete(&c.stream);
        }
        self.conns[i].watched = Watch::No;
    }

    /// Takes `fd` as connection `i`'s event pipe, if it is a pipe (else it
    /// is closed and counted: the connection stays, its socket is read).
    /// Watched with the connections: paced alike, paused alike.
    fn watch_events(&mut self, i: usize, fd: OwnedFd) {
        let is_pipe = nix::sys::stat::fstat(&fd).is_ok_and(|st| {
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
                == nix::sys::stat::SFlag::S_IFIFO
        });
        if !is_pipe {
            self.stats.bad_fds.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // (Read without blocking by `read_nowait`, each read on its own:
        // no `fcntl` here, and a process that keeps a copy of the read end
        // cannot make our reads block by clearing `O_NONBLOCK` on it.)
        let token = self.token();
        if self
            .conn_epoll
            .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .is_err()
        {
            return;
        }
        self.slots.insert(token, Slot::Events(i));
        self.conns[i].events = Some(EventPipe {
            fd,
            token,
            lines: Lines::default(),
        });
    }

    /// Watches a process's pidfd: it turns readable when the process dies.
    fn watch_pidfd(&mut self, id: &str) {
        let token = self.token();
        let Some(info) = self.procs.get_mut(id) else {
            return;
        };
        let Some(fd) = &info.pidfd else {
            return;
        };
        if self
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .is_ok()
        {
            info.pidfd_token = token;
            self.slots.insert(token, Slot::Pidfd(id.to_string()));
        }
    }

    /// Drops the connections that are dead and the pipes that are closed
    /// (leaving epoll first: a gate holds a copy of a connection, so closing
    /// ours would not), and renumbers the rest.
    fn compact(&mut self) {
        if self.conns.iter().any(|c| c.dead) {
            for c in self.conns.iter().filter(|c| c.dead) {
                if let Some(who) = &c.who {
                    self.gates.remove(&who.id, &c.stream);
                }
                // Only this descriptor holds the accepted socket (the
                // peer has a socket of its own; a gate's copy of the `Arc`
                // is gone now, and nobody else gets one), so closing it
                // below takes it out of the epoll: no `epoll_ctl` then.
                // A gate still holding it (never, once removed) keeps the
                // descriptor open, so it must leave the epoll first.
                if Arc::strong_count(&c.stream) > 1
                    && let Some(epoll) = self.epoll_of(c.watched)
                {
                    let _ = epoll.delete(&c.stream);
                }
                self.slots.remove(&c.token);
                if let Some(p) = &c.events {
                    let _ = self.conn_epoll.delete(&p.fd);
                    self.slots.remove(&p.token);
                }
                self.pending.close_lane(c.lane);
            }
            self.conns.retain(|c| !c.dead);
            for (i, c) in self.conns.iter().enumerate() {
                self.slots.insert(c.token, Slot::Conn(i));
                if let Some(p) = &c.events {
                    self.slots.insert(p.token, Slot::Events(i));
                }
            }
        }
        if self.outs.iter().any(|o| o.closed) {
            for o in self.outs.iter().filter(|o| o.closed) {
                let _ = self.epoll.delete(&o.fd);
                self.slots.remove(&o.token);
            }
            self.outs.retain(|o| !o.closed);
            for (i, o) in self.outs.iter().enumerate() {
                self.slots.insert(o.token, Slot::Out(i));
            }
        }
    }

    /// Deadlines of connections that have not said hello (or wait for
    /// their parent's `spawn`).
    fn housekeeping(&mut self) {
        self.expire_silent_connections();
        self.compact();
        let waiting = self.conns.iter().any(|c| c.who.is_none());
        self.next_housekeeping = Instant::now()
            + if waiting {
                HOUSEKEEPING_BUSY
            } else {
                HOUSEKEEPING_IDLE
            };
    }

    /// The tests' way to let the collector take in what is there.
    #[cfg(test)]
    fn poll_once(&mut self) {
        self.arm_conns();
        self.resume_outs();
        self.pass(EpollTimeout::from(10u16));
    }

    /// Takes new connections. Only the run's own processes stay: a peer of
    /// another uid, or a live process that does not descend from the
    /// process the app started, is closed at once (so thousands of foreign
    /// connections cost nothing but their `accept`).
    fn accept(&mut self) {
        for _ in 0..MAX_ACCEPTS_PER_PASS {
            // Non-blocking from the start (one `accept4`, no `ioctl`).
            let stream = match nix::sys::socket::accept4(
                self.listener.as_raw_fd(),
                nix::sys::socket::SockFlag::SOCK_CLOEXEC
                    | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            ) {
                // SAFETY: `accept4` just returned this fd; nothing else owns it.
                Ok(fd) => unsafe { UnixStream::from_raw_fd(fd) },
                Err(_) => return,
            };
            let Ok(cred) = getsockopt(&stream, PeerCredentials) else {
                self.stats
                    .refused_no_credentials
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let peer_pid = cred.pid();
            // Pid 0: a peer in a PID namespace we cannot see into, which
            // the run's processes never are (they descend from our child).
            if peer_pid <= 0 {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if cred.uid() != self.uid {
                self.stats
                    .refused_other_user
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The peer's own pidfd: its trust without `/proc`, and later
            // the watch on its end (no `pidfd_open` at its hello).
            let pidfd = trust::peer_pidfd(&stream);
            let peer = self.judge.classify_peer(
                peer_pid,
                pidfd.as_ref(),
                self.root.load(Ordering::SeqCst),
            );
            if peer == Peer::Foreign {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                self.stats
                    .refused_over_limit
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.close_oldest_silent();
            let token = self.token();
            self.slots.insert(token, Slot::Conn(self.conns.len()));
            let lane = self.pending.open_lane();
            self.conns.push(Conn {
                stream: Arc::new(stream),
                token,
                lane,
                watched: Watch::No,
                lines: Lines::default(),
                events: None,
                who: None,
                fds: Vec::new(),
                after_hello: false,
                opened: Instant::now(),
                peer_pid,
                peer,
                pidfd,
                held: None,
                dead: false,
            });
            self.watch_conn(self.conns.len() - 1);
            // Its hello is due within HELLO_TIMEOUT: look again soon.
            self.next_housekeeping = self
                .next_housekeeping
                .min(Instant::now() + HOUSEKEEPING_BUSY);
        }
    }

    /// Keeps at most [`MAX_SILENT`] connections that have not said hello.
    fn close_oldest_silent(&mut self) {
        let silent = |c: &Conn| c.who.is_none() && c.held.is_none() && !c.dead;
        if self.conns.iter().filter(|c| silent(c)).count() < MAX_SILENT {
            return;
        }
        if let Some(c) = self.conns.iter_mut().find(|c| silent(c)) {
            c.dead = true;
            self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what a connection sent (a few reads at most, so that the
    /// others get their turn); marks it dead when it closed.
    fn read_conn(&mut self, i: usize) {
        for _ in 0..MAX_READS_PER_WAKE {
            if self.conns[i].dead || self.conns[i].held.is_some() {
                return;
            }
            match self.read_conn_once(i) {
                // More may be there: read again (unless the consumer is
                // far behind; epoll reports it again).
                Read::Full if !self.behind() => {}
                Read::Full | Read::Drained | Read::Nothing => return,
                Read::Closed => {
                    self.conn_closed(i);
                    return;
                }
            }
        }
    }

    /// The socket of connection `i` ended (the process exited, or
    /// `exec`'d a program): what is left in its event pipe is read now,
    /// before the connection goes. Everything the process wrote there is
    /// in already (its writes returned before it could close the socket);
    /// nothing waits for the pipe's own end of file, which a child forked
    /// a moment ago may still hold back.
    fn conn_closed(&mut self, i: usize) {
        self.drain_events(i);
        self.conns[i].dead = true;
    }

    /// Reads everything in connection `i`'s event pipe now: up to a short
    /// read (a pipe's short read took all it held), and no more than
    /// what it held when the drain began (a process that keeps its pipe
    /// full must not hold the collector here).
    fn drain_events(&mut self, i: usize) {
        let Some(p) = &self.conns[i].events else {
            return;
        };
        // (Empty: no read. Its end of file is epoll's to report: nothing
        // waits for it.)
        let unread = unread_bytes(&p.fd);
        if unread == 0 {
            return;
        }
        for _ in 0..reads_for(unread) {
            match self.read_events_once(i) {
                Read::Full => {}
                Read::Drained | Read::Nothing | Read::Closed => break,
            }
        }
    }

    /// Reads what a process wrote into its event pipe (a few reads at
    /// most, as [`Self::read_conn`]).
    fn read_events(&mut self, i: usize) {
        for _ in 0..MAX_READS_PER_WAKE {
            if self.conns[i].dead {
                return;
            }
            match self.read_events_once(i) {
                Read::Full if !self.behind() => {}
                _ => return,
            }
        }
    }

    /// One read (up to [`READ_BYTES`]) of connection `i`'s event pipe,
    /// every complete line handled as if it came on the socket. At end of
    /// file the pipe is closed (a partial last line is dropped); the
    /// connection stays.
    fn read_events_once(&mut self, i: usize) -> Read {
        let Some(p) = &self.conns[i].events else {
            return Read::Closed;
        };
        let mut chunk = std::mem::take(&mut self.rbuf);
        if chunk.len() < READ_BYTES {
            chunk = vec![0; READ_BYTES];
        }
        let read = match read_nowait(&p.fd, &mut chunk) {
            Ok(0) | Err(nix::errno::Errno::EBADF | nix::errno::Errno::EINVAL) => Read::Closed,
            Ok(n) => {
                self.read_ns = now_ns();
                if !self.take_lines(i, Source::Pipe, &chunk[..n]) {
                    // (Cannot happen: lines after the hello never close.)
                    self.conns[i].dead = true;
                }
                if n < chunk.len() {
                    // A short read of a pipe: it was empty then.
                    Read::Drained
                } else {
                    Read::Full
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Read::Nothing,
            Err(_) => Read::Closed,
        };
        if self.rbuf.is_empty() {
            self.rbuf = chunk;
        }
        if let Read::Closed = read
            && let Some(p) = self.conns[i].events.take()
        {
            let _ = self.conn_epoll.delete(&p.fd);
            self.slots.remove(&p.token);
        }
        read
    }

    /// Reads output from a pipe. The process announces what its `print`
    /// steps write (an `output` event sent before the write). The pipe is
    /// read *first* and the connection after: every announcement of the
    /// bytes just read is then in, so each byte goes out exactly once,
    /// either as its announced event or, if nobody announced it (a program
    /// it exec'd, an error message), as new output.
    ///
    /// While the consumer is behind, only bytes already announced are
    /// read (the events behind them in the window wait for them): the
    /// rest would need the connection read, past the bounds, so the pipe
    /// waits ([`Self::pause_out`]).
    fn read_out(&mut self, i: usize) {
        if !self.behind() {
            self.read_out_once(i, u64::MAX, None);
            return;
        }
        match self.outs[i].awaited_bytes() {
            0 => self.pause_out(i),
            awaited => {
                self.read_out_once(i, u64::MAX, Some(awaited));
            }
        }
    }

    /// One read of pipe `i` (see [`Self::read_out`]); false when nothing
    /// was there or the pipe is closed. With `announced`, at most that
    /// many bytes, all of them announced already: the connection is not
    /// read.
    fn read_out_once(&mut self, i: usize, max_t_ns: u64, announced: Option<usize>) -> bool {
        if self.outs[i].closed {
            return false;
        }
        // Its own buffer: reading the connection below uses `rbuf`, and
        // what that reads may drain other pipes (see `exited`).
        let mut buf = std::mem::take(&mut self.pbuf);
        if buf.len() < READ_BYTES {
            buf = vec![0; READ_BYTES];
        }
        let n = announced.map_or(buf.len(), |a| a.min(buf.len()));
        let got = self.outs[i].read_raw(&mut buf[..n]);
        let id = self.outs[i].proc_id.clone();
        if announced.is_none() {
            self.read_announcements(&id);
        }
        let budget = self.budgets.entry(id).or_default();
        let events = match got {
            Some(n) => self.outs[i].take(&buf[..n], &self.stats, budget, max_t_ns),
            None if self.outs[i].closed => self.outs[i].close(&self.stats, budget),
            None => Vec::new(),
        };
        if self.pbuf.is_empty() {
            self.pbuf = buf;
        }
        for e in events {
            self.queue(e);
        }
        got.is_some()
    }

    /// Reads everything a process has sent on its connection so far (its
    /// `output` announcements among it).
    fn read_announcements(&mut self, id: &str) {
        for j in 0..self.conns.len() {
            if self.conns[j].who.as_ref().is_none_or(|w| &*w.id != id) {
                continue;
            }
            // The socket first: the event pipe may still be on its way
            // there, with the lines sent before it (its end of file drains
            // the pipe too). Up to a read that finds nothing: the
            // exactness of output (PROTOCOL.md §7.2) needs every
            // announcement that is in. No more than was in when this
            // began, though: a process that keeps its socket full must not
            // hold the collector here. (Nothing there: no read. An end of
            // file is epoll's to report; the event pipe is drained below
            // either way.)
            let unread = unread_bytes(&*self.conns[j].stream);
            let reads = if unread == 0 { 0 } else { reads_for(unread) };
            for _ in 0..reads {
                if self.conns[j].dead || self.conns[j].held.is_some() {
                    break;
                }
                match self.read_conn_once(j) {
                    Read::Full | Read::Drained => {}
                    Read::Nothing => break,
                    Read::Closed => self.conn_closed(j),
                }
            }
            if self.conns[j].held.is_none() {
                self.drain_events(j);
            }
        }
    }

    /// Reads once (up to [`READ_BYTES`]) and handles every complete line.
    fn read_conn_once(&mut self, i: usize) -> Read {
        // The shared buffer, unless a read further up the stack has it (an
        // event's handling may read another connection: see `exited`).
        let mut chunk = std::mem::take(&mut self.rbuf);
        if chunk.len() < READ_BYTES {
            chunk = vec![0; READ_BYTES];
        }
        let read = self.read_conn_into(i, &mut chunk);
        if self.rbuf.is_empty() {
            self.rbuf = chunk;
        }
        read
    }

    fn read_conn_into(&mut self, i: usize, chunk: &mut [u8]) -> Read {
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let fd = self.conns[i].stream.as_raw_fd();
            let mut iov = [IoSliceMut::new(chunk)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                for fd in raw {
                                    // SAFETY: SCM_RIGHTS gave us new fds that
                                    // nothing else owns.
                                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Read::Nothing,
                Err(_) => return Read::Closed,
            }
        };
        if n == 0 {
            return Read::Closed;
        }
        self.read_ns = now_ns();
        let conn = &mut self.conns[i];
        let mut late = None;
        if conn.who.is_none() && conn.held.is_none() {
            // Only the first three are used (stdout, stderr, events);
            // more would only hold our fds.
            conn.fds.extend(fds);
            conn.fds.truncate(3);
        } else if !fds.is_empty() {
            // After the hello: the first descriptor of a message is the
            // event pipe if the connection has none; any other is not
            // part of the protocol: closed and counted (PROTOCOL.md §2).
            let mut fds = fds.into_iter();
            if conn.events.is_none() {
                late = fds.next();
            }
            if fds.next().is_some() {
                self.stats.not_json.fetch_add(1, Ordering::Relaxed);
            }
        }
        let ok = self.take_lines(i, Source::Socket, &chunk[..n]);
        if let Some(fd) = late
            && ok
            && !self.conns[i].dead
        {
            // Taken after the lines of this read, which came before it
            // or with it: the pipe holds only later ones.
            self.watch_events(i, fd);
        }
        if !ok {
            Read::Closed
        } else if n < chunk.len() {
            // A short read of a stream socket: nothing more was there.
            Read::Drained
        } else {
            Read::Full
        }
    }

    /// Cuts what a connection sent into lines and handles each complete
    /// one where it lies (no copy, unless a line came in two reads); false
    /// closes the connection.
    fn take_lines(&mut self, i: usize, from: Source, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let (piece, complete) = match memchr::memchr(b'\n', data) {
                Some(k) => (&data[..k], true),
                None => (data, false),
            };
            data = if complete {
                &data[piece.len() + 1..]
            } else {
                &[]
            };
            let conn = &mut self.conns[i];
            if conn.who.is_none() && conn.held.is_none() && complete {
                // (Only the hello is handled with no `who`: what follows
                // it in this read tells whose the read's descriptors are.)
                conn.after_hello = !data.is_empty();
            }
            let lines = match (from, &mut conn.events) {
                (Source::Socket, _) => &mut conn.lines,
                (Source::Pipe, Some(p)) => &mut p.lines,
                (Source::Pipe, None) => return true,
            };
            if lines.skipping {
                // Inside a line that was too long: up to its newline.
                lines.skipping = !complete;
                continue;
            }
            if lines.buf.len() + piece.len() >= MAX_LINE_BYTES {
                lines.buf.clear();
                lines.skipping = !complete;
                self.stats.too_long.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !complete {
                lines.buf.extend_from_slice(piece);
                continue;
            }
            let ok = if lines.buf.is_empty() {
                self.one_line(i, piece)
            } else {
                let mut line = std::mem::take(&mut lines.buf);
                line.extend_from_slice(piece);
                self.one_line(i, &line)
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// One complete line: kept while its connection's hello is held.
    fn one_line(&mut self, i: usize, line: &[u8]) -> bool {
        if let Some(held) = &mut self.conns[i].held {
            held.rest.push(line.to_vec());
            return true;
        }
        self.line(i, line)
    }

    /// Handles one complete line; false closes the connection.
    fn line(&mut self, i: usize, line: &[u8]) -> bool {
        let mut event: Event = match Event::from_line(line) {
            Ok(e) => e,
            Err(err) => {
                let unknown = err.to_string().contains("unknown variant");
                let counter = if unknown {
                    &self.stats.unknown_kind
                } else {
                    &self.stats.not_json
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // Garbage before hello: we do not know who this is.
                return self.conns[i].who.is_some();
            }
        };
        // Read after it was written, and it was written after it was
        // stamped: a later stamp is a lie that would hold the event (and
        // the window's room) until then. (`read_ns` is that of this line's
        // read or of a later one: it only grows.)
        if event.t_ns > self.read_ns {
            event.t_ns = self.read_ns;
            self.stats.future_stamps.fetch_add(1, Ordering::Relaxed);
        }
        match &self.conns[i].who {
            None => self.hello(i, event),
            Some(who) => {
                if matches!(event.body, Body::Hello { .. }) {
                    self.stats.not_json.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if Self::about_others(&event.body) {
                    let (who_id, who_pid) = (who.id.clone(), who.pid);
                    if !self.authorize(&who_id, who_pid, &mut event) {
                        self.stats.forged.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                } else {
                    // What most events are: about the sender (as
                    // `authorize` would have it, without its lookups).
                    about_sender(&mut event, &who.id, who.pid);
                }
                let Some(who) = &self.conns[i].who else {
                    return true;
                };
                if let Body::Output { stream, text } = &event.body {
                    let (id, stream, n) = (who.id.to_string(), *stream, text.len());
                    if let Some(o) = self
                        .outs
                        .iter_mut()
                        .find(|o| o.proc_id == id && o.stream == stream && !o.closed)
                    {
                        // Shown when its bytes come through the pipe.
                        o.announce(event, n);
                        return true;
                    }
                    if self.piped.contains(&id) {
                        // Its pipe is closed: these bytes were never written.
                        return true;
                    }
                    // No pipe of ours (the runner's own output): shown as sent.
                    let budget = self.budgets.entry(id.clone()).or_default();
                    if budget.take(n) < n {
                        let warning = budget.dropped(&self.stats, n, &id, who.pid, event.t_ns);
                        if let Some(w) = warning {
                            self.queue(w);
                        }
                        return true;
                    }
                }
                let spawned = match &event.body {
                    Body::Spawn { child, .. } => Some(child.clone()),
                    _ => None,
                };
                let lane = self.conns[i].lane;
                self.observe(lane, event);
                if let Some(child) = spawned {
                    self.release_held(&child);
                }
                true
            }
        }
    }

    /// Checks an event from a process that said hello as `who_id`, and
    /// makes it say who it is about. False: it is forged, drop it.
    ///
    /// - `deadlock`, `adopted` and `sample` are made by the app or the
    ///   collector, never by a process;
    /// - `race` is the writer's report of its own lost update (§7.6): about
    ///   the sender only;
    /// - `reaped` is about a child of the sender (the runner core reaps
    ///   orphans too, so it may name anyone), never about the sender;
    /// - `exit` is about the sender itself, or about a child it killed;
    /// - `signal` targets a child of the sender;
    /// - `spawn` announces a logical id nobody has yet;
    /// - everything else is about the sender.
    fn authorize(&mut self, who_id: &str, who_pid: i32, event: &mut Event) -> bool {
        match &mut event.body {
            Body::Race { .. } if event.proc_id != who_id => false,
            Body::Deadlock { .. } | Body::Adopted { .. } | Body::Sample { .. } => false,
            Body::Reaped { by, by_pid, .. } => {
                *by = who_id.to_string();
                *by_pid = who_pid;
                if event.proc_id.is_empty() {
                    // The reaper may not know its name: find it by pid.
                    match self
                        .ids
                        .iter()
                        .find(|(_, n)| n.pid == event.pid && n.pid > 0)
                    {
                        Some((id, _)) => event.proc_id = id.clone(),
                        // Nobody we know; only the runner reaps strangers.
                        None => return who_id == RUNNER_ID,
                    }
                }
                if event.proc_id == who_id {
                    return false;
                }
                match self.ids.get(&event.proc_id) {
                    Some(n) if n.parent == who_id || who_id == RUNNER_ID => {
                        event.pid = n.pid;
                        true
                    }
                    // The runner core reaps orphans, and may be heard
                    // before the orphan's parent announced it (a `spawn`
                    // still unread on the parent's connection): the
                    // subreaper's word stands for an id not known yet.
                    None => who_id == RUNNER_ID,
                    Some(_) => false,
                }
            }
            // The view shows the target stopped or continued: only its
            // parent signals it (the runner's `signal` steps name children).
            Body::Signal {
                target, target_pid, ..
            } => match self.ids.get(target.as_str()) {
                Some(n) if n.parent == who_id => {
                    *target_pid = n.pid;
                    if event.proc_id != who_id {
                        event.proc_id = who_id.to_string();
                    }
                    event.pid = who_pid;
                    true
                }
                _ => false,
            },
            Body::Exit { .. } if event.proc_id != who_id => match self.ids.get(&event.proc_id) {
                Some(n) if n.parent == who_id => {
                    event.pid = n.pid;
                    true
                }
                _ => false,
            },
            Body::Spawn {
                child, child_pid, ..
            } => {
                if child.is_empty() || self.ids.contains_key(child.as_str()) {
                    return false;
                }
                self.ids.insert(
                    child.clone(),
                    Ident {
                        pid: *child_pid,
                        parent: who_id.to_string(),
                        bound: false,
                    },
                );
                if event.proc_id != who_id {
                    event.proc_id = who_id.to_string();
                }
                event.pid = who_pid;
                true
            }
            _ => {
                about_sender(event, who_id, who_pid);
                true
            }
        }
    }

    /// Whether [`Self::authorize`] has more to check for this kind than
    /// that it is about its sender.
    fn about_others(body: &Body) -> bool {
        matches!(
            body,
            Body::Race { .. }
                | Body::Deadlock { .. }
                | Body::Adopted { .. }
                | Body::Sample { .. }
                | Body::Reaped { .. }
                | Body::Signal { .. }
                | Body::Exit { .. }
                | Body::Spawn { .. }
        )
    }

    /// May connection `i` take the identity its hello claims?
    fn vouch(&self, i: usize, hello: &Event) -> Vouch {
        let conn = &self.conns[i];
        if hello.proc_id == RUNNER_ID {
            // The runner core is the first of the run's processes to
            // connect, before it forks anyone: the first descendant of the
            // process the app started that claims it gets it.
            return if conn.peer == Peer::Ours && !self.ids.contains_key(RUNNER_ID) {
                Vouch::Yes
            } else {
                Vouch::No
            };
        }
        let ended = || self.procs.get(&hello.proc_id).is_some_and(|p| p.exited);
        match self.ids.get(&hello.proc_id) {
            // Again after an exec (same pid), but not once it has ended:
            // its pid may belong to someone else by now.
            Some(n) if n.bound => {
                if n.pid == conn.peer_pid && !ended() {
                    Vouch::Yes
                } else {
                    Vouch::No
                }
            }
            // The pid its parent announced (0: it could not learn it).
            Some(n) if n.pid > 0 && n.pid == conn.peer_pid => Vouch::Yes,
            Some(_) => Vouch::No,
            None => Vouch::Later,
        }
    }

    fn hello(&mut self, i: usize, event: Event) -> bool {
        let Body::Hello { .. } = &event.body else {
            self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if event.proc_id.is_empty() {
            self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.vouch(i, &event) {
            Vouch::Yes => self.bind(i, event),
            Vouch::Later if self.conns.iter().filter(|c| c.held.is_some()).count() < MAX_HELD => {
                self.conns[i].held = Some(Held {
                    hello: event,
                    rest: Vec::new(),
                    since: Instant::now(),
                });
                // Not read until its parent vouches for it.
                self.unwatch_conn(i);
                true
            }
            Vouch::Later | Vouch::No => {
                self.stats.impostors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A parent announced `id`: the hellos that waited for it are let in
    /// (if they come from the announced pid) or refused.
    fn release_held(&mut self, id: &str) {
        let waiting: Vec<usize> = (0..self.conns.len())
            .filter(|&j| {
                !self.conns[j].dead
                    && self.conns[j]
                        .held
                        .as_ref()
                        .is_some_and(|h| h.hello.proc_id == id)
            })
            .collect();
        for j in waiting {
            let Some(held) = self.conns[j].held.take() else {
                continue;
            };
            if self.vouch(j, &held.hello) != Vouch::Yes || !self.bind(j, held.hello) {
                self.stats.impostors.fetch_add(1, Ordering::Relaxed);
                self.conns[j].dead = true;
                continue;
            }
            // Read again: what it sent meanwhile wakes the collector.
            self.watch_conn(j);
            for line in held.rest {
                if self.conns[j].dead {
                    break;
                }
                if let Some(h) = &mut self.conns[j].held {
                    h.rest.push(line); // cannot happen: bound connections are not held
                } else if !self.line(j, &line) {
                    self.conns[j].dead = true;
                }
            }
        }
    }

    /// Binds connection `i` to the identity of its (vouched) hello.
    fn bind(&mut self, i: usize, mut event: Event) -> bool {
        let ident = self
            .ids
            .entry(event.proc_id.clone())
            .or_insert_with(|| Ident {
                pid: self.conns[i].peer_pid,
                parent: String::new(),
                bound: false,
            });
        // Bound before: the same process again after an `exec` (a traced
        // Python program's `main`, a program behind the shim). Its first
        // hello said who it is; this one says nothing new, and passing it
        // on would show the process starting twice.
        let again = std::mem::replace(&mut ident.bound, true);
        let conn = &mut self.conns[i];
        // The same socket (non-blocking): a `go` is 3 bytes and the process
        // reads them at once, so it never fills.
        self.gates.insert(&event.proc_id, Arc::clone(&conn.stream));
        // The kernel's word on the pid beats the process's, and the
        // parent's on who the parent is.
        if conn.peer_pid > 0 {
            event.pid = conn.peer_pid;
        }
        if let (Body::Hello { parent, .. }, Some(n)) =
            (&mut event.body, self.ids.get(&event.proc_id))
            && !n.parent.is_empty()
        {
            *parent = Some(n.parent.clone());
        }
        let id = event.proc_id.clone();
        let pid = event.pid;
        conn.who = Some(Who {
            id: Arc::from(id.as_str()),
            pid,
        });
        let fds = std::mem::take(&mut conn.fds);
        let meanings = match &mut event.body {
            Body::Hello { fds, .. } => std::mem::take(fds),
            _ => Vec::new(),
        };
        let later_line = conn.after_hello && meanings.is_empty() && fds.len() != 2;
        let [out, err, events] = if later_line {
            // A hello that names no descriptors, read together with the
            // line after it: the read's descriptors came with that line
            // (the kernel hands a message's descriptors over with its
            // first bytes, and ends the read with that message), so they
            // are the event pipe and any more, as after the hello.
            let mut fds = fds.into_iter();
            let events = fds.next();
            if fds.next().is_some() {
                self.stats.not_json.fetch_add(1, Ordering::Relaxed);
            }
            [None, None, events]
        } else {
            sort_fds(fds, &meanings)
        };
        if let (Some(out), Some(err)) = (out, err) {
            for (fd, stream) in [
                (out, crate::protocol::Stream::Stdout),
                (err, crate::protocol::Stream::Stderr),
            ] {
                let token = self.token();
                // Read without blocking (a wake-up may be stale), by
                // `read_nowait`: no `fcntl` per pipe.
                let ev = EpollEvent::new(EpollFlags::EPOLLIN, token);
                let mut pipe = OutPipe::new(fd, &id, pid, stream, token);
                if self.epoll.add(&pipe.fd, ev).is_err() {
                    pipe.closed = true;
                }
                self.slots.insert(token, Slot::Out(self.outs.len()));
                self.outs.push(pipe);
            }
            self.piped.insert(id.clone());
        }
        if let Some(fd) = events {
            self.watch_events(i, fd);
        }
        if id == crate::protocol::RUNNER_ID {
            self.runner_pid = pid;
        }
        // From now on read with the other connections (paced, and paused
        // while the consumer is far behind).
        if self.conns[i].watched == Watch::Main {
            self.unwatch_conn(i);
            self.watch_conn(i);
        }
        // The peer's pidfd names the very process that connected; the
        // hello's pid is the kernel's word on that same peer.
        let peer_pidfd = match self.conns[i].pidfd.take() {
            Some(fd) if self.conns[i].peer_pid == pid => Some(fd),
            _ => None,
        };
        let info = self.procs.entry(id.clone()).or_default();
        info.pid = pid;
        info.pidfd = peer_pidfd.or_else(|| exits::pidfd_open(pid));
        self.watch_pidfd(&id);
        if !again {
            let lane = self.conns[i].lane;
            self.queue_on(Some(lane), event);
        }
        true
    }

    /// Reads what a process wrote before it sent an event at `before_t_ns`
    /// (program order: its `print` returned before it sent the event), and
    /// stamps it no later than that, so output never trails the events
    /// that came after it.
    fn drain_output_of(&mut self, id: &str, before_t_ns: u64) {
        let cap = before_t_ns.saturating_sub(1);
        let mine: Vec<usize> = (0..self.outs.len())
            .filter(|&i| self.outs[i].proc_id == id)
            .collect();
        if mine.is_empty() {
            // What it sent is in before its end (each pipe's read below
            // reads it too).
            self.read_announcements(id);
        }
        for i in mine {
            // Non-blocking: a read that finds nothing ends it. No more than
            // what was there, though: a program that inherited the pipe
            // and writes on must not hold the collector here.
            for _ in 0..reads_for(unread_bytes(&self.outs[i].fd)) {
                if !self.read_out_once(i, cap, None) {
                    break;
                }
            }
        }
    }

    /// Learns from an event (from the connection with this lane) before
    /// passing it on.
    fn observe(&mut self, lane: usize, event: Event) {
        match &event.body {
            Body::Spawn {
                child, child_pid, ..
            } => {
                let info = self.procs.entry(child.clone()).or_default();
                if info.pid == 0 {
                    info.pid = *child_pid;
                }
            }
            Body::Exit { .. } => {
                // A process reporting its own end (the runner does).
                let info = self.procs.entry(event.proc_id.clone()).or_default();
                if info.exited {
                    return;
                }
                info.exited = true;
                info.pidfd = None;
            }
            Body::Reaped { code, signal, .. } => {
                // The reaper's connection may be read before the process's
                // own hello or its parent's spawn (an orphan reaped by the
                // runner at once): a process not heard of yet has not been
                // seen to exit either, so it gets its `exit` here too.
                let info = self.procs.entry(event.proc_id.clone()).or_default();
                if info.pid == 0 {
                    info.pid = event.pid;
                }
                if !info.exited {
                    let t = event.t_ns.saturating_sub(1);
                    self.exited(&event.proc_id, t, *code, signal.clone());
                }
            }
            _ => {}
        }
        self.queue_on(Some(lane), event);
    }

    /// A pidfd became readable: the process is dead (a zombie, or already
    /// reaped if its parent was quick).
    fn process_died(&mut self, id: &str) {
        let Some(info) = self.procs.get_mut(id) else {
            return;
        };
        info.pidfd = None;
        if info.exited {
            return;
        }
        let pid = info.pid;
        // Stamped before /proc is read: if it is a zombie then, its reaper
        // reaps it (and stamps its `reaped`) later still, so the `exit`
        // never comes after the `reaped` in time order.
        let seen_ns = now_ns();
        if let Some((code, signal)) = exits::zombie_status(pid) {
            self.exited(id, seen_ns, code, signal);
        }
        // Otherwise its parent already reaped it: the `reaped` event,
        // which carries the status, will say when and how it ended.
    }

    /// Emits `exit` for a process (its orphans are found in [`Self::send`]).
    fn exited(&mut self, id: &str, t_ns: u64, code: Option<i32>, signal: Option<String>) {
        self.drain_output_of(id, t_ns);
        let Some(info) = self.procs.get_mut(id) else {
            return;
        };
        info.exited = true;
        info.pidfd = None;
        let pid = info.pid;
        self.queue(Event {
            t_ns,
            seq: 0,
            proc_id: id.to_string(),
            pid,
            line: None,
            thread: None,
            tid: None,
            body: Body::Exit { code, signal },
        });
    }

    /// At the end: anything whose death we have not reported yet.
    fn check_all_exits(&mut self) {
        let ids: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.exited && p.pid > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            let readable = self.procs[&id].pidfd.as_ref().is_some_and(os_readable);
            if readable {
                self.process_died(&id);
            }
            // Gone without anyone telling how: say so rather than leave it
            // running forever in the picture.
            if !self.procs[&id].exited && !crate::collector::exits::is_alive(self.procs[&id].pid) {
                self.exited(&id, now_ns(), None, None);
            }
        }
    }

    /// Closes (at the next `compact`) connections past their deadline.
    fn expire_silent_connections(&mut self) {
        for c in self.conns.iter_mut().filter(|c| !c.dead) {
            if c.who.is_none() && c.held.is_none() && c.opened.elapsed() >= HELLO_TIMEOUT {
                c.dead = true;
                self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
            }
            // Hellos nobody vouched for in time: impostors (or their
            // parent never said it started them).
            if c.held
                .as_ref()
                .is_some_and(|h| h.since.elapsed() >= HELD_TIMEOUT)
            {
                c.dead = true;
                self.stats.impostors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues an event for the reorder window (on no connection's lane).
    fn queue(&mut self, event: Event) {
        self.queue_on(None, event);
    }

    /// Queues an event that came from the connection with this lane.
    fn queue_on(&mut self, lane: Option<usize>, event: Event) {
        self.arrivals += 1;
        self.pending.push(lane, self.arrivals, event);
    }

    /// Sends the events older than the reorder window (all, at the end).
    fn flush(&mut self, all: bool) {
        // What did not fit last time goes first (it is older than
        // anything still in the window).
        if !self.outbox.is_empty() {
            self.deliver();
            if !self.outbox.is_empty() {
                return;
            }
        }
        let Some(top_t_ns) = self.pending.first_t_ns() else {
            return;
        };
        let now = now_ns();
        let mut horizon = if all {
            u64::MAX
        } else {
            now.saturating_sub(self.window_ns)
        };
        if top_t_ns > horizon {
            return; // nothing is due yet
        }
        if !all && self.last_flush.elapsed() < self.coalesce() {
            return; // let more come due, and go as one batch
        }
        self.last_flush = Instant::now();
        // An announcement still waiting for its bytes goes out when they
        // come: hold back what came after it (a while at most), so output
        // keeps its place even with no reorder window (gated runs).
        if let Some(t) = self
            .outs
            .iter()
            .filter_map(OutPipe::oldest_kept_t_ns)
            .filter(|&t| t.saturating_add(MAX_HOLD_NS) > now)
            .min()
            && !all
        {
            horizon = horizon.min(t.saturating_sub(1));
        }
        // Each event goes straight from its queue into the batch, as many
        // as the channel has room for: the others wait, in order, for the
        // consumer to take some (it wakes us: `behind`).
        let mut room = self.tx.room();
        while (self.closed || self.hand_all() || self.outbox.len() < room)
            && self.pending.pop_due_into(horizon, &mut self.outbox)
        {
            let Some(e) = self.outbox.last_mut() else {
                break;
            };
            // Keep the stream sorted even for a straggler.
            e.t_ns = e.t_ns.max(self.last_sent_t_ns);
            self.last_sent_t_ns = e.t_ns;
            let t_ns = e.t_ns;
            let orphans = self.tree.observe(e);
            if self.closed {
                self.outbox.pop(); // nobody listens (as `send` does)
            }
            if self.outbox.len() >= BATCH_EVENTS {
                self.deliver();
                room = self.tx.room();
            }
            for (orphan, pid) in orphans {
                self.send(Event {
                    t_ns,
                    seq: 0,
                    proc_id: orphan,
                    pid,
                    line: None,
                    thread: None,
                    tid: None,
                    body: Body::Adopted {
                        by: crate::protocol::RUNNER_ID.to_string(),
                        new_ppid: self.runner_pid,
                    },
                });
            }
        }
        self.deliver();
    }

    /// Hand over everything at once, past the channel's room (the excess
    /// dropped and counted): at the very end (`no_wait`), or once the
    /// consumer has said it takes nothing more (else what is read would
    /// pile up in the window for nobody).
    fn hand_all(&self) -> bool {
        self.no_wait || self.tx.abandoned()
    }

    /// Puts an event (in order) into the batch [`Self::deliver`] sends.
    fn send(&mut self, e: Event) {
        if self.closed {
            return;
        }
        // Counted in `deliver`, once per batch.
        self.outbox.push(e);
    }

    /// Hands the consumer what [`Self::send`] collected, as one batch, as
    /// far as the channel has room (all of it when [`Self::hand_all`]:
    /// the excess is dropped and counted); the rest stays, in order, for
    /// the next batch.
    fn deliver(&mut self) {
        let fits = if self.hand_all() {
            usize::MAX
        } else {
            self.tx.room()
        };
        if fits == 0 || self.outbox.is_empty() {
            return;
        }
        let batch = if self.outbox.len() > fits {
            let rest = self.outbox.split_off(fits);
            std::mem::replace(&mut self.outbox, rest)
        } else {
            // The next batch starts with room for as many as this one:
            // growing a vector of events by doubling copied each event a
            // few times.
            let room = self.outbox.len().min(BATCH_EVENTS);
            std::mem::replace(&mut self.outbox, Vec::with_capacity(room))
        };
        self.stats
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match self.tx.send(batch) {
            Sent::Dropped(0) => {}
            Sent::Dropped(n) => {
                self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
            }
            Sent::Disconnected => self.closed = true,
        }
    }
}

/// Bytes waiting to be read in a pipe or a stream socket (`FIONREAD`),
/// 0 if it cannot tell.
fn unread_bytes(fd: &impl AsRawFd) -> usize {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD on an open pipe or socket writes one int, the
    // bytes waiting to be read, to `unread`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut unread) };
    if r < 0 {
        0
    } else {
        usize::try_from(unread).unwrap_or(0)
    }
}

/// How many reads of [`READ_BYTES`] take in `bytes`, and a couple more
/// (reads may stop short at a message with descriptors; the last one
/// finds the end).
fn reads_for(bytes: usize) -> usize {
    bytes.div_ceil(READ_BYTES) + 2
}

/// The descriptors that came with a hello, by what its `fds` says they
/// are: `[stdout, stderr, events]`. A hello without `fds` follows the old
/// rule: two descriptors are stdout and stderr. Any other is closed.
fn sort_fds(fds: Vec<OwnedFd>, meanings: &[String]) -> [Option<OwnedFd>; 3] {
    use crate::probe::{FD_EVENTS, FD_STDERR, FD_STDOUT};
    let mut sorted: [Option<OwnedFd>; 3] = [None, None, None];
    if meanings.is_empty() {
        if fds.len() == 2 {
            let mut fds = fds.into_iter();
            sorted[0] = fds.next();
            sorted[1] = fds.next();
        }
        return sorted;
    }
    for (fd, what) in fds.into_iter().zip(meanings) {
        let k = match what.as_str() {
            FD_STDOUT => 0,
            FD_STDERR => 1,
            FD_EVENTS => 2,
            _ => continue,
        };
        if sorted[k].is_none() {
            sorted[k] = Some(fd);
        }
    }
    sorted
}

/// Makes an event say it comes from its sender (the connection's hello,
/// and the kernel's pid), whatever it claimed.
fn about_sender(event: &mut Event, who_id: &str, who_pid: i32) {
    if event.proc_id != who_id {
        event.proc_id = who_id.to_string();
    }
    event.pid = who_pid;
}

/// One read of a pipe that never blocks, whatever its `O_NONBLOCK` says
/// (`RWF_NOWAIT`: no `fcntl` per pipe, and a process holding a copy of the
/// read end cannot make it blocking). `EAGAIN`: nothing there.
pub(crate) fn read_nowait(fd: &OwnedFd, buf: &mut [u8]) -> nix::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, which lives and is writable for the
    // call; `fd` is open (we own it); offset -1 reads at the current
    // position, as `read` does (a pipe has none).
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    match nix::errno::Errno::result(n) {
        Ok(n) => Ok(n as usize),
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            // A kernel whose pipes refuse RWF_NOWAIT (older than ours):
            // the pipe is made non-blocking once, and read as before.
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            nix::unistd::read(fd, buf)
        }
        Err(e) => Err(e),
    }
}

fn os_readable(fd: &OwnedFd) -> bool {
    crate::runner::os::readable(fd.as_fd(), 0)
}

fn os_readable_raw(fd: RawFd) -> bool {
    // SAFETY: the caller owns `fd` and keeps it open during the call.
    crate::runner::os::readable(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, 0)
}
