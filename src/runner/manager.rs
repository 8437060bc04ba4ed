//! `multiprocessing.Manager()`: a real server process that holds the
//! manager's queues in its own memory. Every `put`, `get` and `qsize` on
//! such a queue is a request sent over a real Unix socket to the server,
//! and the caller waits for the server's reply, as CPython's proxies do
//! (a `get` on an empty manager queue waits in the server, which answers
//! only when an item arrives).
//!
//! - **Start** (`manager = "m"` step): the owner forks the server (id
//!   `OWNER.m`, role `SyncManager`), which listens on an abstract Unix
//!   socket named after the run's own unguessable collector socket, and
//!   says "ready" on a pipe before the owner goes on (CPython's server
//!   sends its address back the same way).
//! - **Clients** connect on their first request, one connection per
//!   process (a forked child never uses its parent's connection, as
//!   CPython's proxies reconnect after fork). Frames are a 4-byte
//!   big-endian length and a JSON body, CPython's `Connection` framing.
//!   The server accepts only peers of our own uid (`SO_PEERCRED`).
//! - **Shutdown**: when the owner's steps end it sends `shutdown`, and the
//!   server answers and exits 0 (CPython's finalizer does this at exit); it
//!   also dies with its owner (`PR_SET_PDEATHSIG`), so it never outlives it.
//!
//! The stage sees each request and reply as messages on the channel named
//! after the manager (declared as a duplex pipe with ends `m.proxy` and
//! `m.server`), and the items as `put`/`get` on the queue by the server.

use super::RunError;
use super::interp::{Forked, Proc};
use crate::probe::Probe;
use crate::protocol::{Body, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};

/// The role name a manager's server process shows (CPython's class).
pub const MANAGER_ROLE: &str = "SyncManager";

/// What one process knows about managers: its connections (never shared
/// with a forked child) and the managers it started (it shuts them down).
#[derive(Default)]
pub struct Managers {
    conns: BTreeMap<String, UnixStream>,
    /// Manager name and the index of its server in the owner's children.
    started: Vec<(String, usize)>,
}

