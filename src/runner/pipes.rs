//! The pipe primitive: `multiprocessing.Pipe()` as CPython makes it on
//! Linux. A duplex pipe is a `SOCK_STREAM` socketpair, a one-way pipe a
//! plain `pipe(2)`: both are byte streams that know nothing of messages.
//! Like CPython's `Connection`, `send` writes a 4-byte big-endian length and
//! then the body (in one write up to 16 KiB, in two above), and `recv`
//! reads exactly 4 bytes, then exactly that many bytes, in two separate
//! reads. So two processes that read one end at once can each take part of
//! a message (a *torn* message), and both fail as they do under CPython.
//!
//! The body is our JSON packet behind the bytes a protocol-4 pickle starts
//! with (`PROTO 4`, `FRAME` and the low bytes of its length, here zero), so
//! that a torn message fails as under CPython: a length read from the start
//! of a body is negative (`EOFError: Ran out of input`), and a body read
//! from its fifth byte starts with a zero (`_pickle.UnpicklingError:
//! invalid load key, '\x00'.`).

use super::interp::{Packet, Proc};
use super::{RunError, os};
use crate::protocol::{Body, Value};
use crate::scenario::PipeDecl;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};
use nix::unistd::{pipe2, read, write};
use std::cell::{Ref, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// CPython writes the length and the body in one `write` up to this size,
/// in two above it (`Connection._send_bytes`).
pub const SPLIT_ABOVE_BYTES: usize = 16 * 1024;
/// The largest body a pipe message may have (CPython has no limit; a
/// length above this one can only have been read from a torn message).
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// The first bytes of every body, as of a protocol-4 pickle.
const BODY_MAGIC: [u8; 5] = [0x80, 0x04, 0x95, 0x00, 0x00];
/// Why a torn message happens, said after CPython's own error.
const TORN: &str = "read half a message: another process read from the same pipe end";

/// One end of a pipe as a process holds it. `close` really closes the fd
/// in this process (the others keep theirs).
pub struct End {
    fd: RefCell<Option<OwnedFd>>,
    pub channel: String,
    pub can_send: bool,
    pub can_recv: bool,
    /// A socket (duplex pipe) or a pipe(2) end.
    socket: bool,
}

impl End {
    /// An end handed over across `exec` to a `spawn`ed child (`None`: it
    /// was closed in the parent).
    pub fn handed_over(
        fd: Option<OwnedFd>,
        channel: String,
        can_send: bool,
        can_recv: bool,
        socket: bool,
    ) -> End {
        End {
            fd: RefCell::new(fd),
            channel,
            can_send,
            can_recv,
            socket,
        }
    }

    /// The open fd, or CPython's error for a closed connection.
    pub fn fd(&self) -> Result<Ref<'_, OwnedFd>, RunError> {
        Ref::filter_map(self.fd.borrow(), |f| f.as_ref())
            .map_err(|_| RunError("OSError: handle is closed".into()))
    }

    /// `conn.close()` in this process.
    pub fn close(&self) {
        self.fd.borrow_mut().take();
    }

    /// Writes what fits now without blocking; 0 if nothing does.
    fn try_write(&self, bytes: &[u8]) -> Result<usize, RunError> {
        self.write_some(bytes, false)
    }

    /// Writes some of `bytes`: what fits now (0 if nothing does), or, with
    /// `wait`, at least one byte, blocking as CPython's `write` does. (A
    /// socket blocks in the kernel; the pipe's write end is non-blocking,
    /// so it waits in poll(2) for room.)
    fn write_some(&self, bytes: &[u8], wait: bool) -> Result<usize, RunError> {
        let fd = self.fd()?;
        loop {
            let r = if self.socket {
                let flags = if wait {
                    MsgFlags::MSG_NOSIGNAL
                } else {
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL
                };
                send(fd.as_raw_fd(), bytes, flags)
            } else {
                // The write end of a pipe(2) is non-blocking (see `create`).
                write(fd.as_fd(), bytes)
            };
            return match r {
                Ok(n) => Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) if wait => {
                    wait_writable(fd.as_fd());
                    continue;
                }
                Err(Errno::EAGAIN) => Ok(0),
                Err(Errno::EPIPE | Errno::ECONNRESET) => Err(RunError(
                    "BrokenPipeError: [Errno 32] Broken pipe (nobody holds the other end)".into(),
                )),
                Err(e) => Err(RunError(format!("OSError: write failed: {e}"))),
            };
        }
    }
}

