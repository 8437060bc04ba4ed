//! The inspector: everything about the selected process (click a node on
//! the stage), its CPU and memory, where it is in the source, and what it
//! did last.

use super::{Command, ViewCtx, theme};
use crate::cli::text;
use egui::{RichText, Ui};

/// Events listed under "recent events".
const RECENT_EVENTS: usize = 40;
/// How many of the latest events are searched for the selected process's.
const RECENT_SCAN: usize = 200_000;

pub fn ui(ui: &mut Ui, ctx: &ViewCtx, cmds: &mut Vec<Command>) {
    ui.heading("Inspector");
    let Some(p) = ctx.selected.and_then(|id| ctx.world.process(id)) else {
        ui.weak(
            "Click a process on the stage to see its pid, state, CPU, memory and recent events.",
        );
        ui.add_space(4.0);
        ui.weak(format!(
            "{} processes, {} events so far",
            ctx.world.processes.len(),
            ctx.rec.len()
        ));
        let gone = ctx.rec.log.first_kept();
        if gone > 0 {
            ui.weak(thinned_note(gone));
        }
        return;
    };
    let color = ctx.theme.ink(ctx.color_of(&p.id));
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("■ {}", p.id))
                .color(color)
                .size(20.0)
                .strong(),
        );
        if ui
            .small_button("✖")
            .on_hover_text("Clear the selection")
            .clicked()
        {
            cmds.push(Command::SelectProcess(None));
        }
    });
    let look = theme::state_look(p);
    egui::Grid::new("inspector_grid")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.weak(k);
                ui.label(v);
                ui.end_row();
            };
            row("pid", pid_text(p.pid, p.ns_pid));
            row("ppid", p.ppid.to_string());
            row(
                "parent",
                match (&p.parent, &p.original_parent, p.adopted) {
                    (Some(now), Some(orig), true) => format!("{now} (adopted; started by {orig})"),
                    (Some(now), _, _) => now.clone(),
                    (None, _, _) => "—".into(),
                },
            );
            row("role", p.role.clone());
            row("state", format!("{} {}", look.icon, look.text));
            if let Some(exit) = &p.exit {
                row("exit", theme::exit_words(Some(exit)));
            }
            if let Some(by) = &p.reaped_by {
                row("reaped by", by.clone());
            }
            if p.daemon {
                row("daemon", "yes: killed when its parent ends".into());
            }
            if p.orphaned {
                row("orphan", "its parent died first".into());
            }
            if let Some(task) = &p.task {
                row(
                    "task",
                    format!("{} #{} ({})", task.func, task.task, task.pool),
                );
            }
            if let Some(exec) = &p.exec {
                row("exec", exec.clone());
            }
            let held: Vec<String> = ctx
                .world
                .locks_held_by(&p.id)
                .iter()
                .map(|l| l.name.clone())
                .collect();
            if !held.is_empty() {
                row("holds", held.join(", "));
            }
            if !p.stdout_buffer.is_empty() {
                let text = p.stdout_buffer.shown(200);
                let why = if !p.is_alive() {
                    "lost: the process ended without writing it (killed by a signal)"
                } else if p.stdout_buffer.inherited {
                    "not written yet; fork copied part of it from the parent's buffer"
                } else {
                    "not written yet: printed, waiting for a newline, a full block or a flush"
                };
                row(
                    "stdout buffer",
                    format!("{text} ({} bytes, {why})", p.stdout_buffer.bytes),
                );
            }
            if let Some(sig) = &p.last_signal {
                row("last signal", sig.clone());
            }
            let sample = ctx.sampler.and_then(|s| s.get(p.pid));
            let (cpu, rss) = match (sample, p.is_alive()) {
                (Some(s), true) => (
                    format!("{:.0} %", s.cpu_percent),
                    format!("{:.1} MiB", s.rss_bytes as f64 / (1024.0 * 1024.0)),
                ),
                (_, false) => ("— (not running)".into(), "—".into()),
                (None, true) => ("…".into(), "…".into()),
            };
            row("CPU", cpu);
            row("RSS", rss);
            if let Some(line) = p.line {
                let code = ctx
                    .scenario
                    .and_then(|s| s.source.lines().nth(line.saturating_sub(1) as usize))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                row("line", format!("{line}: {code}"));
            }
        });
    ui.add_space(4.0);
    ui.strong("Recent events");
    let t0 = ctx.rec.t_range().map_or(0, |(lo, _)| lo);
    let shown = ctx.world.events_applied as usize;
    let recent: Vec<String> = ctx
        .rec
        .log
        .range(0, shown)
        .iter()
        .rev()
        // A quiet process in a flood: look back this far only.
        .take(RECENT_SCAN)
        .filter(|e| e.proc_id == p.id)
        .take(RECENT_EVENTS)
        .map(|e| text::line(e, t0))
        .collect();
    egui::ScrollArea::vertical()
        .id_salt("recent_events")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for line in recent.iter().rev() {
                ui.label(RichText::new(line).monospace().size(11.0));
            }
        });
}

/// Said once a flood made the recording let go of its oldest events.
pub fn thinned_note(gone: usize) -> String {
    format!(
        "To save memory the oldest {gone} events are no longer kept: \
         scrubbing back there shows the nearest saved moment before."
    )
}

fn pid_text(pid: i32, ns_pid: Option<i32>) -> String {
    match (pid, ns_pid) {
        (0, _) => "not known yet".into(),
        (pid, Some(ns)) if ns != pid => format!("{pid} (inside forkscope's PID namespace: {ns})"),
        (pid, _) => pid.to_string(),
    }
}
