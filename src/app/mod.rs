//! The desktop app: one window that runs a scenario for real and shows it
//! live. `App` owns the model; each view (one per file) is a function of
//! it — a read-only [`ViewCtx`] or [`ChromeCtx`] — and of a small view
//! state of its own, and pushes [`Command`]s, which `App::apply` carries
//! out in one place after drawing. Views never touch sockets or processes.
//! (docs/ARCHITECTURE.md, "The app: model, views, commands".)
//!
//! ```text
//! Session (collector thread) ──channel──▶ App::drain ──▶ Recording (log, World, lanes)
//!                                                          │
//!            stage · timeline · output · inspector · source ◀── World at the cursor
//! ```

pub mod captions;
pub mod controls;
pub mod files;
mod frame_memory;
pub mod help;
pub mod inspector;
pub mod lab;
pub mod layout;
pub mod many;
pub mod marks;
pub mod open;
pub mod output;
pub mod python;
pub mod quiz;
pub mod recording;
mod run;
pub mod sampler;
pub mod settings;
pub mod source;
pub mod stage;
pub mod steps;
pub mod theme;
pub mod timeline;
mod window;

pub use window::{parse_size, run_gui};

use crate::cli::{Loaded, load_target, parse_sets};
use crate::lab::Then;
use crate::lab::deadlock::{self, WaitEdge};
use crate::model::World;
use crate::protocol::{Body, Event, RUNNER_ID, Value, now_ns};
use crate::scenario::{self, limits};
use crate::session::{RunOptions, Session};
use egui::{Color32, Key, ViewportCommand};
use recording::Recording;
use sampler::Sampler;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use theme::Theme;

/// The scenario picked when the app opens.
pub const DEFAULT_SCENARIO: &str = "locked-counter";
/// Longest time spent reading events per frame: the UI stays smooth even
/// when a run floods it (the rest waits in the channel for the next frame).
const DRAIN_BUDGET: Duration = Duration::from_millis(4);
/// Longest time per frame spent driving a gated run (telling processes to
/// go and taking in what they did): many steps per frame, smooth UI.
const GATED_BUDGET: Duration = Duration::from_millis(8);
/// A step-mode run waiting for the user stops repainting this long after
/// the last event (late events, like the runner reaping, come by then).
const IDLE_AFTER: Duration = Duration::from_millis(500);
/// Frames while something moves are at most this often.
const FRAME_INTERVAL: Duration = Duration::from_millis(16);
/// Animations (message dots, flashes, growing nodes) last at most this long
/// after the event that started them.
pub const ANIMATION_NS: u64 = 1_000_000_000;
/// Give up on a screenshot that has not arrived after this long.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the app window (`forkscope` without a command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GuiArgs {
    /// Scenario to open (a built-in name or a file); default locked-counter.
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,
    /// Set a parameter of the scenario, e.g. --set loops=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Multiply every sleep by this (0.1 = ten times faster).
    #[arg(long, value_name = "F")]
    pub time_scale: Option<f64>,
    /// Start in presenter mode (large type, light high-contrast theme).
    #[arg(long)]
    pub presenter: bool,
    /// Window size in pixels, e.g. 1280x800.
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// Run the scenario, save a PNG of the window to FILE after --after-ms,
    /// and quit (exit code 0 if it was saved).
    #[arg(long, value_name = "FILE")]
    pub screenshot: Option<PathBuf>,
    /// With --screenshot: also write where every box and label of the
    /// stage is (window pixels, font sizes) to FILE as JSON, at the moment
    /// of the screenshot.
    #[arg(long, value_name = "FILE", requires = "screenshot")]
    pub dump_layout: Option<PathBuf>,
    /// When to take the screenshot, in ms after the run starts.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    pub after_ms: u64,
    /// Let a scenario file run the programs its `exec` steps name.
    #[arg(long)]
    pub allow_exec: bool,
    /// Who picks the order of the steps: free (the operating system),
    /// step (you, one step at a time) or seeded.
    #[arg(long, value_enum)]
    pub mode: Option<lab::Mode>,
    /// Seed of the seeded scheduler (--mode seeded).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Replay this schedule file (as `forkscope explore` writes) in step
    /// mode, then go on by hand.
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// Open the "Many runs" view and start this many runs (seeded from
    /// --seed or 1, or with --mode free scheduled by the operating
    /// system); with --screenshot, the picture is taken when they end.
    #[arg(long, value_name = "N")]
    pub many_runs: Option<u32>,
    /// Show a recording (`forkscope run NAME --record FILE`, or the app's
    /// "Save recording") instead of running anything; with --screenshot,
    /// --after-ms is the moment of the recording.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["many_runs", "schedule", "mode"])]
    pub open: Option<PathBuf>,
    /// Quiz mode: Run first asks the scenario's questions.
    #[arg(long)]
    pub quiz: bool,
    /// Quiz mode, answered already (answers separated by `;`, as typed:
    /// a choice's number or text, or a number), and run at once.
    #[arg(long, value_name = "ANSWERS", conflicts_with_all = ["many_runs", "open"])]
    pub quiz_answer: Option<String>,
    /// Open this Python program, ready to run (traced as `forkscope trace`
    /// does): its source with a marker per process and thread; with
    /// --many-runs, run it that many times for the histogram of its final
    /// shared values.
    #[arg(long, value_name = "SCRIPT.py", conflicts_with_all = ["open", "scenario", "schedule"])]
    pub trace: Option<PathBuf>,
    /// The Python interpreter for --trace and opened .py files
    /// [default: python3 on PATH].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

