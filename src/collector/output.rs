//! Reading one process's stdout or stderr pipe (handed over at hello) and
//! cutting it into `output` events. The pipe is the only source of text:
//! an `output` announcement from the process is kept until its bytes come
//! through the pipe and then goes out with them; bytes nobody announced
//! become new output (whole lines, or what is there when the process
//! pauses). Every byte read goes out exactly once, in order (PROTOCOL.md
//! §7.2). A flood is cut to a budget and counted, never allowed to swamp
//! the display.

use super::Stats;
use crate::protocol::{Body, Event, Stream, now_ns};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Sustained output a process may produce, and its burst.
const BUDGET_BYTES_PER_S: f64 = 256.0 * 1024.0;
const BURST_BYTES: f64 = 1024.0 * 1024.0;
/// Longest text in one output event.
const MAX_CHUNK_BYTES: usize = 2048;

/// How much output one process may still show: a token bucket, so a
/// burst is fine and a flood is cut.
pub struct Budget {
    tokens: f64,
    refilled: Instant,
    warned: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            tokens: BURST_BYTES,
            refilled: Instant::now(),
            warned: false,
        }
    }
}

impl Budget {
    /// Of `n` bytes, how many may be shown now (the rest is dropped).
    pub fn take(&mut self, n: usize) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.refilled).as_secs_f64() * BUDGET_BYTES_PER_S)
            .min(BURST_BYTES);
        self.refilled = now;
        let keep = (self.tokens.max(0.0) as usize).min(n);
        self.tokens -= n as f64;
        keep
    }

    /// Counts dropped bytes; the first time, the event that says so.
    pub fn dropped(
        &mut self,
        stats: &Stats,
        n: usize,
        proc_id: &str,
        pid: i32,
        t_ns: u64,
    ) -> Option<Event> {
        stats
            .output_dropped_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        if self.warned {
            return None;
        }
        self.warned = true;
        Some(Event {
            t_ns,
            seq: 0,
            proc_id: proc_id.to_string(),
            pid,
            line: None,
            thread: None,
            tid: None,
            body: Body::Error {
                message: format!(
                    "{proc_id} writes output faster than can be shown; the excess is dropped and counted"
                ),
            },
        })
    }
}

/// What is known of an announced piece whose bytes have not all come
/// through the pipe yet.
struct Announced {
    /// The process's own `output` event: its stamp, seq and line.
    event: Event,
    /// How many bytes it announced.
    len_bytes: usize,
    /// Its bytes read from the pipe so far.
    got: Vec<u8>,
}

/// At most this many announced bytes may wait for their pipe bytes; a
/// process that announces more than it writes gets the excess ignored
/// (its bytes, if they ever come, are shown as unannounced output).
const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

pub struct OutPipe {
    pub fd: OwnedFd,
    /// Its epoll token.
    pub token: u64,
    pub proc_id: String,
    pid: i32,
    pub stream: Stream,
    /// Announcements (oldest first) whose bytes are not all read yet.
    pending: VecDeque<Announced>,
    pending_bytes: usize,
    pub closed: bool,
    /// Out of the epoll while the consumer is behind.
    pub paused: bool,
}

impl OutPipe {
    pub fn new(fd: OwnedFd, proc_id: &str, pid: i32, stream: Stream, token: u64) -> OutPipe {
        OutPipe {
            fd,
            token,
            proc_id: proc_id.to_string(),
            pid,
            stream,
            pending: VecDeque::new(),
            pending_bytes: 0,
            closed: false,
            paused: false,
        }
    }

    fn event(&self, t_ns: u64, body: Body) -> Event {
        Event {
            t_ns,
            seq: 0,
            proc_id: self.proc_id.clone(),
            pid: self.pid,
            line: None,
            thread: None,
            tid: None,
            body,
        }
    }

    /// The process said it will write `len_bytes` bytes next (its `output`
    /// event). Nothing is shown yet: the event goes out when its bytes come
    /// through the pipe, with the pipe's bytes as its text.
    pub fn announce(&mut self, event: Event, len_bytes: usize) {
        if len_bytes == 0 || self.pending_bytes + len_bytes > MAX_PENDING_BYTES {
            return;
        }
        self.pending_bytes += len_bytes;
        self.pending.push_back(Announced {
            event,
            len_bytes,
            got: Vec::new(),
        });
    }

    /// Bytes announced and not read yet.
    pub fn awaited_bytes(&self) -> usize {
        self.pending_bytes - self.pending.front().map_or(0, |a| a.got.len())
    }

    /// The stamp of the oldest announcement still waiting for its bytes.
    pub fn oldest_kept_t_ns(&self) -> Option<u64> {
        self.pending.front().map(|a| a.event.t_ns)
    }

