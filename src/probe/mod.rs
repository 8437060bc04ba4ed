//! The probe: what every scenario process uses to tell the collector what it
//! does. One Unix-socket connection per process, opened right after fork:
//! a `hello` line that carries the read ends of the process's own stdout and
//! stderr pipes (`SCM_RIGHTS`), then one JSON line per event, each written
//! whole with a single `write` so lines never tear. The first line after
//! the hello goes on the socket with the read end of a new *event pipe*;
//! every later line goes into that pipe. (A pipe costs the kernel about a
//! quarter of what a unix-socket send does; the socket stays for the hello,
//! for `go` lines in gated runs, and as the kernel's word on who the peer
//! is. A process that sends nothing after its hello, as many short-lived
//! children do, never makes a pipe: PROTOCOL.md §1.)
//!
//! Events about nothing another process can see (a sleep of zero, the end
//! of a sleep) may be *held* ([`Probe::hold`]) and go out in the same
//! `write` as the next event, when the process does nothing but compute in
//! between: one socket write for a whole `sleep 0`/`wake`/`write` step
//! instead of three. A held event never waits across a system call: the
//! next event sends it, and the runner sends it ([`Probe::flush`]) before
//! anything else (PROTOCOL.md §3).

use crate::jsonl::{self, Head};
use crate::protocol::{Body, Event, MAX_LINE_BYTES, Value, now_ns};
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::unistd::{dup2_stderr, dup2_stdout, pipe2};
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A process's one connection and its sequence number, shared by the
/// process's threads: an event's number is taken and its line written under
/// one lock, so lines never tear and `seq` rises in the order they are sent.
#[derive(Default)]
struct Conn {
    sock: Option<UnixStream>,
    /// The write end of the process's event pipe, whose read end went to
    /// the collector with the first line after the hello: every later line
    /// is written here. `None`: on the socket (none yet, or none could be
    /// made).
    events: Option<std::fs::File>,
    /// No event pipe yet: the next line makes one and sends its read end
    /// with it, on the socket (PROTOCOL.md §1). False without a
    /// connection, and once the pipe is made.
    pipe_later: bool,
    seq: u64,
    /// Whole lines held for the next write ([`Probe::hold`]); also where
    /// every line is made, so that its memory serves all of them.
    held: Vec<u8>,
}

/// Which access to a value [`Probe::emit_access`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// At most this many bytes are held; a hold beyond it writes them first.
const MAX_HELD_BYTES: usize = 16 * 1024;

/// The reading side of a process's connection (gated runs: `go` lines),
/// shared by its threads.
#[derive(Default)]
struct Gates {
    reader: Mutex<Option<UnixStream>>,
    mailbox: Mutex<Mailbox>,
    news: std::sync::Condvar,
}

/// The `go`s read and not yet taken, by thread name (`""`: main thread).
#[derive(Default)]
struct Mailbox {
    gone: std::collections::BTreeSet<String>,
    /// The connection ended: nobody will say go any more.
    closed: bool,
}

/// Locks a mutex whose data a panicking thread leaves whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads one line (without its newline); `None` at end or on an error.
fn read_line(sock: &mut UnixStream) -> Option<String> {
    use std::io::Read;
    // Two syscalls a line (a `go` line is a few bytes): look at what is
    // there without taking it, then take exactly up to the newline, so
    // that nothing after it (a `go` for another thread) is taken from the
    // socket into a buffer that an `exec` would lose.
    let mut line = Vec::new();
    let mut peeked = [0u8; 64];
    loop {
        let n = match nix::sys::socket::recv(sock.as_raw_fd(), &mut peeked, MsgFlags::MSG_PEEK) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        };
        let (take, done) = match peeked[..n].iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (n, false),
        };
        let start = line.len();
        line.resize(start + take, 0);
        // The bytes are in the socket already (we just saw them, and
        // nothing else reads it: the caller holds the reader's lock).
        sock.read_exact(&mut line[start..]).ok()?;
        if done {
            line.pop();
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

pub struct Probe {
    conn: Arc<Mutex<Conn>>,
    gates: Arc<Gates>,
    pub id: String,
    /// The pid as `ps` shows it.
    pub pid: i32,
    /// Source line of the step being run, stamped on every event.
    pub line: Option<u32>,
    /// A thread's probe: its name (`main.t1`) and kernel tid, stamped on
    /// every event it sends. `None` for the process's main thread.
    thread: Option<(String, i32)>,
}

/// The calling thread's kernel tid as the host's `/proc/PID/task` (and
/// `ps -L`) lists it, which inside forkscope's PID namespace differs from
/// `gettid()`: read from `/proc/thread-self` like [`host_pids`].
pub fn gettid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.to_str()
                .and_then(|s| s.rsplit('/').next())
                .and_then(|t| t.parse().ok())
        })
        .unwrap_or_else(|| nix::unistd::gettid().as_raw())
}

/// Connects to the collector's socket as [`crate::protocol::SOCKET_ENV`]
/// names it: `@NAME` is a name in the abstract namespace, else a path.
pub fn connect_to(socket: &Path) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    match socket.as_os_str().as_bytes().strip_prefix(b"@") {
        Some(name) => {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            UnixStream::connect_addr(&addr)
        }
        None => UnixStream::connect(socket),
    }
}