/// What views ask the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Pick a built-in scenario by name, or a file by path.
    Pick(String),
    SetParam(String, Value),
    ResetParams,
    /// The user trusts the picked file to run its programs.
    ConfirmExec(bool),
    Run,
    Stop,
    Restart,
    SetTimeScale(f64),
    Pause,
    Play,
    TogglePlay,
    /// Pause and show the run as it was at this time.
    Seek(u64),
    /// Follow the run live again.
    GoLive,
    /// Replay speed (see [`REPLAY_SPEEDS`]).
    SetSpeed(f64),
    /// Replay from this moment at the replay speed.
    ReplayFrom(u64),
    /// Replays pause by themselves at lost updates, deadlocks and errors.
    SetAutoPause(bool),
    /// Quiz mode on or off (the toolbar's toggle).
    SetQuiz(bool),
    /// Step mode: the seeded scheduler goes on until something happens.
    RunUntilNews,
    /// Step mode: a fresh run that replays the first N steps.
    ReturnToStep(usize),
    TogglePresenter,
    ToggleSidePanels,
    Zoom(f32),
    SelectProcess(Option<String>),
    /// Free, step or seeded: how the next run is scheduled.
    SetMode(lab::Mode),
    SetSeed(u64),
    /// Step mode: this process takes its next step.
    Step(String),
    /// Step mode: one step back (run again, replay all but the last step).
    Undo,
    /// Finish a step-mode run with the seeded scheduler.
    RunToEnd,
    SaveSchedule(PathBuf),
    /// Write the current run's events as JSON lines (`--record`'s format).
    SaveRecording(PathBuf),
    /// Replay a schedule file in step mode, then go on by hand.
    LoadSchedule(PathBuf),
    ShowView(MainView),
    StartManyRuns,
    CancelManyRuns,
    /// Open…, recent files, the question before stopping a run for a file.
    File(files::FileCmd),
    /// Full screen, panels one by one, the "?" overlay.
    View(settings::ViewCmd),
}

/// What the centre shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MainView {
    #[default]
    Stage,
    ManyRuns,
}

/// The scenario picked, with the parameter values the user set.
pub struct Picked {
    pub loaded: Loaded,
    pub params: BTreeMap<String, Value>,
    pub exec_confirmed: bool,
    /// A Python program (`--trace`, or a `.py` opened): what `main` runs.
    pub python: Option<crate::trace::PythonProgram>,
}

impl Picked {
    pub fn needs_exec_consent(&self) -> bool {
        !self.loaded.builtin && !self.loaded.scenario.exec_programs.is_empty()
    }

    /// What a run of it (one run or many) may use, or why it may not run
    /// yet: a file that runs programs not confirmed, or parameters past
    /// the scenario's limits.
    fn may_run(&self) -> Result<limits::Limits, String> {
        if self.needs_exec_consent() && !self.exec_confirmed {
            return Err(format!(
                "this file runs programs ({}): confirm it on the left first",
                self.loaded.scenario.exec_programs.join(", ")
            ));
        }
        let scenario_limits = limits::Limits::for_scenario(&self.loaded.scenario);
        limits::check(&self.loaded.scenario, &self.params, &scenario_limits)
            .map_err(|e| format!("{}: {e}", self.loaded.origin))?;
        Ok(scenario_limits)
    }
}

pub enum RunState {
    Idle,
    Running {
        session: Box<Session>,
        sampler: Option<Sampler>,
        stopping: bool,
    },
    Finished {
        /// main's exit code (None if stopped before it was known).
        code: Option<i32>,
        stopped: bool,
        duration: Duration,
    },
}

/// Lets go of a finished or stopped run off the UI thread: dropping a
/// session waits for the runner and the collector thread (up to a second),
/// which would freeze a frame. The run is already stopped (killed) or over,
/// so nothing is left to outlive the app.
fn retire(old: RunState) {
    if let RunState::Running {
        session, sampler, ..
    } = old
    {
        let dropper = std::thread::Builder::new()
            .name("retire-run".into())
            .spawn(move || drop((session, sampler)));
        // Could not start a thread: drop here (the old, slower way).
        if let Err(e) = dropper {
            drop(e);
        }
    }
}

impl RunState {
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running { .. })
    }
}

/// Play, pause, scrub: which moment of the run the views show.
#[derive(Clone, Debug)]
pub struct TimeControl {
    /// Show the newest moment (live).
    pub follow: bool,
    /// When not following: advance the cursor in real time (replay).
    pub playing: bool,
    pub cursor_t_ns: u64,
    /// Replay speed (1 = real time, 0.1 = ten times slower): how fast the
    /// cursor advances when not following.
    pub speed: f64,
    /// A replay pauses by itself at a marked moment (`marks.rs`).
    pub auto_pause: bool,
}

/// The replay speeds offered (slow motion, down to a thousandth for runs
/// without sleeps that last a few milliseconds).
pub const REPLAY_SPEEDS: [f64; 6] = [0.001, 0.01, 0.1, 0.25, 0.5, 1.0];

