//! The stage: the process tree, the channels between processes with their
//! messages moving, shared values, locks, pools, and the narration. Drawn
//! with the painter from the World at the moment shown, so scrubbing back
//! redraws the past exactly; every animation is a function of that moment
//! (not of the wall clock), which is what makes pause and scrub consistent.

//!
//! Where things go is decided by [`super::layout`] (a pure function, the
//! same one `--dump-layout` writes and the tests check); this file paints.

use super::layout::{self, Card, Label, NodeBox, StageInput, StageLayout, short};
use super::{Command, ViewCtx, theme};
use crate::model::{ChannelKind, Process, SharedValue};
use crate::protocol::RUNNER_ID;
use egui::{
    Align2, Color32, CornerRadius, FontId, Pos2, Rect, Sense, Shape, Stroke, StrokeKind, Ui, pos2,
    vec2,
};

/// A written value flashes this long.
const FLASH_NS: u64 = 700_000_000;
/// A signal arrow stays this long.
const SIGNAL_NS: u64 = 1_500_000_000;
/// Step mode: the pick number's room before a name (k units).
const PICK_W: f32 = 1.8;

/// The stage's own state: the last layout drawn (for `--dump-layout`).
#[derive(Default)]
pub struct StageView {
    pub last_layout: Option<StageLayout>,
    fit_cache: layout::FitCache,
    /// The stage's rectangle in the last frame (points).
    pub last_rect: Option<Rect>,
}

