//! The scenario's Python-equivalent source (or a traced Python program's
//! own file), with a coloured marker per process and per thread at the
//! line it is on.

use super::{ViewCtx, theme};
use crate::protocol::RUNNER_ID;
use egui::{Color32, RichText, Ui};

/// A process at a line: its id, colour, and (step mode) its next step.
type Marker<'a> = (&'a str, Color32, Option<&'a str>);

pub fn ui(ui: &mut Ui, ctx: &ViewCtx) {
    ui.heading("Source");
    let Some(scenario) = ctx.scenario else {
        ui.weak("No scenario picked.");
        return;
    };
    // Which live processes are at which line (in step mode, with the step
    // they will take there).
    let mut at_line: std::collections::BTreeMap<u32, Vec<Marker>> = Default::default();
    for row in ctx.world.processes_by_tree() {
        let p = row.process;
        if p.id == RUNNER_ID || !p.is_alive() {
            continue;
        }
        if let Some(line) = p.line {
            at_line.entry(line).or_default().push((
                &p.id,
                ctx.color_of(&p.id),
                p.pending.as_deref(),
            ));
        }
        // Each thread at its own line, in its process's colour.
        for t in p.threads.iter().filter(|t| !t.done) {
            if let Some(line) = t.line {
                at_line.entry(line).or_default().push((
                    &t.name,
                    ctx.color_of(&p.id),
                    t.pending.as_deref(),
                ));
            }
        }
    }
    let selected_line = ctx
        .selected
        .and_then(|id| ctx.world.process(id))
        .and_then(|p| p.line);
    egui::ScrollArea::both()
        .id_salt("source")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // `line = 1` is the listing's first line, as steps count.
            for (i, line) in scenario.source.lines().enumerate() {
                let n = (i + 1) as u32;
                let markers = at_line.get(&n);
                let highlight = markers.and_then(|m| m.first()).map(|m| m.1);
                let frame = egui::Frame::NONE.fill(match highlight {
                    Some(c) if Some(n) == selected_line => c.gamma_multiply(0.45),
                    Some(c) => c.gamma_multiply(0.22),
                    None => Color32::TRANSPARENT,
                });
                frame.show(ui, |ui| {
                    ui.horizontal(|ui| {
                        ui.spacing_mut().item_spacing.x = 4.0;
                        ui.label(
                            RichText::new(format!("{n:>3}"))
                                .monospace()
                                .color(ctx.theme.weak_text),
                        );
                        ui.label(RichText::new(line).monospace().color(ctx.theme.text));
                        for (id, c, _) in markers.into_iter().flatten() {
                            ui.label(
                                RichText::new(format!("◀ {id}"))
                                    .monospace()
                                    .strong()
                                    .color(*c),
                            );
                        }
                    });
                    // Step mode: what each process here does next, on a
                    // line of its own (a long source line would push it
                    // out of sight).
                    for (id, c, next) in markers.into_iter().flatten() {
                        let Some(next) = next else { continue };
                        let number = ctx
                            .step
                            .numbers
                            .get(*id)
                            .map(|n| format!("[{n}] "))
                            .unwrap_or_default();
                        ui.horizontal(|ui| {
                            ui.spacing_mut().item_spacing.x = 4.0;
                            ui.label(RichText::new("    ▲").monospace().color(*c));
                            ui.label(
                                RichText::new(format!("{number}{id}"))
                                    .monospace()
                                    .strong()
                                    .color(*c),
                            );
                            let text = RichText::new(format!("next: {next}")).monospace();
                            let text = if ctx.step.can_pick(id) {
                                text.strong()
                                    .color(Color32::BLACK)
                                    .background_color(theme::okabe_ito::YELLOW)
                            } else {
                                text.color(ctx.theme.text)
                            };
                            ui.label(text);
                        });
                    }
                });
            }
        });
}
