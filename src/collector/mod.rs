//! The collector: one thread that listens on a private Unix socket, reads
//! every scenario process's events and its stdout/stderr pipes, notices the
//! exact moment each process dies (a pidfd), and sends the events, in time
//! order, over a bounded channel to whoever shows them.
//!
//! It trusts nothing it reads: lines that are not JSON, too long, of an
//! unknown kind, or connections that never say hello are counted in
//! [`Stats`] and dropped, and the run goes on.

mod exits;
mod output;

use crate::protocol::{Body, Event, MAX_LINE_BYTES, now_ns};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, getsockopt, recvmsg, sockopt::PeerCredentials,
};
use output::{Budget, OutPipe};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events are held this long and sent sorted by time, so that events from
/// different processes that arrive out of order are put back in order.
pub const REORDER_WINDOW_NS: u64 = 40_000_000;
/// A connection must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// After `finish`, wait at most this long for the last bytes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CONNECTIONS: usize = 4096;
const POLL_INTERVAL_MS: u16 = 10;
/// Longest that events wait behind an announcement whose bytes have not
/// come through the pipe yet (a process stopped between the two).
const MAX_HOLD_NS: u64 = 200_000_000;

/// What the collector counted and dropped, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub events: AtomicU64,
    /// Events the consumer was too slow for (channel full).
    pub dropped: AtomicU64,
    pub not_json: AtomicU64,
    pub too_long: AtomicU64,
    pub unknown_kind: AtomicU64,
    pub no_hello: AtomicU64,
    pub refused: AtomicU64,
    pub output_dropped_bytes: AtomicU64,
}

impl Stats {
    /// Lines and connections that were garbage.
    pub fn garbage(&self) -> u64 {
        self.not_json.load(Ordering::Relaxed)
            + self.too_long.load(Ordering::Relaxed)
            + self.unknown_kind.load(Ordering::Relaxed)
            + self.no_hello.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
    }

    /// One line for humans, empty when nothing went wrong.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |n: &AtomicU64, what: &str| {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(&self.not_json, "lines that were not JSON");
        add(&self.too_long, "lines over 4 KiB");
        add(&self.unknown_kind, "lines of an unknown kind");
        add(&self.no_hello, "connections that never said hello");
        add(&self.refused, "connections refused");
        add(&self.dropped, "events dropped (display too slow)");
        add(
            &self.output_dropped_bytes,
            "bytes of output dropped (flood)",
        );
        parts.join(", ")
    }
}

/// A running collector. Dropping it stops the thread and removes the
/// socket directory.
pub struct Collector {
    pub socket: PathBuf,
    /// Where to write `go` to a process of a gated run, by logical id.
    pub gates: Gates,
    dir: PathBuf,
    pub events: Receiver<Event>,
    pub stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Creates a private (0700) socket directory and starts the thread.
    /// `capacity` bounds the channel to the consumer.
    pub fn start(capacity: usize, reorder_window_ns: u64) -> io::Result<Collector> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        // mkdtemp creates the directory with mode 0700.
        let dir = nix::unistd::mkdtemp(&base.join("forkscope-XXXXXX")).map_err(io::Error::from)?;
        let socket = dir.join("probe.sock");
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = bounded(capacity);
        let stats = Arc::new(Stats::default());
        let finish = Arc::new(AtomicBool::new(false));
        let gates = Gates::default();
        let mut state = State::new(listener, tx, stats.clone(), finish.clone());
        state.gates = gates.clone();
        state.window_ns = reorder_window_ns;
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || state.run())?;
        Ok(Collector {
            socket,
            gates,
            dir,
            events: rx,
            stats,
            finish,
            thread: Some(thread),
        })
    }

    /// Asks the thread to take in what is left and stop; the event channel
    /// disconnects when it has.
    pub fn finish(&self) {
        self.finish.store(true, Ordering::SeqCst);
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.finish();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The write side of every connection that said hello: in a gated run the
/// app tells a process to take its next step by writing `go` to it.
#[derive(Clone, Default)]
pub struct Gates(Arc<std::sync::Mutex<BTreeMap<String, UnixStream>>>);

impl Gates {
    /// Tells a waiting process to go; false if there is no such process.
    pub fn go(&self, proc_id: &str) -> bool {
        use std::io::Write;
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        match map.get_mut(proc_id) {
            Some(s) => s.write_all(b"go\n").is_ok(),
            None => false,
        }
    }

    fn insert(&self, proc_id: &str, stream: UnixStream) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(proc_id.to_string(), stream);
        }
    }
}

