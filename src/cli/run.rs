//! `forkscope run`: run a scenario for real and print its events as they
//! come (text or JSON lines), then what the terminal showed and how it ended.
//! With `--schedule seeded` or `--schedule-file`, every step waits for a
//! scheduler's go (see `lab`).

use super::out::{Finished, Out};
use super::{
    Format, InputError, RunArgs, ScenarioArgs, ScheduleMode, load_target, parse_sets, text,
};
use crate::lab::{self, Scheduler, Then};
use crate::model::World;
use crate::protocol::{Event, Value};
use crate::scenario::{self, limits};
use crate::session::{Reading, RunOptions, Session};
use crossbeam_channel::RecvTimeoutError;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// After the run was stopped, how long our own output may take to be
/// written before we exit anyway (stdout not read).
const STUCK_OUTPUT_GRACE: Duration = Duration::from_secs(1);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C (and SIGTERM) stop the run cleanly instead of killing us.
pub fn catch_interrupts() {
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

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Why a run ended early.
enum Stopped {
    Timeout,
    Interrupted,
    OutputClosed,
    Deadlock(String),
    Diverged(String),
}

/// A checked scenario with this run's parameters and options.
pub struct Prepared {
    pub loaded: super::Loaded,
    pub params: BTreeMap<String, Value>,
    pub opts: RunOptions,
}

impl Prepared {
    /// Starts the run on a runner of its own, its events read as
    /// `reading` says.
    pub fn start(&self, reading: Reading) -> anyhow::Result<Session> {
        Session::start(
            &self.loaded.text,
            &self.loaded.origin,
            self.params.clone(),
            &self.opts,
            reading,
        )
    }

    /// [`Prepared::start`] on a runner shared by many runs.
    pub fn start_on(
        &self,
        host: &std::sync::Arc<std::sync::Mutex<crate::session::RunnerHost>>,
    ) -> anyhow::Result<Session> {
        Session::start_on(
            host,
            &self.loaded.text,
            &self.loaded.origin,
            self.params.clone(),
            &self.opts,
        )
    }
}

/// Loads and checks everything a run needs, before anything forks.
/// A `.py` file is a Python program, run as `forkscope trace` runs it
/// (so `stats` and `run` take one too).
pub fn prepare(args: &ScenarioArgs, gated: bool) -> Result<Prepared, InputError> {
    if args.scenario.ends_with(".py") {
        return super::trace::prepare_python(args, gated);
    }
    let loaded = load_target(&args.scenario)?;
    let sets = parse_sets(&args.set)?;
    let params = scenario::resolve_params(&loaded.scenario, &sets)?;
    let max_procs = args
        .max_procs
        .unwrap_or(limits::Limits::for_scenario(&loaded.scenario).max_procs);
    if max_procs == 0 || max_procs > limits::MAX_MAX_PROCS {
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
            max_procs,
            timeout_s: args.timeout,
        },
        gated,
        stdout: args.stdout,
        python: None,
    };
    if gated && let Some(why) = loaded.scenario.gated_unsupported() {
        return Err(InputError::Other(why));
    }
    limits::check(&loaded.scenario, &params, &opts.limits)
        .map_err(|e| InputError::Other(format!("{}: {e}", loaded.origin)))?;
    if !loaded.builtin && !loaded.scenario.exec_programs.is_empty() && !args.allow_exec {
        return Err(InputError::Other(format!(
            "{} runs programs ({}); run it with --allow-exec if you trust it",
            loaded.origin,
            loaded.scenario.exec_programs.join("; ")
        )));
    }
    Ok(Prepared {
        loaded,
        params,
        opts,
    })
}

pub fn run(args: &RunArgs) -> i32 {
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
    match prepare(&args.common, gated) {
        Ok(p) => execute(args, &p, prefix),
        Err(e) => {
            eprintln!("forkscope: {e}");
            2
        }
    }
}

/// Where the events go: the screen (text or JSONL, through [`Out`], which
/// never blocks for long) and the record file.
struct Sink {
    out: Out,
    record: Option<BufWriter<std::fs::File>>,
    format: Format,
    t0: Option<u64>,
    output_ok: bool,
}

impl Sink {
    fn event(&mut self, e: &Event, more_coming: bool) {
        if let Some(f) = self.record.as_mut() {
            let _ = write_jsonl(f, e).and_then(|_| f.flush());
        }
        if !self.output_ok {
            return;
        }
        let t0 = *self.t0.get_or_insert(e.t_ns);
        let written = match self.format {
            Format::Jsonl => self.out.append(|buf| {
                crate::jsonl::write_event(buf, e);
                buf.push(b'\n');
                Ok(())
            }),
            Format::Text => writeln!(self.out, "{}", text::line(e, t0)),
        };
        // Flush often enough to feel live, not on every event.
        let written = written.and_then(|_| {
            if more_coming {
                Ok(())
            } else {
                self.out.flush()
            }
        });
        if written.is_err() {
            self.output_ok = false;
        }
    }
}

