//! `forkscope`: parse the command line, pick the app, a CLI command or the
//! hidden runner, and turn the outcome into an exit code.

use clap::Parser;
use forkscope::app::{self, GuiArgs};
use forkscope::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The runner is started by the app itself, before anything else runs:
    // it must stay single-threaded.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        forkscope::limits::restore_in_runner();
        return code(forkscope::runner::runner_main());
    }
    // A traced Python program's child, before it execs its program.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__trace-exec")
    {
        return code(forkscope::trace::shim::trace_exec_main());
    }
    forkscope::limits::raise();
    let cli = Args::parse();
    let status = match &cli.command {
        Some(Command::List) => cli::list(),
        Some(Command::Run(args)) => cli::run::run(args),
        Some(Command::Stats(args)) => cli::lab::stats(args),
        Some(Command::Explore(args)) => cli::lab::explore(args),
        Some(Command::Check { file }) => cli::check(file),
        Some(Command::Export(args)) => cli::export::export(args),
        Some(Command::Quiz(args)) => cli::quiz::quiz(args),
        Some(Command::Trace(args)) => cli::trace::trace(args),
        None => app::run_gui(&cli.gui),
    };
    code(status)
}

/// The command line: a command, or none to open the app window (with the
/// window's own options).
#[derive(Debug, Parser)]
#[command(
    name = "forkscope",
    version,
    about = "Watch real Linux processes fork, share, lock and message each other.",
    long_about = "Runs small multiprocessing scenarios as real Linux processes and shows what \
                  they do. Without a command it opens the app.",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    gui: GuiArgs,
}

fn code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