impl StageView {
    pub fn ui(&mut self, ui: &mut Ui, ctx: &ViewCtx, cmds: &mut Vec<Command>) {
        let full = ui.available_rect_before_wrap();
        self.last_rect = Some(full);
        let (_, bg) = ui.allocate_exact_size(full.size(), Sense::click());
        if bg.clicked() {
            cmds.push(Command::SelectProcess(None));
        }
        let painter = ui.painter_at(full);
        if ctx.rec.is_empty() {
            empty_stage(&painter, full, ctx);
            self.last_layout = None;
            return;
        }
        let world = ctx.world;
        let input = StageInput {
            layout_world: ctx.layout_world,
            world,
            channel_users: &ctx.rec.channel_users,
            presenter: ctx.theme.presenter,
            gated: ctx.rec.log.counts_by_kind().contains_key("pending"),
            deadlock: !ctx.deadlock.is_empty() || ctx.layout_world.deadlock.is_some(),
            view_t_ns: ctx.view_t_ns,
            widest_state: &ctx.rec.widest_state,
            px_per_pt: ui.ctx().pixels_per_point(),
            window_h_px: ui.ctx().content_rect().height() * ui.ctx().pixels_per_point(),
            zoom: ctx.zoom,
        };
        let mut layout = layout::layout_cached(&input, full, &mut self.fit_cache);
        let k = layout.k;
        // Step mode: a node's pick number goes before its name (the name
        // moves right to make room, and its news tag with it).
        for (id, nb) in layout.nodes.iter_mut() {
            let numbered = ctx.world.processes.get(id).is_some_and(|p| {
                p.pending.is_some() && p.is_alive() && ctx.step.numbers.contains_key(id)
            });
            if !numbered {
                continue;
            }
            nb.name.rect = nb.name.rect.translate(vec2(PICK_W * k, 0.0));
            if let Some((_, words)) = nb.news.clone() {
                layout::put_news(nb, &words.text, k);
            }
        }
        // A signal's news, for a moment, on the node that got it (where
        // the pid was: the pid moves under the name).
        for (t, _, to, sig) in &ctx.rec.signals {
            if *t > ctx.view_t_ns || ctx.view_t_ns - t > SIGNAL_NS {
                continue;
            }
            if let Some(nb) = layout.nodes.get_mut(to) {
                layout::put_news(nb, &format!("⚡ {sig}"), k);
            }
        }

        // Tree edges first, under everything.
        let edge = Stroke::new(1.5 * ctx.theme.line_width, ctx.theme.edge);
        for (_, _, a, b) in &layout.edges {
            painter.line_segment([*a, *b], edge);
        }
        for p in world.processes.values() {
            if p.adopted
                && let Some(r) = layout.nodes.get(&p.id)
                && let Some(orig) = p
                    .original_parent
                    .as_deref()
                    .filter(|o| Some(*o) != p.parent.as_deref())
                    .and_then(|id| layout.nodes.get(id))
            {
                // From the side of the old parent that faces the child to
                // the child's side facing it: never under either box.
                let stroke = Stroke::new(1.5 * ctx.theme.line_width, theme::okabe_ito::ORANGE);
                let (from, to) = facing_sides(orig.rect, r.rect);
                dashed(&painter, from, to, stroke);
                note(
                    &layout,
                    format!("was_parent:{}>{}", orig.name.text, p.id),
                    "edge",
                    Rect::from_two_pos(from, to),
                    None,
                    None,
                );
            }
        }
        pools(&painter, ctx, &layout);
        channels(&painter, ctx, &layout);
        // The deadlock's arrows under the nodes: they never cross a
        // node's words.
        if layout.banner.is_some() {
            deadlock_cycle(&painter, ctx, &layout);
        }
        for row in world.processes_by_tree() {
            let p = row.process;
            if let Some(nb) = layout.nodes.get(&p.id) {
                let r = nb.rect;
                let response = ui.interact(r, ui.scope_id().with(("node", &p.id)), Sense::click());
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
                    runner_node(&painter, nb, ctx, k);
                } else {
                    node(&painter, nb, p, ctx, k, response.hovered());
                }
            }
        }
        messages(&painter, ctx, &layout);
        signals(&painter, ctx, &layout);
        next_steps(ui, &painter, ctx, &layout, cmds);
        side_cards(ui, &painter, ctx, &layout);
        if let Some(banner) = &layout.banner {
            deadlock_banner(ui, &painter, banner);
        }
        caption(&painter, &layout, ctx);
        self.last_layout = Some(layout);
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

// ---- processes ------------------------------------------------------------

fn text_at(painter: &egui::Painter, l: &Label, color: Color32) {
    painter.text(
        l.rect.min,
        Align2::LEFT_TOP,
        &l.text,
        FontId::proportional(l.font),
        color,
    );
}

fn node(painter: &egui::Painter, nb: &NodeBox, p: &Process, ctx: &ViewCtx, k: f32, hovered: bool) {
    let t = ctx.theme;
    let rect = nb.rect;
    let look = theme::state_look(p);
    let id_color = ctx.color_of(&p.id);
    let fill = if look.greyed {
        t.reaped_fill
    } else {
        t.node_fill
    };
    let radius = CornerRadius::same((0.7 * k) as u8);
    painter.rect_filled(rect, radius, fill);
    let selected = ctx.selected == Some(p.id.as_str());
    let border_w = (if selected { 5.0 } else { 2.5 }) * t.line_width.max(1.0) * (k / 14.0).max(0.6);
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
    // Header: (step mode: the pick number,) the logical id, big; the pid
    // at the right.
    pick_number(painter, nb.name.rect.min - vec2(PICK_W * k, 0.0), p, ctx, k);
    painter.text(
        nb.name.rect.min,
        Align2::LEFT_TOP,
        &nb.name.text,
        FontId::proportional(nb.name.font),
        t.ink(if look.greyed { t.weak_text } else { id_color }),
    );
    if let Some((tag, words)) = &nb.news {
        // The news of the moment, where the pid usually is.
        painter.rect_filled(*tag, CornerRadius::same(4), theme::ALARM);
        text_at(painter, words, Color32::WHITE);
    }
    if let Some(pid) = &nb.pid {
        text_at(painter, pid, text_color);
    }
    if let Some(tags) = &nb.tags {
        text_at(
            painter,
            tags,
            t.ink(if p.orphaned || p.adopted {
                theme::okabe_ito::ORANGE
            } else {
                t.weak_text
            }),
        );
    }
    // The state badge: colour, icon and words.
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
    let r = CornerRadius::same((0.35 * k) as u8);
    painter.rect_filled(nb.badge, r, badge_fill);
    if look.greyed {
        painter.rect_stroke(
            nb.badge,
            r,
            Stroke::new(1.0, t.weak_text),
            StrokeKind::Inside,
        );
    }
    let galley = painter.layout(
        nb.state.text.clone(),
        FontId::proportional(nb.state.font),
        badge_text,
        nb.state.rect.width() + 1.0,
    );
    painter.galley(nb.state.rect.min, galley, badge_text);
    for (line, color) in &nb.extra {
        text_at(painter, line, t.ink(color.unwrap_or(text_color)));
    }
}

/// Step mode: under each waiting process its next step ("read counter"),
/// with its pick number beside the node. Those that may go now are
/// yellow and clickable; those that may not are dashed and say why.
fn next_steps(
    ui: &mut Ui,
    painter: &egui::Painter,
    ctx: &ViewCtx,
    layout: &StageLayout,
    cmds: &mut Vec<Command>,
) {
    let k = layout.k;
    let t = ctx.theme;
    for p in ctx.world.processes.values() {
        let Some(action) = p.pending.as_deref() else {
            continue;
        };
        if p.id == RUNNER_ID || !p.is_alive() {
            continue;
        }
        let Some(nb) = layout.nodes.get(&p.id) else {
            continue;
        };
        let Some(r) = nb.next else { continue };
        let node = nb.rect;
        let choice = ctx.step.choices.get(&p.id);
        let can = matches!(choice, Some(None));
        let why = match choice {
            Some(Some(w)) => Some(w.as_str()),
            _ => None,
        };
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
                pos2(tip.x + 0.5 * k, r.top() + 1.0),
                pos2(tip.x - 0.5 * k, r.top() + 1.0),
            ],
            if can { fill } else { t.weak_text },
            Stroke::NONE,
        ));
        let radius = CornerRadius::same((0.4 * k) as u8);
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
        let room = r.width() - 0.8 * k;
        let size = fit_size(painter, &line1, k, room);
        let top = if why.is_some() {
            r.top() + 0.2 * k
        } else {
            r.center().y - size * 0.62
        };
        let words = painter.text(
            pos2(r.left() + 0.4 * k, top),
            Align2::LEFT_TOP,
            &line1,
            FontId::proportional(size),
            ink,
        );
        let next_id = format!("next:{}", p.id);
        note(
            layout,
            format!("{next_id}/step"),
            "label",
            words,
            Some(size),
            Some(&next_id),
        );
        if let Some(why) = why {
            let size = fit_size(painter, why, k, room);
            let words = painter.text(
                pos2(r.left() + 0.4 * k, r.bottom() - 0.2 * k),
                Align2::LEFT_BOTTOM,
                why,
                FontId::proportional(size),
                t.ink(theme::okabe_ito::VERMILLION),
            );
            note(
                layout,
                format!("{next_id}/why"),
                "label",
                words,
                Some(size),
                Some(&next_id),
            );
        }
    }
}

