//! `forkscope trace SCRIPT.py [ARGS...]`: the user's own Python program,
//! run by Python as it is and shown as `run` shows a scenario (same
//! formats, `--record`, `--timeout`). The exit code is the program's; 1
//! when it was stopped (timeout, Ctrl-C), 2 for bad input.

use super::run::{Prepared, execute, read_schedule};
use super::{Loaded, RunArgs, ScenarioArgs, ScheduleMode, TraceArgs};
use crate::scenario::limits;
use crate::session::RunOptions;
use crate::trace::TraceTarget;

pub fn trace(args: &TraceArgs) -> i32 {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        eprintln!("forkscope: --timeout must be a positive number of seconds");
        return 2;
    }
    let target = match TraceTarget::new(&args.script, args.python.as_deref(), args.args.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let gated = args.schedule == ScheduleMode::Seeded || args.schedule_file.is_some();
    let prefix = match &args.schedule_file {
        Some(path) => match read_schedule(path) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("forkscope: {e}");
                return 2;
            }
        },
        None => Vec::new(),
    };
    let opts = target.options(RunOptions {
        time_scale: 1.0,
        seed: args.seed.unwrap_or_else(crate::protocol::now_ns),
        limits: limits::Limits {
            max_procs: limits::Limits::default().max_procs,
            timeout_s: args.timeout,
        },
        gated,
        stdout: args.stdout,
        python: None,
    });
    let prepared = Prepared {
        loaded: Loaded {
            scenario: target.scenario.clone(),
            text: target.scenario_text.clone(),
            origin: target.origin.clone(),
            builtin: false,
        },
        params: Default::default(),
        opts,
    };
    let run_args = RunArgs {
        common: ScenarioArgs {
            scenario: target.origin.clone(),
            set: Vec::new(),
            time_scale: 1.0,
            seed: args.seed,
            timeout: args.timeout,
            max_procs: None,
            allow_exec: true,
            stdout: args.stdout,
        },
        format: args.format,
        record: args.record.clone(),
        schedule: args.schedule,
        save_schedule: args.save_schedule.clone(),
        schedule_file: args.schedule_file.clone(),
    };
    execute(&run_args, &prepared, prefix)
}
