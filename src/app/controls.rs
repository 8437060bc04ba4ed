//! The controls: the toolbar (run, stop, restart, time scale, pause/play,
//! presenter) and the left panel (scenario picker with explanations, the
//! parameter editor, opening a file).

use super::{App, Command, RunState};
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
/// The menu of panels (one checkbox each).
pub const PANELS: &str = "☰ Panels";
/// The same on a projector, where the toolbar has no room for the word
/// (the menu there also holds Open… and the recent files).
pub const PANELS_PRESENTER: &str = "☰";
pub const STAGE_TAB: &str = "Stage";
pub const MANY_RUNS_TAB: &str = "📊 Many runs";

pub fn toolbar(ui: &mut Ui, app: &mut App) {
    let running = app.run.is_running();
    let big = app.presenter;
    let text = |s: &str| {
        let t = RichText::new(s);
        if big { t.strong() } else { t }
    };
    ui.horizontal_wrapped(|ui| {
        ui.add_space(2.0);
        if !big {
            let mut cmds = Vec::new();
            super::files::file_menu(ui, app, &mut cmds);
            for c in cmds {
                app.command(c);
            }
        }
        if ui
            .add_enabled(
                !running && app.picked.is_some(),
                egui::Button::new(text(RUN)),
            )
            .on_hover_text("Run the scenario for real")
            .clicked()
        {
            app.command(Command::Run);
        }
        if ui
            .add_enabled(running, egui::Button::new(text(STOP)))
            .on_hover_text("Stop every process of the run")
            .clicked()
        {
            app.command(Command::Stop);
        }
        if ui
            .add_enabled(app.picked.is_some(), egui::Button::new(text(RESTART)))
            .on_hover_text("Stop and run again (key R)")
            .clicked()
        {
            app.command(Command::Restart);
        }
        super::quiz::toggle(ui, app, big);
        ui.separator();
        mode_selector(ui, app, &text);
        // A projector has no room to spare: the time scale stays on the
        // desk (it is in the side panel's reach with "Panels").
        if !app.presenter || app.show_side_panels {
            ui.separator();
            ui.label("sleeps ×");
            let mut scale = app.time_scale;
            let slider = egui::Slider::new(&mut scale, 0.1..=10.0)
                .logarithmic(true)
                .max_decimals(2);
            if ui
                .add(slider)
                .on_hover_text(
                    "Multiply every sleep of the scenario (takes effect at the next run)",
                )
                .changed()
            {
                app.command(Command::SetTimeScale(scale));
            }
        }
        ui.separator();
        let moving = app.time.follow || app.time.playing;
        let label = if moving { PAUSE } else { PLAY };
        if ui
            .button(text(label))
            .on_hover_text("Freeze or continue the picture (space); the processes keep running")
            .clicked()
        {
            app.command(Command::TogglePlay);
        }
        if ui
            .add_enabled(!app.time.follow, egui::Button::new(text(LIVE)))
            .on_hover_text("Show the newest moment again")
            .clicked()
        {
            app.command(Command::GoLive);
        }
        replay_controls(ui, app, &text);
        ui.separator();
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .selectable_label(app.presenter, text(PRESENTER))
                .on_hover_text("Large type, light high-contrast colours for a projector (P)")
                .clicked()
            {
                app.command(Command::TogglePresenter);
            }
            // The toolbar has one line: "+" and "−" are keys (and in the
            // Panels menu), and so is "?" on a projector.
            if !app.presenter
                && ui
                    .button(text(super::help::HELP_BUTTON))
                    .on_hover_text("Every key (? or F1)")
                    .clicked()
            {
                app.command(Command::View(super::settings::ViewCmd::ToggleHelp));
            }
            let mut cmds = Vec::new();
            let panels_title = if app.presenter {
                PANELS_PRESENTER
            } else {
                PANELS
            };
            ui.menu_button(text(panels_title), |ui| {
                if app.presenter {
                    super::files::file_items(ui, app, &mut cmds);
                    ui.separator();
                }
                super::settings::panels_menu(ui, app, &mut cmds);
            })
            .response
            .on_hover_text("Panels: show or hide the panels around the stage, one by one");
            for c in cmds {
                app.command(c);
            }

            // The status gets the room the buttons leave, cut there: it
            // never prints over them.
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
                status(ui, app);
            });
        });
    });
}

/// A replay speed as the menu shows it: `0.25×`.
pub fn speed_label(speed: f64) -> String {
    format!("{speed}×")
}

/// Slow motion: replay a finished or paused run from any moment (drag the
/// timeline there first) at a speed down to a thousandth.
fn replay_controls(ui: &mut Ui, app: &mut App, text: &dyn Fn(&str) -> RichText) {
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
    if ui
        .button(text(REPLAY))
        .on_hover_text("Replay from the start, or from the moment shown, at the speed chosen")
        .clicked()
    {
        app.command(Command::ReplayFrom(from));
    }
    // A projector's toolbar has room for one line: there "stop at ⚠" is
    // in the speed menu.
    let auto_in_menu = app.presenter && !app.show_side_panels;
    let auto_pause = |ui: &mut Ui, app: &mut App| {
        let mut auto = app.time.auto_pause;
        if ui
            .checkbox(&mut auto, text(AUTO_PAUSE))
            .on_hover_text("While replaying, pause by itself at each lost update, deadlock, zombie, error, and caption marked pause = true")
            .changed()
        {
            app.command(Command::SetAutoPause(auto));
        }
    };
    egui::ComboBox::from_id_salt("replay_speed")
        .selected_text(text(&speed_label(app.time.speed)))
        .width(60.0)
        .show_ui(ui, |ui| {
            for s in super::REPLAY_SPEEDS {
                if ui
                    .selectable_label(app.time.speed == s, speed_label(s))
                    .clicked()
                {
                    app.command(Command::SetSpeed(s));
                }
            }
            if auto_in_menu {
                ui.separator();
                auto_pause(ui, app);
            }
        })
        .response
        .on_hover_text(REPLAY_SPEED);
    if !auto_in_menu {
        auto_pause(ui, app);
    }
}

