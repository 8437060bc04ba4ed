//! One collector thread for many runs, one after the other: `stats`,
//! `explore` and the app's Many runs hand each run of a shared runner to
//! the same thread (see [`CollectorHost`]) instead of starting a thread,
//! two epolls, an eventfd and two 64 KiB buffers per run.
//!
//! What a run sees is the same as with a collector of its own: a fresh
//! listening socket (a new random abstract name), a fresh root of trust,
//! table of logical ids, gates, statistics and event channel. When the run
//! is over, the thread closes everything of it (listening socket,
//! connections, output pipes, pidfds) and takes them out of its epolls
//! before it takes the next run; epoll tokens only grow from run to run.
//! So a process of one run can never speak into the next: its name is no
//! longer listened on, and its connection is closed.

use super::events::{self, EventTx};
use super::{Collector, Ending, Gates, Kit, State, Stats, bind_abstract};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32};

/// A collector thread that serves one run after another. Dropping it lets
/// the thread end after the run it may still be on (nobody waits for it).
#[derive(Default)]
pub struct CollectorHost {
    /// Runs for the thread (none before the first run, or once it ended).
    jobs: Option<Sender<Job>>,
    /// The thread's eventfd, shared by its runs' handles and channels.
    wake: Option<Arc<EventFd>>,
    /// The last run handed over: disconnected once the thread is done
    /// with it.
    last: Option<Receiver<()>>,
}

/// One run for the thread.
struct Job {
    listener: UnixListener,
    tx: EventTx,
    stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
    gates: Gates,
    root: Arc<AtomicI32>,
    window_ns: u64,
    /// Dropped when everything of the run is closed.
    done: Sender<()>,
}

impl CollectorHost {
    pub fn new() -> CollectorHost {
        CollectorHost::default()
    }

    /// A collector for the next run, as [`Collector::start`] makes one,
    /// on this host's thread. If the thread is still on the last run (its
    /// `Collector` not dropped yet), the run gets a thread of its own.
    pub fn start(&mut self, capacity: usize, reorder_window_ns: u64) -> io::Result<Collector> {
        let busy = self
            .last
            .as_ref()
            .is_some_and(|d| matches!(d.try_recv(), Err(TryRecvError::Empty)));
        if busy {
            return Collector::start(capacity, reorder_window_ns);
        }
        for _ in 0..2 {
            let (jobs, wake) = match (&self.jobs, &self.wake) {
                (Some(jobs), Some(wake)) => (jobs.clone(), wake.clone()),
                _ => self.spawn()?,
            };
            let (listener, socket) = bind_abstract()?;
            listener.set_nonblocking(true)?;
            let (tx, events) = events::channel(capacity, wake.clone());
            let (done, done_rx) = crossbeam_channel::bounded(0);
            let stats = Arc::new(Stats::default());
            let finish = Arc::new(AtomicBool::new(false));
            let gates = Gates::default();
            let root = Arc::new(AtomicI32::new(0));
            let job = Job {
                listener,
                tx,
                stats: stats.clone(),
                finish: finish.clone(),
                gates: gates.clone(),
                root: root.clone(),
                window_ns: reorder_window_ns,
                done,
            };
            if jobs.send(job).is_err() {
                // The thread is gone (it panicked): start another.
                self.jobs = None;
                self.wake = None;
                continue;
            }
            self.last = Some(done_rx.clone());
            return Ok(Collector {
                socket,
                gates,
                events,
                stats,
                finish,
                wake,
                root,
                end_watch: Arc::default(),
                thread: Some(Ending::Served(done_rx)),
            });
        }
        Err(io::Error::other("the collector thread is gone"))
    }

    /// Starts the thread.
    fn spawn(&mut self) -> io::Result<(Sender<Job>, Arc<EventFd>)> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let kit = Kit::new(wake.clone())?;
        let (jobs, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || serve(kit, &rx))?;
        self.jobs = Some(jobs.clone());
        self.wake = Some(wake.clone());
        Ok((jobs, wake))
    }
}

/// The thread: one run after another until the host is dropped.
fn serve(mut kit: Kit, jobs: &Receiver<Job>) {
    // Run as soon as an event comes (`sched.rs`): once for all runs.
    crate::sched::event_thread();
    while let Ok(job) = jobs.recv() {
        let Job {
            listener,
            tx,
            stats,
            finish,
            gates,
            root,
            window_ns,
            done,
        } = job;
        let mut state = match State::with_kit(listener, tx, kit, stats, finish) {
            Ok(state) => state,
            Err(back) => {
                // The run's channel closes with its `tx`: it sees no
                // events, as a collector that could not start.
                kit = back.1;
                drop(done);
                continue;
            }
        };
        state.gates = gates;
        state.root = root;
        state.window_ns = window_ns;
        state.run();
        kit = state.into_kit();
        drop(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    fn connect(socket: &std::path::Path) -> io::Result<UnixStream> {
        let name = socket.to_string_lossy();
        let name = name.strip_prefix('@').unwrap_or(&name);
        UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
    }

    /// Waits (2 s at most) until `what` holds.
    fn until(what: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        what()
    }

    #[test]
    fn runs_on_one_thread_share_no_socket_connection_or_count() {
        let mut host = CollectorHost::new();
        let first = host.start(64, 0).expect("first run");
        first.trust(std::process::id());
        let mut old = connect(&first.socket).expect("connect to the first run");
        old.write_all(b"not json\n").expect("write");
        assert!(until(|| first.stats.not_json.load(Ordering::Relaxed) == 1));
        let old_name = first.socket.clone();
        let first_stats = first.stats.clone();
        first.finish();
        drop(first);

        // The first run's connection is closed and its name not listened on.
        old.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(matches!(old.read(&mut byte), Ok(0) | Err(_)));
        assert!(connect(&old_name).is_err());

        let second = host.start(64, 0).expect("second run");
        assert_ne!(second.socket, old_name);
        second.trust(std::process::id());
        // Writing on the old connection reaches nobody.
        let _ = old.write_all(b"not json either\n");
        let mut new = connect(&second.socket).expect("connect to the second run");
        new.write_all(b"nor this\n").expect("write");
        assert!(until(|| second.stats.not_json.load(Ordering::Relaxed) == 1));
        assert_eq!(first_stats.not_json.load(Ordering::Relaxed), 1);
        // The same thread served both.
        assert!(matches!(second.thread, Some(Ending::Served(_))));
        second.finish();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            match second.events.recv_timeout(Duration::from_millis(50)) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                _ => continue,
            }
        }
        assert!(matches!(
            second.events.recv_timeout(Duration::from_millis(1)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ));
    }
}
