//! The forking side. The app starts its own binary as the hidden
//! `__runner` subcommand and writes a [`RunSpec`] to its stdin. The runner:
//!
//! 1. reads the spec (one line), checks the app is still there, becomes a
//!    child subreaper, and enters a fresh PID namespace when it can;
//! 2. forks the *runner core* (logical id `runner`, the namespace's init
//!    when there is one) in a process group of its own: a child subreaper
//!    that sets up the shared resources, forks `main`, and reaps every
//!    process that ends up orphaned;
//! 3. stays as the run's watchdog ([`watchdog`]): when the core ends, or
//!    the app's end of stdin closes (stop, or the app died, even by
//!    `kill -9`), it kills every process the run made and exits with
//!    main's exit code (137 when stopped).
//!
//! Cleanup does not depend on the PID namespace, so it works for any user.
//! All of it is single-threaded, so forking is safe.

pub mod interp;
pub mod manager;
pub mod os;
pub mod pipes;
pub mod serve;
pub mod shm;
pub mod start;
pub mod stdout;
pub mod watchdog;

use crate::probe::{Capture, Probe};
use crate::protocol::{Body, RUNNER_ID, ResourceKind, Value};
use crate::scenario::{self, Scenario};
use interp::{Proc, status_parts};
use nix::sys::wait::{WaitStatus, waitpid};
use serde::{Deserialize, Serialize};
use shm::Shm;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Longest the runner core waits at its end for the collector to read
/// what it sent (a guard against a collector that is gone or stuck; a
/// working one reads within milliseconds, even on a loaded machine
/// within a fraction of a second).
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// A failure inside the runner or a scenario process, as one sentence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// Everything the runner needs, sent by the app as JSON on its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    pub scenario_text: String,
    pub origin: String,
    pub params: BTreeMap<String, Value>,
    pub socket: PathBuf,
    /// Every sleep is multiplied by this.
    pub time_scale: f64,
    pub seed: u64,
    pub max_procs: u32,
    /// The app's pid: if our parent is no longer it, the app died already.
    pub parent_pid: i32,
    /// Every step waits for the app's `go` (step mode, schedules).
    #[serde(default)]
    pub gated: bool,
    /// `--stdout line|block`: overrides the scenario's `stdout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<scenario::StdoutMode>,
    /// A Python program to run as `main` (`forkscope trace`), in place of
    /// the scenario's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<crate::trace::PythonProgram>,
}

pub use pipes::End;

/// What every scenario process inherits from the runner core.
pub struct Run {
    pub spec: RunSpec,
    pub scenario: Scenario,
    pub params: BTreeMap<String, Value>,
    pub shm: Shm,
    ends: BTreeMap<String, End>,
    /// Read and write end of each queue's packet pipe.
    queues: BTreeMap<String, (OwnedFd, OwnedFd)>,
}

impl Run {
    pub fn end(&self, name: &str) -> Result<&End, RunError> {
        self.ends
            .get(name)
            .ok_or_else(|| RunError(format!("no pipe end named {name}")))
    }

    /// Closes this process's copy of every pipe end.
    pub fn close_pipe_ends(&self) {
        for e in self.ends.values() {
            e.close();
        }
    }

    pub fn queue(&self, name: &str) -> Result<&(OwnedFd, OwnedFd), RunError> {
        self.queues
            .get(name)
            .ok_or_else(|| RunError(format!("no queue named {name}")))
    }
}

/// Entry point of `forkscope __runner`. Returns the process exit code.
///
/// This process (the *outer runner*) is also the run's **watchdog**: its
/// stdin is a pipe from the app that the app never closes while the run
/// should go on. End of file there (the app stopped the run, dropped the
/// session, or died, even by `kill -9`: the kernel closes its end) means:
/// kill everything the run started, then exit. It does not die with the app
/// itself, or nobody would be left to clean up.
pub fn runner_main() -> i32 {
    // A fresh image of ours, started by a `spawn` (or a forkserver): not
    // a run of its own.
    let args: Vec<String> = std::env::args().collect();
    if args.get(2).map(String::as_str) != Some("--spawned") {
        // Before any fork: every process of the run (or of the server's
        // runs) then shares these pages instead of copying their page
        // tables at each fork. Not in a `spawn`ed image: it would pay the
        // copy for each process it is.
        os::share_relro();
    }
    match args.get(2).map(String::as_str) {
        Some("--spawned") => start::spawned_main(args.get(3).map_or("", String::as_str)),
        // One runner for many runs (`stats`, `explore`, Many runs).
        Some("--serve") => return serve::serve_main(),
        _ => {}
    }
    let Some(text) = read_spec_line() else {
        return 70; // the app died (or stopped) before the whole spec arrived
    };
    let spec: RunSpec = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forkscope runner: bad run spec: {e}");
            return 70;
        }
    };
    if nix::unistd::getppid().as_raw() != spec.parent_pid {
        return 70; // the app died before we could watch it
    }
    run_watched(spec)
}