/// Who is on the other end of a connection, once it said hello.
struct Who {
    id: String,
    pid: i32,
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Inside a line that is too long: drop bytes up to the next newline.
    skipping: bool,
    who: Option<Who>,
    fds: Vec<OwnedFd>,
    opened: Instant,
    peer_pid: i32,
    dead: bool,
}

/// What the collector knows of each process (for exits; adoption is found in `Tree`).
#[derive(Default)]
struct ProcInfo {
    pid: i32,
    exited: bool,
    pidfd: Option<OwnedFd>,
}

struct State {
    listener: UnixListener,
    tx: Sender<Event>,
    stats: Arc<Stats>,
    finish: Arc<AtomicBool>,
    conns: Vec<Conn>,
    outs: Vec<OutPipe>,
    procs: BTreeMap<String, ProcInfo>,
    runner_pid: i32,
    /// Events waiting for the reorder window, with their arrival number.
    pending: Vec<(u64, u64, Event)>,
    arrivals: u64,
    last_sent_t_ns: u64,
    uid: u32,
    closed: bool,
    /// Who is whose child, in the order the stream is sent.
    tree: Tree,
    gates: Gates,
    window_ns: u64,
    /// Output each process may still show (announced and read from pipes).
    budgets: BTreeMap<String, Budget>,
    /// Processes that handed us their output pipes.
    piped: BTreeSet<String>,
}

/// Parents and deaths as seen in the sorted stream. When a process dies,
/// its children still alive at that moment are orphans: the kernel hands
/// them to the nearest subreaper, the runner.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<String, TreeNode>,
}

#[derive(Default)]
struct TreeNode {
    parent: Option<String>,
    pid: i32,
    exited: bool,
}

impl Tree {
    /// Learns from one event; the orphans (id, pid) it makes.
    fn observe(&mut self, e: &Event) -> Vec<(String, i32)> {
        match &e.body {
            Body::Hello { parent, .. } => {
                let n = self.nodes.entry(e.proc_id.clone()).or_default();
                n.pid = e.pid;
                if n.parent.is_none() {
                    n.parent = parent.clone();
                }
            }
            Body::Spawn {
                child, child_pid, ..
            } => {
                let n = self.nodes.entry(child.clone()).or_default();
                n.parent = Some(e.proc_id.clone());
                n.pid = *child_pid;
            }
            Body::Exit { .. } => {
                self.nodes.entry(e.proc_id.clone()).or_default().exited = true;
                if e.proc_id == crate::protocol::RUNNER_ID {
                    return Vec::new();
                }
                let mut orphans = Vec::new();
                for (id, n) in &mut self.nodes {
                    if n.parent.as_deref() == Some(e.proc_id.as_str()) && !n.exited {
                        n.parent = Some(crate::protocol::RUNNER_ID.to_string());
                        orphans.push((id.clone(), n.pid));
                    }
                }
                return orphans;
            }
            _ => {}
        }
        Vec::new()
    }
}

enum Source {
    Listener,
    Conn(usize),
    Out(usize),
    Pidfd(String),
}