/// Our pid and parent pid as the host's `/proc` (and so `ps`) shows them,
/// which inside forkscope's PID namespace differ from `getpid()`.
pub fn host_pids() -> (i32, i32) {
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| nix::unistd::getpid().as_raw());
    (pid, host_ppid().unwrap_or(0))
}

/// The parent pid from `/proc/self/status` (host view; changes on adoption).
pub fn host_ppid() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Says on stderr (still the parent's: the process's own pipes replace
/// it only after its hello) that process `id` runs on unobserved, unless
/// the collector is simply gone (the app stopped or ended the run: no
/// listener, a closed connection), which is no news. Such a process is
/// missing from the run (no hello, no output): this line says why.
fn unobserved(id: &str, what: &str, e: &std::io::Error) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionRefused, ConnectionReset, NotFound};
    if matches!(
        e.kind(),
        ConnectionRefused | NotFound | BrokenPipe | ConnectionReset
    ) {
        return;
    }
    // One write of one line (eprintln! could write it in pieces).
    let line = format!("forkscope: {id} could not {what} ({e}): it runs unobserved\n");
    // SAFETY: writes the bytes of `line`, which lives for the call, to fd 2.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// What the descriptors sent with a hello are, in the hello's `fds`
/// (PROTOCOL.md §2).
pub const FD_STDOUT: &str = "stdout";
pub const FD_STDERR: &str = "stderr";
pub const FD_EVENTS: &str = "events";

/// What [`Probe::handover`] gives a `spawn`ed image to go on with.
pub struct Handover {
    pub sock_fd: Option<i32>,
    pub events_fd: Option<i32>,
    pub seq: u64,
}

/// Which of the process's own streams to hand to the collector.
pub enum Capture {
    /// Replace stdout and stderr with fresh pipes whose read ends the
    /// collector reads (every scenario process).
    OwnOutput,
    /// Leave stdout/stderr alone (the runner).
    None,
    /// Hand over these read ends as stdout and stderr (the process made
    /// its pipes itself: a traced program's child, `trace::shim`).
    Fds(OwnedFd, OwnedFd),
}

impl Probe {
    /// Connects to the collector and says hello. Failure to connect is not
    /// fatal: the process runs on, unobserved (and the run shows it missing).
    pub fn connect(
        socket: &Path,
        id: &str,
        role: &str,
        parent: Option<&str>,
        daemon: bool,
        capture: Capture,
    ) -> Probe {
        Probe::connect_named(socket, id, role, parent, daemon, capture, None)
    }

    /// [`Probe::connect`] with the process's own name in its hello (a
    /// traced Python program's `Process-1`).
    pub fn connect_named(
        socket: &Path,
        id: &str,
        role: &str,
        parent: Option<&str>,
        daemon: bool,
        capture: Capture,
        name: Option<&str>,
    ) -> Probe {
        let (pid, ppid) = host_pids();
        Probe::connect_as(socket, id, role, parent, daemon, capture, (pid, ppid), name)
    }

