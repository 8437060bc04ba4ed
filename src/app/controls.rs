//! The controls: the toolbar (run, stop, restart, time scale, pause/play,
//! presenter) and the left panel (scenario picker with explanations, the
//! parameter editor, opening a file).

use super::{ChromeCtx, Command, RunState};
use crate::protocol::Value;
use crate::scenario::{Param, catalog};
use egui::{RichText, Ui};

pub const RUN: &str = "▶ Run";
pub const STOP: &str = "■ Stop";
pub const RESTART: &str = "⟲ Restart";
pub const PAUSE: &str = "⏸ Pause";
pub const PLAY: &str = "▶ Play";
pub const LIVE: &str = "⏭ Live";
/// Replays the run shown from its start (or from the moment shown).
pub const REPLAY: &str = "⏮ Replay";
/// Replays pause by themselves at marked moments.
pub const AUTO_PAUSE: &str = "stop at ⚠";
/// The replay speed menu.
pub const REPLAY_SPEED: &str = "Replay speed (slow motion)";
/// Writes the run shown as JSON lines (as `forkscope run --record`).
pub const SAVE_RECORDING: &str = "Save recording";
pub const PRESENTER: &str = "Presenter";
/// The menu of panels (one checkbox each), zoom and keys; on a projector
/// also Open… and the recent files. No word: the toolbar has no room for
/// one at 1280 px (its hover text says "Panels").
pub const PANELS: &str = "☰";
pub const STAGE_TAB: &str = "Stage";
pub const MANY_RUNS_TAB: &str = "📊 Many runs";

/// The toolbar's own state: where each of its widgets went in the last
/// frame (points), for `--dump-layout` and the tests.
#[derive(Default)]
pub struct ToolbarView {
    pub items: Vec<ToolItem>,
    /// The width the whole status needs (points); it is cut with "…"
    /// only when its row has less room, never below [`MIN_STATUS_W`].
    pub status_need: f32,
}

/// One widget of the toolbar as drawn.
#[derive(Clone, Debug)]
pub struct ToolItem {
    /// `toolbar.run`, `toolbar.status`, …
    pub id: String,
    /// "button" (anything clickable), "tool_label" (words) or "status".
    pub kind: &'static str,
    pub rect: egui::Rect,
}

impl ToolbarView {
    fn put(&mut self, id: &str, kind: &'static str, r: &egui::Response) {
        self.items.push(ToolItem {
            id: format!("toolbar.{id}"),
            kind,
            rect: r.rect,
        });
    }

    /// The toolbar's widgets in window pixels, as `--dump-layout` writes
    /// them.
    pub fn layout_items(&self, px_per_pt: f32) -> Vec<super::layout::Item> {
        self.items
            .iter()
            .map(|t| super::layout::Item {
                id: t.id.clone(),
                kind: t.kind,
                rect: [
                    t.rect.min.x * px_per_pt,
                    t.rect.min.y * px_per_pt,
                    t.rect.max.x * px_per_pt,
                    t.rect.max.y * px_per_pt,
                ],
                font_px: None,
                key: false,
                parent: None,
                cut: false,
            })
            .collect()
    }
}

/// The status is never squeezed below this (points): with less room left
/// on the row it goes to a row of its own.
pub const MIN_STATUS_W: f32 = 150.0;

/// The toolbar: a function of the model (`ChromeCtx`) and its own state;
/// what the user asks for goes into `cmds`. Nothing in it overprints
/// anything else: the right-hand group (Panels, ?, Presenter) takes its
/// room first, the rest wraps to another row when the window is narrow,
/// and the status gets what is left of its row, cut with "…" (the whole
/// text on hover), or a row of its own.
pub fn toolbar(ui: &mut Ui, app: &ChromeCtx, view: &mut ToolbarView, cmds: &mut Vec<Command>) {
    view.items.clear();
    let big = app.presenter;
    let text = |s: &str| {
        let t = RichText::new(s);
        if big { t.strong() } else { t }
    };
    let full = ui.available_rect_before_wrap();
    let row_h = ui.spacing().interact_size.y;
    let first_row = egui::Rect::from_min_size(full.min, egui::vec2(full.width(), row_h));
    // The right-hand group first: the rest gets the room it leaves.
    let mut right = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(first_row)
            .layout(egui::Layout::right_to_left(egui::Align::Center)),
    );
    right_group(&mut right, app, view, cmds, &text);
    if app.presenter {
        right.add_space(8.0);
    } else {
        right.separator();
    }
    let right_rect = right.min_rect();
    let left_room = egui::Rect::from_min_max(
        full.min,
        egui::pos2(right_rect.min.x.max(full.min.x + 1.0), full.min.y + row_h),
    );
    ui.scope_builder(
        egui::UiBuilder::new()
            .max_rect(left_room)
            .layout(egui::Layout::left_to_right(egui::Align::Center).with_main_wrap(true)),
        |ui| {
            ui.add_space(2.0);
            left_group(ui, app, view, cmds, &text);
            status(ui, app, view);
        },
    );
    ui.expand_to_include_rect(right_rect);
}

