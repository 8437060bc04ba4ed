//! One run of a scenario as the app (CLI or GUI) sees it: a collector
//! thread and the runner process, started from our own binary.
//!
//! The app never forks by itself: it starts `forkscope __runner` with
//! `Command` and hands it a [`RunSpec`] as one line on its stdin. The app
//! keeps that pipe open for as long as the run may go on: when it closes
//! (Stop, the session dropped, the app dies however it dies), the runner's
//! watchdog kills every process of the run (see `runner::watchdog`).

use crate::collector::Collector;
use crate::protocol::{SOCKET_ENV, Value};
use crate::runner::RunSpec;
use crate::scenario::limits::Limits;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
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
    runner: Child,
    /// The runner's stdin. Closing it stops the run; the kernel closes it
    /// when we die.
    lifeline: Option<ChildStdin>,
    pub started: Instant,
    exit_code: Option<i32>,
}

impl Session {
    /// Starts the collector and the runner. The scenario must already be
    /// checked (loader and limits): the runner loads the same text again.
    pub fn start(
        scenario_text: &str,
        origin: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
    ) -> Result<Session> {
        // A gated run has one process moving at a time: no need to wait
        // for stragglers, and every step should be seen at once.
        let window_ns = if opts.gated {
            0
        } else {
            crate::collector::REORDER_WINDOW_NS
        };
        let collector = Collector::start(CHANNEL_CAPACITY, window_ns)
            .context("cannot start the event collector")?;
        let spec = RunSpec {
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
        };
        let exe = std::env::current_exe().context("cannot find our own executable")?;
        let mut runner = Command::new(exe)
            .arg("__runner")
            .env(SOCKET_ENV, &collector.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: Ctrl-C in the terminal reaches only us,
            // and we stop the run ourselves.
            .process_group(0)
            .spawn()
            .context("cannot start the runner")?;
        // Only the runner and its descendants may speak on the socket; it
        // connects only after it has read the spec below.
        collector.trust(runner.id());
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
            runner,
            lifeline,
            started: Instant::now(),
            exit_code: None,
        })
    }

    /// The runner's exit code once it has ended (main's exit code, or
    /// 128 + signal); then the collector is told to finish.
    pub fn poll_exit(&mut self) -> Option<i32> {
        if self.exit_code.is_none()
            && let Ok(Some(status)) = self.runner.try_wait()
        {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            self.exit_code = Some(code);
            self.collector.finish();
        }
        self.exit_code
    }

    /// Stops the run now: closing the runner's stdin tells its watchdog to
    /// kill every process of the run (SIGKILL), reap them, and exit with
    /// 137. The last events still arrive; [`Session::poll_exit`] says when
    /// it is over.
    pub fn stop(&mut self) {
        self.lifeline = None;
    }

    /// Gated runs: lets one waiting process take its next step.
    pub fn go(&self, proc_id: &str) -> bool {
        self.collector.gates.go(proc_id)
    }

    pub fn runner_pid(&self) -> u32 {
        self.runner.id()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
        let _ = self.runner.wait();
    }
}