    /// [`Probe::connect`] for a process that knows its pid and its
    /// parent's as `ps` shows them (a freshly forked child: its parent
    /// told it), which saves reading them from `/proc`.
    // The hello's fields, one by one: a struct for them would only be
    // built here from the same arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn connect_as(
        socket: &Path,
        id: &str,
        role: &str,
        parent: Option<&str>,
        daemon: bool,
        capture: Capture,
        (pid, ppid): (i32, i32),
        name: Option<&str>,
    ) -> Probe {
        let mut probe = Probe {
            conn: Arc::default(),
            gates: Arc::default(),
            id: id.to_string(),
            pid,
            line: None,
            thread: None,
        };
        let sock = match connect_to(socket) {
            Ok(sock) => sock,
            Err(e) => {
                unobserved(id, "connect to the collector", &e);
                return probe;
            }
        };
        // The new output pipes: their read ends go with the hello, and
        // the write ends become stdout and stderr once the collector has
        // them (until then we write where we wrote before).
        // (A process that made its pipes itself hands over only the read
        // ends: its fds 1 and 2 are the write ends already.)
        let (reads, writes) = match capture {
            Capture::OwnOutput => match output_pipes() {
                Ok(p) => (Some([p.out_r, p.err_r]), Some([p.out_w, p.err_w])),
                Err(_) => (None, None),
            },
            Capture::None => (None, None),
            Capture::Fds(out, err) => (Some([out, err]), None),
        };
        // The event pipe is made with the first line after the hello
        // (`write_conn`): a process that sends nothing more never makes one.
        let mut fds: Vec<String> = Vec::new();
        if reads.is_some() {
            fds.extend([FD_STDOUT.to_string(), FD_STDERR.to_string()]);
        }
        let hello = probe.line_for(Body::Hello {
            ppid,
            role: role.to_string(),
            parent: parent.map(str::to_string),
            daemon,
            ns_pid: Some(nix::unistd::getpid().as_raw()),
            name: name.map(str::to_string),
            fds,
        });
        let raw: Vec<i32> = reads.iter().flatten().map(AsRawFd::as_raw_fd).collect();
        match send_hello(&sock, &hello, &raw) {
            Ok(()) => probe.took_hello(sock, writes.as_ref()),
            Err(e) => unobserved(id, "send its hello", &e),
        }
        // Our copies of the pipes close here: the collector has the read
        // ends, fds 1 and 2 are the write ends.
        drop(reads);
        drop(writes);
        probe
    }

    /// In a child just forked: this probe (the parent's, copied by
    /// `fork`) becomes the child's own, connected, its hello said: what
    /// [`Probe::connect_as`] does, without allocating. A child's first
    /// allocations and frees write the allocator's pages and the parent's
    /// heap that the child still shares with its parent, each a page the
    /// kernel must copy; a child that does nothing else paid about 15 such
    /// faults for its hello. So the parent's connection is closed but its
    /// memory kept, the child's `id` (made by the parent before the fork)
    /// moves in, the hello is written into the connection's own line
    /// buffer and sent without nix's `sendmsg` (which puts the control
    /// message in a fresh `Vec`). `has_parent`: the hello names the
    /// parent (this probe's id until now).
    #[allow(clippy::too_many_arguments)]
    pub fn become_child(
        &mut self,
        socket: &Path,
        id: String,
        role: &str,
        has_parent: bool,
        daemon: bool,
        (pid, ppid): (i32, i32),
        ns_pid: i32,
    ) {
        self.disconnect();
        // A fresh count, even if the connection fails below (the ids of
        // an unobserved child's messages, `msg_id`, start at 1 as before).
        self.conn().seq = 0;
        // The parent's memory, as the parent's list of children: left,
        // not freed (it goes when this process ends or execs).
        let parent_id = std::mem::ManuallyDrop::new(std::mem::replace(&mut self.id, id));
        self.pid = pid;
        self.line = None;
        if self.thread.is_some() {
            std::mem::forget(self.thread.take());
        }
        {
            let mut mail = lock(&self.gates.mailbox);
            mail.closed = false;
            if !mail.gone.is_empty() {
                std::mem::forget(std::mem::take(&mut mail.gone));
            }
        }
        let sock = match connect_to(socket) {
            Ok(sock) => sock,
            Err(e) => {
                unobserved(&self.id, "connect to the collector", &e);
                return;
            }
        };
        let pipes = output_pipes().ok();
        let fds: &[&str] = match pipes {
            Some(_) => &[FD_STDOUT, FD_STDERR],
            None => &[],
        };
        let hello = jsonl::Hello {
            ppid,
            role,
            parent: has_parent.then_some(parent_id.as_str()),
            daemon,
            ns_pid: Some(ns_pid),
            name: None,
            fds,
        };
        // The line buffer the parent's lines were made in: big enough
        // for a hello, most likely, and then no allocation.
        let mut line = {
            let mut conn = self.conn();
            conn.seq = 1;
            std::mem::take(&mut conn.held)
        };
        line.clear();
        let t_ns = now_ns();
        jsonl::write_head(&mut line, &self.head(t_ns, 1));
        jsonl::write_hello(&mut line, &hello);
        // (The `Body` only for a hello too long to send as it is.)
        self.end_line(&mut line, 0, (t_ns, 1), true, || Body::Hello {
            ppid,
            role: role.to_string(),
            parent: hello.parent.map(str::to_string),
            daemon,
            ns_pid: Some(ns_pid),
            name: None,
            fds: fds.iter().map(|f| f.to_string()).collect(),
        });
        let reads = pipes
            .as_ref()
            .map(|p| [p.out_r.as_raw_fd(), p.err_r.as_raw_fd()]);
        match send_hello(&sock, &line, reads.as_ref().map_or(&[], |r| &r[..])) {
            Ok(()) => {
                let writes = pipes.as_ref().map(|p| [&p.out_w, &p.err_w]);
                self.took_hello(sock, writes.as_ref());
            }
            Err(e) => unobserved(&self.id, "send its hello", &e),
        }
        line.clear();
        self.conn().held = line;
        // Our copies of the pipes close here: the collector has the read
        // ends, fds 1 and 2 are the write ends.
        drop(pipes);
    }

    /// The collector has our hello on `sock`: the output pipes' write ends
    /// (if we made them) become stdout and stderr, and every later line
    /// goes out on this connection.
    fn took_hello<W: std::os::fd::AsFd>(&mut self, sock: UnixStream, writes: Option<&[W; 2]>) {
        if let Some([out_w, err_w]) = writes {
            // dup2 gives fds 1 and 2 without O_CLOEXEC, so exec'd
            // programs keep them. A failure leaves the old stream.
            let _ = dup2_stdout(out_w);
            let _ = dup2_stderr(err_w);
        }
        // (The reader for `go` lines is made when first needed: only
        // gated runs read, and a `dup` here, closed again by each
        // child this process forks, costs every process two syscalls.)
        let mut conn = self.conn();
        conn.sock = Some(sock);
        conn.pipe_later = true;
    }

    /// Gated runs: blocks until the app says `go` to this thread on our
    /// connection: `go` for the main thread, `go NAME` for thread NAME. If
    /// the app is gone we just go on (the run is being torn down anyway).
    ///
    /// The threads of a process share one connection: whichever waiting
    /// thread holds the reader reads the next line, and a `go` for another
    /// thread is left in the mailbox for that one.
    pub fn wait_go(&mut self) {
        self.flush();
        let me = self.thread_name().unwrap_or("").to_string();
        let gates = Arc::clone(&self.gates);
        loop {
            {
                let mut mail = lock(&gates.mailbox);
                if mail.closed || mail.gone.remove(&me) {
                    return;
                }
            }
            // Only one thread reads; the others wait for its news.
            let Ok(mut reader) = gates.reader.try_lock() else {
                let mail = lock(&gates.mailbox);
                if !mail.gone.contains(&me) && !mail.closed {
                    let _ = gates
                        .news
                        .wait_timeout(mail, std::time::Duration::from_millis(20));
                }
                continue;
            };
            if reader.is_none() {
                // The first wait: our own handle on the connection.
                *reader = self.conn().sock.as_ref().and_then(|s| s.try_clone().ok());
            }
            let line = reader.as_mut().and_then(read_line);
            let mut mail = lock(&gates.mailbox);
            match line {
                None => {
                    *reader = None;
                    mail.closed = true;
                }
                Some(l) => {
                    let to = match l.strip_prefix("go") {
                        Some("") => Some(String::new()),
                        Some(rest) => rest.strip_prefix(' ').map(str::to_string),
                        None => None,
                    };
                    if let Some(to) = to {
                        mail.gone.insert(to);
                    }
                }
            }
            gates.news.notify_all();
        }
    }

    /// What a `spawn`ed child needs to go on with this connection after
    /// `exec`: the socket's fd (if connected), its event pipe's write end
    /// (if it has made one: else the image makes it with its first line)
    /// and the last sequence number. Both fds are close-on-exec: the
    /// caller clears that for this one `exec`.
    pub fn handover(&self) -> Handover {
        let mut conn = self.conn();
        flush_held(&mut conn);
        Handover {
            sock_fd: conn.sock.as_ref().map(AsRawFd::as_raw_fd),
            events_fd: conn.events.as_ref().map(AsRawFd::as_raw_fd),
            seq: conn.seq,
        }
    }

    /// The same connection, after `exec`: the probe a `spawn`ed child had
    /// before it replaced its image (its hello is already sent), with its
    /// event pipe if it had one (else its next line makes one).
    pub fn resume(
        sock: Option<UnixStream>,
        events: Option<OwnedFd>,
        id: &str,
        pid: i32,
        seq: u64,
    ) -> Probe {
        let reader = sock.as_ref().and_then(|s| s.try_clone().ok());
        let pipe_later = sock.is_some() && events.is_none();
        Probe {
            conn: Arc::new(Mutex::new(Conn {
                sock,
                events: events.map(std::fs::File::from),
                pipe_later,
                seq,
                held: Vec::new(),
            })),
            gates: Arc::new(Gates {
                reader: Mutex::new(reader),
                ..Gates::default()
            }),
            id: id.to_string(),
            pid,
            line: None,
            thread: None,
        }
    }

    /// The probe of a new thread of this process: the same connection and
    /// sequence, its events stamped with the thread's name and tid.
    pub fn for_thread(&self, name: &str, tid: i32) -> Probe {
        Probe {
            conn: Arc::clone(&self.conn),
            gates: Arc::clone(&self.gates),
            id: self.id.clone(),
            pid: self.pid,
            line: self.line,
            thread: Some((name.to_string(), tid)),
        }
    }

    /// The thread this probe speaks for (`None`: the main thread).
    pub fn thread_name(&self) -> Option<&str> {
        self.thread.as_ref().map(|(n, _)| n.as_str())
    }

    /// The connection. A thread that panicked while sending leaves it
    /// usable: the state is a socket and a counter, whole either way.
    fn conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the collector has read everything we sent, at most
    /// `timeout`; true if it has (or there is no connection).
    ///
    /// The collector judges a peer when it accepts the connection, by the
    /// kernel's word on the peer's pid (`/proc`), and the runner core's
    /// claim to `runner` stands on that alone (PROTOCOL.md §9.6). A
    /// collector that is slow to accept (a loaded machine) could otherwise
    /// find the whole run over and reaped, and the runner gone: its hello
    /// refused, and with it every process it started. Once the collector
    /// has read our last byte it has long accepted us, while we lived.
    pub fn linger(&self, timeout: std::time::Duration) -> bool {
        let mut conn = self.conn();
        flush_held(&mut conn);
        let Some(sock) = conn.sock.as_ref() else {
            return true;
        };
        let deadline = std::time::Instant::now() + timeout;
        // The collector usually reads within microseconds: look again
        // soon, then less and less often (up to every millisecond).
        let mut nap = std::time::Duration::from_micros(20);
        loop {
            let mut unread: libc::c_int = 0;
            // SAFETY: SIOCOUTQ (TIOCOUTQ) on a socket fd we own writes one
            // int, the bytes sent and not yet read by the peer, to `unread`.
            let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut unread) };
            let mut unread_pipe: libc::c_int = 0;
            if let Some(events) = conn.events.as_ref() {
                // SAFETY: FIONREAD on a pipe fd we own (either end answers)
                // writes one int, the bytes in the pipe, to `unread_pipe`.
                let r =
                    unsafe { libc::ioctl(events.as_raw_fd(), libc::FIONREAD, &mut unread_pipe) };
                if r < 0 {
                    unread_pipe = 0;
                }
            }
            if (r < 0 || unread <= 0) && unread_pipe <= 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(1));
        }
    }

    /// Closes the connection (the parent's copy, in a fresh child).
    pub fn disconnect(&mut self) {
        let mut conn = self.conn();
        conn.sock = None;
        // The parent's event pipe too: only the parent writes into it.
        conn.events = None;
        conn.pipe_later = false;
        // (A child forked while a thread of its parent held lines: they are
        // the parent's to send.)
        conn.held.clear();
        drop(conn);
        *lock(&self.gates.reader) = None;
    }

    pub fn next_seq(&self) -> u64 {
        self.conn().seq + 1
    }

    /// A message id unique in the run: who sent it and when.
    pub fn msg_id(&self) -> String {
        format!("{}#{}", self.id, self.next_seq())
    }

    fn line_for(&mut self, body: Body) -> Vec<u8> {
        let seq = {
            let mut conn = self.conn();
            conn.seq += 1;
            conn.seq
        };
        let mut line = Vec::new();
        self.append_line(&mut line, now_ns(), seq, body);
        line
    }

    /// The fields every event of this probe starts with.
    fn head(&self, t_ns: u64, seq: u64) -> Head<'_> {
        Head {
            t_ns,
            seq,
            proc_id: &self.id,
            pid: self.pid,
            line: self.line,
            thread: self.thread.as_ref().map(|(n, _)| n.as_str()),
            tid: self.thread.as_ref().map(|(_, t)| *t),
        }
    }

    /// Appends one event's line (newline included) to `out`: the busy
    /// kinds written by hand ([`crate::jsonl`], the same bytes as
    /// `serde_json`), the others, and any line too long to send, by
    /// [`Probe::line_at`].
    fn append_line(&self, out: &mut Vec<u8>, t_ns: u64, seq: u64, body: Body) {
        let start = out.len();
        jsonl::write_head(out, &self.head(t_ns, seq));
        let written = jsonl::write_body(out, &body);
        self.end_line(out, start, (t_ns, seq), written, || body);
    }

    /// Ends the line begun at `out[start..]` (its head and, if `written`,
    /// its body by hand): a newline, or, when the body was not written or
    /// the line is too long to send, the line again by
    /// [`Probe::line_at`] from `body()`.
    fn end_line(
        &self,
        out: &mut Vec<u8>,
        start: usize,
        (t_ns, seq): (u64, u64),
        written: bool,
        body: impl FnOnce() -> Body,
    ) {
        if written && out.len() - start < MAX_LINE_BYTES {
            out.push(b'\n');
        } else {
            out.truncate(start);
            out.extend_from_slice(&self.line_at(t_ns, seq, body()));
        }
    }

    /// One event's line (newline included) by `serde_json`, cut to fit
    /// [`MAX_LINE_BYTES`].
    fn line_at(&self, t_ns: u64, seq: u64, body: Body) -> Vec<u8> {
        let mut e = Event {
            t_ns,
            seq,
            proc_id: self.id.clone(),
            pid: self.pid,
            line: self.line,
            thread: self.thread.as_ref().map(|(n, _)| n.clone()),
            tid: self.thread.as_ref().map(|(_, t)| *t),
            body,
        };
        let mut text = serde_json::to_vec(&e).unwrap_or_default();
        if text.len() >= MAX_LINE_BYTES {
            shrink(&mut e.body);
            text = serde_json::to_vec(&e).unwrap_or_default();
            if text.len() >= MAX_LINE_BYTES {
                e.body = Body::Error {
                    message: format!("a {} event was too long to send", e.body.kind()),
                };
                text = serde_json::to_vec(&e).unwrap_or_default();
            }
        }
        text.push(b'\n');
        text
    }

    /// Sends one event, stamped now.
    pub fn emit(&mut self, body: Body) {
        self.emit_at(now_ns(), body);
    }

    /// Sends one event with a time taken earlier (e.g. just before a fork,
    /// so that the spawn precedes the child's hello).
    pub fn emit_at(&mut self, t_ns: u64, body: Body) {
        let mut conn = self.conn();
        conn.seq += 1;
        let seq = conn.seq;
        // Written after the held lines, all in one `write`.
        self.append_line(&mut conn.held, t_ns, seq, body);
        flush_held(&mut conn);
    }

    /// Sends a `read` or `write` of `name` (`kind`), stamped now, without
    /// building its [`Body`]: the busiest event of a busy process.
    pub fn emit_access(&mut self, access: Access, name: &str, value: &Value, private: bool) {
        let mut conn = self.conn();
        conn.seq += 1;
        let seq = conn.seq;
        let t_ns = now_ns();
        let start = conn.held.len();
        let held = &mut conn.held;
        jsonl::write_head(held, &self.head(t_ns, seq));
        let kind: &[u8] = match access {
            Access::Read => b"read",
            Access::Write => b"write",
        };
        jsonl::write_access(held, kind, name, value, private);
        if held.len() - start < MAX_LINE_BYTES {
            held.push(b'\n');
        } else {
            // Too long for one line: cut as any other event is.
            held.truncate(start);
            let (name, value) = (name.to_string(), value.clone());
            let body = match access {
                Access::Read => Body::Read {
                    name,
                    value,
                    private,
                },
                Access::Write => Body::Write {
                    name,
                    value,
                    private,
                },
            };
            let line = self.line_at(t_ns, seq, body);
            conn.held.extend_from_slice(&line);
        }
        flush_held(&mut conn);
    }

    /// Sends a `spawn` stamped `t_ns` without building its [`Body`]: a
    /// parent starting many children allocates (and frees) nothing for
    /// it, so it writes fewer of the pages its last child still shares.
    pub fn emit_spawn(&mut self, t_ns: u64, child: &str, child_pid: i32, role: &str, daemon: bool) {
        let mut conn = self.conn();
        conn.seq += 1;
        let seq = conn.seq;
        let start = conn.held.len();
        let held = &mut conn.held;
        jsonl::write_head(held, &self.head(t_ns, seq));
        jsonl::write_spawn(held, child, child_pid, role, daemon);
        if held.len() - start < MAX_LINE_BYTES {
            held.push(b'\n');
        } else {
            // Too long for one line: cut as any other event is.
            held.truncate(start);
            let body = Body::Spawn {
                child: child.to_string(),
                child_pid,
                role: role.to_string(),
                daemon,
            };
            let line = self.line_at(t_ns, seq, body);
            conn.held.extend_from_slice(&line);
        }
        flush_held(&mut conn);
    }

    /// Makes an event now and keeps it for the next write: the next
    /// `emit` (or [`Probe::flush`]) sends it together with its own line, in
    /// one `write`. Only for events about nothing another process can see,
    /// and only when the caller does nothing but compute until that next
    /// write: a held event dies with the process, so it must never wait
    /// across a system call (a block, a store to shared memory, a fork, a
    /// write, an exit).
    pub fn hold(&mut self, body: Body) {
        let mut conn = self.conn();
        conn.seq += 1;
        if conn.sock.is_none() {
            return;
        }
        let seq = conn.seq;
        let before = conn.held.len();
        self.append_line(&mut conn.held, now_ns(), seq, body);
        if conn.held.len() > MAX_HELD_BYTES && before > 0 {
            // Too much held: what was held before goes out first.
            let all = std::mem::take(&mut conn.held);
            write_conn(&mut conn, &all[..before]);
            let mut rest = all;
            rest.drain(..before);
            conn.held = rest;
        }
    }

    /// Whether events are held ([`Probe::hold`]) and not written yet.
    pub fn holds(&self) -> bool {
        !self.conn().held.is_empty()
    }

    /// Writes the held events now (nothing if none are held).
    pub fn flush(&mut self) {
        flush_held(&mut self.conn());
    }

    /// Sends an event about another process (e.g. `reaped` of a child).
    pub fn emit_about(&mut self, proc_id: &str, pid: i32, body: Body) {
        let mut conn = self.conn();
        conn.seq += 1;
        let e = Event {
            t_ns: now_ns(),
            seq: conn.seq,
            proc_id: proc_id.to_string(),
            pid,
            line: self.line,
            thread: None,
            tid: None,
            body,
        };
        let mut text = serde_json::to_vec(&e).unwrap_or_default();
        text.push(b'\n');
        send_line(&mut conn, &text);
    }
}

