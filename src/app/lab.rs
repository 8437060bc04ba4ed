//! The race lab in the app: how a run is scheduled (free, step by hand,
//! seeded), the state of a gated run while the frame loop drives it, and
//! the step bar over the stage (Undo, Run to end, Save/Load schedule).
//!
//! A gated run is driven the way `lab::drive` does it, a little per frame:
//! every event goes to the [`Gatekeeper`]; only when it is settled (every
//! process waits for `go` or is gone) does the [`Scheduler`] pick, and in
//! step mode it waits for the user's pick instead.

use super::{ChromeCtx, Command};
use crate::lab::{Candidate, Decision, Gatekeeper, Scheduler, Then, deadlock};
use crate::model::World;
use crate::protocol::{Event, RUNNER_ID};
use crate::session::Session;
use egui::{RichText, Ui};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub const UNDO: &str = "↩ Undo";
pub const RUN_TO_END: &str = "⏩ Run to end";
pub const RUN_UNTIL_NEWS: &str = "⏭ Until something happens";
pub const SAVE_SCHEDULE: &str = "Save schedule…";
pub const LOAD_SCHEDULE: &str = "Load schedule…";

/// Who decides the order of the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// The operating system schedules, as in any real program.
    #[default]
    Free,
    /// Every step waits: the user picks who goes next.
    Step,
    /// A seeded random scheduler picks: the same seed, the same run.
    Seeded,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Free => "Free",
            Mode::Step => "Step",
            Mode::Seeded => "Seeded",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Mode::Free => "The operating system decides who runs when (a real program)",
            Mode::Step => {
                "Every process stops before each step; you pick who goes next \
                 (click it, or press its number)"
            }
            Mode::Seeded => {
                "A random scheduler with this seed picks who goes next: the same seed \
                 always gives the same interleaving and the same result"
            }
        }
    }
}

/// What happened when the scheduler was asked.
pub enum Next {
    /// A process was told to go: its events are on their way.
    Went,
    /// Nothing to do now (not settled yet, or waiting for the user).
    Idle,
    /// Processes wait and none can go: a deadlock (its one-line cycle and
    /// the arrows to draw).
    Stuck(String, Vec<deadlock::WaitEdge>),
    /// The schedule names a process that cannot go here.
    Diverged(String),
}

/// A gated run: kept after it ends, for Undo and Save schedule.
pub struct Gated {
    pub gk: Gatekeeper,
    pub sched: Scheduler,
    /// Every `go` so far, in order: replaying it repeats the run.
    pub schedule: Vec<String>,
    /// For each entry of `schedule`: was it a step nobody else can see
    /// (let through without a choice)? Undo skips back over those.
    pub local: Vec<bool>,
    /// Who could go at the last look (when the run waits for the user).
    pub candidates: Vec<Candidate>,
    /// The run waits for the user to pick.
    pub awaiting_user: bool,
    /// When the last event came in (to go idle after the last one).
    pub last_event: Instant,
    /// How many entries of `schedule` were replayed from a prefix.
    pub replayed: usize,
    /// Started in step mode: no time limit (the user takes their time).
    pub paced_by_user: bool,
    /// "Until something happens": the seeded scheduler goes on until a
    /// lost update, a process newly blocked, or a deadlock; then the user
    /// picks again.
    pub until_news: bool,
    /// Who could not go at the last decision (a new one is news).
    blocked_before: std::collections::BTreeSet<String>,
    /// What stopped the last "until something happens".
    pub news: Option<String>,
}

impl Gated {
    pub fn new(prefix: Vec<String>, then: Then) -> Gated {
        Gated {
            gk: Gatekeeper::default(),
            sched: Scheduler::new(prefix, then.clone(), true),
            schedule: Vec::new(),
            local: Vec::new(),
            candidates: Vec::new(),
            awaiting_user: false,
            last_event: Instant::now(),
            replayed: 0,
            paced_by_user: then == Then::Manual,
            until_news: false,
            blocked_before: Default::default(),
            news: None,
        }
    }

    pub fn observe(&mut self, e: &Event) {
        self.gk.observe(e);
        self.last_event = Instant::now();
        if self.until_news
            && let crate::protocol::Body::Race {
                name,
                read,
                written,
                replaced,
                ..
            } = &e.body
            && crate::model::race_body_updates(&e.body).unwrap_or(0) > 0
        {
            self.stop_for_news(format!(
                "a lost update: {} read {read}, wrote {written} over {replaced} ({name})",
                e.proc_id
            ));
        }
    }

    /// Back to picking by hand, saying why.
    fn stop_for_news(&mut self, what: String) {
        self.until_news = false;
        self.sched.then = Then::Manual;
        self.news = Some(what);
    }