/// Step mode: the number a waiting process is picked by (key 1–9), in a
/// circle at the start of its header (yellow when it may go now); returns
/// the room it takes.
fn pick_number(painter: &egui::Painter, at: Pos2, p: &Process, ctx: &ViewCtx, k: f32) -> f32 {
    let Some(n) = ctx
        .step
        .numbers
        .get(&p.id)
        .filter(|_| p.pending.is_some() && p.is_alive())
    else {
        return 0.0;
    };
    let t = ctx.theme;
    let radius = 0.75 * k;
    let c = at + vec2(radius, radius);
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
        FontId::proportional(k),
        ink,
    );
    2.0 * radius + 0.3 * k
}

/// The wait-for cycle in red: each waiting process → the lock it waits
/// for → the process holding that lock (or straight to the process it
/// waits to end). The words are in the banner and on the lock cards, so
/// the arrows carry none (they would land on other things).
fn deadlock_cycle(painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    let red = theme::okabe_ito::VERMILLION;
    let k = layout.k;
    let stroke = Stroke::new(4.0 * ctx.theme.line_width.max(1.0), red);
    for e in ctx.deadlock {
        let (Some(waiter), Some(holder)) =
            (layout.nodes.get(&e.waiter), layout.nodes.get(&e.holder))
        else {
            continue;
        };
        let (waiter, holder) = (waiter.rect, holder.rect);
        painter.rect_stroke(
            waiter.expand(4.0),
            CornerRadius::same((0.8 * k) as u8),
            stroke,
            StrokeKind::Outside,
        );
        // Arrowheads stop short of the ring round a node (and of a
        // card's border), never on them.
        let (ring_w, ring_h) = (waiter.expand(12.0), holder.expand(12.0));
        let mut arrows = Vec::new();
        match e
            .lock
            .as_deref()
            .and_then(|l| layout.locks.get(l).map(|c| (l, c)))
        {
            Some((lock, card)) => {
                // Into and out of the card's left side (the cards stand
                // right of the tree), so no arrow crosses a card's words.
                // Below the banner's corner when the card stands beside
                // it (an arrowhead landed on the corner).
                let lr = card.rect;
                let below_banner = layout
                    .banner
                    .as_ref()
                    .map_or(f32::MIN, |(b, _, _)| b.bottom() + 0.6 * k);
                let out_y = lr.top() + lr.height() * 0.8;
                let into_y = (lr.top() + lr.height() * 0.3)
                    .max(below_banner)
                    .min(out_y - 0.9 * k);
                let into = pos2(lr.left() - 4.0, into_y);
                let out = pos2(lr.left(), out_y);
                arrows.push((
                    format!("deadlock:{}>{lock}", e.waiter),
                    closest_edge_point(&ring_w, into),
                    into,
                ));
                arrows.push((
                    format!("deadlock:{lock}>{}", e.holder),
                    out,
                    closest_edge_point(&ring_h, out),
                ));
            }
            None => arrows.push((
                format!("deadlock:{}>{}", e.waiter, e.holder),
                closest_edge_point(&ring_w, holder.center()),
                closest_edge_point(&ring_h, waiter.center()),
            )),
        }
        for (id, a, b) in arrows {
            red_arrow(painter, a, b, stroke);
            note(layout, id, "edge", Rect::from_two_pos(a, b), None, None);
        }
    }
}

