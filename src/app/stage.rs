//! The stage: the process tree, the channels between processes with their
//! messages moving, shared values, locks, pools, and the narration. Drawn
//! with the painter from the World at the moment shown, so scrubbing back
//! redraws the past exactly; every animation is a function of that moment
//! (not of the wall clock), which is what makes pause and scrub consistent.

use super::{Command, ViewCtx, theme};
use crate::model::{Channel, ChannelKind, Process, SharedValue, World};
use crate::protocol::{RUNNER_ID, Value};
use egui::{
    Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Shape, Stroke, StrokeKind, Ui, Vec2,
    pos2, vec2,
};
use std::collections::BTreeMap;

/// Base sizes (points) at scale 1; everything is scaled to fit the stage.
const NODE_W: f32 = 190.0;
const NODE_H: f32 = 96.0;
const NODE_LINE_H: f32 = 17.0;
const UNIT_W: f32 = 250.0;
/// Wider columns and rows when channels sit between processes.
const UNIT_W_CHANNELS: f32 = 340.0;
const ROW_GAP: f32 = 56.0;
const ROW_GAP_CHANNELS: f32 = 110.0;
const RUNNER_H: f32 = 30.0;
/// Room under the last row (a pool's label).
const BOTTOM_MARGIN: f32 = 40.0;
const CAPTION_H: f32 = 40.0;
/// A message dot takes this long from sender to channel, or channel to
/// receiver.
const TRAVEL_NS: u64 = 400_000_000;
/// A written value flashes this long.
const FLASH_NS: u64 = 700_000_000;
/// A new node grows in over this time.
const GROW_NS: u64 = 300_000_000;
/// A signal arrow stays this long.
const SIGNAL_NS: u64 = 1_500_000_000;
/// Step mode: the "next step" bubble under a node (two lines when the
/// process may not go, to say why).
const NEXT_H: f32 = 30.0;
const NEXT_H_WHY: f32 = 46.0;
const NEXT_GAP: f32 = 6.0;
const DEADLOCK_BANNER_H: f32 = 62.0;
/// A pool's frame reaches this far under its workers, for its label.
const POOL_LABEL_H: f32 = 30.0;

#[derive(Default)]
pub struct StageView {}

/// Where things are on the stage this frame.
struct Layout {
    /// Node rectangles by process id.
    nodes: BTreeMap<String, Rect>,
    scale: f32,
}

impl StageView {
    pub fn ui(&mut self, ui: &mut Ui, ctx: &ViewCtx, cmds: &mut Vec<Command>) {
        let full = ui.available_rect_before_wrap();
        let (_, bg) = ui.allocate_exact_size(full.size(), Sense::click());
        if bg.clicked() {
            cmds.push(Command::SelectProcess(None));
        }
        let painter = ui.painter_at(full);
        if ctx.rec.is_empty() {
            empty_stage(&painter, full, ctx);
            return;
        }
        let world = ctx.world;
        let has_side = !world.values.is_empty() || !world.locks.is_empty();
        let side_w = if has_side {
            (full.width() * 0.3).clamp(170.0, 380.0)
        } else {
            0.0
        };
        let caption_h = CAPTION_H * if ctx.theme.presenter { 1.2 } else { 1.0 };
        // A deadlock gets a banner over the tree.
        let banner_h = if world.deadlock.is_some() {
            DEADLOCK_BANNER_H * if ctx.theme.presenter { 1.2 } else { 1.0 }
        } else {
            0.0
        };
        let tree_rect = Rect::from_min_max(
            full.min + vec2(0.0, banner_h),
            pos2(full.right() - side_w, full.bottom() - caption_h),
        );
        let layout = layout_tree(ctx, tree_rect, ui.ctx());
        let s = layout.scale;

        // Tree edges first, under everything.
        for p in world.processes.values() {
            let Some(r) = layout.nodes.get(&p.id) else {
                continue;
            };
            if let Some(parent) = p.parent.as_deref().and_then(|id| layout.nodes.get(id)) {
                let stroke = Stroke::new(1.5 * ctx.theme.line_width, ctx.theme.edge);
                painter.line_segment([parent.center_bottom(), r.center_top()], stroke);
            }
            if p.adopted
                && let Some(orig) = p
                    .original_parent
                    .as_deref()
                    .filter(|o| Some(*o) != p.parent.as_deref())
                    .and_then(|id| layout.nodes.get(id))
            {
                let stroke = Stroke::new(1.5 * ctx.theme.line_width, theme::okabe_ito::ORANGE);
                dashed(&painter, orig.center_bottom(), r.left_center(), stroke);
                painter.text(
                    r.left_center() + vec2(-4.0, -4.0),
                    Align2::RIGHT_BOTTOM,
                    "was its parent",
                    FontId::proportional(11.0 * s.max(0.8)),
                    theme::okabe_ito::ORANGE,
                );
            }
        }
        pools(&painter, ctx, &layout);
        let channel_rects = channels(&painter, ctx, &layout, tree_rect);
        for row in world.processes_by_tree() {
            let p = row.process;
            if let Some(r) = layout.nodes.get(&p.id) {
                let response = ui.interact(*r, ui.scope_id().with(("node", &p.id)), Sense::click());
                let label = p.id.clone();
                response.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, label.clone())
                });
                if response.clicked() {
                    cmds.push(Command::SelectProcess(Some(p.id.clone())));
                    if ctx.step.can_pick(&p.id) {
                        cmds.push(Command::Step(p.id.clone()));
                    }
                }
                if ctx.step.can_pick(&p.id) && response.hovered() {
                    ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
                }
                if p.id == RUNNER_ID {
                    runner_node(&painter, *r, p, ctx, s);
                } else {
                    node(&painter, *r, p, ctx, s, response.hovered());
                }
            }
        }
        messages(&painter, ctx, &layout, &channel_rects);
        signals(&painter, ctx, &layout);
        next_steps(ui, &painter, ctx, &layout, cmds);
        let mut lock_rects = BTreeMap::new();
        if has_side {
            let side = Rect::from_min_max(
                pos2(full.right() - side_w + 8.0, full.top()),
                pos2(full.right(), full.bottom() - caption_h),
            );
            lock_rects = side_panel(ui, &painter, side, ctx);
        }
        if let Some(cycle) = &ctx.world.deadlock {
            deadlock_cycle(&painter, ctx, &layout, &lock_rects);
            let banner = Rect::from_min_size(full.min, vec2(full.width() - side_w, banner_h - 6.0));
            deadlock_banner(ui, &painter, banner, cycle, ctx);
        }
        caption(
            &painter,
            Rect::from_min_max(pos2(full.left(), full.bottom() - caption_h), full.max),
            ctx,
        );
    }
}

fn empty_stage(painter: &egui::Painter, rect: Rect, ctx: &ViewCtx) {
    let title = ctx
        .scenario
        .map_or("No scenario picked", |s| s.title.as_str());
    painter.text(
        rect.center() - vec2(0.0, 20.0),
        Align2::CENTER_CENTER,
        title,
        FontId::proportional(24.0),
        ctx.theme.text,
    );
    painter.text(
        rect.center() + vec2(0.0, 16.0),
        Align2::CENTER_CENTER,
        "Press ▶ Run: real processes start, and this stage shows what they do.",
        FontId::proportional(15.0),
        ctx.theme.weak_text,
    );
}

// ---- layout ---------------------------------------------------------------

