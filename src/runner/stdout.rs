//! The stdout buffer: Python's `sys.stdout`, modelled in the scenario
//! process's own memory.
//!
//! `print` does not write to fd 1: it appends to a buffer, which is written
//! when a newline comes (line mode, as on a terminal), when 8 KiB fill up
//! (block mode, as when stdout is a pipe or a file), on `flush`, and when
//! the process ends normally. The buffer lives in the runner's heap, so a
//! real `fork` copies it (both processes then write the same text) and a
//! process killed by a signal, or that calls `os._exit`, never writes it.
//!
//! This type only decides *what* to write and when; `Proc` announces and
//! writes it (PROTOCOL.md §7.2) and reports `buffered` and `flush`.

use super::interp::Proc;
use super::{RunError, os};
use crate::protocol::{Body, Stream};
use crate::scenario::StdoutMode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest text of one output announcement as JSON, so its event line
/// stays under the protocol's 4 KiB.
const MAX_ANNOUNCED_JSON_BYTES: usize = 3000;

/// Python's buffer size for a file or a pipe (`io.DEFAULT_BUFFER_SIZE`).
pub const BLOCK_BYTES: usize = 8192;

/// One process's unwritten stdout text. The threads of a process share
/// it (one `sys.stdout`): [`StdoutBuffer::share`] gives a thread the same
/// buffer, and [`StdoutBuffer::io`] is the lock a `print` holds from the
/// buffer to the `write` (CPython's `BufferedWriter` lock), so pieces reach
/// fd 1 in the order they were announced.
#[derive(Debug, Default)]
pub struct StdoutBuffer {
    mode: StdoutMode,
    pending: Arc<Pending>,
    io: Arc<Mutex<()>>,
}

/// The buffered text, and its length readable without taking the lock.
#[derive(Debug, Default)]
struct Pending {
    text: Mutex<String>,
    /// `text.len()`, stored under the lock at every change. Read without
    /// it, so that asking "anything buffered?" writes no memory: a
    /// `spawn` flushes before every fork, and a write (even taking an
    /// uncontended lock) is a page the kernel must copy while the last
    /// child still shares it.
    bytes: AtomicUsize,
}

impl StdoutBuffer {
    pub fn new(mode: StdoutMode) -> StdoutBuffer {
        StdoutBuffer {
            mode,
            pending: Arc::default(),
            io: Arc::default(),
        }
    }

    /// The same buffer, for another thread of this process.
    pub fn share(&self) -> StdoutBuffer {
        StdoutBuffer {
            mode: self.mode,
            pending: Arc::clone(&self.pending),
            io: Arc::clone(&self.io),
        }
    }

    /// The lock a print holds while it buffers and writes.
    pub fn io(&self) -> Arc<Mutex<()>> {
        Arc::clone(&self.io)
    }

    fn text(&self) -> MutexGuard<'_, String> {
        // A panicking thread leaves a whole String behind: still usable.
        self.pending.text.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the buffer's new length (call with its lock held).
    fn note(&self, text: &str) {
        self.pending.bytes.store(text.len(), Ordering::Relaxed);
    }

    /// Nothing buffered, as far as this thread knows, found without
    /// writing anything. Another thread printing at this very moment may
    /// not be seen, as if this call came just before that print.
    pub fn is_empty(&self) -> bool {
        self.pending.bytes.load(Ordering::Relaxed) == 0
    }

    /// What the buffer holds, not written yet.
    pub fn pending(&self) -> String {
        self.text().clone()
    }

    /// One `sys.stdout.write(text)`: the pieces to write to fd 1 now, in
    /// order. What the buffer held plus `text` is exactly the pieces
    /// followed by what it holds afterwards.
    ///
    /// As CPython's `BufferedWriter`: text that does not fit beside what is
    /// buffered first pushes that out; text of a whole block or more is
    /// written at once. As `TextIOWrapper` with `line_buffering`: text with
    /// a newline (or a carriage return) flushes everything.
    pub fn write(&mut self, text: &str) -> Vec<String> {
        let line_mode = self.mode == StdoutMode::Line;
        let mut pending = self.text();
        let mut out = Vec::new();
        if pending.len() + text.len() > BLOCK_BYTES {
            if !pending.is_empty() {
                out.push(std::mem::take(&mut *pending));
            }
            if text.len() >= BLOCK_BYTES {
                out.push(text.to_string());
            } else {
                pending.push_str(text);
            }
        } else {
            pending.push_str(text);
        }
        if line_mode && text.contains(['\n', '\r']) && !pending.is_empty() {
            out.push(std::mem::take(&mut *pending));
        }
        self.note(&pending);
        out
    }

    /// `flush()`: everything buffered, to write now.
    pub fn take(&mut self) -> String {
        let mut text = self.text();
        self.note("");
        std::mem::take(&mut *text)
    }

    /// Drops what is buffered without writing it (an `exec` replaces the
    /// memory the buffer lives in).
    pub fn discard(&mut self) {
        if self.is_empty() {
            return;
        }
        let mut text = self.text();
        self.note("");
        text.clear();
    }
}