impl Default for TimeControl {
    fn default() -> Self {
        TimeControl {
            follow: true,
            playing: true,
            cursor_t_ns: 0,
            speed: 1.0,
            auto_pause: false,
        }
    }
}

impl TimeControl {
    /// Back to following the newest moment, keeping the replay speed.
    pub fn reset(&mut self) {
        *self = TimeControl {
            speed: self.speed,
            auto_pause: self.auto_pause,
            ..TimeControl::default()
        };
    }
}

/// A screenshot to take (`--screenshot`).
struct ScreenshotPlan {
    path: PathBuf,
    /// `--dump-layout`: where the stage's layout goes.
    layout_path: Option<PathBuf>,
    layout_failed: bool,
    after: Duration,
    requested_at: Option<Instant>,
    image: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
    /// The dump of the last frame drawn since the picture was asked for.
    last_dump: Option<layout::Dump>,
}

pub struct App {
    pub picked: Option<Picked>,
    pub pick_error: Option<String>,
    /// The picker's own state (the "Open file" field).
    pub picker: controls::PickerView,
    /// The toolbar's own state (where its widgets went, for
    /// `--dump-layout` and the tests).
    pub toolbar: controls::ToolbarView,
    pub time_scale: f64,
    pub presenter: bool,
    /// Side panels shown even in presenter mode.
    pub show_side_panels: bool,
    /// Extra zoom from +/- on top of the mode's own.
    pub zoom: f32,
    pub rec: Recording,
    pub run: RunState,
    pub time: TimeControl,
    pub selected: Option<String>,
    /// One line about the last thing that went wrong (or happened).
    pub status: Option<String>,
    /// What the collector dropped or could not read in the current run.
    pub collector_problems: String,
    pub output: output::OutputView,
    pub timeline: timeline::TimelineView,
    pub stage: stage::StageView,
    commands: Vec<Command>,
    run_on_first_frame: bool,
    frame_count: u64,
    screenshot: Option<ScreenshotPlan>,
    exit_code: Arc<AtomicI32>,
    applied_look: Option<(bool, f32)>,
    run_started: Option<Instant>,
    /// Event count the current view was built for (`None` = live).
    view_count: Option<usize>,
    last_frame: Option<Instant>,
    /// How the next run is scheduled.
    pub mode: lab::Mode,
    /// Seed of the seeded scheduler (and of "Run to end").
    pub seed: u64,
    /// The current or last gated run (step or seeded).
    pub gated: Option<lab::Gated>,
    /// The wait-for cycle of the current run's deadlock, to draw.
    pub deadlock_cycle: Vec<WaitEdge>,
    /// The World when the deadlock was found (the stage lays the tree out
    /// from it).
    pub deadlock_world: Option<World>,
    pub step_bar: lab::StepBar,
    pub view: MainView,
    pub many: many::ManyRuns,
    /// `--many-runs`: start them on the first frame.
    many_on_first_frame: bool,
    /// For the background runs' repaint requests.
    egui_ctx: Option<egui::Context>,
    /// Memory the next run's kept events and checkpoints may use (bytes):
    /// past it the oldest events are let go (tests make it small).
    pub rec_budgets_bytes: (usize, usize),
    /// The recording shown (`--open`), while no run replaced it.
    pub opened: Option<PathBuf>,
    /// Quiz mode: its questions and answers.
    pub quiz: quiz::QuizState,
    /// Open dialog, recent files, open errors.
    pub files: files::Files,
    /// Which panels show, in each look.
    pub panels: settings::PanelSets,
    /// Full screen (F11), apart from the look.
    pub fullscreen: bool,
    /// The "?" overlay with every key.
    pub help_open: bool,
    /// Settings are remembered (only the real window, never tests or
    /// `--screenshot`).
    pub persist: bool,
    /// `--python`: the interpreter for Python programs.
    pub python_exe: Option<PathBuf>,
}

