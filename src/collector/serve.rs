//! One collector for many runs, one after the other: `stats`, `explore`
//! and the app's Many runs hand each run of a shared runner the same
//! collector kit (see [`CollectorHost`]: two epolls, an eventfd and two
//! 64 KiB buffers) instead of making one per run. The kit has no thread:
//! each run is read on its consumer's thread ([`Collector::start_pull`]),
//! the race lab's loop, which takes it from the host and gives it back
//! when its `Collector` is dropped.
//!
//! What a run sees is the same as with a collector of its own: a fresh
//! listening socket (a new random abstract name), a fresh root of trust,
//! table of logical ids, gates, statistics and event channel. When the run
//! is over, everything of it is closed (listening socket, connections,
//! output pipes, pidfds) and taken out of the kit's epolls before the kit
//! goes to the next run; epoll tokens only grow from run to run. So a
//! process of one run can never speak into the next: its name is no
//! longer listened on, and its connection is closed.

use super::{Collector, Kit, Shelf};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io;
use std::sync::Arc;

/// A collector kit that serves one run after another, each read on its
/// consumer's thread. Dropping it closes the kit (a run that still has it
/// closes it when it is over).
#[derive(Default)]
pub struct CollectorHost {
    /// The kit between runs: empty before the first run, and while a run
    /// has it.
    shelf: Shelf,
    /// A kit was made: an empty shelf means a run still has it.
    made: bool,
}

impl CollectorHost {
    pub fn new() -> CollectorHost {
        CollectorHost::default()
    }

    /// A pulled collector ([`Collector::start_pull`]) for the next run,
    /// on this host's kit. If the last run still has it (its `Collector`
    /// not dropped yet), the run gets a kit of its own.
    pub fn start(&mut self, capacity: usize, reorder_window_ns: u64) -> io::Result<Collector> {
        let kit = self.shelf.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kit {
            Some(kit) => {
                Collector::pulled(kit, Some(self.shelf.clone()), capacity, reorder_window_ns)
            }
            None if self.made => Collector::start_pull(capacity, reorder_window_ns),
            None => {
                let wake = Arc::new(EventFd::from_flags(
                    EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
                )?);
                let kit = Kit::new(wake)?;
                self.made = true;
                Collector::pulled(kit, Some(self.shelf.clone()), capacity, reorder_window_ns)
            }
        }
    }

    /// The host's kit is on its shelf (no run has it).
    #[cfg(test)]
    fn kit_home(&self) -> bool {
        self.shelf.lock().is_ok_and(|k| k.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::RecvTimeoutError;
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

    /// Reads `c` on this thread (2 s at most) until `what` holds.
    fn pump_until(c: &mut Collector, what: impl Fn(&Collector) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if what(c) {
                return true;
            }
            let _ = c.recv_timeout(Duration::from_millis(2));
        }
        what(c)
    }

    /// Reads `c` until its channel disconnects (the run is over); how long
    /// that took.
    fn read_to_end(c: &mut Collector) -> Duration {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Err(RecvTimeoutError::Disconnected) = c.recv_timeout(Duration::from_millis(50)) {
                break;
            }
        }
        t.elapsed()
    }

    #[test]
    fn runs_on_one_kit_share_no_socket_connection_or_count() {
        let mut host = CollectorHost::new();
        let mut first = host.start(64, 0).expect("first run");
        assert!(first.is_pulled());
        first.trust(std::process::id());
        let mut old = connect(&first.socket).expect("connect to the first run");
        old.write_all(b"not json\n").expect("write");
        assert!(pump_until(&mut first, |c| c
            .stats
            .not_json
            .load(Ordering::Relaxed)
            == 1));
        let old_name = first.socket.clone();
        let first_stats = first.stats.clone();
        first.finish();
        assert!(!host.kit_home(), "the first run has the kit");
        drop(first);
        assert!(host.kit_home(), "the kit is back for the next run");

        // The first run's connection is closed and its name not listened on.
        old.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(matches!(old.read(&mut byte), Ok(0) | Err(_)));
        assert!(connect(&old_name).is_err());

        let mut second = host.start(64, 0).expect("second run");
        assert_ne!(second.socket, old_name);
        second.trust(std::process::id());
        // Writing on the old connection reaches nobody.
        let _ = old.write_all(b"not json either\n");
        let mut new = connect(&second.socket).expect("connect to the second run");
        new.write_all(b"nor this\n").expect("write");
        assert!(pump_until(&mut second, |c| c
            .stats
            .not_json
            .load(Ordering::Relaxed)
            == 1));
        assert_eq!(first_stats.not_json.load(Ordering::Relaxed), 1);
        assert!(!host.kit_home(), "the second run took the same kit");
        // Its end, read on this thread: the channel disconnects.
        second.finish();
        drop(new);
        assert!(read_to_end(&mut second) < Duration::from_secs(2));
        assert!(matches!(
            second.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        ));
        drop(second);
        assert!(host.kit_home());
    }

    #[test]
    fn a_run_started_while_the_last_one_has_the_kit_gets_its_own_and_both_work() {
        let mut host = CollectorHost::new();
        let mut first = host.start(64, 0).expect("first run");
        let mut second = host.start(64, 0).expect("second run, the first still on");
        for c in [&mut first, &mut second] {
            c.trust(std::process::id());
            let mut s = connect(&c.socket).expect("connect");
            s.write_all(b"garbage\n").expect("write");
            assert!(pump_until(c, |c| c.stats.not_json.load(Ordering::Relaxed) == 1));
            c.finish();
            drop(s);
            assert!(read_to_end(c) < Duration::from_secs(2));
        }
        // The host's kit came back with the end of the first run (the
        // second's was its own, closed with it).
        assert!(host.kit_home());
        drop(second);
        drop(first);
        let mut third = host.start(64, 0).expect("third run");
        third.finish();
        assert!(read_to_end(&mut third) < Duration::from_secs(2));
    }

    #[test]
    fn the_thread_that_reads_a_pulled_run_asks_for_the_event_threads_slice() {
        std::thread::spawn(|| {
            let mut host = CollectorHost::new();
            let mut run = host.start(64, 0).expect("a pulled run");
            // One turn read on this thread (nothing comes: a timeout).
            let _ = run.recv_timeout(std::time::Duration::from_millis(1));
            let slice = crate::sched::slice_ns_of_this_thread();
            // Where the kernel takes a slice of our own (6.12 and later),
            // this thread now has the one the collector thread had.
            if crate::sched::event_thread() {
                assert_eq!(slice, Some(crate::sched::EVENT_THREAD_SLICE_NS));
            }
            drop(run);
        })
        .join()
        .expect("the thread ends");
    }
}
