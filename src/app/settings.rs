//! What the app remembers between launches (eframe persistence): the
//! scenario and its parameters, the mode and seed, presenter or not, which
//! panels show in each look, the zoom, the replay speed and the recent
//! files. The window's size and place are remembered by eframe itself.
//!
//! Nothing here is read or written by tests or by `--screenshot`: the
//! window's `run_gui` is the only place that loads and saves (and only
//! when persistence is on, see [`persistence_on`]).

use super::{App, Command, lab};
use crate::protocol::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The key the settings are stored under.
pub const KEY: &str = "forkscope-settings";
/// Set (to anything) to keep the app from reading or writing settings.
pub const NO_SETTINGS_ENV: &str = "FORKSCOPE_NO_SETTINGS";
/// Recent files kept in the menu.
pub const MAX_RECENT: usize = 8;

/// One of the panels around the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Panel {
    /// The scenario list, parameters and "Open" (left).
    Picker,
    /// What the selected process is doing (right, top).
    Inspector,
    /// The program's source with a marker per process (right).
    Source,
    /// The timeline (bottom, right).
    Timeline,
    /// What the processes printed (bottom).
    Output,
}

impl Panel {
    pub const ALL: [Panel; 5] = [
        Panel::Picker,
        Panel::Inspector,
        Panel::Source,
        Panel::Timeline,
        Panel::Output,
    ];

    /// As the Panels menu and the "?" overlay name it.
    pub fn label(self) -> &'static str {
        match self {
            Panel::Picker => "Scenarios",
            Panel::Inspector => "Inspector",
            Panel::Source => "Source",
            Panel::Timeline => "Timeline",
            Panel::Output => "Output",
        }
    }

    /// Its key (with the panel's name in the "?" overlay).
    pub fn key(self) -> egui::Key {
        match self {
            Panel::Picker => egui::Key::L,
            Panel::Inspector => egui::Key::I,
            Panel::Source => egui::Key::S,
            Panel::Timeline => egui::Key::T,
            Panel::Output => egui::Key::O,
        }
    }
}

/// Which panels show (one set per look).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Panels {
    pub picker: bool,
    pub inspector: bool,
    pub source: bool,
    pub timeline: bool,
    pub output: bool,
}

impl Panels {
    /// At a desk: everything.
    pub const DESK: Panels = Panels {
        picker: true,
        inspector: true,
        source: true,
        timeline: true,
        output: true,
    };
    /// On a projector: the stage, and what the processes print under it.
    pub const PRESENTER: Panels = Panels {
        picker: false,
        inspector: false,
        source: false,
        timeline: false,
        output: true,
    };

    pub fn get(&self, p: Panel) -> bool {
        match p {
            Panel::Picker => self.picker,
            Panel::Inspector => self.inspector,
            Panel::Source => self.source,
            Panel::Timeline => self.timeline,
            Panel::Output => self.output,
        }
    }

    pub fn set(&mut self, p: Panel, on: bool) {
        match p {
            Panel::Picker => self.picker = on,
            Panel::Inspector => self.inspector = on,
            Panel::Source => self.source = on,
            Panel::Timeline => self.timeline = on,
            Panel::Output => self.output = on,
        }
    }
}

impl Default for Panels {
    fn default() -> Self {
        Panels::DESK
    }
}

/// The panels of both looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PanelSets {
    pub desk: Panels,
    pub presenter: Panels,
}

impl Default for PanelSets {
    fn default() -> Self {
        PanelSets {
            desk: Panels::DESK,
            presenter: Panels::PRESENTER,
        }
    }
}

impl PanelSets {
    pub fn of(&self, presenter: bool) -> &Panels {
        if presenter {
            &self.presenter
        } else {
            &self.desk
        }
    }

    pub fn of_mut(&mut self, presenter: bool) -> &mut Panels {
        if presenter {
            &mut self.presenter
        } else {
            &mut self.desk
        }
    }
}

/// How the stage looks and which panels show: view commands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ViewCmd {
    /// Full screen on or off (F11); the look stays as it is.
    ToggleFullscreen,
    /// Show or hide one panel of the current look.
    TogglePanel(Panel),
    /// The "?" overlay with every key.
    ToggleHelp,
}

/// What is remembered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// A built-in's name or a file's path.
    pub scenario: Option<String>,
    /// The parameters set for it.
    pub params: BTreeMap<String, Value>,
    /// "Free", "Step" or "Seeded".
    pub mode: String,
    pub seed: u64,
    pub time_scale: f64,
    pub presenter: bool,
    pub panels: PanelSets,
    pub zoom: f32,
    pub replay_speed: f64,
    pub recent: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scenario: None,
            params: BTreeMap::new(),
            mode: lab::Mode::Free.label().into(),
            seed: 1,
            time_scale: 1.0,
            presenter: false,
            panels: PanelSets::default(),
            zoom: 1.0,
            replay_speed: 1.0,
            recent: Vec::new(),
        }
    }
}

/// Are settings read and written in this launch? Not for `--screenshot`
/// (a picture must not depend on the last session) nor when
/// `FORKSCOPE_NO_SETTINGS` is set.
pub fn persistence_on(args: &super::GuiArgs) -> bool {
    args.screenshot.is_none() && std::env::var_os(NO_SETTINGS_ENV).is_none()
}

