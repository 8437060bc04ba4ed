//! The timeline: one swim lane per process (its main thread) and, right
//! under it, one per thread of it (indented), with coloured spans (running,
//! sleeping, blocked, stopped, zombie), bars for held locks and pool tasks,
//! arrows for messages and signals, and a cursor. Click or drag to look at
//! an earlier moment (the run keeps going; "Live" comes back).

use super::recording::{Lane, LaneState};
use super::{Command, ViewCtx, theme};
use crate::protocol::RUNNER_ID;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Ui, pos2, vec2};

const LABEL_W: f32 = 76.0;
const LANE_H: f32 = 20.0;
const AXIS_H: f32 = 16.0;
/// How far a thread's lane label is indented under its process's.
const THREAD_INDENT: f32 = 10.0;
/// Arrows drawn at most (the newest).
const MAX_ARROWS: usize = 3000;
/// Lost-update marks drawn at most (the newest), and with words up to.
const MAX_LOST_MARKS: usize = 500;
const MAX_LOST_LABELS: usize = 8;
/// Gated runs with at most this many steps get a tick per step.
const MAX_GO_TICKS: u64 = 2000;

#[derive(Default)]
pub struct TimelineView {}

/// One row of the timeline, top to bottom.
#[derive(Clone, Debug, PartialEq)]
pub struct Row<'a> {
    /// The lane's key in `Recording::lanes`: a process's id or a thread's
    /// name.
    pub lane: &'a str,
    /// The process it belongs to (its colour).
    pub process: &'a str,
    /// A thread of `process` (drawn indented).
    pub thread: bool,
}

/// The rows in the order they are drawn: processes as a tree, each with its
/// threads right under it in the order they started.
pub fn rows(world: &crate::model::World) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for r in world.processes_by_tree() {
        let p = r.process;
        if p.id == RUNNER_ID {
            continue;
        }
        rows.push(Row {
            lane: &p.id,
            process: &p.id,
            thread: false,
        });
        rows.extend(p.threads.iter().map(|t| Row {
            lane: &t.name,
            process: &p.id,
            thread: true,
        }));
    }
    rows
}

/// What assistive technology (and the GUI tests) read for a lane's label.
pub fn lane_label(lane: &str) -> String {
    format!("timeline lane {lane}")
}