/// A tidy tree of the run's processes: every leaf gets a column, a parent
/// sits over its children, siblings stay in spawn order. The tree comes
/// from the live World (the whole run so far), so scrubbing back does not
/// move anything; new processes make the tree grow with a short glide.
fn layout_tree(ctx: &ViewCtx, area: Rect, egui_ctx: &egui::Context) -> Layout {
    let live = ctx.layout_world;
    let rows = live.processes_by_tree();
    let mut kids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &rows {
        if let Some(parent) = r.process.parent.as_deref()
            && r.depth > 0
        {
            kids.entry(parent).or_default().push(&r.process.id);
        }
    }
    let mut width: BTreeMap<&str, f32> = BTreeMap::new();
    for r in rows.iter().rev() {
        let id = r.process.id.as_str();
        let sum: f32 = kids
            .get(id)
            .map(|k| k.iter().map(|c| width.get(c).copied().unwrap_or(1.0)).sum())
            .unwrap_or(0.0);
        width.insert(id, sum.max(1.0));
    }
    let mut offset: BTreeMap<&str, f32> = BTreeMap::new();
    let mut next_root = 0.0;
    for r in &rows {
        let id = r.process.id.as_str();
        if r.depth == 0 {
            offset.insert(id, next_root);
            next_root += width.get(id).copied().unwrap_or(1.0);
        }
        let mut child_at = offset.get(id).copied().unwrap_or(0.0);
        for c in kids.get(id).into_iter().flatten() {
            offset.insert(c, child_at);
            child_at += width.get(c).copied().unwrap_or(1.0);
        }
    }
    let total_units = next_root.max(1.0);
    let has_runner = live.processes.contains_key(RUNNER_ID);
    let depth_max = rows.iter().map(|r| r.depth).max().unwrap_or(0);
    let node_h = NODE_H + NODE_LINE_H * extra_lines_max(live) as f32;
    // Room for channels: between columns when both ends share a row,
    // between rows otherwise.
    let depth_of: BTreeMap<&str, usize> = rows
        .iter()
        .map(|r| (r.process.id.as_str(), r.depth))
        .collect();
    let (mut same_row, mut across) = (false, false);
    for users in ctx.rec.channel_users.values() {
        for a in &users.senders {
            for b in &users.receivers {
                match (depth_of.get(a.as_str()), depth_of.get(b.as_str())) {
                    (Some(x), Some(y)) if x == y => same_row = true,
                    (Some(_), Some(_)) => across = true,
                    _ => {}
                }
            }
        }
    }
    let unit_w = if same_row { UNIT_W_CHANNELS } else { UNIT_W };
    let mut row_gap = if across { ROW_GAP_CHANNELS } else { ROW_GAP };
    // A gated run (all of it, so nothing moves when it ends) leaves room
    // under each node for its next step.
    let gated = ctx.rec.log.counts_by_kind().contains_key("pending");
    let bottom_margin = if gated {
        let pool = if live.pools.is_empty() {
            0.0
        } else {
            POOL_LABEL_H
        };
        row_gap = row_gap.max(NEXT_GAP + NEXT_H_WHY + 14.0 + pool);
        BOTTOM_MARGIN.max(NEXT_GAP + NEXT_H_WHY + 6.0 + pool)
    } else {
        BOTTOM_MARGIN
    };
    let row_h = node_h + row_gap;
    let runner_rows = if has_runner { 1 } else { 0 };
    let need_h = (depth_max + 1 - runner_rows) as f32 * row_h - row_gap
        + bottom_margin
        + if has_runner {
            RUNNER_H + ROW_GAP * 0.6
        } else {
            0.0
        };
    let need_w = total_units * unit_w;
    let max_scale = if ctx.theme.presenter { 1.5 } else { 1.25 };
    let s = (area.width() / need_w)
        .min(area.height() / need_h)
        .clamp(0.3, max_scale);
    let used_w = total_units * unit_w * s;
    let left = area.left() + (area.width() - used_w).max(0.0) / 2.0;
    let top = area.top() + 4.0;
    let mut nodes = BTreeMap::new();
    for r in &rows {
        let id = r.process.id.as_str();
        let w = width.get(id).copied().unwrap_or(1.0);
        let cx = left + (offset.get(id).copied().unwrap_or(0.0) + w / 2.0) * unit_w * s;
        let is_runner = id == RUNNER_ID;
        let y = if has_runner && r.depth > 0 {
            top + (RUNNER_H + ROW_GAP * 0.6) * s + (r.depth - 1) as f32 * row_h * s
        } else {
            top + r.depth as f32 * row_h * s
        };
        let size = if is_runner {
            vec2(NODE_W * 1.1, RUNNER_H) * s
        } else {
            vec2(NODE_W, node_h) * s
        };
        // Glide to new places instead of jumping.
        let anim = |what: &str, v: f32| {
            egui_ctx.animate_value_with_time(egui::Id::unique(("stage_pos", id, what)), v, 0.25)
        };
        let x = anim("x", cx);
        let y = anim("y", y);
        nodes.insert(
            id.to_string(),
            Rect::from_min_size(pos2(x - size.x / 2.0, y), size),
        );
    }
    Layout { nodes, scale: s }
}

/// Lines under the state badge (task, locks, private values, exec…).
/// Most thread lanes drawn in a process node (then "+N more threads").
const THREAD_LANES: usize = 4;

fn extra_lines(world: &World, p: &Process) -> Vec<(String, Option<Color32>)> {
    let mut lines = thread_lanes(world, p);
    if let Some(exec) = &p.exec {
        lines.push((format!("$ {exec}"), None));
    }
    if let Some(t) = &p.task {
        lines.push((
            format!("runs task {}: {}", t.task, t.func),
            Some(theme::okabe_ito::BLUE),
        ));
    }
    for l in world.locks_held_by(&p.id) {
        lines.push((
            format!("🔒 holds lock {}", l.name),
            Some(theme::okabe_ito::ORANGE),
        ));
    }
    // Once it has threads its globals are shared by them: drawn as shared.
    for name in world.globals.keys().filter(|_| p.threads.is_empty()) {
        if let Some(v) = world.private_value(&p.id, name) {
            lines.push((format!("{name} = {} (own copy)", short(v, 16)), None));
        }
    }
    if !p.stdout_buffer.is_empty() {
        let text = p.stdout_buffer.shown(22);
        lines.push(if !p.is_alive() {
            (
                format!("lost, never written: {text}"),
                Some(theme::okabe_ito::VERMILLION),
            )
        } else if p.stdout_buffer.inherited {
            (
                format!("buffer (fork's copy): {text}"),
                Some(theme::okabe_ito::ORANGE),
            )
        } else {
            (format!("buffer: {text}"), Some(theme::okabe_ito::ORANGE))
        });
    }
    lines
}

/// A process's threads as lanes inside its node, one line each: name,
/// tid, what it does now (running, sleeping, blocked on a lock, done) and
/// the locks it holds.
fn thread_lanes(world: &World, p: &Process) -> Vec<(String, Option<Color32>)> {
    let mut lines = Vec::new();
    let shown = if p.threads.len() > THREAD_LANES {
        THREAD_LANES - 1
    } else {
        p.threads.len()
    };
    for t in p.threads.iter().take(shown) {
        let (what, color) = if t.done {
            ("done".to_string(), Some(theme::okabe_ito::GREY))
        } else {
            match &t.state {
                crate::model::ProcState::Sleeping => {
                    ("sleeping".to_string(), Some(theme::okabe_ito::SKY_BLUE))
                }
                crate::model::ProcState::Blocked(on) => {
                    (format!("blocked: {on}"), Some(theme::okabe_ito::VERMILLION))
                }
                _ => ("running".to_string(), Some(theme::okabe_ito::BLUISH_GREEN)),
            }
        };
        let holds: Vec<&str> = world
            .locks_held_by(&t.name)
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        let holds = if holds.is_empty() {
            String::new()
        } else {
            format!(", 🔒 {}", holds.join(", "))
        };
        // Step mode: what it does on `go`, and the key that picks it.
        let next = match &t.pending {
            Some(a) => {
                let key = super::lab::step_numbers(world)
                    .get(&t.name)
                    .map(|n| format!(" [{n}]"))
                    .unwrap_or_default();
                format!(" · next{key}: {a}")
            }
            None => String::new(),
        };
        lines.push((
            format!("thread {} (tid {}): {what}{holds}{next}", t.name, t.tid),
            color,
        ));
    }
    if shown < p.threads.len() {
        let alive = p.threads.iter().skip(shown).filter(|t| !t.done).count();
        lines.push((
            format!("+{} more threads ({alive} alive)", p.threads.len() - shown),
            None,
        ));
    }
    lines
}

