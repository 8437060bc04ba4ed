//! Frame time of the app under a real load, and scrubbing a large log.
//!
//!     cargo bench --bench gui_frame                      # 200 workers, ~10 000 events/s
//!     cargo bench --bench gui_frame -- period_ms=20      # ~30 000 events/s
//!     cargo bench --bench gui_frame -- workers=50 writes=100
//!
//! Arguments `KEY=VALUE` are parameters of `benches/stress.toml` (workers,
//! writes, period_ms). The run is real: a `Session` starts this binary as
//! the runner (`__runner`, below), 200 processes are forked, and the app's
//! own `App::frame` drains and draws them, one frame every 16 ms as the
//! window would (`FRAME_INTERVAL`). Each frame is timed from `run_ui`
//! (drain + UI build) through `tessellate`, which is the CPU work of a frame
//! before the GPU (here: nothing) paints it.
//!
//! When the run has ended, the same app scrubs its log (about 100 000 events
//! with the defaults): a jump back to the middle, then a drag backwards and
//! forwards, one seek per frame.

use egui::{Pos2, RawInput, Rect, vec2};
use forkscope::app::sampler::Sampler;
use forkscope::app::{App, Command, GuiArgs, RunState};
use forkscope::cli::load_target;
use forkscope::protocol::Value;
use forkscope::scenario::{self, limits::Limits};
use forkscope::session::{RunOptions, Session};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/stress.toml");
/// What the window does while a run moves (`app::FRAME_INTERVAL`).
const FRAME_INTERVAL: Duration = Duration::from_millis(16);
/// The target for one frame.
const TARGET: Duration = Duration::from_millis(8);

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__runner") {
        let code = forkscope::runner::runner_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // `cargo bench` adds `--bench`; everything else is KEY=VALUE.
    let sets: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match bench(&sets) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gui_frame: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One timed frame.
struct Frame {
    build: Duration,
    tessellate: Duration,
    /// Events the app took in during this frame.
    applied: usize,
    /// Events still waiting in the channel after the frame.
    backlog: usize,
    /// CPU time of this thread during the frame: less than `total` when
    /// the frame was preempted (200 workers and the collector share 2 cores).
    cpu: Duration,
}

impl Frame {
    fn total(&self) -> Duration {
        self.build + self.tessellate
    }
}

struct Window {
    ctx: egui::Context,
    started: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            ctx: egui::Context::default(),
            started: Instant::now(),
        }
    }

    /// One frame of `app` at 1280×800, as eframe would run it (minus the
    /// GPU upload and paint).
    fn frame(&self, app: &mut App) -> Frame {
        let input = RawInput {
            screen_rect: Some(Rect::from_min_size(Pos2::ZERO, vec2(1280.0, 800.0))),
            time: Some(self.started.elapsed().as_secs_f64()),
            predicted_dt: FRAME_INTERVAL.as_secs_f32(),
            ..RawInput::default()
        };
        let before = app.rec.len();
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut out = self.ctx.run_ui(input, |ui| app.frame(ui));
        let t1 = Instant::now();
        let shapes = std::mem::take(&mut out.shapes);
        let primitives = self.ctx.tessellate(shapes, out.pixels_per_point);
        let t2 = Instant::now();
        let cpu = thread_cpu().saturating_sub(cpu0);
        std::hint::black_box(primitives);
        out.textures_delta.clear();
        let backlog = match &app.run {
            RunState::Running { session, .. } => session.collector.events.len(),
            _ => 0,
        };
        Frame {
            build: t1 - t0,
            tessellate: t2 - t1,
            applied: app.rec.len() - before,
            backlog,
            cpu,
        }
    }
}