impl State {
    fn new(
        listener: UnixListener,
        tx: Sender<Event>,
        stats: Arc<Stats>,
        finish: Arc<AtomicBool>,
    ) -> State {
        State {
            listener,
            tx,
            stats,
            finish,
            conns: Vec::new(),
            outs: Vec::new(),
            procs: BTreeMap::new(),
            runner_pid: 0,
            pending: Vec::new(),
            arrivals: 0,
            last_sent_t_ns: 0,
            uid: nix::unistd::getuid().as_raw(),
            closed: false,
            tree: Tree::default(),
            gates: Gates::default(),
            window_ns: REORDER_WINDOW_NS,
            budgets: BTreeMap::new(),
            piped: BTreeSet::new(),
        }
    }

    fn run(&mut self) {
        let mut drain_deadline: Option<Instant> = None;
        while !self.closed {
            if drain_deadline.is_none() && self.finish.load(Ordering::SeqCst) {
                drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            }
            if let Some(d) = drain_deadline
                && (Instant::now() >= d || (self.conns.is_empty() && self.outs.is_empty()))
            {
                break;
            }
            self.poll_once();
            self.expire_silent_connections();
            self.flush(false);
        }
        self.check_all_exits();
        self.flush(true);
    }

    fn poll_once(&mut self) {
        let mut sources = vec![Source::Listener];
        let mut raw: Vec<RawFd> = vec![self.listener.as_raw_fd()];
        for (i, c) in self.conns.iter().enumerate() {
            sources.push(Source::Conn(i));
            raw.push(c.stream.as_raw_fd());
        }
        for (i, o) in self.outs.iter().enumerate() {
            sources.push(Source::Out(i));
            raw.push(o.fd.as_raw_fd());
        }
        for (id, p) in &self.procs {
            if let Some(fd) = &p.pidfd {
                sources.push(Source::Pidfd(id.clone()));
                raw.push(fd.as_raw_fd());
            }
        }
        let ready: Vec<bool> = {
            let borrowed: Vec<_> = raw
                .iter()
                // SAFETY: every fd in `raw` is owned by `self` and stays open
                // until after this block (nothing is closed while polling).
                .map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
                .collect();
            let mut fds: Vec<PollFd> = borrowed
                .iter()
                .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::from(POLL_INTERVAL_MS)) {
                Ok(n) if n > 0 => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                _ => return,
            }
        };
        for (src, is_ready) in sources.into_iter().zip(ready) {
            if !is_ready {
                continue;
            }
            match src {
                Source::Listener => self.accept(),
                Source::Conn(i) => self.read_conn(i),
                Source::Out(i) => self.read_out(i),
                Source::Pidfd(id) => self.process_died(&id),
            }
        }
        self.conns.retain(|c| !c.dead);
        self.outs.retain(|o| !o.closed);
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            let cred = getsockopt(&stream, PeerCredentials);
            let ok_user = cred.as_ref().is_ok_and(|c| c.uid() == self.uid);
            if !ok_user
                || self.conns.len() >= MAX_CONNECTIONS
                || stream.set_nonblocking(true).is_err()
            {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.conns.push(Conn {
                stream,
                buf: Vec::new(),
                skipping: false,
                who: None,
                fds: Vec::new(),
                opened: Instant::now(),
                peer_pid: cred.map(|c| c.pid()).unwrap_or(0),
                dead: false,
            });
        }
    }

    /// Reads what a connection sent (once); marks it dead when it closed.
    fn read_conn(&mut self, i: usize) {
        if !self.conns[i].dead && !self.read_conn_once(i) {
            self.conns[i].dead = true;
        }
    }

    /// Reads output from a pipe. The process announces what its `print`
    /// steps write (an `output` event sent before the write). The pipe is
    /// read *first* and the connection after: every announcement of the
    /// bytes just read is then in, so each byte goes out exactly once,
    /// either as its announced event or, if nobody announced it (a program
    /// it exec'd, an error message), as new output.
    fn read_out(&mut self, i: usize) {
        self.read_out_once(i, u64::MAX);
    }

    /// One read of pipe `i` (see [`Self::read_out`]); false when nothing
    /// was there or the pipe is closed.
    fn read_out_once(&mut self, i: usize, max_t_ns: u64) -> bool {
        if self.outs[i].closed {
            return false;
        }
        let bytes = self.outs[i].read_raw();
        let id = self.outs[i].proc_id.clone();
        self.read_announcements(&id);
        let budget = self.budgets.entry(id).or_default();
        let events = match &bytes {
            Some(b) => self.outs[i].take(b, &self.stats, budget, max_t_ns),
            None if self.outs[i].closed => self.outs[i].close(&self.stats, budget),
            None => Vec::new(),
        };
        for e in events {
            self.queue(e);
        }
        bytes.is_some()
    }

    /// Reads everything a process has sent on its connection so far (its
    /// `output` announcements among it).
    fn read_announcements(&mut self, id: &str) {
        if let Some(j) = self
            .conns
            .iter()
            .position(|c| c.who.as_ref().is_some_and(|w| w.id == id))
        {
            while !self.conns[j].dead && os_readable_raw(self.conns[j].stream.as_raw_fd()) {
                self.read_conn(j);
            }
        }
    }

    /// Reads once; false when the connection is closed.
    fn read_conn_once(&mut self, i: usize) -> bool {
        let mut chunk = [0u8; 16384];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let fd = self.conns[i].stream.as_raw_fd();
            let mut iov = [IoSliceMut::new(&mut chunk)];
            match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                for fd in raw {
                                    // SAFETY: SCM_RIGHTS gave us new fds that
                                    // nothing else owns.
                                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        };
        if n == 0 {
            return false;
        }
        let conn = &mut self.conns[i];
        if conn.who.is_none() {
            conn.fds.extend(fds);
        } else if !fds.is_empty() {
            // Descriptors after hello are not part of the protocol: closed.
            self.stats.not_json.fetch_add(1, Ordering::Relaxed);
        }
        let mut lines = Vec::new();
        for &b in &chunk[..n] {
            let conn = &mut self.conns[i];
            if b == b'\n' {
                if conn.skipping {
                    conn.skipping = false;
                } else {
                    lines.push(std::mem::take(&mut conn.buf));
                }
            } else if !conn.skipping {
                conn.buf.push(b);
                if conn.buf.len() >= MAX_LINE_BYTES {
                    conn.buf.clear();
                    conn.skipping = true;
                    self.stats.too_long.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for line in lines {
            if !self.line(i, &line) {
                return false;
            }
        }
        true
    }

    /// Handles one complete line; false closes the connection.
    fn line(&mut self, i: usize, line: &[u8]) -> bool {
        let event: Event = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(err) => {
                let unknown = err.to_string().contains("unknown variant");
                let counter = if unknown {
                    &self.stats.unknown_kind
                } else {
                    &self.stats.not_json
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // Garbage before hello: we do not know who this is.
                return self.conns[i].who.is_some();
            }
        };
        match &self.conns[i].who {
            None => self.hello(i, event),
            Some(who) => {
                let mut event = event;
                if let Body::Reaped { .. } | Body::Exit { .. } = event.body
                    && event.proc_id != who.id
                {
                    // About a child; the reaper may not know its name.
                    if event.proc_id.is_empty()
                        && let Some((id, _)) = self.procs.iter().find(|(_, p)| p.pid == event.pid)
                    {
                        event.proc_id = id.clone();
                    }
                } else {
                    event.proc_id = who.id.clone();
                    event.pid = who.pid;
                }
                if matches!(event.body, Body::Hello { .. }) {
                    self.stats.not_json.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                if let Body::Output { stream, text } = &event.body {
                    let (id, stream, n) = (who.id.clone(), *stream, text.len());
                    if let Some(o) = self
                        .outs
                        .iter_mut()
                        .find(|o| o.proc_id == id && o.stream == stream && !o.closed)
                    {
                        // Shown when its bytes come through the pipe.
                        o.announce(event, n);
                        return true;
                    }
                    if self.piped.contains(&id) {
                        // Its pipe is closed: these bytes were never written.
                        return true;
                    }
                    // No pipe of ours (the runner's own output): shown as sent.
                    let budget = self.budgets.entry(id.clone()).or_default();
                    if budget.take(n) < n {
                        let warning = budget.dropped(&self.stats, n, &id, who.pid, event.t_ns);
                        if let Some(w) = warning {
                            self.queue(w);
                        }
                        return true;
                    }
                }
                self.observe(event);
                true
            }
        }
    }

    fn hello(&mut self, i: usize, mut event: Event) -> bool {
        let Body::Hello { .. } = &event.body else {
            self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if event.proc_id.is_empty() {
            self.stats.no_hello.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let conn = &mut self.conns[i];
        if let Ok(w) = conn.stream.try_clone() {
            // The clone shares the non-blocking flag; a `go` is 3 bytes and
            // the process reads them at once, so it never fills.
            self.gates.insert(&event.proc_id, w);
        }
        // The kernel's word on the pid beats the process's.
        if conn.peer_pid > 0 {
            event.pid = conn.peer_pid;
        }
        let id = event.proc_id.clone();
        let pid = event.pid;
        conn.who = Some(Who {
            id: id.clone(),
            pid,
        });
        let fds = std::mem::take(&mut conn.fds);
        let mut fds = fds.into_iter();
        if let (Some(out), Some(err)) = (fds.next(), fds.next()) {
            self.outs
                .push(OutPipe::new(out, &id, pid, crate::protocol::Stream::Stdout));
            self.outs
                .push(OutPipe::new(err, &id, pid, crate::protocol::Stream::Stderr));
            self.piped.insert(id.clone());
        }
        if id == crate::protocol::RUNNER_ID {
            self.runner_pid = pid;
        }
        let info = self.procs.entry(id).or_default();
        info.pid = pid;
        info.pidfd = exits::pidfd_open(pid);
        self.queue(event);
        true
    }

    /// Reads what a process wrote before it sent an event at `before_t_ns`
    /// (program order: its `print` returned before it sent the event), and
    /// stamps it no later than that, so output never trails the events
    /// that came after it.
    fn drain_output_of(&mut self, id: &str, before_t_ns: u64) {
        let cap = before_t_ns.saturating_sub(1);
        let mine: Vec<usize> = (0..self.outs.len())
            .filter(|&i| self.outs[i].proc_id == id)
            .collect();
        for i in mine {
            while !self.outs[i].closed
                && os_readable(&self.outs[i].fd)
                && self.read_out_once(i, cap)
            {}
        }
    }

    /// Learns from an event before passing it on.
    fn observe(&mut self, event: Event) {
        match &event.body {
            Body::Spawn {
                child, child_pid, ..
            } => {
                let info = self.procs.entry(child.clone()).or_default();
                if info.pid == 0 {
                    info.pid = *child_pid;
                }
            }
            Body::Exit { .. } => {
                // A process reporting its own end (the runner does).
                let info = self.procs.entry(event.proc_id.clone()).or_default();
                if info.exited {
                    return;
                }
                info.exited = true;
                info.pidfd = None;
            }
            Body::Reaped { code, signal, .. } => {
                let exited = self.procs.get(&event.proc_id).is_none_or(|p| p.exited);
                if !exited {
                    let t = event.t_ns.saturating_sub(1);
                    self.exited(&event.proc_id, t, *code, signal.clone());
                }
            }
            _ => {}
        }
        self.queue(event);
    }

    /// A pidfd became readable: the process is dead (a zombie, or already
    /// reaped if its parent was quick).
    fn process_died(&mut self, id: &str) {
        let Some(info) = self.procs.get_mut(id) else {
            return;
        };
        info.pidfd = None;
        if info.exited {
            return;
        }
        let pid = info.pid;
        if let Some((code, signal)) = exits::zombie_status(pid) {
            self.exited(id, now_ns(), code, signal);
        }
        // Otherwise its parent already reaped it: the `reaped` event,
        // which carries the status, will say when and how it ended.
    }

    /// Emits `exit` for a process (its orphans are found in [`Self::send`]).
    fn exited(&mut self, id: &str, t_ns: u64, code: Option<i32>, signal: Option<String>) {
        self.drain_output_of(id, t_ns);
        let Some(info) = self.procs.get_mut(id) else {
            return;
        };
        info.exited = true;
        info.pidfd = None;
        let pid = info.pid;
        self.queue(Event {
            t_ns,
            seq: 0,
            proc_id: id.to_string(),
            pid,
            line: None,
            body: Body::Exit { code, signal },
        });
    }

    /// At the end: anything whose death we have not reported yet.
    fn check_all_exits(&mut self) {
        let ids: Vec<String> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.exited && p.pid > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            let readable = self.procs[&id].pidfd.as_ref().is_some_and(os_readable);
            if readable {
                self.process_died(&id);
            }
            // Gone without anyone telling how: say so rather than leave it
            // running forever in the picture.
            if !self.procs[&id].exited && !crate::collector::exits::is_alive(self.procs[&id].pid) {
                self.exited(&id, now_ns(), None, None);
            }
        }
    }

    fn expire_silent_connections(&mut self) {
        let before = self.conns.len();
        self.conns
            .retain(|c| c.who.is_some() || c.opened.elapsed() < HELLO_TIMEOUT);
        let expired = before - self.conns.len();
        if expired > 0 {
            self.stats
                .no_hello
                .fetch_add(expired as u64, Ordering::Relaxed);
        }
    }

    fn queue(&mut self, e: Event) {
        self.arrivals += 1;
        self.pending.push((e.t_ns, self.arrivals, e));
    }

    /// Sends the events older than the reorder window (all, at the end).
    fn flush(&mut self, all: bool) {
        if self.pending.is_empty() {
            return;
        }
        let now = now_ns();
        let mut horizon = if all {
            u64::MAX
        } else {
            now.saturating_sub(self.window_ns)
        };
        // An announcement still waiting for its bytes goes out when they
        // come: hold back what came after it (a while at most), so output
        // keeps its place even with no reorder window (gated runs).
        if let Some(t) = self
            .outs
            .iter()
            .filter_map(OutPipe::oldest_kept_t_ns)
            .filter(|&t| t.saturating_add(MAX_HOLD_NS) > now)
            .min()
            && !all
        {
            horizon = horizon.min(t.saturating_sub(1));
        }
        self.pending.sort_by_key(|(t, a, _)| (*t, *a));
        let n = self.pending.partition_point(|(t, _, _)| *t <= horizon);
        let ready: Vec<Event> = self.pending.drain(..n).map(|(_, _, e)| e).collect();
        for mut e in ready {
            // Keep the stream sorted even for a straggler.
            e.t_ns = e.t_ns.max(self.last_sent_t_ns);
            self.last_sent_t_ns = e.t_ns;
            let orphans = self.tree.observe(&e);
            let t_ns = e.t_ns;
            self.send(e);
            for (orphan, pid) in orphans {
                self.send(Event {
                    t_ns,
                    seq: 0,
                    proc_id: orphan,
                    pid,
                    line: None,
                    body: Body::Adopted {
                        by: crate::protocol::RUNNER_ID.to_string(),
                        new_ppid: self.runner_pid,
                    },
                });
            }
        }
    }

    fn send(&mut self, e: Event) {
        if self.closed {
            return;
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

fn os_readable(fd: &OwnedFd) -> bool {
    crate::runner::os::readable(fd.as_fd(), 0)
}

fn os_readable_raw(fd: RawFd) -> bool {
    // SAFETY: the caller owns `fd` and keeps it open during the call.
    crate::runner::os::readable(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, 0)
}