/// Runs a prepared run and prints it; the exit code (`run`'s rules; a
/// traced program's own exit code when it ends by itself, see
/// [`crate::cli::trace`]).
pub fn execute(args: &RunArgs, p: &Prepared, prefix: Vec<String>) -> i32 {
    let record = match &args.record {
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
    // A gated run is read on this thread, in `lab::drive` (one wake-up per
    // batch: the scheduler's round trip is the run's pace); a free run's
    // collector has a thread of its own (`follow` writes while it reads).
    let started = if p.opts.gated {
        p.start(Reading::Pull)
    } else {
        p.start(Reading::Thread)
    };
    let mut session = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("forkscope: {e:#}");
            return 1;
        }
    };
    let timeout = Duration::from_secs_f64(p.opts.limits.timeout_s);
    let deadline = session.started + timeout;
    let mut sink = Sink {
        // Waiting for stdout ends at the run's deadline or at Ctrl-C.
        out: Out::stdout(move || interrupted() || Instant::now() >= deadline),
        record,
        format: args.format,
        t0: None,
        output_ok: true,
    };
    let (world, stopped, schedule) = if p.opts.gated {
        let then = if args.schedule_file.is_some() {
            Then::First
        } else {
            Then::Seeded(p.opts.seed)
        };
        let mut sched = Scheduler::new(prefix, then, true);
        let d = lab::drive(&mut session, &mut sched, timeout, interrupted, |e| {
            sink.event(e, false)
        });
        let stopped = if let Some(cycle) = d.deadlock {
            Some(Stopped::Deadlock(cycle))
        } else if let Some(id) = d.diverged {
            Some(Stopped::Diverged(id))
        } else if d.timed_out {
            Some(Stopped::Timeout)
        } else if d.interrupted {
            Some(Stopped::Interrupted)
        } else {
            None
        };
        (d.world, stopped, Some(d.schedule))
    } else {
        let (world, stopped) = follow(&mut session, timeout, &mut sink);
        (world, stopped, None)
    };
    let code = session.poll_exit().unwrap_or(1);
    if sink.output_ok && args.format == Format::Text {
        let _ = summary(&mut sink.out, &world);
    }
    // The run is over and its processes are gone. Our output may still be
    // waiting for a reader: a run that ended by itself waits for it until
    // its deadline, a stopped one a moment; then we exit anyway.
    let until = if stopped.is_some() {
        Instant::now() + STUCK_OUTPUT_GRACE
    } else {
        deadline.max(Instant::now() + STUCK_OUTPUT_GRACE)
    };
    let output = sink.out.finish(until);
    if let (Some(path), Some(schedule)) = (&args.save_schedule, &schedule)
        && let Err(e) = write_schedule(path, p, schedule)
    {
        eprintln!("forkscope: cannot write {}: {e}", path.display());
    }
    let problems = session.collector.stats.summary();
    if !problems.is_empty() {
        eprintln!("forkscope: the collector counted and dropped: {problems}");
    }
    let stuck = match output {
        Finished::Stuck { unwritten_bytes } => {
            eprintln!(
                "forkscope: stdout was not read in time; {unwritten_bytes} bytes of output were not written"
            );
            true
        }
        Finished::All | Finished::ReaderGone => false,
    };
    match stopped {
        Some(Stopped::Timeout) => {
            eprintln!(
                "forkscope: the run took longer than {} s and was stopped (use --timeout to allow more)",
                p.opts.limits.timeout_s
            );
            1
        }
        Some(Stopped::Interrupted) => {
            eprintln!("forkscope: interrupted; every process of the run was stopped");
            1
        }
        Some(Stopped::Deadlock(cycle)) => {
            eprintln!("deadlock: {cycle}");
            3
        }
        Some(Stopped::Diverged(id)) => {
            eprintln!(
                "forkscope: the schedule says {id} goes next, but {id} cannot go here (different parameters?)"
            );
            1
        }
        Some(Stopped::OutputClosed) => 0,
        None if stuck => 1,
        None if code == 0 => 0,
        // A traced program: its exit code is ours, as under plain python3.
        None if p.opts.python.is_some() => code,
        None => {
            eprintln!("forkscope: the scenario failed: main exited with code {code}");
            1
        }
    }
}