/// CPU seconds (user + system) of each thread of this process, by name
/// (the UI thread is the process's own name).
fn thread_times() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid …": utime and stime are fields 14 and 15.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / hz;
    }
    out
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn bench(sets: &[String]) -> Result<(), String> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let loaded = load_target(SCENARIO).map_err(|e| e.to_string())?;
    let sets = forkscope::cli::parse_sets(sets).map_err(|e| e.to_string())?;
    let params = scenario::resolve_params(&loaded.scenario, &sets).map_err(|e| e.to_string())?;
    let limits = Limits {
        max_procs: 1024,
        ..Limits::default()
    };
    let procs =
        scenario::limits::check(&loaded.scenario, &params, &limits).map_err(|e| e.to_string())?;
    let num = |k: &str| match params.get(k) {
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        _ => 0.0,
    };
    let (workers, writes, period) = (num("workers"), num("writes"), num("period_ms"));
    println!(
        "load: {workers} workers × {writes} writes, {period} ms apart ({procs} processes, \
         ~{:.0} events/s expected)",
        workers * 3.0 * 1000.0 / period.max(0.001)
    );

    // The app, with a run started the way `App::start_run` does, but with
    // room for 200+ processes (the window's own limit is 64).
    let mut app = App::new(&GuiArgs {
        scenario: Some(SCENARIO.into()),
        ..GuiArgs::default()
    })?;
    let opts = RunOptions {
        time_scale: 1.0,
        seed: 1,
        limits,
        gated: false,
        stdout: None,
        python: None,
    };
    let session = Session::start(
        &loaded.text,
        &loaded.origin,
        params,
        &opts,
        forkscope::session::Reading::Thread,
    )
    .map_err(|e| format!("{e:#}"))?;
    let stats = session.collector.stats.clone();
    app.run = RunState::Running {
        session: Box::new(session),
        sampler: Sampler::start(|| {}),
        stopping: false,
    };

    let window = Window::new();
    // egui builds its fonts on the first frame: not part of the load.
    for _ in 0..3 {
        window.frame(&mut app);
    }
    let threads_before = thread_times();
    // (seconds since the start, CPU seconds by thread), now and then: the
    // collector's thread is gone once the run has ended.
    let mut thread_samples = Vec::new();
    let mut live = Vec::new();
    let run_start = Instant::now();
    let mut max_alive = 0;
    while app.run.is_running() {
        let start = Instant::now();
        let f = window.frame(&mut app);
        let alive = app
            .rec
            .live
            .processes
            .values()
            .filter(|p| p.is_alive())
            .count();
        max_alive = max_alive.max(alive);
        live.push((alive, run_start.elapsed(), f));
        if live.len() % 30 == 0 {
            thread_samples.push((run_start.elapsed().as_secs_f64(), thread_times()));
        }
        if run_start.elapsed() > Duration::from_secs(120) {
            return Err("the run did not end within 120 s".into());
        }
        std::thread::sleep(FRAME_INTERVAL.saturating_sub(start.elapsed()));
    }
    let run_wall = run_start.elapsed();
    let sent = stats.events.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let applied = app.rec.len() as u64;
    println!(
        "run: {:.1} s, {} frames, at most {max_alive} processes alive at once",
        run_wall.as_secs_f64(),
        live.len()
    );
    println!(
        "events: collector sent {sent} ({:.0}/s), dropped {dropped}, app applied {applied} \
         ({})",
        sent as f64 / run_wall.as_secs_f64(),
        if sent == applied + dropped && dropped == 0 {
            "no loss"
        } else {
            "LOSS"
        }
    );
    let mut last_seen: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (at, times) in &thread_samples {
        for (name, t) in times {
            last_seen.insert(name, (*at, *t));
        }
    }
    let busy_s: Vec<String> = last_seen
        .iter()
        .map(|(name, (at, t))| {
            let before = threads_before.get(*name).copied().unwrap_or(0.0);
            format!("{name} {:.0} %", (t - before) * 100.0 / at)
        })
        .collect();
    println!(
        "CPU of this process's threads during the run (% of one core): {}",
        busy_s.join(", ")
    );
    println!(
        "channel backlog after a frame: max {} events",
        live.iter().map(|(_, _, f)| f.backlog).max().unwrap_or(0)
    );
    // The frames while (nearly) all workers are alive: the steady load.
    let busy: Vec<&Frame> = live
        .iter()
        .filter(|(alive, _, _)| *alive * 10 >= max_alive * 9)
        .map(|(_, _, f)| f)
        .collect();
    report("live, ≥90 % of processes alive", &busy);
    let all: Vec<&Frame> = live.iter().map(|(_, _, f)| f).collect();
    report("live, whole run", &all);
    let mut slowest: Vec<&(usize, Duration, Frame)> = live.iter().collect();
    slowest.sort_by_key(|(_, _, f)| std::cmp::Reverse(f.total()));
    let slow: Vec<String> = slowest
        .iter()
        .take(5)
        .map(|(alive, at, f)| {
            format!(
                "{:.2} ms at {:.2} s ({alive} alive, {} events)",
                ms(f.total()),
                at.as_secs_f64(),
                f.applied
            )
        })
        .collect();
    println!("live, slowest frames: {}", slow.join("; "));
    // How the frame grows with the log: the timeline draws all of it.
    let mut line = Vec::new();
    let mut from = 0;
    while from < live.len() {
        let second = live[from].1.as_secs() / 2 * 2;
        let to = live[from..]
            .iter()
            .position(|(_, at, _)| at.as_secs() / 2 * 2 != second)
            .map_or(live.len(), |n| from + n);
        let mut v: Vec<Duration> = live[from..to].iter().map(|(_, _, f)| f.total()).collect();
        v.sort();
        line.push(format!(
            "{second}-{}s {:.2} ms ({} events)",
            second + 2,
            ms(pct(&v, 0.5)),
            before_frame(&live, to)
        ));
        from = to;
    }
    println!("live, median frame by time: {}", line.join(", "));

    // After the run: the last frames of the animations, then still frames
    // of the finished run (what a mouse move over the window costs).
    for _ in 0..70 {
        window.frame(&mut app);
        std::thread::sleep(FRAME_INTERVAL);
    }
    let finished: Vec<Frame> = (0..60).map(|_| window.frame(&mut app)).collect();
    report(
        &format!("finished run ({} events), following", app.rec.len()),
        &finished.iter().collect::<Vec<_>>(),
    );

    // Scrubbing: jump to the middle, then drag one seek per frame.
    let (t_lo, t_hi) = app.rec.t_range().ok_or("no events")?;
    let span = t_hi - t_lo;
    let mid = t_lo + span / 2;
    app.command(Command::Seek(mid));
    let jump = window.frame(&mut app);
    let settled: Vec<Frame> = (0..30).map(|_| window.frame(&mut app)).collect();
    println!(
        "scrub: jump to the middle (event {} of {}): {:.2} ms",
        app.rec.count_at(mid),
        app.rec.len(),
        ms(jump.total())
    );
    report(
        "scrub, paused at the middle",
        &settled.iter().collect::<Vec<_>>(),
    );
    // Drag back 2 % of the run per frame (each seek crosses a checkpoint),
    // then forward 0.2 % per frame (replays from the last World built).
    let mut back = Vec::new();
    for i in 1..=20 {
        app.command(Command::Seek(mid - span / 50 * i));
        back.push(window.frame(&mut app));
    }
    report(
        "scrub, dragging back 2 %/frame",
        &back.iter().collect::<Vec<_>>(),
    );
    let from = mid - span / 50 * 20;
    let mut forward = Vec::new();
    for i in 1..=100 {
        app.command(Command::Seek(from + span / 500 * i));
        forward.push(window.frame(&mut app));
    }
    report(
        "scrub, dragging forward 0.2 %/frame",
        &forward.iter().collect::<Vec<_>>(),
    );
    Ok(())
}

