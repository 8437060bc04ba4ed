//! Start to first frame: from starting `forkscope` (no arguments: the
//! window) to its first frame painted, under a virtual X server with
//! software GL, side by side with a bare eframe/glow window (the floor).
//!
//!     cargo bench --bench start                 # 11 launches of each
//!     cargo bench --bench start -- runs=21
//!
//! Needs `Xvfb` and Mesa's software GL (scripts/xvfb-packages.sh installs
//! them). The app is the release binary cargo built for this bench; with
//! `FORKSCOPE_EXIT_AFTER_FIRST_FRAME` set it prints `first frame painted`
//! once eframe has painted (and shown) its first frame, and closes. The
//! time is taken here, from just before the process is spawned to that
//! line on its stdout: exec, loading, `App::new` (the scenario catalog),
//! the window, the GL context, fonts and the first frame. The baseline is
//! this bench's own binary (`__bare_window`): an eframe window with the
//! same options and one label, timed the same way.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// What the app prints after its first frame (src/app/mod.rs).
const PAINTED: &str = "first frame painted";
/// The goal.
const TARGET: Duration = Duration::from_millis(300);
/// A launch that has not painted by then is a failure, not a figure.
const GIVE_UP: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__bare_window")
    {
        return bare_window();
    }
    let mut runs = 11;
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.strip_prefix("runs=").map(str::parse::<usize>) {
            Some(Ok(n)) if n > 0 => runs = n,
            _ => {
                eprintln!("start: unknown argument {arg:?} (runs=N)");
                return ExitCode::FAILURE;
            }
        }
    }
    match bench(runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The X server for the launches, stopped when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Result<Xvfb, String> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1920x1200x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start Xvfb ({e}); scripts/xvfb-packages.sh says what to install")
            })?;
        // Xvfb writes the display number it picked once it accepts clients.
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let number = line.trim().to_string();
        if !matches!(read, Some(Ok(n)) if n > 0) || number.parse::<u32>().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("Xvfb did not say which display it opened".into());
        }
        Ok(Xvfb {
            child,
            display: format!(":{number}"),
        })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One launch: the time to its first frame, and the app's own account
/// (`key=ms` pairs after the colon).
struct Launch {
    painted: Duration,
    parts: Vec<(String, f64)>,
}

/// One launch of `program args…` on `display`.
fn launch(
    program: &std::path::Path,
    args: &[&str],
    display: &str,
    runtime: &std::path::Path,
) -> Result<Launch, String> {
    let t0 = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env_remove("WAYLAND_DISPLAY")
        .env("DISPLAY", display)
        .env("XDG_RUNTIME_DIR", runtime)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("FORKSCOPE_EXIT_AFTER_FIRST_FRAME", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Read on a thread, so that a window that never paints cannot hang us.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = None;
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(PAINTED) && seen.is_none() {
                    seen = Some(Instant::now());
                    let _ = tx.send(Some((Instant::now(), line)));
                }
            }
        }
        let _ = tx.send(None);
    });
    let painted = rx.recv_timeout(GIVE_UP).ok().flatten();
    let status = match painted {
        Some(_) => wait_at_most(&mut child, Duration::from_secs(10)),
        None => None,
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    if let Some(mut e) = stderr {
        let _ = e.read_to_string(&mut err);
    }
    match (painted, status) {
        (Some((at, line)), Some(s)) if s.success() => Ok(Launch {
            painted: at - t0,
            parts: line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.trim_end_matches("_ms").to_string(), v.parse().ok()?)))
                .collect(),
        }),
        (Some(_), Some(s)) => Err(format!(
            "{} ended with {s}: {}",
            program.display(),
            err.trim()
        )),
        (Some(_), None) => Err(format!(
            "{} did not close after its first frame",
            program.display()
        )),
        (None, _) => Err(format!(
            "{} painted no frame within {} s: {}",
            program.display(),
            GIVE_UP.as_secs(),
            err.trim()
        )),
    }
}

fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn bench(runs: usize) -> Result<(), String> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let app = std::path::PathBuf::from(env!("CARGO_BIN_EXE_forkscope"));
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let xvfb = Xvfb::start()?;
    let runtime =
        std::env::temp_dir().join(format!("forkscope-start-bench-{}", std::process::id()));
    std::fs::create_dir_all(&runtime).map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700));
    }
    println!(
        "{runs} launches each, alternating, on Xvfb {} (1920×1200, software GL), window 1280×800",
        xvfb.display
    );
    // One of each first, not counted: the binaries and Mesa into the page
    // cache.
    let result = (|| {
        launch(&app, &[], &xvfb.display, &runtime)?;
        launch(&me, &["__bare_window"], &xvfb.display, &runtime)?;
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(launch(&app, &[], &xvfb.display, &runtime)?);
            bare.push(launch(&me, &["__bare_window"], &xvfb.display, &runtime)?);
        }
        Ok::<_, String>((ours, bare))
    })();
    let _ = std::fs::remove_dir_all(&runtime);
    let (ours_runs, bare_runs) = result?;
    let mut ours: Vec<Duration> = ours_runs.iter().map(|l| l.painted).collect();
    let mut bare: Vec<Duration> = bare_runs.iter().map(|l| l.painted).collect();
    ours.sort();
    bare.sort();
    let line = |what: &str, v: &[Duration]| {
        println!(
            "{what}: median {:.0} ms, min {:.0} ms, max {:.0} ms",
            ms(v[v.len() / 2]),
            ms(v[0]),
            ms(v[v.len() - 1])
        );
    };
    line("forkscope, start to first frame", &ours);
    line("bare eframe/glow window (baseline)", &bare);
    // The app's own account, in ms since `run_gui` began (medians).
    let mut names: Vec<String> = Vec::new();
    for l in &ours_runs {
        for (k, _) in &l.parts {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let parts: Vec<String> = names
        .iter()
        .map(|k| {
            let mut v: Vec<f64> = ours_runs
                .iter()
                .filter_map(|l| l.parts.iter().find(|(n, _)| n == k).map(|(_, ms)| *ms))
                .collect();
            v.sort_by(f64::total_cmp);
            format!(
                "{k} {:.1} ms",
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            )
        })
        .collect();
    println!(
        "forkscope's own account, ms since run_gui began (medians): {}",
        parts.join(", ")
    );
    let median = ours[ours.len() / 2];
    println!(
        "forkscope − baseline (medians): {:+.0} ms; goal ≤ {} ms: {}",
        ms(median) - ms(bare[bare.len() / 2]),
        TARGET.as_millis(),
        if median <= TARGET { "met" } else { "NOT met" }
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline: an eframe/glow window with the app's options and a label,
/// closing after its first frame was painted, like the app does.
fn bare_window() -> ExitCode {
    struct Bare {
        frames: u32,
    }
    impl eframe::App for Bare {
        fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
            self.frames += 1;
            ui.label("hello");
            if self.frames == 2 {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{PAINTED}");
                let _ = out.flush();
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            } else {
                ui.ctx().request_repaint();
            }
        }
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("bare")
            .with_inner_size((1280.0, 800.0)),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    match eframe::run_native(
        "bare",
        options,
        Box::new(|_cc| Ok(Box::new(Bare { frames: 0 }) as Box<dyn eframe::App>)),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare window: {e}");
            ExitCode::FAILURE
        }
    }
}