impl App {
    /// The app with `args` applied; an error is bad input (exit code 2).
    pub fn new(args: &GuiArgs) -> Result<App, String> {
        frame_memory::keep_freed_memory();
        let mut app = App {
            picked: None,
            pick_error: None,
            picker: controls::PickerView::default(),
            toolbar: controls::ToolbarView::default(),
            time_scale: 1.0,
            presenter: args.presenter,
            show_side_panels: false,
            zoom: 1.0,
            rec: Recording::new(),
            run: RunState::Idle,
            time: TimeControl::default(),
            selected: None,
            status: None,
            collector_problems: String::new(),
            output: output::OutputView::default(),
            timeline: timeline::TimelineView::default(),
            stage: stage::StageView::default(),
            commands: Vec::new(),
            run_on_first_frame: args.screenshot.is_some(),
            frame_count: 0,
            screenshot: None,
            exit_code: Arc::new(AtomicI32::new(0)),
            applied_look: None,
            run_started: None,
            view_count: None,
            last_frame: None,
            mode: args.mode.unwrap_or_default(),
            seed: args.seed.unwrap_or(1),
            gated: None,
            deadlock_cycle: Vec::new(),
            deadlock_world: None,
            step_bar: lab::StepBar::default(),
            view: MainView::Stage,
            many: many::ManyRuns::default(),
            many_on_first_frame: false,
            egui_ctx: None,
            rec_budgets_bytes: (
                recording::LOG_BUDGET_BYTES,
                recording::CHECKPOINT_BUDGET_BYTES,
            ),
            opened: None,
            quiz: quiz::QuizState::new(args.quiz),
            files: files::Files::default(),
            panels: settings::PanelSets::default(),
            fullscreen: false,
            help_open: false,
            persist: false,
            python_exe: None,
        };
        if let Some(n) = args.many_runs {
            if !(1..=many::MAX_RUNS).contains(&n) {
                return Err(format!(
                    "--many-runs must be between 1 and {}",
                    many::MAX_RUNS
                ));
            }
            app.many.runs = n;
            app.many.first_seed = app.seed;
            app.many.seeded = args.mode != Some(lab::Mode::Free);
            app.view = MainView::ManyRuns;
            app.many_on_first_frame = true;
            app.run_on_first_frame = false;
        }
        if let Some(scale) = args.time_scale {
            if !(scale.is_finite() && (0.01..=100.0).contains(&scale)) {
                return Err("--time-scale must be between 0.01 and 100".into());
            }
            app.time_scale = scale;
        }
        let target = args.scenario.as_deref().unwrap_or(DEFAULT_SCENARIO);
        app.pick(target);
        if let Some(e) = app.pick_error.take() {
            return Err(e);
        }
        if let Some(p) = app.picked.as_mut() {
            let sets = parse_sets(&args.set).map_err(|e| e.to_string())?;
            p.params =
                scenario::resolve_params(&p.loaded.scenario, &sets).map_err(|e| e.to_string())?;
            // `--mode step` does what the toolbar's Step does: the small
            // parameters, except those given with `--set`.
            if app.mode == lab::Mode::Step {
                for (k, param) in &p.loaded.scenario.params {
                    if let Some(v) = &param.step
                        && !sets.iter().any(|(name, _)| name == k)
                    {
                        p.params.insert(k.clone(), v.clone());
                    }
                }
            }
            p.exec_confirmed = args.allow_exec;
            if args.screenshot.is_some() && p.needs_exec_consent() && !p.exec_confirmed {
                return Err(format!(
                    "{} runs programs ({}); add --allow-exec if you trust it",
                    p.loaded.origin,
                    p.loaded.scenario.exec_programs.join(", ")
                ));
            }
        }
        if let Some(answers) = &args.quiz_answer {
            app.quiz.preset(app.picked.as_ref(), answers)?;
            app.run_on_first_frame = true;
        }
        if let Some(path) = &args.schedule {
            if let Err(e) = std::fs::metadata(path) {
                return Err(format!("cannot read {}: {e}", path.display()));
            }
            app.step_bar.load_path = path.display().to_string();
            app.mode = lab::Mode::Step;
            app.commands.push(Command::LoadSchedule(path.clone()));
            app.run_on_first_frame = false;
        }
        if let Some(path) = &args.screenshot {
            app.screenshot = Some(ScreenshotPlan {
                path: path.clone(),
                layout_path: args.dump_layout.clone(),
                layout_failed: false,
                after: Duration::from_millis(args.after_ms),
                requested_at: None,
                image: Arc::default(),
                last_dump: None,
            });
        }
        app.python_exe = args.python.clone();
        if let Some(path) = &args.trace {
            app.open_python(path)?;
        }
        if let Some(path) = &args.open {
            if args.scenario.is_none() {
                // A recording does not say which scenario it ran.
                app.picked = None;
            }
            app.open_recording(path)?;
            if args.screenshot.is_some() {
                app.screenshot_recording_at(Duration::from_millis(args.after_ms));
            }
        }
        Ok(app)
    }

    /// Exit code for `main` once the window closed.
    pub fn exit_code_handle(&self) -> Arc<AtomicI32> {
        self.exit_code.clone()
    }

    /// Queue a command (views and tests use this).
    pub fn command(&mut self, c: Command) {
        self.commands.push(c);
    }

    pub fn theme(&self) -> Theme {
        Theme::new(self.presenter)
    }