/// Writes one whole line (under the connection's lock: threads never tear
/// it), after the held ones, in the same `write`.
fn send_line(conn: &mut Conn, line: &[u8]) {
    conn.held.extend_from_slice(line);
    flush_held(conn);
}

/// Writes the held lines, if any, in one `write`, keeping the buffer's
/// memory for the next lines.
fn flush_held(conn: &mut Conn) {
    if !conn.held.is_empty() {
        let all = std::mem::take(&mut conn.held);
        write_conn(conn, &all);
        let mut all = all;
        all.clear();
        conn.held = all;
    }
}

/// Writes whole lines into the event pipe (the socket if there is none;
/// the first line after the hello makes the pipe: [`send_with_new_pipe`]).
fn write_conn(conn: &mut Conn, bytes: &[u8]) {
    let written = match (conn.events.as_mut(), conn.sock.as_mut()) {
        (Some(events), _) => events.write_all(bytes),
        (None, Some(sock)) if conn.pipe_later => match send_with_new_pipe(sock, bytes) {
            Ok(Some(events)) => {
                conn.events = Some(events);
                conn.pipe_later = false;
                Ok(())
            }
            // No pipe (out of descriptors): on the socket this time, and
            // the next line tries again.
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        (None, Some(sock)) => sock.write_all(bytes),
        (None, None) => return,
    };
    if written.is_err() {
        // The collector is gone (the app stopped): run on silently.
        conn.sock = None;
        conn.events = None;
        conn.pipe_later = false;
    }
}

/// Makes the event pipe and sends `bytes` (whole lines) on the socket
/// with its read end (`SCM_RIGHTS`, PROTOCOL.md §1): lines before and in
/// this message are read from the socket, later ones from the pipe, which
/// the collector cannot read before it has this message. The write end
/// (close-on-exec: a program we `exec` never holds it; a `spawn`ed image
/// gets it handed over on purpose) is for every later line. `None`: no
/// pipe could be made; the lines went on the socket alone.
fn send_with_new_pipe(
    sock: &mut UnixStream,
    bytes: &[u8],
) -> std::io::Result<Option<std::fs::File>> {
    let Ok((events_r, events_w)) = pipe2(OFlag::O_CLOEXEC) else {
        sock.write_all(bytes)?;
        return Ok(None);
    };
    let fds = [events_r.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsg,
            MsgFlags::empty(),
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // A signal may cut a blocking send short: the descriptor went with
    // its first part, the rest follows on the socket (still before any
    // line in the pipe).
    sock.write_all(&bytes[sent..])?;
    // Our copy of the read end closes here: the collector has it (in
    // flight until it reads this message: a SIGKILL now cannot take the
    // pipe, nor what we write into it, away from it).
    drop(events_r);
    Ok(Some(std::fs::File::from(events_w)))
}

/// A process's new stdout and stderr pipes, all ends close-on-exec (fds
/// 1 and 2 are made from the write ends with `dup2`, which clears it).
struct OutputPipes {
    out_r: OwnedFd,
    out_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
}

/// Sends a hello `line` on `sock` with the descriptors `fds` (none, or
/// the two read ends of the output pipes) in one `sendmsg`. A signal may
/// cut a blocking send short before anything went (EINTR): sent again, or
/// the process would run on unobserved; cut short after a part went, the
/// rest follows (the descriptors went with the first part). The control
/// message is built on the stack: nix's `sendmsg` would allocate it, and
/// a child just forked should not allocate ([`Probe::become_child`]).
fn send_hello(sock: &UnixStream, line: &[u8], fds: &[i32]) -> std::io::Result<()> {
    /// Room for one `SCM_RIGHTS` message of up to [`MAX_FDS`] descriptors,
    /// aligned as a `cmsghdr`.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    const MAX_FDS: usize = 2;
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other("too many descriptors for a hello"));
    }
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: line.as_ptr().cast_mut().cast(),
        iov_len: line.len(),
    };
    // SAFETY: msghdr is plain integers and pointers; all zeros (no name,
    // no control) is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_bytes = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE and CMSG_LEN compute sizes from a length.
        let (space, len) = unsafe { (libc::CMSG_SPACE(data_bytes), libc::CMSG_LEN(data_bytes)) };
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at `control`, 8-aligned and at least
        // CMSG_SPACE(8) = 24 bytes, so CMSG_FIRSTHDR gives a header inside
        // it with room for `fds` (at most two) after it; `fds` and
        // `control` live for the call.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = len as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<i32>(),
                fds.len(),
            );
        }
    }
    let sent = loop {
        // SAFETY: `msg` points at `iov` (over `line`) and `control`, all
        // alive for the call; the kernel only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if sent < line.len() {
        (&*sock).write_all(&line[sent..])?;
    }
    Ok(())
}