impl App {
    /// What would be remembered now.
    pub fn settings(&self) -> Settings {
        let scenario = self.picked.as_ref().map(|p| {
            if p.loaded.builtin {
                p.loaded.scenario.name.clone()
            } else {
                p.loaded.origin.clone()
            }
        });
        Settings {
            scenario,
            params: self
                .picked
                .as_ref()
                .map(|p| p.params.clone())
                .unwrap_or_default(),
            mode: self.mode.label().into(),
            seed: self.seed,
            time_scale: self.time_scale,
            presenter: self.presenter,
            panels: self.panels,
            zoom: self.zoom,
            replay_speed: self.time.speed,
            recent: self.files.recent.clone(),
        }
    }

    /// Takes remembered settings back, except what the command line said
    /// (its scenario, `--set`s, mode, seed, time scale, presenter). A
    /// scenario that cannot be loaded any more is skipped (the default
    /// stays), and so is a parameter it no longer has.
    pub fn restore_settings(&mut self, s: Settings, args: &super::GuiArgs) {
        let told_what_to_show = args.scenario.is_some()
            || args.open.is_some()
            || args.trace.is_some()
            || args.many_runs.is_some()
            || args.schedule.is_some();
        let python = s.scenario.as_deref().is_some_and(|t| {
            super::files::kind_of(std::path::Path::new(t)) == super::files::Kind::Python
        });
        if !told_what_to_show
            && python
            && let Some(target) = s.scenario.as_deref()
        {
            // A program that is gone (or no Python): the default stays.
            let _ = self.open_python(std::path::Path::new(target));
        } else if !told_what_to_show && let Some(target) = s.scenario.as_deref() {
            let before = self.picked.take();
            self.pick(target);
            if self.pick_error.take().is_some() || self.picked.is_none() {
                self.picked = before;
            } else if let Some(p) = self.picked.as_mut() {
                for (k, v) in &s.params {
                    let set = [(k.clone(), v.to_string())];
                    if let Ok(params) = crate::scenario::resolve_params(&p.loaded.scenario, &set)
                        && let Some(v) = params.get(k)
                    {
                        p.params.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if args.mode.is_none() {
            self.mode = [lab::Mode::Free, lab::Mode::Step, lab::Mode::Seeded]
                .into_iter()
                .find(|m| m.label() == s.mode)
                .unwrap_or_default();
        }
        if args.seed.is_none() {
            self.seed = s.seed;
        }
        if args.time_scale.is_none() && s.time_scale.is_finite() {
            self.time_scale = s.time_scale.clamp(0.1, 10.0);
        }
        if !args.presenter {
            self.presenter = s.presenter;
        }
        self.panels = s.panels;
        self.show_side_panels = self.panels.presenter.picker;
        if s.zoom.is_finite() {
            self.zoom = s.zoom.clamp(super::theme::MIN_ZOOM, super::theme::MAX_ZOOM);
        }
        if s.replay_speed.is_finite() {
            self.time.speed = s.replay_speed.clamp(super::REPLAY_SPEEDS[0], 1.0);
        }
        self.files.recent = s.recent;
        self.files.recent.truncate(MAX_RECENT);
    }

    /// eframe's `save`: the settings into its storage (when on).
    pub fn save_settings(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, KEY, &self.settings());
        }
    }

    /// The view commands.
    pub(super) fn apply_view(&mut self, c: ViewCmd, ctx: Option<&egui::Context>) {
        match c {
            ViewCmd::ToggleFullscreen => {
                self.fullscreen = !self.fullscreen;
                if let Some(ctx) = ctx {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(self.fullscreen));
                }
            }
            ViewCmd::TogglePanel(p) => {
                let panels = self.panels.of_mut(self.presenter);
                panels.set(p, !panels.get(p));
                self.show_side_panels = self.panels.presenter.picker;
            }
            ViewCmd::ToggleHelp => self.help_open = !self.help_open,
        }
    }

    /// The desk's side panels all at once, in presenter mode.
    pub(super) fn toggle_side_panels(&mut self) {
        let p = &mut self.panels.presenter;
        let on = !p.picker;
        p.picker = on;
        p.inspector = on;
        p.source = on;
        self.show_side_panels = on;
    }
}

/// The Panels menu: a checkbox per panel of the current look.
pub fn panels_menu(ui: &mut egui::Ui, app: &super::ChromeCtx, cmds: &mut Vec<Command>) {
    let panels = app.panels.of(app.presenter);
    for p in Panel::ALL {
        let mut on = panels.get(p);
        let key = format!("{:?}", p.key());
        if ui
            .checkbox(&mut on, format!("{}  ({key})", p.label()))
            .clicked()
        {
            cmds.push(Command::View(ViewCmd::TogglePanel(p)));
        }
    }
    ui.separator();
    ui.horizontal(|ui| {
        if ui
            .button("−")
            .on_hover_text("Smaller stage words (−)")
            .clicked()
        {
            cmds.push(Command::Zoom(app.zoom / 1.1));
        }
        ui.label(format!("zoom {:.0} %", app.zoom * 100.0));
        if ui
            .button("+")
            .on_hover_text("Larger stage words (+)")
            .clicked()
        {
            cmds.push(Command::Zoom(app.zoom * 1.1));
        }
    });
    if ui
        .button(format!("{}   (?)", super::help::KEYS_TITLE))
        .clicked()
    {
        cmds.push(Command::View(ViewCmd::ToggleHelp));
    }
}
