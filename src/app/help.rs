//! The "?" overlay: every key of the app, in one table, over the stage.
//! The keys the app's other parts read (space, R, 1–9, U…) are listed
//! here too, so the table is the one place a lecturer looks.

use super::settings::{Panel, ViewCmd};
use super::{App, Command};
use egui::{Key, RichText};

/// The overlay's title (and the toolbar button's hover text).
pub const KEYS_TITLE: &str = "Keys";
/// The toolbar button that opens it.
pub const HELP_BUTTON: &str = "?";

/// (keys, what they do), in the order shown.
pub fn key_table() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = [
        ("? or F1", "show or hide this list of keys"),
        (
            "Space",
            "freeze or continue the picture (the processes keep running)",
        ),
        ("R", "stop and run again"),
        (
            "+ / −",
            "larger or smaller: the stage's words and the panels",
        ),
        (
            "P",
            "presenter look: large type, light colours, the stage alone",
        ),
        ("F11", "full screen on or off (the look stays as it is)"),
        (
            "Ctrl+O",
            "open a scenario (.toml), a recording (.jsonl) or a Python program (.py)",
        ),
        (
            "1 – 9",
            "step mode: the process (or thread) with that number takes its step",
        ),
        (
            "U",
            "step mode: undo the last step (the run is replayed without it)",
        ),
        (
            "N",
            "step mode: run on until something happens (a lost update, a block, a deadlock)",
        ),
        ("1 – 6", "a quiz question: pick that choice"),
        ("Enter", "in a field (a number, a path): take what is typed"),
        ("Esc", "close this list, a menu or a question"),
    ]
    .into_iter()
    .map(|(k, w)| (k.to_string(), w.to_string()))
    .collect();
    for p in Panel::ALL {
        rows.push((
            format!("{:?}", p.key()),
            format!("show or hide the {} panel", p.label().to_lowercase()),
        ));
    }
    rows
}

impl App {
    /// The keys this part of the app reads: help, presenter, full screen,
    /// open, and one per panel. (Typing in a field is not a key press.)
    pub(super) fn view_keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (help, presenter, fullscreen, open, esc) = ctx.input(|i| {
            (
                i.key_pressed(Key::Questionmark)
                    || i.key_pressed(Key::F1)
                    || (i.modifiers.shift && i.key_pressed(Key::Slash)),
                i.key_pressed(Key::P) && !i.modifiers.any(),
                i.key_pressed(Key::F11),
                i.modifiers.command && i.key_pressed(Key::O),
                i.key_pressed(Key::Escape),
            )
        });
        if help {
            self.commands.push(Command::View(ViewCmd::ToggleHelp));
        }
        if esc && self.help_open {
            self.help_open = false;
        }
        if presenter {
            self.commands.push(Command::TogglePresenter);
        }
        if fullscreen {
            self.commands.push(Command::View(ViewCmd::ToggleFullscreen));
        }
        if open {
            self.commands
                .push(Command::File(super::files::FileCmd::Dialog));
        }
        for p in Panel::ALL {
            if ctx.input(|i| i.key_pressed(p.key()) && !i.modifiers.any()) {
                self.commands.push(Command::View(ViewCmd::TogglePanel(p)));
            }
        }
    }
}

/// The overlay, when open; closing it is a command.
pub fn help_window(ctx: &egui::Context, open_now: bool, cmds: &mut Vec<Command>) {
    if !open_now {
        return;
    }
    let mut open = true;
    egui::Window::new(RichText::new(KEYS_TITLE).strong())
        .id(egui::Id::unique("keys_overlay"))
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| {
            egui::Grid::new("keys_grid")
                .num_columns(2)
                .spacing([24.0, 6.0])
                .striped(true)
                .show(ui, |ui| {
                    for (keys, what) in key_table() {
                        ui.label(RichText::new(keys).monospace().strong());
                        ui.label(what);
                        ui.end_row();
                    }
                });
        });
    if !open {
        cmds.push(Command::View(ViewCmd::ToggleHelp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a handler of the app reads (`Key::…` in the files that
    /// read keys) has its row in the "?" overlay: N was missing once.
    #[test]
    fn the_overlay_lists_every_key_the_app_reads() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("help.rs"),
            include_str!("quiz.rs"),
            include_str!("settings.rs"),
            include_str!("controls.rs"),
            include_str!("files.rs"),
            include_str!("lab.rs"),
        ];
        let shown: Vec<String> = key_table().into_iter().map(|(k, _)| k).collect();
        let row_for = |key: &str| -> Option<&str> {
            Some(match key {
                "Questionmark" | "Slash" | "F1" => "? or F1",
                "Plus" | "Equals" | "Minus" => "+ / −",
                "Space" => "Space",
                "Escape" => "Esc",
                "O" => "Ctrl+O",
                "Enter" => "Enter",
                k if k.starts_with("Num") => {
                    let n: u32 = k.trim_start_matches("Num").parse().ok()?;
                    if n <= 6 { "1 – 6" } else { "1 – 9" }
                }
                _ => return None,
            })
        };
        let mut missing = Vec::new();
        for src in sources {
            for (at, _) in src.match_indices("Key::") {
                let name: String = src[at + 5..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if name.is_empty() || name == "ALL" {
                    continue;
                }
                let ok = match row_for(&name) {
                    Some(row) => shown.iter().any(|s| s == row),
                    None => shown.contains(&name),
                };
                if !ok && !missing.contains(&name) {
                    missing.push(name);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys read but not in the overlay: {missing:?}"
        );
    }
}