/// One run, from here on in the process whose stdin is the run's lifeline
/// (the outer runner the app started, or a served run's own watchdog):
/// writes a Python program's probe, becomes a subreaper, enters a fresh PID
/// namespace when it can, forks the core and watches it. The run's exit
/// code (137 when stopped).
pub(crate) fn run_watched(spec: RunSpec) -> i32 {
    run_watched_with(spec, false, watchdog::watch)
}

/// [`run_watched`] with the watching done by `watch` (given the core's
/// pid; it kills and reaps everything of the run before it returns the
/// run's exit code). `served`: this is the server of many runs
/// (`runner::serve`), the core's parent and watchdog itself: the core
/// also points its stdout (the app's pipe) at `/dev/null` and sets the
/// collector's socket in its environment, and the server leaves the run's
/// PID namespace behind after the fork (so that the next run gets a fresh
/// one).
pub(crate) fn run_watched_with(
    mut spec: RunSpec,
    served: bool,
    watch: impl FnOnce(nix::unistd::Pid) -> i32,
) -> i32 {
    // A Python program's probe: written for this run into a private
    // directory, which we (the watchdog) remove once every process of the
    // run is gone, however the run ends.
    let probe_dir = match spec.python.as_mut() {
        Some(prog) => match crate::trace::write_probe() {
            Ok(dir) => {
                prog.probe_dir = Some(dir.clone());
                Some(dir)
            }
            Err(e) => {
                eprintln!("forkscope runner: cannot write the Python probe: {e}");
                return 70;
            }
        },
        None => None,
    };
    let code = fork_core(spec, served, watch);
    if let Some(dir) = probe_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

/// Forks the runner core and watches it with `watch` (see
/// [`run_watched_with`]).
fn fork_core(spec: RunSpec, served: bool, watch: impl FnOnce(nix::unistd::Pid) -> i32) -> i32 {
    // If the core dies first, the scenario processes it adopted come back
    // to us, the next subreaper up: they stay ours to kill and reap.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // A PID namespace makes cleanup total even if we are killed: when its
    // init (the core) dies, the kernel kills everything inside. Without
    // one (not root) the watchdog below does the same.
    // Not for a Python program: it must see the pids it would see without
    // forkscope (`os.getpid()` is printed by many programs).
    // (Our own namespace, to come back to after the fork: only the
    // children made after an `unshare` enter the new one, and a second
    // `unshare` is refused until we are back.)
    let own_ns = if spec.python.is_none() {
        let own = std::fs::File::open("/proc/self/ns/pid").ok();
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
            .ok()
            .and(own)
    } else {
        None
    };
    let (life_r, life_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(_) => return 70,
    };
    match os::fork_process() {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(life_w);
            // Our parent's namespace is the one `/proc` shows: with it,
            // a parent learns its child's pid as `ps` shows it in one
            // `ioctl` (every scenario process inherits it from here).
            if let Some(own) = own_ns {
                os::keep_outer_pid_ns(own.into());
            }
            // The run's own process group, led by the core: the watchdog
            // kills it in one call, and is not in it itself.
            let _ =
                nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // If the runner died before the line above, the pipe says so.
            if os::readable(std::os::fd::AsFd::as_fd(&life_r), 0) {
                os::exit_now(70);
            }
            drop(life_r);
            // The app's lifeline is for the watchdog only: a program the
            // scenario runs must not read it (or wait on it forever).
            os::stdin_from_dev_null();
            if served {
                // The server's stdout is the app's pipe of `exit` lines.
                os::stdout_to_dev_null();
                // Programs the scenario runs find the run's collector
                // here, as in a lone runner's environment.
                // SAFETY: this process is single-threaded (just forked
                // from a single-threaded one), so nobody reads the
                // environment meanwhile.
                unsafe { std::env::set_var(crate::protocol::SOCKET_ENV, &spec.socket) };
            }
            let code = core(spec);
            os::exit_now(code)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(life_r);
            if let Some(own) = &own_ns {
                // Back in our own namespace: a server's next run can have
                // a fresh one. If this fails, the next `unshare` does and
                // that run goes without (as when not root).
                let _ = nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID);
            }
            // Also here, so that the group exists before we could kill it.
            let _ = nix::unistd::setpgid(child, child);
            let code = watch(child);
            drop(life_w);
            code
        }
        Err(e) => {
            eprintln!("forkscope runner: {e}");
            70
        }
    }
}