/// Makes the two ends of `[pipes.NAME]`: `(ends[0], ends[1])`.
pub fn create(name: &str, p: &PipeDecl) -> Result<[(String, End); 2], RunError> {
    let [ea, eb] = &p.ends;
    let (a, b) = if p.duplex {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| RunError(format!("cannot create a socket pair: {e}")))?
    } else {
        let (r, w) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| RunError(format!("cannot create a pipe: {e}")))?;
        // Non-blocking writes, so that a gated run can try a send without
        // blocking; a free run waits in poll(2) instead (`write_all`). Only
        // our processes ever hold this end (it is close-on-exec).
        fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| RunError(format!("cannot set up a pipe: {e}")))?;
        (r, w)
    };
    let end = |fd, can_send, can_recv| End {
        fd: RefCell::new(Some(fd)),
        channel: name.to_string(),
        can_send,
        can_recv,
        socket: p.duplex,
    };
    Ok([
        (ea.clone(), end(a, p.duplex, true)),
        (eb.clone(), end(b, true, p.duplex)),
    ])
}

/// The two writes CPython makes for one message: the length and body in
/// one up to 16 KiB, the length alone and then the body above.
pub fn frame(body: &[u8]) -> Vec<Vec<u8>> {
    let header = (body.len() as i32).to_be_bytes();
    if body.len() > SPLIT_ABOVE_BYTES {
        vec![header.to_vec(), body.to_vec()]
    } else {
        let mut one = header.to_vec();
        one.extend_from_slice(body);
        vec![one]
    }
}

/// The body of a message: the magic bytes, then the packet as JSON.
pub(super) fn encode(p: &Packet) -> Vec<u8> {
    let mut body = BODY_MAGIC.to_vec();
    body.extend_from_slice(&serde_json::to_vec(p).unwrap_or_default());
    body
}

/// How much body a 4-byte length announces, or the error CPython would
/// raise for it (a negative length reads nothing, and unpickling nothing
/// is `EOFError: Ran out of input`).
pub fn body_len(header: [u8; 4]) -> Result<usize, String> {
    let n = i32::from_be_bytes(header);
    if n <= 0 {
        return Err("EOFError: Ran out of input".into());
    }
    let n = n as usize;
    if n > MAX_BODY_BYTES {
        return Err(format!(
            "_pickle.UnpicklingError: a message of {n} bytes announced (over {MAX_BODY_BYTES})"
        ));
    }
    Ok(n)
}

/// Decodes a body, or says what CPython's unpickler would.
pub(super) fn decode(body: &[u8]) -> Result<Packet, String> {
    match body {
        [] => Err("EOFError: Ran out of input".into()),
        _ if body.starts_with(&BODY_MAGIC) => serde_json::from_slice(&body[BODY_MAGIC.len()..])
            .map_err(|_| "_pickle.UnpicklingError: pickle data was truncated".into()),
        [first, ..] => Err(format!(
            "_pickle.UnpicklingError: invalid load key, '{}'.",
            key_repr(*first)
        )),
    }
}

/// A byte as Python shows it in `invalid load key, 'x'.`
fn key_repr(b: u8) -> String {
    if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

fn torn(cpython: &str, end: &str) -> RunError {
    RunError(format!("{cpython} ({end}: {TORN})"))
}

/// The id of the message whose body these bytes are part of, if they hold
/// its start (a reader that took a length and then a body without its
/// first bytes still has the id).
pub(super) fn torn_id(bytes: &[u8]) -> Option<String> {
    const KEY: &[u8] = br#"{"m":""#;
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = bytes[at..].iter().position(|&b| b == b'"')?;
    let id = std::str::from_utf8(&bytes[at..at + len]).ok()?;
    (!id.is_empty() && id.len() <= 64).then(|| id.to_string())
}

/// Reads into `buf[*have..]` what is there now, without blocking (the
/// caller saw the fd readable, and in a gated run nobody else runs). Ok(false)
/// at end of file.
fn read_ready(fd: BorrowedFd<'_>, buf: &mut [u8], have: &mut usize) -> Result<bool, RunError> {
    while *have < buf.len() && os::readable(fd, 0) {
        match read(fd, &mut buf[*have..]) {
            Ok(0) => return Ok(false),
            Ok(n) => *have += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("OSError: read failed: {e}"))),
        }
    }
    Ok(true)
}