    /// One whole frame: read events, carry out commands, draw. Tests call
    /// this directly with a harness' `Ui`.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if self.egui_ctx.is_none() {
            self.egui_ctx = Some(ctx.clone());
        }
        self.frame_count += 1;
        if self.run_on_first_frame {
            self.run_on_first_frame = false;
            self.commands.push(Command::Run);
        }
        if self.many_on_first_frame {
            self.many_on_first_frame = false;
            self.commands.push(Command::StartManyRuns);
        }
        self.keys(&ctx);
        self.view_keys(&ctx);
        self.poll_dialog();
        self.apply_commands();
        self.drain();
        if let Some(c) = self.quiz.update(self.picked.as_ref(), &self.run, &self.rec) {
            self.commands.push(c);
        }
        self.many.poll();
        self.advance_time();
        self.apply_look(&ctx);
        self.show(ui);
        // The windows over everything: functions of their state, answering
        // with commands (carried out just below).
        let theme = self.theme();
        let mut cmds = Vec::new();
        files::file_windows(&ctx, &mut self.files, &theme, &mut cmds);
        help::help_window(&ctx, self.help_open, &mut cmds);
        self.commands.extend(cmds);
        self.apply_commands();
        self.screenshot(&ctx);
        if self.wants_repaint() {
            ctx.request_repaint_after(FRAME_INTERVAL);
        }
    }

    // ---- commands ---------------------------------------------------------

    fn apply_commands(&mut self) {
        for c in std::mem::take(&mut self.commands) {
            self.apply(c);
        }
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::Pick(target) if crate::scenario::catalog::find(&target).is_none() => {
                // A file: asks before stopping a run, says what is wrong.
                self.apply_file(files::FileCmd::Open(PathBuf::from(target.trim())));
            }
            Command::Pick(target) => {
                // Another scenario: the old run's picture goes with it
                // (and Undo and Save, which belong to that run).
                self.clear_stage();
                self.pick(&target);
            }
            Command::SetParam(k, v) => {
                if let Some(p) = self.picked.as_mut() {
                    p.params.insert(k, v);
                }
            }
            Command::ResetParams => {
                if let Some(p) = self.picked.as_mut() {
                    p.params =
                        scenario::resolve_params(&p.loaded.scenario, &[]).unwrap_or_default();
                }
            }
            Command::ConfirmExec(yes) => {
                if let Some(p) = self.picked.as_mut() {
                    p.exec_confirmed = yes;
                }
            }
            Command::Run => {
                if self.run.is_running() {
                } else if self.quiz.intercept_run(self.picked.as_ref()) {
                    // The question is on the stage: `--screenshot` counts from here.
                    self.run_started = Some(Instant::now());
                } else {
                    self.start_run(Vec::new());
                    self.quiz.started(self.run.is_running());
                }
            }
            Command::Stop => self.request_stop(),
            Command::Restart => {
                self.stop_now();
                self.start_run(Vec::new());
            }
            Command::SetTimeScale(s) => self.time_scale = s.clamp(0.1, 10.0),
            Command::Pause => self.pause(),
            Command::Play => self.play(),
            Command::TogglePlay => {
                if self.time.follow || self.time.playing {
                    self.pause();
                } else {
                    self.play();
                }
            }
            Command::Seek(t) => {
                self.pause();
                let (lo, hi) = self.rec.t_range().unwrap_or((t, t));
                self.time.cursor_t_ns = t.clamp(lo, hi.max(lo));
            }
            Command::GoLive => {
                self.time.follow = true;
                self.time.playing = true;
            }
            Command::SetSpeed(x) => {
                if x.is_finite() {
                    self.time.speed = x.clamp(REPLAY_SPEEDS[0], 1.0);
                }
            }
            Command::ReplayFrom(t) => {
                self.apply(Command::Seek(t));
                self.time.playing = true;
            }
            Command::SetAutoPause(on) => self.time.auto_pause = on,
            Command::SetQuiz(on) => self.quiz.on = on,
            Command::TogglePresenter => self.presenter = !self.presenter,
            Command::ToggleSidePanels => self.toggle_side_panels(),
            Command::Zoom(z) => {
                let z = z.clamp(theme::MIN_ZOOM, theme::MAX_ZOOM);
                // A full stage: its words are as big as the room allows;
                // "+" grows the panels' words only, and says so.
                let full = self.stage.last_layout.as_ref().is_some_and(|l| l.full);
                if z > self.zoom && full {
                    self.status = Some(format!(
                        "zoom {:.0} %: the stage is full, its words are as large as the room                          allows (hide a panel, or fewer processes, for larger ones)",
                        z * 100.0
                    ));
                }
                self.zoom = z;
            }
            Command::SelectProcess(p) => self.selected = p,
            Command::SetMode(m) => {
                if m == lab::Mode::Step && self.mode != m {
                    self.use_step_params();
                }
                self.mode = m;
            }
            Command::SetSeed(seed) => self.seed = seed,
            Command::Step(id) => self.step(&id),
            Command::Undo => self.undo(),
            Command::ReturnToStep(n) => self.return_to_step(n),
            Command::RunUntilNews => {
                if let Some(g) = self.gated.as_mut().filter(|_| self.run.is_running()) {
                    g.run_until_news(self.seed);
                }
            }
            Command::RunToEnd => {
                if let Some(g) = self.gated.as_mut().filter(|_| self.run.is_running()) {
                    g.run_to_end(self.seed);
                }
            }
            Command::SaveSchedule(path) => self.save_schedule(&path),
            Command::SaveRecording(path) => self.save_recording(&path),
            Command::LoadSchedule(path) => self.load_schedule(&path),
            Command::ShowView(v) => self.view = v,
            Command::StartManyRuns => self.start_many_runs(),
            Command::CancelManyRuns => self.many.cancel(),
            Command::File(c) => self.apply_file(c),
            Command::View(c) => {
                let ctx = self.egui_ctx.clone();
                self.apply_view(c, ctx.as_ref());
            }
        }
    }

    /// The newest moment: now while running (the same clock the processes
    /// stamp with), else just past the last event so animations finish.
    pub fn live_t_ns(&self) -> u64 {
        let Some((_, last)) = self.rec.t_range() else {
            return now_ns();
        };
        if self.run.is_running() {
            now_ns().max(last)
        } else {
            now_ns().clamp(last, last.saturating_add(ANIMATION_NS))
        }
    }

    /// The moment the views show.
    pub fn view_t_ns(&self) -> u64 {
        if self.time.follow {
            self.live_t_ns()
        } else {
            self.time.cursor_t_ns
        }
    }

    fn advance_time(&mut self) {
        let now = Instant::now();
        let dt = self.last_frame.replace(now).map(|t| now - t);
        if !self.time.follow && self.time.playing {
            let step = dt.unwrap_or_default().min(Duration::from_millis(100));
            let step_ns = (step.as_nanos() as f64 * self.time.speed) as u64;
            let from = self.time.cursor_t_ns;
            self.time.cursor_t_ns = from.saturating_add(step_ns);
            if self.time.auto_pause {
                self.pause_at_marked_moment(from);
            }
            if self.time.cursor_t_ns >= self.live_t_ns() {
                self.time.follow = true;
            }
        }
        self.view_count = if self.time.follow {
            None
        } else {
            Some(self.rec.count_at(self.time.cursor_t_ns))
        };
        if let Some(k) = self.view_count {
            self.rec.world_at(k);
        }
    }

    /// The World at the moment shown.
    pub fn view_world(&self) -> &World {
        match self.view_count {
            Some(k) if k < self.rec.len() => self.rec.cached_world(k),
            _ => &self.rec.live,
        }
    }

    fn wants_repaint(&self) -> bool {
        if self.screenshot.is_some() {
            return true;
        }
        if self.run.is_running() {
            // Waiting for the user's pick, with nothing arriving: idle.
            let idle = self
                .gated
                .as_ref()
                .is_some_and(|g| g.awaiting_user && g.last_event.elapsed() > IDLE_AFTER);
            if !idle {
                return true;
            }
        }
        if !self.time.follow {
            return self.time.playing;
        }
        // Let the last animations finish, then go idle.
        self.rec
            .t_range()
            .is_some_and(|(_, last)| now_ns() < last.saturating_add(ANIMATION_NS))
    }

    // ---- look, keys, screenshot -------------------------------------------

    fn apply_look(&mut self, ctx: &egui::Context) {
        let look = (self.presenter, self.zoom);
        if self.applied_look == Some(look) {
            return;
        }
        self.applied_look = Some(look);
        self.theme().apply(ctx);
        // "+"/"−" zoom the stage's words (the stage reads `self.zoom`); on
        // a desk the panels too. The presenter's chrome is large already:
        // growing it would only take room from the stage.
        let chrome = if self.presenter {
            theme::PRESENTER_ZOOM
        } else {
            self.zoom
        };
        ctx.set_zoom_factor(chrome);
    }

    fn keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (space, r, plus, minus) = ctx.input(|i| {
            (
                i.key_pressed(Key::Space),
                i.key_pressed(Key::R),
                i.key_pressed(Key::Plus) || i.key_pressed(Key::Equals),
                i.key_pressed(Key::Minus),
            )
        });
        if space {
            self.commands.push(Command::TogglePlay);
        }
        if r {
            self.commands.push(Command::Restart);
        }
        if plus {
            self.commands.push(Command::Zoom(self.zoom * 1.1));
        }
        if minus {
            self.commands.push(Command::Zoom(self.zoom / 1.1));
        }
        // Step mode: 1–9 pick the process with that number, U undoes.
        const DIGITS: [Key; 9] = [
            Key::Num1,
            Key::Num2,
            Key::Num3,
            Key::Num4,
            Key::Num5,
            Key::Num6,
            Key::Num7,
            Key::Num8,
            Key::Num9,
        ];
        let (digit, undo, news) = ctx.input(|i| {
            (
                DIGITS.iter().position(|k| i.key_pressed(*k)),
                i.key_pressed(Key::U),
                i.key_pressed(Key::N),
            )
        });
        if news {
            self.commands.push(Command::RunUntilNews);
        }
        if let Some(d) = digit
            && self.gated.as_ref().is_some_and(|g| g.manual())
            && let Some((id, _)) = lab::step_numbers(&self.rec.live)
                .into_iter()
                .find(|(_, n)| *n == d + 1)
        {
            self.commands.push(Command::Step(id));
        }
        if undo {
            self.commands.push(Command::Undo);
        }
    }

    /// Colour of each process, by order of appearance (the runner is grey).
    pub fn process_colors(&self) -> BTreeMap<String, Color32> {
        let theme = self.theme();
        let mut procs: Vec<_> = self.rec.live.processes.values().collect();
        procs.sort_by_key(|p| p.spawn_order);
        let mut i = 0;
        procs
            .into_iter()
            .map(|p| {
                let c = if p.id == RUNNER_ID {
                    theme.weak_text
                } else {
                    i += 1;
                    theme.process_color(i - 1)
                };
                (p.id.clone(), c)
            })
            .collect()
    }

    // ---- layout -----------------------------------------------------------

    fn show(&mut self, ui: &mut egui::Ui) {
        // The views are taken out while they draw from the rest of the app.
        let mut stage = std::mem::take(&mut self.stage);
        let mut output = std::mem::take(&mut self.output);
        let mut timeline = std::mem::take(&mut self.timeline);
        self.show_views(ui, &mut stage, &mut output, &mut timeline);
        self.stage = stage;
        self.output = output;
        self.timeline = timeline;
    }

    fn show_views(
        &mut self,
        ui: &mut egui::Ui,
        stage: &mut stage::StageView,
        output: &mut output::OutputView,
        timeline: &mut timeline::TimelineView,
    ) {
        let theme = self.theme();
        let colors = self.process_colors();
        let view_t = self.view_t_ns();
        let panels = *self.panels.of(self.presenter);
        let live_view = self.time.follow && self.run.is_running();
        let step = lab::StepCtx::new(&self.rec.live, self.gated.as_ref(), live_view);
        let cycle = self.deadlock_cycle.clone();
        let frame = FrameParts {
            theme: &theme,
            colors: &colors,
            view_t_ns: view_t,
            step: &step,
            deadlock: &cycle,
        };

        let mut cmds = Vec::new();
        let mut toolbar = std::mem::take(&mut self.toolbar);
        let mut picker = std::mem::take(&mut self.picker);
        let mut step_bar = std::mem::take(&mut self.step_bar);
        {
            let chrome = self.chrome_ctx(&frame);
            egui::Panel::top("toolbar").show(ui, |ui| {
                controls::toolbar(ui, &chrome, &mut toolbar, &mut cmds);
            });
            if panels.picker {
                egui::Panel::left("picker")
                    .default_size(290.0)
                    .resizable(true)
                    .show(ui, |ui| {
                        controls::picker(ui, &chrome, &mut picker, &mut cmds)
                    });
            }
        }
        self.toolbar = toolbar;
        self.picker = picker;
        if panels.inspector || panels.source {
            egui::Panel::right("inspector")
                .default_size(330.0)
                .resizable(true)
                .show(ui, |ui| {
                    let ctx = self.view_ctx(&frame);
                    if panels.inspector && panels.source {
                        let half = ui.available_height() * 0.45;
                        egui::Panel::top("inspector_top")
                            .default_size(half)
                            .resizable(true)
                            .show(ui, |ui| inspector::ui(ui, &ctx, &mut cmds));
                        source::ui(ui, &ctx);
                    } else if panels.inspector {
                        inspector::ui(ui, &ctx, &mut cmds);
                    } else {
                        source::ui(ui, &ctx);
                    }
                });
        }
        // One panel per look: egui remembers a panel's size by its id, and
        // the presenter's strip must not keep the desk's height after a
        // switch (F11 gives the same stage as `--presenter`). The
        // presenter's output alone is sized to whole lines.
        let (bottom_id, bottom_size) = match (self.presenter, panels.timeline) {
            (true, false) => ("bottom_presenter", output::presenter_strip_height(ui)),
            (true, true) => ("bottom_presenter_timeline", 200.0),
            (false, _) => ("bottom", 250.0),
        };
        if panels.output || panels.timeline {
            egui::Panel::bottom(bottom_id)
                .resizable(true)
                .default_size(bottom_size)
                .show(ui, |ui| {
                    let ctx = self.view_ctx(&frame);
                    let compact = self.presenter;
                    match (panels.output, panels.timeline) {
                        (true, true) => ui.columns(2, |cols| {
                            output.ui(&mut cols[0], &ctx, compact);
                            timeline.ui(&mut cols[1], &ctx, &mut cmds);
                        }),
                        (true, false) => output.ui(ui, &ctx, compact),
                        _ => timeline.ui(ui, &ctx, &mut cmds),
                    }
                });
        }
        // On a projector the stage takes the height: 4 points above and
        // below it, not 8 (18 px words at 720p need every line).
        let margin = if self.presenter {
            egui::Margin::symmetric(8, 4)
        } else {
            egui::Margin::same(8)
        };
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE.fill(theme.bg).inner_margin(margin))
            .show(ui, |ui| {
                {
                    let chrome = self.chrome_ctx(&frame);
                    controls::central_bar(ui, &chrome, &mut step_bar, &mut cmds);
                }
                match self.view {
                    MainView::Stage => {
                        let ctx = self.view_ctx(&frame);
                        stage.ui(ui, &ctx, &mut cmds);
                        let t0 = self.rec.t_range().map(|r| r.0);
                        let (q, picked) = (&mut self.quiz, self.picked.as_ref());
                        quiz::ui(ui, q, picked, &theme, stage, t0, &mut cmds);
                    }
                    MainView::ManyRuns => {
                        let ask = egui::ScrollArea::vertical()
                            .id_salt("many_runs")
                            .show(ui, |ui| {
                                many::ui(ui, &mut self.many, self.picked.as_ref(), self.presenter)
                            })
                            .inner;
                        match ask {
                            Some(many::Ask::Start) => cmds.push(Command::StartManyRuns),
                            Some(many::Ask::Cancel) => cmds.push(Command::CancelManyRuns),
                            None => {}
                        }
                    }
                }
            });
        self.step_bar = step_bar;
        self.commands.extend(cmds);
    }

    fn sampler(&self) -> Option<&Sampler> {
        match &self.run {
            RunState::Running { sampler, .. } => sampler.as_ref(),
            _ => None,
        }
    }
}