/// Presenter, "?", Panels: at the right end of the first row.
fn right_group(
    ui: &mut Ui,
    app: &ChromeCtx,
    view: &mut ToolbarView,
    cmds: &mut Vec<Command>,
    text: &dyn Fn(&str) -> RichText,
) {
    let r = ui
        .selectable_label(app.presenter, text(PRESENTER))
        .on_hover_text("Large type, light high-contrast colours for a projector (P)");
    if r.clicked() {
        cmds.push(Command::TogglePresenter);
    }
    view.put("presenter", "button", &r);
    // "+" and "−" are keys (and in the Panels menu), and so is "?" on a
    // projector.
    if !app.presenter {
        let r = ui
            .button(text(super::help::HELP_BUTTON))
            .on_hover_text("Every key (? or F1)");
        if r.clicked() {
            cmds.push(Command::View(super::settings::ViewCmd::ToggleHelp));
        }
        view.put("help", "button", &r);
    }
    let r = ui
        .menu_button(text(PANELS), |ui| {
            if app.presenter {
                super::files::file_items(ui, app, cmds);
                ui.separator();
            }
            super::settings::panels_menu(ui, app, cmds);
        })
        .response
        .on_hover_text("Panels: show or hide the panels around the stage, one by one");
    view.put("panels", "button", &r);
}

/// File, Run, Stop, Restart, quiz, the order, sleeps, Pause/Play, Live,
/// Replay.
fn left_group(
    ui: &mut Ui,
    app: &ChromeCtx,
    view: &mut ToolbarView,
    cmds: &mut Vec<Command>,
    text: &dyn Fn(&str) -> RichText,
) {
    let running = app.run.is_running();
    let big = app.presenter;
    if !big {
        let r = super::files::file_menu(ui, app, cmds);
        view.put("file", "button", &r);
    }
    // A projector's toolbar keeps to one row at 1280 px: there Run and
    // Stop share a place (the one that can be pressed shows), Live shows
    // only when it can be pressed, and there are no separators.
    if !(big && running) {
        let r = ui
            .add_enabled(
                !running && app.picked.is_some(),
                egui::Button::new(text(RUN)),
            )
            .on_hover_text("Run the scenario for real");
        if r.clicked() {
            cmds.push(Command::Run);
        }
        view.put("run", "button", &r);
    }
    if !big || running {
        let r = ui
            .add_enabled(running, egui::Button::new(text(STOP)))
            .on_hover_text("Stop every process of the run");
        if r.clicked() {
            cmds.push(Command::Stop);
        }
        view.put("stop", "button", &r);
    }
    let r = ui
        .add_enabled(app.picked.is_some(), egui::Button::new(text(RESTART)))
        .on_hover_text("Stop and run again (key R)");
    if r.clicked() {
        cmds.push(Command::Restart);
    }
    view.put("restart", "button", &r);
    if let Some(r) = super::quiz::toggle(ui, app, big, cmds) {
        view.put("quiz", "button", &r);
    }
    if !big {
        ui.separator();
    }
    mode_selector(ui, app, view, cmds, text);
    // A projector has no room to spare: the time scale stays on the
    // desk (it is in the side panel's reach with "Panels").
    if !app.presenter || app.show_side_panels {
        ui.separator();
        let r = ui.label("sleeps ×");
        view.put("sleeps_label", "tool_label", &r);
        let mut scale = app.time_scale;
        let slider = egui::Slider::new(&mut scale, 0.1..=10.0)
            .logarithmic(true)
            .max_decimals(2);
        let r = ui
            .add(slider)
            .on_hover_text("Multiply every sleep of the scenario (takes effect at the next run)");
        if r.changed() {
            cmds.push(Command::SetTimeScale(scale));
        }
        view.put("sleeps", "button", &r);
    }
    if !big {
        ui.separator();
    }
    let moving = app.time.follow || app.time.playing;
    let label = if moving { PAUSE } else { PLAY };
    let r = ui
        .button(text(label))
        .on_hover_text("Freeze or continue the picture (space); the processes keep running");
    if r.clicked() {
        cmds.push(Command::TogglePlay);
    }
    view.put("play", "button", &r);
    if !big || !app.time.follow {
        let r = ui
            .add_enabled(!app.time.follow, egui::Button::new(text(LIVE)))
            .on_hover_text("Show the newest moment again");
        if r.clicked() {
            cmds.push(Command::GoLive);
        }
        view.put("live", "button", &r);
    }
    replay_controls(ui, app, view, cmds, text);
}

