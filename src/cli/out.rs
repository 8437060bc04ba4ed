//! Our own stdout, written by a thread of its own, so that a reader who
//! does not read (`forkscope run … | (sleep 20; cat)`) never holds up the
//! loop that watches the run: `--timeout` and Ctrl-C still stop the run on
//! time, and its processes are gone, whatever stdout does.
//!
//! The loop hands text to the writer thread through a bounded queue (about
//! 4 MiB). While the queue is full the loop waits for room in slices of
//! 20 ms and asks, between them, whether to give up (the run's deadline,
//! Ctrl-C). Once it gave up, text that does not fit is dropped and counted;
//! [`Out::finish`] says how much never reached stdout.

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError, bounded};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Text is handed over in pieces of about this size.
const CHUNK_BYTES: usize = 16 * 1024;
/// Pieces the queue holds: with [`CHUNK_BYTES`], about 4 MiB.
const QUEUE_CHUNKS: usize = 256;
/// How long the loop waits for room before it asks again whether to give up.
const WAIT_SLICE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    /// A write failed (the reader is gone, `| head`): nothing more is written.
    failed: AtomicBool,
    /// Bytes handed to the thread, and bytes it wrote.
    queued_bytes: AtomicU64,
    written_bytes: AtomicU64,
}

/// How writing to stdout ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Everything was written.
    All,
    /// The reader went away (a closed pipe): the rest was not wanted.
    ReaderGone,
    /// Stdout was not read in time: this many bytes were not written.
    Stuck { unwritten_bytes: u64 },
}

pub struct Out {
    tx: Option<Sender<Vec<u8>>>,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends (it holds the sender).
    ended: crossbeam_channel::Receiver<()>,
    /// Asked while waiting for room: true means stop waiting.
    give_up: Box<dyn Fn() -> bool>,
    /// We gave up waiting once: from now on, never wait.
    stuck: bool,
    dropped_bytes: u64,
}

impl Out {
    /// Writes to fd 1 from a new thread. `give_up` is asked while the queue
    /// is full (e.g. "is the run's time up, or was Ctrl-C pressed?").
    pub fn stdout(give_up: impl Fn() -> bool + 'static) -> Out {
        let (tx, rx) = bounded::<Vec<u8>>(QUEUE_CHUNKS);
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let (ending, ended) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let _ending = ending;
                // Not std's `Stdout`: its lock would be held while a write
                // blocks, and the exit path takes that lock to flush.
                let fd = io::stdout();
                for chunk in rx {
                    if s.failed.load(Ordering::Relaxed) {
                        continue;
                    }
                    if write_fd(fd.as_fd(), &chunk).is_err() {
                        s.failed.store(true, Ordering::Relaxed);
                    } else {
                        s.written_bytes
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                }
            })
            .ok();
        Out {
            tx: thread.as_ref().map(|_| tx),
            buf: Vec::with_capacity(CHUNK_BYTES),
            shared,
            thread,
            ended,
            give_up: Box::new(give_up),
            stuck: false,
            dropped_bytes: 0,
        }
    }

    /// The reader is gone (a write failed).
    pub fn reader_gone(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Appends what `fill` writes to the buffer, handing it over as `write`
    /// does: one call for a whole event, where a serializer writing to
    /// `Out` makes a `write` call per token.
    pub fn append(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        fill(&mut self.buf)?;
        if self.buf.len() >= CHUNK_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Hands what is buffered to the thread (see the module doc).
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.reader_gone() {
            self.buf.clear();
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let Some(tx) = &self.tx else {
            self.buf.clear();
            return Err(io::Error::other("no stdout writer"));
        };
        let mut chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        let n = chunk.len() as u64;
        loop {
            if self.stuck {
                return match tx.try_send(chunk) {
                    Ok(()) => {
                        self.shared.queued_bytes.fetch_add(n, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(TrySendError::Full(_)) => {
                        self.dropped_bytes += n;
                        Ok(())
                    }
                    Err(TrySendError::Disconnected(_)) => Err(io::ErrorKind::BrokenPipe.into()),
                };
            }
            match tx.send_timeout(chunk, WAIT_SLICE) {
                Ok(()) => {
                    self.shared.queued_bytes.fetch_add(n, Ordering::Relaxed);
                    return Ok(());
                }
                Err(SendTimeoutError::Timeout(c)) => {
                    chunk = c;
                    if (self.give_up)() {
                        self.stuck = true;
                    }
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
            }
        }
    }

    /// Hands over what is left and waits for the thread to write it, but
    /// not past `until`.
    pub fn finish(mut self, until: Instant) -> Finished {
        let _ = self.hand_over();
        self.tx = None; // the thread ends when it has written the queue
        let Some(thread) = self.thread.take() else {
            return Finished::Stuck {
                unwritten_bytes: self.dropped_bytes,
            };
        };
        // Woken the moment the thread ends (no sender is left).
        let ended = matches!(
            self.ended.recv_deadline(until),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if self.reader_gone() {
            return Finished::ReaderGone;
        }
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        let written = self.shared.written_bytes.load(Ordering::Relaxed);
        let unwritten_bytes = queued.saturating_sub(written) + self.dropped_bytes;
        if ended && unwritten_bytes == 0 {
            let _ = thread.join();
            Finished::All
        } else {
            // The thread stays blocked in its write; it ends with the process.
            Finished::Stuck { unwritten_bytes }
        }
    }
}

impl Write for Out {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.hand_over()?;
        }
        Ok(bytes.len())
    }

    /// Hands the text to the writer thread (it does not wait for the write).
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

/// Writes all of `bytes` to `fd`, retrying after signals.
fn write_fd(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
