//! Process life: starting children (`fork`), signalling them, joining
//! and waiting (`waitpid`: a zombie until then), and this process's own
//! end (exit code, flushing, what a failed step prints).

use super::*;
use std::borrow::Cow;

/// Exit code or signal name from a wait status.
pub fn status_parts(s: WaitStatus) -> (Option<i32>, Option<String>) {
    match s {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(signal_name(sig as i32))),
        _ => (None, None),
    }
}

impl<'r> Proc<'r> {
    pub(in crate::runner) fn child_pids(&self, i: usize) -> (i32, i32) {
        (self.children[i].pid, self.children[i].ns_pid.as_raw())
    }

    /// A child the forkserver forked for us: joined through `via`.
    pub(in crate::runner) fn push_foreign_child(
        &mut self,
        id: String,
        pid: i32,
        ns_pid: i32,
        via: OwnedFd,
    ) -> usize {
        self.children.push(Child {
            id,
            pid,
            ns_pid: Pid::from_raw(ns_pid),
            daemon: false,
            spawned: true,
            reaped: false,
            exitcode: Value::None,
            via: Some(via),
        });
        self.children.len() - 1
    }

    /// Reaps child `i` if it has ended (without blocking); its exitcode.
    pub(in crate::runner) fn try_reap_child(&mut self, i: usize) -> Option<Value> {
        if self.children[i].reaped {
            return Some(self.children[i].exitcode.clone());
        }
        loop {
            match waitpid(self.children[i].ns_pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.children[i].reaped = true;
                    self.emit_reaped(i, s);
                    return Some(self.children[i].exitcode.clone());
                }
                Ok(WaitStatus::StillAlive) => return None,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.children[i].reaped = true;
                    return Some(Value::None);
                }
            }
        }
    }

    /// Like an uncaught exception: a message on stderr, exit code 1.
    pub(in crate::runner) fn fail(&mut self, e: RunError) -> i32 {
        // Held events first: they came before the failure.
        self.probe.flush();
        let at = self
            .probe
            .line
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let msg = format!("{} failed{at}: {}\n", self.probe.id, e.0);
        let _ = os::write_all(std::io::stderr(), msg.as_bytes());
        self.probe.emit(Body::Error { message: e.0 });
        1
    }

    /// Ends this process the way Python's multiprocessing does at exit
    /// (its atexit handler): pool workers and daemon children still
    /// running are terminated, then every child started with `spawn` is
    /// joined (the process stays, blocked, until they end), then it exits.
    /// Children of `fork` (os.fork) are not waited for: they become orphans.
    pub fn finish(&mut self, code: i32) -> ! {
        // Interpreter shutdown joins the non-daemon threads first.
        self.join_threads_at_exit();
        let kills = self.children.iter().any(|c| c.daemon && !c.reaped)
            || (!self.pools.is_empty() && self.pools.values().any(|p| !p.joined));
        let joins = self.children.iter().any(|c| c.spawned && !c.reaped);
        if self.gated() && (kills || !joins) {
            let mut touches = vec![format!("proc:{}", self.probe.id)];
            if kills {
                touches.push("*".into());
            }
            self.gate("exit".into(), false, None, false, touches);
        }
        // (A process that started nothing, as most short-lived children,
        // skips the searches: in a child just forked, code not run is code
        // whose pages the kernel need not map in.)
        if !self.children.is_empty() || !self.pools.is_empty() {
            let live: Vec<usize> = (0..self.children.len())
                .filter(|&i| !self.children[i].reaped && self.children[i].daemon)
                .collect();
            let pool_workers: Vec<usize> = self
                .pools
                .values()
                .filter(|p| !p.joined)
                .flat_map(|p| p.workers.clone())
                .filter(|&i| !self.children[i].reaped)
                .collect();
            for i in live.into_iter().chain(pool_workers) {
                self.send_signal(i, Signal::SIGTERM);
                self.join_child(i, false);
            }
        }
        // CPython's manager finalizer runs before children are joined.
        self.shutdown_managers();
        if !self.children.is_empty() {
            let spawned: Vec<usize> = (0..self.children.len())
                .filter(|&i| self.children[i].spawned && !self.children[i].reaped)
                .collect();
            for i in spawned {
                self.join_child_why(i, self.gated(), Some(JOIN_AT_EXIT));
            }
        }
        self.stop_forkserver();
        if self.gated() && joins && !kills {
            // The joins came first; now the exit itself is a step.
            let touches = vec![format!("proc:{}", self.probe.id)];
            self.gate("exit".into(), false, None, false, touches);
        }
        // A normal end writes what is still buffered (CPython's _bootstrap
        // for multiprocessing children, interpreter shutdown otherwise); a
        // process killed by a signal never gets here, and its buffer is lost.
        let _ = self.flush_stdout();
        if self.gated() {
            // Say it ourselves, now: the scheduler must not wait for the
            // kernel's word before it lets the next process go.
            self.run.shm.mark_exiting(self.slot);
            self.probe.emit(Body::Exit {
                code: Some(code),
                signal: None,
            });
        }
        os::exit_now(code)
    }

    /// `os._exit(code)`: none of what `finish` does (no joins, no kills of
    /// daemons, no flush of stdout: a buffer not written yet is lost).
    pub(in crate::runner) fn exit_at_once(&mut self, code: i32) -> ! {
        if self.gated() {
            self.run.shm.mark_exiting(self.slot);
            self.probe.emit(Body::Exit {
                code: Some(code),
                signal: None,
            });
        }
        os::exit_now(code)
    }

    /// Forks a child with the given logical id. In the child this process's
    /// state becomes the child's (its own probe and connection, no children
    /// of its own) and `Forked::Child` is returned; the caller decides what
    /// it runs.
    pub(in crate::runner) fn fork_child(
        &mut self,
        id: String,
        role: Cow<'r, str>,
        daemon: bool,
        has_parent: bool,
    ) -> Result<Forked, RunError> {
        let Some(slot) = self.run.shm.claim_process(self.run.spec.max_procs) else {
            return Err(RunError(format!(
                "cannot start {id}: the run reached its limit of {} processes (--max-procs)",
                self.run.spec.max_procs
            )));
        };
        let t_fork = now_ns();
        // Decided before the fork (once per process): can we learn the
        // child's pid as `ps` shows it ourselves, or must it tell us?
        let tells = os::child_tells_its_pid();
        let sync = if tells {
            Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| RunError(format!("cannot create a pipe: {e}")))?,
            )
        } else {
            None
        };
        // Ours as `ps` shows it: the child's parent pid, without asking.
        let parent_pid = self.probe.pid;
        match fork_process()? {
            ForkResult::Child => {
                let ns_pid = nix::unistd::getpid().as_raw();
                let pid = os::own_host_pid();
                self.run.shm.register(slot, ns_pid, pid, &id);
                self.slot = slot;
                if let Some((sync_r, sync_w)) = sync {
                    drop(sync_r);
                    let _ = os::write_all(&sync_w, &pid.to_le_bytes());
                }
                self.probe.become_child(
                    &self.run.spec.socket,
                    id,
                    &role,
                    has_parent,
                    daemon,
                    (pid, parent_pid),
                    ns_pid,
                );
                // The role's name moves in (borrowed from the scenario, or
                // made by the caller before the fork: in a child just forked
                // an allocation writes pages it shares with its parent, see
                // `Probe::become_child`); the parent's is left, not freed (as
                // its children are).
                let exec = role == "exec";
                std::mem::forget(std::mem::replace(&mut self.role, role));
                self.forget_inherited_children();
                if !self.pools.is_empty() {
                    self.pools.clear();
                }
                self.managers.after_fork();
                self.forkserver = None;
                self.start_ms = None;
                self.n_children = 0;
                self.reseed();
                self.stdout_after_fork(exec);
                Ok(Forked::Child)
            }
            ForkResult::Parent { child } => {
                let pid = match sync {
                    Some((sync_r, sync_w)) => {
                        drop(sync_w);
                        let mut buf = [0u8; 4];
                        match nix::unistd::read(&sync_r, &mut buf) {
                            Ok(4) => i32::from_le_bytes(buf),
                            _ => 0,
                        }
                    }
                    None => os::host_pid_of(child).unwrap_or(0),
                };
                self.probe.emit_spawn(t_fork, &id, pid, &role, daemon);
                self.children.push(Child {
                    id,
                    pid,
                    ns_pid: child,
                    daemon,
                    spawned: role != "exec" && !role.starts_with("pool:"),
                    reaped: false,
                    exitcode: Value::None,
                    via: None,
                });
                Ok(Forked::Parent(self.children.len() - 1))
            }
        }
    }

    /// In a child just forked: its parent's list of children is not its
    /// own. Left in memory rather than dropped: dropping would free every
    /// entry (a parent starting its 1,000th child would have that child
    /// free 999 names first), and each page those frees write is a page
    /// the kernel must copy, the parent still sharing it. Only the
    /// descriptors among them (a forkserver child's status pipe) are
    /// closed; the memory is the parent's copy and goes when this process
    /// ends or `exec`s, and it is at most the parent's list once.
    fn forget_inherited_children(&mut self) {
        let mut inherited = std::mem::ManuallyDrop::new(std::mem::take(&mut self.children));
        for c in inherited.iter_mut() {
            if c.via.is_some() {
                drop(c.via.take());
            }
        }
        std::mem::forget(std::mem::take(&mut self.handles));
    }

    /// A child that is not a `Process` (a manager's server): not joined by
    /// `join = "*"` or at exit.
    pub(in crate::runner) fn set_not_spawned(&mut self, i: usize) {
        self.children[i].spawned = false;
    }

    pub(in crate::runner) fn child_by_handle(&self, handle: &str) -> Result<usize, RunError> {
        self.handles
            .get(handle)
            .copied()
            .ok_or_else(|| RunError(format!("{handle} was never started by this process")))
    }

    pub(in crate::runner) fn send_signal(&mut self, i: usize, signal: Signal) {
        let c = &self.children[i];
        if c.reaped {
            return;
        }
        let (target, target_pid, ns_pid) = (c.id.clone(), c.pid, c.ns_pid);
        self.probe.emit(Body::Signal {
            target: target.clone(),
            target_pid,
            signal: signal.as_str().to_string(),
        });
        let _ = kill(ns_pid, signal);
        if self.gated() {
            // Let the signal take effect before our step ends, so that the
            // next choice of the schedule sees it (without reaping).
            use nix::sys::wait::{Id, waitid};
            let what = match signal {
                Signal::SIGSTOP => WaitPidFlag::WSTOPPED,
                Signal::SIGCONT => WaitPidFlag::WCONTINUED,
                _ => WaitPidFlag::WEXITED,
            };
            let r = loop {
                match waitid(Id::Pid(ns_pid), what | WaitPidFlag::WNOWAIT) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            if what == WaitPidFlag::WEXITED && r.is_ok() {
                self.probe.emit_about(
                    &target,
                    target_pid,
                    Body::Exit {
                        code: None,
                        signal: Some(signal.as_str().to_string()),
                    },
                );
            }
        }
    }

    /// Joins; the exit code like Python's `p.exitcode` (None for `*` and
    /// pools).
    pub(in crate::runner) fn join(&mut self, target: &str) -> Result<Value, RunError> {
        if target == "*" {
            let todo: Vec<usize> = (0..self.children.len())
                .filter(|&i| self.children[i].spawned && !self.children[i].reaped)
                .collect();
            for i in todo {
                self.join_child(i, self.gated());
            }
            return Ok(Value::None);
        }
        if self.pools.contains_key(target) {
            self.join_pool(target)?;
            return Ok(Value::None);
        }
        let i = self.child_by_handle(target)?;
        self.join_child(i, self.gated());
        Ok(self.children[i].exitcode.clone())
    }

    /// `waitpid` on one child: blocks while it runs, then reaps it. When
    /// `gate`d, the wait is a step of the schedule.
    pub(in crate::runner) fn join_child(&mut self, i: usize, gate: bool) {
        self.join_child_why(i, gate, None);
    }

    /// [`Proc::join_child`], saying why in the blocked state
    /// (`join main.1 (joins its children at exit)`).
    pub(in crate::runner) fn join_child_why(&mut self, i: usize, gate: bool, why: Option<&str>) {
        if self.children[i].reaped {
            return;
        }
        if self.children[i].via.is_some() {
            return self.join_via_forkserver(i, why);
        }
        let ns_pid = self.children[i].ns_pid;
        let on = match why {
            Some(why) => format!("join {} ({why})", self.children[i].id),
            None => format!("join {}", self.children[i].id),
        };
        if gate {
            let blocked_on = format!("join:{}", self.children[i].id);
            let mut announced = false;
            let status = self.gated_retry(&on, &blocked_on, |p| match p.try_reap(ns_pid) {
                Some(s) => Ok(Some(s)),
                None => {
                    if !announced {
                        announced = true;
                        p.probe.emit(Body::Block { on: on.clone() });
                    }
                    Ok(None)
                }
            });
            self.children[i].reaped = true;
            if let Ok(Some(s)) = status {
                self.emit_reaped(i, s);
            }
            if announced {
                self.probe.emit(Body::Unblock { on });
            }
            return;
        }
        let mut blocked = false;
        let status = loop {
            // As CPython's result-handler thread does, pool results come in
            // (and their callbacks run) while this process waits.
            let awaited = self.awaited_results();
            let flags = if blocked && awaited.is_empty() {
                None
            } else {
                Some(WaitPidFlag::WNOHANG)
            };
            match waitpid(ns_pid, flags) {
                Ok(WaitStatus::StillAlive) => {
                    if !blocked {
                        self.probe.emit(Body::Block { on: on.clone() });
                        blocked = true;
                    }
                    if !awaited.is_empty() {
                        self.await_child_or_results(ns_pid, &awaited);
                    }
                }
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break Some(s),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break None,
            }
        };
        // Reaped first: the child's end (stamped just before the reap)
        // then falls inside the wait, not after it.
        self.children[i].reaped = true;
        if let Some(s) = status {
            self.emit_reaped(i, s);
        }
        if blocked {
            self.probe.emit(Body::Unblock { on });
        }
    }

    /// Joins a child the forkserver forked: its parent (the forkserver)
    /// reaps it and writes its status on our pipe, as CPython's
    /// `popen_forkserver` reads it.
    pub(in crate::runner) fn join_via_forkserver(&mut self, i: usize, why: Option<&str>) {
        let Some(via) = self.children[i].via.take() else {
            return;
        };
        let on = match why {
            Some(why) => format!("join {} ({why})", self.children[i].id),
            None => format!("join {}", self.children[i].id),
        };
        let ready = readable(via.as_fd(), 0);
        if !ready {
            self.probe.emit(Body::Block { on: on.clone() });
        }
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match nix::unistd::read(&via, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.children[i].reaped = true;
        self.children[i].exitcode = if got == 4 {
            Value::Int(i64::from(i32::from_le_bytes(buf)))
        } else {
            Value::None
        };
        if !ready {
            self.probe.emit(Body::Unblock { on });
        }
    }

    /// Gated runs: reaps the child if it has ended or is ending (it said so
    /// in shared memory); `None` while it still runs. `Some(None)` if it is
    /// gone already.
    pub(in crate::runner) fn try_reap(&mut self, ns_pid: Pid) -> Option<Option<WaitStatus>> {
        let mut flags = Some(WaitPidFlag::WNOHANG);
        loop {
            match waitpid(ns_pid, flags) {
                Ok(WaitStatus::StillAlive) if self.run.shm.is_exiting(ns_pid.as_raw()) => {
                    flags = None; // it is in `_exit`: wait the microseconds
                }
                Ok(WaitStatus::StillAlive) => return None,
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Some(Some(s));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Some(None),
            }
        }
    }

    pub(in crate::runner) fn emit_reaped(&mut self, i: usize, s: WaitStatus) {
        self.children[i].exitcode = match s {
            WaitStatus::Exited(_, c) => Value::Int(i64::from(c)),
            WaitStatus::Signaled(_, sig, _) => Value::Int(-(sig as i64)),
            _ => Value::None,
        };
        let (code, signal) = status_parts(s);
        let (id, pid) = (self.children[i].id.clone(), self.children[i].pid);
        let (by, by_pid) = (self.probe.id.clone(), self.probe.pid);
        self.probe.emit_about(
            &id,
            pid,
            Body::Reaped {
                by,
                by_pid,
                code,
                signal,
            },
        );
    }

    /// `os.wait()`: reaps whichever child ends first; its pid.
    pub(in crate::runner) fn wait_any(&mut self) -> Result<i32, RunError> {
        let alive = self.children.iter().any(|c| !c.reaped);
        if !alive {
            return Err(RunError(
                "ChildProcessError: no child processes to wait for".into(),
            ));
        }
        if self.gated() {
            let mut announced = false;
            let found = self.gated_retry("wait for a child", "wait", |p| {
                for i in 0..p.children.len() {
                    if p.children[i].reaped {
                        continue;
                    }
                    if let Some(s) = p.try_reap(p.children[i].ns_pid) {
                        return Ok(Some((i, s)));
                    }
                }
                if !announced {
                    announced = true;
                    p.probe.emit(Body::Block {
                        on: "wait for any child".into(),
                    });
                }
                Ok(None)
            })?;
            if announced {
                self.probe.emit(Body::Unblock {
                    on: "wait for any child".into(),
                });
            }
            let (i, s) = found;
            self.children[i].reaped = true;
            if let Some(s) = s {
                self.emit_reaped(i, s);
            }
            return Ok(self.children[i].pid);
        }
        self.probe.emit(Body::Block {
            on: "wait for any child".into(),
        });
        let s = loop {
            match waitpid(None::<Pid>, None) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break s,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(RunError(format!("wait failed: {e}"))),
            }
        };
        self.probe.emit(Body::Unblock {
            on: "wait for any child".into(),
        });
        let ns_pid = s.pid();
        let Some(i) = self.children.iter().position(|c| Some(c.ns_pid) == ns_pid) else {
            return Ok(0);
        };
        self.children[i].reaped = true;
        self.emit_reaped(i, s);
        Ok(self.children[i].pid)
    }
}