fn extra_lines_max(world: &World) -> usize {
    world
        .processes
        .values()
        .filter(|p| p.id != RUNNER_ID)
        .map(|p| {
            let locks = world.locks.len().min(2);
            usize::from(p.exec.is_some())
                + usize::from(!p.stdout_buffer.is_empty())
                + usize::from(!world.pools.is_empty())
                + locks
                + world.globals.len()
                + p.threads.len().min(THREAD_LANES)
        })
        .max()
        .unwrap_or(0)
        .min(
            4 + world
                .processes
                .values()
                .map(|p| p.threads.len())
                .max()
                .unwrap_or(0)
                .min(THREAD_LANES),
        )
}

// ---- processes ------------------------------------------------------------

fn node(painter: &egui::Painter, rect: Rect, p: &Process, ctx: &ViewCtx, s: f32, hovered: bool) {
    let t = ctx.theme;
    let look = theme::state_look(p);
    let id_color = ctx.color_of(&p.id);
    // Grow in when it appears.
    let age = ctx.view_t_ns.saturating_sub(p.first_t_ns);
    let grow = (age as f32 / GROW_NS as f32).clamp(0.0, 1.0);
    let grow = 1.0 - (1.0 - grow).powi(3);
    let rect = Rect::from_center_size(rect.center(), rect.size() * (0.6 + 0.4 * grow));
    let s = s * (0.6 + 0.4 * grow);
    let fill = if look.greyed {
        t.reaped_fill
    } else {
        t.node_fill
    };
    let radius = CornerRadius::same((10.0 * s) as u8);
    painter.rect_filled(rect, radius, fill);
    let selected = ctx.selected == Some(p.id.as_str());
    let border_w = (if selected { 5.0 } else { 2.5 }) * t.line_width.max(1.0) * s.max(0.6);
    let border = if look.greyed {
        theme::mix(id_color, t.reaped_fill, 0.55)
    } else {
        id_color
    };
    if look.dashed {
        dashed_rect(painter, rect, Stroke::new(border_w, border));
    } else {
        painter.rect_stroke(
            rect,
            radius,
            Stroke::new(border_w, border),
            StrokeKind::Inside,
        );
    }
    if hovered && !selected {
        painter.rect_stroke(
            rect.expand(3.0),
            radius,
            Stroke::new(1.0, t.weak_text),
            StrokeKind::Outside,
        );
    }
    let text_color = if look.greyed { t.weak_text } else { t.text };
    let pad = 9.0 * s;
    let mut y = rect.top() + pad * 0.7;
    // Header: (step mode: the pick number,) the logical id, big; the pid
    // at the right.
    let number_w = pick_number(painter, pos2(rect.left() + pad * 0.6, y), p, ctx, s);
    painter.text(
        pos2(rect.left() + pad + number_w, y),
        Align2::LEFT_TOP,
        &p.id,
        FontId::proportional(21.0 * s),
        if look.greyed { t.weak_text } else { id_color },
    );
    let pid = if p.pid > 0 {
        format!("pid {}", p.pid)
    } else {
        String::new()
    };
    painter.text(
        pos2(rect.right() - pad, y + 4.0 * s),
        Align2::RIGHT_TOP,
        pid,
        FontId::proportional(13.0 * s),
        text_color,
    );
    y += 25.0 * s;
    let mut tags = vec![role_words(&p.role)];
    if p.daemon {
        tags.push("daemon".into());
    }
    if p.adopted {
        tags.push("ADOPTED".into());
    } else if p.orphaned {
        tags.push("ORPHAN".into());
    }
    let lost = lost_updates_by(ctx.world, &p.id);
    if lost > 0 {
        // The news of the moment, where the role usually is.
        let text = if lost == 1 {
            "⚠ LOST UPDATE".to_string()
        } else {
            format!("⚠ {lost} LOST UPDATES")
        };
        let galley = painter.layout_no_wrap(text, FontId::proportional(12.5 * s), Color32::WHITE);
        let tag = Rect::from_min_size(
            pos2(rect.left() + pad * 0.6, y - 1.0 * s),
            galley.size() + vec2(8.0, 2.0) * s,
        );
        painter.rect_filled(
            tag,
            CornerRadius::same((4.0 * s) as u8),
            theme::okabe_ito::VERMILLION,
        );
        painter.galley(tag.min + vec2(4.0, 1.0) * s, galley, Color32::WHITE);
    } else {
        painter.text(
            pos2(rect.left() + pad, y),
            Align2::LEFT_TOP,
            tags.join(" · "),
            FontId::proportional(12.5 * s),
            if p.orphaned || p.adopted {
                theme::okabe_ito::ORANGE
            } else {
                t.weak_text
            },
        );
    }
    y += 19.0 * s;
    // The state badge: colour, icon and words.
    let badge = Rect::from_min_size(
        pos2(rect.left() + pad * 0.6, y),
        vec2(rect.width() - pad * 1.2, 24.0 * s),
    );
    // Step mode: a process that waits for its go is not running.
    let waits_turn = p.pending.is_some() && p.state == crate::model::ProcState::Running;
    let (badge_fill, badge_text) = if look.greyed {
        (t.reaped_fill, t.weak_text)
    } else if p.state == crate::model::ProcState::Zombie {
        (Color32::from_gray(20), Color32::WHITE)
    } else if waits_turn {
        (theme::WAITS_TURN, Color32::WHITE)
    } else {
        (look.color, theme::text_on(look.color))
    };
    let mut state_text = if waits_turn {
        "⏸ waits for its turn".to_string()
    } else {
        format!("{} {}", look.icon, look.text)
    };
    if let (crate::model::ProcState::Sleeping, Some(until)) = (&p.state, p.sleep_until_t_ns) {
        let left_s = until.saturating_sub(ctx.view_t_ns) as f64 / 1e9;
        if left_s > 0.05 {
            state_text = format!("{state_text} ({left_s:.1} s)");
        }
    }
    // One line if it fits (shrinking the type a little), else two.
    let size = 14.5 * s;
    let one_line = painter
        .layout_no_wrap(state_text.clone(), FontId::proportional(size), badge_text)
        .size()
        .x;
    let room = badge.width() - 10.0 * s;
    let size = size * (room / one_line.max(1.0)).clamp(0.78, 1.0);
    let galley = painter.layout(state_text, FontId::proportional(size), badge_text, room);
    let badge = badge.with_max_y(badge.top() + (galley.size().y + 6.0 * s).max(24.0 * s));
    painter.rect_filled(badge, CornerRadius::same((5.0 * s) as u8), badge_fill);
    if look.greyed {
        painter.rect_stroke(
            badge,
            CornerRadius::same((5.0 * s) as u8),
            Stroke::new(1.0, t.weak_text),
            StrokeKind::Inside,
        );
    }
    let text_pos = pos2(
        badge.left() + 5.0 * s,
        badge.center().y - galley.size().y / 2.0,
    );
    painter.galley(text_pos, galley, badge_text);
    y = badge.bottom() + 4.0 * s;
    for (line, color) in extra_lines(ctx.world, p) {
        if y + NODE_LINE_H * s > rect.bottom() {
            break;
        }
        painter.text(
            pos2(rect.left() + pad, y),
            Align2::LEFT_TOP,
            line,
            FontId::proportional(13.0 * s),
            color.unwrap_or(text_color),
        );
        y += NODE_LINE_H * s;
    }
}

