//! One run of a scenario as the app (CLI or GUI) sees it: a collector
//! thread and the runner process, started from our own binary.
//!
//! The app never forks by itself: it starts `forkscope __runner` with
//! `Command` and hands it a [`RunSpec`] as one line on its stdin. The app
//! keeps that pipe open for as long as the run may go on: when it closes
//! (Stop, the session dropped, the app dies however it dies), the runner's
//! watchdog kills every process of the run (see `runner::watchdog`).

use crate::collector::{Collector, CollectorHost};
use crate::protocol::{Event, SOCKET_ENV, Value};
use crate::runner::RunSpec;
use crate::scenario::limits::Limits;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Events the channel holds before the collector starts dropping (and
/// counting) them.
pub const CHANNEL_CAPACITY: usize = 1 << 16;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub time_scale: f64,
    pub seed: u64,
    pub limits: Limits,
    /// Every step of every process waits for [`Session::go`].
    pub gated: bool,
    /// Overrides the scenario's `stdout` buffering (`--stdout`).
    pub stdout: Option<crate::scenario::StdoutMode>,
    /// Run this Python program as `main` (`forkscope trace`; see
    /// [`crate::trace::TraceTarget::start`]).
    pub python: Option<crate::trace::PythonProgram>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            time_scale: 1.0,
            seed: 0,
            limits: Limits::default(),
            gated: false,
            stdout: None,
            python: None,
        }
    }
}

pub struct Session {
    pub collector: Collector,
    runner: Runner,
    pub started: Instant,
    exit_code: Option<i32>,
}

/// Who runs the session's scenario.
enum Runner {
    /// A runner of its own, started for this run.
    Own {
        child: Child,
        /// The runner's stdin. Closing it stops the run; the kernel closes
        /// it when we die.
        lifeline: Option<ChildStdin>,
    },
    /// A runner shared by many runs, one after the other.
    Shared {
        host: Arc<Mutex<RunnerHost>>,
        /// `stop` was sent already.
        stopped: bool,
        /// The host's `exit` line for this run was read.
        done: bool,
        /// The runner core's `exit` event came: the host's `exit` line
        /// is near, so waits for events watch for it too.
        core_gone: bool,
    },
}

/// Locks a mutex whose data a panicking thread leaves whole.
fn lock(host: &Mutex<RunnerHost>) -> MutexGuard<'_, RunnerHost> {
    host.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns our own binary as `forkscope __runner ARGS`: its own process
/// group (Ctrl-C in the terminal reaches only us, and we stop the run
/// ourselves), stdin a pipe (the lifeline).
fn spawn_runner(
    args: &[&str],
    socket_env: Option<&std::path::Path>,
    stdout: Stdio,
) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .process_group(0);
    if let Some(sock) = socket_env {
        cmd.env(SOCKET_ENV, sock);
    }
    if let Some((name, user_soft)) = crate::limits::runner_env() {
        cmd.env(name, user_soft);
    }
    cmd.spawn().context("cannot start the runner")
}

/// One runner process (`forkscope __runner --serve`) that runs one
/// scenario after another: `stats`, `explore` and the app's Many runs
/// start it once instead of a runner per run (see `runner::serve`).
/// Each run still has its own collector, its own watchdog, process group
/// and PID namespace; only the runner's start is saved.
///
/// Dropping the host closes the server's stdin: it stops a run still
/// going on and exits (so does the kernel when we die, even by `kill -9`).
pub struct RunnerHost {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The server's `exit CODE` lines, read by a thread of ours so that a
    /// run's end wakes whoever waits for events at once.
    exits: Receiver<i32>,
    /// A run was handed over and its `exit` line not taken yet.
    busy: bool,
    /// The server ended (or its pipes broke): start another.
    dead: bool,
    /// One collector kit for all runs of this server (see
    /// `collector::CollectorHost`), read on the thread of the run's
    /// consumer: each run still gets its own socket, trust root and
    /// channel.
    collectors: CollectorHost,
    /// Woken (by the thread that reads the `exit` lines) when a run's
    /// `exit` line comes: the reader of the run's pulled collector, who
    /// waits in its epoll, not on the channel of exit codes.
    nudge: Arc<Mutex<Option<crate::collector::Waker>>>,
}

impl RunnerHost {
    /// Starts the server, shared as the runs go by.
    pub fn start() -> Result<Arc<Mutex<RunnerHost>>> {
        Ok(Arc::new(Mutex::new(RunnerHost::spawn()?)))
    }

