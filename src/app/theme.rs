//! Colours and sizes. Two looks: the normal dark one for a desk, and the
//! presenter one for a projector (light, high contrast, large type).
//!
//! Every colour comes from the Okabe-Ito palette, which stays distinct for
//! the common kinds of colour blindness; and no state is told by colour
//! alone: each also has an icon and a word.

use crate::model::{ExitStatus, ProcState, Process};
use egui::{Color32, Stroke};

/// Okabe & Ito (2008), "Color Universal Design".
pub mod okabe_ito {
    use egui::Color32;
    pub const ORANGE: Color32 = Color32::from_rgb(0xE6, 0x9F, 0x00);
    pub const SKY_BLUE: Color32 = Color32::from_rgb(0x56, 0xB4, 0xE9);
    pub const BLUISH_GREEN: Color32 = Color32::from_rgb(0x00, 0x9E, 0x73);
    pub const YELLOW: Color32 = Color32::from_rgb(0xF0, 0xE4, 0x42);
    pub const BLUE: Color32 = Color32::from_rgb(0x00, 0x72, 0xB2);
    pub const VERMILLION: Color32 = Color32::from_rgb(0xD5, 0x5E, 0x00);
    pub const REDDISH_PURPLE: Color32 = Color32::from_rgb(0xCC, 0x79, 0xA7);
    pub const GREY: Color32 = Color32::from_rgb(0x99, 0x99, 0x99);
}
use okabe_ito::*;

/// Zoom of the whole UI in presenter mode.
pub const PRESENTER_ZOOM: f32 = 1.6;
pub const MIN_ZOOM: f32 = 0.6;
pub const MAX_ZOOM: f32 = 3.0;

/// The look of one frame: chosen by the presenter toggle.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub presenter: bool,
    pub bg: Color32,
    pub panel: Color32,
    pub text: Color32,
    pub weak_text: Color32,
    pub edge: Color32,
    pub node_fill: Color32,
    pub reaped_fill: Color32,
    pub flash: Color32,
    /// Stroke width multiplier (thicker lines on a projector).
    pub line_width: f32,
}

impl Theme {
    pub fn new(presenter: bool) -> Self {
        if presenter {
            Theme {
                presenter,
                bg: Color32::WHITE,
                panel: Color32::from_gray(245),
                text: Color32::BLACK,
                weak_text: Color32::from_gray(60),
                edge: Color32::from_gray(40),
                node_fill: Color32::WHITE,
                reaped_fill: Color32::from_gray(225),
                flash: YELLOW,
                line_width: 2.0,
            }
        } else {
            Theme {
                presenter,
                bg: Color32::from_gray(24),
                panel: Color32::from_gray(32),
                text: Color32::from_gray(235),
                weak_text: Color32::from_gray(160),
                edge: Color32::from_gray(150),
                node_fill: Color32::from_gray(40),
                reaped_fill: Color32::from_gray(30),
                // Dark enough that light text stays readable on it.
                flash: Color32::from_rgb(0x5A, 0x4E, 0x00),
                line_width: 1.0,
            }
        }
    }

    /// Applies the look to egui's own widgets.
    pub fn apply(&self, ctx: &egui::Context) {
        let mut visuals = if self.presenter {
            egui::Visuals::light()
        } else {
            egui::Visuals::dark()
        };
        visuals.panel_fill = self.panel;
        visuals.window_fill = self.panel;
        visuals.extreme_bg_color = self.bg;
        // egui's own faint text (hints, paths, "0 processes…") is the
        // text colour at 60 % alpha: 2.6:1 on the dark panel. Ours reads.
        visuals.weak_text_color = Some(self.weak_text);
        if self.presenter {
            visuals.override_text_color = Some(self.text);
            visuals.widgets.noninteractive.bg_stroke = Stroke::new(1.5, self.edge);
            visuals.widgets.inactive.bg_stroke = Stroke::new(1.5, self.edge);
            visuals.selection.bg_fill = SKY_BLUE;
            visuals.selection.stroke = Stroke::new(2.0, Color32::BLACK);
        }
        ctx.set_visuals(visuals);
    }

    /// Process identity colours, by order of appearance. Blue-ish first:
    /// green and vermillion also mean "running" and "blocked".
    pub fn process_color(&self, index: usize) -> Color32 {
        const DARK: [Color32; 7] = [
            SKY_BLUE,
            ORANGE,
            REDDISH_PURPLE,
            YELLOW,
            BLUISH_GREEN,
            VERMILLION,
            Color32::from_rgb(0x9E, 0xC8, 0xFF),
        ];
        // On white, yellow and sky blue are too faint for text.
        const LIGHT: [Color32; 7] = [
            BLUE,
            Color32::from_rgb(0xB0, 0x6A, 0x00),
            Color32::from_rgb(0xA8, 0x3C, 0x7D),
            Color32::from_rgb(0x00, 0x7A, 0x59),
            VERMILLION,
            Color32::from_rgb(0x3A, 0x3A, 0x3A),
            Color32::from_rgb(0x56, 0x7E, 0xC9),
        ];
        let table = if self.presenter { &LIGHT } else { &DARK };
        table[index % table.len()]
    }
}