/// What every view reads: the World at the moment shown, and the look.
/// What every view of one frame shares, computed once per frame.
struct FrameParts<'a> {
    theme: &'a Theme,
    colors: &'a BTreeMap<String, Color32>,
    view_t_ns: u64,
    step: &'a lab::StepCtx,
    deadlock: &'a [WaitEdge],
}

impl App {
    /// What the chrome (toolbar, picker, tabs, step bar) reads: the model,
    /// read-only.
    fn chrome_ctx<'a>(&'a self, frame: &FrameParts<'a>) -> ChromeCtx<'a> {
        ChromeCtx {
            presenter: self.presenter,
            show_side_panels: self.show_side_panels,
            theme: frame.theme,
            picked: self.picked.as_ref(),
            pick_error: self.pick_error.as_deref(),
            run: &self.run,
            time: &self.time,
            time_scale: self.time_scale,
            mode: self.mode,
            seed: self.seed,
            gated: self.gated.as_ref(),
            rec: &self.rec,
            view_t_ns: frame.view_t_ns,
            opened: self.opened.as_deref(),
            collector_problems: &self.collector_problems,
            status: self.status.as_deref(),
            quiz_on: self.quiz.on,
            files: &self.files,
            panels: &self.panels,
            zoom: self.zoom,
            view: self.view,
        }
    }

