//! The step interpreter that runs inside every scenario process. Each step
//! does the real thing (fork, waitpid, sem_wait, write to a pipe, ...) and
//! tells the probe about it, stamped so that cause precedes effect: `send`,
//! `put`, `write`, `lock_release` before the call that makes them visible;
//! `recv`, `get`, `read`, `lock_acquire` after the call that observed them.

use super::os::{self, fork_process, read_message, readable, write_message};
use super::stdout::StdoutBuffer;
use super::{Run, RunError};
use crate::probe::{Probe, host_ppid};
use crate::protocol::{Body, ResourceKind, Value, now_ns, signal_name};
use crate::rng::SplitMix64;
use crate::scenario::expr::Scope;
use crate::scenario::limits::MAX_REPEAT;
use crate::scenario::{Expr, Op, Sig, StartMethod, Step};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

// One primitive per module; each is a child of this one, so it sees the
// process's state (`Proc`) as this module does.
mod exec;
mod locks;
mod pools;
mod process;
mod queues;
mod threads;
mod values;

use pools::{PoolState, TaskPacket};
pub use process::status_parts;

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
    /// Not our child but the forkserver's: its status comes on this pipe.
    via: Option<OwnedFd>,
}

/// A message as it crosses a pipe or a queue: its id and value.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Packet {
    pub(super) m: String,
    pub(super) v: Value,
}

/// One scenario process: its probe, private variables and children.
pub struct Proc<'r> {
    pub(super) run: &'r Run,
    pub probe: Probe,
    /// The role this process runs (borrowed from the scenario where it
    /// can be: see `Proc::fork_child`).
    role: Cow<'r, str>,
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
    /// Connections to managers, and the managers this process started.
    pub(super) managers: super::manager::Managers,
    /// The forkserver this process started (its connection, its index).
    pub(super) forkserver: Option<(OwnedFd, usize)>,
    /// How long this process took to start (`start_ms`), when measured.
    start_ms: Option<f64>,
    /// Python's `sys.stdout` buffer, in this process's memory (`stdout.rs`).
    pub(super) stdout: StdoutBuffer,
    /// The threads this process (or thread) started, and their handles.
    threads: Vec<threads::ThreadChild>,
    thread_handles: BTreeMap<String, usize>,
    /// Once a thread started: the globals, in memory all threads share
    /// (`vars` then holds only this thread's locals).
    globals: Option<threads::Globals>,
    /// What all threads of this process share besides the globals: its
    /// thread locks and its count of threads (for `Thread-N` names).
    shared: std::sync::Arc<threads::ProcShared>,
    /// This thread's Python name (`MainThread`, `Thread-1 (work)`).
    thread_name: String,
}

/// Whether `fork_child` returned in the parent or in the new child.
pub(super) enum Forked {
    Parent(usize),
    Child,
}