/// Step mode: under each waiting process its next step ("read counter"),
/// with its pick number beside the node. Those that may go now are
/// yellow and clickable; those that may not are dashed and say why.
fn next_steps(
    ui: &mut Ui,
    painter: &egui::Painter,
    ctx: &ViewCtx,
    layout: &Layout,
    cmds: &mut Vec<Command>,
) {
    let s = layout.scale;
    let t = ctx.theme;
    for p in ctx.world.processes.values() {
        let Some(action) = p.pending.as_deref() else {
            continue;
        };
        if p.id == RUNNER_ID || !p.is_alive() {
            continue;
        }
        let Some(node) = layout.nodes.get(&p.id) else {
            continue;
        };
        let choice = ctx.step.choices.get(&p.id);
        let can = matches!(choice, Some(None));
        let why = match choice {
            Some(Some(w)) => Some(w.as_str()),
            _ => None,
        };
        let h = if why.is_some() { NEXT_H_WHY } else { NEXT_H } * s;
        // A pool's workers have the pool's label under them: go below it.
        let below = if p.role.starts_with("pool:") {
            POOL_LABEL_H * s
        } else {
            0.0
        };
        let r = Rect::from_min_size(
            pos2(node.left(), node.bottom() + below + NEXT_GAP * s),
            vec2(node.width(), h),
        );
        let resp = ui.interact(r, ui.scope_id().with(("next", &p.id)), Sense::click());
        let label = format!("{}: {action}", p.id);
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, can, label.clone()));
        if resp.clicked() && can {
            cmds.push(Command::SelectProcess(Some(p.id.clone())));
            cmds.push(Command::Step(p.id.clone()));
        }
        if resp.hovered() && can {
            ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
        }
        let yellow = theme::okabe_ito::YELLOW;
        let (fill, ink) = if can {
            (yellow, Color32::BLACK)
        } else {
            (t.panel, t.text)
        };
        let border = if can {
            Stroke::new(
                if resp.hovered() { 3.0 } else { 1.5 } * t.line_width,
                if t.presenter { Color32::BLACK } else { yellow },
            )
        } else {
            Stroke::new(1.5 * t.line_width, t.weak_text)
        };
        // A little pointer up to the node: this step is that process's.
        let tip = pos2(node.center().x, node.bottom() + 1.0);
        painter.add(Shape::convex_polygon(
            vec![
                tip,
                pos2(tip.x + 8.0 * s, r.top() + 1.0),
                pos2(tip.x - 8.0 * s, r.top() + 1.0),
            ],
            if can { fill } else { t.weak_text },
            Stroke::NONE,
        ));
        let radius = CornerRadius::same((6.0 * s) as u8);
        painter.rect_filled(r, radius, fill);
        if can || why.is_none() {
            painter.rect_stroke(r, radius, border, StrokeKind::Inside);
        } else {
            dashed_rect(painter, r, border);
        }
        let icon = if can {
            "▶"
        } else if why.is_some() {
            "⏳"
        } else {
            "next:"
        };
        let line1 = format!("{icon} {action}");
        let room = r.width() - 12.0 * s;
        let size = fit_size(painter, &line1, 15.5 * s, room);
        let top = if why.is_some() {
            r.top() + 4.0 * s
        } else {
            r.center().y - size * 0.62
        };
        painter.text(
            pos2(r.left() + 6.0 * s, top),
            Align2::LEFT_TOP,
            &line1,
            FontId::proportional(size),
            ink,
        );
        if let Some(why) = why {
            let size = fit_size(painter, why, 12.5 * s, room);
            painter.text(
                pos2(r.left() + 6.0 * s, r.bottom() - 4.0 * s),
                Align2::LEFT_BOTTOM,
                why,
                FontId::proportional(size),
                theme::okabe_ito::VERMILLION,
            );
        }
    }
}

/// Step mode: the number a waiting process is picked by (key 1–9), in a
/// circle at the start of its header (yellow when it may go now); returns
/// the room it takes.
fn pick_number(painter: &egui::Painter, at: Pos2, p: &Process, ctx: &ViewCtx, s: f32) -> f32 {
    let Some(n) = ctx
        .step
        .numbers
        .get(&p.id)
        .filter(|_| p.pending.is_some() && p.is_alive())
    else {
        return 0.0;
    };
    let t = ctx.theme;
    let radius = 13.0 * s;
    let c = at + vec2(radius, radius - 1.0 * s);
    let (fill, ink, ring) = if ctx.step.can_pick(&p.id) {
        (theme::okabe_ito::YELLOW, Color32::BLACK, Color32::BLACK)
    } else {
        (t.panel, t.weak_text, t.weak_text)
    };
    painter.circle(c, radius, fill, Stroke::new(1.5 * t.line_width, ring));
    painter.text(
        c,
        Align2::CENTER_CENTER,
        n.to_string(),
        FontId::proportional(18.0 * s),
        ink,
    );
    2.0 * radius + 5.0 * s
}

/// How many updates `id` overwrote (writes based on a stale read).
fn lost_updates_by(world: &World, id: &str) -> usize {
    world
        .values
        .values()
        .flat_map(|v| &v.lost_updates)
        .filter(|lu| lu.proc_id == id)
        .count()
}

/// The wait-for cycle in red: each waiting process → the lock it waits
/// for → the process holding that lock (or straight to the process it
/// waits to end).
fn deadlock_cycle(
    painter: &egui::Painter,
    ctx: &ViewCtx,
    layout: &Layout,
    lock_rects: &BTreeMap<String, Rect>,
) {
    let red = theme::okabe_ito::VERMILLION;
    let s = layout.scale;
    let stroke = Stroke::new(4.0 * ctx.theme.line_width.max(1.0), red);
    let font = FontId::proportional(15.0 * s.max(0.8));
    for e in ctx.deadlock {
        let (Some(waiter), Some(holder)) =
            (layout.nodes.get(&e.waiter), layout.nodes.get(&e.holder))
        else {
            continue;
        };
        painter.rect_stroke(
            waiter.expand(4.0),
            CornerRadius::same((12.0 * s) as u8),
            stroke,
            StrokeKind::Outside,
        );
        match e
            .lock
            .as_deref()
            .and_then(|l| lock_rects.get(l).map(|r| (l, r)))
        {
            Some((lock, lr)) => {
                let a = closest_edge_point(waiter, lr.center());
                let b = closest_edge_point(lr, waiter.center());
                red_arrow(
                    painter,
                    a,
                    b,
                    stroke,
                    &format!("waits for {lock}"),
                    &font,
                    ctx,
                );
                let a = closest_edge_point(lr, holder.center());
                let b = closest_edge_point(holder, lr.center());
                red_arrow(
                    painter,
                    a,
                    b,
                    stroke,
                    &format!("{lock} held by {}", e.holder),
                    &font,
                    ctx,
                );
            }
            None => {
                let a = closest_edge_point(waiter, holder.center());
                let b = closest_edge_point(holder, waiter.center());
                let what = match e.lock.as_deref() {
                    Some(l) => format!("waits for {l}"),
                    None => "waits for it to end".into(),
                };
                red_arrow(painter, a, b, stroke, &what, &font, ctx);
            }
        }
    }
}

fn red_arrow(
    painter: &egui::Painter,
    a: Pos2,
    b: Pos2,
    stroke: Stroke,
    label: &str,
    font: &FontId,
    ctx: &ViewCtx,
) {
    let dir = (b - a).normalized();
    let tip = b - dir * 2.0;
    painter.line_segment([a, tip - dir * 10.0], stroke);
    let side = vec2(-dir.y, dir.x) * 9.0;
    painter.add(Shape::convex_polygon(
        vec![tip, tip - dir * 18.0 + side, tip - dir * 18.0 - side],
        stroke.color,
        Stroke::NONE,
    ));
    let galley = painter.layout_no_wrap(label.to_string(), font.clone(), stroke.color);
    let mid = a.lerp(b, 0.5);
    let r = Rect::from_center_size(mid, galley.size() + vec2(8.0, 4.0));
    painter.rect_filled(r, CornerRadius::same(4), ctx.theme.bg);
    painter.galley(r.min + vec2(4.0, 2.0), galley, stroke.color);
}