/// Events the app had when frame `i` ended.
fn before_frame(live: &[(usize, Duration, Frame)], i: usize) -> usize {
    live[..i].iter().map(|(_, _, f)| f.applied).sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn report(what: &str, frames: &[&Frame]) {
    if frames.is_empty() {
        println!("{what}: no frames");
        return;
    }
    let stat = |get: &dyn Fn(&Frame) -> Duration| {
        let mut v: Vec<Duration> = frames.iter().map(|f| get(f)).collect();
        v.sort();
        (
            pct(&v, 0.5),
            pct(&v, 0.95),
            *v.last().unwrap_or(&Duration::ZERO),
        )
    };
    let (m, p95, max) = stat(&|f| f.total());
    let (bm, _, _) = stat(&|f| f.build);
    let (tm, _, _) = stat(&|f| f.tessellate);
    let (cm, c95, cmax) = stat(&|f| f.cpu);
    let over = frames.iter().filter(|f| f.total() > TARGET).count();
    let per_frame = frames.iter().map(|f| f.applied).sum::<usize>() as f64 / frames.len() as f64;
    println!(
        "{what}: {} frames, median {:.2} ms (build {:.2} + tessellate {:.2}), p95 {:.2} ms, \
         max {:.2} ms; {over} over {} ms; thread CPU median {:.2} ms, p95 {:.2} ms, max {:.2} ms; \
         {per_frame:.0} events/frame",
        frames.len(),
        ms(m),
        ms(bm),
        ms(tm),
        ms(p95),
        ms(max),
        TARGET.as_millis(),
        ms(cm),
        ms(c95),
        ms(cmax),
    );
}