/// The run spec: one line of JSON on stdin. `None` if stdin ends first.
fn read_spec_line() -> Option<String> {
    use std::io::BufRead;
    let mut line = Vec::new();
    match std::io::stdin().lock().read_until(b'\n', &mut line) {
        Ok(_) if line.last() == Some(&b'\n') => String::from_utf8(line).ok(),
        _ => None,
    }
}

/// The runner core: set up, fork main, reap everything. Main's exit code.
fn core(spec: RunSpec) -> i32 {
    // Orphans come back to us (also when there is no PID namespace).
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let probe = Probe::connect(
        &spec.socket,
        RUNNER_ID,
        "runner",
        None,
        false,
        Capture::None,
    );
    let run = match setup(spec) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("forkscope runner: {e}");
            return 70;
        }
    };
    let run = Box::leak(Box::new(run));
    let mut runner = Proc::new(run, probe, "runner");
    declare_resources(&mut runner.probe, &run.scenario);
    // Main inherits our stack: what setup dirtied below us is not copied.
    os::trim_stack();
    let main_pid = match runner.start_main() {
        Ok(pid) => pid,
        Err(e) => {
            runner.probe.emit(Body::Error { message: e.0 });
            runner.probe.linger(LINGER);
            return 70;
        }
    };
    // Main and its children hold the pipe ends now; the core lets go of
    // its copies, so that a reader sees end of file once the processes
    // that send have closed theirs (as when Python's main makes a Pipe).
    run.close_pipe_ends();
    let mut main_code = 0;
    loop {
        match waitpid(None::<nix::unistd::Pid>, None) {
            Ok(s @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) => {
                let (code, signal) = status_parts(s);
                if pid == main_pid {
                    main_code = match (code, &signal) {
                        (Some(c), _) => c,
                        // A traced program killed by a signal: what a shell
                        // reports for it (128 + the signal's number).
                        (None, Some(sig)) if run.spec.python.is_some() => {
                            128 + sig
                                .parse::<nix::sys::signal::Signal>()
                                .map_or(0, |s| s as i32)
                        }
                        _ => 1,
                    };
                }
                // A traced Python program's processes are not in the table;
                // they run without a PID namespace, so the pid is the host's
                // and the collector names the process from it.
                let unknown_pid = if run.spec.python.is_some() {
                    pid.as_raw()
                } else {
                    0
                };
                let (id, host_pid) = run
                    .shm
                    .lookup(pid.as_raw())
                    .unwrap_or_else(|| (String::new(), unknown_pid));
                let (by, by_pid) = (RUNNER_ID.to_string(), runner.probe.pid);
                runner.probe.emit_about(
                    &id,
                    host_pid,
                    Body::Reaped {
                        by,
                        by_pid,
                        code,
                        signal,
                    },
                );
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: everyone is gone
        }
    }
    // What shared memory really holds at the end. The model orders writes
    // by their stamps, which two writes landing within microseconds of each
    // other can have in the other order; this read is the truth.
    for name in run.scenario.values.keys().chain(run.scenario.arrays.keys()) {
        if let Some(value) = run.shm.load(name) {
            runner.probe.emit(Body::Read {
                name: name.clone(),
                value,
                private: false,
            });
        }
    }
    // Nobody reports our end for us (our parent does not speak the protocol).
    runner.probe.emit(Body::Exit {
        code: Some(main_code),
        signal: None,
    });
    // Not gone before the collector has taken in what we said: our claim
    // to `runner` is judged while we live (see `Probe::linger`).
    runner.probe.linger(LINGER);
    main_code
}

/// A server's last scenario, checked once (`scenario_text`, `origin`, the
/// result): a served run's core, forked from the server, finds it here
/// and does not parse the same text again on every run.
type Parsed = (String, String, Scenario);
static PARSED: std::sync::Mutex<Option<Parsed>> = std::sync::Mutex::new(None);

