//! The floor under the latency figure: what this machine gives *any*
//! reader of the latency bench's load, with no probe, collector or model.
//!
//! The same load as `benches/stress.toml`'s defaults: 200 processes, each
//! 170 times a `sleep` line, 60 ms asleep, then a `wake` and a `write` line
//! in one `write` (as the probe holds a wake for the next event). Spread
//! (as `spread = 1`): the writers wait at a gate until all are forked, and
//! writer i's first sleep is longer by i/200 of a period; else each starts
//! when it is forked. Each
//! process writes into a pipe of its own, every line stamped just before
//! its `write`. One reader thread (epoll over the 200 pipes, as the
//! collector) finds the stamps and hands each read's batch over a channel
//! to a second thread, which takes `now − stamp` (as the model's consumer
//! does). Both threads ask for the event threads' slice
//! (`forkscope::sched`), or for the kernel's default. With one wake-up
//! (`one`), the reader thread takes `now − stamp` itself: no second
//! thread (as the model on the collector's thread, `Reading::Direct`).
//!
//! It runs in a fresh process (`engine __latency_floor SLICE_NS SPREAD [one]`)
//! that forks its writers before it starts a thread, and prints
//! `p50_ns p99_ns max_ns lines`.

use forkscope::protocol::now_ns;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::unistd::{ForkResult, fork, pipe};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

pub const WRITERS: usize = 200;
pub const ITERATIONS: usize = 170;
const PERIOD: Duration = Duration::from_millis(60);

/// The floor's process: forks the writers, reads, prints the figures.
pub fn floor_main(slice_ns: u64, spread: bool, one: bool) -> Result<(), String> {
    // The gate: every writer reads it until end of file, which comes when
    // this process has forked them all and closes its write end.
    let (gate_r, gate_w) = pipe().map_err(|e| e.to_string())?;
    let mut reads: Vec<OwnedFd> = Vec::with_capacity(WRITERS);
    let mut pids = Vec::with_capacity(WRITERS);
    for k in 0..WRITERS {
        let (r, w) = pipe().map_err(|e| e.to_string())?;
        // SAFETY: this process has one thread until every writer is
        // forked; a writer only formats, writes, sleeps and `_exit`s.
        match unsafe { fork() }.map_err(|e| e.to_string())? {
            ForkResult::Child => {
                drop(r);
                drop(gate_w);
                let phase = if spread {
                    let mut byte = [0u8; 1];
                    while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(&gate_r, &mut byte)
                    {
                    }
                    PERIOD * k as u32 / WRITERS as u32
                } else {
                    Duration::ZERO
                };
                write_load(&w, k, phase);
                // SAFETY: `_exit` ends the writer without running the
                // parent's destructors.
                unsafe { libc::_exit(0) };
            }
            ForkResult::Parent { child } => {
                // Later writers must not hold this one's write end: its
                // end of file comes when this writer exits.
                drop(w);
                reads.push(r);
                pids.push(child);
            }
        }
    }
    drop(gate_w);
    let mut lat_ns = Vec::with_capacity(WRITERS * ITERATIONS * 3);
    if one {
        // This thread reads, and takes the stamps itself.
        read_all(reads, slice_ns, |stamps| {
            let now = now_ns();
            lat_ns.extend(stamps.iter().map(|&t| now.saturating_sub(t)));
        })?;
    } else {
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u64>>();
        let reader = std::thread::spawn(move || {
            read_all(reads, slice_ns, |stamps| {
                let _ = tx.send(stamps);
            })
        });
        forkscope::sched::set_event_thread_slice_ns(slice_ns);
        forkscope::sched::event_thread();
        for stamps in rx {
            let now = now_ns();
            lat_ns.extend(stamps.iter().map(|&t| now.saturating_sub(t)));
        }
        reader.join().map_err(|_| "the reader thread panicked")??;
    }
    for p in pids {
        let _ = nix::sys::wait::waitpid(p, None);
    }
    let expected = WRITERS * ITERATIONS * 3;
    if lat_ns.len() != expected {
        return Err(format!("{} lines read of {expected}", lat_ns.len()));
    }
    lat_ns.sort_unstable();
    let at = |p: usize| lat_ns[((lat_ns.len() - 1) * p) / 100];
    println!("{} {} {} {}", at(50), at(99), at(100), lat_ns.len());
    Ok(())
}

/// One writer: the stress load's lines, each stamped just before it goes;
/// its first sleep `phase` longer.
fn write_load(w: &OwnedFd, k: usize, phase: Duration) {
    let pid = std::process::id();
    for i in 0..ITERATIONS {
        let sleep = format!(
            "{{\"t_ns\":{},\"seq\":{},\"proc\":\"main.{k}\",\"pid\":{pid},\"line\":6,\
             \"kind\":\"sleep\",\"duration_ms\":60.0}}\n",
            now_ns(),
            3 * i + 1
        );
        let _ = nix::unistd::write(w, sleep.as_bytes());
        std::thread::sleep(if i == 0 { PERIOD + phase } else { PERIOD });
        let wake_ns = now_ns();
        let both = format!(
            "{{\"t_ns\":{wake_ns},\"seq\":{},\"proc\":\"main.{k}\",\"pid\":{pid},\"line\":6,\
             \"kind\":\"wake\"}}\n\
             {{\"t_ns\":{},\"seq\":{},\"proc\":\"main.{k}\",\"pid\":{pid},\"line\":7,\
             \"kind\":\"write\",\"name\":\"v\",\"value\":{i}}}\n",
            3 * i + 2,
            now_ns(),
            3 * i + 3
        );
        let _ = nix::unistd::write(w, both.as_bytes());
    }
}

/// The reader thread: every line's stamp, a batch per read to `take`,
/// until every pipe has ended.
fn read_all(
    reads: Vec<OwnedFd>,
    slice_ns: u64,
    mut take: impl FnMut(Vec<u64>),
) -> Result<(), String> {
    forkscope::sched::set_event_thread_slice_ns(slice_ns);
    forkscope::sched::event_thread();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| e.to_string())?;
    for (k, r) in reads.iter().enumerate() {
        epoll
            .add(r.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, k as u64))
            .map_err(|e| e.to_string())?;
    }
    let mut open = reads.len();
    let mut ready = vec![EpollEvent::empty(); 64];
    let mut buf = vec![0u8; 1 << 16];
    while open > 0 {
        let n = match epoll.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.to_string()),
        };
        for ev in &ready[..n] {
            let r = &reads[ev.data() as usize];
            match nix::unistd::read(r, &mut buf) {
                Ok(0) => {
                    let _ = epoll.delete(r.as_fd());
                    open -= 1;
                }
                // A read takes whole writes, so whole lines: a pipe keeps
                // a write of up to 4 kB whole, and one writer writes here.
                Ok(got) => {
                    take(stamps(&buf[..got]));
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

/// The `t_ns` of every line in `bytes`.
fn stamps(bytes: &[u8]) -> Vec<u64> {
    const KEY: &[u8] = b"{\"t_ns\":";
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(KEY))
        .map(|rest| {
            rest.iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
        })
        .collect()
}
