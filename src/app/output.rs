//! What the processes printed: one tab per process, coloured like its node,
//! and the "Terminal" tab with everything in order, as one terminal would
//! have shown it.

use super::ViewCtx;
use crate::model::OutputBuffer;
use crate::protocol::{RUNNER_ID, Stream};
use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId, RichText, Ui};

pub const TERMINAL: &str = "Terminal";
/// The presenter's output font (points; ×1.6 on screen).
pub const PRESENTER_FONT_PT: f32 = 15.0;
/// Whole lines the presenter's output strip shows.
pub const PRESENTER_LINES: f32 = 4.0;

/// Height of the presenter's output strip: [`PRESENTER_LINES`] whole
/// lines of its font, its margins and the panel's (no half-cut line).
pub fn presenter_strip_height(ui: &Ui) -> f32 {
    let row = ui
        .ctx()
        .fonts_mut(|f| f.row_height(&FontId::monospace(PRESENTER_FONT_PT)));
    // 4 + 4 of the frame's margin, 2 + 2 of the panel's, and a few
    // points the strip was short of (its top line lost 3 px).
    PRESENTER_LINES * row + 16.0
}

#[derive(Default)]
pub struct OutputView {
    /// `None` = the merged terminal.
    pub tab: Option<String>,
}

impl OutputView {
    pub fn ui(&mut self, ui: &mut Ui, ctx: &ViewCtx, compact: bool) {
        let world = ctx.world;
        if !compact {
            ui.horizontal_wrapped(|ui| {
                if ui
                    .selectable_label(self.tab.is_none(), RichText::new(TERMINAL).strong())
                    .clicked()
                {
                    self.tab = None;
                }
                for row in world.processes_by_tree() {
                    let p = row.process;
                    if p.id == RUNNER_ID {
                        continue;
                    }
                    let selected = self.tab.as_deref() == Some(p.id.as_str());
                    let label = RichText::new(format!("■ {}", p.id)).color(text_color(ctx, &p.id));
                    if ui.selectable_label(selected, label).clicked() {
                        self.tab = Some(p.id.clone());
                    }
                }
            });
            ui.separator();
        }
        let font = if compact {
            FontId::monospace(PRESENTER_FONT_PT)
        } else {
            FontId::monospace(12.5)
        };
        let job = match self.tab.as_deref().filter(|_| !compact) {
            None => colored_job(&world.merged_output, ctx, &font),
            Some(id) => match world.process(id) {
                Some(p) => colored_job(&p.output, ctx, &font),
                None => LayoutJob::default(),
            },
        };
        let empty = job.text.is_empty();
        // The presenter's strip shows whole lines only: the room is cut
        // to a whole number of rows (the rest above them, blank), and the
        // scroll area's fade is off (it greyed the top line to 3.45:1).
        let whole_lines = compact.then(|| {
            let row = ui.ctx().fonts_mut(|f| f.row_height(&font));
            let room = ui.available_height() - 8.0;
            let n = (room / row).floor().max(1.0);
            (n * row, (room - n * row).max(0.0))
        });
        egui::Frame::NONE
            .fill(ctx.theme.bg)
            .inner_margin(4.0)
            .show(ui, |ui| {
                ui.spacing_mut().scroll.fade.strength = 0.0;
                let mut area = egui::ScrollArea::vertical()
                    .id_salt(("output", self.tab.clone()))
                    .stick_to_bottom(true)
                    .auto_shrink([false, false]);
                if let Some((height, blank)) = whole_lines {
                    ui.add_space(blank);
                    area = area.max_height(height);
                }
                area.show(ui, |ui| {
                    if empty {
                        ui.weak("(nothing printed yet)");
                    } else {
                        ui.add(egui::Label::new(job).wrap());
                    }
                });
            });
    }
}

/// The buffer's text, each chunk in its process's colour (stderr
/// underlined), with a note if older chunks were dropped.
fn colored_job(buf: &OutputBuffer, ctx: &ViewCtx, font: &FontId) -> LayoutJob {
    let mut job = LayoutJob::default();
    if buf.trimmed > 0 {
        job.append(
            &format!("… {} earlier chunks not shown\n", buf.trimmed),
            0.0,
            TextFormat::simple(font.clone(), ctx.theme.weak_text),
        );
    }
    let last = buf.chunks.len().saturating_sub(1);
    for (i, chunk) in buf.chunks.iter().enumerate() {
        let mut format = TextFormat::simple(font.clone(), text_color(ctx, &chunk.proc_id));
        if chunk.stream == Stream::Stderr {
            format.underline = egui::Stroke::new(1.0, format.color);
        }
        // The last line's newline would show as an empty line (a strip of
        // four lines would show three printed ones).
        let text = if i == last {
            chunk.text.strip_suffix('\n').unwrap_or(&chunk.text)
        } else {
            &chunk.text
        };
        job.append(text, 0.0, format);
    }
    job
}

/// A process's colour, made readable on the panel (4.5:1).
fn text_color(ctx: &ViewCtx, id: &str) -> Color32 {
    ctx.theme.ink(ctx.color_of(id))
}