/// `DEADLOCK: main.1 holds a, waits for b; …` across the top of the stage.
fn deadlock_banner(ui: &mut Ui, painter: &egui::Painter, r: Rect, cycle: &str, ctx: &ViewCtx) {
    let red = theme::okabe_ito::VERMILLION;
    painter.rect_filled(r, CornerRadius::same(8), red);
    let big = if ctx.theme.presenter { 1.15 } else { 1.0 };
    let title = "⛔ DEADLOCK: nobody can go on";
    painter.text(
        r.left_top() + vec2(12.0, 6.0),
        Align2::LEFT_TOP,
        title,
        FontId::proportional(19.0 * big),
        Color32::WHITE,
    );
    let size = fit_size(painter, cycle, 15.0 * big, r.width() - 24.0);
    painter.text(
        r.left_bottom() + vec2(12.0, -6.0),
        Align2::LEFT_BOTTOM,
        cycle,
        FontId::proportional(size),
        Color32::WHITE,
    );
    let label = format!("DEADLOCK: {cycle}");
    let resp = ui.interact(r, ui.scope_id().with("deadlock"), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
}

fn role_words(role: &str) -> String {
    match role.strip_prefix("pool:") {
        Some(pool) => format!("worker of pool {pool}"),
        None if role.is_empty() => String::new(),
        None => format!("role {role}"),
    }
}

fn runner_node(painter: &egui::Painter, rect: Rect, p: &Process, ctx: &ViewCtx, s: f32) {
    let t = ctx.theme;
    let pid = if p.pid > 0 {
        format!(" · pid {}", p.pid)
    } else {
        String::new()
    };
    let galley = painter.layout_no_wrap(
        format!("forkscope runner{pid} · adopts orphans"),
        FontId::proportional(12.5 * s.max(0.8)),
        t.weak_text,
    );
    let box_r = Rect::from_center_size(rect.center(), galley.size() + vec2(16.0, 8.0));
    painter.rect(
        box_r,
        CornerRadius::same((6.0 * s) as u8),
        t.panel,
        Stroke::new(1.0, t.weak_text),
        StrokeKind::Inside,
    );
    painter.galley(box_r.min + vec2(8.0, 4.0), galley, t.weak_text);
}

// ---- pools ----------------------------------------------------------------

fn pools(painter: &egui::Painter, ctx: &ViewCtx, layout: &Layout) {
    for (name, pool) in &ctx.world.pools {
        let role = format!("pool:{name}");
        let rects: Vec<Rect> = ctx
            .world
            .processes
            .values()
            .filter(|p| p.role == role)
            .filter_map(|p| layout.nodes.get(&p.id).copied())
            .collect();
        let Some(first) = rects.first() else { continue };
        let bounds = rects.iter().fold(*first, |a, b| a.union(*b));
        let s = layout.scale;
        let frame = bounds
            .expand2(vec2(10.0, 8.0) * s)
            .with_max_y(bounds.bottom() + POOL_LABEL_H * s);
        painter.rect(
            frame,
            CornerRadius::same((12.0 * s) as u8),
            theme::okabe_ito::BLUE.gamma_multiply(0.10),
            Stroke::new(2.0 * ctx.theme.line_width, theme::okabe_ito::BLUE),
            StrokeKind::Outside,
        );
        painter.text(
            frame.left_bottom() + vec2(10.0, -5.0) * s,
            Align2::LEFT_BOTTOM,
            format!(
                "Pool {name}: {} workers · tasks done {}/{}",
                pool.size, pool.tasks_done, pool.tasks_started
            ),
            FontId::proportional(14.0 * s.max(0.75)),
            ctx.theme.text,
        );
    }
}

// ---- channels and messages ------------------------------------------------

/// The centre of the given processes' nodes.
fn centroid<'a>(ids: impl Iterator<Item = &'a String>, layout: &Layout) -> Option<Pos2> {
    let pts: Vec<Pos2> = ids
        .filter_map(|id| layout.nodes.get(id).map(|r| r.center()))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let sum = pts.iter().fold(Vec2::ZERO, |a, p| a + p.to_vec2());
    Some((sum / pts.len() as f32).to_pos2())
}

fn channel_size(c: &Channel, s: f32) -> Vec2 {
    let slots = slot_count(c) as f32;
    vec2(26.0 * slots + 16.0, 52.0) * s
}

fn slot_count(c: &Channel) -> usize {
    match c.maxsize {
        Some(m) => (m as usize).clamp(1, 10),
        None => c.depth().clamp(3, 8),
    }
}

/// Draws every channel between its users; returns where each one is.
fn channels(
    painter: &egui::Painter,
    ctx: &ViewCtx,
    layout: &Layout,
    area: Rect,
) -> BTreeMap<String, Rect> {
    let s = layout.scale;
    let mut placed: BTreeMap<String, Rect> = BTreeMap::new();
    for (name, c) in &ctx.world.channels {
        let Some(users) = ctx.rec.channel_users.get(name) else {
            continue;
        };
        let from = centroid(users.senders.iter(), layout);
        let to = centroid(users.receivers.iter(), layout);
        let Some(want) = channel_spot(from, to, users, layout, s) else {
            continue;
        };
        let size = channel_size(c, s);
        let r = free_spot(want, size, s, layout, &placed, area);
        for id in users.senders.iter() {
            if let Some(n) = layout.nodes.get(id) {
                link(painter, n, r, ctx, true);
            }
        }
        for id in users.receivers.iter() {
            if let Some(n) = layout.nodes.get(id) {
                link(painter, n, r, ctx, false);
            }
        }
        channel_box(painter, r, c, ctx, s);
        placed.insert(name.clone(), r);
    }
    placed
}

/// Where a channel would best sit: in the gap between the rows of its
/// senders and receivers, or between them when they share a row.
fn channel_spot(
    from: Option<Pos2>,
    to: Option<Pos2>,
    users: &super::recording::ChannelUsers,
    layout: &Layout,
    s: f32,
) -> Option<Pos2> {
    let (a, b) = match (from, to) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) | (None, Some(a)) => return Some(a + vec2(0.0, 90.0 * s)),
        (None, None) => return None,
    };
    let rect_of = |ids: &std::collections::BTreeSet<String>| {
        ids.iter()
            .filter_map(|id| layout.nodes.get(id).copied())
            .reduce(|x, y| x.union(y))
    };
    let (Some(ra), Some(rb)) = (rect_of(&users.senders), rect_of(&users.receivers)) else {
        return Some(a.lerp(b, 0.5));
    };
    let x = a.lerp(b, 0.5).x;
    if ra.bottom() < rb.top() {
        Some(pos2(x, (ra.bottom() + rb.top()) / 2.0 + 8.0 * s))
    } else if rb.bottom() < ra.top() {
        Some(pos2(x, (rb.bottom() + ra.top()) / 2.0 + 8.0 * s))
    } else {
        Some(a.lerp(b, 0.5))
    }
}