/// A replay speed as the menu shows it: `0.25×`.
pub fn speed_label(speed: f64) -> String {
    format!("{speed}×")
}

/// Slow motion: replay a finished or paused run from any moment (drag the
/// timeline there first) at a speed down to a thousandth.
fn replay_controls(
    ui: &mut Ui,
    app: &ChromeCtx,
    view: &mut ToolbarView,
    cmds: &mut Vec<Command>,
    text: &dyn Fn(&str) -> RichText,
) {
    let Some((t0, _)) = app.rec.t_range() else {
        return;
    };
    if app.run.is_running() && app.time.follow {
        return;
    }
    let from = if app.time.follow {
        t0
    } else {
        app.time.cursor_t_ns
    };
    let r = ui
        .button(text(REPLAY))
        .on_hover_text("Replay from the start, or from the moment shown, at the speed chosen");
    if r.clicked() {
        cmds.push(Command::ReplayFrom(from));
    }
    view.put("replay", "button", &r);
    // A projector's toolbar has room for one line: there "stop at ⚠" is
    // in the speed menu.
    let auto_in_menu = app.presenter && !app.show_side_panels;
    let auto_pause = |ui: &mut Ui, cmds: &mut Vec<Command>| {
        let mut auto = app.time.auto_pause;
        let r = ui
            .checkbox(&mut auto, text(AUTO_PAUSE))
            .on_hover_text("While replaying, pause by itself at each lost update, deadlock, zombie, error, and caption marked pause = true");
        if r.changed() {
            cmds.push(Command::SetAutoPause(auto));
        }
        r
    };
    let r = egui::ComboBox::from_id_salt("replay_speed")
        .selected_text(text(&speed_label(app.time.speed)))
        .width(60.0)
        .show_ui(ui, |ui| {
            for s in super::REPLAY_SPEEDS {
                if ui
                    .selectable_label(app.time.speed == s, speed_label(s))
                    .clicked()
                {
                    cmds.push(Command::SetSpeed(s));
                }
            }
            if auto_in_menu {
                ui.separator();
                auto_pause(ui, cmds);
            }
        })
        .response
        .on_hover_text(REPLAY_SPEED);
    view.put("speed", "button", &r);
    if !auto_in_menu {
        let r = auto_pause(ui, cmds);
        view.put("auto_pause", "button", &r);
    }
}

/// Free / Step / Seeded (with its seed): applies to the next run.
fn mode_selector(
    ui: &mut Ui,
    app: &ChromeCtx,
    view: &mut ToolbarView,
    cmds: &mut Vec<Command>,
    text: &dyn Fn(&str) -> RichText,
) {
    use super::lab::Mode;
    // A projector has no room for the label; the buttons say enough.
    if !app.presenter {
        let r = ui.label("order:").on_hover_text(
            "Who decides which process takes the next step (applies to the next run)",
        );
        view.put("order_label", "tool_label", &r);
    }
    // A projector's toolbar has room for one row: there the order is a
    // menu.
    if app.presenter {
        let r = egui::ComboBox::from_id_salt("order")
            .selected_text(text(app.mode.label()))
            .width(70.0)
            .show_ui(ui, |ui| {
                for m in [Mode::Free, Mode::Step, Mode::Seeded] {
                    if ui
                        .selectable_label(app.mode == m, m.label())
                        .on_hover_text(m.help())
                        .clicked()
                        && app.mode != m
                    {
                        cmds.push(Command::SetMode(m));
                    }
                }
            })
            .response
            .on_hover_text(
                "Who decides which process takes the next step (applies to the next run)",
            );
        view.put("mode", "button", &r);
    }
    for m in [Mode::Free, Mode::Step, Mode::Seeded]
        .into_iter()
        .filter(|_| !app.presenter)
    {
        let r = ui
            .selectable_label(app.mode == m, text(m.label()))
            .on_hover_text(m.help());
        if r.clicked() && app.mode != m {
            cmds.push(Command::SetMode(m));
        }
        view.put(&format!("mode.{}", m.label()), "button", &r);
    }
    if app.mode == Mode::Seeded {
        let mut seed = app.seed;
        let r = ui
            .add(egui::DragValue::new(&mut seed).prefix("seed "))
            .on_hover_text("The same seed gives the same interleaving and the same result");
        if r.changed() {
            cmds.push(Command::SetSeed(seed));
        }
        view.put("seed", "button", &r);
    }
}

