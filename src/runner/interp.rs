//! The step interpreter that runs inside every scenario process. Each step
//! does the real thing (fork, waitpid, sem_wait, write to a pipe, ...) and
//! tells the probe about it, stamped so that cause precedes effect: `send`,
//! `put`, `write`, `lock_release` before the call that makes them visible;
//! `recv`, `get`, `read`, `lock_acquire` after the call that observed them.

use super::os::{self, fork_process, read_message, readable, write_message};
use super::stdout::StdoutBuffer;
use super::{Run, RunError};
use crate::probe::{Capture, Probe, host_ppid};
use crate::protocol::{Body, ResourceKind, Value, now_ns, signal_name};
use crate::rng::SplitMix64;
use crate::scenario::expr::Scope;
use crate::scenario::limits::MAX_REPEAT;
use crate::scenario::{Expr, Op, Sig, Step};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Why a process that reached its end still waits: Python's
/// multiprocessing joins the non-daemon children at exit.
pub const JOIN_AT_EXIT: &str = "joins its children at exit";

/// What happens after a step.
pub enum Flow {
    Next,
    Return(Value),
    Exit(i32),
}

/// A child this process started.
struct Child {
    id: String,
    pid: i32,
    ns_pid: Pid,
    daemon: bool,
    /// Started with `spawn` (so `join = "*"` waits for it).
    spawned: bool,
    reaped: bool,
    /// Python's `exitcode`: the code, or minus the signal number.
    exitcode: Value,
}

struct PoolState {
    tasks_w: OwnedFd,
    results_r: OwnedFd,
    workers: Vec<usize>,
    next_task: u32,
    /// Tasks sent and not answered yet, with their callback role.
    pending: BTreeMap<u32, Option<String>>,
    results: BTreeMap<u32, Value>,
    closed: bool,
    joined: bool,
}

#[derive(Serialize, Deserialize)]
struct Packet {
    m: String,
    v: Value,
}

#[derive(Serialize, Deserialize)]
enum TaskPacket {
    Task {
        task: u32,
        role: String,
        args: Vec<(String, Value)>,
    },
    Stop,
}

#[derive(Serialize, Deserialize)]
struct ResultPacket {
    task: u32,
    value: Value,
}

/// One scenario process: its probe, private variables and children.
pub struct Proc<'r> {
    run: &'r Run,
    pub probe: Probe,
    role: String,
    vars: BTreeMap<String, Value>,
    children: Vec<Child>,
    handles: BTreeMap<String, usize>,
    pools: BTreeMap<String, PoolState>,
    n_children: u32,
    rng: SplitMix64,
    /// Our row in the shared process table.
    slot: usize,
    /// Per shared value: what this process last saw in it (read or wrote).
    seen: BTreeMap<String, Value>,
    /// Per private variable: the shared values its value was computed from.
    derived: BTreeMap<String, BTreeSet<String>>,
    /// Python's `sys.stdout` buffer, in this process's memory (`stdout.rs`).
    pub(super) stdout: StdoutBuffer,
}

/// Whether `fork_child` returned in the parent or in the new child.
enum Forked {
    Parent(usize),
    Child,
}