fn red_arrow(painter: &egui::Painter, a: Pos2, b: Pos2, stroke: Stroke) {
    let dir = (b - a).normalized();
    let tip = b - dir * 2.0;
    painter.line_segment([a, tip - dir * 10.0], stroke);
    let side = vec2(-dir.y, dir.x) * 9.0;
    painter.add(Shape::convex_polygon(
        vec![tip, tip - dir * 18.0 + side, tip - dir * 18.0 - side],
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

/// `DEADLOCK: main.1 holds a, waits for b; …` across the top of the stage.
fn deadlock_banner(ui: &mut Ui, painter: &egui::Painter, banner: &(Rect, Label, Label)) {
    let (r, title, cycle) = banner;
    painter.rect_filled(*r, CornerRadius::same(8), theme::ALARM);
    text_at(painter, title, Color32::WHITE);
    text_at(painter, cycle, Color32::WHITE);
    let label = format!("DEADLOCK: {}", cycle.text);
    let resp = ui.interact(*r, ui.scope_id().with("deadlock"), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
}

fn runner_node(painter: &egui::Painter, nb: &NodeBox, ctx: &ViewCtx, k: f32) {
    let t = ctx.theme;
    let box_r = nb.name.rect.expand2(vec2(0.5, 0.25) * k);
    painter.rect(
        box_r,
        CornerRadius::same((0.4 * k) as u8),
        t.panel,
        Stroke::new(1.0, t.weak_text),
        StrokeKind::Inside,
    );
    text_at(painter, &nb.name, t.weak_text);
}

// ---- pools ----------------------------------------------------------------

fn pools(painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    for pool in layout.pools.values() {
        painter.rect(
            pool.frame,
            CornerRadius::same((0.8 * layout.k) as u8),
            theme::okabe_ito::BLUE.gamma_multiply(0.10),
            Stroke::new(2.0 * ctx.theme.line_width, theme::okabe_ito::BLUE),
            StrokeKind::Outside,
        );
        text_at(painter, &pool.label, ctx.theme.text);
    }
}

// ---- channels and messages ------------------------------------------------

/// Every channel in its place, with dashed arrows from its senders and to
/// its receivers.
fn channels(painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    let stroke = Stroke::new(
        1.5 * ctx.theme.line_width,
        ctx.theme.weak_text.gamma_multiply(0.8),
    );
    for (_, _, from, to) in &layout.links {
        dashed(painter, *from, *to, stroke);
        // An arrowhead shows the direction messages go.
        let dir = (*to - *from).normalized();
        let side = vec2(-dir.y, dir.x) * 5.0;
        let tip = *to - dir * 2.0;
        painter.add(Shape::convex_polygon(
            vec![tip, tip - dir * 9.0 + side, tip - dir * 9.0 - side],
            stroke.color,
            Stroke::NONE,
        ));
    }
    for (name, cb) in &layout.channels {
        let Some(c) = ctx
            .world
            .channels
            .get(name)
            .or_else(|| ctx.layout_world.channels.get(name))
        else {
            continue;
        };
        channel_box(painter, cb, c, ctx, layout.k);
    }
}

fn channel_box(
    painter: &egui::Painter,
    cb: &layout::ChannelBox,
    c: &crate::model::Channel,
    ctx: &ViewCtx,
    k: f32,
) {
    let t = ctx.theme;
    let r = cb.rect;
    let full = c.is_full();
    let shape_r = match c.kind {
        ChannelKind::Queue => 0.25 * k,
        ChannelKind::Pipe => 1.2 * k,
    };
    let border = if full {
        theme::okabe_ito::VERMILLION
    } else {
        t.edge
    };
    painter.rect(
        r,
        CornerRadius::same(shape_r as u8),
        t.panel,
        Stroke::new(2.0 * t.line_width, border),
        StrokeKind::Inside,
    );
    // On the stage's ground, so no edge strikes through it.
    painter.rect_filled(cb.title.rect.expand(2.0), CornerRadius::same(3), t.bg);
    text_at(
        painter,
        &cb.title,
        if full {
            t.ink(theme::okabe_ito::VERMILLION)
        } else {
            t.text
        },
    );
    // The slots: messages waiting, oldest first (the next one out).
    let n = cb.slots;
    for i in 0..n {
        painter.rect_stroke(
            layout::slot_rect(r, i, n, k),
            CornerRadius::same((0.2 * k) as u8),
            Stroke::new(1.0, t.weak_text.gamma_multiply(0.6)),
            StrokeKind::Inside,
        );
    }
    let depth = c.depth();
    if depth > n {
        painter.text(
            r.right_bottom() + vec2(-0.2, -0.1) * k,
            Align2::RIGHT_BOTTOM,
            format!("+{}", depth - n),
            FontId::proportional(0.7 * k),
            t.text,
        );
    }
}

/// Message dots, where the layout put them: a pill with the message's
/// text at the size the layout chose (a key label).
fn messages(painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    for d in &layout.dots {
        let color = d
            .from
            .as_deref()
            .map_or(ctx.theme.text, |f| theme::dot_fill(ctx.color_of(f)));
        let round = CornerRadius::same((d.rect.height() / 2.0).min(120.0) as u8);
        painter.rect_filled(d.rect, round, color);
        painter.rect_stroke(
            d.rect,
            round,
            Stroke::new(1.5, ctx.theme.text),
            StrokeKind::Inside,
        );
        painter.text(
            d.center,
            Align2::CENTER_CENTER,
            &d.text.text,
            FontId::proportional(d.text.font),
            theme::text_on(color),
        );
    }
}

/// A signal: a red arrow from sender to receiver, and `⚡ SIGTERM` on the
/// receiver's node (where the role is), for a moment.
fn signals(painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    for (t, from, to, sig) in &ctx.rec.signals {
        if *t > ctx.view_t_ns || ctx.view_t_ns - t > SIGNAL_NS {
            continue;
        }
        let (Some(a), Some(b)) = (layout.nodes.get(from), layout.nodes.get(to)) else {
            continue;
        };
        let (a, b) = (a.rect, b.rect);
        let pa = closest_edge_point(&a, b.center());
        let pb = closest_edge_point(&b, pa);
        let stroke = Stroke::new(4.0, theme::okabe_ito::VERMILLION);
        painter.line_segment([pa, pb], stroke);
        let dir = (pb - pa).normalized();
        let side = vec2(-dir.y, dir.x) * 8.0;
        painter.add(Shape::convex_polygon(
            vec![pb, pb - dir * 16.0 + side, pb - dir * 16.0 - side],
            stroke.color,
            Stroke::NONE,
        ));
        note(
            layout,
            format!("signal:{from}>{to}:{sig}"),
            "edge",
            Rect::from_two_pos(pa, pb),
            None,
            None,
        );
    }
}

// ---- shared values and locks ----------------------------------------------

/// Shared value and lock cards where the layout put them.
fn side_cards(ui: &mut Ui, painter: &egui::Painter, ctx: &ViewCtx, layout: &StageLayout) {
    for (name, card) in &layout.values {
        if let Some(v) = ctx.world.values.get(name) {
            value_box(ui, painter, layout, card, v, ctx);
        }
    }
    let t = ctx.theme;
    for (name, card) in &layout.locks {
        let Some(l) = ctx.world.locks.get(name) else {
            continue;
        };
        let (r, big) = (card.rect, card.big);
        let lock_id = format!("lock:{name}");
        painter.rect(
            r,
            CornerRadius::same(8),
            t.node_fill,
            Stroke::new(2.0 * t.line_width, theme::okabe_ito::ORANGE),
            StrokeKind::Inside,
        );
        text_at(painter, &card.title, t.text);
        let holder_y = r.top() + 32.0 * big;
        match &l.holder {
            Some(h) => {
                let words = painter.text(
                    pos2(r.left() + 10.0 * big, holder_y),
                    Align2::LEFT_TOP,
                    "held by",
                    FontId::proportional(14.0 * big),
                    t.weak_text,
                );
                note(
                    layout,
                    format!("{lock_id}/held_by"),
                    "label",
                    words,
                    Some(14.0 * big),
                    Some(&lock_id),
                );
                chip(
                    painter,
                    layout,
                    (&lock_id, "holder_chip"),
                    card.main.rect.min,
                    h,
                    ctx,
                    card.main.font,
                );
            }
            None => text_at(painter, &card.main, t.weak_text),
        }
        let wait_y = r.top() + 56.0 * big;
        let words = painter.text(
            pos2(r.left() + 10.0 * big, wait_y),
            Align2::LEFT_TOP,
            if l.waiters.is_empty() {
                "nobody waiting"
            } else {
                "waiting:"
            },
            FontId::proportional(14.0 * big),
            t.weak_text,
        );
        note(
            layout,
            format!("{lock_id}/waiting"),
            "label",
            words,
            Some(14.0 * big),
            Some(&lock_id),
        );
        let mut x = r.left() + 70.0 * big;
        for (i, w) in l.waiters.iter().enumerate() {
            let what = format!("waiter{i}");
            x = chip(
                painter,
                layout,
                (&lock_id, &what),
                pos2(x, wait_y - 2.0),
                w,
                ctx,
                15.0 * big,
            ) + 6.0;
        }
        let label = format!(
            "lock {} held by {}",
            l.name,
            l.holder.as_deref().unwrap_or("nobody")
        );
        let resp = ui.interact(r, ui.scope_id().with(("lock", &l.name)), Sense::hover());
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
    }
}

/// A small coloured name tag, noted for the dump as `{parent}/{what}`;
/// returns its right edge.
#[allow(clippy::too_many_arguments)]
fn chip(
    painter: &egui::Painter,
    layout: &StageLayout,
    (parent, what): (&str, &str),
    at: Pos2,
    id: &str,
    ctx: &ViewCtx,
    size: f32,
) -> f32 {
    let color = ctx.color_of(id);
    let galley = painter.layout_no_wrap(
        id.to_string(),
        FontId::proportional(size),
        theme::text_on(color),
    );
    let r = Rect::from_min_size(at, galley.size() + vec2(10.0, 4.0));
    painter.rect_filled(r, CornerRadius::same(4), color);
    painter.galley(r.min + vec2(5.0, 2.0), galley, theme::text_on(color));
    note(
        layout,
        format!("{parent}/{what}"),
        "label",
        r,
        Some(size),
        Some(parent),
    );
    r.right()
}

fn value_box(
    ui: &mut Ui,
    painter: &egui::Painter,
    layout: &StageLayout,
    card: &Card,
    v: &SharedValue,
    ctx: &ViewCtx,
) {
    let (r, big) = (card.rect, card.big);
    let card_id = format!("value:{}", v.name);
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
    // Words on the card read on it even while it flashes.
    let ink = |c: Color32| theme::readable_on(c, &[fill]);
    text_at(painter, &card.title, ink(t.weak_text));
    text_at(painter, &card.main, ink(t.text));
    let label = format!("shared {} = {}", v.name, v.current.repr());
    let resp = ui.interact(r, ui.scope_id().with(("value", &v.name)), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
    let mut y = r.top() + 70.0 * big;
    if let Some(w) = last_write {
        let words = painter.text(
            pos2(r.left() + 10.0 * big, y + 2.0),
            Align2::LEFT_TOP,
            "written by",
            FontId::proportional(13.0 * big),
            ink(t.weak_text),
        );
        note(
            layout,
            format!("{card_id}/written_by"),
            "label",
            words,
            Some(13.0 * big),
            Some(&card_id),
        );
        chip(
            painter,
            layout,
            (&card_id, "writer"),
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
    let mut x = r.left() + 10.0 * big;
    for (i, w) in recent.iter().enumerate() {
        let text = if i == 0 {
            short(&w.value, 8)
        } else {
            format!(", {}", short(&w.value, 8))
        };
        let galley = painter.layout_no_wrap(
            text,
            FontId::proportional(13.0 * big),
            ink(ctx.color_of(&w.proc_id)),
        );
        if x + galley.size().x > r.right() - 6.0 {
            break;
        }
        let size = galley.size();
        note(
            layout,
            format!("{card_id}/write{i}"),
            "label",
            Rect::from_min_size(pos2(x, y), size),
            Some(13.0 * big),
            Some(&card_id),
        );
        painter.galley(pos2(x, y), galley, t.text);
        x += size.x + 2.0;
    }
    if layout::access_lines(ctx.layout_world) > 0 {
        recent_accesses(painter, layout, r, y + 22.0 * big, v, ctx, big, fill);
    }
    if let Some(lost) = v.last_erasing() {
        lost_update_banner(ui, painter, layout, r, v, lost, ctx, big);
    }
}

/// The last reads and writes of a value, oldest first: `main.1 read 0`,
/// `main.2 wrote 1`. A lost update is two reads of the same value
/// followed by two writes; here it can be read off line by line.
#[allow(clippy::too_many_arguments)]
fn recent_accesses(
    painter: &egui::Painter,
    layout: &StageLayout,
    r: Rect,
    top: f32,
    v: &SharedValue,
    ctx: &ViewCtx,
    big: f32,
    fill: Color32,
) {
    use crate::model::Access;
    let n = layout::access_lines(ctx.layout_world);
    let accesses: Vec<_> = v
        .history
        .iter()
        .filter(|a| a.access != Access::Initial)
        .collect();
    let font = FontId::proportional(14.0 * big);
    let mut y = top;
    let card_id = format!("value:{}", v.name);
    for (i, a) in accesses[accesses.len().saturating_sub(n)..]
        .iter()
        .enumerate()
    {
        let x = chip(
            painter,
            layout,
            (&card_id, &format!("access{i}/who")),
            pos2(r.left() + 10.0 * big, y),
            &a.proc_id,
            ctx,
            13.0 * big,
        );
        let lost = a.access == Access::Write
            && v.lost_updates
                .iter()
                .any(|lu| lu.t_ns == a.t_ns && lu.proc_id == a.proc_id && lu.erased());
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
        let words = painter.text(
            pos2(x + 6.0, y + 1.0),
            Align2::LEFT_TOP,
            text,
            font.clone(),
            theme::readable_on(color, &[fill]),
        );
        note(
            layout,
            format!("{card_id}/access{i}"),
            "label",
            words,
            Some(font.size),
            Some(&card_id),
        );
        y += layout::ACCESS_LINE_H * big;
    }
}

/// `LOST UPDATE: main.2 read 0, wrote 1 over 1`, white on red, at the
/// bottom of the value's box (which gets a red border too).
#[allow(clippy::too_many_arguments)]
fn lost_update_banner(
    ui: &mut Ui,
    painter: &egui::Painter,
    layout: &StageLayout,
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
        pos2(
            r.left() + 3.0,
            r.bottom() - layout::LOST_BANNER_H * big - 3.0,
        ),
        pos2(r.right() - 3.0, r.bottom() - 3.0),
    );
    painter.rect_filled(band, CornerRadius::same(5), theme::ALARM);
    let what = format!(
        "{} read {}, wrote {} over {}",
        lost.proc_id,
        short(&lost.read, 10),
        short(&lost.written, 10),
        short(&lost.replaced, 10),
    );
    // The true count: the updates missing from the value now (a write
    // that put erased updates back counts against them), not the writes.
    let title = match v.updates_lost() {
        n if n > 1 => format!("⚠ {n} UPDATES LOST"),
        1 => "⚠ 1 UPDATE LOST".to_string(),
        _ => "⚠ LOST UPDATE, PUT BACK".to_string(),
    };
    let white = Color32::WHITE;
    let card_id = format!("value:{}", v.name);
    note(
        layout,
        format!("{card_id}/lost"),
        "badge",
        band,
        None,
        Some(&card_id),
    );
    let words = painter.text(
        band.left_top() + vec2(8.0, 3.0) * big,
        Align2::LEFT_TOP,
        &title,
        FontId::proportional(16.0 * big),
        white,
    );
    note(
        layout,
        format!("{card_id}/lost/title"),
        "label",
        words,
        Some(16.0 * big),
        Some(&card_id),
    );
    let size = fit_size(painter, &what, 14.0 * big, band.width() - 16.0 * big);
    let words = painter.text(
        band.left_bottom() + vec2(8.0, -4.0) * big,
        Align2::LEFT_BOTTOM,
        &what,
        FontId::proportional(size),
        white,
    );
    note(
        layout,
        format!("{card_id}/lost/what"),
        "label",
        words,
        Some(size),
        Some(&card_id),
    );
    let label = format!("LOST UPDATE: {what}");
    let resp = ui.interact(band, ui.scope_id().with(("lost", &v.name)), Sense::hover());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, label.clone()));
    // The count, as an audience reads it (and a test finds it).
    let count = ui.interact(
        band.with_max_y(band.center().y),
        ui.scope_id().with(("lost-count", &v.name)),
        Sense::hover(),
    );
    count.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, title.clone()));
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

fn caption(painter: &egui::Painter, layout: &StageLayout, ctx: &ViewCtx) {
    let Some((box_r, l)) = &layout.caption else {
        return;
    };
    painter.rect_filled(*box_r, CornerRadius::same(6), ctx.theme.panel);
    let galley = painter.layout(
        l.text.clone(),
        FontId::proportional(l.font),
        ctx.theme.text,
        l.rect.width() + 1.0,
    );
    painter.galley(l.rect.min, galley, ctx.theme.text);
}

// ---- small helpers ----------------------------------------------------------

/// The middles of the sides two boxes face each other with (left and
/// right when they stand side by side, else bottom and top).
fn facing_sides(a: Rect, b: Rect) -> (Pos2, Pos2) {
    if b.left() >= a.right() {
        (a.right_center(), b.left_center())
    } else if b.right() <= a.left() {
        (a.left_center(), b.right_center())
    } else if b.top() >= a.bottom() {
        (a.center_bottom(), b.center_top())
    } else {
        (a.center_top(), b.center_bottom())
    }
}

/// Notes a box or label just drawn, for `--dump-layout`.
fn note(
    layout: &StageLayout,
    id: String,
    kind: &'static str,
    rect: Rect,
    font: Option<f32>,
    parent: Option<&str>,
) {
    layout.painted.borrow_mut().push(layout::Painted {
        id,
        kind,
        rect,
        font,
        key: false,
        parent: parent.map(str::to_string),
    });
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