/// Free / Step / Seeded (with its seed): applies to the next run.
fn mode_selector(ui: &mut Ui, app: &mut App, text: &dyn Fn(&str) -> RichText) {
    use super::lab::Mode;
    // A projector has no room for the label; the buttons say enough.
    if !app.presenter {
        ui.label("order:").on_hover_text(
            "Who decides which process takes the next step (applies to the next run)",
        );
    }
    for m in [Mode::Free, Mode::Step, Mode::Seeded] {
        if ui
            .selectable_label(app.mode == m, text(m.label()))
            .on_hover_text(m.help())
            .clicked()
            && app.mode != m
        {
            app.command(Command::SetMode(m));
        }
    }
    if app.mode == Mode::Seeded {
        let mut seed = app.seed;
        let r = ui
            .add(egui::DragValue::new(&mut seed).prefix("seed "))
            .on_hover_text("The same seed gives the same interleaving and the same result");
        if r.changed() {
            app.command(Command::SetSeed(seed));
        }
    }
}

fn status(ui: &mut Ui, app: &App) {
    match &app.run {
        RunState::Idle => {
            ui.weak("ready");
        }
        RunState::Running {
            session, stopping, ..
        } => {
            let s = session.started.elapsed().as_secs_f64();
            if *stopping {
                ui.label(format!("stopping… {s:.1} s"));
            } else {
                ui.label(
                    RichText::new(format!("running {s:.1} s"))
                        .color(app.theme().ink(super::theme::okabe_ito::BLUISH_GREEN)),
                );
            }
        }
        RunState::Finished {
            code,
            stopped,
            duration,
        } => {
            let s = duration.as_secs_f64();
            let what = match (stopped, code) {
                (true, _) => format!("stopped after {s:.1} s"),
                (false, Some(0)) => format!("finished in {s:.1} s: main exit 0"),
                (false, Some(c)) => format!("finished in {s:.1} s: main exit {c}"),
                (false, None) => format!("finished in {s:.1} s"),
            };
            // Cut with "…" where the buttons begin (the full text on hover).
            ui.add(egui::Label::new(what.clone()).truncate())
                .on_hover_text(what);
        }
    }
    if let Some(path) = app.opened.as_ref().filter(|_| !app.presenter) {
        let name = path
            .file_name()
            .map_or(path.as_os_str(), |n| n)
            .to_string_lossy();
        ui.label(format!("recording {name} (nothing runs)"));
    }
    if !app.time.follow {
        let t = app.view_t_ns();
        let t0 = app.rec.t_range().map_or(t, |(lo, _)| lo);
        let shown = t.saturating_sub(t0) as f64 / 1e9;
        let what = if app.time.playing {
            format!(
                "▶ replaying at {}: t = {shown:.3} s",
                speed_label(app.time.speed)
            )
        } else {
            format!("⏸ showing t = {shown:.2} s")
        };
        ui.label(RichText::new(what).color(app.theme().ink(super::theme::okabe_ito::VERMILLION)));
    }
    if !app.collector_problems.is_empty() {
        ui.label(
            RichText::new(format!("⚠ {}", app.collector_problems))
                .color(app.theme().ink(super::theme::okabe_ito::VERMILLION)),
        );
    }
    if let Some(s) = &app.status {
        ui.label(RichText::new(s).color(app.theme().ink(super::theme::okabe_ito::VERMILLION)));
    }
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

pub fn picker(ui: &mut Ui, app: &mut App) {
    ui.heading("Scenarios");
    let picked_name = app
        .picked
        .as_ref()
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
                    app.command(Command::Pick((*name).to_string()));
                }
            }
        });
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("picked")
        .show(ui, |ui| {
            picked(ui, app);
            ui.separator();
            open_file(ui, app);
        });
}

fn picked(ui: &mut Ui, app: &mut App) {
    let Some(p) = app.picked.as_ref() else {
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
                .color(app.theme().ink(super::theme::okabe_ito::VERMILLION)),
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
    for c in changes {
        app.command(c);
    }
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

fn open_file(ui: &mut Ui, app: &mut App) {
    ui.strong("Open a scenario file, a recording or a Python program");
    let mut open = false;
    ui.horizontal(|ui| {
        let r = ui.add(
            egui::TextEdit::singleline(&mut app.file_path)
                .hint_text("scenario.toml, run.jsonl or prog.py")
                .desired_width(180.0),
        );
        open |= r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        open |= ui.button("Open").clicked();
    });
    if open && !app.file_path.trim().is_empty() {
        let path = std::path::PathBuf::from(app.file_path.trim());
        app.command(Command::File(super::files::FileCmd::Open(path)));
    }
    if let Some(e) = &app.pick_error {
        ui.label(RichText::new(e).color(app.theme().ink(super::theme::okabe_ito::VERMILLION)));
    }
}