/// How a process state looks: a colour, an icon and words.
#[derive(Clone, Debug, PartialEq)]
pub struct StateLook {
    pub color: Color32,
    pub icon: &'static str,
    pub text: String,
    /// Zombies get a dashed border, reaped processes are greyed out.
    pub dashed: bool,
    pub greyed: bool,
}

/// Step mode: a process that announced its next step and waits for its go.
pub const WAITS_TURN: Color32 = Color32::from_gray(95);

pub fn state_color(state: &ProcState) -> Color32 {
    match state {
        ProcState::Running => BLUISH_GREEN,
        ProcState::Sleeping => SKY_BLUE,
        ProcState::Blocked(_) => VERMILLION,
        ProcState::Stopped => REDDISH_PURPLE,
        ProcState::Zombie => Color32::from_gray(90),
        ProcState::Reaped => GREY,
    }
}

/// The words under a node: what a learner would say the process is doing.
pub fn state_look(p: &Process) -> StateLook {
    let color = state_color(&p.state);
    let (icon, text) = match &p.state {
        ProcState::Running => ("▶", "running".to_string()),
        ProcState::Sleeping => ("zZ", "sleeping".to_string()),
        ProcState::Blocked(on) => match on.strip_prefix("lock ") {
            Some(lock) => ("⏳", format!("waiting for lock {lock}")),
            None => ("⏸", format!("blocked: {on}")),
        },
        ProcState::Stopped => ("⏹", "stopped".to_string()),
        ProcState::Zombie => ("☠", "zombie: exited, not reaped".to_string()),
        // A tick only for success: a crash or a kill is not "done".
        ProcState::Reaped => (
            if p.exit.as_ref().is_some_and(ExitStatus::is_success) {
                "✔"
            } else {
                "✖"
            },
            exit_words(p.exit.as_ref()),
        ),
    };
    StateLook {
        color,
        icon,
        text,
        dashed: p.state == ProcState::Zombie,
        greyed: p.state == ProcState::Reaped,
    }
}

/// "exit 0", "exit 3", "killed by SIGTERM".
pub fn exit_words(exit: Option<&ExitStatus>) -> String {
    match exit {
        Some(ExitStatus::Code(c)) => format!("exit {c}"),
        Some(ExitStatus::Signal(s)) => format!("killed by {s}"),
        Some(ExitStatus::Unknown) | None => "ended".to_string(),
    }
}

/// Mixes `c` towards `towards` by `t` (0 = c, 1 = towards).
pub fn mix(c: Color32, towards: Color32, t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let m = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as u8;
    Color32::from_rgb(
        m(c.r(), towards.r()),
        m(c.g(), towards.g()),
        m(c.b(), towards.b()),
    )
}

/// Black or white, whichever has the higher contrast on `bg`.
pub fn text_on(bg: Color32) -> Color32 {
    if contrast(Color32::BLACK, bg) >= contrast(Color32::WHITE, bg) {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// The contrast text needs (WCAG AA for normal text).
pub const MIN_CONTRAST: f32 = 4.5;

/// Small words in a filled shape (a message dot's few letters, drawn at
/// a dot's size): they need more than normal text (WCAG AAA, 7:1).
pub const SMALL_TEXT_CONTRAST: f32 = 7.0;

/// A message dot's fill: its sender's colour, lightened or darkened just
/// enough that black or white words in it read at 7:1 (the brown of the
/// light look read at 4.9:1 computed, less as drawn).
pub fn dot_fill(c: Color32) -> Color32 {
    let reads = |f: Color32| contrast(text_on(f), f) >= SMALL_TEXT_CONTRAST;
    let mut t = 0.0;
    while t < 1.0 {
        for towards in [Color32::WHITE, Color32::BLACK] {
            let f = mix(c, towards, t);
            if reads(f) {
                return f;
            }
        }
        t += 0.05;
    }
    Color32::WHITE
}

/// Filled red bands and tags with white words on them (a deadlock, a
/// lost update, a signal): vermillion darkened until white reads on it.
pub const ALARM: Color32 = Color32::from_rgb(0xB0, 0x4A, 0x00);

/// Relative luminance (WCAG 2).
pub fn luminance(c: Color32) -> f32 {
    // Every text colour of every frame goes through here (`ink`): the
    // channel's linear value comes from a table made once.
    static LINEAR: std::sync::LazyLock<[f32; 256]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|v| srgb_to_linear(v as u8)));
    let lin = |v: u8| LINEAR[usize::from(v)];
    0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
}

