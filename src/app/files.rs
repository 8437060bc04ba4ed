//! Opening files: the native file dialog (`rfd`: the XDG desktop portal or
//! zenity, in a thread of its own so the window keeps drawing), the recent
//! files, the question before a running run is stopped for a file, and
//! the error of a file that cannot be opened, shown over the stage where
//! it cannot be missed.
//!
//! What a path opens is told by its name: `.jsonl`/`.ndjson` is a
//! recording, `.py` a Python program (traced as `forkscope trace` does),
//! anything else a scenario file.

use super::{App, ChromeCtx, Command, RunState, settings};
use crossbeam_channel::{Receiver, TryRecvError};
use egui::{RichText, Ui};
use std::path::{Path, PathBuf};

/// The toolbar's menu of files.
pub const FILE_MENU: &str = "File";
/// Opens the native dialog.
pub const OPEN_DIALOG: &str = "Open…";
/// The question before a running run is stopped for a file.
pub const STOP_AND_OPEN: &str = "Stop the run and open";
pub const KEEP_RUNNING: &str = "Keep the run";
/// The heading of an open error.
pub const CANNOT_OPEN: &str = "Cannot open the file";
/// The heading of the window that opens a typed path (no native dialog).
pub const OPEN_BY_PATH: &str = "Open a file";

/// What the file menu and the dialogs ask.
#[derive(Clone, Debug, PartialEq)]
pub enum FileCmd {
    /// Show the native "Open" dialog (or, without one, a path field).
    Dialog,
    /// Open this file (asks first if a run is going on).
    Open(PathBuf),
    /// The answer to "stop the run and open?".
    Confirm(bool),
    /// The open error was read.
    DismissError,
    ClearRecent,
}

/// The app's file state.
#[derive(Default)]
pub struct Files {
    /// Newest first, at most [`settings::MAX_RECENT`].
    pub recent: Vec<PathBuf>,
    /// A file waiting for the user's yes to stop the run.
    pub confirm: Option<PathBuf>,
    /// Why the last file could not be opened (shown until dismissed).
    pub error: Option<String>,
    /// The native dialog's answer, when it comes.
    dialog: Option<Receiver<Option<PathBuf>>>,
    /// No native dialog here: a window with a path field instead.
    pub by_path: Option<String>,
}

impl Files {
    /// Is the native dialog open?
    pub fn dialog_open(&self) -> bool {
        self.dialog.is_some()
    }

    fn remember(&mut self, path: &Path) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(settings::MAX_RECENT);
    }
}

/// What kind of file a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Recording,
    Python,
    Scenario,
}

pub fn kind_of(path: &Path) -> Kind {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if super::open::is_recording_path(&name) {
        Kind::Recording
    } else if name.ends_with(".py") {
        Kind::Python
    } else {
        Kind::Scenario
    }
}

