//! Start methods (`multiprocessing.get_context('fork' | 'spawn' |
//! 'forkserver')`):
//!
//! - **fork**: the child is a fork of its parent and goes on with a copy
//!   of its memory, private globals as the parent last changed them.
//! - **spawn**: the child is forked, then really `exec`s our own binary
//!   (`forkscope __runner --spawned FD`), a fresh image that rebuilds its
//!   state from the scenario and the role and args it is given only, as
//!   CPython's `spawn_main` does: private `[globals]` have their initial
//!   values. What is shared still works, because the parent hands over the
//!   run's kernel objects, as CPython pickles handles: the shared-memory
//!   memfd, the pipes' and queues' fds, the probe's connection, all listed
//!   in a memfd of JSON (`FD`) and inherited across `exec`.
//! - **forkserver**: the first such `spawn` starts a server (`OWNER.
//!   forkserver`, role `ForkServer`) the spawn way, from a clean state;
//!   it forks each child on request (a message on a socketpair, with a
//!   pipe for the child's exit status passed by `SCM_RIGHTS`, as CPython
//!   does), reaps it, and writes its status back; the parent's `join`
//!   reads it there. It ends when its owner closes the connection.
//!
//! Each child says how long its start took, from the parent's call to its
//! own first step (`start_ms`, and a caption).

use super::interp::{Forked, Proc};
use super::os;
use super::{Run, RunError, RunSpec};
use crate::probe::Probe;
use crate::protocol::{Body, Value, now_ns};
use crate::scenario::StartMethod;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The role a forkserver's process shows.
pub const FORKSERVER_ROLE: &str = "ForkServer";

/// What a fresh image of our binary is told to be.
#[derive(Serialize, Deserialize)]
enum Kind {
    /// A `spawn`ed child: run this role with these args.
    Child {
        role: String,
        args: Vec<(String, Value)>,
        t0_ns: u64,
    },
    /// A forkserver: serve fork requests on this connection.
    ForkServer { conn_fd: i32 },
}

/// Everything a spawned image needs, handed over in a memfd.
#[derive(Serialize, Deserialize)]
struct Handover {
    spec: RunSpec,
    id: String,
    kind: Kind,
    probe_fd: Option<i32>,
    /// The write end of the process's event pipe (older images: none).
    #[serde(default)]
    probe_events_fd: Option<i32>,
    probe_seq: u64,
    pid: i32,
    slot: usize,
    shm_fd: i32,
    ends: BTreeMap<String, i32>,
    queues: BTreeMap<String, (i32, i32)>,
}

/// A fork request to the forkserver.
#[derive(Serialize, Deserialize)]
struct ForkRequest {
    id: String,
    role: String,
    args: Vec<(String, Value)>,
    t0_ns: u64,
}

/// The forkserver's answer: the child's pids.
#[derive(Serialize, Deserialize)]
struct Forked2 {
    pid: i32,
    ns_pid: i32,
}

/// Lets `fd` survive `exec`.
fn keep_across_exec(fd: i32) {
    // SAFETY: the fd is one this process holds open for the whole call.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = fcntl(b, FcntlArg::F_SETFD(FdFlag::empty()));
}