impl TimelineView {
    pub fn ui(&mut self, ui: &mut Ui, ctx: &ViewCtx, cmds: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("Timeline");
            legend(ui);
        });
        let Some((t0, last)) = ctx.rec.t_range() else {
            ui.weak("Press Run: each process gets a lane here.");
            return;
        };
        let live = &ctx.rec.live;
        let rows = rows(live);
        let t_end = last.max(ctx.view_t_ns).max(t0 + 1);
        let height = (rows.len() as f32 * LANE_H + AXIS_H).max(60.0);
        egui::ScrollArea::vertical()
            .id_salt("timeline")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let width = ui.available_width().max(LABEL_W + 50.0);
                let (rect, response) =
                    ui.allocate_exact_size(vec2(width, height), Sense::click_and_drag());
                response.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Slider, true, "timeline")
                });
                let lanes_rect = Rect::from_min_max(
                    pos2(rect.left() + LABEL_W, rect.top()),
                    pos2(rect.right() - 4.0, rect.bottom() - AXIS_H),
                );
                // A gated run is drawn by step: each step as wide as the
                // next, however long the learner took to pick.
                let step_axis = super::steps::steps(&ctx.rec.log).and_then(|list| {
                    let go: Vec<u64> = list.iter().map(|s| s.t_ns).collect();
                    super::steps::StepAxis::new(&go, t0, t_end)
                });
                let x_of = |t: u64| {
                    let f = match &step_axis {
                        Some(a) => a.frac(t),
                        None => (t.saturating_sub(t0)) as f64 / (t_end - t0) as f64,
                    };
                    lanes_rect.left() + (f as f32) * lanes_rect.width()
                };
                let t_of = |x: f32| {
                    let f = ((x - lanes_rect.left()) / lanes_rect.width()).clamp(0.0, 1.0) as f64;
                    match &step_axis {
                        Some(a) => a.t_at(f),
                        None => t0 + (f * (t_end - t0) as f64) as u64,
                    }
                };
                if let Some(pos) = response.interact_pointer_pos()
                    && (response.clicked() || response.dragged())
                {
                    cmds.push(Command::Seek(t_of(pos.x)));
                }
                let painter = ui.painter_at(rect);
                let lane_y: std::collections::BTreeMap<&str, f32> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, row)| (row.lane, lanes_rect.top() + i as f32 * LANE_H))
                    .collect();
                let open_end = if ctx.rec.live.processes.is_empty() {
                    last
                } else {
                    ctx.view_t_ns.max(last)
                };
                // Only the lanes scrolled into view: the others would be
                // clipped anyway, and a lane holds spans for its whole run.
                let visible = painter.clip_rect();
                for row in &rows {
                    let y = lane_y[row.lane];
                    if y + LANE_H < visible.top() || y > visible.bottom() {
                        continue;
                    }
                    let color = ctx.color_of(row.process);
                    let indent = if row.thread { THREAD_INDENT } else { 0.0 };
                    let label = painter.text(
                        pos2(rect.left() + 2.0 + indent, y + LANE_H / 2.0),
                        Align2::LEFT_CENTER,
                        row.lane,
                        FontId::proportional(if row.thread { 11.0 } else { 12.0 }),
                        color,
                    );
                    let lane_id = ui.scope_id().with(("timeline lane", row.lane));
                    ui.interact(label, lane_id, Sense::hover()).widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Label, true, lane_label(row.lane))
                    });
                    if let Some(lane) = ctx.rec.lanes.get(row.lane) {
                        draw_lane(&painter, lane, y, open_end, &x_of, ctx);
                    }
                }
                let first = ctx.rec.arrows.len().saturating_sub(MAX_ARROWS);
                for a in &ctx.rec.arrows[first..] {
                    let (Some(y1), Some(y2)) =
                        (lane_y.get(a.from.as_str()), lane_y.get(a.to.as_str()))
                    else {
                        continue;
                    };
                    let from = pos2(x_of(a.sent_t_ns), y1 + LANE_H / 2.0);
                    let to = pos2(x_of(a.recv_t_ns), y2 + LANE_H / 2.0);
                    arrow(&painter, from, to, Stroke::new(1.2, ctx.color_of(&a.from)));
                }
                for (t, from, to, sig) in &ctx.rec.signals {
                    let (Some(y1), Some(y2)) = (lane_y.get(from.as_str()), lane_y.get(to.as_str()))
                    else {
                        continue;
                    };
                    let x = x_of(*t);
                    let stroke = Stroke::new(2.0, theme::okabe_ito::VERMILLION);
                    arrow(
                        &painter,
                        pos2(x, y1 + LANE_H / 2.0),
                        pos2(x, y2 + LANE_H / 2.0),
                        stroke,
                    );
                    painter.text(
                        pos2(x + 3.0, y2 + 1.0),
                        Align2::LEFT_TOP,
                        sig,
                        FontId::proportional(10.0),
                        ctx.theme.ink(theme::okabe_ito::VERMILLION),
                    );
                }
                // Lost updates: a red mark on the writer's lane (words too
                // while there are few).
                let lost: Vec<_> = live
                    .values
                    .values()
                    .flat_map(|v| &v.lost_updates)
                    .filter(|lu| lu.erased())
                    .collect();
                let labelled = lost.len() <= MAX_LOST_LABELS;
                for lu in lost.iter().rev().take(MAX_LOST_MARKS) {
                    let Some(y) = lane_y.get(lu.proc_id.as_str()) else {
                        continue;
                    };
                    lost_update_mark(&painter, x_of(lu.t_ns), *y, labelled);
                }
                // Gated runs: a tick where each process was told to go.
                if ctx
                    .rec
                    .log
                    .counts_by_kind()
                    .get("go")
                    .is_some_and(|n| *n <= MAX_GO_TICKS)
                {
                    for e in ctx.rec.log.kept().iter().filter(|e| e.body.kind() == "go") {
                        let lane = e.thread.as_deref().unwrap_or(&e.proc_id);
                        if let Some(y) = lane_y.get(lane) {
                            let x = x_of(e.t_ns);
                            painter.line_segment(
                                [pos2(x, y + 2.0), pos2(x, y + LANE_H - 2.0)],
                                Stroke::new(1.5, ctx.theme.text),
                            );
                        }
                    }
                }
                match &step_axis {
                    Some(a) => step_axis_labels(&painter, lanes_rect, a, &x_of, ctx),
                    None => axis(&painter, lanes_rect, t0, t_end, &x_of, ctx),
                }
                // The future (after the cursor) is dimmed; the cursor on top.
                let cx = x_of(ctx.view_t_ns);
                if cx < lanes_rect.right() - 1.0 {
                    painter.rect_filled(
                        Rect::from_min_max(pos2(cx, lanes_rect.top()), lanes_rect.max),
                        0.0,
                        ctx.theme.bg.gamma_multiply(0.6),
                    );
                }
                painter.line_segment(
                    [pos2(cx, rect.top()), pos2(cx, lanes_rect.bottom())],
                    Stroke::new(2.0, ctx.theme.text),
                );
                if let Some(t) = deadlock_t(ctx) {
                    let x = x_of(t);
                    let red = theme::okabe_ito::VERMILLION;
                    painter.line_segment(
                        [pos2(x, lanes_rect.top()), pos2(x, lanes_rect.bottom())],
                        Stroke::new(3.0, red),
                    );
                    let galley = painter.layout_no_wrap(
                        "DEADLOCK".to_string(),
                        FontId::proportional(10.0),
                        Color32::WHITE,
                    );
                    let label = Rect::from_min_size(
                        pos2(x - galley.size().x - 8.0, lanes_rect.top()),
                        galley.size() + vec2(6.0, 2.0),
                    );
                    painter.rect_filled(label, 2.0, red);
                    painter.galley(label.min + vec2(3.0, 1.0), galley, Color32::WHITE);
                }
                if response.hovered() {
                    ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
                }
            });
    }
}