/// A server, before it forks a run's core: checks the run's scenario if
/// it is not the one checked last (a scenario with an error is not kept:
/// the core finds the error as a lone runner does).
pub(crate) fn parse_ahead(spec: &RunSpec) {
    let mut last = PARSED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((text, origin, _)) = last.as_ref()
        && *text == spec.scenario_text
        && *origin == spec.origin
    {
        return;
    }
    *last = scenario::load(&spec.scenario_text, &spec.origin)
        .ok()
        .map(|s| (spec.scenario_text.clone(), spec.origin.clone(), s));
}

/// The scenario checked ahead for this run's text, if any.
fn parsed(spec: &RunSpec) -> Option<Scenario> {
    let last = PARSED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match last.as_ref() {
        Some((text, origin, s)) if *text == spec.scenario_text && *origin == spec.origin => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// Creates the shared memory, locks, pipes and queues, in the core, before
/// main is forked, so every process inherits them.
fn setup(spec: RunSpec) -> Result<Run, RunError> {
    let mut scenario = match parsed(&spec) {
        Some(s) => s,
        None => scenario::load(&spec.scenario_text, &spec.origin)
            .map_err(|e| RunError(e.to_string()))?,
    };
    if let Some(mode) = spec.stdout {
        scenario.stdout = mode;
    }
    let shm = Shm::create(&scenario, spec.max_procs)?;
    let mut ends = BTreeMap::new();
    for (name, p) in &scenario.pipes {
        ends.extend(pipes::create(name, p)?);
    }
    if spec.gated
        && let Some(why) = scenario.gated_unsupported()
    {
        return Err(RunError(why));
    }
    let mut queues = BTreeMap::new();
    for q in scenario.queues.keys() {
        // A manager's queue lives in the manager's memory, not in a pipe.
        if !scenario.manager_queues.contains_key(q) {
            queues.insert(q.clone(), os::packet_pipe()?);
        }
    }
    Ok(Run {
        params: spec.params.clone(),
        spec,
        scenario,
        shm,
        ends,
        queues,
    })
}

/// The run as a `spawn`ed child rebuilds it after `exec`: the scenario from
/// its text, the kernel objects from the fds its parent handed over.
fn rebuild(
    spec: RunSpec,
    shm_fd: OwnedFd,
    end_fds: BTreeMap<String, OwnedFd>,
    queues: BTreeMap<String, (OwnedFd, OwnedFd)>,
) -> Result<Run, RunError> {
    let scenario =
        scenario::load(&spec.scenario_text, &spec.origin).map_err(|e| RunError(e.to_string()))?;
    let shm = Shm::attach(&scenario, spec.max_procs, shm_fd)?;
    let mut ends = BTreeMap::new();
    let mut end_fds = end_fds;
    for (name, p) in &scenario.pipes {
        let [ea, eb] = &p.ends;
        for (e, first) in [(ea, true), (eb, false)] {
            ends.insert(
                e.clone(),
                End::handed_over(
                    end_fds.remove(e),
                    name.clone(),
                    p.duplex || !first,
                    p.duplex || first,
                    p.duplex,
                ),
            );
        }
    }
    Ok(Run {
        params: spec.params.clone(),
        spec,
        scenario,
        shm,
        ends,
        queues,
    })
}

fn declare_resources(probe: &mut Probe, s: &Scenario) {
    let mut declare = |res, name: &str, value: Option<Value>, size, ends: Vec<String>, duplex| {
        probe.emit(Body::Resource {
            res,
            name: name.to_string(),
            value,
            size,
            ends,
            duplex,
        })
    };
    for (k, v) in &s.globals {
        declare(
            ResourceKind::Global,
            k,
            Some(v.clone()),
            None,
            vec![],
            false,
        );
    }
    for (k, v) in &s.values {
        declare(ResourceKind::Value, k, Some(v.clone()), None, vec![], false);
    }
    for (k, a) in &s.arrays {
        declare(
            ResourceKind::Array,
            k,
            Some(a.init.clone()),
            None,
            vec![],
            false,
        );
    }
    for l in &s.locks {
        declare(ResourceKind::Lock, l, None, None, vec![], false);
    }
    for (k, p) in &s.pipes {
        declare(ResourceKind::Pipe, k, None, None, p.ends.to_vec(), p.duplex);
    }
    for (k, q) in &s.queues {
        declare(ResourceKind::Queue, k, None, Some(*q), vec![], false);
    }
    // A manager's connections: requests and replies travel on it.
    for m in s.managers.keys() {
        declare(
            ResourceKind::Pipe,
            m,
            None,
            None,
            manager::ends(m).to_vec(),
            true,
        );
    }
}