/// Reads exactly `buf.len()` bytes, blocking; Ok(false) at end of file.
fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8], have: &mut usize) -> Result<bool, RunError> {
    while *have < buf.len() {
        match read(fd, &mut buf[*have..]) {
            Ok(0) => return Ok(false),
            Ok(n) => *have += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("OSError: read failed: {e}"))),
        }
    }
    Ok(true)
}

/// Waits until `fd` can take a write.
fn wait_writable(fd: BorrowedFd<'_>) {
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
}

impl Proc<'_> {
    /// `conn.send(v)`: the length and the body, written as CPython writes
    /// them. Gated: the step was announced already; a body written apart
    /// is a step of its own, and a full pipe is retried.
    pub(super) fn send(&mut self, end: &str, v: Value) -> Result<(), RunError> {
        let run = self.run;
        let pe = run.end(end)?;
        if !pe.can_send {
            return Err(RunError(format!(
                "OSError: connection is read-only ({end} is the reading end of a one-way pipe)"
            )));
        }
        pe.fd()?;
        let msg = self.probe.msg_id();
        let body = encode(&Packet {
            m: msg.clone(),
            v: v.clone(),
        });
        if body.len() > MAX_BODY_BYTES {
            return Err(RunError(format!(
                "a message of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
                body.len()
            )));
        }
        let send_event = Body::Send {
            channel: pe.channel.clone(),
            end: end.to_string(),
            msg,
            value: v,
        };
        let parts = frame(&body);
        if parts.len() == 1 {
            // Before the write that makes the message visible.
            self.probe.emit(send_event);
            return self.write_all(pe, end, &parts[0]);
        }
        // Two writes: the length, then the body. The event goes between
        // them (still before the write that completes the message); its
        // cost stands for what CPython does between its two writes.
        self.write_all(pe, end, &parts[0])?;
        self.probe.emit(send_event);
        if self.gated() {
            self.gate(
                format!("send the {}-byte body on {end}", parts[1].len()),
                false,
                None,
                false,
                vec![format!("pipe:{}", pe.channel)],
            );
        }
        self.write_all(pe, end, &parts[1])
    }

    /// Writes all of `bytes`; a full pipe blocks (free) or is retried (gated).
    fn write_all(&mut self, pe: &End, end: &str, bytes: &[u8]) -> Result<(), RunError> {
        let mut done = pe.try_write(bytes)?;
        if done == bytes.len() {
            return Ok(());
        }
        let on = format!("send on full pipe {end}");
        self.probe.emit(Body::Block { on: on.clone() });
        if self.gated() {
            // A step per try. A try that wrote something is progress, not
            // a retry (the scheduler holds back a process whose retry
            // failed until someone else moves).
            let mut retry = false;
            while done < bytes.len() {
                self.gate(
                    format!("send on {end}"),
                    false,
                    Some(format!("send:{end}")),
                    retry,
                    vec!["*".into()],
                );
                let n = pe.try_write(&bytes[done..])?;
                done += n;
                retry = n == 0;
            }
        } else {
            while done < bytes.len() {
                done += pe.write_some(&bytes[done..], true)?;
            }
        }
        self.probe.emit(Body::Unblock { on });
        Ok(())
    }

    /// `conn.recv()`: read 4 bytes, then that many, in two reads. A torn
    /// message fails as under CPython, saying why.
    pub(super) fn recv(&mut self, end: &str) -> Result<Value, RunError> {
        let run = self.run;
        let pe = run.end(end)?;
        if !pe.can_recv {
            return Err(RunError(format!(
                "OSError: connection is write-only ({end} is the writing end of a one-way pipe)"
            )));
        }
        let mut header = [0u8; 4];
        let mut have = 0;
        let whole = self.read_part(pe, end, &mut header, &mut have, None)?;
        if !whole {
            return Err(if have == 0 {
                RunError("EOFError: the other end is closed".into())
            } else {
                torn("OSError: got end of file during message", end)
            });
        }
        let n = body_len(header).map_err(|e| torn(&e, end))?;
        let mut body = vec![0u8; n];
        let mut have = 0;
        if !self.read_part(pe, end, &mut body, &mut have, Some(n))? {
            return Err(torn("OSError: got end of file during message", end));
        }
        let p = decode(&body).map_err(|e| {
            let mut err = torn(&e, end);
            if let Some(id) = torn_id(&body) {
                err.0.pop();
                err.0.push_str(&format!("; the torn message is {id})"));
            }
            err
        })?;
        self.probe.emit(Body::Recv {
            channel: pe.channel.clone(),
            end: end.to_string(),
            msg: p.m,
            value: p.v.clone(),
        });
        Ok(p.v)
    }

    /// One of recv's two reads (`body` = Some(length) for the second).
    /// Free: blocks, announcing the wait. Gated: a step of the schedule,
    /// retried until all of it has come. Ok(false) at end of file.
    fn read_part(
        &mut self,
        pe: &End,
        end: &str,
        buf: &mut [u8],
        have: &mut usize,
        body: Option<usize>,
    ) -> Result<bool, RunError> {
        let on = match body {
            None => format!("recv on {end}"),
            Some(_) => format!("recv on {end} (the rest of a message)"),
        };
        let mut announced = false;
        if self.gated() {
            let action = match body {
                None => format!("recv on {end}"),
                Some(n) => format!("recv on {end}: read the {n}-byte body"),
            };
            // Like `gated_retry`, but a read that can go through now (data,
            // or the end of the stream, which the model cannot know of)
            // waits for nothing: the scheduler may pick it at once.
            let mut retry = false;
            let eof = loop {
                let ready = os::readable(pe.fd()?.as_fd(), 0);
                self.gate(
                    action.clone(),
                    false,
                    (!ready).then(|| format!("recv:{end}")),
                    retry,
                    vec!["*".into()],
                );
                let before = *have;
                if !read_ready(pe.fd()?.as_fd(), buf, have)? {
                    break true;
                }
                if *have == buf.len() {
                    break false;
                }
                if !announced {
                    announced = true;
                    self.probe.emit(Body::Block { on: on.clone() });
                }
                // Part of it came: progress, not a failed retry.
                retry = *have == before;
            };
            if announced {
                self.probe.emit(Body::Unblock { on });
            }
            return Ok(!eof);
        }
        // Free: a look (poll(2)) whether anything is there, to announce a
        // wait; between the two reads that look is all we do, about as
        // long as CPython's unpacking of the length and setting up of the
        // body's buffer.
        let fd = pe.fd()?;
        if !os::readable(fd.as_fd(), 0) {
            announced = true;
            self.probe.emit(Body::Block { on: on.clone() });
        }
        let whole = read_exact(fd.as_fd(), buf, have)?;
        if announced {
            self.probe.emit(Body::Unblock { on });
        }
        Ok(whole)
    }

    /// `conn.poll(timeout)`: poll(2) on the end.
    pub(super) fn poll_end(&mut self, end: &str, timeout_ms: i32) -> Result<bool, RunError> {
        let pe = self.run.end(end)?;
        let ready = os::readable(pe.fd()?.as_fd(), timeout_ms);
        self.probe.emit(Body::Poll {
            channel: pe.channel.clone(),
            end: end.to_string(),
            ready,
        });
        Ok(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(v: &str) -> Packet {
        Packet {
            m: "main#1".into(),
            v: Value::Str(v.into()),
        }
    }

    #[test]
    fn small_messages_are_one_write_large_ones_two() {
        let small = encode(&packet("hi"));
        let parts = frame(&small);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0][..4], (small.len() as i32).to_be_bytes());
        let big = encode(&packet(&"x".repeat(20_000)));
        let parts = frame(&big);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (big.len() as i32).to_be_bytes());
        assert_eq!(parts[1], big);
    }

    #[test]
    fn a_whole_body_decodes() {
        let p = decode(&encode(&packet("hi"))).expect("whole");
        assert_eq!(p.m, "main#1");
        assert_eq!(p.v, Value::Str("hi".into()));
    }

    #[test]
    fn a_length_taken_from_a_body_fails_as_under_cpython() {
        // The first 4 bytes of a body, read as a length, are negative.
        let body = encode(&packet("hi"));
        let head: [u8; 4] = body[..4].try_into().expect("4 bytes");
        assert_eq!(body_len(head), Err("EOFError: Ran out of input".into()));
        // A body missing its first 4 bytes does not unpickle.
        let e = decode(&body[4..]).expect_err("torn");
        assert_eq!(e, "_pickle.UnpicklingError: invalid load key, '\\x00'.");
        // The reader that took the rest of the body can still name it.
        assert_eq!(torn_id(&body[4..]).as_deref(), Some("main#1"));
        assert_eq!(torn_id(&body[..4]), None);
        // Nonsense lengths are refused, not read.
        assert!(body_len(*b"{\"m\"").is_err());
        assert_eq!(body_len(7i32.to_be_bytes()), Ok(7));
    }
}
