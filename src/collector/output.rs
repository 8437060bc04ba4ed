//! Reading one process's stdout or stderr pipe (handed over at hello) and
//! cutting it into `output` events: whole lines, or what is there when the
//! process pauses (`print(x, end="|")`). A flood is cut to a budget and
//! counted, never allowed to swamp the display.

use super::Stats;
use crate::protocol::{Body, Event, Stream, now_ns};
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
            body: Body::Error {
                message: format!(
                    "{proc_id} writes output faster than can be shown; the excess is dropped and counted"
                ),
            },
        })
    }
}

pub struct OutPipe {
    pub fd: OwnedFd,
    pub proc_id: String,
    pid: i32,
    pub stream: Stream,
    /// Bytes the process already reported with `output` events.
    pub announced: u64,
    /// Bytes read from the pipe so far.
    read_bytes: u64,
    pub closed: bool,
}

impl OutPipe {
    pub fn new(fd: OwnedFd, proc_id: &str, pid: i32, stream: Stream) -> OutPipe {
        OutPipe {
            fd,
            proc_id: proc_id.to_string(),
            pid,
            stream,
            announced: 0,
            read_bytes: 0,
            closed: false,
        }
    }

    fn event(&self, t_ns: u64, body: Body) -> Event {
        Event {
            t_ns,
            seq: 0,
            proc_id: self.proc_id.clone(),
            pid: self.pid,
            line: None,
            body,
        }
    }

    /// Reads what is there; the events it makes, stamped now but no later
    /// than `max_t_ns`.
    pub fn read(&mut self, stats: &Stats, budget: &mut Budget, max_t_ns: u64) -> Vec<Event> {
        let mut buf = vec![0u8; 65536];
        let n = match nix::unistd::read(&self.fd, &mut buf) {
            Ok(0) | Err(_) => {
                self.closed = true;
                return Vec::new();
            }
            Ok(n) => n,
        };
        // Skip what the process already reported itself.
        let skip = (self.announced.saturating_sub(self.read_bytes) as usize).min(n);
        self.read_bytes += n as u64;
        buf.copy_within(skip..n, 0);
        let n = n - skip;
        if n == 0 {
            return Vec::new();
        }
        let t_ns = now_ns().min(max_t_ns);
        let mut out = Vec::new();
        let keep = budget.take(n);
        if keep < n {
            out.extend(budget.dropped(stats, n - keep, &self.proc_id, self.pid, t_ns));
        }
        let text = String::from_utf8_lossy(&buf[..keep]);
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
