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

pub struct OutPipe {
    pub fd: OwnedFd,
    pub proc_id: String,
    pid: i32,
    pub stream: Stream,
    /// Bytes the process already reported with `output` events.
    pub announced: u64,
    /// Bytes read from the pipe so far.
    read_bytes: u64,
    tokens: f64,
    refilled: Instant,
    warned: bool,
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
            tokens: BURST_BYTES,
            refilled: Instant::now(),
            warned: false,
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
    pub fn read(&mut self, stats: &Stats, max_t_ns: u64) -> Vec<Event> {
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
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.refilled).as_secs_f64() * BUDGET_BYTES_PER_S)
            .min(BURST_BYTES);
        self.refilled = now;
        let mut out = Vec::new();
        let keep = (self.tokens.max(0.0) as usize).min(n);
        self.tokens -= n as f64;
        if keep < n {
            stats
                .output_dropped_bytes
                .fetch_add((n - keep) as u64, Ordering::Relaxed);
            if !self.warned {
                self.warned = true;
                out.push(self.event(
                    t_ns,
                    Body::Error {
                        message: format!(
                            "{} writes output faster than can be shown; the excess is dropped and counted",
                            self.proc_id
                        ),
                    },
                ));
            }
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
