//! The command line: `list`, `run`, `stats`, `explore`, `check`, `export`,
//! `quiz` (the parser that picks among them and the app is in `main.rs`).
//! Each command
//! returns an exit code: 0 ok, 1 the scenario failed or timed out, 2 bad
//! input, 3 deadlock.

pub mod export;
pub mod lab;
pub mod out;
pub mod progress;
pub mod quiz;
pub mod run;
pub mod text;
pub mod trace;

use crate::scenario::{self, Scenario, ScenarioError, catalog};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the built-in scenarios.
    List,
    /// Run a scenario for real and print what every process does.
    Run(RunArgs),
    /// Run a scenario many times and show the histogram of outcomes.
    Stats(StatsArgs),
    /// Try every interleaving of a small scenario's steps; list the outcomes.
    Explore(ExploreArgs),
    /// Check a scenario file without running it.
    Check {
        /// A scenario file (or a built-in name).
        file: String,
    },
    /// Convert a recording (`run --record FILE`) for another viewer.
    Export(ExportArgs),
    /// Predict, then run: answer the scenario's questions, see the real answers.
    Quiz(QuizArgs),
    /// Run your own Python program and print what every process and
    /// thread of it does (the exit code is the program's).
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The Python interpreter [default: python3 on PATH]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write every event as JSON lines to FILE, as it happens.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Stop the program after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = scenario::limits::DEFAULT_TIMEOUT_S)]
    pub timeout: f64,
    /// Buffer stdout by line, as on a terminal, or in 8 KiB blocks, as
    /// when stdout is a pipe [default: line]
    #[arg(long, value_name = "line|block")]
    pub stdout: Option<scenario::StdoutMode>,
    #[arg(long, value_enum, default_value_t = ScheduleMode::Free)]
    pub schedule: ScheduleMode,
    /// Seed for the seeded scheduler: same seed, same choices.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Write the schedule taken (one logical id per step) to FILE.
    #[arg(long, value_name = "FILE")]
    pub save_schedule: Option<PathBuf>,
    /// Replay a saved schedule exactly.
    #[arg(long, value_name = "FILE", conflicts_with = "schedule")]
    pub schedule_file: Option<PathBuf>,
    /// The Python program.
    pub script: PathBuf,
    /// Its arguments (`sys.argv[1:]`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct QuizArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A recording: JSON lines as `forkscope run --record FILE` writes.
    pub file: PathBuf,
    /// Write a Chrome trace (JSON) that ui.perfetto.dev opens.
    #[arg(long, value_name = "OUT.json")]
    pub perfetto: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable log in time order, then what the terminal showed.
    Text,
    /// One JSON event per line.
    Jsonl,
}

/// What every command that runs a scenario takes.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// A built-in scenario (see `forkscope list`) or a scenario file.
    pub scenario: String,
    /// Set a parameter, e.g. --set workers=4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Multiply every sleep by this (0.1 = ten times faster).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub time_scale: f64,
    /// Seed for random() and the seeded scheduler: same seed, same choices.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Stop a run after this many seconds (also when nobody reads our
    /// output: forkscope then exits 1 a second later at most).
    #[arg(long, value_name = "SECS", default_value_t = scenario::limits::DEFAULT_TIMEOUT_S)]
    pub timeout: f64,
    /// Most processes a run may create [default: 64, or what the scenario
    /// asks for]
    #[arg(long, value_name = "N")]
    pub max_procs: Option<u32>,
    /// Let a scenario file run the programs its `exec` steps name.
    #[arg(long)]
    pub allow_exec: bool,
    /// Buffer each process's stdout by line (as on a terminal) or in 8 KiB
    /// blocks (as when stdout is a pipe) [default: the scenario's `stdout`]
    #[arg(long, value_name = "line|block")]
    pub stdout: Option<scenario::StdoutMode>,
}