/// A free run: events as they come, until the run ends or is stopped.
/// Ctrl-C, the timeout and a closed stdout are checked on every pass,
/// however fast events come.
fn follow(session: &mut Session, timeout: Duration, sink: &mut Sink) -> (World, Option<Stopped>) {
    let mut world = World::new();
    let mut stopped: Option<Stopped> = None;
    let events = session.collector.events.clone();
    // This thread waits for events and applies them: it runs as soon as a
    // batch comes, even among a crowd of waking scenario processes.
    crate::sched::event_thread();
    loop {
        // A batch at a time, as the collector handed it over (at most
        // 1,024 events): the checks below run once per batch.
        match events.recv_one_batch_timeout(Duration::from_millis(20)) {
            Ok(batch) => {
                let last = batch.len().saturating_sub(1);
                for (k, e) in batch.into_iter().enumerate() {
                    world.apply(&e);
                    sink.event(&e, k < last || !events.is_empty());
                    let waits = matches!(
                        e.body,
                        crate::protocol::Body::LockWait { .. }
                            | crate::protocol::Body::Block { .. }
                    );
                    if waits
                        && stopped.is_none()
                        && let Some(cycle) = lab::deadlock::in_world(&world)
                    {
                        let d = lab::deadlock_event(&cycle);
                        world.apply(&d);
                        sink.event(&d, false);
                        stopped = Some(Stopped::Deadlock(cycle));
                        session.stop();
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if sink.output_ok && sink.out.flush().is_err() {
                    sink.output_ok = false;
                }
            }
        }
        // Once the runner has ended, the collector is told to finish and
        // we drain what it still has.
        let ended = session.poll_exit().is_some();
        if stopped.is_none() && !ended {
            stopped = if interrupted() {
                Some(Stopped::Interrupted)
            } else if session.started.elapsed() > timeout {
                Some(Stopped::Timeout)
            } else if !sink.output_ok {
                Some(Stopped::OutputClosed)
            } else {
                None
            };
            if stopped.is_some() {
                session.stop();
            }
        }
    }
    (world, stopped)
}

/// One event as a JSON line (the record file; the screen's lines are
/// written straight into [`Out`]'s buffer).
fn write_jsonl(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(256);
    crate::jsonl::write_event(&mut line, e);
    line.push(b'\n');
    out.write_all(&line)
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
    for p in world.processes.values() {
        if !p.is_alive() && !p.stdout_buffer.is_empty() {
            writeln!(
                out,
                "lost: {} ({}) never wrote {} bytes of its stdout buffer: {}",
                p.id,
                p.exit.as_ref().map_or("ended".into(), |e| e.to_string()),
                p.stdout_buffer.bytes,
                p.stdout_buffer.shown(200)
            )?;
        }
    }
    for (name, v) in &world.values {
        writeln!(out, "shared {name} = {}", v.current.repr())?;
        for lu in &v.lost_updates {
            let n = lu.updates();
            let what = if n > 0 {
                format!("lost update of {name}: ")
            } else {
                format!("{name}, over a stale write: ")
            };
            let s = if n.abs() == 1 { "" } else { "s" };
            writeln!(
                out,
                "{what}{} read {}, wrote {} over {} ({} {} update{s})",
                lu.proc_id,
                lu.read.repr(),
                lu.written.repr(),
                lu.replaced.repr(),
                if n > 0 { "erased" } else { "put back" },
                n.abs(),
            )?;
        }
        if !v.lost_updates.is_empty() {
            writeln!(
                out,
                "updates of {name} lost: {} ({} writes erased updates, {} put some back)",
                v.updates_lost(),
                v.lost_updates.iter().filter(|lu| lu.erased()).count(),
                v.lost_updates.iter().filter(|lu| !lu.erased()).count()
            )?;
        }
    }
    for e in &world.errors {
        writeln!(out, "error in {}: {}", e.proc_id, e.message)?;
    }
    Ok(())
}

/// Writes a schedule file (see [`crate::lab::schedule`]).
pub fn write_schedule(path: &Path, p: &Prepared, schedule: &[String]) -> std::io::Result<()> {
    crate::lab::schedule::write(
        path,
        &p.loaded.scenario.name,
        p.loaded.origin_arg(),
        &p.params,
        schedule,
    )
}

/// The logical ids of a schedule file, in order.
pub fn read_schedule(path: &Path) -> Result<Vec<String>, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::Other(format!("cannot read {}: {e}", path.display())))?;
    Ok(crate::lab::schedule::ScheduleFile::parse(&text).ids)
}
