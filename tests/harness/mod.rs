//! A libtest-like harness for the app's test binaries (`harness = false`:
//! tests/gui.rs, tests/quiz_gui.rs, tests/toolbar.rs). Their binary doubles
//! as the runner that sessions start (`current_exe() __runner`) and as a
//! traced program's `__trace-exec` step, so `main` dispatches those first;
//! then it runs the tests one after another (each run forks real
//! processes), with libtest's filters, `--list` and closing line.

use egui_kittest::Harness;
use forkscope::app::App;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a test waits for the app to reach what it expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// Steps frames (never `run()`: a live run keeps repainting) until `done`
/// holds; false after `PATIENCE`.
pub fn wait_for(
    h: &mut Harness<'static, App>,
    done: impl Fn(&Harness<'static, App>) -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        h.step();
        if done(h) {
            return true;
        }
        if start.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// The test binary's `main`: the runner, the exec step, or `tests`.
pub fn main(tests: &[(&str, fn())]) -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        let code = forkscope::runner::runner_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // A traced Python program's child, before it execs (as the binary).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__trace-exec")
    {
        let code = forkscope::trace::shim::trace_exec_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let opts = match HarnessOptions::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(101);
        }
    };
    let names: Vec<&str> = tests.iter().map(|(name, _)| *name).collect();
    let chosen = opts.select(&names);
    let filtered_out = tests.len() - chosen.len();
    if opts.list {
        // libtest's `--list`: one `name: test` line each, then a count.
        for name in &chosen {
            println!("{name}: test");
        }
        if !chosen.is_empty() {
            println!();
        }
        println!("{}, 0 benchmarks", plural(chosen.len(), "test"));
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {}", plural(chosen.len(), "test"));
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, test) in tests.iter().filter(|(name, _)| chosen.contains(name)) {
        println!("test {name} ...");
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    // The same closing line as libtest's, counting only what ran, so tools
    // that read it count these.
    let passed = chosen.len() - failed.len();
    let outcome = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {outcome}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `1 test`, `2 tests`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The command line libtest understands, as far as it matters here: name
/// filters (substrings, or whole names with `--exact`), `--skip`, `--list`,
/// `--ignored` (none of these tests is ignored, so it runs none). Other
/// libtest flags (`--nocapture`, `--test-threads N`, `--color X`, …) are
/// accepted and change nothing: these tests run one after another anyway.
#[derive(Debug, Default, PartialEq)]
pub struct HarnessOptions {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
    ignored_only: bool,
}

impl HarnessOptions {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<HarnessOptions, String> {
        /// Flags that take a value (`--flag VALUE` or `--flag=VALUE`).
        const WITH_VALUE: [&str; 7] = [
            "--test-threads",
            "--color",
            "--format",
            "--logfile",
            "--skip",
            "--shuffle-seed",
            "-Z",
        ];
        let mut opts = HarnessOptions::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                opts.filters.push(arg);
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let value = if WITH_VALUE.contains(&flag.as_str()) {
                match inline.or_else(|| args.next()) {
                    Some(v) => Some(v),
                    None => return Err(format!("{flag} needs a value")),
                }
            } else {
                None
            };
            match flag.as_str() {
                "--exact" => opts.exact = true,
                "--list" => opts.list = true,
                "--ignored" => opts.ignored_only = true,
                "--skip" => opts.skip.extend(value),
                // Accepted, nothing to change: all of these tests run, in
                // order, one at a time, with their output shown.
                "--include-ignored"
                | "--nocapture"
                | "--no-capture"
                | "--show-output"
                | "--quiet"
                | "-q"
                | "--test"
                | "--force-run-in-process"
                | "--shuffle"
                | "--report-time"
                | "--ensure-time"
                | "--exclude-should-panic"
                | "--no-fail-fast" => {}
                _ if value.is_some() => {}
                // `--bench` runs benchmarks, and there are none here.
                "--bench" => opts.ignored_only = true,
                other => return Err(format!("unrecognized option: '{other}'")),
            }
        }
        Ok(opts)
    }

    /// The tests to run (or list), in their order.
    pub fn select<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        if self.ignored_only {
            return Vec::new();
        }
        let matches = |name: &str, f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        names
            .iter()
            .copied()
            .filter(|name| self.filters.is_empty() || self.filters.iter().any(|f| matches(name, f)))
            .filter(|name| !self.skip.iter().any(|f| matches(name, f)))
            .collect()
    }
}