fn draw_lane(
    painter: &egui::Painter,
    lane: &Lane,
    y: f32,
    open_end: u64,
    x_of: &impl Fn(u64) -> f32,
    ctx: &ViewCtx,
) {
    let body = |start: u64, end: Option<u64>| -> Option<(f32, f32)> {
        let x1 = x_of(start);
        let x2 = x_of(end.unwrap_or(open_end));
        (x2 - x1 >= 0.3).then_some((x1, x2.max(x1 + 1.0)))
    };
    let mut bars = Bars::new(painter, y + 4.0, y + LANE_H - 4.0);
    for s in &lane.states {
        if let Some((x1, x2)) = body(s.start_t_ns, s.end_t_ns) {
            let c = match s.what {
                LaneState::WaitsTurn => theme::WAITS_TURN,
                other => theme::state_color(&other.as_proc_state()),
            };
            bars.add(x1, x2, c);
        }
    }
    bars.flush();
    let mut bars = Bars::new(painter, y + 1.0, y + 5.0);
    for s in &lane.holds {
        if let Some((x1, x2)) = body(s.start_t_ns, s.end_t_ns) {
            if x2 - x1 > 40.0 {
                // Its words go on top of its bar: drawn as before, in order.
                bars.flush();
                bars.add(x1, x2, theme::okabe_ito::YELLOW);
                bars.flush();
                painter.text(
                    pos2(x1 + 2.0, y + 5.0),
                    Align2::LEFT_TOP,
                    format!("🔒{}", s.what),
                    FontId::proportional(9.0),
                    theme::text_on(theme::okabe_ito::BLUISH_GREEN),
                );
            } else {
                bars.add(x1, x2, theme::okabe_ito::YELLOW);
            }
        }
    }
    bars.flush();
    let mut bars = Bars::new(painter, y + LANE_H - 5.0, y + LANE_H - 1.0);
    for s in &lane.tasks {
        if let Some((x1, x2)) = body(s.start_t_ns, s.end_t_ns) {
            if x2 - x1 > 36.0 {
                bars.flush();
                bars.add(x1, x2, theme::okabe_ito::BLUE);
                bars.flush();
                painter.text(
                    pos2(x1 + 2.0, y + 4.0),
                    Align2::LEFT_TOP,
                    &s.what,
                    FontId::proportional(9.0),
                    ctx.theme.text,
                );
            } else {
                bars.add(x1, x2, theme::okabe_ito::BLUE);
            }
        }
    }
    bars.flush();
}