impl Managers {
    /// In a freshly forked child: nothing of the parent's is ours.
    pub fn after_fork(&mut self) {
        // (Emptied only when not empty: see `Proc::finish`.)
        if !self.conns.is_empty() {
            self.conns.clear();
        }
        if !self.started.is_empty() {
            self.started.clear();
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Request {
    Put {
        queue: String,
        msg: String,
        value: Value,
    },
    Get {
        queue: String,
        msg: String,
    },
    Qsize {
        queue: String,
        msg: String,
    },
    Shutdown {
        msg: String,
    },
}

impl Request {
    fn msg(&self) -> &str {
        match self {
            Request::Put { msg, .. }
            | Request::Get { msg, .. }
            | Request::Qsize { msg, .. }
            | Request::Shutdown { msg } => msg,
        }
    }

    /// The call as the stage shows it: `q.put('d')`.
    fn text(&self) -> String {
        match self {
            Request::Put { queue, value, .. } => format!("{queue}.put({})", value.repr()),
            Request::Get { queue, .. } => format!("{queue}.get()"),
            Request::Qsize { queue, .. } => format!("{queue}.qsize()"),
            Request::Shutdown { .. } => "shutdown()".into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Reply {
    msg: String,
    value: Value,
}

/// The abstract socket name of manager `name` in this run: derived from
/// the collector's socket name, which is random and never reused.
fn address(socket: &std::path::Path, name: &str) -> String {
    let base = socket.to_string_lossy();
    let base = base.strip_prefix('@').unwrap_or(&base);
    format!("{base}.manager.{name}")
}

/// The two end names of a manager's channel: the proxies' and the server's.
pub fn ends(name: &str) -> [String; 2] {
    [format!("{name}.proxy"), format!("{name}.server")]
}

/// Largest frame we accept (a queue item is small; this bounds a bad peer).
const MAX_FRAME_BYTES: usize = 1 << 20;

fn write_frame(stream: &mut UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("a message over 4 GiB"))?
        .to_be_bytes();
    // One write for length and body, so a frame is never half sent.
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len);
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)
}

/// One frame, or `None` at end of file.
fn read_frame(stream: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("a frame of {n} bytes")));
    }
    let mut body = vec![0u8; n];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

impl Proc<'_> {
    /// `Manager()`: forks the server and waits until it listens.
    pub(super) fn start_manager(&mut self, name: &str) -> Result<(), RunError> {
        if self.managers.started.iter().any(|(n, _)| n == name) {
            return Err(RunError(format!("manager {name} is already running")));
        }
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RunError(format!("cannot create a pipe: {e}")))?;
        let id = format!("{}.{name}", self.probe.id);
        match self.fork_child(id, MANAGER_ROLE.into(), false, true)? {
            Forked::Child => {
                drop(ready_r);
                let code = self.serve(name, ready_w);
                super::os::exit_now(code)
            }
            Forked::Parent(i) => {
                drop(ready_w);
                // Not joined as a `Process` at exit: shut down instead.
                self.set_not_spawned(i);
                self.managers.started.push((name.to_string(), i));
                let bytes = super::os::read_to_end(ready_r.as_fd())?;
                if bytes != b"ready" {
                    self.join_child(i, false);
                    let why = String::from_utf8_lossy(&bytes);
                    return Err(RunError(if why.is_empty() {
                        format!("the manager {name} died before it could listen")
                    } else {
                        format!("the manager {name} could not start: {why}")
                    }));
                }
                Ok(())
            }
        }
    }

    /// At the owner's end: asks each manager it started to shut down, and
    /// reaps it (CPython's finalizer, which runs before children are joined).
    pub(super) fn shutdown_managers(&mut self) {
        if self.managers.started.is_empty() {
            return;
        }
        let started = std::mem::take(&mut self.managers.started);
        for (name, i) in started {
            let msg = self.probe.msg_id();
            // A manager already gone (killed) is just reaped.
            let _ = self.request(&name, Request::Shutdown { msg }, None);
            self.managers.conns.remove(&name);
            self.join_child(i, false);
        }
    }

    pub(super) fn manager_put(&mut self, queue: &str, value: Value) -> Result<(), RunError> {
        let name = self.manager_of(queue)?;
        let msg = self.probe.msg_id();
        let req = Request::Put {
            queue: queue.to_string(),
            msg,
            value,
        };
        let on = format!("put on full manager queue {queue}");
        self.request(&name, req, Some(&on)).map(|_| ())
    }

    pub(super) fn manager_get(&mut self, queue: &str) -> Result<Value, RunError> {
        let name = self.manager_of(queue)?;
        let msg = self.probe.msg_id();
        let req = Request::Get {
            queue: queue.to_string(),
            msg,
        };
        let on =
            format!("get on empty manager queue {queue} (the manager answers when an item comes)");
        self.request(&name, req, Some(&on))
    }

    pub(super) fn manager_qsize(&mut self, queue: &str) -> Result<Value, RunError> {
        let name = self.manager_of(queue)?;
        let msg = self.probe.msg_id();
        let req = Request::Qsize {
            queue: queue.to_string(),
            msg,
        };
        self.request(&name, req, None)
    }

    fn manager_of(&self, queue: &str) -> Result<String, RunError> {
        self.run
            .scenario
            .manager_queues
            .get(queue)
            .cloned()
            .ok_or_else(|| RunError(format!("queue {queue} is not a manager's queue")))
    }

    /// Sends one request to the manager and waits for its reply, shown as
    /// blocked on `on` if the reply does not come at once.
    fn request(&mut self, name: &str, req: Request, on: Option<&str>) -> Result<Value, RunError> {
        let [proxy_end, _] = ends(name);
        if !self.managers.conns.contains_key(name) {
            let addr = address(&self.run.spec.socket, name);
            let stream = connect(&addr).map_err(|e| {
                RunError(format!(
                    "ConnectionRefusedError: the manager {name} is not running ({e}); \
                     a `manager = \"{name}\"` step starts it"
                ))
            })?;
            self.managers.conns.insert(name.to_string(), stream);
        }
        let bytes =
            serde_json::to_vec(&req).map_err(|e| RunError(format!("cannot encode: {e}")))?;
        self.probe.emit(Body::Send {
            channel: name.to_string(),
            end: proxy_end.clone(),
            msg: req.msg().to_string(),
            value: Value::Str(req.text()),
        });
        let lost = |e: std::io::Error| {
            RunError(format!(
                "EOFError: lost the connection to the manager {name} ({e})"
            ))
        };
        let stream = self
            .managers
            .conns
            .get_mut(name)
            .ok_or_else(|| RunError(format!("no connection to the manager {name}")))?;
        write_frame(stream, &bytes).map_err(lost)?;
        // The server answers at once unless it has to wait (an empty queue).
        let ready = super::os::readable(stream.as_fd(), 20);
        let blocked = match on {
            Some(on) if !ready => {
                self.probe.emit(Body::Block { on: on.to_string() });
                Some(on)
            }
            _ => None,
        };
        let stream = self
            .managers
            .conns
            .get_mut(name)
            .ok_or_else(|| RunError(format!("no connection to the manager {name}")))?;
        let got = read_frame(stream);
        if let Some(on) = blocked {
            self.probe.emit(Body::Unblock { on: on.to_string() });
        }
        let Some(body) = got.map_err(lost)? else {
            self.managers.conns.remove(name);
            return Err(RunError(format!(
                "EOFError: the manager {name} closed the connection (it has shut down)"
            )));
        };
        let reply: Reply = serde_json::from_slice(&body)
            .map_err(|e| RunError(format!("a garbled reply from the manager {name}: {e}")))?;
        self.probe.emit(Body::Recv {
            channel: name.to_string(),
            end: proxy_end,
            msg: reply.msg,
            value: reply.value.clone(),
        });
        Ok(reply.value)
    }

    // ------------------------------------------------------------ server

    /// The server's whole life: listen, say ready, answer until shutdown.
    /// Its exit code.
    fn serve(&mut self, name: &str, ready_w: std::os::fd::OwnedFd) -> i32 {
        // Never outlive the owner, even if it is killed.
        let owner = nix::unistd::getppid();
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if nix::unistd::getppid() != owner {
            return 1;
        }
        let addr = address(&self.run.spec.socket, name);
        let listener = match listen(&addr) {
            Ok(l) => l,
            Err(e) => {
                let _ = super::os::write_all(&ready_w, e.to_string().as_bytes());
                return 1;
            }
        };
        let _ = super::os::write_all(&ready_w, b"ready");
        drop(ready_w);
        let queues: BTreeMap<String, u32> = self
            .run
            .scenario
            .managers
            .get(name)
            .into_iter()
            .flatten()
            .map(|q| {
                (
                    q.clone(),
                    self.run.scenario.queues.get(q).copied().unwrap_or(0),
                )
            })
            .collect();
        let mut server = Server {
            name: name.to_string(),
            uid: nix::unistd::getuid().as_raw(),
            conns: Vec::new(),
            items: queues
                .keys()
                .map(|q| (q.clone(), VecDeque::new()))
                .collect(),
            maxsize: queues,
            getters: BTreeMap::new(),
            putters: BTreeMap::new(),
        };
        server.run(&listener, &mut self.probe)
    }
}