impl Proc<'_> {
    /// `print(text, end=end)`: two writes into the buffer, as CPython's
    /// `print` makes. What stays buffered is reported (`buffered`, and
    /// `flush` for what of it goes out now); a print that leaves nothing
    /// behind in an empty buffer is plain output, as before buffering.
    pub(super) fn print(&mut self, text: &str, end: &str) -> Result<(), RunError> {
        let io = self.stdout.io();
        let _writing = io.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = self.stdout.pending().is_empty();
        let mut pieces = self.stdout.write(text);
        pieces.extend(self.stdout.write(end));
        if !was_empty || !self.stdout.pending().is_empty() {
            self.probe.emit(Body::Buffered {
                text: format!("{text}{end}"),
                inherited: false,
            });
            let bytes: usize = pieces.iter().map(String::len).sum();
            if bytes > 0 {
                self.probe.emit(Body::Flush {
                    bytes: bytes as u64,
                });
            }
        }
        for piece in pieces {
            self.write_stdout(&piece)?;
        }
        Ok(())
    }

    /// `sys.stdout.flush()`; also what a normal end of the process does
    /// (CPython's `_bootstrap` for multiprocessing children, interpreter
    /// shutdown for main and `os.fork` children).
    pub(super) fn flush_stdout(&mut self) -> Result<(), RunError> {
        // Nothing to flush (always so at a `spawn` of a process that did
        // not print): touch nothing.
        if self.stdout.is_empty() {
            return Ok(());
        }
        let io = self.stdout.io();
        let _writing = io.lock().unwrap_or_else(|p| p.into_inner());
        let text = self.stdout.take();
        if text.is_empty() {
            return Ok(());
        }
        self.probe.emit(Body::Flush {
            bytes: text.len() as u64,
        });
        self.write_stdout(&text)
    }

    /// In a child just forked (connected as itself): the buffer is a copy of
    /// the parent's. Said on stage, so a learner sees where a line printed
    /// twice comes from; dropped when the child is about to `exec` (the
    /// program replaces the memory the buffer is in).
    pub(super) fn stdout_after_fork(&mut self, will_exec: bool) {
        if will_exec {
            self.stdout.discard();
        } else if !self.stdout.is_empty() {
            self.probe.emit(Body::Buffered {
                text: self.stdout.pending(),
                inherited: true,
            });
        }
    }

    /// Writes `text` to our real stdout in one `write` (as Python writes
    /// its buffer), announced first line by line (pieces of at most 1024
    /// bytes), stamped before the write, so the log orders each line
    /// exactly among our events; the collector shows a piece when its
    /// bytes come through the pipe (PROTOCOL.md §7.2).
    fn write_stdout(&mut self, text: &str) -> Result<(), RunError> {
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(1024);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(nl) = rest[..cut].find('\n') {
                cut = nl + 1;
            }
            // The announcement must fit in one event line as it is: control
            // characters take 6 bytes each in JSON.
            while cut > 1
                && serde_json::to_string(&rest[..cut]).map_or(0, |j| j.len())
                    > MAX_ANNOUNCED_JSON_BYTES
            {
                cut /= 2;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
            }
            if cut == 0 {
                cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
            }
            let (piece, tail) = rest.split_at(cut);
            self.probe.emit(Body::Output {
                stream: Stream::Stdout,
                text: piece.to_string(),
            });
            rest = tail;
        }
        os::write_all(std::io::stdout(), text.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(pieces: &[String]) -> String {
        pieces.concat()
    }

    #[test]
    fn line_mode_writes_at_the_newline_only() {
        let mut b = StdoutBuffer::new(StdoutMode::Line);
        assert!(b.write("abc").is_empty());
        assert_eq!(b.pending(), "abc");
        assert_eq!(joined(&b.write("\n")), "abc\n");
        assert_eq!(b.pending(), "");
        assert_eq!(joined(&b.write("x\ny")), "x\ny", "a newline flushes all");
    }

    #[test]
    fn block_mode_writes_when_8_kib_fill_up() {
        let mut b = StdoutBuffer::new(StdoutMode::Block);
        let line = "0123456789abcde\n"; // 16 bytes
        let mut written = String::new();
        for _ in 0..512 {
            written.push_str(&joined(&b.write(line)));
        }
        assert_eq!(written, "", "512 x 16 bytes = 8192 fit");
        written.push_str(&joined(&b.write(line)));
        assert_eq!(written.len(), 8192);
        assert_eq!(b.pending(), line);
        let big = "y".repeat(BLOCK_BYTES);
        let out = b.write(&big);
        assert_eq!(out, vec![line.to_string(), big]);
        assert_eq!(b.pending(), "");
    }

    #[test]
    fn nothing_is_lost_or_doubled() {
        for mode in [StdoutMode::Line, StdoutMode::Block] {
            let mut b = StdoutBuffer::new(mode);
            let mut given = String::new();
            let mut written = String::new();
            for i in 0..3000 {
                let text = format!(
                    "{}{}",
                    "é".repeat(i % 700),
                    if i % 3 == 0 { "\n" } else { "" }
                );
                given.push_str(&text);
                written.push_str(&joined(&b.write(&text)));
            }
            written.push_str(&b.take());
            assert_eq!(written, given);
        }
    }
}