    /// Let the seeded scheduler go on until something happens (a lost
    /// update, a process newly blocked, a deadlock).
    pub fn run_until_news(&mut self, seed: u64) {
        self.run_to_end(seed);
        self.until_news = true;
        self.news = None;
    }

    /// Still replaying a saved or undone prefix.
    pub fn replaying(&self) -> bool {
        self.sched.pos < self.sched.prefix.len()
    }

    pub fn manual(&self) -> bool {
        self.sched.then == Then::Manual
    }

    /// Asks the scheduler once. Call only when every event that arrived
    /// is taken in (the decision must see all of them).
    pub fn next(&mut self, world: &World, session: &Session) -> Next {
        if !self.gk.settled() {
            return Next::Idle;
        }
        let candidates = self.gk.candidates(world);
        let blocked: std::collections::BTreeSet<String> = candidates
            .iter()
            .filter(|c| !c.enabled)
            .map(|c| c.id.clone())
            .collect();
        if self.until_news
            && let Some(id) = blocked.difference(&self.blocked_before).next()
        {
            let why = self.why_not(id, world);
            self.stop_for_news(format!("{id} is blocked: it {why}"));
        }
        self.blocked_before = blocked;
        let replaying = self.replaying();
        match self.sched.decide(&candidates) {
            Decision::Go(id) => {
                let local = candidates.iter().any(|c| c.id == id && c.local);
                self.schedule.push(id.clone());
                self.local.push(local);
                if replaying {
                    self.replayed = self.schedule.len();
                }
                self.awaiting_user = false;
                self.candidates.clear();
                self.gk.release(session, &id);
                Next::Went
            }
            Decision::Wait | Decision::Prune => {
                self.awaiting_user = !candidates.is_empty();
                self.candidates = candidates;
                Next::Idle
            }
            Decision::Stuck => {
                self.until_news = false;
                self.awaiting_user = false;
                self.candidates = candidates;
                let cycle = deadlock::explain(world, self.gk.waiting());
                let edges = deadlock::cycle_of_waiting(world, self.gk.waiting());
                Next::Stuck(cycle, edges)
            }
            Decision::Diverged(id) => {
                self.awaiting_user = false;
                Next::Diverged(id)
            }
        }
    }

    /// The user picked `id`: it goes at the next settled moment.
    pub fn pick(&mut self, id: &str, world: &World) -> Result<(), String> {
        if !self.awaiting_user {
            return Err("wait: a step is still under way".into());
        }
        match self.candidates.iter().find(|c| c.id == id) {
            Some(c) if c.enabled => {
                self.sched.push(id);
                self.awaiting_user = false;
                Ok(())
            }
            Some(_) => Err(format!(
                "{id} cannot go now: it {}",
                self.why_not(id, world)
            )),
            None => Err(format!("{id} has no step to take now")),
        }
    }

    /// Finish with the seeded scheduler (what is left of a prefix first).
    pub fn run_to_end(&mut self, seed: u64) {
        let rest = self.sched.prefix[self.sched.pos.min(self.sched.prefix.len())..].to_vec();
        self.sched = Scheduler::new(rest, Then::Seeded(seed), true);
        self.awaiting_user = false;
    }

    /// The schedule one chosen step back: everything before the last
    /// step that was a real choice (`None` if there was none).
    pub fn undo_prefix(&self) -> Option<Vec<String>> {
        let last = self.local.iter().rposition(|local| !local)?;
        Some(self.schedule[..last].to_vec())
    }

    /// Why a waiting process cannot go, in words ("waits for lock l
    /// (held by main.2)").
    pub fn why_not(&self, id: &str, world: &World) -> String {
        match self.gk.waiting().get(id) {
            Some(w) => match w.waits_for.as_deref() {
                Some(blocked) => waits_for_words(blocked, &lock_holders(world)),
                None => "must wait until another process moves".into(),
            },
            None => "cannot go now".into(),
        }
    }
}

/// Who holds each held lock.
fn lock_holders(world: &World) -> BTreeMap<String, String> {
    world
        .locks
        .values()
        .filter_map(|l| Some((l.name.clone(), l.holder.clone()?)))
        .collect()
}

/// "lock:l" → "waits for lock l", with who holds it when known.
pub fn waits_for_words(blocked: &str, holders: &BTreeMap<String, String>) -> String {
    let (kind, what) = blocked.split_once(':').unwrap_or((blocked, ""));
    let held = |lock: &str| {
        holders
            .get(lock)
            .map(|h| format!(" (held by {h})"))
            .unwrap_or_default()
    };
    match kind {
        "lock" => format!("waits for lock {what}{}", held(what)),
        "join" => format!("waits for {what} to end"),
        "queue-get" => format!("waits for an item in queue {what}"),
        "queue-put" => format!("waits for room in queue {what}"),
        "recv" => format!("waits for a message on {what}"),
        "wait" => "waits for a child to end".into(),
        "pool-tasks" => format!("waits for a task of pool {what}"),
        "pool-results" => format!("waits for a result of pool {what}"),
        _ => format!("waits for {blocked}"),
    }
}