/// What the status says, in pieces of one colour each.
pub fn status_parts(app: &ChromeCtx) -> Vec<(String, egui::Color32)> {
    use super::theme::okabe_ito::{BLUISH_GREEN, VERMILLION};
    let theme = app.theme;
    let mut parts = Vec::new();
    // On a projector one piece: the moment shown when it is not the
    // newest, else the run's state (the caption says how it ended).
    let run_words = !app.presenter || app.time.follow;
    match app.run {
        _ if !run_words => {}
        RunState::Idle => parts.push(("ready".to_string(), theme.weak_text)),
        RunState::Running {
            session, stopping, ..
        } => {
            let s = session.started.elapsed().as_secs_f64();
            if *stopping {
                parts.push((format!("stopping… {s:.1} s"), theme.text));
            } else {
                parts.push((format!("running {s:.1} s"), theme.ink(BLUISH_GREEN)));
            }
        }
        RunState::Finished {
            code,
            stopped,
            duration,
        } => {
            let s = duration.as_secs_f64();
            let what = match (stopped, code) {
                // A projector's toolbar is short of room: the caption says
                // how it ended in words.
                (true, _) if app.presenter => format!("stopped, {s:.1} s"),
                (false, Some(c)) if app.presenter => format!("{s:.1} s, exit {c}"),
                (false, None) if app.presenter => format!("{s:.1} s"),
                (true, _) => format!("stopped after {s:.1} s"),
                (false, Some(0)) => format!("finished in {s:.1} s: main exit 0"),
                (false, Some(c)) => format!("finished in {s:.1} s: main exit {c}"),
                (false, None) => format!("finished in {s:.1} s"),
            };
            parts.push((what, theme.text));
        }
    }
    if let Some(path) = app.opened.filter(|_| !app.presenter) {
        let name = path
            .file_name()
            .map_or(path.as_os_str(), |n| n)
            .to_string_lossy();
        parts.push((format!("recording {name} (nothing runs)"), theme.text));
    }
    if !app.time.follow {
        let t = app.view_t_ns;
        let t0 = app.rec.t_range().map_or(t, |(lo, _)| lo);
        let shown = t.saturating_sub(t0) as f64 / 1e9;
        let what = if app.time.playing && app.presenter {
            format!("▶ t = {shown:.3} s")
        } else if app.time.playing {
            format!(
                "▶ replaying at {}: t = {shown:.3} s",
                speed_label(app.time.speed)
            )
        } else if app.presenter {
            format!("⏸ t = {shown:.2} s")
        } else {
            format!("⏸ showing t = {shown:.2} s")
        };
        parts.push((what, theme.ink(VERMILLION)));
    }
    if !app.collector_problems.is_empty() {
        parts.push((
            format!("⚠ {}", app.collector_problems),
            theme.ink(VERMILLION),
        ));
    }
    if let Some(s) = app.status {
        parts.push((s.to_string(), theme.ink(VERMILLION)));
    }
    parts
}