    /// Reads once from the pipe into `buf`: how many bytes, or None at end
    /// of file (then the pipe is closed) or when nothing is there.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> Option<usize> {
        // Never blocks, whatever the pipe's `O_NONBLOCK` (a wake-up may be
        // stale): `RWF_NOWAIT`.
        match super::read_nowait(&self.fd, buf) {
            Ok(0) => {
                self.closed = true;
                None
            }
            Ok(n) => Some(n),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => None,
            Err(_) => {
                self.closed = true;
                None
            }
        }
    }

    /// Turns bytes read from the pipe into events, every byte exactly once
    /// and in order: bytes that fill the oldest announcements go out as
    /// those `output` events (their stamps, seq and line; the pipe's
    /// text), the rest as new output stamped now but no later than
    /// `max_t_ns`. Call it with the bytes of one `read_raw` *after* reading
    /// the process's connection, so every announcement of these bytes is
    /// in (a process announces before it writes).
    pub fn take(
        &mut self,
        mut bytes: &[u8],
        stats: &Stats,
        budget: &mut Budget,
        max_t_ns: u64,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let n = (front.len_bytes - front.got.len()).min(bytes.len());
            front.got.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if front.got.len() == front.len_bytes
                && let Some(done) = self.pending.pop_front()
            {
                self.pending_bytes -= done.len_bytes;
                out.extend(self.announced_event(done, stats, budget));
            }
        }
        if !bytes.is_empty() {
            out.extend(self.unannounced(bytes, stats, budget, max_t_ns));
        }
        out
    }

    /// At end of file: announced bytes that came only in part are shown as
    /// far as they came; announced bytes that never came were never written
    /// (the process died first) and are not shown.
    pub fn close(&mut self, stats: &Stats, budget: &mut Budget) -> Vec<Event> {
        self.closed = true;
        let mut out = Vec::new();
        while let Some(a) = self.pending.pop_front() {
            if !a.got.is_empty() {
                out.extend(self.announced_event(a, stats, budget));
            }
        }
        self.pending_bytes = 0;
        out
    }

    fn announced_event(&self, a: Announced, stats: &Stats, budget: &mut Budget) -> Vec<Event> {
        let n = a.got.len();
        let mut e = a.event;
        if budget.take(n) < n {
            return budget
                .dropped(stats, n, &self.proc_id, self.pid, e.t_ns)
                .into_iter()
                .collect();
        }
        e.body = Body::Output {
            stream: self.stream,
            text: String::from_utf8_lossy(&a.got).into_owned(),
        };
        vec![e]
    }

    /// Bytes nobody announced (an `exec`'d program, an error message).
    fn unannounced(
        &self,
        bytes: &[u8],
        stats: &Stats,
        budget: &mut Budget,
        max_t_ns: u64,
    ) -> Vec<Event> {
        let n = bytes.len();
        let t_ns = now_ns().min(max_t_ns);
        let mut out = Vec::new();
        let keep = budget.take(n);
        if keep < n {
            out.extend(budget.dropped(stats, n - keep, &self.proc_id, self.pid, t_ns));
        }
        let text = String::from_utf8_lossy(&bytes[..keep]);
        for line in text.split_inclusive('\n') {
            let mut rest = line;
            while !rest.is_empty() {
                let mut cut = rest.len().min(MAX_CHUNK_BYTES);
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.push(self.event(
                    t_ns,
                    Body::Output {
                        stream: self.stream,
                        text: rest[..cut].to_string(),
                    },
                ));
                rest = &rest[cut..];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(seq: u64, text: &str) -> Event {
        Event {
            t_ns: seq * 10,
            seq,
            proc_id: "p".into(),
            pid: 7,
            line: Some(3),
            thread: None,
            tid: None,
            body: Body::Output {
                stream: Stream::Stdout,
                text: text.into(),
            },
        }
    }

    fn pipe() -> (OutPipe, OwnedFd) {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        (OutPipe::new(r, "p", 7, Stream::Stdout, 0), w)
    }

    fn shown(events: &[Event]) -> Vec<(u64, String)> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Output { text, .. } => Some((e.seq, text.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pipe_bytes_fill_announcements_in_order_and_the_rest_is_unannounced() {
        let (mut o, _w) = pipe();
        let stats = Stats::default();
        let mut budget = Budget::default();
        o.announce(announcement(1, "one\n"), 4);
        o.announce(announcement(2, "two\n"), 4);
        // The second piece comes in two reads; then bytes nobody announced.
        let mut got = o.take(b"one\ntw", &stats, &mut budget, u64::MAX);
        got.extend(o.take(b"o\nthree\n", &stats, &mut budget, u64::MAX));
        assert_eq!(
            shown(&got),
            vec![
                (1, "one\n".to_string()),
                (2, "two\n".to_string()),
                (0, "three\n".to_string())
            ]
        );
        assert_eq!(got[1].t_ns, 20, "an announced piece keeps its stamp");
    }

    #[test]
    fn announced_bytes_that_never_come_are_not_shown() {
        let (mut o, w) = pipe();
        let stats = Stats::default();
        let mut budget = Budget::default();
        o.announce(announcement(1, "half\n"), 5);
        o.announce(announcement(2, "never\n"), 6);
        let mut got = o.take(b"ha", &stats, &mut budget, u64::MAX);
        drop(w);
        assert_eq!(o.read_raw(&mut [0; 16]), None);
        assert!(o.closed);
        got.extend(o.close(&stats, &mut budget));
        assert_eq!(shown(&got), vec![(1, "ha".to_string())]);
    }
}
