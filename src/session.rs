//! One run of a scenario as the app (CLI or GUI) sees it: a collector
//! thread and the runner process, started from our own binary.
//!
//! The app never forks by itself: it starts `forkscope __runner` with
//! `Command` and hands it a [`RunSpec`]. The runner asks the kernel to kill
//! it when the thread that started it dies, so start sessions from a thread
//! that lives as long as the app (the main thread).

use crate::collector::Collector;
use crate::protocol::{SOCKET_ENV, Value};
use crate::runner::RunSpec;
use crate::scenario::limits::Limits;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            time_scale: 1.0,
            seed: 0,
            limits: Limits::default(),
            gated: false,
        }
    }
}

pub struct Session {
    pub collector: Collector,
    runner: Child,
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
        let json = serde_json::to_vec(&spec).context("cannot encode the run")?;
        if let Some(mut stdin) = runner.stdin.take() {
            stdin
                .write_all(&json)
                .context("cannot hand the run to the runner")?;
        }
        Ok(Session {
            collector,
            runner,
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

    /// Stops the run now: the runner is killed and everything in its PID
    /// namespace dies with it.
    pub fn stop(&mut self) {
        if self.exit_code.is_none() {
            let _ = self.runner.kill();
        }
        // Without a PID namespace the scenario's processes are still in
        // the runner's process group: take them down too.
        let group = nix::unistd::Pid::from_raw(self.runner.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
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