/// Makes an adopted fd close-on-exec again (a program we `exec` later must
/// not get it).
fn close_on_exec(fd: &OwnedFd) {
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

/// Takes ownership of an fd our parent handed over across `exec`.
fn adopt(fd: i32) -> Result<OwnedFd, RunError> {
    // SAFETY: only borrowed for one fcntl; F_GETFD on a closed fd fails.
    if fd < 0 || fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_err() {
        return Err(RunError(format!("fd {fd} was not handed over")));
    }
    // SAFETY: the fd is open (checked above), was inherited across exec
    // for this purpose, and nothing else in this fresh image owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    close_on_exec(&owned);
    Ok(owned)
}

impl Proc<'_> {
    /// In a freshly forked child: replaces this image with a fresh start
    /// of our binary, told only what `kind` says. Never returns.
    fn exec_fresh(&mut self, kind: Kind) -> ! {
        let err = match self.try_exec_fresh(kind) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        let code = self.fail(err);
        os::exit_now(code)
    }

    fn try_exec_fresh(&mut self, kind: Kind) -> Result<std::convert::Infallible, RunError> {
        let run = self.run;
        let probe = self.probe.handover();
        let mut h = Handover {
            spec: run.spec.clone(),
            id: self.probe.id.clone(),
            kind,
            probe_fd: probe.sock_fd,
            probe_events_fd: probe.events_fd,
            probe_seq: probe.seq,
            pid: self.probe.pid,
            slot: self.slot(),
            shm_fd: run.shm.raw_fd(),
            ends: BTreeMap::new(),
            queues: BTreeMap::new(),
        };
        for (name, e) in &run.ends {
            // An end this process closed is not handed over: closed there too.
            if let Ok(fd) = e.fd() {
                h.ends.insert(name.clone(), fd.as_raw_fd());
            }
        }
        for (name, (r, w)) in &run.queues {
            h.queues
                .insert(name.clone(), (r.as_raw_fd(), w.as_raw_fd()));
        }
        let mut keep: Vec<i32> = vec![h.shm_fd];
        keep.extend(h.probe_fd);
        keep.extend(h.probe_events_fd);
        keep.extend(h.ends.values().copied());
        keep.extend(h.queues.values().flat_map(|(r, w)| [*r, *w]));
        if let Kind::ForkServer { conn_fd } = &h.kind {
            keep.push(*conn_fd);
        }
        let json = serde_json::to_vec(&h).map_err(|e| RunError(format!("cannot encode: {e}")))?;
        let memfd =
            nix::sys::memfd::memfd_create(c"forkscope-spawn", nix::sys::memfd::MFdFlags::empty())
                .map_err(|e| RunError(format!("cannot create a memfd: {e}")))?;
        os::write_all(&memfd, &json)?;
        for fd in keep {
            keep_across_exec(fd);
        }
        let exe = c"/proc/self/exe";
        let fd_arg = std::ffi::CString::new(memfd.as_raw_fd().to_string())
            .map_err(|e| RunError(e.to_string()))?;
        let argv = [c"forkscope", c"__runner", c"--spawned", fd_arg.as_c_str()];
        let e = nix::unistd::execv(exe, &argv).err();
        Err(RunError(format!(
            "cannot start a fresh forkscope (exec /proc/self/exe): {}",
            e.map_or_else(|| "?".to_string(), |e| e.to_string())
        )))
    }

    /// `ctx.Process(...).start()` with the `spawn` method.
    pub(super) fn spawn_fresh(
        &mut self,
        id: String,
        role: &str,
        args: Vec<(String, Value)>,
        daemon: bool,
    ) -> Result<usize, RunError> {
        let t0_ns = now_ns();
        match self.fork_child(id, role.to_string().into(), daemon, true)? {
            Forked::Parent(i) => Ok(i),
            Forked::Child => self.exec_fresh(Kind::Child {
                role: role.to_string(),
                args,
                t0_ns,
            }),
        }
    }

    /// `ctx.Process(...).start()` with the `forkserver` method: the
    /// forkserver (started on first use) forks the child.
    pub(super) fn spawn_by_forkserver(
        &mut self,
        id: String,
        role: &str,
        args: Vec<(String, Value)>,
    ) -> Result<usize, RunError> {
        // As the listing measures it: from the call, the server's own
        // start included when this is the first child.
        let t0_ns = now_ns();
        if self.forkserver.is_none() {
            let (mine, theirs) = os::duplex_pair()?;
            let server_id = format!("{}.forkserver", self.probe.id);
            match self.fork_child(server_id, FORKSERVER_ROLE.into(), false, true)? {
                Forked::Child => {
                    drop(mine);
                    let conn_fd = theirs.as_raw_fd();
                    std::mem::forget(theirs); // handed over across exec
                    self.exec_fresh(Kind::ForkServer { conn_fd })
                }
                Forked::Parent(i) => {
                    drop(theirs);
                    self.set_not_spawned(i);
                    self.forkserver = Some((mine, i));
                }
            }
        }
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RunError(format!("cannot create a pipe: {e}")))?;
        let req = ForkRequest {
            id: id.clone(),
            role: role.to_string(),
            args,
            t0_ns,
        };
        let bytes = serde_json::to_vec(&req).map_err(|e| RunError(e.to_string()))?;
        let conn = match &self.forkserver {
            Some((c, _)) => c.try_clone().map_err(|e| RunError(e.to_string()))?,
            None => return Err(RunError("no forkserver".into())),
        };
        send_with_fd(conn.as_fd(), &bytes, status_w.as_raw_fd())?;
        drop(status_w);
        let on = format!("waiting for the forkserver to fork {id}");
        let reply = self.blocking_read_pub(conn.as_fd(), &on)?.ok_or_else(|| {
            RunError("the forkserver is gone (it died or could not start)".into())
        })?;
        let f: Forked2 = serde_json::from_slice(&reply)
            .map_err(|e| RunError(format!("a garbled answer from the forkserver: {e}")))?;
        Ok(self.push_foreign_child(id, f.pid, f.ns_pid, status_r))
    }

    /// At the owner's end: closes the forkserver's connection, so it ends
    /// once its children have, and reaps it.
    pub(super) fn stop_forkserver(&mut self) {
        if let Some((conn, i)) = self.forkserver.take() {
            drop(conn);
            self.join_child(i, false);
        }
    }

    /// The forkserver's life: fork a child per request, reap them, tell
    /// each requester its child's status. Its exit code.
    fn serve_forks(&mut self, conn: OwnedFd) -> i32 {
        let mut status_fds: BTreeMap<usize, OwnedFd> = BTreeMap::new();
        let mut open = true;
        loop {
            // Reap what has ended and say so.
            let done: Vec<(usize, Value)> = status_fds
                .keys()
                .filter_map(|&i| self.try_reap_child(i).map(|code| (i, code)))
                .collect();
            for (i, code) in done {
                if let Some(fd) = status_fds.remove(&i) {
                    let n = code.as_i64().unwrap_or(255) as i32;
                    let _ = os::write_all(&fd, &n.to_le_bytes());
                }
            }
            if !open && status_fds.is_empty() {
                return 0;
            }
            let timeout = if status_fds.is_empty() { -1 } else { 5 };
            if !open || !os::readable(conn.as_fd(), timeout) {
                if !open {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                continue;
            }
            let Ok(Some((bytes, status_fd))) = recv_with_fd(conn.as_fd()) else {
                open = false; // the owner is done (or gone)
                continue;
            };
            let Ok(req) = serde_json::from_slice::<ForkRequest>(&bytes) else {
                open = false;
                continue;
            };
            match self.fork_child(req.id.clone(), req.role.clone().into(), false, true) {
                Ok(Forked::Child) => {
                    drop(status_fds);
                    drop(status_fd);
                    drop(conn);
                    self.forkserver_child(req);
                }
                Ok(Forked::Parent(i)) => {
                    let (pid, ns_pid) = self.child_pids(i);
                    let answer = serde_json::to_vec(&Forked2 { pid, ns_pid }).unwrap_or_default();
                    let _ = os::write_message(conn.as_fd(), &answer);
                    if let Some(fd) = status_fd {
                        status_fds.insert(i, fd);
                    }
                }
                Err(e) => {
                    // The requester sees the connection's answer missing.
                    self.fail(e);
                    return 1;
                }
            }
        }
    }

    fn forkserver_child(&mut self, req: ForkRequest) -> ! {
        let code = self.run_fresh_role(&req.role, req.args, StartMethod::Forkserver, req.t0_ns);
        self.finish(code)
    }

    /// Runs a role in a process started fresh: initial globals, the start
    /// cost measured and shown.
    fn run_fresh_role(
        &mut self,
        role: &str,
        args: Vec<(String, Value)>,
        method: StartMethod,
        t0_ns: u64,
    ) -> i32 {
        self.note_start(method, t0_ns);
        self.run_role_fresh(role, args)
    }

    /// Records and shows how long this child took to start.
    pub(super) fn note_start(&mut self, method: StartMethod, t0_ns: u64) {
        let ms = now_ns().saturating_sub(t0_ns) as f64 / 1e6;
        self.set_start_ms(ms);
        self.probe.emit(Body::Narrate {
            text: format!("started by {} in {ms:.2} ms", method.name()),
            pause: false,
        });
    }
}