    /// The read-only context a view draws from, at the moment shown.
    fn view_ctx<'a>(&'a self, frame: &FrameParts<'a>) -> ViewCtx<'a> {
        ViewCtx {
            world: self.view_world(),
            rec: &self.rec,
            theme: frame.theme,
            colors: frame.colors,
            view_t_ns: frame.view_t_ns,
            selected: self.selected.as_deref(),
            scenario: self.picked.as_ref().map(|p| &p.loaded.scenario),
            sampler: self.sampler(),
            step: frame.step,
            deadlock: frame.deadlock,
            layout_world: self.deadlock_world.as_ref().unwrap_or(&self.rec.live),
            zoom: self.zoom,
        }
    }
}

/// What the chrome views (toolbar, picker, tabs, step bar) read: the app's
/// model, read-only. They answer with [`Command`]s; each keeps its own
/// small view state (`ToolbarView`, `PickerView`, `StepBar`).
pub struct ChromeCtx<'a> {
    pub presenter: bool,
    /// Presenter mode with the side panels back ("☰").
    pub show_side_panels: bool,
    pub theme: &'a Theme,
    pub picked: Option<&'a Picked>,
    pub pick_error: Option<&'a str>,
    pub run: &'a RunState,
    pub time: &'a TimeControl,
    pub time_scale: f64,
    pub mode: lab::Mode,
    pub seed: u64,
    pub gated: Option<&'a lab::Gated>,
    pub rec: &'a Recording,
    /// The moment shown.
    pub view_t_ns: u64,
    /// The recording shown (`--open`), while no run replaced it.
    pub opened: Option<&'a std::path::Path>,
    pub collector_problems: &'a str,
    pub status: Option<&'a str>,
    pub quiz_on: bool,
    pub files: &'a files::Files,
    pub panels: &'a settings::PanelSets,
    pub zoom: f32,
    pub view: MainView,
}