    fn spawn() -> Result<RunnerHost> {
        let mut child = spawn_runner(&["__runner", "--serve"], None, Stdio::piped())?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, exits) = crossbeam_channel::unbounded();
        let nudge: Arc<Mutex<Option<crate::collector::Waker>>> = Arc::default();
        if let Some(stdout) = stdout {
            let nudging = nudge.clone();
            let read = std::thread::Builder::new()
                .name("runner-exits".into())
                .spawn(move || read_exits(stdout, tx, &nudging));
            if let Err(e) = read {
                drop(stdin);
                let _ = child.wait();
                return Err(e).context("cannot start a thread for the runner");
            }
        }
        Ok(RunnerHost {
            child,
            stdin,
            exits,
            busy: false,
            dead: false,
            collectors: CollectorHost::new(),
            nudge,
        })
    }

    /// The server's pid (the root of trust of every run it makes).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the server; false if it is gone.
    fn say(&mut self, line: &[u8]) -> bool {
        let ok = self
            .stdin
            .as_mut()
            .is_some_and(|s| s.write_all(line).is_ok());
        if !ok {
            self.dead = true;
        }
        ok
    }

    /// Takes the exit code of the run handed over, if it came; a server
    /// that is gone ends the run as stopped.
    fn take_exit(&mut self, wait: Option<std::time::Duration>) -> Option<i32> {
        let got = match wait {
            None => self.exits.try_recv().map_err(|e| e.is_disconnected()),
            Some(d) => self.exits.recv_timeout(d).map_err(|e| e.is_disconnected()),
        };
        let code = match got {
            Ok(code) => code,
            Err(false) => return None,
            Err(true) => {
                self.dead = true;
                crate::runner::watchdog::STOPPED_CODE
            }
        };
        self.busy = false;
        Some(code)
    }
}

/// Reads the server's stdout to its end: each `exit CODE` line goes to
/// `tx`, and then wakes the reader of the run's collector (`nudge`); so
/// does the end of the stdout (the channel disconnects).
fn read_exits(
    stdout: std::process::ChildStdout,
    tx: Sender<i32>,
    nudge: &Mutex<Option<crate::collector::Waker>>,
) {
    use std::io::BufRead;
    let wake = || {
        if let Some(w) = nudge.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.wake();
        }
    };
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(code) = line
            .trim()
            .strip_prefix("exit ")
            .and_then(|c| c.parse().ok())
        {
            if tx.send(code).is_err() {
                break;
            }
            wake();
        }
    }
    drop(tx);
    wake();
}

impl Drop for RunnerHost {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// How a session's events are read ([`Session::start`]).
pub enum Reading {
    /// By a collector thread of its own, which hands them over through
    /// `collector.events` (the GUI, a free `run`).
    Thread,
    /// On the caller's thread, in [`Session::recv_event`]: no collector
    /// thread, one wake-up per batch instead of two. Never for a thread
    /// that must not block (the GUI's): between two calls nothing is read
    /// and the processes' writes wait. See [`Collector::start_pull`].
    Pull,
    /// By a collector thread that gives every batch to the sink there, in
    /// order (`collector.events` gets none; it disconnects when the run
    /// is over). The sink must be quick: it holds up reading. See
    /// [`Collector::start_direct`].
    Direct(crate::collector::Sink),
}

impl Session {
    /// Starts the collector and the runner, its events read as `reading`
    /// says. The scenario must already be checked (loader and limits): the
    /// runner loads the same text again.
    pub fn start(
        scenario_text: &str,
        origin: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
        reading: Reading,
    ) -> Result<Session> {
        let window_ns = window_ns(opts);
        Session::start_with_window(scenario_text, origin, params, opts, window_ns, reading)
    }

    /// [`Session::start`] with the collector's reorder window given and
    /// the way its events are read (benchmarks measure the way from a
    /// process to the model each way, with and without the window).
    pub fn start_with_window(
        scenario_text: &str,
        origin: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
        window_ns: u64,
        reading: Reading,
    ) -> Result<Session> {
        let collector = match reading {
            Reading::Thread => Collector::start(CHANNEL_CAPACITY, window_ns),
            Reading::Pull => Collector::start_pull(CHANNEL_CAPACITY, window_ns),
            Reading::Direct(sink) => Collector::start_direct(CHANNEL_CAPACITY, window_ns, sink),
        }
        .context("cannot start the event collector")?;
        Session::start_own(scenario_text, origin, params, opts, collector)
    }