/// The free place nearest to `want` (sliding sideways) where a channel of
/// `size`, with its title above it, covers no node and no other channel.
fn free_spot(
    want: Pos2,
    size: Vec2,
    s: f32,
    layout: &Layout,
    placed: &BTreeMap<String, Rect>,
    area: Rect,
) -> Rect {
    let title_h = 18.0 * s.max(0.75);
    // The title above is about as wide as 30 characters.
    let footprint = |r: Rect| {
        let half = (r.width() / 2.0).max(105.0 * s.max(0.75));
        Rect::from_min_max(
            pos2(r.center().x - half, r.top() - title_h),
            pos2(r.center().x + half, r.bottom()),
        )
        .expand(4.0 * s)
    };
    let free = |r: Rect| {
        let f = footprint(r);
        area.contains_rect(r)
            && !layout.nodes.values().any(|n| n.intersects(f))
            && !placed.values().any(|p| footprint(*p).intersects(f))
    };
    let step = 16.0 * s;
    for k in 0..80u32 {
        let dx = step * (k.div_ceil(2)) as f32 * if k % 2 == 0 { 1.0 } else { -1.0 };
        let r = Rect::from_center_size(want + vec2(dx, 0.0), size);
        if free(r) {
            return r;
        }
    }
    Rect::from_center_size(want, size)
}

fn link(painter: &egui::Painter, node: &Rect, chan: Rect, ctx: &ViewCtx, into: bool) {
    let a = closest_edge_point(node, chan.center());
    let b = closest_edge_point(&chan, node.center());
    let stroke = Stroke::new(
        1.5 * ctx.theme.line_width,
        ctx.theme.weak_text.gamma_multiply(0.8),
    );
    dashed(painter, a, b, stroke);
    // An arrowhead shows the direction messages go.
    let (from, to) = if into { (a, b) } else { (b, a) };
    let dir = (to - from).normalized();
    let side = vec2(-dir.y, dir.x) * 5.0;
    let tip = to - dir * 2.0;
    painter.add(Shape::convex_polygon(
        vec![tip, tip - dir * 9.0 + side, tip - dir * 9.0 - side],
        stroke.color,
        Stroke::NONE,
    ));
}

fn closest_edge_point(r: &Rect, towards: Pos2) -> Pos2 {
    let c = r.center();
    let d = towards - c;
    if d.x.abs() * r.height() > d.y.abs() * r.width() {
        pos2(
            if d.x > 0.0 { r.right() } else { r.left() },
            c.y + d.y * (r.width() / 2.0) / d.x.abs().max(1e-3),
        )
    } else {
        pos2(
            c.x + d.x * (r.height() / 2.0) / d.y.abs().max(1e-3),
            if d.y > 0.0 { r.bottom() } else { r.top() },
        )
    }
}

fn channel_box(painter: &egui::Painter, r: Rect, c: &Channel, ctx: &ViewCtx, s: f32) {
    let t = ctx.theme;
    let full = c.is_full();
    let (kind, shape_r) = match c.kind {
        ChannelKind::Queue => ("Queue", 4.0),
        ChannelKind::Pipe => ("Pipe", 20.0),
    };
    let border = if full {
        theme::okabe_ito::VERMILLION
    } else {
        t.edge
    };
    painter.rect(
        r,
        CornerRadius::same((shape_r * s) as u8),
        t.panel,
        Stroke::new(2.0 * t.line_width, border),
        StrokeKind::Inside,
    );
    let depth = c.depth();
    let count = match (c.maxsize, depth) {
        (Some(m), _) if full => format!("{depth}/{m} FULL"),
        (Some(m), _) => format!("{depth}/{m}"),
        (None, 0) => "empty".to_string(),
        (None, d) => format!("{d} waiting"),
    };
    let duplex = if c.duplex { " ⇄" } else { "" };
    let title = format!("{kind} {}{duplex}: {count}", c.name);
    painter.text(
        r.center_top() + vec2(0.0, -2.0),
        Align2::CENTER_BOTTOM,
        title,
        FontId::proportional(13.0 * s.max(0.75)),
        if full {
            theme::okabe_ito::VERMILLION
        } else {
            t.text
        },
    );
    // The slots: messages waiting, oldest first (the next one out).
    let n = slot_count(c);
    for i in 0..n {
        let cell = slot_rect(r, i, n, s);
        painter.rect_stroke(
            cell,
            CornerRadius::same((3.0 * s) as u8),
            Stroke::new(1.0, t.weak_text.gamma_multiply(0.6)),
            StrokeKind::Inside,
        );
    }
    if depth > n {
        painter.text(
            r.right_bottom() + vec2(-4.0, -2.0) * s,
            Align2::RIGHT_BOTTOM,
            format!("+{}", depth - n),
            FontId::proportional(11.0 * s.max(0.8)),
            t.text,
        );
    }
}

fn slot_rect(r: Rect, i: usize, n: usize, s: f32) -> Rect {
    let w = (r.width() - 16.0 * s) / n as f32;
    let x = r.left() + 8.0 * s + w * i as f32;
    Rect::from_min_size(
        pos2(x + 1.0, r.top() + 10.0 * s),
        vec2(w - 2.0, r.height() - 20.0 * s),
    )
}

/// Message dots: travelling from sender to channel, waiting in it, and
/// travelling from channel to receiver.
fn messages(
    painter: &egui::Painter,
    ctx: &ViewCtx,
    layout: &Layout,
    placed: &BTreeMap<String, Rect>,
) {
    let s = layout.scale;
    let now = ctx.view_t_ns;
    for (name, c) in &ctx.world.channels {
        let Some(r) = placed.get(name) else { continue };
        let n = slot_count(c);
        for (i, m) in c.in_flight.iter().enumerate().take(n) {
            let slot = slot_rect(*r, i, n, s).center();
            let age = now.saturating_sub(m.t_ns);
            let pos = match layout.nodes.get(&m.from) {
                Some(from) if age < TRAVEL_NS => from
                    .center()
                    .lerp(slot, ease(age as f32 / TRAVEL_NS as f32)),
                _ => slot,
            };
            dot(painter, pos, &m.value, ctx.color_of(&m.from), s, ctx);
        }
        for d in &c.deliveries {
            // The whole trip: sender → channel, then channel → receiver
            // (not before it was received, and each leg takes TRAVEL_NS
            // even if the receiver was quicker, so the eye can follow).
            let Some(to) = layout.nodes.get(&d.to) else {
                continue;
            };
            let slot = slot_rect(*r, 0, n, s).center();
            let sent = d.sent_t_ns.unwrap_or(d.recv_t_ns);
            let leg1_end = sent.saturating_add(TRAVEL_NS);
            let leg2_start = d.recv_t_ns.max(leg1_end);
            if now < sent || now >= leg2_start.saturating_add(TRAVEL_NS) {
                continue;
            }
            let from = d.from.as_deref().and_then(|f| layout.nodes.get(f));
            let pos = if now < leg1_end {
                let Some(from) = from else { continue };
                let f = (now - sent) as f32 / TRAVEL_NS as f32;
                from.center().lerp(slot, ease(f))
            } else if now < leg2_start {
                slot
            } else {
                let f = (now - leg2_start) as f32 / TRAVEL_NS as f32;
                slot.lerp(to.center(), ease(f))
            };
            let color = d
                .from
                .as_deref()
                .map_or(ctx.theme.text, |f| ctx.color_of(f));
            dot(painter, pos, &d.value, color, s, ctx);
        }
    }
}

fn dot(painter: &egui::Painter, pos: Pos2, value: &Value, color: Color32, s: f32, ctx: &ViewCtx) {
    let radius = 11.0 * s.max(0.7);
    painter.circle(pos, radius, color, Stroke::new(1.5, ctx.theme.text));
    let text = dot_text(value);
    painter.text(
        pos,
        Align2::CENTER_CENTER,
        text,
        FontId::proportional(11.0 * s.max(0.7)),
        theme::text_on(color),
    );
}

/// What fits in a dot: a pool task `worker(3)` shows `3`.
fn dot_text(value: &Value) -> String {
    if *value == Value::None {
        return String::new();
    }
    let text = value.to_string();
    let inner = text
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(&text);
    if inner.chars().count() <= 4 {
        inner.to_string()
    } else {
        let cut: String = inner.chars().take(3).collect();
        format!("{cut}…")
    }
}