impl<'r> Proc<'r> {
    pub fn new(run: &'r Run, probe: Probe, role: &str) -> Proc<'r> {
        let mut p = Proc {
            run,
            probe,
            role: role.to_string(),
            vars: BTreeMap::new(),
            children: Vec::new(),
            handles: BTreeMap::new(),
            pools: BTreeMap::new(),
            n_children: 0,
            rng: SplitMix64::default(),
            slot: 0,
            seen: BTreeMap::new(),
            derived: BTreeMap::new(),
            stdout: StdoutBuffer::new(run.scenario.stdout),
        };
        p.reseed();
        p
    }

    fn reseed(&mut self) {
        // FNV-1a of the logical id, mixed with the run's seed: the same seed
        // gives each process the same random choices in every run.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.probe.id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.rng = SplitMix64(h ^ self.run.spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }

    /// Runs `main`: the body of the scenario's root process. Never returns.
    pub fn start_main(&mut self) -> Result<Pid, RunError> {
        match self.fork_child("main".into(), "main", false, true)? {
            Forked::Parent(i) => Ok(self.children[i].ns_pid),
            Forked::Child => {
                let code = self.run_role("main", Vec::new());
                self.finish(code)
            }
        }
    }

    /// Runs a role's steps as this process's whole life; the exit code.
    fn run_role(&mut self, role: &str, args: Vec<(String, Value)>) -> i32 {
        self.vars = self.run.scenario.globals.clone();
        self.vars.extend(args);
        self.seen.clear();
        self.derived.clear();
        let Some(r) = self.run.scenario.roles.get(role) else {
            return self.fail(RunError(format!("no role {role}")));
        };
        match self.steps_guarded(&r.steps) {
            Ok(Flow::Exit(code)) => code,
            Ok(_) => 0,
            Err(e) => self.fail(e),
        }
    }

    /// A role's or a task's steps, where a panic (a bug in forkscope: bad
    /// input is an error, never a panic) fails the process like any error
    /// instead of unwinding out of the forked process through the runner's
    /// own frames.
    fn steps_guarded(&mut self, steps: &'r [Step]) -> Result<Flow, RunError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.steps(steps))) {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(RunError(format!(
                    "internal error (a bug in forkscope, please report it): {what}"
                )))
            }
        }
    }

    /// Like an uncaught exception: a message on stderr, exit code 1.
    fn fail(&mut self, e: RunError) -> i32 {
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
        let kills = self.children.iter().any(|c| c.daemon && !c.reaped)
            || self.pools.values().any(|p| !p.joined);
        let joins = self.children.iter().any(|c| c.spawned && !c.reaped);
        if self.gated() && (kills || !joins) {
            let mut touches = vec![format!("proc:{}", self.probe.id)];
            if kills {
                touches.push("*".into());
            }
            self.gate("exit".into(), false, None, false, touches);
        }
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
        let spawned: Vec<usize> = (0..self.children.len())
            .filter(|&i| self.children[i].spawned && !self.children[i].reaped)
            .collect();
        for i in spawned {
            self.join_child_why(i, self.gated(), Some(JOIN_AT_EXIT));
        }
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
    fn exit_at_once(&mut self, code: i32) -> ! {
        if self.gated() {
            self.run.shm.mark_exiting(self.slot);
            self.probe.emit(Body::Exit {
                code: Some(code),
                signal: None,
            });
        }
        os::exit_now(code)
    }

    pub fn steps(&mut self, steps: &'r [Step]) -> Result<Flow, RunError> {
        for s in steps {
            match self.step(s)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn eval(&mut self, e: &Expr) -> Result<Value, RunError> {
        e.eval(self).map_err(RunError)
    }

    fn eval_int(&mut self, e: &Expr, what: &str) -> Result<i64, RunError> {
        let v = self.eval(e)?;
        v.as_i64()
            .ok_or_else(|| RunError(format!("{what} must be a whole number, got {v}")))
    }

    fn gated(&self) -> bool {
        self.run.spec.gated
    }

    /// A yield point of a gated run: say what comes next, wait for `go`.
    fn gate(
        &mut self,
        action: String,
        local: bool,
        waits_for: Option<String>,
        retry: bool,
        touches: Vec<String>,
    ) {
        self.probe.emit(Body::Pending {
            action,
            local,
            waits_for,
            retry,
            touches,
        });
        self.probe.wait_go();
        self.probe.emit(Body::Go {});
    }

    /// Gated: announce, wait for go, try without blocking; until the try
    /// succeeds, announce again, saying what blocked it.
    fn gated_retry<T>(
        &mut self,
        action: &str,
        waits_for: &str,
        mut try_once: impl FnMut(&mut Self) -> Result<Option<T>, RunError>,
    ) -> Result<T, RunError> {
        let touches = vec![touch_of(waits_for)];
        let mut retry = false;
        loop {
            self.gate(
                action.to_string(),
                false,
                Some(waits_for.to_string()),
                retry,
                touches.clone(),
            );
            if let Some(v) = try_once(self)? {
                return Ok(v);
            }
            retry = true;
        }
    }

    /// What an action that gates before it runs reads or changes.
    fn touches(&self, op: &Op) -> Vec<String> {
        let reads = |names: Vec<String>| -> Vec<String> {
            names
                .into_iter()
                .filter(|n| self.run.shm.is_shared(n))
                .map(|n| format!("r:{n}"))
                .collect()
        };
        let mut names = Vec::new();
        match op {
            Op::Print { text, .. } => text.names(&mut names),
            Op::Narrate(t) => t.names(&mut names),
            Op::Sleep(e) | Op::Set { value: e, .. } => e.names(&mut names),
            Op::Poll { end, .. } => {
                return self
                    .run
                    .end(end)
                    .map(|e| vec![format!("pipe:{}", e.channel)])
                    .unwrap_or_default();
            }
            Op::Qsize { queue, .. } => return vec![format!("queue:{queue}")],
            Op::OsExit(_) => return vec![format!("proc:{}", self.probe.id)],
            Op::Unlock(l) => return vec![format!("lock:{l}")],
            Op::Read { name, .. } => return vec![format!("r:{name}")],
            Op::Pool { .. }
            | Op::ApplyAsync { .. }
            | Op::Map { .. }
            | Op::Close(_)
            | Op::Signal { .. } => return vec!["*".into()],
            _ => return Vec::new(),
        }
        reads(names)
    }

    /// What a step that gates before it runs will do, in a few words; None
    /// for steps that gate themselves (or never: control flow).
    fn announce(&self, op: &Op) -> Option<String> {
        Some(match op {
            Op::Print { text, .. } => format!("print {:?}", text.src),
            Op::Narrate(_) => "show a caption".into(),
            Op::Flush => "flush stdout".into(),
            Op::OsExit(_) => "exit at once (os._exit)".into(),
            Op::Sleep(_) => "sleep".into(),
            Op::Spawn { role, .. } => format!("start a {role} process"),
            Op::Fork { .. } => "fork".into(),

            Op::Set { var, .. } => format!("set {var}"),
            Op::Poll { end, .. } => format!("poll {end}"),
            Op::Qsize { queue, .. } => format!("qsize of {queue}"),
            Op::Unlock(l) => format!("release lock {l}"),
            Op::Read { name, .. } => format!("read {name}"),
            Op::Pool { name, .. } => format!("start pool {name}"),
            Op::ApplyAsync { pool, role, .. } => format!("submit {role} to {pool}"),
            Op::Map { pool, role, .. } => format!("map {role} over {pool}"),
            Op::Close(pool) => format!("close {pool}"),
            Op::Exec { argv, .. } => format!(
                "run {}",
                argv.first().map(|t| t.src.as_str()).unwrap_or("a program")
            ),
            Op::Signal { handle, sig } => {
                format!("send SIG{} to {handle}", format!("{sig:?}").to_uppercase())
            }
            _ => return None,
        })
    }

    /// A step nobody else can observe (so a scheduler need not try it in
    /// every order): no shared value read, nothing sent, nobody started.
    fn is_local(&self, op: &Op) -> bool {
        let mut names = Vec::new();
        match op {
            Op::Print { text, .. } => text.names(&mut names),
            Op::Narrate(t) => t.names(&mut names),
            Op::Sleep(e) | Op::Set { value: e, .. } => e.names(&mut names),
            Op::Flush => {}
            _ => return false,
        }
        !names.iter().any(|n| self.run.shm.is_shared(n))
    }

    /// The shared values an expression's value comes from: those it reads
    /// directly, and those the private variables it uses were computed from.
    fn sources(&self, e: &Expr) -> BTreeSet<String> {
        let mut names = Vec::new();
        e.names(&mut names);
        let mut out = BTreeSet::new();
        for n in names {
            if self.vars.contains_key(&n) {
                if let Some(from) = self.derived.get(&n) {
                    out.extend(from.iter().cloned());
                }
            } else if self.run.shm.is_shared(&n) {
                out.insert(n);
            }
        }
        out
    }

    fn set_var(&mut self, name: &str, value: Value) {
        self.derived.remove(name);
        if self.run.scenario.globals.contains_key(name) {
            self.probe.emit(Body::Write {
                name: name.to_string(),
                value: value.clone(),
                private: true,
            });
        }
        self.vars.insert(name.to_string(), value);
    }

    /// A computed duration, checked like a written one: a NaN, negative,
    /// infinite or over-a-day value fails the step with a clear error
    /// instead of panicking in `Duration`. Scaled by `--time-scale`.
    fn duration_ms(&self, v: &Value, key: &str) -> Result<f64, RunError> {
        let ms =
            crate::scenario::check_duration_ms(v).map_err(|m| RunError(format!("{key} {m}")))?;
        Ok(ms * self.run.spec.time_scale)
    }

    /// Sleeps `scaled_ms` (already checked and scaled).
    fn sleep_ms(&mut self, scaled_ms: f64) -> Result<(), RunError> {
        self.probe.emit(Body::Sleep {
            duration_ms: scaled_ms,
        });
        // In a gated run the schedule decides who goes next, not the clock.
        if !self.gated() {
            // Checked: at most a day (times --time-scale), never NaN.
            let nap = Duration::try_from_secs_f64(scaled_ms.max(0.0) / 1000.0).unwrap_or_default();
            self.sleep_until(Instant::now() + nap)?;
        }
        self.probe.emit(Body::Wake {});
        Ok(())
    }

    /// Sleeps until `deadline`. Meanwhile, as the result-handler thread of
    /// Python's `Pool` does, results of this process's pools are taken in
    /// as they arrive, and their callbacks run at once (here, in the
    /// sleeper's own thread; then the sleep goes on to its deadline).
    fn sleep_until(&mut self, deadline: Instant) -> Result<(), RunError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let awaited: Vec<(String, OwnedFd)> = self
                .pools
                .iter()
                .filter(|(_, p)| !p.pending.is_empty())
                .filter_map(|(n, p)| Some((n.clone(), p.results_r.try_clone().ok()?)))
                .collect();
            if awaited.is_empty() {
                std::thread::sleep(left);
                return Ok(());
            }
            let fds: Vec<_> = awaited.iter().map(|(_, fd)| fd.as_fd()).collect();
            // Whole milliseconds, rounded up: never wake before the deadline.
            let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            if let Some(i) = os::first_readable(&fds, ms) {
                let pool = awaited[i].0.clone();
                self.drain_results(&pool, false)?;
            }
        }
    }

    fn step(&mut self, s: &'r Step) -> Result<Flow, RunError> {
        if s.line.is_some() {
            self.probe.line = s.line;
        }
        if self.gated()
            && let Some(action) = self.announce(&s.op)
        {
            let touches = self.touches(&s.op);
            let local = touches.is_empty() && self.is_local(&s.op);
            self.gate(action, local, None, false, touches);
        }
        match &s.op {
            Op::Print { text, end } => {
                let out = text.render(self).map_err(RunError)?;
                self.print(&out, end)?;
            }
            Op::Flush => self.flush_stdout()?,
            Op::Narrate(t) => {
                let text = t.render(self).map_err(RunError)?;
                self.probe.emit(Body::Narrate { text });
            }
            Op::Sleep(e) => {
                let v = self.eval(e)?;
                let ms = self.duration_ms(&v, "sleep_ms")?;
                self.sleep_ms(ms)?;
            }
            Op::Spawn {
                role,
                handle,
                args,
                daemon,
            } => {
                let args: Vec<(String, Value)> = args
                    .iter()
                    .map(|(k, e)| Ok((k.clone(), self.eval(e)?)))
                    .collect::<Result<_, RunError>>()?;
                // Process.start() flushes stdout before it forks (CPython's
                // popen_fork): a multiprocessing child starts empty.
                self.flush_stdout()?;
                self.n_children += 1;
                let id = format!("{}.{}", self.probe.id, self.n_children);
                match self.fork_child(id, role, *daemon, true)? {
                    Forked::Parent(i) => {
                        if let Some(h) = handle {
                            self.handles.insert(h.clone(), i);
                        }
                    }
                    Forked::Child => {
                        let code = self.run_role(role, args);
                        self.finish(code)
                    }
                }
            }
            Op::Fork { into } => {
                self.n_children += 1;
                let id = format!("{}.{}", self.probe.id, self.n_children);
                let role = self.role.clone();
                match self.fork_child(id, &role, false, true)? {
                    Forked::Parent(i) => {
                        // os.fork(): not a multiprocessing child, never
                        // joined by `join = "*"` or at exit.
                        self.children[i].spawned = false;
                        if let Some(v) = into {
                            let pid = self.children[i].pid;
                            self.set_var(v, Value::Int(i64::from(pid)));
                        }
                    }
                    Forked::Child => {
                        if let Some(v) = into {
                            self.set_var(v, Value::Int(0));
                        }
                    }
                }
            }
            Op::Join { target, into } => {
                let code = self.join(target)?;
                if let Some(var) = into {
                    self.set_var(var, code);
                }
            }
            Op::Wait { into } => {
                let pid = self.wait_any()?;
                if let Some(v) = into {
                    self.set_var(v, Value::Int(i64::from(pid)));
                }
            }
            Op::Exit(e) => {
                let code = self.eval_int(e, "exit code")?;
                return Ok(Flow::Exit(code.clamp(0, 255) as i32));
            }
            Op::Return(e) => return Ok(Flow::Return(self.eval(e)?)),
            Op::OsExit(e) => {
                let code = self.eval_int(e, "exit code")?;
                self.exit_at_once(code.clamp(0, 255) as i32)
            }
            Op::If { cond, then, els } => {
                let branch = if self.eval(cond)?.truthy() { then } else { els };
                return self.steps(branch);
            }
            Op::Repeat { count, var, body } => {
                let n = self.eval_int(count, "repeat count")?;
                if n > MAX_REPEAT {
                    return Err(RunError(format!(
                        "repeat {n} is over the limit of {MAX_REPEAT}"
                    )));
                }
                for i in 0..n.max(0) {
                    if let Some(v) = var {
                        self.vars.insert(v.clone(), Value::Int(i));
                    }
                    match self.steps(body)? {
                        Flow::Next => {}
                        other => return Ok(other),
                    }
                }
            }
            Op::For { var, items, body } => {
                let items = match self.eval(items)? {
                    Value::List(l) => l,
                    Value::Str(s) => s.chars().map(|c| Value::Str(c.to_string())).collect(),
                    v => return Err(RunError(format!("cannot loop over a {}", v.type_name()))),
                };
                for item in items {
                    self.set_var(var, item);
                    match self.steps(body)? {
                        Flow::Next => {}
                        other => return Ok(other),
                    }
                }
            }
            Op::Loop(body) => loop {
                match self.steps(body)? {
                    Flow::Next => {}
                    other => return Ok(other),
                }
            },
            Op::Set { var, value } => {
                let from = self.sources(value);
                let v = self.eval(value)?;
                self.set_var(var, v);
                if !from.is_empty() {
                    self.derived.insert(var.clone(), from);
                }
            }
            Op::Send { end, value } => {
                let v = self.eval(value)?;
                if self.gated() {
                    let channel = self.run.end(end)?.channel.clone();
                    self.gate(
                        format!("send {} on {end}", v.repr()),
                        false,
                        None,
                        false,
                        vec![format!("pipe:{channel}")],
                    );
                }
                self.send(end, v)?;
            }
            Op::Recv { end, into } => {
                let v = self.recv(end)?;
                if let Some(var) = into {
                    self.set_var(var, v);
                }
            }
            Op::Poll {
                end,
                timeout_ms,
                into,
            } => {
                let ms = match timeout_ms {
                    Some(e) if !self.gated() => {
                        let v = self.eval(e)?;
                        self.duration_ms(&v, "timeout_ms")?
                    }
                    _ => 0.0,
                };
                let pe = self.run.end(end)?;
                let ready = readable(pe.fd.as_fd(), ms.round() as i32);
                self.probe.emit(Body::Poll {
                    channel: pe.channel.clone(),
                    end: end.clone(),
                    ready,
                });
                if let Some(var) = into {
                    self.set_var(var, Value::Bool(ready));
                }
            }
            Op::Put { queue, value } => {
                let v = self.eval(value)?;
                self.put(queue, v)?;
            }
            Op::Get { queue, into } => {
                let v = self.get(queue)?;
                if let Some(var) = into {
                    self.set_var(var, v);
                }
            }
            Op::Qsize { queue, into } => {
                let n = self.run.shm.queue_depth_add(queue, 0);
                if let Some(var) = into {
                    self.set_var(var, Value::Int(n.max(0)));
                }
            }
            Op::Lock(l) => self.lock(l)?,
            Op::Unlock(l) => {
                self.probe.emit(Body::LockRelease { lock: l.clone() });
                self.run.shm.sem_post(l)?;
            }
            Op::Read { name, into } => {
                let v = self.read_shared(name)?;
                if let Some(var) = into {
                    self.set_var(var, v);
                    self.derived
                        .insert(var.clone(), BTreeSet::from([name.clone()]));
                }
            }
            Op::Write { name, index, value } => {
                // A write whose value came from a read of the same value
                // is a read-modify-write: checked for a lost update.
                let based = index.is_none() && self.sources(value).contains(name);
                let v = self.eval(value)?;
                let index = match index {
                    Some(e) => Some(self.eval_int(e, "index")?),
                    None => None,
                };
                if self.gated() {
                    let shown = index.map_or(name.clone(), |i| format!("{name}[{i}]"));
                    self.gate(
                        format!("write {shown} = {}", v.repr()),
                        false,
                        None,
                        false,
                        vec![format!("w:{name}")],
                    );
                }
                self.write_value(name, index, v, based)?;
            }
            Op::Add { name, by, gap_ms } => {
                // A real read-modify-write: between the read and the write
                // another process can write too, and its update is lost.
                let shared = self.run.shm.is_shared(name);
                if self.gated() {
                    let touches = if shared {
                        vec![format!("r:{name}")]
                    } else {
                        vec![]
                    };
                    self.gate(format!("read {name}"), !shared, None, false, touches);
                }
                let old = if shared {
                    self.read_shared(name)?
                } else {
                    self.lookup(name).map_err(RunError)?
                };
                let by = self.eval(by)?;
                if self.gated() {
                    let new =
                        crate::scenario::expr::binary(crate::scenario::expr::BinOp::Add, &old, &by)
                            .map_err(RunError)?;
                    let touches = if shared {
                        vec![format!("w:{name}")]
                    } else {
                        vec![]
                    };
                    self.gate(
                        format!("write {name} = {}", new.repr()),
                        !shared,
                        None,
                        false,
                        touches,
                    );
                } else if let Some(g) = gap_ms {
                    let v = self.eval(g)?;
                    let scaled = self.duration_ms(&v, "gap_ms")?;
                    nap_ms(scaled);
                }
                let new =
                    crate::scenario::expr::binary(crate::scenario::expr::BinOp::Add, &old, &by)
                        .map_err(RunError)?;
                self.write_value(name, None, new, true)?;
            }
            Op::Pool { name, workers } => {
                let n = self.eval_int(workers, "workers")?;
                self.create_pool(name, n.clamp(1, i64::from(u32::MAX)) as u32)?;
            }
            Op::ApplyAsync {
                pool,
                role,
                args,
                callback,
            } => {
                let args: Vec<(String, Value)> = args
                    .iter()
                    .map(|(k, e)| Ok((k.clone(), self.eval(e)?)))
                    .collect::<Result<_, RunError>>()?;
                self.drain_results(pool, false)?;
                self.submit(pool, role, args, callback.clone())?;
            }
            Op::Map {
                pool,
                role,
                inputs,
                into,
            } => {
                let items = match self.eval(inputs)? {
                    Value::List(l) => l,
                    v => return Err(RunError(format!("map needs a list, got {v}"))),
                };
                let arg = self
                    .run
                    .scenario
                    .roles
                    .get(role)
                    .and_then(|r| r.args.first().cloned())
                    .unwrap_or_else(|| "x".into());
                let mut ids = Vec::new();
                for item in items {
                    ids.push(self.submit(pool, role, vec![(arg.clone(), item)], None)?);
                }
                while ids
                    .iter()
                    .any(|t| !self.pool_mut(pool).is_ok_and(|p| p.results.contains_key(t)))
                {
                    self.drain_results(pool, true)?;
                }
                let p = self.pool_mut(pool)?;
                let out: Vec<Value> = ids
                    .iter()
                    .map(|t| p.results.remove(t).unwrap_or_default())
                    .collect();
                if let Some(var) = into {
                    self.set_var(var, Value::List(out));
                }
            }
            Op::Close(pool) => {
                let p = self.pool_mut(pool)?;
                if !p.closed {
                    p.closed = true;
                    let stop = serde_json::to_vec(&TaskPacket::Stop).unwrap_or_default();
                    for _ in 0..p.workers.len() {
                        write_message(p.tasks_w.as_fd(), &stop)?;
                    }
                }
            }
            Op::Exec {
                argv,
                input,
                into,
                capture,
                handle,
            } => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|t| t.render(self).map_err(RunError))
                    .collect::<Result<_, RunError>>()?;
                let input = match input {
                    Some(e) => Some(self.eval(e)?.to_string()),
                    None => None,
                };
                let out = self.exec(argv, input, *capture, handle.as_deref())?;
                if let (Some(var), Some(out)) = (into, out) {
                    self.set_var(var, Value::Str(out));
                }
            }
            Op::Signal { handle, sig } => {
                let i = self.child_by_handle(handle)?;
                let signal = match sig {
                    Sig::Term => Signal::SIGTERM,
                    Sig::Kill => Signal::SIGKILL,
                    Sig::Stop => Signal::SIGSTOP,
                    Sig::Cont => Signal::SIGCONT,
                    Sig::Int => Signal::SIGINT,
                    Sig::Usr1 => Signal::SIGUSR1,
                };
                self.send_signal(i, signal);
            }
        }
        Ok(Flow::Next)
    }

    // ------------------------------------------------------------ processes

    /// Forks a child with the given logical id. In the child this process's
    /// state becomes the child's (fresh probe, no children of its own) and
    /// `Forked::Child` is returned; the caller decides what it runs.
    fn fork_child(
        &mut self,
        id: String,
        role: &str,
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
        let (sync_r, sync_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RunError(format!("cannot create a pipe: {e}")))?;
        match fork_process()? {
            ForkResult::Child => {
                drop(sync_r);
                let parent_id = self.probe.id.clone();
                self.probe.disconnect();
                let ns_pid = nix::unistd::getpid().as_raw();
                let (pid, _) = crate::probe::host_pids();
                self.run.shm.register(slot, ns_pid, pid, &id);
                self.slot = slot;
                let _ = os::write_all(&sync_w, &pid.to_le_bytes());
                drop(sync_w);
                self.probe = Probe::connect(
                    &self.run.spec.socket,
                    &id,
                    role,
                    has_parent.then_some(parent_id.as_str()),
                    daemon,
                    Capture::OwnOutput,
                );
                self.role = role.to_string();
                self.children.clear();
                self.handles.clear();
                self.pools.clear();
                self.n_children = 0;
                self.reseed();
                self.stdout_after_fork(role == "exec");
                Ok(Forked::Child)
            }
            ForkResult::Parent { child } => {
                drop(sync_w);
                let mut buf = [0u8; 4];
                let pid = match nix::unistd::read(&sync_r, &mut buf) {
                    Ok(4) => i32::from_le_bytes(buf),
                    _ => 0,
                };
                self.probe.emit_at(
                    t_fork,
                    Body::Spawn {
                        child: id.clone(),
                        child_pid: pid,
                        role: role.to_string(),
                        daemon,
                    },
                );
                self.children.push(Child {
                    id,
                    pid,
                    ns_pid: child,
                    daemon,
                    spawned: role != "exec" && !role.starts_with("pool:"),
                    reaped: false,
                    exitcode: Value::None,
                });
                Ok(Forked::Parent(self.children.len() - 1))
            }
        }
    }

    fn child_by_handle(&self, handle: &str) -> Result<usize, RunError> {
        self.handles
            .get(handle)
            .copied()
            .ok_or_else(|| RunError(format!("{handle} was never started by this process")))
    }

    fn send_signal(&mut self, i: usize, signal: Signal) {
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
    fn join(&mut self, target: &str) -> Result<Value, RunError> {
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
    fn join_child(&mut self, i: usize, gate: bool) {
        self.join_child_why(i, gate, None);
    }

    /// [`Proc::join_child`], saying why in the blocked state
    /// (`join main.1 (joins its children at exit)`).
    fn join_child_why(&mut self, i: usize, gate: bool, why: Option<&str>) {
        if self.children[i].reaped {
            return;
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
            let flags = if blocked {
                None
            } else {
                Some(WaitPidFlag::WNOHANG)
            };
            match waitpid(ns_pid, flags) {
                Ok(WaitStatus::StillAlive) => {
                    self.probe.emit(Body::Block { on: on.clone() });
                    blocked = true;
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

    /// Gated runs: reaps the child if it has ended or is ending (it said so
    /// in shared memory); `None` while it still runs. `Some(None)` if it is
    /// gone already.
    fn try_reap(&mut self, ns_pid: Pid) -> Option<Option<WaitStatus>> {
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

    fn emit_reaped(&mut self, i: usize, s: WaitStatus) {
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
    fn wait_any(&mut self) -> Result<i32, RunError> {
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

    // ------------------------------------------------------------ sharing

    fn read_shared(&mut self, name: &str) -> Result<Value, RunError> {
        let v = self
            .run
            .shm
            .load(name)
            .ok_or_else(|| RunError(format!("{name} is not a shared value")))?;
        self.probe.emit(Body::Read {
            name: name.to_string(),
            value: v.clone(),
            private: false,
        });
        self.seen.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// Writes a shared value (or a private global). A write `based` on a
    /// read of the same value (an `add`, or a `write` computed from it) is
    /// one atomic exchange: if the value it replaced is not the one this
    /// process last saw there, others wrote in between and this write
    /// erased their work, and the process says so with a `race` event.
    fn write_value(
        &mut self,
        name: &str,
        index: Option<i64>,
        v: Value,
        based: bool,
    ) -> Result<(), RunError> {
        if !self.run.shm.is_shared(name) {
            if self.run.scenario.globals.contains_key(name) {
                self.set_var(name, v);
                return Ok(());
            }
            return Err(RunError(format!("{name} is not a shared value")));
        }
        let shown = match index {
            Some(i) => format!("{name}[{i}]"),
            None => name.to_string(),
        };
        self.probe.emit(Body::Write {
            name: shown,
            value: v.clone(),
            private: false,
        });
        if index.is_some() {
            return self.run.shm.store(name, index, &v);
        }
        if !based {
            self.run.shm.store(name, None, &v)?;
            self.seen.insert(name.to_string(), v);
            return Ok(());
        }
        let replaced = self.run.shm.exchange(name, &v)?;
        let read = self.seen.insert(name.to_string(), v.clone());
        if let (Some(replaced), Some(read)) = (replaced, read)
            && differs(&read, &replaced)
        {
            let lost = lost_between(&read, &replaced);
            self.probe.emit(Body::Race {
                name: name.to_string(),
                read,
                replaced,
                written: v,
                lost,
            });
        }
        Ok(())
    }

    fn lock(&mut self, l: &str) -> Result<(), RunError> {
        if self.gated() {
            let mut waiting = false;
            self.gated_retry(&format!("acquire lock {l}"), &format!("lock:{l}"), |p| {
                if p.run.shm.sem_try(l)? {
                    return Ok(Some(()));
                }
                if !waiting {
                    waiting = true;
                    p.probe.emit(Body::LockWait {
                        lock: l.to_string(),
                    });
                }
                Ok(None)
            })?;
        } else if !self.run.shm.sem_try(l)? {
            self.probe.emit(Body::LockWait {
                lock: l.to_string(),
            });
            self.run.shm.sem_wait(l)?;
        }
        self.probe.emit(Body::LockAcquire {
            lock: l.to_string(),
        });
        Ok(())
    }

    fn send(&mut self, end: &str, v: Value) -> Result<(), RunError> {
        let pe = self.run.end(end)?;
        if !pe.can_send {
            return Err(RunError(format!(
                "{end} is the reading end of a one-way pipe"
            )));
        }
        let msg = self.probe.msg_id();
        let bytes = serde_json::to_vec(&Packet {
            m: msg.clone(),
            v: v.clone(),
        })
        .unwrap_or_default();
        self.probe.emit(Body::Send {
            channel: pe.channel.clone(),
            end: end.to_string(),
            msg,
            value: v,
        });
        write_message(pe.fd.as_fd(), &bytes)
    }

    /// Reads one message. Gated: a step of the schedule that is retried
    /// while nothing is there. Free: blocks, announcing the wait.
    fn read_one(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        on: &str,
        action: &str,
        blocked_on: &str,
    ) -> Result<Option<Vec<u8>>, RunError> {
        if !self.gated() {
            return self.blocking_read(fd, on);
        }
        let mut announced = false;
        let r = self.gated_retry(action, blocked_on, |p| {
            if readable(fd, 0) {
                return read_message(fd).map(Some);
            }
            if !announced {
                announced = true;
                p.probe.emit(Body::Block { on: on.to_string() });
            }
            Ok(None)
        })?;
        if announced {
            self.probe.emit(Body::Unblock { on: on.to_string() });
        }
        Ok(r)
    }

    /// Reads one message, announcing the wait if nothing is there yet.
    fn blocking_read(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        on: &str,
    ) -> Result<Option<Vec<u8>>, RunError> {
        let ready = readable(fd, 0);
        if !ready {
            self.probe.emit(Body::Block { on: on.to_string() });
        }
        let r = read_message(fd);
        if !ready {
            self.probe.emit(Body::Unblock { on: on.to_string() });
        }
        r
    }

    fn recv(&mut self, end: &str) -> Result<Value, RunError> {
        let run = self.run;
        let pe = run.end(end)?;
        if !pe.can_recv {
            return Err(RunError(format!(
                "{end} is the writing end of a one-way pipe"
            )));
        }
        let bytes = self
            .read_one(
                pe.fd.as_fd(),
                &format!("recv on {end}"),
                &format!("recv on {end}"),
                &format!("recv:{end}"),
            )?
            .ok_or_else(|| RunError("EOFError: the other end is closed".into()))?;
        let p: Packet = serde_json::from_slice(&bytes)
            .map_err(|e| RunError(format!("a garbled message arrived on {end}: {e}")))?;
        self.probe.emit(Body::Recv {
            channel: pe.channel.clone(),
            end: end.to_string(),
            msg: p.m,
            value: p.v.clone(),
        });
        Ok(p.v)
    }

    fn put(&mut self, queue: &str, v: Value) -> Result<(), RunError> {
        let slots = format!("queue:{queue}");
        let bounded = self.run.shm.has_sem(&slots);
        if self.gated() {
            let action = format!("put {} on {queue}", v.repr());
            let on = format!("put on full queue {queue}");
            let mut announced = false;
            self.gated_retry(&action, &format!("queue-put:{queue}"), |p| {
                if !bounded || p.run.shm.sem_try(&slots)? {
                    return Ok(Some(()));
                }
                if !announced {
                    announced = true;
                    p.probe.emit(Body::Block { on: on.clone() });
                }
                Ok(None)
            })?;
            if announced {
                self.probe.emit(Body::Unblock { on });
            }
        } else if bounded && !self.run.shm.sem_try(&slots)? {
            let on = format!("put on full queue {queue}");
            self.probe.emit(Body::Block { on: on.clone() });
            self.run.shm.sem_wait(&slots)?;
            self.probe.emit(Body::Unblock { on });
        }
        let msg = self.probe.msg_id();
        let bytes = serde_json::to_vec(&Packet {
            m: msg.clone(),
            v: v.clone(),
        })
        .unwrap_or_default();
        self.probe.emit(Body::Put {
            channel: queue.to_string(),
            msg,
            value: v,
        });
        self.run.shm.queue_depth_add(queue, 1);
        let q = self.run.queue(queue)?;
        write_message(q.1.as_fd(), &bytes)
    }

    fn get(&mut self, queue: &str) -> Result<Value, RunError> {
        let run = self.run;
        let q = run.queue(queue)?;
        let bytes = self
            .read_one(
                q.0.as_fd(),
                &format!("get on empty queue {queue}"),
                &format!("get from {queue}"),
                &format!("queue-get:{queue}"),
            )?
            .ok_or_else(|| RunError(format!("queue {queue} is closed")))?;
        self.run.shm.queue_depth_add(queue, -1);
        let p: Packet = serde_json::from_slice(&bytes)
            .map_err(|e| RunError(format!("a garbled item in queue {queue}: {e}")))?;
        self.probe.emit(Body::Get {
            channel: queue.to_string(),
            msg: p.m,
            value: p.v.clone(),
        });
        let slots = format!("queue:{queue}");
        if self.run.shm.has_sem(&slots) {
            self.run.shm.sem_post(&slots)?;
        }
        Ok(p.v)
    }

    // ------------------------------------------------------------ pools

    fn pool_mut(&mut self, name: &str) -> Result<&mut PoolState, RunError> {
        self.pools
            .get_mut(name)
            .ok_or_else(|| RunError(format!("pool {name} was not created by this process")))
    }

    fn create_pool(&mut self, name: &str, workers: u32) -> Result<(), RunError> {
        let (tasks_r, tasks_w) = os::packet_pipe()?;
        let (results_r, results_w) = os::packet_pipe()?;
        self.probe.emit(Body::Resource {
            res: ResourceKind::Pool,
            name: name.to_string(),
            value: None,
            size: Some(workers),
            ends: vec![],
            duplex: false,
        });
        let prefix = if self.probe.id == "main" {
            name.to_string()
        } else {
            format!("{}.{name}", self.probe.id)
        };
        // Each worker's Process.start() flushes stdout first.
        self.flush_stdout()?;
        let mut ids = Vec::new();
        for k in 1..=workers {
            let id = format!("{prefix}.w{k}");
            match self.fork_child(id, &format!("pool:{name}"), false, true)? {
                Forked::Parent(i) => ids.push(i),
                Forked::Child => {
                    drop(tasks_w);
                    drop(results_r);
                    self.worker_loop(name, &tasks_r, &results_w);
                    self.finish(0)
                }
            }
        }
        drop(tasks_r);
        drop(results_w);
        self.pools.insert(
            name.to_string(),
            PoolState {
                tasks_w,
                results_r,
                workers: ids,
                next_task: 0,
                pending: BTreeMap::new(),
                results: BTreeMap::new(),
                closed: false,
                joined: false,
            },
        );
        Ok(())
    }

    /// A pool worker: take a task, run it, send the result, until told to stop.
    fn worker_loop(&mut self, pool: &str, tasks: &OwnedFd, results: &OwnedFd) {
        loop {
            let packet = match self.read_one(
                tasks.as_fd(),
                "waiting for a task",
                &format!("take a task from {pool}"),
                &format!("pool-tasks:{pool}"),
            ) {
                Ok(Some(p)) => p,
                _ => return,
            };
            let Ok(TaskPacket::Task { task, role, args }) = serde_json::from_slice(&packet) else {
                return;
            };
            self.probe.emit(Body::Get {
                channel: format!("{pool}.tasks"),
                msg: format!("{pool}:task{task}"),
                value: Value::Str(call_text(&role, &args)),
            });
            self.probe.emit(Body::TaskStart {
                pool: pool.to_string(),
                task,
                func: role.clone(),
            });
            let saved = std::mem::take(&mut self.vars);
            self.derived.clear();
            self.vars = self.run.scenario.globals.clone();
            self.vars.extend(args);
            let steps = match self.run.scenario.roles.get(&role) {
                Some(r) => &r.steps,
                None => {
                    self.fail(RunError(format!("no role {role}")));
                    continue;
                }
            };
            let value = match self.steps_guarded(steps) {
                Ok(Flow::Return(v)) => v,
                Ok(_) => Value::None,
                Err(e) => {
                    self.fail(e);
                    Value::None
                }
            };
            self.vars = saved;
            self.probe.emit(Body::TaskDone {
                pool: pool.to_string(),
                task,
                value: value.clone(),
            });
            self.probe.emit(Body::Send {
                channel: format!("{pool}.results"),
                end: String::new(),
                msg: format!("{pool}:result{task}"),
                value: value.clone(),
            });
            let bytes = serde_json::to_vec(&ResultPacket { task, value }).unwrap_or_default();
            if write_message(results.as_fd(), &bytes).is_err() {
                return;
            }
        }
    }

    fn submit(
        &mut self,
        pool: &str,
        role: &str,
        args: Vec<(String, Value)>,
        callback: Option<String>,
    ) -> Result<u32, RunError> {
        let p = self.pool_mut(pool)?;
        if p.closed {
            return Err(RunError(format!(
                "ValueError: Pool not running (pool {pool} is closed)"
            )));
        }
        let task = p.next_task;
        p.next_task += 1;
        p.pending.insert(task, callback);
        let text = call_text(role, &args);
        let bytes = serde_json::to_vec(&TaskPacket::Task {
            task,
            role: role.to_string(),
            args,
        })
        .unwrap_or_default();
        self.probe.emit(Body::Put {
            channel: format!("{pool}.tasks"),
            msg: format!("{pool}:task{task}"),
            value: Value::Str(text),
        });
        let p = self.pool_mut(pool)?;
        write_message(p.tasks_w.as_fd(), &bytes)?;
        Ok(task)
    }

    /// Takes in finished results (waiting for at least one if `wait`), and
    /// runs their callbacks here, in the pool's owner.
    fn drain_results(&mut self, pool: &str, wait: bool) -> Result<(), RunError> {
        let mut first = true;
        loop {
            let fd = self
                .pool_mut(pool)?
                .results_r
                .try_clone()
                .map_err(|e| RunError(e.to_string()))?;
            let must_wait = wait && first;
            if !must_wait && !readable(fd.as_fd(), 0) {
                return Ok(());
            }
            first = false;
            let Some(bytes) = self.read_one(
                fd.as_fd(),
                &format!("waiting for {pool} results"),
                &format!("wait for a result from {pool}"),
                &format!("pool-results:{pool}"),
            )?
            else {
                // Every worker has exited (after close): fine unless a
                // result is still owed.
                if self.pool_mut(pool)?.pending.is_empty() {
                    return Ok(());
                }
                return Err(RunError(format!("the workers of {pool} are gone")));
            };
            let r: ResultPacket = serde_json::from_slice(&bytes)
                .map_err(|e| RunError(format!("a garbled result from {pool}: {e}")))?;
            self.probe.emit(Body::Recv {
                channel: format!("{pool}.results"),
                end: String::new(),
                msg: format!("{pool}:result{}", r.task),
                value: r.value.clone(),
            });
            let p = self.pool_mut(pool)?;
            let callback = p.pending.remove(&r.task).flatten();
            p.results.insert(r.task, r.value.clone());
            if let Some(cb) = callback {
                self.run_callback(&cb, r.value)?;
            }
        }
    }

    fn run_callback(&mut self, role: &str, value: Value) -> Result<(), RunError> {
        let Some(r) = self.run.scenario.roles.get(role) else {
            return Err(RunError(format!("no role {role}")));
        };
        let arg = r.args.first().cloned().unwrap_or_else(|| "result".into());
        let saved = std::mem::take(&mut self.vars);
        let derived = std::mem::take(&mut self.derived);
        self.vars = self.run.scenario.globals.clone();
        self.vars.insert(arg, value);
        let r = self.steps(&r.steps);
        self.vars = saved;
        self.derived = derived;
        r.map(|_| ())
    }

    fn join_pool(&mut self, pool: &str) -> Result<(), RunError> {
        if !self.pool_mut(pool)?.closed {
            return Err(RunError(format!(
                "ValueError: pool {pool} is still running (close it before join)"
            )));
        }
        while !self.pool_mut(pool)?.pending.is_empty() {
            self.drain_results(pool, true)?;
        }
        let workers = self.pool_mut(pool)?.workers.clone();
        for i in workers {
            self.join_child(i, self.gated());
        }
        self.pool_mut(pool)?.joined = true;
        Ok(())
    }

    // ------------------------------------------------------------ exec

    /// `subprocess.Popen(argv, stdin=PIPE, stdout=PIPE).communicate(input)`.
    fn exec(
        &mut self,
        argv: Vec<String>,
        input: Option<String>,
        capture: bool,
        handle: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| RunError(format!("cannot create a pipe: {e}")))
        };
        let stdin = match input {
            Some(_) => Some(pipe()?),
            None => None,
        };
        let stdout = if capture { Some(pipe()?) } else { None };
        // As Popen does: a close-on-exec pipe on which the child reports a
        // failed exec (a successful one closes it: end of file).
        let (err_r, err_w) = pipe()?;
        self.n_children += 1;
        let id = format!("{}.{}", self.probe.id, self.n_children);
        let program = argv.first().cloned().unwrap_or_default();
        match self.fork_child(id.clone(), "exec", false, true)? {
            Forked::Child => {
                if let Some((r, _)) = &stdin {
                    let _ = nix::unistd::dup2_stdin(r);
                }
                if let Some((_, w)) = &stdout {
                    let _ = nix::unistd::dup2_stdout(w);
                }
                self.probe.emit(Body::Exec {
                    program: program.clone(),
                    args: argv[1..].to_vec(),
                });
                drop(err_r);
                let errno = exec_program(&argv);
                let _ = os::write_all(&err_w, &errno.to_le_bytes());
                // What CPython's child does when exec fails.
                os::exit_now(255)
            }
            Forked::Parent(i) => {
                drop(err_w);
                if let Some(errno) = exec_error(&err_r)? {
                    // Popen raises in the parent, after reaping the child.
                    self.join_child(i, false);
                    return Err(RunError(os_error(errno, &program)));
                }
                drop(err_r);
                if let Some(h) = handle {
                    self.handles.insert(h.to_string(), i);
                }
                if let (Some((r, w)), Some(text)) = (stdin, input) {
                    drop(r);
                    let msg = self.probe.msg_id();
                    self.probe.emit(Body::Send {
                        channel: format!("{id}.stdin"),
                        end: "stdin".into(),
                        msg,
                        value: Value::Str(text.clone()),
                    });
                    // A program that exits without reading is not an error.
                    let _ = os::write_all(&w, text.as_bytes());
                }
                let out = match stdout {
                    Some((r, w)) => {
                        drop(w);
                        let on = format!("reading the output of {program}");
                        self.probe.emit(Body::Block { on: on.clone() });
                        let bytes = os::read_to_end(r.as_fd())?;
                        self.probe.emit(Body::Unblock { on });
                        Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    None => None,
                };
                self.join_child(i, false);
                Ok(out)
            }
        }
    }
}

/// What a write erased: `replaced - read` for numbers, else what it replaced.
fn lost_between(read: &Value, replaced: &Value) -> Value {
    match (read, replaced) {
        (Value::Int(r), Value::Int(x)) => Value::Int(x.wrapping_sub(*r)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            Value::Float(replaced.as_f64().unwrap_or(0.0) - read.as_f64().unwrap_or(0.0))
        }
        _ => replaced.clone(),
    }
}

/// Whether a value found in memory differs from the one this process saw
/// (an int written to a float value reads back as the same float).
fn differs(read: &Value, replaced: &Value) -> bool {
    match (read, replaced) {
        (Value::Int(a), Value::Int(b)) => a != b,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            read.as_f64() != replaced.as_f64()
        }
        (a, Value::Bool(b)) => a.truthy() != *b,
        (a, b) => a != b,
    }
}

/// What an action waiting for `waits_for` touches.
fn touch_of(waits_for: &str) -> String {
    let (kind, what) = waits_for.split_once(':').unwrap_or((waits_for, ""));
    match kind {
        "lock" => format!("lock:{what}"),
        "queue-get" | "queue-put" => format!("queue:{what}"),
        // The channel of an end is not known here: assume the worst.
        "recv" => "*".into(),
        "join" => format!("proc:{what}"),
        _ => "*".into(),
    }
}

/// Replaces the process image; returns only on failure, with the errno.
fn exec_program(argv: &[String]) -> i32 {
    use std::ffi::CString;
    let Ok(args) = argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return nix::errno::Errno::EINVAL as i32;
    };
    let Some(prog) = args.first() else {
        return nix::errno::Errno::ENOENT as i32;
    };
    // Programs expect the default SIGPIPE behaviour (Rust ignores it).
    // SAFETY: setting a signal to its default disposition has no handler.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    match nix::unistd::execvp(prog, &args) {
        Ok(never) => match never {},
        Err(e) => e as i32,
    }
}

/// Waits until the exec'ing child either runs its program (the pipe
/// closes, `None`) or says why it could not (its errno).
fn exec_error(err_r: &OwnedFd) -> Result<Option<i32>, RunError> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(err_r, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("cannot learn if exec worked: {e}"))),
        }
    }
    Ok((got == buf.len()).then(|| i32::from_le_bytes(buf)))
}

/// The exception Python's `Popen` raises for a failed exec, as the last
/// line of its traceback: `FileNotFoundError: [Errno 2] No such file or
/// directory: 'nosuchprog'`.
fn os_error(errno: i32, program: &str) -> String {
    use nix::errno::Errno;
    let e = Errno::from_raw(errno);
    let class = match e {
        Errno::ENOENT => "FileNotFoundError",
        Errno::EACCES | Errno::EPERM => "PermissionError",
        Errno::ENOTDIR => "NotADirectoryError",
        Errno::EISDIR => "IsADirectoryError",
        _ => "OSError",
    };
    let quoted = Value::Str(program.to_string()).repr();
    format!("{class}: [Errno {errno}] {}: {quoted}", e.desc())
}

fn call_text(role: &str, args: &[(String, Value)]) -> String {
    let shown: Vec<String> = args.iter().map(|(_, v)| v.repr()).collect();
    format!("{role}({})", shown.join(", "))
}

/// Exit code or signal name from a wait status.
pub fn status_parts(s: WaitStatus) -> (Option<i32>, Option<String>) {
    match s {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(signal_name(sig as i32))),
        _ => (None, None),
    }
}