    /// Starts a runner of its own for `collector`'s run.
    fn start_own(
        scenario_text: &str,
        origin: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
        collector: Collector,
    ) -> Result<Session> {
        let spec = run_spec(scenario_text, origin, params, opts, &collector);
        let mut runner = spawn_runner(&["__runner"], Some(&collector.socket), Stdio::null())?;
        // Only the runner and its descendants may speak on the socket; it
        // connects only after it has read the spec below.
        collector.trust(runner.id());
        collector.finish_when_exits(runner.id());
        // One line: JSON has no raw newline, and the pipe stays open after.
        let mut json = serde_json::to_vec(&spec).context("cannot encode the run")?;
        json.push(b'\n');
        let mut lifeline = runner.stdin.take();
        if let Some(stdin) = lifeline.as_mut()
            && let Err(e) = stdin.write_all(&json)
        {
            // The runner is gone already; closing its stdin ends whatever it started.
            drop(lifeline);
            let _ = runner.wait();
            return Err(e).context("cannot hand the run to the runner");
        }
        Ok(Session {
            collector,
            runner: Runner::Own {
                child: runner,
                lifeline,
            },
            started: Instant::now(),
            exit_code: None,
        })
    }

    /// [`Session::start`] on a shared runner (see [`RunnerHost`]); the
    /// previous session on it must be dropped first. A server that died
    /// is started again. Its collector is pulled, as
    /// [`Reading::Pull`]'s: the caller's thread reads the run in
    /// [`Session::recv_event`], on the host's collector kit.
    pub fn start_on(
        host: &Arc<Mutex<RunnerHost>>,
        scenario_text: &str,
        origin: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
    ) -> Result<Session> {
        let capacity = if opts.gated {
            LAB_CHANNEL_CAPACITY
        } else {
            CHANNEL_CAPACITY
        };
        let collector;
        {
            let mut h = lock(host);
            if h.busy {
                anyhow::bail!("the runner is still busy with another run");
            }
            collector = start_collector_with(opts, capacity, &mut h.collectors)?;
            let spec = run_spec(scenario_text, origin, params, opts, &collector);
            let mut line = b"run ".to_vec();
            serde_json::to_writer(&mut line, &spec).context("cannot encode the run")?;
            line.push(b'\n');
            for attempt in 0..2 {
                if h.dead {
                    let collectors = std::mem::take(&mut h.collectors);
                    *h = RunnerHost::spawn()?;
                    h.collectors = collectors;
                }
                // Every run it makes descends from the server; the run
                // before this one is gone entirely (its `exit` was read).
                collector.trust(h.pid());
                // Its `exit` line wakes this run's reader.
                *h.nudge.lock().unwrap_or_else(|p| p.into_inner()) = Some(collector.waker());
                if h.say(&line) {
                    break;
                }
                if attempt == 1 {
                    anyhow::bail!("cannot hand the run to the runner: it is gone");
                }
            }
            h.busy = true;
        }
        Ok(Session {
            collector,
            runner: Runner::Shared {
                host: host.clone(),
                stopped: false,
                done: false,
                core_gone: false,
            },
            started: Instant::now(),
            exit_code: None,
        })
    }

    /// The runner's exit code once it has ended (main's exit code, or
    /// 128 + signal); then the collector is told to finish.
    pub fn poll_exit(&mut self) -> Option<i32> {
        if self.exit_code.is_none() {
            let code = match &mut self.runner {
                Runner::Own { child, .. } => match child.try_wait() {
                    Ok(Some(status)) => {
                        use std::os::unix::process::ExitStatusExt;
                        Some(
                            status
                                .code()
                                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                        )
                    }
                    _ => None,
                },
                Runner::Shared { host, done, .. } => {
                    let code = lock(host).take_exit(None);
                    *done |= code.is_some();
                    code
                }
            };
            if let Some(code) = code {
                self.exit_code = Some(code);
                self.collector.finish();
            }
        }
        self.exit_code
    }

    /// Stops the run now: closing the runner's stdin tells its watchdog to
    /// kill every process of the run (SIGKILL), reap them, and exit with
    /// 137. The last events still arrive; [`Session::poll_exit`] says when
    /// it is over.
    pub fn stop(&mut self) {
        match &mut self.runner {
            Runner::Own { lifeline, .. } => *lifeline = None,
            Runner::Shared {
                host,
                stopped,
                done,
                ..
            } => {
                if !*stopped && !*done {
                    *stopped = true;
                    lock(host).say(b"stop\n");
                }
            }
        }
    }