/// Entry point of `forkscope __runner --spawned FD`: a fresh image of our
/// binary, a `spawn`ed child or a forkserver. Never returns.
pub fn spawned_main(fd_arg: &str) -> ! {
    match spawned(fd_arg) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = os::write_all(
                std::io::stderr(),
                format!("forkscope: a spawned process could not start: {e}\n").as_bytes(),
            );
            os::exit_now(1)
        }
    }
}

fn spawned(fd_arg: &str) -> Result<std::convert::Infallible, RunError> {
    let fd: i32 = fd_arg
        .parse()
        .map_err(|_| RunError(format!("bad fd {fd_arg:?}")))?;
    let memfd = adopt(fd)?;
    let mut json = Vec::new();
    {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::from(memfd);
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| RunError(e.to_string()))?;
        f.read_to_end(&mut json)
            .map_err(|e| RunError(e.to_string()))?;
    }
    let h: Handover =
        serde_json::from_slice(&json).map_err(|e| RunError(format!("bad handover: {e}")))?;
    let sock = match h.probe_fd {
        Some(fd) => Some(std::os::unix::net::UnixStream::from(adopt(fd)?)),
        None => None,
    };
    let events = h.probe_events_fd.map(adopt).transpose()?;
    let probe = Probe::resume(sock, events, &h.id, h.pid, h.probe_seq);
    let mut ends = BTreeMap::new();
    for (name, fd) in &h.ends {
        ends.insert(name.clone(), adopt(*fd)?);
    }
    let mut queues = BTreeMap::new();
    for (name, (r, w)) in &h.queues {
        queues.insert(name.clone(), (adopt(*r)?, adopt(*w)?));
    }
    let shm_fd = adopt(h.shm_fd)?;
    let run: &'static Run = Box::leak(Box::new(super::rebuild(h.spec, shm_fd, ends, queues)?));
    let role = match &h.kind {
        Kind::Child { role, .. } => role.clone(),
        Kind::ForkServer { .. } => FORKSERVER_ROLE.to_string(),
    };
    let mut p = Proc::new(run, probe, &role);
    p.set_slot(h.slot);
    match h.kind {
        Kind::Child { role, args, t0_ns } => {
            let code = p.run_fresh_role(&role, args, StartMethod::Spawn, t0_ns);
            p.finish(code)
        }
        Kind::ForkServer { conn_fd } => {
            let conn = adopt(conn_fd)?;
            // Never outlive the owner, even if it is killed.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let code = p.serve_forks(conn);
            os::exit_now(code)
        }
    }
}

/// One message with one fd attached (`SCM_RIGHTS`).
fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: i32) -> Result<(), RunError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [std::io::IoSlice::new(bytes)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("cannot ask the forkserver: {e}"))),
        }
    }
}

/// One message and the fd that came with it; `None` at end of file.
type WithFd = (Vec<u8>, Option<OwnedFd>);

fn recv_with_fd(sock: BorrowedFd<'_>) -> Result<Option<WithFd>, RunError> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = vec![0u8; 65536];
    let mut space = nix::cmsg_space!([i32; 1]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        match r {
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel just gave us this fd.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            if fd.is_none() {
                                fd = Some(owned);
                            }
                        }
                    }
                }
                let n = msg.bytes;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                return Ok(Some((buf, fd)));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("recvmsg failed: {e}"))),
        }
    }
}