/// The status: its pieces (one label each) in the room its row has left
/// (never less than [`MIN_STATUS_W`]: then on a row of its own), the last
/// one that does not fit cut with "…", clipped there; the whole text on
/// hover.
fn status(ui: &mut Ui, app: &ChromeCtx, view: &mut ToolbarView) {
    let parts = status_parts(app);
    let whole = parts
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join("   ");
    let font = egui::TextStyle::Body.resolve(ui.style());
    let gap = 12.0;
    let need = parts
        .iter()
        .map(|(t, c)| {
            ui.painter()
                .layout_no_wrap(t.clone(), font.clone(), *c)
                .size()
                .x
        })
        .sum::<f32>()
        + gap * parts.len().saturating_sub(1) as f32;
    view.status_need = need;
    let room = ui.available_rect_before_wrap().width();
    if need > room && room < MIN_STATUS_W {
        ui.end_row();
    }
    let room = ui.available_rect_before_wrap().width().max(1.0);
    let h = ui.spacing().interact_size.y;
    let size = egui::vec2(room.min(need + 1.0), h);
    let r = ui
        .allocate_ui_with_layout(
            size,
            egui::Layout::left_to_right(egui::Align::Center),
            |ui| {
                let room = egui::Rect::from_min_size(ui.max_rect().min, size);
                ui.set_clip_rect(room.intersect(ui.clip_rect()));
                ui.spacing_mut().item_spacing.x = gap;
                for (t, color) in &parts {
                    ui.add(egui::Label::new(RichText::new(t).color(*color)).truncate())
                        .on_hover_text(&whole);
                }
            },
        )
        .response;
    // What shows: the pieces, clipped to the room given.
    let shown = egui::Rect::from_min_size(
        r.rect.min,
        egui::vec2(r.rect.width().min(size.x), r.rect.height()),
    );
    view.items.push(ToolItem {
        id: "toolbar.status".into(),
        kind: "status",
        rect: shown,
    });
}

/// Over the centre: Stage / Many runs, and in step mode the step bar.
pub fn central_bar(
    ui: &mut Ui,
    app: &ChromeCtx,
    bar: &mut super::lab::StepBar,
    cmds: &mut Vec<Command>,
) {
    use super::{MainView, lab};
    let big = app.presenter;
    let lab_on = app.mode != lab::Mode::Free || app.gated.is_some();
    // Presenter mode gives the stage the room (Panels brings the tabs
    // back).
    if big && !app.show_side_panels && app.view == MainView::Stage && !lab_on {
        return;
    }
    let text = |s: &str| {
        let t = RichText::new(s);
        if big { t.strong() } else { t }
    };
    // On a projector, step mode's bar alone (the tabs come back with the
    // side panels): the stage keeps the room for 18 px words at 720p.
    let tabs = !(big && !app.show_side_panels && app.view == MainView::Stage);
    if tabs {
        ui.horizontal(|ui| {
            for (v, label) in [
                (MainView::Stage, STAGE_TAB),
                (MainView::ManyRuns, MANY_RUNS_TAB),
            ] {
                if ui.selectable_label(app.view == v, text(label)).clicked() {
                    cmds.push(Command::ShowView(v));
                }
            }
        });
    }
    if app.view == MainView::Stage && lab_on {
        lab::step_bar(ui, app, bar, cmds);
    }
    ui.separator();
}