fn ease(f: f32) -> f32 {
    let f = f.clamp(0.0, 1.0);
    f * f * (3.0 - 2.0 * f)
}

fn signals(painter: &egui::Painter, ctx: &ViewCtx, layout: &Layout) {
    for (t, from, to, sig) in &ctx.rec.signals {
        if *t > ctx.view_t_ns || ctx.view_t_ns - t > SIGNAL_NS {
            continue;
        }
        let (Some(a), Some(b)) = (layout.nodes.get(from), layout.nodes.get(to)) else {
            continue;
        };
        let a = closest_edge_point(a, b.center());
        let b = closest_edge_point(b, a);
        let stroke = Stroke::new(4.0, theme::okabe_ito::VERMILLION);
        painter.line_segment([a, b], stroke);
        let dir = (b - a).normalized();
        let side = vec2(-dir.y, dir.x) * 8.0;
        painter.add(Shape::convex_polygon(
            vec![b, b - dir * 16.0 + side, b - dir * 16.0 - side],
            stroke.color,
            Stroke::NONE,
        ));
        painter.text(
            a.lerp(b, 0.5) + vec2(8.0, 0.0),
            Align2::LEFT_CENTER,
            format!("⚡ {sig}"),
            FontId::proportional(17.0 * layout.scale.max(0.8)),
            theme::okabe_ito::VERMILLION,
        );
    }
}

// ---- shared values and locks ----------------------------------------------

/// Shared values and locks, in a column; returns where each lock is.
fn side_panel(
    ui: &mut Ui,
    painter: &egui::Painter,
    area: Rect,
    ctx: &ViewCtx,
) -> BTreeMap<String, Rect> {
    let t = ctx.theme;
    let big = if t.presenter { 1.15 } else { 1.0 };
    let mut y = area.top();
    let w = area.width();
    let mut lock_rects = BTreeMap::new();
    for v in ctx.world.values.values() {
        let h = 118.0 * big
            + access_lines(ctx.world) as f32 * ACCESS_LINE_H * big
            + if v.lost_updates.is_empty() {
                0.0
            } else {
                LOST_BANNER_H * big + 6.0
            };
        let r = Rect::from_min_size(pos2(area.left(), y), vec2(w, h));
        value_box(ui, painter, r, v, ctx, big);
        y += h + 10.0;
    }
    for l in ctx.world.locks.values() {
        let h = 84.0 * big;
        let r = Rect::from_min_size(pos2(area.left(), y), vec2(w, h));
        painter.rect(
            r,
            CornerRadius::same(8),
            t.node_fill,
            Stroke::new(2.0 * t.line_width, theme::okabe_ito::ORANGE),
            StrokeKind::Inside,
        );
        painter.text(
            r.left_top() + vec2(10.0, 6.0),
            Align2::LEFT_TOP,
            format!("🔒 Lock {}", l.name),
            FontId::proportional(17.0 * big),
            t.text,
        );
        let holder_y = r.top() + 32.0 * big;
        match &l.holder {
            Some(h) => {
                painter.text(
                    pos2(r.left() + 10.0, holder_y),
                    Align2::LEFT_TOP,
                    "held by",
                    FontId::proportional(14.0 * big),
                    t.weak_text,
                );
                chip(
                    painter,
                    pos2(r.left() + 70.0 * big, holder_y - 2.0),
                    h,
                    ctx,
                    15.0 * big,
                );
            }
            None => {
                painter.text(
                    pos2(r.left() + 10.0, holder_y),
                    Align2::LEFT_TOP,
                    "free",
                    FontId::proportional(14.0 * big),
                    t.weak_text,
                );
            }
        }
        let wait_y = r.top() + 56.0 * big;
        painter.text(
            pos2(r.left() + 10.0, wait_y),
            Align2::LEFT_TOP,
            if l.waiters.is_empty() {
                "nobody waiting"
            } else {
                "waiting:"
            },
            FontId::proportional(14.0 * big),
            t.weak_text,
        );
        let mut x = r.left() + 70.0 * big;
        for w in &l.waiters {
            x = chip(painter, pos2(x, wait_y - 2.0), w, ctx, 15.0 * big) + 6.0;
        }
        let label = format!(
            "lock {} held by {}",
            l.name,
            l.holder.as_deref().unwrap_or("nobody")
        );
        let resp = ui.interact(r, ui.scope_id().with(("lock", &l.name)), Sense::hover());
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
        lock_rects.insert(l.name.clone(), r);
        y += h + 10.0;
    }
    lock_rects
}

/// A small coloured name tag; returns its right edge.
fn chip(painter: &egui::Painter, at: Pos2, id: &str, ctx: &ViewCtx, size: f32) -> f32 {
    let color = ctx.color_of(id);
    let galley = painter.layout_no_wrap(
        id.to_string(),
        FontId::proportional(size),
        theme::text_on(color),
    );
    let r = Rect::from_min_size(at, galley.size() + vec2(10.0, 4.0));
    painter.rect_filled(r, CornerRadius::same(4), color);
    painter.galley(r.min + vec2(5.0, 2.0), galley, theme::text_on(color));
    r.right()
}