fn output_pipes() -> nix::Result<OutputPipes> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok(OutputPipes {
        out_r,
        out_w,
        err_r,
        err_w,
    })
}

/// Cuts long values so that an event fits in one line.
fn shrink(body: &mut Body) {
    fn cut(v: &mut Value) {
        let shown = v.to_string();
        if shown.len() > 1024 {
            let mut end = 1000;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            *v = Value::Str(format!("{}… ({} bytes)", &shown[..end], shown.len()));
        }
    }
    fn cut_text(s: &mut String) {
        if s.len() > 3000 {
            let mut end = 3000;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
    }
    match body {
        Body::Send { value, .. }
        | Body::Recv { value, .. }
        | Body::Put { value, .. }
        | Body::Get { value, .. }
        | Body::Read { value, .. }
        | Body::Write { value, .. }
        | Body::TaskDone { value, .. } => cut(value),
        Body::Output { text, .. }
        | Body::Narrate { text, .. }
        | Body::Error { message: text }
        | Body::Pending { action: text, .. } => cut_text(text),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe on one end of a real socket pair; the other end is what
    /// the collector would read.
    fn probe_on_pair(thread: Option<(&str, i32)>) -> (Probe, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let probe = Probe {
            conn: Arc::new(Mutex::new(Conn {
                sock: Some(ours),
                events: None,
                pipe_later: false,
                seq: 0,
                held: Vec::new(),
            })),
            gates: Arc::default(),
            id: "main.7".into(),
            pid: 4242,
            line: Some(12),
            thread: thread.map(|(n, t)| (n.to_string(), t)),
        };
        (probe, theirs)
    }

    fn sent(probe: Probe, mut theirs: UnixStream) -> Vec<u8> {
        drop(probe);
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut theirs, &mut all).expect("read");
        all
    }

    /// A `spawn` written by hand is the line `emit_at` makes of its body,
    /// byte for byte, odd and too long names too (then cut as any event).
    #[test]
    fn spawn_lines_by_hand_are_what_emit_at_writes() {
        let long = "é".repeat(MAX_LINE_BYTES / 2);
        let names = ["main.1", "", "q\"uote\\ \n\u{1}\u{7f} 🦀", long.as_str()];
        for thread in [None, Some(("main.t1", 77))] {
            for child in names {
                for role in names {
                    for daemon in [false, true] {
                        let (mut a, a_theirs) = probe_on_pair(thread);
                        a.emit_spawn(5, child, -3, role, daemon);
                        let (mut b, b_theirs) = probe_on_pair(thread);
                        b.emit_at(
                            5,
                            Body::Spawn {
                                child: child.to_string(),
                                child_pid: -3,
                                role: role.to_string(),
                                daemon,
                            },
                        );
                        let (a, b) = (sent(a, a_theirs), sent(b, b_theirs));
                        assert_eq!(
                            String::from_utf8_lossy(&a),
                            String::from_utf8_lossy(&b),
                            "{child:?} {role:?}"
                        );
                        assert!(a.len() <= MAX_LINE_BYTES);
                        Event::from_line(&a[..a.len() - 1]).expect("one event");
                    }
                }
            }
        }
    }

    #[test]
    fn busy_lines_are_what_serde_json_writes_and_the_collector_reads() {
        for thread in [None, Some(("main.t1", 77))] {
            let (mut probe, theirs) = probe_on_pair(thread);
            probe.hold(Body::Sleep { duration_ms: 0.0 });
            probe.hold(Body::Wake {});
            probe.emit_access(Access::Write, "v", &Value::Int(41), false);
            probe.emit_access(Access::Read, "name \"q\"\n", &Value::Float(0.5), true);
            probe.emit(Body::LockAcquire { lock: "l".into() });
            probe.emit(Body::Sleep { duration_ms: 60.25 });
            probe.emit(Body::Narrate {
                text: "not a busy kind".into(),
                pause: false,
            });
            let long = "x".repeat(MAX_LINE_BYTES);
            probe.emit_access(Access::Write, "big", &Value::Str(long), false);
            let bytes = sent(probe, theirs);
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(lines.len(), 8);
            let mut kinds = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                assert!(line.len() < MAX_LINE_BYTES, "line {i} fits");
                let e = Event::from_line(line).expect("the collector reads it");
                assert_eq!(e.seq, i as u64 + 1);
                assert_eq!(e.thread.as_deref(), thread.map(|t| t.0));
                assert_eq!(e.line, Some(12));
                assert_eq!(
                    String::from_utf8_lossy(line),
                    String::from_utf8_lossy(&serde_json::to_vec(&e).expect("serializes")),
                    "line {i}: the same bytes as serde_json"
                );
                kinds.push(e.body.kind());
            }
            assert_eq!(
                kinds,
                [
                    "sleep",
                    "wake",
                    "write",
                    "read",
                    "lock_acquire",
                    "sleep",
                    "narrate",
                    "write"
                ]
            );
            // The long value was cut to fit, as any event's is.
            let last = Event::from_line(lines[7]).expect("reads");
            match last.body {
                Body::Write {
                    value: Value::Str(s),
                    ..
                } => assert!(s.len() < 1100 && s.ends_with(" bytes)"), "{s}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_child_that_cannot_connect_is_itself_and_counts_its_messages_from_one() {
        let (mut probe, theirs) = probe_on_pair(None);
        for _ in 0..3 {
            probe.emit(Body::Wake {});
        }
        assert!(probe.msg_id().ends_with("#4"), "{}", probe.msg_id());
        // Nobody listens on this name: the child runs on unobserved.
        let nobody = format!("@forkscope-test-nobody-{}", std::process::id());
        probe.become_child(
            Path::new(&nobody),
            "main.7.1".into(),
            "nothing",
            true,
            false,
            (1234, 1233),
            3,
        );
        assert_eq!(probe.id, "main.7.1");
        assert_eq!(probe.pid, 1234);
        assert_eq!(probe.msg_id(), "main.7.1#1");
        // The parent's connection is closed in the child.
        drop(probe);
        let mut rest = Vec::new();
        let mut theirs = theirs;
        std::io::Read::read_to_end(&mut theirs, &mut rest).expect("end of file");
        assert_eq!(
            rest.iter().filter(|&&b| b == b'\n').count(),
            3,
            "the parent's three lines"
        );
    }

    #[test]
    fn with_an_event_pipe_lines_go_into_it_and_a_fresh_child_drops_it() {
        let (mut probe, theirs) = probe_on_pair(None);
        let (events_r, events_w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        probe.conn().events = Some(std::fs::File::from(events_w));
        probe.hold(Body::Sleep { duration_ms: 0.0 });
        probe.emit_access(Access::Write, "v", &Value::Int(1), false);
        probe.emit(Body::Wake {});
        // A fresh child closes its parent's pipe (and socket) before it
        // makes its own: the parent's pipe then ends with the parent.
        probe.disconnect();
        let mut piped = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(events_r), &mut piped)
            .expect("end of file: nobody holds the write end");
        let kinds: Vec<&str> = piped
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Event::from_line(l).expect("a line").body.kind())
            .collect();
        assert_eq!(kinds, ["sleep", "write", "wake"]);
        assert!(sent(probe, theirs).is_empty(), "nothing on the socket");
    }

    #[test]
    fn the_first_line_after_the_hello_brings_the_event_pipe_and_later_ones_go_into_it() {
        let (mut probe, theirs) = probe_on_pair(None);
        probe.conn().pipe_later = true;
        probe.hold(Body::Sleep { duration_ms: 0.0 });
        probe.emit(Body::Wake {});
        // What the collector reads: the two lines, with one descriptor.
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            theirs.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw);
            }
        }
        let n = msg.bytes;
        assert_eq!(fds.len(), 1, "the pipe's read end came with the first line");
        assert_eq!(buf[..n].iter().filter(|&&b| b == b'\n').count(), 2);
        // SAFETY: SCM_RIGHTS gave us this new fd; nothing else owns it.
        let events_r = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        probe.emit(Body::Narrate {
            text: "piped".into(),
            pause: false,
        });
        probe.disconnect();
        let mut piped = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(events_r), &mut piped).expect("eof");
        let kinds: Vec<&str> = piped
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Event::from_line(l).expect("a line").body.kind())
            .collect();
        assert_eq!(kinds, ["narrate"]);
        assert!(sent(probe, theirs).is_empty(), "nothing more on the socket");
    }

    #[test]
    fn held_lines_go_out_with_the_next_event_in_one_write() {
        let (mut probe, theirs) = probe_on_pair(None);
        probe.hold(Body::Sleep { duration_ms: 0.0 });
        probe.hold(Body::Wake {});
        assert!(probe.holds());
        theirs.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        assert!(
            std::io::Read::read(&mut &theirs, &mut buf).is_err(),
            "nothing sent yet"
        );
        probe.emit_access(Access::Write, "v", &Value::Int(1), false);
        assert!(!probe.holds());
        let n = std::io::Read::read(&mut &theirs, &mut buf).expect("sent");
        assert_eq!(buf[..n].iter().filter(|&&b| b == b'\n').count(), 3);
    }
}