/// Titles of the built-in scenarios, loaded once.
fn catalog_titles(ui: &Ui) -> std::sync::Arc<Vec<(&'static str, String)>> {
    let id = egui::Id::unique("forkscope_catalog_titles");
    if let Some(t) = ui.data(|d| d.get_temp(id)) {
        return t;
    }
    let titles: Vec<(&'static str, String)> = catalog::BUILTINS
        .iter()
        .map(|b| {
            let title = b
                .load()
                .map(|s| s.title)
                .unwrap_or_else(|e| format!("(broken: {e})"));
            (b.name, title)
        })
        .collect();
    let titles = std::sync::Arc::new(titles);
    ui.data_mut(|d| d.insert_temp(id, titles.clone()));
    titles
}

/// The picker's own state: the "Open file" field.
#[derive(Default)]
pub struct PickerView {
    pub file_path: String,
}

/// The left panel: the catalogue, the scenario picked with its parameters,
/// opening a file.
pub fn picker(ui: &mut Ui, app: &ChromeCtx, view: &mut PickerView, cmds: &mut Vec<Command>) {
    ui.heading("Scenarios");
    let picked_name = app
        .picked
        .filter(|p| p.loaded.builtin)
        .map(|p| p.loaded.scenario.name.clone());
    let titles = catalog_titles(ui);
    egui::ScrollArea::vertical()
        .id_salt("catalog")
        .max_height(ui.available_height() * 0.38)
        .show(ui, |ui| {
            for (name, title) in titles.iter() {
                let selected = picked_name.as_deref() == Some(*name);
                if ui
                    .selectable_label(selected, title.as_str())
                    .on_hover_text(*name)
                    .clicked()
                    && !selected
                {
                    cmds.push(Command::Pick((*name).to_string()));
                }
            }
        });
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("picked")
        .show(ui, |ui| {
            picked(ui, app, cmds);
            ui.separator();
            open_file(ui, app, view, cmds);
        });
}

fn picked(ui: &mut Ui, app: &ChromeCtx, cmds: &mut Vec<Command>) {
    let Some(p) = app.picked else {
        ui.weak("No scenario picked.");
        return;
    };
    let s = &p.loaded.scenario;
    ui.label(RichText::new(&s.title).strong().size(16.0));
    ui.weak(&p.loaded.origin);
    ui.label(s.explain.trim().replace("\n", " "));
    if s.params.is_empty() {
        return;
    }
    ui.add_space(6.0);
    let mut changes = Vec::new();
    ui.horizontal(|ui| {
        ui.strong("Parameters");
        if ui.small_button("reset").clicked() {
            changes.push(Command::ResetParams);
        }
    });
    for (name, param) in &s.params {
        let current = p.params.get(name).unwrap_or(&param.default).clone();
        if let Some(v) = param_editor(ui, name, param, current) {
            changes.push(Command::SetParam(name.clone(), v));
        }
        ui.weak(&param.help);
    }
    if p.needs_exec_consent() {
        ui.add_space(6.0);
        ui.label(
            RichText::new("This file runs real programs:")
                .color(app.theme.ink(super::theme::okabe_ito::VERMILLION)),
        );
        for prog in &s.exec_programs {
            ui.monospace(prog);
        }
        let mut yes = p.exec_confirmed;
        if ui
            .checkbox(&mut yes, "I trust this file: let it run them")
            .changed()
        {
            changes.push(Command::ConfirmExec(yes));
        }
    }
    cmds.extend(changes);
}

/// One row of the parameter editor; `Some` when the user changed it.
fn param_editor(ui: &mut Ui, name: &str, param: &Param, current: Value) -> Option<Value> {
    let mut out = None;
    ui.horizontal(|ui| {
        let label = ui.label(name).id;
        match current {
            Value::Bool(mut b) => {
                if ui.checkbox(&mut b, "").labelled_by(label).changed() {
                    out = Some(Value::Bool(b));
                }
            }
            Value::Int(mut i) => {
                let lo = param.min.unwrap_or(0.0) as i64;
                let hi = param.max.unwrap_or((lo + 100) as f64) as i64;
                let slider = egui::Slider::new(&mut i, lo..=hi.max(lo));
                if ui.add(slider).labelled_by(label).changed() {
                    out = Some(Value::Int(i));
                }
            }
            Value::Float(mut f) => {
                let lo = param.min.unwrap_or(0.0);
                let hi = param.max.unwrap_or(lo + 10.0);
                let slider = egui::Slider::new(&mut f, lo..=hi.max(lo));
                if ui.add(slider).labelled_by(label).changed() {
                    out = Some(Value::Float(f));
                }
            }
            other => {
                let mut text = other.to_string();
                if ui
                    .text_edit_singleline(&mut text)
                    .labelled_by(label)
                    .changed()
                {
                    out = Some(Value::Str(text));
                }
            }
        }
    });
    out
}

fn open_file(ui: &mut Ui, app: &ChromeCtx, view: &mut PickerView, cmds: &mut Vec<Command>) {
    ui.strong("Open a scenario file, a recording or a Python program");
    let mut open = false;
    ui.horizontal(|ui| {
        let r = ui.add(
            egui::TextEdit::singleline(&mut view.file_path)
                .hint_text("scenario.toml, run.jsonl or prog.py")
                .desired_width(180.0),
        );
        open |= r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        open |= ui.button("Open").clicked();
    });
    if open && !view.file_path.trim().is_empty() {
        let path = std::path::PathBuf::from(view.file_path.trim());
        cmds.push(Command::File(super::files::FileCmd::Open(path)));
    }
    if let Some(e) = app.pick_error {
        ui.label(RichText::new(e).color(app.theme.ink(super::theme::okabe_ito::VERMILLION)));
    }
}
