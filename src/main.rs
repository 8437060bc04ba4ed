//! `forkscope`: parse the command line, pick the app, a CLI command or the
//! hidden runner, and turn the outcome into an exit code.

use clap::Parser;
use forkscope::cli::{self, Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The runner is started by the app itself, before anything else runs:
    // it must stay single-threaded.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        return code(forkscope::runner::runner_main());
    }
    let cli = Cli::parse();
    let status = match &cli.command {
        Some(Command::List) => cli::list(),
        Some(Command::Run(args)) => cli::run::run(args),
        Some(Command::Stats(args)) => cli::lab::stats(args),
        Some(Command::Explore(args)) => cli::lab::explore(args),
        Some(Command::Check { file }) => cli::check(file),
        None => {
            eprintln!(
                "forkscope: the app window is not built yet; try `forkscope list` and `forkscope run locked-counter`"
            );
            2
        }
    };
    code(status)
}

fn code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}