pub struct ViewCtx<'a> {
    pub world: &'a World,
    pub rec: &'a Recording,
    pub theme: &'a Theme,
    pub colors: &'a BTreeMap<String, Color32>,
    pub view_t_ns: u64,
    pub selected: Option<&'a str>,
    pub scenario: Option<&'a scenario::Scenario>,
    pub sampler: Option<&'a Sampler>,
    /// Step mode: pick numbers and who may go now.
    pub step: &'a lab::StepCtx,
    /// The wait-for cycle to draw when the World shows a deadlock.
    pub deadlock: &'a [WaitEdge],
    /// What the stage lays its tree out from: the whole run (so nothing
    /// moves when scrubbing), or the moment of a deadlock.
    pub layout_world: &'a World,
    /// The user's zoom ("+"/"−"), 1 = none: the stage's words grow with it.
    pub zoom: f32,
}

impl ViewCtx<'_> {
    pub fn color_of(&self, id: &str) -> Color32 {
        self.colors.get(id).copied().unwrap_or(self.theme.weak_text)
    }

    /// Time since the run's first event, for labels.
    pub fn since_start_s(&self, t_ns: u64) -> f64 {
        let t0 = self.rec.t_range().map_or(t_ns, |(lo, _)| lo);
        t_ns.saturating_sub(t0) as f64 / 1e9
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.save_settings(storage);
    }

    fn persist_egui_memory(&self) -> bool {
        self.persist
    }
}

/// Takes one event in: the log and World and the gatekeeper of a gated
/// run. In a free run, returns the
/// deadlock the World shows once processes wait in a circle.
fn take_event(
    rec: &mut Recording,
    gated: Option<&mut lab::Gated>,
    e: Event,
) -> Option<(String, Vec<WaitEdge>)> {
    let waits = matches!(e.body, Body::LockWait { .. } | Body::Block { .. });
    let free = gated.is_none();
    if let Some(g) = gated {
        g.observe(&e);
    }
    rec.push(e);
    if free && waits {
        let cycle = deadlock::in_world(&rec.live)?;
        return Some((cycle, deadlock::cycle_in_world(&rec.live)));
    }
    None
}