    /// The next event, waiting up to `timeout`. A pulled collector's run
    /// ([`Session::start_on`], [`Reading::Pull`]) is read here, on
    /// the caller's thread, meanwhile: call this in a loop. On a shared runner the
    /// run's end (its `exit`) wakes this at once too: then the collector
    /// is told to finish (see [`Session::poll_exit`]) and this returns a
    /// timeout, so the caller looks at the exit code next.
    ///
    /// Until the runner core's own `exit` event has come (or the run was
    /// stopped), the run cannot have ended, and only the events are
    /// waited for: a wait on two
    /// channels at once (`select`) costs the consumer and the collector
    /// more per event (both lock each channel's waker list, and the
    /// collector holds it while it wakes the consumer).
    pub fn recv_event(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Event, crossbeam_channel::RecvTimeoutError> {
        let exits = match &mut self.runner {
            Runner::Shared {
                host,
                done,
                core_gone,
                stopped,
            } if !*done && self.exit_code.is_none() => {
                // (A stopped core is killed: it says no `exit` itself.)
                if !*core_gone && !*stopped {
                    match self.collector.recv_timeout(timeout) {
                        Ok(e) => {
                            *core_gone = e.proc_id == crate::protocol::RUNNER_ID
                                && matches!(e.body, crate::protocol::Body::Exit { .. });
                            return Ok(e);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            return Err(crossbeam_channel::RecvTimeoutError::Timeout);
                        }
                        // The collector is gone: wait for the exit line.
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            *core_gone = true;
                        }
                    }
                }
                lock(host).exits.clone()
            }
            _ => return self.collector.recv_timeout(timeout),
        };
        match self.collector.recv_or(&exits, timeout) {
            Ok(e) => Ok(e),
            Err(None) => Err(crossbeam_channel::RecvTimeoutError::Timeout),
            Err(Some(code)) => {
                if let Runner::Shared { host, done, .. } = &mut self.runner {
                    let mut h = lock(host);
                    h.busy = false;
                    *done = true;
                    let code = code.unwrap_or_else(|_| {
                        h.dead = true;
                        crate::runner::watchdog::STOPPED_CODE
                    });
                    drop(h);
                    self.exit_code = Some(code);
                    self.collector.finish();
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            }
        }
    }

    /// Gated runs: lets one waiting process take its next step.
    pub fn go(&self, proc_id: &str) -> bool {
        self.collector.gates.go(proc_id)
    }

    /// The pid of the runner the app started (for a shared runner, the
    /// server's).
    pub fn runner_pid(&self) -> u32 {
        match &self.runner {
            Runner::Own { child, .. } => child.id(),
            Runner::Shared { host, .. } => lock(host).pid(),
        }
    }
}

/// Events the channel of a gated run on a shared runner holds (the
/// race lab's runs): every process waits for `go` after each step and the
/// lab takes in everything before it says `go` again, so only a handful
/// are ever in flight. A small channel is cheap to make (a 65 536-slot one
/// costs about a millisecond of page faults, more than a whole short run).
pub const LAB_CHANNEL_CAPACITY: usize = 1 << 12;

/// The collector's reorder window for a run: none for a gated run (one
/// process moves at a time: no need to wait for stragglers, and every step
/// should be seen at once), the app's otherwise.
fn window_ns(opts: &RunOptions) -> u64 {
    if opts.gated {
        0
    } else {
        crate::collector::REORDER_WINDOW_NS
    }
}

/// The collector of one run, its channel `capacity` events deep, on the
/// shared runner's collector thread.
fn start_collector_with(
    opts: &RunOptions,
    capacity: usize,
    collectors: &mut CollectorHost,
) -> Result<Collector> {
    let window_ns = window_ns(opts);
    collectors
        .start(capacity, window_ns)
        .context("cannot start the event collector")
}

fn run_spec(
    scenario_text: &str,
    origin: &str,
    params: BTreeMap<String, Value>,
    opts: &RunOptions,
    collector: &Collector,
) -> RunSpec {
    RunSpec {
        scenario_text: scenario_text.to_string(),
        origin: origin.to_string(),
        params,
        socket: collector.socket.clone(),
        time_scale: opts.time_scale,
        seed: opts.seed,
        max_procs: opts.limits.max_procs,
        parent_pid: std::process::id() as i32,
        gated: opts.gated,
        stdout: opts.stdout,
        python: opts.python.clone(),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
        if self.collector.is_pulled() {
            // Nobody else reads this run: take (and drop) what its
            // processes still write until it is over, as a collector
            // thread would, so that none waits on a full socket meanwhile.
            while self.exit_code.is_none() {
                let got = self.recv_event(std::time::Duration::from_millis(20));
                if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) = got {
                    break;
                }
                self.poll_exit();
            }
        }
        match &mut self.runner {
            Runner::Own { child, .. } => {
                let _ = child.wait();
            }
            Runner::Shared { host, done, .. } => {
                if !*done {
                    // Everything the run made is gone once this comes.
                    let mut h = lock(host);
                    while h
                        .take_exit(Some(std::time::Duration::from_secs(3600)))
                        .is_none()
                    {}
                }
            }
        }
    }
}