/// An sRGB channel's linear value (WCAG 2), 0 to 1.
fn srgb_to_linear(v: u8) -> f32 {
    let v = f32::from(v) / 255.0;
    if v <= 0.039_28 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Contrast ratio of two colours, 1 to 21.
pub fn contrast(a: Color32, b: Color32) -> f32 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// `c`, darkened or lightened (towards black or white, whichever reads
/// better on them) just enough to read on every one of `grounds`.
pub fn readable_on(c: Color32, grounds: &[Color32]) -> Color32 {
    let worst = |c: Color32| {
        grounds
            .iter()
            .map(|g| contrast(c, *g))
            .fold(f32::MAX, f32::min)
    };
    if worst(c) >= MIN_CONTRAST {
        return c;
    }
    let towards = match grounds.first() {
        Some(g) => text_on(*g),
        None => return c,
    };
    let mut t = 0.0;
    let mut out = c;
    while worst(out) < MIN_CONTRAST && t < 1.0 {
        t += 0.05;
        out = mix(c, towards, t);
    }
    out
}

impl Theme {
    /// A colour for words on the stage and panels of this look: `c`
    /// itself if it reads on all of them, else a darker (light look) or
    /// lighter (dark look) shade of it.
    pub fn ink(&self, c: Color32) -> Color32 {
        readable_on(c, &[self.bg, self.panel, self.node_fill])
    }
}

#[cfg(test)]
mod contrast_tests {
    use super::*;

    /// Every word on the stage is at least 4.5:1 against what it is
    /// written on, in both looks.
    #[test]
    fn every_text_colour_reads_on_its_ground() {
        let palette = [
            ORANGE,
            SKY_BLUE,
            BLUISH_GREEN,
            YELLOW,
            BLUE,
            VERMILLION,
            REDDISH_PURPLE,
            GREY,
        ];
        for presenter in [false, true] {
            let t = Theme::new(presenter);
            let grounds = [t.bg, t.panel, t.node_fill];
            let mut colours: Vec<Color32> = (0..7).map(|i| t.process_color(i)).collect();
            colours.extend(palette);
            colours.extend([t.text, t.weak_text]);
            for c in colours {
                let ink = t.ink(c);
                for g in grounds {
                    assert!(
                        contrast(ink, g) >= MIN_CONTRAST,
                        "presenter {presenter}: {c:?} as {ink:?} on {g:?}: {:.2}",
                        contrast(ink, g)
                    );
                }
                // On a value card while it flashes.
                for f in [0.0, 0.5, 1.0] {
                    let fill = mix(t.node_fill, t.flash, f);
                    let ink = readable_on(c, &[fill]);
                    assert!(
                        contrast(ink, fill) >= MIN_CONTRAST,
                        "{c:?} on flash {fill:?}"
                    );
                }
            }
            assert!(
                contrast(t.text, t.flash) >= MIN_CONTRAST,
                "presenter {presenter}"
            );
            // Words on filled colours: badges, chips, dots.
            let mut fills: Vec<Color32> = (0..7).map(|i| t.process_color(i)).collect();
            fills.extend(palette);
            fills.extend([WAITS_TURN, Color32::from_gray(90), Color32::from_gray(20)]);
            for f in fills {
                assert!(
                    contrast(text_on(f), f) >= MIN_CONTRAST,
                    "{:?} on {f:?}: {:.2}",
                    text_on(f),
                    contrast(text_on(f), f)
                );
            }
        }
        assert!(contrast(Color32::WHITE, ALARM) >= MIN_CONTRAST);
        // Message dots: every sender's colour, in both looks.
        for presenter in [false, true] {
            let t = Theme::new(presenter);
            for i in 0..7 {
                let f = dot_fill(t.process_color(i));
                assert!(
                    contrast(text_on(f), f) >= SMALL_TEXT_CONTRAST,
                    "dot {f:?}: {:.2}",
                    contrast(text_on(f), f)
                );
            }
            // egui's own faint text (hints, paths) is ours, not 60 % of
            // the text colour (2.6:1 on the dark panel).
            let ctx = egui::Context::default();
            t.apply(&ctx);
            let weak = ctx.global_style().visuals.weak_text_color();
            for g in [t.bg, t.panel] {
                assert!(
                    contrast(weak, g) >= MIN_CONTRAST,
                    "presenter {presenter}: faint text {weak:?} on {g:?}: {:.2}",
                    contrast(weak, g)
                );
            }
        }
        // The examples from the issue: orange on white, the olive flash.
        assert!(contrast(ORANGE, Color32::WHITE) < 2.5);
        assert!(contrast(Theme::new(true).ink(ORANGE), Color32::WHITE) >= MIN_CONTRAST);
    }
}