/// Can a native dialog open here? The portal needs a session bus; zenity
/// must be on the PATH. (Without either, rfd would return nothing, as if
/// the user had cancelled.)
pub fn native_dialog_available() -> bool {
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    bus || on_path("zenity")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

impl App {
    pub(super) fn apply_file(&mut self, c: FileCmd) {
        match c {
            FileCmd::Dialog => self.open_dialog(),
            FileCmd::Open(path) => {
                self.files.by_path = None;
                if self.run.is_running() {
                    // Never stop a run without asking.
                    self.files.confirm = Some(path);
                } else {
                    self.open_now(&path);
                }
            }
            FileCmd::Confirm(yes) => {
                if let Some(path) = self.files.confirm.take()
                    && yes
                {
                    self.stop_now();
                    self.open_now(&path);
                }
            }
            FileCmd::DismissError => self.files.error = None,
            FileCmd::ClearRecent => self.files.recent.clear(),
        }
    }

    /// Opens `path` now (a run, if any, is stopped); an error is shown
    /// over the stage and next to the picker's Open field.
    pub fn open_now(&mut self, path: &Path) {
        let result = match kind_of(path) {
            Kind::Recording => {
                self.stop_now();
                self.open_recording(path).map(|()| {
                    // A recording does not say which scenario it ran.
                    self.picked = None;
                })
            }
            Kind::Python => {
                self.stop_now();
                self.open_python(path)
            }
            Kind::Scenario => {
                self.stop_now();
                let before = self.picked.take();
                self.pick(&path.to_string_lossy());
                match self.pick_error.take() {
                    Some(e) => {
                        self.picked = before;
                        Err(e)
                    }
                    None => {
                        self.clear_stage();
                        Ok(())
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                self.pick_error = None;
                self.files.error = None;
                self.files.remember(path);
            }
            Err(e) => {
                self.pick_error = Some(e.clone());
                self.files.error = Some(e);
            }
        }
    }

    /// Another scenario: the old run's picture goes (a stage never shows
    /// one scenario's processes under another's name).
    pub fn clear_stage(&mut self) {
        self.stop_now();
        let (log_budget, checkpoint_budget) = self.rec_budgets_bytes;
        self.rec = super::Recording::with_budgets(log_budget, checkpoint_budget);
        self.run = RunState::Idle;
        self.time.reset();
        self.selected = None;
        self.collector_problems.clear();
        self.deadlock_cycle.clear();
        self.deadlock_world = None;
        self.gated = None;
        self.opened = None;
        self.status = None;
        self.run_started = None;
        self.view_count = None;
    }

    fn open_dialog(&mut self) {
        if self.files.dialog.is_some() {
            return;
        }
        if !native_dialog_available() {
            self.files.by_path = Some(String::new());
            return;
        }
        let start_dir = self
            .files
            .recent
            .first()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let repaint = self.egui_ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("open-dialog".into())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new()
                    .set_title("Open a scenario, a recording or a Python program")
                    .add_filter("forkscope files", &["toml", "jsonl", "ndjson", "py"])
                    .add_filter("Scenario (.toml)", &["toml"])
                    .add_filter("Recording (.jsonl)", &["jsonl", "ndjson"])
                    .add_filter("Python program (.py)", &["py"]);
                if let Some(dir) = start_dir {
                    dialog = dialog.set_directory(dir);
                }
                let picked = dialog.pick_file();
                // The app may be gone: nobody to tell.
                let _ = tx.send(picked);
                if let Some(ctx) = repaint {
                    ctx.request_repaint();
                }
            });
        match spawned {
            Ok(_) => self.files.dialog = Some(rx),
            Err(e) => self.files.error = Some(format!("cannot show the file dialog: {e}")),
        }
    }

    /// Takes the native dialog's answer in (once per frame).
    pub(super) fn poll_dialog(&mut self) {
        let Some(rx) = self.files.dialog.as_ref() else {
            return;
        };
        match rx.try_recv() {
            Ok(Some(path)) => {
                self.files.dialog = None;
                self.apply_file(FileCmd::Open(path));
            }
            Ok(None) | Err(TryRecvError::Disconnected) => self.files.dialog = None,
            Err(TryRecvError::Empty) => {}
        }
    }
}

/// The question, the error and the path window, over everything: a
/// function of the files' state (the path window's field is its own view
/// state) answering with commands.
pub fn file_windows(
    ctx: &egui::Context,
    files: &mut Files,
    theme: &super::theme::Theme,
    out: &mut Vec<Command>,
) {
    let mut cmds = Vec::new();
    if let Some(path) = files.confirm.clone() {
        egui::Modal::new(egui::Id::unique("confirm_open")).show(ctx, |ui| {
            ui.set_max_width(520.0);
            ui.heading("A run is going on");
            ui.label(format!(
                "Opening {} stops it: its processes are killed.",
                path.display()
            ));
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button(STOP_AND_OPEN).clicked() {
                    cmds.push(FileCmd::Confirm(true));
                }
                if ui.button(KEEP_RUNNING).clicked() {
                    cmds.push(FileCmd::Confirm(false));
                }
            });
        });
    } else if let Some(e) = files.error.clone() {
        let r = egui::Modal::new(egui::Id::unique("open_error")).show(ctx, |ui| {
            ui.set_max_width(620.0);
            ui.heading(
                RichText::new(format!("⚠ {CANNOT_OPEN}"))
                    .color(theme.ink(super::theme::okabe_ito::VERMILLION)),
            );
            ui.add(egui::Label::new(RichText::new(&e).monospace()).wrap());
            ui.add_space(8.0);
            if ui.button("OK").clicked() {
                cmds.push(FileCmd::DismissError);
            }
        });
        if r.should_close() {
            cmds.push(FileCmd::DismissError);
        }
    } else if let Some(mut text) = files.by_path.clone() {
        let r = egui::Modal::new(egui::Id::unique("open_by_path")).show(ctx, |ui| {
            ui.set_max_width(560.0);
            ui.heading(OPEN_BY_PATH);
            ui.label(
                "No file dialog here (it needs an XDG desktop portal or zenity): \
                 type the file's path.",
            );
            let field = ui.add(
                egui::TextEdit::singleline(&mut text)
                    .hint_text("scenario.toml, run.jsonl or program.py")
                    .desired_width(480.0),
            );
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                if (ui.button("Open").clicked() || enter) && !text.trim().is_empty() {
                    cmds.push(FileCmd::Open(PathBuf::from(text.trim())));
                }
                if ui.button("Cancel").clicked() {
                    files.by_path = None;
                }
            });
            if !recent_list(ui, &files.recent, &mut cmds) {
                ui.weak("(no recent files)");
            }
        });
        if files.by_path.is_some() {
            files.by_path = if r.should_close() { None } else { Some(text) };
        }
    }
    out.extend(cmds.into_iter().map(Command::File));
}