fn value_box(
    ui: &mut Ui,
    painter: &egui::Painter,
    r: Rect,
    v: &SharedValue,
    ctx: &ViewCtx,
    big: f32,
) {
    let t = ctx.theme;
    let last_write = v.writes().last();
    let flash = last_write
        .filter(|w| ctx.view_t_ns >= w.t_ns)
        .map(|w| ctx.view_t_ns - w.t_ns)
        .filter(|age| *age < FLASH_NS)
        .map(|age| 1.0 - age as f32 / FLASH_NS as f32);
    let fill = match flash {
        Some(f) => theme::mix(t.node_fill, t.flash, f),
        None => t.node_fill,
    };
    painter.rect(
        r,
        CornerRadius::same(8),
        fill,
        Stroke::new(2.0 * t.line_width, theme::okabe_ito::SKY_BLUE),
        StrokeKind::Inside,
    );
    let kind = if v.is_array {
        "shared Array"
    } else {
        "shared Value"
    };
    painter.text(
        r.left_top() + vec2(10.0, 6.0),
        Align2::LEFT_TOP,
        format!("{kind} {}", v.name),
        FontId::proportional(15.0 * big),
        t.weak_text,
    );
    let value_text = short(&v.current, 28);
    painter.text(
        r.left_top() + vec2(10.0, 26.0 * big),
        Align2::LEFT_TOP,
        &value_text,
        FontId::proportional(34.0 * big),
        t.text,
    );
    let label = format!("shared {} = {}", v.name, v.current.repr());
    let resp = ui.interact(r, ui.scope_id().with(("value", &v.name)), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
    let mut y = r.top() + 70.0 * big;
    if let Some(w) = last_write {
        painter.text(
            pos2(r.left() + 10.0, y + 2.0),
            Align2::LEFT_TOP,
            "written by",
            FontId::proportional(13.0 * big),
            t.weak_text,
        );
        chip(
            painter,
            pos2(r.left() + 80.0 * big, y),
            &w.proc_id,
            ctx,
            13.0 * big,
        );
    }
    y += 22.0 * big;
    // The last few writes, each in its writer's colour.
    let writes: Vec<_> = v.writes().collect();
    let recent = &writes[writes.len().saturating_sub(10)..];
    let mut x = r.left() + 10.0;
    for (i, w) in recent.iter().enumerate() {
        let text = if i == 0 {
            short(&w.value, 8)
        } else {
            format!(", {}", short(&w.value, 8))
        };
        let galley = painter.layout_no_wrap(
            text,
            FontId::proportional(13.0 * big),
            ctx.color_of(&w.proc_id),
        );
        if x + galley.size().x > r.right() - 6.0 {
            break;
        }
        let width = galley.size().x;
        painter.galley(pos2(x, y), galley, t.text);
        x += width + 2.0;
    }
    if access_lines(ctx.world) > 0 {
        recent_accesses(painter, r, y + 22.0 * big, v, ctx, big);
    }
    if let Some(lost) = v.lost_updates.back() {
        lost_update_banner(ui, painter, r, v, lost, ctx, big);
    }
}

/// Recent reads and writes shown in each value's box (none when there
/// are many values: no room).
fn access_lines(world: &World) -> usize {
    if world.values.len() <= 2 { 4 } else { 0 }
}

const ACCESS_LINE_H: f32 = 19.0;

/// The last reads and writes of a value, oldest first: `main.1 read 0`,
/// `main.2 wrote 1`. A lost update is two reads of the same value
/// followed by two writes; here it can be read off line by line.
fn recent_accesses(
    painter: &egui::Painter,
    r: Rect,
    top: f32,
    v: &SharedValue,
    ctx: &ViewCtx,
    big: f32,
) {
    use crate::model::Access;
    let n = access_lines(ctx.world);
    let accesses: Vec<_> = v
        .history
        .iter()
        .filter(|a| a.access != Access::Initial)
        .collect();
    let font = FontId::proportional(14.0 * big);
    let mut y = top;
    for a in &accesses[accesses.len().saturating_sub(n)..] {
        let x = chip(
            painter,
            pos2(r.left() + 10.0, y),
            &a.proc_id,
            ctx,
            13.0 * big,
        );
        let lost = a.access == Access::Write
            && v.lost_updates
                .iter()
                .any(|lu| lu.t_ns == a.t_ns && lu.proc_id == a.proc_id);
        let (verb, color) = match (a.access, lost) {
            (Access::Read, _) => ("read", ctx.theme.text),
            (_, false) => ("wrote", ctx.theme.text),
            (_, true) => ("wrote", theme::okabe_ito::VERMILLION),
        };
        let text = format!(
            "{verb} {}{}",
            short(&a.value, 12),
            if lost { "  ⚠" } else { "" }
        );
        painter.text(
            pos2(x + 6.0, y + 1.0),
            Align2::LEFT_TOP,
            text,
            font.clone(),
            color,
        );
        y += ACCESS_LINE_H * big;
    }
}

/// Height of the red "LOST UPDATE" band at the bottom of a value box.
const LOST_BANNER_H: f32 = 44.0;

/// `LOST UPDATE: main.2 read 0, wrote 1 over 1`, white on red, at the
/// bottom of the value's box (which gets a red border too).
fn lost_update_banner(
    ui: &mut Ui,
    painter: &egui::Painter,
    r: Rect,
    v: &SharedValue,
    lost: &crate::model::LostUpdate,
    ctx: &ViewCtx,
    big: f32,
) {
    let red = theme::okabe_ito::VERMILLION;
    painter.rect_stroke(
        r,
        CornerRadius::same(8),
        Stroke::new(3.0 * ctx.theme.line_width.max(1.0), red),
        StrokeKind::Inside,
    );
    let band = Rect::from_min_max(
        pos2(r.left() + 3.0, r.bottom() - LOST_BANNER_H * big - 3.0),
        pos2(r.right() - 3.0, r.bottom() - 3.0),
    );
    painter.rect_filled(band, CornerRadius::same(5), red);
    let what = format!(
        "{} read {}, wrote {} over {}",
        lost.proc_id,
        short(&lost.read, 10),
        short(&lost.written, 10),
        short(&lost.replaced, 10),
    );
    let title = if v.lost_updates_total() > 1 {
        format!("⚠ LOST UPDATE (×{})", v.lost_updates_total())
    } else {
        "⚠ LOST UPDATE".to_string()
    };
    let white = Color32::WHITE;
    painter.text(
        band.left_top() + vec2(8.0, 3.0),
        Align2::LEFT_TOP,
        title,
        FontId::proportional(16.0 * big),
        white,
    );
    let size = fit_size(painter, &what, 14.0 * big, band.width() - 16.0);
    painter.text(
        band.left_bottom() + vec2(8.0, -4.0),
        Align2::LEFT_BOTTOM,
        &what,
        FontId::proportional(size),
        white,
    );
    let label = format!("LOST UPDATE: {what}");
    let resp = ui.interact(band, ui.scope_id().with(("lost", &v.name)), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
}

/// The font size (at most `size`, at least 70 % of it) at which `text`
/// fits in `width`.
fn fit_size(painter: &egui::Painter, text: &str, size: f32, width: f32) -> f32 {
    let w = painter
        .layout_no_wrap(text.to_string(), FontId::proportional(size), Color32::WHITE)
        .size()
        .x;
    size * (width / w.max(1.0)).clamp(0.7, 1.0)
}

fn caption(painter: &egui::Painter, r: Rect, ctx: &ViewCtx) {
    let Some(text) = &ctx.world.caption else {
        return;
    };
    let size = if ctx.theme.presenter { 20.0 } else { 17.0 };
    let galley = painter.layout(
        text.clone(),
        FontId::proportional(size),
        ctx.theme.text,
        r.width() - 24.0,
    );
    let box_r = Rect::from_center_size(r.center(), galley.size() + vec2(24.0, 10.0));
    painter.rect_filled(box_r, CornerRadius::same(6), ctx.theme.panel);
    painter.galley(box_r.min + vec2(12.0, 5.0), galley, ctx.theme.text);
}

// ---- small helpers ----------------------------------------------------------

/// A value as text, cut to `max` characters.
fn short(v: &Value, max: usize) -> String {
    let text = v.repr();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn dashed(painter: &egui::Painter, a: Pos2, b: Pos2, stroke: Stroke) {
    painter.extend(Shape::dashed_line(&[a, b], stroke, 7.0, 5.0));
}

fn dashed_rect(painter: &egui::Painter, r: Rect, stroke: Stroke) {
    let pts = [
        r.left_top(),
        r.right_top(),
        r.right_bottom(),
        r.left_bottom(),
        r.left_top(),
    ];
    painter.extend(Shape::dashed_line(&pts, stroke, 9.0, 6.0));
}

#[cfg(test)]
mod thread_lane_tests {
    use super::*;
    use crate::protocol::{Body, Event};

    fn ev(thread: Option<(&str, i32)>, body: Body) -> Event {
        Event {
            t_ns: 1,
            seq: 0,
            proc_id: "main".into(),
            pid: 10,
            line: None,
            thread: thread.map(|(n, _)| n.to_string()),
            tid: thread.map(|(_, t)| t),
            body,
        }
    }

    #[test]
    fn a_process_node_has_a_lane_per_thread_with_its_state() {
        let start = |daemon| Body::ThreadStart {
            role: "work".into(),
            daemon,
        };
        let events = [
            ev(
                None,
                Body::Hello {
                    ppid: 1,
                    role: "main".into(),
                    parent: None,
                    daemon: false,
                    ns_pid: None,
                },
            ),
            ev(Some(("main.t1", 11)), start(false)),
            ev(Some(("main.t2", 12)), start(false)),
            ev(
                Some(("main.t1", 11)),
                Body::LockAcquire { lock: "l".into() },
            ),
            ev(Some(("main.t1", 11)), Body::Sleep { duration_ms: 5.0 }),
            ev(Some(("main.t2", 12)), Body::LockWait { lock: "l".into() }),
        ];
        let world = World::from_events(&events);
        let p = world.process("main").expect("main");
        let lines: Vec<String> = extra_lines(&world, p).into_iter().map(|l| l.0).collect();
        assert_eq!(lines[0], "thread main.t1 (tid 11): sleeping, 🔒 l");
        assert!(
            lines[1].starts_with("thread main.t2 (tid 12): blocked"),
            "{lines:?}"
        );
        assert!(extra_lines_max(&world) >= 2);
    }
}