/// The number each process (or thread) is picked by (key 1–9), stable
/// for the whole run: the order they appeared in (the runner has none).
pub fn step_numbers(world: &World) -> BTreeMap<String, usize> {
    let mut ids: Vec<(u64, &str)> = world
        .processes
        .values()
        .filter(|p| p.id != RUNNER_ID)
        .flat_map(|p| {
            std::iter::once((p.spawn_order, p.id.as_str()))
                .chain(p.threads.iter().map(|t| (t.spawn_order, t.name.as_str())))
        })
        .collect();
    ids.sort();
    ids.into_iter()
        .enumerate()
        .map(|(i, (_, id))| (id.to_string(), i + 1))
        .collect()
}

/// What the views need to draw step mode.
#[derive(Default)]
pub struct StepCtx {
    /// Pick numbers (keys 1–9), by process.
    pub numbers: BTreeMap<String, usize>,
    /// The processes waiting for the user now, with `None` when it may go
    /// or why it may not. Empty unless the run waits for the user and the
    /// view shows the newest moment.
    pub choices: BTreeMap<String, Option<String>>,
}

impl StepCtx {
    pub fn new(world: &World, gated: Option<&Gated>, live_view: bool) -> StepCtx {
        let mut ctx = StepCtx {
            numbers: step_numbers(world),
            choices: BTreeMap::new(),
        };
        let Some(g) = gated.filter(|g| g.awaiting_user && g.manual() && live_view) else {
            return ctx;
        };
        for c in &g.candidates {
            let why = (!c.enabled).then(|| g.why_not(&c.id, world));
            ctx.choices.insert(c.id.clone(), why);
        }
        ctx
    }

    /// Whether `id` may be picked now.
    pub fn can_pick(&self, id: &str) -> bool {
        matches!(self.choices.get(id), Some(None))
    }
}

/// Text fields of the step bar.
#[derive(Default)]
pub struct StepBar {
    pub save_path: String,
    pub load_path: String,
    /// Which path field is open.
    pub open: Option<FileAction>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    Save,
    Load,
}