impl Scope for Proc<'_> {
    fn lookup(&mut self, name: &str) -> Result<Value, String> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        if self.run.shm.is_shared(name) {
            return self.read_shared(name).map_err(|e| e.0);
        }
        if let Some(v) = self.run.params.get(name) {
            return Ok(v.clone());
        }
        match name {
            "pid" => Ok(Value::Int(i64::from(self.probe.pid))),
            "ppid" => Ok(Value::Int(i64::from(host_ppid().unwrap_or(0)))),
            "name" => Ok(Value::Str(self.probe.id.clone())),
            "role" => Ok(Value::Str(self.role.clone())),
            _ => Err(format!("NameError: name {name:?} is not defined here")),
        }
    }

    fn call(&mut self, name: &str, args: &[Value]) -> Result<Option<Value>, String> {
        let num = |i: usize| -> Result<f64, String> {
            args.get(i)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("{name}() needs numbers"))
        };
        Ok(Some(match name {
            "random" => Value::Float(self.rng.next_f64()),
            "uniform" => {
                let (a, b) = (num(0)?, num(1)?);
                Value::Float(a + (b - a) * self.rng.next_f64())
            }
            "randint" => {
                let int = |i: usize| match args.get(i) {
                    Some(Value::Int(n)) => Ok(*n),
                    _ => crate::scenario::expr::float_to_int(num(i)?, "randint()"),
                };
                let (a, b) = (int(0)?, int(1)?);
                // In i128: b - a + 1 overflows i64 for a wide range.
                let span = (i128::from(b) - i128::from(a) + 1).max(1) as f64;
                let k = (self.rng.next_f64() * span).floor() as i128;
                Value::Int((i128::from(a) + k).clamp(i128::from(a), i128::from(b.max(a))) as i64)
            }
            "env" => match args.first() {
                Some(Value::Str(k)) => Value::Str(std::env::var(k).unwrap_or_default()),
                _ => return Err("env() needs a name".into()),
            },
            "time" => Value::Float(now_ns() as f64 / 1e9),
            "cpu_count" => {
                Value::Int(std::thread::available_parallelism().map_or(1, |n| n.get() as i64))
            }
            _ => return Ok(None),
        }))
    }
}

/// Sleeps a checked, scaled duration (at most a day times 100: `Duration`
/// cannot overflow); 0 or less does not sleep.
fn nap_ms(scaled_ms: f64) {
    if scaled_ms > 0.0
        && let Ok(d) = Duration::try_from_secs_f64(scaled_ms / 1000.0)
    {
        std::thread::sleep(d);
    }
}