fn connect(addr: &str) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(addr.as_bytes())?;
    UnixStream::connect_addr(&a)
}

fn listen(addr: &str) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(addr.as_bytes())?;
    UnixListener::bind_addr(&a)
}

/// An item in a manager's queue: its message id (for the stage) and value.
type Item = (String, Value);

struct Server {
    name: String,
    uid: u32,
    /// Open client connections (None once closed).
    conns: Vec<Option<UnixStream>>,
    items: BTreeMap<String, VecDeque<Item>>,
    maxsize: BTreeMap<String, u32>,
    /// Per queue, clients waiting in `get`: connection index.
    getters: BTreeMap<String, VecDeque<usize>>,
    /// Per queue, clients waiting in `put` on a full queue, with their item.
    putters: BTreeMap<String, VecDeque<(usize, Value)>>,
}

impl Server {
    fn run(&mut self, listener: &UnixListener, probe: &mut Probe) -> i32 {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        loop {
            let open: Vec<usize> = (0..self.conns.len())
                .filter(|&i| self.conns[i].is_some())
                .collect();
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            for &i in &open {
                if let Some(c) = &self.conns[i] {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 1,
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if ready[0] {
                self.accept(listener);
            }
            for (k, &i) in open.iter().enumerate() {
                if !ready[k + 1] {
                    continue;
                }
                let got = match self.conns[i].as_mut() {
                    Some(c) => read_frame(c),
                    None => continue,
                };
                let req = match got {
                    Ok(Some(body)) => serde_json::from_slice::<Request>(&body).ok(),
                    _ => None,
                };
                let Some(req) = req else {
                    self.close(i);
                    continue;
                };
                if self.handle(i, req, probe) {
                    return 0;
                }
            }
        }
    }

    fn accept(&mut self, listener: &UnixListener) {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        // Only processes of our own user (CPython checks an authkey).
        let ok = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .is_ok_and(|c| c.uid() == self.uid);
        if ok {
            self.conns.push(Some(stream));
        }
    }

    fn close(&mut self, i: usize) {
        self.conns[i] = None;
        for g in self.getters.values_mut() {
            g.retain(|&c| c != i);
        }
        for p in self.putters.values_mut() {
            p.retain(|(c, _)| *c != i);
        }
    }

    /// Answers one request (or parks it). True on shutdown.
    fn handle(&mut self, conn: usize, req: Request, probe: &mut Probe) -> bool {
        let [_, server_end] = ends(&self.name);
        probe.emit(Body::Recv {
            channel: self.name.clone(),
            end: server_end,
            msg: req.msg().to_string(),
            value: Value::Str(req.text()),
        });
        match req {
            Request::Put { queue, value, .. } => {
                let full = self.maxsize.get(&queue).copied().unwrap_or(0) > 0
                    && self.items.get(&queue).map_or(0, VecDeque::len)
                        >= self.maxsize.get(&queue).copied().unwrap_or(0) as usize;
                if full {
                    self.putters
                        .entry(queue)
                        .or_default()
                        .push_back((conn, value));
                    return false;
                }
                self.store(&queue, value, probe);
                self.reply(conn, Value::None, probe);
                self.serve_getters(&queue, probe);
            }
            Request::Get { queue, .. } => {
                self.getters
                    .entry(queue.clone())
                    .or_default()
                    .push_back(conn);
                self.serve_getters(&queue, probe);
            }
            Request::Qsize { queue, .. } => {
                let n = self.items.get(&queue).map_or(0, VecDeque::len);
                self.reply(conn, Value::Int(n as i64), probe);
            }
            Request::Shutdown { .. } => {
                self.reply(conn, Value::None, probe);
                return true;
            }
        }
        false
    }

    fn store(&mut self, queue: &str, value: Value, probe: &mut Probe) {
        let msg = probe.msg_id();
        probe.emit(Body::Put {
            channel: queue.to_string(),
            msg: msg.clone(),
            value: value.clone(),
        });
        self.items
            .entry(queue.to_string())
            .or_default()
            .push_back((msg, value));
    }

    /// Hands items to waiting getters, and lets waiting putters in.
    fn serve_getters(&mut self, queue: &str, probe: &mut Probe) {
        loop {
            let has_item = self.items.get(queue).is_some_and(|q| !q.is_empty());
            let getter = self.getters.get(queue).and_then(|g| g.front().copied());
            let (true, Some(conn)) = (has_item, getter) else {
                return;
            };
            if let Some(g) = self.getters.get_mut(queue) {
                g.pop_front();
            }
            let Some((msg, value)) = self.items.get_mut(queue).and_then(VecDeque::pop_front) else {
                return;
            };
            probe.emit(Body::Get {
                channel: queue.to_string(),
                msg,
                value: value.clone(),
            });
            self.reply(conn, value, probe);
            // A slot is free: the first waiting putter's item goes in.
            if let Some((pconn, pvalue)) = self.putters.get_mut(queue).and_then(VecDeque::pop_front)
            {
                self.store(queue, pvalue, probe);
                self.reply(pconn, Value::None, probe);
            }
        }
    }

    fn reply(&mut self, conn: usize, value: Value, probe: &mut Probe) {
        let [_, server_end] = ends(&self.name);
        let msg = probe.msg_id();
        probe.emit(Body::Send {
            channel: self.name.clone(),
            end: server_end,
            msg: msg.clone(),
            value: value.clone(),
        });
        let bytes = serde_json::to_vec(&Reply { msg, value }).unwrap_or_default();
        let failed = match self.conns.get_mut(conn).and_then(Option::as_mut) {
            Some(c) => write_frame(c, &bytes).is_err(),
            None => false,
        };
        if failed {
            self.close(conn);
        }
    }
}