/// The bar over the stage for gated runs: what to do now, Undo, Run to
/// end, Save and Load schedule.
pub fn step_bar(ui: &mut Ui, app: &ChromeCtx, bar: &mut StepBar, cmds: &mut Vec<Command>) {
    let big = app.presenter;
    let text = |s: &str| {
        let t = RichText::new(s);
        if big { t.strong() } else { t }
    };
    let (steps, awaiting, manual, replaying, has_choice) = match app.gated {
        Some(g) => (
            g.schedule.len(),
            g.awaiting_user,
            g.manual(),
            g.replaying(),
            g.undo_prefix().is_some(),
        ),
        None => (0, false, false, false, false),
    };
    let running = app.run.is_running();
    let gated = app.gated.is_some();
    ui.horizontal_wrapped(|ui| {
        let (what, color) = if app.rec.live.deadlock.is_some() {
            (
                "Deadlock: nobody can go. Undo to try another order.".to_string(),
                super::theme::okabe_ito::VERMILLION,
            )
        } else if replaying {
            (
                format!("replaying the schedule… step {steps}"),
                app.theme.text,
            )
        } else if let (true, true, true, Some(news)) = (
            running,
            awaiting,
            manual,
            app.gated.and_then(|g| g.news.as_ref()),
        ) {
            (
                format!("Step {}: stopped at {news}. Your turn.", steps + 1),
                app.theme.text,
            )
        } else if let (true, true, true, Some(n)) = (
            running,
            awaiting,
            manual,
            app.gated
                .map(|g| g.replayed)
                .filter(|n| *n > 0 && *n == steps),
        ) {
            (
                if big {
                    format!("Replayed {n} steps (fresh run). Step {}: your turn.", steps + 1)
                } else {
                    format!(
                        "Replayed {n} steps in a fresh run (new processes, new pids). Step {}: your turn.",
                        steps + 1
                    )
                },
                app.theme.text,
            )
        } else if running && awaiting && manual {
            (
                if big {
                    format!("Step {}: click a yellow process (or press its number)", steps + 1)
                } else {
                    format!(
                        "Step {}: your turn. Click a yellow process (or press its number): it takes one step.",
                        steps + 1
                    )
                },
                app.theme.text,
            )
        } else if running && !gated {
            (
                "Step mode starts with the next run: press ⟲ Restart.".to_string(),
                app.theme.text,
            )
        } else if running && !manual {
            ("the seeded scheduler picks…".to_string(), app.theme.text)
        } else if running {
            (format!("step {steps}…"), app.theme.text)
        } else if gated {
            (
                format!("the run ended after {steps} steps"),
                app.theme.weak_text,
            )
        } else {
            (
                "Step mode: press ▶ Run, then pick who goes next.".to_string(),
                app.theme.weak_text,
            )
        };
        ui.label(text(&what).color(color));
        ui.separator();
        if ui
            .add_enabled(has_choice, egui::Button::new(text(UNDO)))
            .on_hover_text("One step back: run again and replay every step but the last, then go on by hand (key U)")
            .clicked()
        {
            cmds.push(Command::Undo);
        }
        if ui
            .add_enabled(running && manual, egui::Button::new(text(RUN_UNTIL_NEWS)))
            .on_hover_text(
                "Let the seeded scheduler go on until something happens: a lost update, \
                 a process that must wait, a deadlock (key N)",
            )
            .clicked()
        {
            cmds.push(Command::RunUntilNews);
        }
        if ui
            .add_enabled(running && manual, egui::Button::new(text(RUN_TO_END)))
            .on_hover_text("Let the seeded scheduler finish the run")
            .clicked()
        {
            cmds.push(Command::RunToEnd);
        }
        let toggle = |ui: &mut Ui, open: &mut Option<FileAction>, which, label: &str, enabled| {
            if ui
                .add_enabled(
                    enabled,
                    egui::Button::selectable(*open == Some(which), text(label)),
                )
                .clicked()
            {
                *open = if *open == Some(which) {
                    None
                } else {
                    Some(which)
                };
            }
        };
        // Files are desk work: on a projector only with the side panels.
        if big && !app.show_side_panels {
            return;
        }
        toggle(
            ui,
            &mut bar.open,
            FileAction::Save,
            SAVE_SCHEDULE,
            steps > 0,
        );
        toggle(
            ui,
            &mut bar.open,
            FileAction::Load,
            LOAD_SCHEDULE,
            app.picked.is_some(),
        );
    });
    // The list of steps is desk work too on a projector (it comes back
    // with the side panels): one row of step bar leaves the stage its room.
    if gated && (!big || app.show_side_panels) {
        step_list(ui, app, steps, cmds);
    }
    match bar.open {
        Some(FileAction::Save) => {
            if bar.save_path.is_empty() {
                bar.save_path = default_schedule_path(app);
            }
            ui.horizontal(|ui| {
                ui.label("save to");
                let r = ui.add(egui::TextEdit::singleline(&mut bar.save_path).desired_width(320.0));
                let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Save").clicked() || enter {
                    cmds.push(Command::SaveSchedule(PathBuf::from(bar.save_path.trim())));
                }
            });
        }
        Some(FileAction::Load) => {
            ui.horizontal(|ui| {
                ui.label("schedule file");
                let r = ui.add(
                    egui::TextEdit::singleline(&mut bar.load_path)
                        .hint_text("e.g. a file forkscope explore wrote")
                        .desired_width(320.0),
                );
                let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Load and replay").clicked() || enter {
                    cmds.push(Command::LoadSchedule(PathBuf::from(bar.load_path.trim())));
                }
            });
        }
        None => {}
    }
}

/// Heading of the step list.
pub fn step_list_title(n: usize) -> String {
    format!("Steps ({n})")
}

/// A row of the step list: "3. main.1: read counter".
pub fn step_words(s: &super::steps::Step) -> String {
    format!("{}. {}: {}", s.n, s.who, s.action)
}

/// The steps so far, newest at the bottom: click one to return to just
/// after it (a fresh run replays the steps up to it).
fn step_list(ui: &mut Ui, app: &ChromeCtx, current: usize, cmds: &mut Vec<Command>) {
    let Some(list) = super::steps::steps(&app.rec.log) else {
        return;
    };
    egui::CollapsingHeader::new(step_list_title(list.len()))
        .id_salt("step list")
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("step list scroll")
                .max_height(if app.presenter { 110.0 } else { 160.0 })
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for s in &list {
                        let words = step_words(s);
                        if ui
                            .selectable_label(s.n == current, words)
                            .on_hover_text(format!(
                                "Return to just after step {}: a fresh run replays the first {} steps",
                                s.n, s.n
                            ))
                            .clicked()
                        {
                            cmds.push(Command::ReturnToStep(s.n));
                        }
                    }
                });
        });
}

fn default_schedule_path(app: &ChromeCtx) -> String {
    let name = app
        .picked
        .map_or("run", |p| p.loaded.scenario.name.as_str());
    // Not the temp directory: a predictable name there may be someone
    // else's symlink.
    crate::lab::schedule::default_dir()
        .join(format!("{name}.schedule"))
        .display()
        .to_string()
}