/// A bar of a lane: x from, x to, colour.
type Bar = (f32, f32, Color32);

/// The bars of one row of a lane (opaque colours, square corners), drawn
/// left to right. Consecutive bars of one colour that touch or overlap are
/// drawn as one rectangle: the same pixels, but a long run's lane holds
/// thousands of spans narrower than a pixel (each drawn at least 1 pt
/// wide), which would otherwise be thousands of overlapping shapes to
/// tessellate every frame. A gap between two bars, however thin, stays.
struct Bars<'p> {
    painter: &'p egui::Painter,
    top: f32,
    bottom: f32,
    /// The bar not drawn yet.
    pending: Option<Bar>,
}

impl<'p> Bars<'p> {
    fn new(painter: &'p egui::Painter, top: f32, bottom: f32) -> Bars<'p> {
        Bars {
            painter,
            top,
            bottom,
            pending: None,
        }
    }

    fn add(&mut self, x1: f32, x2: f32, color: Color32) {
        if let Some(done) = merge_bar(&mut self.pending, (x1, x2, color)) {
            self.draw(done);
        }
    }

    fn flush(&mut self) {
        if let Some(done) = self.pending.take() {
            self.draw(done);
        }
    }

    fn draw(&self, (x1, x2, c): Bar) {
        let r = Rect::from_min_max(pos2(x1, self.top), pos2(x2, self.bottom));
        self.painter.rect_filled(r, 0.0, c);
    }
}

/// Adds `bar` to the one pending: one bar if they are of one colour and
/// touch or overlap, else the pending one is done (returned) and `bar`
/// waits.
fn merge_bar(pending: &mut Option<Bar>, bar: Bar) -> Option<Bar> {
    let (x1, x2, color) = bar;
    if let Some((from, to, c)) = pending
        && *c == color
        && x1 <= *to
        && x2 >= *from
    {
        *from = from.min(x1);
        *to = to.max(x2);
        return None;
    }
    pending.replace(bar)
}

/// A red diamond with a "!" where a write overwrote another's update.
fn lost_update_mark(painter: &egui::Painter, x: f32, lane_top: f32, labelled: bool) {
    if !labelled {
        // Many of them: a small red notch each over the lane, so the
        // lane's own colours stay visible.
        painter.add(egui::Shape::convex_polygon(
            vec![
                pos2(x - 3.0, lane_top),
                pos2(x + 3.0, lane_top),
                pos2(x, lane_top + 5.0),
            ],
            theme::okabe_ito::VERMILLION,
            Stroke::new(0.5, Color32::WHITE),
        ));
        return;
    }
    let c = pos2(x, lane_top + LANE_H / 2.0);
    let r = LANE_H / 2.0;
    let red = theme::okabe_ito::VERMILLION;
    painter.add(egui::Shape::convex_polygon(
        vec![
            c + vec2(0.0, -r),
            c + vec2(r, 0.0),
            c + vec2(0.0, r),
            c + vec2(-r, 0.0),
        ],
        red,
        Stroke::new(1.0, Color32::WHITE),
    ));
    painter.text(
        c,
        Align2::CENTER_CENTER,
        "!",
        FontId::proportional(12.0),
        Color32::WHITE,
    );
    let galley = painter.layout_no_wrap(
        "lost update".to_string(),
        FontId::proportional(10.0),
        Color32::WHITE,
    );
    let label = Rect::from_min_size(
        c + vec2(r + 2.0, -galley.size().y / 2.0 - 1.0),
        galley.size() + vec2(6.0, 2.0),
    );
    painter.rect_filled(label, 2.0, red);
    painter.galley(label.min + vec2(3.0, 1.0), galley, Color32::WHITE);
}

/// When the run's deadlock was found.
fn deadlock_t(ctx: &ViewCtx) -> Option<u64> {
    ctx.rec.live.deadlock.as_ref()?;
    ctx.rec
        .log
        .kept()
        .iter()
        .rev()
        .find(|e| e.body.kind() == "deadlock")
        .map(|e| e.t_ns)
}

fn arrow(painter: &egui::Painter, from: Pos2, to: Pos2, stroke: Stroke) {
    painter.line_segment([from, to], stroke);
    let dir = (to - from).normalized();
    if dir.length() > 0.0 {
        let side = vec2(-dir.y, dir.x) * 3.0;
        let back = to - dir * 6.0;
        painter.line_segment([to, back + side], stroke);
        painter.line_segment([to, back - side], stroke);
    }
}

fn axis(
    painter: &egui::Painter,
    lanes: Rect,
    t0: u64,
    t_end: u64,
    x_of: &impl Fn(u64) -> f32,
    ctx: &ViewCtx,
) {
    let span_s = (t_end - t0) as f64 / 1e9;
    let step_s = [
        0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
    .find(|s| span_s / s <= 8.0)
    .unwrap_or(120.0);
    let mut s = 0.0;
    while s <= span_s {
        let x = x_of(t0 + (s * 1e9) as u64);
        painter.line_segment(
            [pos2(x, lanes.bottom()), pos2(x, lanes.bottom() + 4.0)],
            Stroke::new(1.0, ctx.theme.weak_text),
        );
        painter.text(
            pos2(x, lanes.bottom() + 4.0),
            Align2::CENTER_TOP,
            if step_s < 0.01 {
                format!("{:.0}ms", s * 1000.0)
            } else {
                format!("{s:.2}s").replace(".00s", "s")
            },
            FontId::proportional(10.0),
            ctx.theme.weak_text,
        );
        s += step_s;
    }
}

/// The axis of a gated run: step numbers (about ten labels).
fn step_axis_labels(
    painter: &egui::Painter,
    lanes: Rect,
    axis: &super::steps::StepAxis,
    x_of: &impl Fn(u64) -> f32,
    ctx: &ViewCtx,
) {
    let n = axis.ticks().count();
    let every = [1, 2, 5, 10, 20, 50, 100, 200, 500]
        .into_iter()
        .find(|e| n / e <= 10)
        .unwrap_or(1000);
    for (i, t) in axis.ticks().filter(|(i, _)| i % every == 0 || *i == 1) {
        let x = x_of(t);
        painter.line_segment(
            [pos2(x, lanes.bottom()), pos2(x, lanes.bottom() + 4.0)],
            Stroke::new(1.0, ctx.theme.weak_text),
        );
        painter.text(
            pos2(x, lanes.bottom() + 4.0),
            Align2::CENTER_TOP,
            if i == 1 {
                "step 1".to_string()
            } else {
                i.to_string()
            },
            FontId::proportional(10.0),
            ctx.theme.weak_text,
        );
    }
}

/// A legend's words on one line: a row that is full moves them whole to
/// the next ("waits / for its turn" was cut mid-phrase).
fn legend_words(ui: &mut Ui, words: &str) {
    ui.add(
        egui::Label::new(egui::RichText::new(words).small()).wrap_mode(egui::TextWrapMode::Extend),
    );
}

fn legend(ui: &mut Ui) {
    use crate::model::ProcState;
    for (state, word) in [
        (ProcState::Running, "running"),
        (ProcState::Sleeping, "sleeping"),
        (ProcState::Blocked(String::new()), "blocked"),
        (ProcState::Stopped, "stopped"),
        (ProcState::Zombie, "zombie"),
    ] {
        let (r, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
        ui.painter().rect_filled(r, 1.0, theme::state_color(&state));
        legend_words(ui, word);
    }
    let (r, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
    ui.painter().rect_filled(r, 1.0, theme::WAITS_TURN);
    legend_words(ui, "waits for its turn");
    let (r, _) = ui.allocate_exact_size(vec2(10.0, 4.0), Sense::hover());
    ui.painter().rect_filled(r, 0.0, theme::okabe_ito::YELLOW);
    legend_words(ui, "holds lock");
    let (r, _) = ui.allocate_exact_size(vec2(10.0, 4.0), Sense::hover());
    ui.painter().rect_filled(r, 0.0, theme::okabe_ito::BLUE);
    legend_words(ui, "pool task");
    let (r, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
    let c = r.center();
    ui.painter().add(egui::Shape::convex_polygon(
        vec![
            c + vec2(0.0, -5.0),
            c + vec2(5.0, 0.0),
            c + vec2(0.0, 5.0),
            c + vec2(-5.0, 0.0),
        ],
        theme::okabe_ito::VERMILLION,
        Stroke::NONE,
    ));
    legend_words(ui, "lost update");
    let _ = Color32::TRANSPARENT;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The colour seen at `x`: the last bar drawn over it.
    fn seen(bars: &[Bar], x: f32) -> Option<Color32> {
        bars.iter()
            .rev()
            .find(|(a, b, _)| *a <= x && x <= *b)
            .map(|(_, _, c)| *c)
    }

    #[test]
    fn merged_bars_cover_the_same_as_the_bars_drawn_one_by_one() {
        let colors = [Color32::RED, Color32::GREEN, Color32::BLUE];
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f32 / (1u64 << 31) as f32
        };
        for _ in 0..40 {
            // Spans in time order, some narrower than a pixel, some gaps.
            let mut bars = Vec::new();
            let mut x = 0.0f32;
            for _ in 0..100 {
                x += next() * 0.6;
                let w = (next() * next() * 4.0).max(1.0);
                let c = colors[(next() * 1.4) as usize];
                bars.push((x, x + w, c));
                x += next() * 2.0;
            }
            let mut merged = Vec::new();
            let mut pending = None;
            for b in &bars {
                merged.extend(merge_bar(&mut pending, *b));
            }
            merged.extend(pending);
            assert!(merged.len() < bars.len());
            let end = x + 5.0;
            let mut at = -1.0f32;
            while at < end {
                assert_eq!(seen(&bars, at), seen(&merged, at), "at x = {at}");
                at += 0.013;
            }
        }
    }

    #[test]
    fn a_thin_gap_between_bars_of_one_colour_stays() {
        let mut pending = None;
        assert_eq!(merge_bar(&mut pending, (0.0, 1.0, Color32::RED)), None);
        assert_eq!(
            merge_bar(&mut pending, (1.01, 2.0, Color32::RED)),
            Some((0.0, 1.0, Color32::RED))
        );
        assert_eq!(merge_bar(&mut pending, (1.5, 3.0, Color32::RED)), None);
        assert_eq!(pending, Some((1.01, 3.0, Color32::RED)));
    }
}
