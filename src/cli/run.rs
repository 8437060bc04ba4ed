//! `forkscope run`: run a scenario for real and print its events as they
//! come (text or JSON lines), then what the terminal showed and how it ended.

use super::{Format, InputError, RunArgs, load_target, parse_sets, text};
use crate::model::World;
use crate::protocol::Event;
use crate::scenario::{self, limits};
use crate::session::{RunOptions, Session};
use crossbeam_channel::RecvTimeoutError;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C (and SIGTERM) stop the run cleanly instead of killing us.
fn catch_interrupts() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Why a run ended early.
enum Stopped {
    Timeout,
    Interrupted,
    OutputClosed,
}

pub fn run(args: &RunArgs) -> i32 {
    match prepare(args) {
        Ok((loaded, params, opts)) => execute(args, &loaded, params, &opts),
        Err(e) => {
            eprintln!("forkscope: {e}");
            2
        }
    }
}

type Prepared = (
    super::Loaded,
    std::collections::BTreeMap<String, crate::protocol::Value>,
    RunOptions,
);

fn prepare(args: &RunArgs) -> Result<Prepared, InputError> {
    let loaded = load_target(&args.scenario)?;
    let sets = parse_sets(&args.set)?;
    let params = scenario::resolve_params(&loaded.scenario, &sets)?;
    if args.max_procs == 0 || args.max_procs > limits::MAX_MAX_PROCS {
        return Err(InputError::Other(format!(
            "--max-procs must be between 1 and {}",
            limits::MAX_MAX_PROCS
        )));
    }
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0 && args.time_scale <= 100.0) {
        return Err(InputError::Other(
            "--time-scale must be between 0 and 100".into(),
        ));
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(InputError::Other(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    let opts = RunOptions {
        time_scale: args.time_scale,
        seed: args.seed.unwrap_or_else(crate::protocol::now_ns),
        limits: limits::Limits {
            max_procs: args.max_procs,
            timeout_s: args.timeout,
        },
    };
    limits::check(&loaded.scenario, &params, &opts.limits)
        .map_err(|e| InputError::Other(format!("{}: {e}", loaded.origin)))?;
    if !loaded.builtin && !loaded.scenario.exec_programs.is_empty() && !args.allow_exec {
        return Err(InputError::Other(format!(
            "{} runs programs ({}); run it with --allow-exec if you trust it",
            loaded.origin,
            loaded.scenario.exec_programs.join("; ")
        )));
    }
    Ok((loaded, params, opts))
}

fn execute(
    args: &RunArgs,
    loaded: &super::Loaded,
    params: std::collections::BTreeMap<String, crate::protocol::Value>,
    opts: &RunOptions,
) -> i32 {
    let mut record = match &args.record {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(BufWriter::new(f)),
            Err(e) => {
                eprintln!("forkscope: cannot write {}: {e}", path.display());
                return 2;
            }
        },
        None => None,
    };
    catch_interrupts();
    let mut session = match Session::start(&loaded.text, &loaded.origin, params, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forkscope: {e:#}");
            return 1;
        }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut world = World::new();
    let mut t0: Option<u64> = None;
    let mut stopped: Option<Stopped> = None;
    let mut output_ok = true;
    let timeout = Duration::from_secs_f64(opts.limits.timeout_s);
    let events = session.collector.events.clone();
    loop {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(e) => {
                world.apply(&e);
                if let Some(f) = record.as_mut() {
                    let _ = write_jsonl(f, &e).and_then(|_| f.flush());
                }
                if output_ok {
                    let t0 = *t0.get_or_insert(e.t_ns);
                    let written = match args.format {
                        Format::Jsonl => write_jsonl(&mut out, &e),
                        Format::Text => writeln!(out, "{}", text::line(&e, t0)),
                    };
                    // Flush often enough to feel live, not on every event.
                    let written = written.and_then(|_| {
                        if events.is_empty() {
                            out.flush()
                        } else {
                            Ok(())
                        }
                    });
                    if written.is_err() {
                        output_ok = false;
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let _ = out.flush();
        if session.poll_exit().is_some() {
            continue; // drain what the collector still has
        }
        if stopped.is_none() {
            stopped = if INTERRUPTED.load(Ordering::SeqCst) {
                Some(Stopped::Interrupted)
            } else if session.started.elapsed() > timeout {
                Some(Stopped::Timeout)
            } else if !output_ok {
                Some(Stopped::OutputClosed)
            } else {
                None
            };
            if stopped.is_some() {
                session.stop();
            }
        }
    }
    let code = session.poll_exit().unwrap_or(1);
    if output_ok && args.format == Format::Text {
        let _ = summary(&mut out, &world);
    }
    let _ = out.flush();
    let problems = session.collector.stats.summary();
    if !problems.is_empty() {
        eprintln!("forkscope: the collector counted and dropped: {problems}");
    }
    match stopped {
        Some(Stopped::Timeout) => {
            eprintln!(
                "forkscope: the run took longer than {} s and was stopped (use --timeout to allow more)",
                opts.limits.timeout_s
            );
            1
        }
        Some(Stopped::Interrupted) => {
            eprintln!("forkscope: interrupted; every process of the run was stopped");
            1
        }
        Some(Stopped::OutputClosed) => 0,
        None if code == 0 => 0,
        None => {
            eprintln!("forkscope: the scenario failed: main exited with code {code}");
            1
        }
    }
}

fn write_jsonl(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    out.write_all(b"\n")
}

/// What one terminal would have shown, and the final state.
fn summary(out: &mut impl Write, world: &World) -> std::io::Result<()> {
    writeln!(out, "\n--- terminal: all output in time order ---")?;
    let merged = world.merged_output.text();
    write!(out, "{merged}")?;
    if !merged.is_empty() && !merged.ends_with('\n') {
        writeln!(out)?;
    }
    writeln!(out, "--- end of terminal ---")?;
    for (name, v) in &world.values {
        writeln!(out, "shared {name} = {}", v.current.repr())?;
    }
    for e in &world.errors {
        writeln!(out, "error in {}: {}", e.proc_id, e.message)?;
    }
    Ok(())
}