impl<'r> Proc<'r> {
    pub fn new(run: &'r Run, probe: Probe, role: &str) -> Proc<'r> {
        let mut p = Proc {
            run,
            probe,
            role: Cow::Owned(role.to_string()),
            vars: BTreeMap::new(),
            children: Vec::new(),
            handles: BTreeMap::new(),
            pools: BTreeMap::new(),
            n_children: 0,
            rng: SplitMix64::default(),
            slot: 0,
            seen: BTreeMap::new(),
            derived: BTreeMap::new(),
            managers: Default::default(),
            forkserver: None,
            start_ms: None,
            stdout: StdoutBuffer::new(run.scenario.stdout),
            threads: Vec::new(),
            thread_handles: BTreeMap::new(),
            globals: None,
            shared: Default::default(),
            thread_name: "MainThread".into(),
        };
        p.reseed();
        p
    }

    fn reseed(&mut self) {
        // (Not through `reseed_for`: that would need a copy of the id, an
        // allocation in a child just forked.)
        self.rng = seeded(&self.probe.id, self.run.spec.seed);
    }

    /// Seeds the random choices from a logical id (a process's, a thread's).
    fn reseed_for(&mut self, id: &str) {
        self.rng = seeded(id, self.run.spec.seed);
    }

    /// Runs `main`: the body of the scenario's root process. Never returns.
    pub fn start_main(&mut self) -> Result<Pid, RunError> {
        match self.fork_child("main".into(), Cow::Borrowed("main"), false, true)? {
            Forked::Parent(i) => Ok(self.children[i].ns_pid),
            Forked::Child => {
                if let Some(prog) = &self.run.spec.python {
                    // `forkscope trace`: main is the Python program.
                    self.probe.emit(Body::Exec {
                        program: prog.python.display().to_string(),
                        args: std::iter::once(prog.script.display().to_string())
                            .chain(prog.args.iter().cloned())
                            .collect(),
                    });
                    crate::trace::stdin_from_app(self.run.spec.parent_pid);
                    let block = self.run.spec.stdout == Some(crate::scenario::StdoutMode::Block);
                    let why = crate::trace::exec_python(prog, block, self.run.spec.gated);
                    let code = self.fail(RunError(why));
                    os::exit_now(code)
                }
                let code = self.run_role("main", Vec::new(), false);
                self.finish(code)
            }
        }
    }

    /// Runs a role's steps as this process's whole life; the exit code.
    /// A forked child `inherit`s the private globals as its parent left
    /// them (a copy of its memory); otherwise they have their initial values.
    fn run_role(&mut self, role: &str, args: Vec<(String, Value)>, inherit: bool) -> i32 {
        // Each emptying and filling only when there is something to it: in
        // a child just forked, code not run is code whose pages the kernel
        // need not map in (see `Proc::finish`).
        let globals = &self.run.scenario.globals;
        if !globals.is_empty() || !self.vars.is_empty() {
            let mut vars = globals.clone();
            if inherit {
                for (k, v) in vars.iter_mut() {
                    if let Some(now) = self.vars.get(k) {
                        *v = now.clone();
                    }
                }
            }
            self.vars = vars;
        }
        if !self.run.scenario.thread_locals.is_empty() {
            self.vars.extend(self.run.scenario.thread_locals.clone());
        }
        if !args.is_empty() {
            self.vars.extend(args);
        }
        if !self.seen.is_empty() {
            self.seen.clear();
        }
        if !self.derived.is_empty() {
            self.derived.clear();
        }
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

    /// A process started fresh (spawn, forkserver): its role with the
    /// initial globals.
    pub(super) fn run_role_fresh(&mut self, role: &str, args: Vec<(String, Value)>) -> i32 {
        self.run_role(role, args, false)
    }

    pub(super) fn slot(&self) -> usize {
        self.slot
    }

    pub(super) fn set_slot(&mut self, slot: usize) {
        self.slot = slot;
    }

    pub(super) fn set_start_ms(&mut self, ms: f64) {
        self.start_ms = Some(ms);
    }

    pub fn steps(&mut self, steps: &'r [Step]) -> Result<Flow, RunError> {
        for (i, s) in steps.iter().enumerate() {
            let flow = self.step(s);
            // Held events (a sleep's, [`Probe::hold`]) go out with the next
            // step's first event only when that step computes and then
            // sends before any system call; else now.
            if self.probe.holds()
                && !(matches!(flow, Ok(Flow::Next))
                    && steps.get(i + 1).is_some_and(|n| self.sends_first(&n.op)))
            {
                self.probe.flush();
            }
            match flow? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    /// Whether a step does nothing but compute before its first event
    /// (no system call, no lock of a thread-shared global, nothing another
    /// process can see), so that events held before it may wait for that
    /// event: a `write` (its event comes before the store) or a `sleep`.
    fn sends_first(&self, op: &Op) -> bool {
        self.globals.is_none() && matches!(op, Op::Write { .. } | Op::Sleep(_))
    }

    fn eval(&mut self, e: &Expr) -> Result<Value, RunError> {
        e.eval(self).map_err(RunError)
    }

    /// A step's `args = { k = expr }`, evaluated in order.
    fn eval_args(&mut self, args: &[(String, Expr)]) -> Result<Vec<(String, Value)>, RunError> {
        args.iter()
            .map(|(k, e)| Ok((k.clone(), self.eval(e)?)))
            .collect()
    }

    fn eval_int(&mut self, e: &Expr, what: &str) -> Result<i64, RunError> {
        let v = self.eval(e)?;
        v.as_i64()
            .ok_or_else(|| RunError(format!("{what} must be a whole number, got {v}")))
    }

    pub(super) fn gated(&self) -> bool {
        self.run.spec.gated
    }

    /// A yield point of a gated run: say what comes next, wait for `go`.
    pub(super) fn gate(
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

    /// [`Self::gate`] for an action that only computes until its own
    /// first event: a load of a shared value, or a write of one (its event
    /// comes before the store). The `go` is held ([`Probe::hold`]) and
    /// goes out with that event in one socket write, so the collector and
    /// the lab are woken once for both (a gated step is mostly wake-ups).
    /// Not with thread-shared globals (a lock may be taken on the way).
    fn gate_then_send(&mut self, action: String, touches: Vec<String>) {
        if self.globals.is_some() {
            return self.gate(action, false, None, false, touches);
        }
        self.probe.emit(Body::Pending {
            action,
            local: false,
            waits_for: None,
            retry: false,
            touches,
        });
        self.probe.wait_go();
        self.probe.hold(Body::Go {});
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
                .filter(|n| self.is_shared_name(n))
                .map(|n| format!("r:{n}"))
                .collect()
        };
        let mut names = Vec::new();
        match op {
            Op::Print { text, .. } => text.names(&mut names),
            Op::Narrate(t, _) => t.names(&mut names),
            Op::Set { var, value } => {
                value.names(&mut names);
                let mut t = reads(names);
                if self.is_thread_shared(var) {
                    t.push(format!("w:{var}"));
                }
                return t;
            }
            Op::Sleep(e) => e.names(&mut names),
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
            Op::Narrate(..) => "show a caption".into(),
            Op::Flush => "flush stdout".into(),
            Op::OsExit(_) => "exit at once (os._exit)".into(),
            Op::Sleep(_) => "sleep".into(),
            Op::Spawn { role, .. } => format!("start a {role} process"),
            Op::Thread { role, .. } => format!("start a {role} thread"),
            Op::Fork { .. } => "fork".into(),

            Op::Set { var, .. } => format!("set {var}"),
            Op::Poll { end, .. } => format!("poll {end}"),
            Op::Qsize { queue, .. } => format!("qsize of {queue}"),
            Op::Unlock(l) => format!("release lock {l}"),
            Op::Read { name, .. } => format!("read {name}"),
            Op::Pool { name, .. } => format!("start pool {name}"),
            Op::ApplyAsync { pool, role, .. } => format!("submit {role} to {pool}"),
            Op::Map { pool, role, .. } => format!("map {role} over {pool}"),
            Op::Close(name) => format!("close {name}"),
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
            Op::Narrate(t, _) => t.names(&mut names),
            Op::Sleep(e) | Op::Set { value: e, .. } => e.names(&mut names),
            Op::Flush => {}
            _ => return false,
        }
        if let Op::Set { var, .. } = op
            && self.is_thread_shared(var)
        {
            return false;
        }
        !names.iter().any(|n| self.is_shared_name(n))
    }

    /// Whether another process or thread can see this name's value: a
    /// shared value, or a global this process's threads share.
    fn is_shared_name(&self, name: &str) -> bool {
        self.run.shm.is_shared(name) || self.is_thread_shared(name)
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

    /// Whether `name` is among [`Proc::sources`] of `e` (computed without
    /// collecting them: a `write` asks it every time).
    fn derives_from(&self, e: &Expr, name: &str) -> bool {
        e.any_name(&mut |n| {
            if self.vars.contains_key(n) {
                self.derived.get(n).is_some_and(|from| from.contains(name))
            } else {
                n == name && self.run.shm.is_shared(n)
            }
        })
    }

    fn set_var(&mut self, name: &str, value: Value) {
        self.derived.remove(name);
        if self.globals.is_some()
            && self.run.scenario.globals.contains_key(name)
            && !self.vars.contains_key(name)
        {
            self.write_global(name, value, false);
            return;
        }
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
        // In a gated run the schedule decides who goes next, not the clock.
        // Checked: at most a day (times --time-scale), never NaN.
        let nap = match self.gated() {
            true => Duration::ZERO,
            false => Duration::try_from_secs_f64(scaled_ms.max(0.0) / 1000.0).unwrap_or_default(),
        };
        let sleep = Body::Sleep {
            duration_ms: scaled_ms,
        };
        if nap.is_zero() {
            // Nothing blocks: the sleep goes out with the wake.
            self.probe.hold(sleep);
        } else {
            self.probe.emit(sleep);
            self.sleep_until(Instant::now() + nap)?;
        }
        // Nobody sees a sleep end: the wake goes out with the next event
        // (`steps` sends it at once unless the next step sends first).
        self.probe.hold(Body::Wake {});
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
            let awaited = self.awaited_results();
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
            Op::Narrate(t, pause) => {
                let text = t.render(self).map_err(RunError)?;
                self.probe.emit(Body::Narrate {
                    text,
                    pause: *pause,
                });
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
                method,
            } => {
                let args = self.eval_args(args)?;
                // Process.start() flushes stdout before it forks (CPython's
                // popen_fork): a multiprocessing child starts empty.
                self.flush_stdout()?;
                self.n_children += 1;
                let id = format!("{}.{}", self.probe.id, self.n_children);
                let i = match method.unwrap_or_default() {
                    StartMethod::Fork => {
                        let t0_ns = now_ns();
                        match self.fork_child(id, Cow::Borrowed(role), *daemon, true)? {
                            Forked::Parent(i) => i,
                            Forked::Child => {
                                if method.is_some() {
                                    self.note_start(StartMethod::Fork, t0_ns);
                                }
                                let code = self.run_role(role, args, true);
                                self.finish(code)
                            }
                        }
                    }
                    StartMethod::Spawn => self.spawn_fresh(id, role, args, *daemon)?,
                    StartMethod::Forkserver => self.spawn_by_forkserver(id, role, args)?,
                };
                if let Some(h) = handle {
                    self.handles.insert(h.clone(), i);
                }
            }
            Op::Fork { into } => {
                self.n_children += 1;
                let id = format!("{}.{}", self.probe.id, self.n_children);
                let role = self.role.clone();
                match self.fork_child(id, role, false, true)? {
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
            Op::Thread {
                role,
                handle,
                name,
                args,
                daemon,
            } => {
                let args = self.eval_args(args)?;
                let name = match name {
                    Some(t) => Some(t.render(self).map_err(RunError)?),
                    None => None,
                };
                self.start_thread(role, handle.as_deref(), name.as_deref(), args, *daemon)?;
            }
            Op::Join { target, into } if self.is_thread_handle(target) => {
                self.join_thread(target)?;
                if let Some(var) = into {
                    self.set_var(var, Value::None);
                }
            }
            Op::Join { target, into } => {
                if target == "*" {
                    // Every thread not joined yet, then every child.
                    self.join_threads_at_exit();
                }
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
                        match self.vars.get_mut(v) {
                            Some(slot) => *slot = Value::Int(i),
                            None => {
                                self.vars.insert(v.clone(), Value::Int(i));
                            }
                        }
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
                        format!("send {} on {end}", brief(&v)),
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
                let ready = self.poll_end(end, ms.round() as i32)?;
                if let Some(var) = into {
                    self.set_var(var, Value::Bool(ready));
                }
            }
            Op::Put { queue, value } => {
                let v = self.eval(value)?;
                if self.run.scenario.manager_queues.contains_key(queue) {
                    self.manager_put(queue, v)?;
                } else {
                    self.put(queue, v)?;
                }
            }
            Op::Get { queue, into } => {
                let v = if self.run.scenario.manager_queues.contains_key(queue) {
                    self.manager_get(queue)?
                } else {
                    self.get(queue)?
                };
                if let Some(var) = into {
                    self.set_var(var, v);
                }
            }
            Op::Qsize { queue, into } => {
                let n = if self.run.scenario.manager_queues.contains_key(queue) {
                    self.manager_qsize(queue)?
                } else {
                    Value::Int(self.run.shm.queue_depth_add(queue, 0).max(0))
                };
                if let Some(var) = into {
                    self.set_var(var, n);
                }
            }
            Op::Manager(name) => self.start_manager(name)?,
            Op::Apply {
                pool,
                role,
                args,
                into,
            } => {
                let args = self.eval_args(args)?;
                self.drain_results(pool, false)?;
                let task = self.submit(pool, role, args, None)?;
                while !self.pool_mut(pool)?.results.contains_key(&task) {
                    self.drain_results(pool, true)?;
                }
                let v = self
                    .pool_mut(pool)?
                    .results
                    .remove(&task)
                    .unwrap_or_default();
                if let Some(var) = into {
                    self.set_var(var, v);
                }
            }
            Op::Lock(l) => self.lock(l)?,
            Op::Unlock(l) if self.run.scenario.thread_locks.contains(l) => {
                self.probe.emit(Body::LockRelease { lock: l.clone() });
                self.thread_unlock(l)?;
            }
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
                let based = index.is_none() && self.derives_from(value, name);
                let v = self.eval(value)?;
                let index = match index {
                    Some(e) => Some(self.eval_int(e, "index")?),
                    None => None,
                };
                if self.gated() {
                    let shown = index.map_or(name.clone(), |i| format!("{name}[{i}]"));
                    let action = format!("write {shown} = {}", v.repr());
                    let touches = vec![format!("w:{name}")];
                    if self.run.shm.is_shared(name) {
                        // Its `write` event comes before the store.
                        self.gate_then_send(action, touches);
                    } else {
                        self.gate(action, false, None, false, touches);
                    }
                }
                self.write_value(name, index, v, based)?;
            }
            Op::Add { name, by, gap_ms } => {
                // A real read-modify-write: between the read and the write
                // another process (or thread) can write too, and its
                // update is lost.
                let in_shm = self.run.shm.is_shared(name);
                let shared = in_shm || self.is_thread_shared(name);
                // Gated, a shared value's read goes out with the `go`
                // before it and the next `pending` (the write's) after it,
                // in one socket write: nothing but a load and computing
                // lies between them.
                let hold_read = self.gated() && in_shm && self.globals.is_none();
                if self.gated() {
                    let touches = if shared {
                        vec![format!("r:{name}")]
                    } else {
                        vec![]
                    };
                    if hold_read {
                        self.gate_then_send(format!("read {name}"), touches);
                    } else {
                        self.gate(format!("read {name}"), !shared, None, false, touches);
                    }
                }
                let old = if hold_read {
                    self.read_shared_held(name)?
                } else if in_shm {
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
                    let action = format!("write {name} = {}", new.repr());
                    if in_shm {
                        // Its `write` event comes before the store.
                        self.gate_then_send(action, touches);
                    } else {
                        self.gate(action, !shared, None, false, touches);
                    }
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
                let args = self.eval_args(args)?;
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
            Op::Close(name) if !self.pools.contains_key(name) && self.run.end(name).is_ok() => {
                // `conn.close()`: this process's fd of that end.
                self.run.end(name)?.close();
            }
            Op::Close(pool) => {
                let p = self.pool_mut(pool)?;
                if !p.closed {
                    p.closed = true;
                    let workers = p.workers.len() as u32;
                    // One stop per worker (CPython's task handler puts one
                    // `None` per worker), each said as it is put, as a
                    // traced program's pool says it: the model, and so a
                    // gated run's scheduler, sees that the workers have
                    // something to take.
                    for n in 1..=workers {
                        self.probe.emit(Body::Put {
                            channel: format!("{pool}.tasks"),
                            msg: crate::protocol::pool_stop_msg(pool, n),
                            value: Value::Str("stop".into()),
                        });
                        let stop = serde_json::to_vec(&TaskPacket::Stop { n }).unwrap_or_default();
                        write_message(self.pool_mut(pool)?.tasks_w.as_fd(), &stop)?;
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

    // ------------------------------------------------------------ sharing

    // ------------------------------------------------------------ pools

    // ------------------------------------------------------------ exec
}

/// A value as a step announces it: its repr, cut after 80 characters.
fn brief(v: &Value) -> String {
    let r = v.repr();
    match r.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} characters)", &r[..at], r.chars().count()),
        None => r,
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

/// The random choices of logical id `id` in a run seeded with `seed`:
/// FNV-1a of the id, mixed with the seed, so the same seed gives each
/// process (each thread) the same random choices in every run.
fn seeded(id: &str, seed: u64) -> SplitMix64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix64(h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn call_text(role: &str, args: &[(String, Value)]) -> String {
    let shown: Vec<String> = args.iter().map(|(_, v)| v.repr()).collect();
    format!("{role}({})", shown.join(", "))
}

impl Scope for Proc<'_> {
    fn lookup(&mut self, name: &str) -> Result<Value, String> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.read_global(name) {
            return Ok(v);
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
            "role" => Ok(Value::Str(self.role.to_string())),
            "start_ms" => Ok(Value::Float(self.start_ms.unwrap_or(0.0))),
            "thread_name" => Ok(Value::Str(self.thread_name.clone())),
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