/// Who decides the order of the processes' steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleMode {
    /// The operating system, as usual.
    Free,
    /// Every step waits; a seeded random choice picks who goes next.
    Seeded,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write every event as JSON lines to FILE, as it happens.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ScheduleMode::Free)]
    pub schedule: ScheduleMode,
    /// Write the schedule taken (one logical id per step) to FILE.
    #[arg(long, value_name = "FILE")]
    pub save_schedule: Option<PathBuf>,
    /// Replay a saved schedule exactly.
    #[arg(long, value_name = "FILE", conflicts_with = "schedule")]
    pub schedule_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
    /// How many runs.
    #[arg(long, default_value_t = 100)]
    pub runs: u32,
    /// Seeded: run i uses seed S+i (same seed, same histogram). Free: the
    /// operating system schedules, as in a normal run.
    #[arg(long, value_enum, default_value_t = ScheduleMode::Seeded)]
    pub schedule: ScheduleMode,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub common: ScenarioArgs,
    /// Stop after this many schedules.
    #[arg(long, default_value_t = 5000)]
    pub max_schedules: u64,
    /// How many schedules to run at a time, each on a runner of its own
    /// (default: twice the number of CPUs, at most 8). What explore finds
    /// and reports does not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// Where to write one schedule file per outcome (default: a new
    /// private folder in the temp directory). An existing DIR must be a
    /// directory of yours, not a symlink.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// A scenario and where it came from.
pub struct Loaded {
    pub scenario: Scenario,
    pub text: String,
    pub origin: String,
    pub builtin: bool,
}

impl Loaded {
    /// How to name this scenario on the command line.
    pub fn origin_arg(&self) -> &str {
        if self.builtin {
            &self.scenario.name
        } else {
            &self.origin
        }
    }
}

/// Bad input: exit code 2 with one clear sentence.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Other(String),
}

/// Finds a built-in by name, or reads a file.
pub fn load_target(target: &str) -> Result<Loaded, InputError> {
    if let Some(b) = catalog::find(target) {
        return Ok(Loaded {
            scenario: b.load()?,
            text: b.text.to_string(),
            origin: format!("assets/scenarios/{}.toml", b.name),
            builtin: true,
        });
    }
    let path = std::path::Path::new(target);
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && !target.contains(['/', '.']) {
            InputError::Other(format!(
                "there is no built-in scenario named {target:?} (see `forkscope list`)"
            ))
        } else {
            InputError::Other(format!("cannot read {target}: {e}"))
        }
    })?;
    let scenario = scenario::load(&text, target)?;
    Ok(Loaded {
        scenario,
        text,
        origin: target.to_string(),
        builtin: false,
    })
}

/// `KEY=VALUE` pairs from `--set`.
pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, InputError> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(InputError::Other(format!(
                "--set needs KEY=VALUE, got {s:?}"
            ))),
        })
        .collect()
}

pub fn list() -> i32 {
    use std::io::Write;
    let width = catalog::BUILTINS
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for b in catalog::BUILTINS {
        let title = b
            .load()
            .map(|s| s.title)
            .unwrap_or_else(|e| format!("(broken: {e})"));
        if writeln!(out, "{:width$}  {title}", b.name).is_err() {
            break; // `| head` closed the pipe: not an error
        }
    }
    0
}

pub fn check(target: &str) -> i32 {
    let loaded = match load_target(target) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let s = &loaded.scenario;
    let params = match scenario::resolve_params(s, &[]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let procs =
        match scenario::limits::check(s, &params, &scenario::limits::Limits::for_scenario(s)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("forkscope: {}: {e}", loaded.origin);
                return 2;
            }
        };
    let steps = s.all_steps().len();
    println!(
        "ok: {} ({}): {} roles, {steps} steps, at most {procs} processes with the default parameters",
        s.name,
        s.title,
        s.roles.len()
    );
    for p in &s.exec_programs {
        println!("runs the program: {p}");
    }
    0
}