/// The recent files as buttons; false if there are none.
fn recent_list(ui: &mut Ui, recent: &[PathBuf], cmds: &mut Vec<FileCmd>) -> bool {
    if recent.is_empty() {
        return false;
    }
    ui.separator();
    ui.weak("Recent");
    for path in recent {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if ui
            .button(name)
            .on_hover_text(path.display().to_string())
            .clicked()
        {
            cmds.push(FileCmd::Open(path.clone()));
        }
    }
    true
}

/// The toolbar's File menu: Open…, the recent files, Save recording. (On
/// a projector these are in the Panels menu: the toolbar has one line.)
pub fn file_menu(ui: &mut Ui, app: &ChromeCtx, cmds: &mut Vec<Command>) -> egui::Response {
    ui.menu_button(FILE_MENU, |ui| file_items(ui, app, cmds))
        .response
}

/// What the File menu holds.
pub fn file_items(ui: &mut Ui, app: &ChromeCtx, cmds: &mut Vec<Command>) {
    {
        if ui
            .button(format!("{OPEN_DIALOG}   (Ctrl+O)"))
            .on_hover_text("A scenario (.toml), a recording (.jsonl) or a Python program (.py)")
            .clicked()
        {
            cmds.push(Command::File(FileCmd::Dialog));
            ui.close();
        }
        let mut picked = Vec::new();
        if recent_list(ui, &app.files.recent, &mut picked) {
            if ui.small_button("Forget recent files").clicked() {
                picked.push(FileCmd::ClearRecent);
            }
        } else {
            ui.weak("(no recent files)");
        }
        if !picked.is_empty() {
            ui.close();
        }
        cmds.extend(picked.into_iter().map(Command::File));
        ui.separator();
        if ui
            .add_enabled(
                !app.rec.is_empty() && !app.run.is_running(),
                egui::Button::new(super::controls::SAVE_RECORDING),
            )
            .on_hover_text(format!(
                "Write this run's events to {} (open it again with forkscope --open FILE)",
                super::open::default_dir().display()
            ))
            .clicked()
        {
            cmds.push(Command::SaveRecording(super::open::default_recording_path(
                app.opened, app.picked,
            )));
            ui.close();
        }
    }
}
