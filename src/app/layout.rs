//! Where everything on the stage goes: a pure function from the model and
//! the room available to rectangles and font sizes, with no window and no
//! painter. The stage draws exactly what this returns, `--dump-layout`
//! writes it, and tests check it (nothing overlaps, nothing off the stage,
//! key labels big enough) for every built-in scenario.
//!
//! Everything is sized in units of one "key font" `k` (the size of the
//! words an audience must read: names, states, values, holders, channel
//! titles); `k` is as large as fits, up to a ceiling, so a small tree
//! fills the stage with big type and only a really large tree gets small
//! type. Channels, shared values and locks are parts of the layout, not
//! drawn on top of it: channels sit in bands between the rows of the
//! processes that use them (or, when bands would leave the type too small,
//! beside the tree in a row's free columns, next to their users), values
//! and locks in a column (or a few) at the right, the caption in its own
//! strip at the bottom. A parent's children hang from a bar under the
//! channels between the rows, so one line goes down through a band and a
//! channel steps aside from it where the band has room.
//!
//! Places come from the whole run (`layout_world`), so nothing moves when
//! scrubbing; what labels say comes from the moment shown (`world`).

use super::recording::ChannelUsers;
use super::theme;
use crate::model::{Channel, ChannelKind, Process, World};
use crate::protocol::{RUNNER_ID, Value};
use egui::{Pos2, Rect, pos2, vec2};
use std::collections::BTreeMap;

/// What the layout is computed from.
pub struct StageInput<'a> {
    /// The whole run so far (or the moment of a deadlock): decides places.
    pub layout_world: &'a World,
    /// The moment shown: decides what labels say.
    pub world: &'a World,
    pub channel_users: &'a BTreeMap<String, ChannelUsers>,
    pub presenter: bool,
    /// A gated run leaves room under each node for its next step.
    pub gated: bool,
    /// The run has a deadlock: room for its banner over the tree.
    pub deadlock: bool,
    pub view_t_ns: u64,
    /// The longest state words of the run so far (nodes are made that
    /// wide); empty if unknown.
    pub widest_state: &'a str,
    /// Physical pixels per egui point.
    pub px_per_pt: f32,
    /// The window's height in pixels (presenter type grows with it).
    pub window_h_px: f32,
    /// The user's own zoom ("+"/"−"), 1 = none: the stage's type grows
    /// with it where there is room.
    pub zoom: f32,
}

/// A text drawn at `rect.min` in a proportional font of `font` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub rect: Rect,
    pub font: f32,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct NodeBox {
    pub rect: Rect,
    pub name: Label,
    pub pid: Option<Label>,
    pub tags: Option<Label>,
    /// The state badge and its words (wrapped to `badge` width).
    pub badge: Rect,
    pub state: Label,
    pub extra: Vec<(Label, Option<egui::Color32>)>,
    /// Step mode: the "next step" bubble under the node.
    pub next: Option<Rect>,
    /// The news of the moment (a lost update, a signal): a red tag where
    /// the pid was ([`put_news`]).
    pub news: Option<(Rect, Label)>,
}

#[derive(Clone, Debug)]
pub struct ChannelBox {
    /// The box with the slots.
    pub rect: Rect,
    pub title: Label,
    pub slots: usize,
}

#[derive(Clone, Debug)]
pub struct Card {
    pub rect: Rect,
    pub title: Label,
    /// The value, or the lock's holder ("free" when nobody holds it).
    pub main: Label,
    /// Type size of the small print inside (points at `big` = 1 times).
    pub big: f32,
}

#[derive(Clone, Debug)]
pub struct PoolBox {
    pub frame: Rect,
    pub label: Label,
}

/// A message dot: parked in a channel's slot or travelling along a link.
/// Drawn as a pill (`rect`) with the message's text in it at a size an
/// audience reads (`text`, a key label).
#[derive(Clone, Debug)]
pub struct Dot {
    pub center: Pos2,
    pub radius: f32,
    /// The pill: as wide as its text (a slot's width at most).
    pub rect: Rect,
    pub text: Label,
    pub value: Value,
    pub from: Option<String>,
    /// The channel it waits in (`None` while it travels).
    pub parked_in: Option<String>,
    /// The channel it waits in or has just left.
    pub channel: String,
}

/// Everything placed on the stage, in egui points.
#[derive(Clone, Debug)]
pub struct StageLayout {
    pub stage: Rect,
    /// The key font size (points).
    pub k: f32,
    pub nodes: BTreeMap<String, NodeBox>,
    pub channels: BTreeMap<String, ChannelBox>,
    pub values: BTreeMap<String, Card>,
    pub locks: BTreeMap<String, Card>,
    pub pools: BTreeMap<String, PoolBox>,
    pub dots: Vec<Dot>,
    /// Tree edges: (parent, child, from, to).
    pub edges: Vec<(String, String, Pos2, Pos2)>,
    /// Channel links: (channel, process, from, to) in the direction the
    /// messages go.
    pub links: Vec<(String, String, Pos2, Pos2)>,
    pub caption: Option<(Rect, Label)>,
    /// The deadlock banner: box, title, cycle.
    pub banner: Option<(Rect, Label, Label)>,
    /// The room, not the zoom, decides the type: "+" cannot make the
    /// stage's words bigger without putting them on one another.
    pub full: bool,
    /// What the painter drew beyond the boxes above (badges, arrows, the
    /// value card's chips and lists), noted as it drew them so that
    /// `--dump-layout` lists every drawn box and label.
    pub painted: std::cell::RefCell<Vec<Painted>>,
}

/// One box or label the painter drew (in points), for the dump.
#[derive(Clone, Debug)]
pub struct Painted {
    pub id: String,
    pub kind: &'static str,
    pub rect: Rect,
    pub font: Option<f32>,
    pub key: bool,
    pub parent: Option<String>,
}

/// One drawn box or label, for `--dump-layout` and the tests.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Item {
    pub id: String,
    pub kind: &'static str,
    /// `[x0, y0, x1, y1]` in window pixels.
    pub rect: [f32; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub font_px: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A label whose words were cut short ("…") for want of room.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

/// What `--dump-layout` writes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Dump {
    pub window: [f32; 2],
    /// The stage's own rectangle, `[x0, y0, x1, y1]` in window pixels.
    pub stage: [f32; 4],
    pub items: Vec<Item>,
}

// ---- sizes, in units of the key font k -------------------------------------

/// Key labels at least this many pixels in presenter mode at 720 lines
/// (more on a taller window, up to 1.5 times at 1080).
pub const PRESENTER_MIN_KEY_PX: f32 = 18.0;
const PRESENTER_MAX_KEY_PX: f32 = 30.0;
const DESK_MIN_KEY_PT: f32 = 11.0;
const DESK_MAX_KEY_PT: f32 = 15.0;
/// Below the minimum only when a tree is really too large for the stage.
const FLOOR_KEY_PT: f32 = 6.0;

const NAME_FONT: f32 = 1.15;
const SMALL_FONT: f32 = 0.8;
const NODE_MIN_W: f32 = 12.5;
const NODE_PAD: f32 = 0.5;
const NODE_BASE_H: f32 = 5.1;
/// The role and tags line (left out when no process has any).
const TAGS_H: f32 = 1.1;
const NODE_LINE_H: f32 = 1.1;
/// A state on two lines: its font (a little bigger than on one line,
/// as the longest words of the stage) and the second line (k units).
const STATE_FONT_2: f32 = 1.1;
const STATE_LINE_H: f32 = 2.0 * STATE_FONT_2 * 1.25 - 1.25;
const COL_GAP: f32 = 1.3;
const ROW_GAP: f32 = 1.0;
const RUNNER_H: f32 = 1.3;
/// Under the runner's bar.
const RUNNER_GAP: f32 = 0.6;
const CHANNEL_H: f32 = 2.8;
/// Wide enough for a short message ("ping", "p0:3") at [`DOT_FONT`].
const SLOT_W: f32 = 2.4;
const BAND_H: f32 = CHANNEL_H + 1.2;
const POOL_PAD: f32 = 0.5;
const POOL_STRIP_H: f32 = 2.0;
/// Step mode's "next step" bubble: a line at k, a line at 0.85 k, margins.
const NEXT_H: f32 = 2.9;
/// Between a node and its "next step" bubble (the pointer's room).
const NEXT_GAP: f32 = 0.3;
const CARD_W: f32 = 17.0;
const CARD_GAP: f32 = 0.8;
const CAPTION_FONT: f32 = 1.05;
const CAPTION_LINES: f32 = 2.0;
/// Room round the caption's lines.
const CAPTION_PAD: f32 = 0.4;
const BANNER_H: f32 = 4.4;
const DOT_R: f32 = 0.75;
/// A message dot takes this long from sender to channel, or channel to
/// receiver.
pub const TRAVEL_NS: u64 = 400_000_000;
/// Value and lock cards: the painter's `big` is k / this.
const CARD_BIG_PER_K: f32 = 14.0;
/// Recent reads and writes listed in a value card (none when there are
/// many values: no room).
pub fn access_lines(world: &World) -> usize {
    if world.values.len() <= 2 { 4 } else { 0 }
}
pub const ACCESS_LINE_H: f32 = 19.0;
pub const LOST_BANNER_H: f32 = 44.0;

/// An estimate of how wide `text` is in the proportional font at `pt`
/// points, on the generous side (the stage's fonts are narrower), so a
/// label placed by this never runs into its neighbour.
/// `text` cut with "…" to fit `room` points at `pt`: a command line
/// (`$ …`) loses its start, anything else its end.
fn fit_line(text: String, pt: f32, room: f32) -> String {
    if text_w(&text, pt) <= room || room <= 0.0 {
        return text;
    }
    let chars: Vec<char> = text.chars().collect();
    let command = text.starts_with("$ ");
    for keep in (1..chars.len()).rev() {
        let cut = if command {
            let tail: String = chars[chars.len() - keep..].iter().collect();
            format!("$ …{tail}")
        } else {
            let head: String = chars[..keep].iter().collect();
            format!("{head}…")
        };
        if text_w(&cut, pt) <= room {
            return cut;
        }
    }
    "…".into()
}

pub fn text_w(text: &str, pt: f32) -> f32 {
    let em: f32 = text
        .chars()
        .map(|c| match c {
            ' ' | '.' | ',' | ':' | ';' | '\'' | '|' | 'i' | 'l' | 'j' | '!' => 0.3,
            'm' | 'w' | 'M' | 'W' => 0.85,
            'A'..='Z' => 0.64,
            '0'..='9' => 0.57,
            c if c.is_ascii() => 0.51,
            _ => 1.1,
        })
        .sum();
    em * pt
}

/// `text` on at most two lines, split at the space that makes the wider
/// line narrowest (one line if it has no space); the lines joined by a
/// newline, and the wider line's width at `pt`.
fn split_two(text: &str, pt: f32) -> (String, f32) {
    split_two_at(text, pt, " ")
}

/// [`split_two`] at an occurrence of `sep` (dropped where it splits).
fn split_two_at(text: &str, pt: f32, sep: &str) -> (String, f32) {
    let mut best = (text.to_string(), text_w(text, pt));
    for (i, _) in text.match_indices(sep) {
        let (a, b) = (&text[..i], text[i + sep.len()..].trim_start());
        if a.trim().is_empty() || b.is_empty() {
            continue;
        }
        let w = text_w(a, pt).max(text_w(b, pt));
        if w < best.1 {
            best = (format!("{a}\n{b}"), w);
        }
    }
    best
}

fn label(at: Pos2, text: String, font: f32) -> Label {
    let rect = Rect::from_min_size(at, vec2(text_w(&text, font), font * 1.25));
    Label { rect, font, text }
}

/// The number of slots a channel shows (messages beyond are "+n").
pub fn slot_count(c: &Channel) -> usize {
    match c.maxsize {
        Some(m) => (m as usize).clamp(1, 10),
        None => 6,
    }
}

/// `Queue q: 2/3`, `Pipe p ↔: 1 waiting`; `1 never read` once nobody
/// who reads it is left (`readers_gone`).
pub fn channel_title(c: &Channel, readers_gone: bool) -> String {
    let kind = match c.kind {
        ChannelKind::Queue => "Queue",
        ChannelKind::Pipe => "Pipe",
    };
    let depth = c.depth();
    let count = match (c.maxsize, depth) {
        (Some(m), d) if d > 0 && readers_gone => format!("{depth}/{m} never read"),
        (Some(m), _) if c.is_full() => format!("{depth}/{m} FULL"),
        (Some(m), _) => format!("{depth}/{m}"),
        (None, 0) => "empty".to_string(),
        (None, d) if readers_gone => format!("{d} never read"),
        (None, d) => format!("{d} waiting"),
    };
    let duplex = if c.duplex { " ↔" } else { "" };
    format!("{kind} {}{duplex}: {count}", c.name)
}

/// The longest a channel's title gets, to reserve room for it.
fn channel_title_room(c: &Channel) -> String {
    let kind = match c.kind {
        ChannelKind::Queue => "Queue",
        ChannelKind::Pipe => "Pipe",
    };
    let count = match c.maxsize {
        Some(m) => format!("{m}/{m} never read"),
        None => "99 never read".to_string(),
    };
    let duplex = if c.duplex { " ↔" } else { "" };
    format!("{kind} {}{duplex}: {count}", c.name)
}

/// Most thread lanes drawn in a process node (then "+N more threads").
const THREAD_LANES: usize = 4;

/// Lines under the state badge (threads, exec, task, locks, private values).
pub fn extra_lines(world: &World, p: &Process) -> Vec<(String, Option<egui::Color32>)> {
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
fn thread_lanes(world: &World, p: &Process) -> Vec<(String, Option<egui::Color32>)> {
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
    lines.extend(inside_threaded_process(world, p));
    lines
}

/// What the threads of a process share, drawn in the process: its
/// globals (one memory for all its threads) and the locks its threads hold
/// or wait for (a `threading.Lock` lives in the process's own memory).
fn inside_threaded_process(world: &World, p: &Process) -> Vec<(String, Option<egui::Color32>)> {
    if p.threads.is_empty() {
        return Vec::new();
    }
    let ours = |who: &str| who == p.id || p.thread(who).is_some();
    let mut lines = Vec::new();
    for name in world.globals.keys() {
        if let Some(v) = world.values.get(name) {
            lines.push((
                format!("{name} = {} (shared by its threads)", short(&v.current, 12)),
                None,
            ));
        }
    }
    for l in world.locks.values() {
        let held = l.holder.as_deref().filter(|h| ours(h));
        let waiting: Vec<&str> = l
            .waiters
            .iter()
            .map(String::as_str)
            .filter(|w| ours(w))
            .collect();
        if held.is_none() && waiting.is_empty() {
            continue;
        }
        let holder = held.map_or("nobody holds it".to_string(), |h| format!("held by {h}"));
        let waits = if waiting.is_empty() {
            String::new()
        } else {
            format!(", {} waiting", waiting.join(", "))
        };
        lines.push((
            format!("🔒 {}: {holder}{waits}", l.name),
            Some(theme::okabe_ito::ORANGE),
        ));
    }
    lines
}

/// How many extra lines any node may need during the run.
fn extra_lines_max(world: &World) -> usize {
    world
        .processes
        .values()
        .filter(|p| p.id != RUNNER_ID)
        .map(|p| {
            usize::from(p.exec.is_some())
                + usize::from(!p.stdout_buffer.is_empty())
                + usize::from(!world.pools.is_empty())
                + world.locks.len().min(2)
                + world.globals.len()
                + p.threads.len().min(THREAD_LANES)
                + if p.threads.is_empty() {
                    0
                } else {
                    world.globals.len() + world.locks.len().min(2)
                }
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

/// A value as text, cut to `max` characters.
pub fn short(v: &Value, max: usize) -> String {
    let text = v.repr();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

pub fn role_words(role: &str) -> String {
    match role.strip_prefix("pool:") {
        Some(pool) => format!("worker of pool {pool}"),
        None if role.is_empty() => String::new(),
        None => format!("role {role}"),
    }
}

/// The words in a node's state badge at this moment.
pub fn state_words(p: &Process, view_t_ns: u64) -> String {
    let look = theme::state_look(p);
    let waits_turn = p.pending.is_some() && p.state == crate::model::ProcState::Running;
    let mut text = if waits_turn {
        "⏸ waits for its turn".to_string()
    } else {
        format!("{} {}", look.icon, look.text)
    };
    if let (crate::model::ProcState::Sleeping, Some(until)) = (&p.state, p.sleep_until_t_ns) {
        let left_s = until.saturating_sub(view_t_ns) as f64 / 1e9;
        if left_s > 0.05 {
            text = format!("{text} ({left_s:.1} s)");
        }
    }
    text
}

fn node_tags(p: &Process) -> String {
    // The role `main` (main and what it forks) says nothing.
    let role = if p.role == "main" {
        String::new()
    } else {
        role_words(&p.role)
    };
    // A traced program's own name for it (`Process-2`), first.
    let mut tags = vec![p.name.clone().unwrap_or_default(), role];
    if p.daemon {
        tags.push("daemon".into());
    }
    if p.adopted {
        tags.push("ADOPTED".into());
    } else if p.orphaned {
        tags.push("ORPHAN".into());
    }
    tags.retain(|t| !t.is_empty());
    tags.join(" · ")
}

// ---- the tree, in k units ----------------------------------------------------

struct Tree<'a> {
    /// Process id → (row, sub-row, centre column in units).
    at: BTreeMap<&'a str, (usize, usize, f32)>,
    units: f32,
    rows: usize,
    /// Per row: how many sub-rows (a large family of leaves is a grid).
    subrows: Vec<usize>,
    has_runner: bool,
    node_w: f32,
    node_h: f32,
    /// Whether nodes have the line for role and tags.
    tags_line: bool,
    /// Whether a node's state may take two lines (the badge is a line
    /// taller and the node narrower: a long state does not shrink a row).
    two_line_state: bool,
    /// Per row: channels in the band under it, by name, with their wanted
    /// centre (in units).
    bands: Vec<Vec<(&'a str, f32)>>,
    /// Per row: a pool's label strip under it.
    pool_strip: Vec<bool>,
    /// Parents whose children are laid out as a grid.
    grid_parents: std::collections::BTreeSet<&'a str>,
    /// Per row: where the band's second line starts (its length when
    /// the band is one line): a band wider than its row of nodes may be
    /// laid on two lines.
    band_split: Vec<usize>,
    /// Channels beside the tree, each in a free cell of a row (a column
    /// with no node there, next to every process that uses it), its title
    /// over its box: (channel, row, centre column in units).
    cells: Vec<(&'a str, usize, f32)>,
}

/// Ways to make a tree narrower at the cost of height.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Compact {
    /// States on two lines.
    two_line_state: bool,
    /// A band of channels wider than the nodes on two lines.
    two_line_bands: bool,
    /// Channels in the free cells of the rows, beside the tree, rather
    /// than in a band under it (when the stage is too short for bands).
    free_cells: bool,
}

/// Gap between the sub-rows of a grid of leaves (k units).
const SUB_GAP: f32 = 0.8;

/// The state words a node may show during the run, as far as the whole
/// run tells: the node is made wide enough for the longest.
fn likely_states(live: &World, widest_seen: &str) -> Vec<String> {
    let mut out = vec![
        widest_seen.to_string(),
        "zZ sleeping (0.3 s)".to_string(),
        "✔ exit 0".to_string(),
        "⏸ blocked: wait".to_string(),
    ];
    for p in live.processes.values() {
        out.push(state_words(p, u64::MAX));
        if p.parent.is_some() {
            out.push(format!("⏸ blocked: join {}", p.id));
        }
    }
    for l in live.locks.keys() {
        out.push(format!("⏳ waiting for lock {l}"));
    }
    for c in live.channels.keys() {
        out.push(format!("⏸ blocked: get {c}"));
    }
    out
}

/// The tree of the run's processes; a family of more than `grid_cols`
/// leaves is laid out as a grid that many columns wide.
fn tree<'a>(input: &StageInput<'a>, grid_cols: usize, compact: Compact) -> Tree<'a> {
    let wrap_state = compact.two_line_state;
    let live = input.layout_world;
    let rows = live.processes_by_tree();
    let mut kids: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &rows {
        if let Some(parent) = r.process.parent.as_deref()
            && r.depth > 0
        {
            kids.entry(parent).or_default().push(&r.process.id);
        }
    }
    let is_grid = |id: &str| {
        kids.get(id)
            .is_some_and(|k| k.len() > grid_cols && k.iter().all(|c| !kids.contains_key(c)))
    };
    let mut width: BTreeMap<&str, f32> = BTreeMap::new();
    for r in rows.iter().rev() {
        let id = r.process.id.as_str();
        let sum: f32 = if is_grid(id) {
            grid_cols as f32
        } else {
            kids.get(id)
                .map(|k| k.iter().map(|c| width.get(c).copied().unwrap_or(1.0)).sum())
                .unwrap_or(0.0)
        };
        width.insert(id, sum.max(1.0));
    }
    let has_runner = live.processes.contains_key(RUNNER_ID);
    let row_of = |depth: usize| {
        if has_runner {
            depth.saturating_sub(1)
        } else {
            depth
        }
    };
    let mut offset: BTreeMap<&str, f32> = BTreeMap::new();
    let mut sub_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next_root = 0.0;
    for r in &rows {
        let id = r.process.id.as_str();
        if r.depth == 0 {
            offset.insert(id, next_root);
            next_root += width.get(id).copied().unwrap_or(1.0);
        }
        let start = offset.get(id).copied().unwrap_or(0.0);
        let grid = is_grid(id);
        let mut child_at = start;
        for (i, c) in kids.get(id).into_iter().flatten().enumerate() {
            if grid {
                offset.insert(c, start + (i % grid_cols) as f32);
                sub_of.insert(c, i / grid_cols);
            } else {
                offset.insert(c, child_at);
                child_at += width.get(c).copied().unwrap_or(1.0);
            }
        }
    }
    let mut at = BTreeMap::new();
    let mut n_rows = 0;
    for r in &rows {
        let id = r.process.id.as_str();
        let row = row_of(r.depth);
        if id != RUNNER_ID {
            n_rows = n_rows.max(row + 1);
        }
        let w = width.get(id).copied().unwrap_or(1.0);
        let sub = sub_of.get(id).copied().unwrap_or(0);
        at.insert(
            id,
            (row, sub, offset.get(id).copied().unwrap_or(0.0) + w / 2.0),
        );
    }
    let n_rows = n_rows.max(1);
    let mut subrows = vec![1usize; n_rows];
    for (id, (row, sub, _)) in &at {
        if *id != RUNNER_ID {
            subrows[*row] = subrows[*row].max(sub + 1);
        }
    }
    let procs = || rows.iter().filter(|r| r.process.id != RUNNER_ID);
    let longest_name = procs()
        .map(|r| text_w(&r.process.id, NAME_FONT) + text_w("pid 4194304", SMALL_FONT))
        .fold(0.0, f32::max);
    let states = likely_states(live, input.widest_state);
    let longest_state = states
        .iter()
        .map(|t| text_w(t, 1.0) + 1.0)
        .fold(0.0, f32::max);
    let base_w = NODE_MIN_W.max(longest_name + 2.0 * NODE_PAD + 1.0);
    let one_line_w = base_w.max(longest_state + 2.0 * NODE_PAD);
    // On two lines, the node is as wide as the widest half of the
    // longest state (split at a space), if that is narrower.
    let two_line_w = base_w.max(
        states
            .iter()
            .map(|t| split_two(t, STATE_FONT_2).1 + 1.0)
            .fold(0.0, f32::max)
            + 2.0 * NODE_PAD,
    );
    let two_line_state = wrap_state && two_line_w + 0.5 < one_line_w;
    let node_w = if two_line_state {
        two_line_w
    } else {
        one_line_w
    };
    let tags_line = procs().any(|r| !node_tags(r.process).is_empty());
    let node_h = NODE_BASE_H - if tags_line { 0.0 } else { TAGS_H }
        + NODE_LINE_H * extra_lines_max(live) as f32
        + if two_line_state { STATE_LINE_H } else { 0.0 };
    let mut bands: Vec<Vec<(&str, f32)>> = vec![Vec::new(); n_rows];
    // Where each channel's users are: (row, centre column).
    let mut users_at: BTreeMap<&str, Vec<(usize, f32)>> = BTreeMap::new();
    for (name, users) in input.channel_users {
        if !live.channels.contains_key(name) {
            continue;
        }
        let ends: Vec<(usize, f32)> = users
            .senders
            .iter()
            .chain(users.receivers.iter())
            .filter(|id| id.as_str() != RUNNER_ID)
            .filter_map(|id| at.get(id.as_str()).map(|(r, _, x)| (*r, *x)))
            .collect();
        let Some(row) = ends.iter().map(|(r, _)| *r).min() else {
            continue;
        };
        let x = ends.iter().map(|(_, x)| x).sum::<f32>() / ends.len() as f32;
        if let Some((key, _)) = live.channels.get_key_value(name) {
            bands[row.min(n_rows - 1)].push((key.as_str(), x));
            users_at.insert(key.as_str(), ends);
        }
    }
    for band in &mut bands {
        band.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    }
    let cells = if compact.free_cells {
        let cells = free_cells(&at, n_rows, next_root.max(1.0), &bands, &users_at, |name| {
            live.channels.get(name).is_some_and(|c| {
                stacked_channel_w(c) <= node_w + COL_GAP - 0.3 && STACKED_CHANNEL_H <= node_h
            })
        });
        for band in &mut bands {
            band.retain(|(name, _)| !cells.iter().any(|(c, _, _)| c == name));
        }
        cells
    } else {
        Vec::new()
    };
    let mut pool_strip = vec![false; n_rows];
    for p in live.processes.values() {
        if p.role.starts_with("pool:")
            && let Some((row, _, _)) = at.get(p.id.as_str())
        {
            pool_strip[*row] = true;
        }
    }
    let grid_parents = rows
        .iter()
        .map(|r| r.process.id.as_str())
        .filter(|id| is_grid(id))
        .collect();
    let cols_w = next_root.max(1.0) * (node_w + COL_GAP);
    let mut band_split: Vec<usize> = bands.iter().map(Vec::len).collect();
    if compact.two_line_bands {
        for (row, band) in bands.iter().enumerate() {
            let w: f32 = band
                .iter()
                .filter_map(|(name, _)| live.channels.get(*name))
                .map(band_item_w)
                .sum();
            if band.len() >= 2 && w > cols_w {
                band_split[row] = band.len().div_ceil(2);
            }
        }
    }
    Tree {
        cells,
        band_split,
        grid_parents,
        at,
        units: next_root.max(1.0),
        rows: n_rows,
        subrows,
        has_runner,
        node_w,
        node_h,
        tags_line,
        two_line_state,
        bands,
        pool_strip,
    }
}

/// A channel beside the tree: its title over its box (k units).
const STACKED_TITLE_GAP: f32 = 0.3;
const STACKED_CHANNEL_H: f32 = 1.25 + STACKED_TITLE_GAP + CHANNEL_H;

/// How wide a channel is with its title over its box (k units).
fn stacked_channel_w(c: &Channel) -> f32 {
    let (box_w, title_w) = channel_w(c);
    box_w.max(title_w)
}

/// Channels that can leave their band for a free cell of the tree: a
/// column (one unit wide) of a row where no node is, with every process
/// that uses the channel in that row or the next, at most one column away
/// (its links stay short, cross no other node, and come from the side or
/// from below, never through the title over the box). Cells are taken in
/// order (row, then column), each by the nearest channel that `fits`
/// there (then by name): the same run always gets the same places.
fn free_cells<'a>(
    at: &BTreeMap<&str, (usize, usize, f32)>,
    rows: usize,
    units: f32,
    bands: &[Vec<(&'a str, f32)>],
    users_at: &BTreeMap<&str, Vec<(usize, f32)>>,
    fits: impl Fn(&str) -> bool,
) -> Vec<(&'a str, usize, f32)> {
    const EPS: f32 = 1e-3;
    let mut out: Vec<(&'a str, usize, f32)> = Vec::new();
    for row in 0..rows {
        let taken: Vec<f32> = at
            .iter()
            .filter(|(id, (r, _, _))| **id != RUNNER_ID && *r == row)
            .map(|(_, (_, _, x))| *x)
            .collect();
        for i in 0..units.floor() as usize {
            let x = i as f32 + 0.5;
            if taken.iter().any(|t| (t - x).abs() < 1.0 - EPS) {
                continue;
            }
            let best = bands
                .iter()
                .flatten()
                .filter(|(name, _)| !out.iter().any(|(c, _, _)| c == name))
                .filter(|(name, _)| {
                    users_at.get(name).is_some_and(|ends| {
                        ends.iter().all(|(r, ux)| {
                            (*r == row || *r == row + 1) && (ux - x).abs() <= 1.0 + EPS
                        })
                    })
                })
                .filter(|(name, _)| fits(name))
                .min_by(|a, b| {
                    (a.1 - x)
                        .abs()
                        .total_cmp(&(b.1 - x).abs())
                        .then(a.0.cmp(b.0))
                });
            if let Some((name, _)) = best {
                out.push((name, row, x));
            }
        }
    }
    out
}

impl Tree<'_> {
    /// Height of the nodes of `row` (k units): sub-rows of a grid stacked.
    fn row_h(&self, row: usize) -> f32 {
        let n = self.subrows[row] as f32;
        n * self.node_h + (n - 1.0) * SUB_GAP
    }

    fn channel_w(&self, c: &Channel) -> (f32, f32) {
        channel_w(c)
    }

    /// The band's lines under `row`: one, or two when it is split.
    fn band_lines(&self, row: usize) -> Vec<&[(&str, f32)]> {
        let band = &self.bands[row];
        let (a, b) = band.split_at(self.band_split[row].min(band.len()));
        if b.is_empty() { vec![a] } else { vec![a, b] }
    }

    fn band_w(&self, row: usize, world: &World) -> f32 {
        self.band_lines(row)
            .iter()
            .map(|line| {
                line.iter()
                    .filter_map(|(name, _)| world.channels.get(*name))
                    .map(band_item_w)
                    .sum::<f32>()
            })
            .fold(0.0, f32::max)
    }

    fn is_compact(&self) -> Compact {
        Compact {
            free_cells: !self.cells.is_empty(),
            two_line_state: self.two_line_state,
            two_line_bands: self
                .band_split
                .iter()
                .zip(&self.bands)
                .any(|(s, b)| *s < b.len()),
        }
    }

    /// The gap under `row` (k units): pool label strip, next-step bubble,
    /// channel band, and room for the edges.
    fn gap_under(&self, row: usize, gated: bool) -> f32 {
        let last = row + 1 == self.rows;
        let mut h = if last { 0.6 } else { ROW_GAP };
        if self.pool_strip[row] {
            h += POOL_STRIP_H;
        }
        if gated {
            h += NEXT_H + NEXT_GAP;
        }
        if !self.bands[row].is_empty() {
            h += BAND_H * self.band_lines(row).len() as f32;
        }
        h
    }

    fn width(&self, world: &World) -> f32 {
        let cols = self.units * (self.node_w + COL_GAP);
        (0..self.rows)
            .map(|r| self.band_w(r, world))
            .fold(cols, f32::max)
    }

    fn height(&self, gated: bool) -> f32 {
        let runner = if self.has_runner {
            RUNNER_H + RUNNER_GAP
        } else {
            0.0
        };
        runner
            + (0..self.rows)
                .map(|r| self.row_h(r) + self.gap_under(r, gated))
                .sum::<f32>()
    }
}

/// A channel's box and its title beside it (k units).
fn channel_w(c: &Channel) -> (f32, f32) {
    let box_w = SLOT_W * slot_count(c) as f32 + 1.0;
    let title_w = text_w(&channel_title_room(c), 1.0);
    (box_w, title_w)
}

/// The room a channel takes in its band (k units).
fn band_item_w(c: &Channel) -> f32 {
    let (b, t) = channel_w(c);
    b + t + 0.6 + COL_GAP
}

// ---- cards -----------------------------------------------------------------

enum CardKind<'a> {
    Value(&'a str),
    Lock(&'a str),
}

/// Card heights in k units: a value card as `value_box` paints it.
fn card_h(world: &World, kind: &CardKind, lost: bool) -> f32 {
    let big_units = match kind {
        CardKind::Value(_) => {
            118.0
                + access_lines(world) as f32 * ACCESS_LINE_H
                + if lost { LOST_BANNER_H + 6.0 } else { 0.0 }
        }
        CardKind::Lock(_) => 84.0,
    };
    big_units / CARD_BIG_PER_K
}

/// Cards into `cols` columns, each to the shortest so far (stable: the
/// order of the cards decides); returns each card's column and the
/// tallest column's height.
fn pack(heights: &[f32], cols: usize) -> (Vec<(usize, f32)>, f32) {
    let mut col_h = vec![0.0f32; cols.max(1)];
    let mut at = Vec::new();
    for h in heights {
        let (c, _) = col_h
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
            .unwrap_or((0, &0.0));
        let y = col_h[c];
        at.push((c, y));
        col_h[c] = y + h + CARD_GAP;
    }
    let tallest = col_h.iter().fold(0.0f32, |a, b| a.max(*b - CARD_GAP));
    (at, tallest.max(0.0))
}

// ---- the whole stage ---------------------------------------------------------

/// The smallest key font (points) the stage aims for, and the largest.
pub fn key_font_range(presenter: bool, px_per_pt: f32, window_h_px: f32) -> (f32, f32) {
    if presenter {
        let grow = (window_h_px / 720.0).clamp(1.0, 1.5);
        (
            PRESENTER_MIN_KEY_PX * grow / px_per_pt,
            PRESENTER_MAX_KEY_PX * grow / px_per_pt,
        )
    } else {
        (DESK_MIN_KEY_PT, DESK_MAX_KEY_PT)
    }
}

/// Lays the stage out in `stage` (points).
pub fn layout(input: &StageInput, stage: Rect) -> StageLayout {
    layout_cached(input, stage, &mut FitCache::default())
}

/// What the search for the biggest type found, kept while nothing it
/// depends on changes (a large tree has many ways to try, every frame).
#[derive(Default)]
pub struct FitCache {
    key: Option<String>,
    /// Grid width, states on two lines, card columns, key font.
    fit: (usize, Compact, usize, f32),
}

/// [`layout`], reusing the last search for the biggest type when the
/// run's shape, the room and the look are the same.
pub fn layout_cached(input: &StageInput, stage: Rect, cache: &mut FitCache) -> StageLayout {
    let live = input.layout_world;
    let world = input.world;
    let px = input.px_per_pt.max(0.1);
    let (k_min, k_max) = key_font_range(input.presenter, px, input.window_h_px);
    let zoom = input.zoom.clamp(0.5, 3.0);
    let k_max = k_max * zoom;

    // Cards: values then locks, in name order.
    let lost_ever = live.values.values().any(|v| v.last_erasing().is_some())
        || world.values.values().any(|v| v.last_erasing().is_some());
    let mut cards: Vec<CardKind> = Vec::new();
    for name in live.values.keys() {
        cards.push(CardKind::Value(name));
    }
    for name in live.locks.keys() {
        cards.push(CardKind::Lock(name));
    }
    let heights: Vec<f32> = cards.iter().map(|c| card_h(live, c, lost_ever)).collect();
    let banner_h = if input.deadlock { BANNER_H + 0.6 } else { 0.0 };
    let caption_h = CAPTION_LINES * CAPTION_FONT * 1.3 + CAPTION_PAD;

    // The biggest type over the ways to lay out: how many columns of
    // cards, and (for a large family of leaves) how wide its grid is.
    let biggest_family = live
        .processes
        .values()
        .filter_map(|p| p.parent.as_deref())
        .fold(BTreeMap::<&str, usize>::new(), |mut m, parent| {
            *m.entry(parent).or_default() += 1;
            m
        })
        .into_values()
        .max()
        .unwrap_or(0);
    let key = format!(
        "{:?} {:?} {:?} {:?} {:?} {} {} {} {} {} {} {}",
        live.processes.keys().collect::<Vec<_>>(),
        input.channel_users.keys().collect::<Vec<_>>(),
        heights,
        stage,
        (input.presenter, input.gated, input.deadlock),
        input.widest_state,
        input.px_per_pt,
        input.window_h_px,
        input.zoom,
        extra_lines_max(live),
        live.pools.len(),
        live.globals.len(),
    );
    let mut grids = vec![usize::MAX];
    if biggest_family > 4 {
        grids.extend(
            (2..=16)
                .chain([20, 25, 32, 40, 50, 64])
                .filter(|g| *g < biggest_family),
        );
    }
    let mut best: Option<(usize, Compact, usize, f32)> = None;
    if cache.key.as_deref() == Some(key.as_str()) {
        best = Some(cache.fit);
        grids.clear();
    }
    // Channels beside the tree (in free cells) only when the bands leave
    // the type under the size an audience needs: a lesson's channels stay
    // between the processes that use them wherever they can.
    for free_cells in [false, true] {
        if free_cells && best.as_ref().is_none_or(|b| b.3 + 1e-3 >= k_min) {
            break;
        }
        let tries: Vec<(usize, Compact)> = grids
            .iter()
            .flat_map(|g| {
                [(false, false), (true, false), (false, true), (true, true)].map(
                    |(two_line_state, two_line_bands)| {
                        (
                            *g,
                            Compact {
                                two_line_state,
                                two_line_bands,
                                free_cells,
                            },
                        )
                    },
                )
            })
            .collect();
        for (grid, wrap) in tries {
            let t = tree(input, grid, wrap);
            // A way that changes nothing was tried already.
            if t.is_compact() != wrap {
                continue;
            }
            let tree_w = t.width(live);
            let tree_h = t.height(input.gated);
            let choices = if cards.is_empty() {
                0..=0
            } else {
                1..=cards.len()
            };
            for cols in choices {
                let (_, side_h) = pack(&heights, cols);
                let side_w = if cols == 0 {
                    0.0
                } else {
                    cols as f32 * (CARD_W + CARD_GAP) + COL_GAP
                };
                let k = (stage.width() / (tree_w + side_w))
                    .min(stage.height() / ((tree_h + banner_h).max(side_h) + caption_h));
                // Past the ceiling, a bigger k is no better: the first (no
                // grid, fewest columns) wins.
                let k = k.min(k_max);
                if best.as_ref().is_none_or(|b| k > b.3 + 1e-3) {
                    best = Some((grid, wrap, cols, k));
                }
            }
        }
    }
    let (grid, wrap, cols, k_fit) = best.unwrap_or((usize::MAX, Compact::default(), 0, 1.0));
    cache.key = Some(key);
    cache.fit = (grid, wrap, cols, k_fit);
    let tree = tree(input, grid, wrap);
    let (tree_w, tree_h) = (tree.width(live), tree.height(input.gated));
    let mut k = k_fit.max(1.0);
    // A crowded stage gets small type, but the caption stays legible: it
    // keeps the smallest key size and the rest shrinks a little more.
    let cap_k = k.max(k_min);
    if cap_k > k {
        let (_, side_h) = pack(&heights, cols);
        let room = stage.height() - caption_h * cap_k;
        k = k
            .min(room / (tree_h + banner_h).max(side_h).max(0.1))
            .max(1.0);
    }

    let mut out = StageLayout {
        stage,
        k,
        full: k + 1e-3 < k_max,
        nodes: BTreeMap::new(),
        channels: BTreeMap::new(),
        values: BTreeMap::new(),
        locks: BTreeMap::new(),
        pools: BTreeMap::new(),
        dots: Vec::new(),
        edges: Vec::new(),
        links: Vec::new(),
        caption: None,
        banner: None,
        painted: Default::default(),
    };

    // Caption strip at the bottom.
    let caption_top = stage.bottom() - caption_h * cap_k;
    let choices = super::captions::caption_choices(world);
    if !choices.is_empty() {
        out.caption = Some(caption_label(&choices, stage, caption_top, cap_k));
    }

    // Cards at the right.
    let side_w = if cols == 0 {
        0.0
    } else {
        cols as f32 * (CARD_W + CARD_GAP) * k
    };
    if cols > 0 {
        let (at, _) = pack(&heights, cols);
        let left = stage.right() - side_w + CARD_GAP * k;
        for ((card, (col, y)), h) in cards.iter().zip(at).zip(&heights) {
            let r = Rect::from_min_size(
                pos2(
                    left + col as f32 * (CARD_W + CARD_GAP) * k,
                    stage.top() + y * k,
                ),
                vec2(CARD_W * k, h * k),
            );
            match card {
                CardKind::Value(name) => {
                    if let Some(v) = world.values.get(*name).or_else(|| live.values.get(*name)) {
                        out.values
                            .insert(name.to_string(), value_card(r, v, k, k_min));
                    }
                }
                CardKind::Lock(name) => {
                    let holder = world.locks.get(*name).and_then(|l| l.holder.clone());
                    out.locks
                        .insert(name.to_string(), lock_card(r, name, holder, k));
                }
            }
        }
    }

    // The tree in what is left, spread over the room there is.
    let area = Rect::from_min_max(
        pos2(stage.left(), stage.top() + banner_h * k),
        pos2(stage.right() - side_w, caption_top),
    );
    if input.deadlock {
        let r = Rect::from_min_size(stage.min, vec2(area.width(), BANNER_H * k));
        let cycle = world.deadlock.clone().unwrap_or_default();
        let title = label(
            r.min + vec2(0.6, 0.4) * k,
            "⛔ DEADLOCK: nobody can go on".to_string(),
            1.3 * k,
        );
        let room = r.width() - 1.2 * k;
        let font = (k * room / text_w(&cycle, 1.0).max(1.0)).clamp(k.min(FLOOR_KEY_PT / px), k);
        let cycle = label(pos2(r.left() + 0.6 * k, r.top() + 2.3 * k), cycle, font);
        if world.deadlock.is_some() {
            out.banner = Some((r, title, cycle));
        }
    }
    let extra_w = (area.width() - tree_w * k).max(0.0);
    let unit = (tree.node_w + COL_GAP) * k + (extra_w / tree.units).min(tree.node_w * k * 0.6);
    let used_w = unit * tree.units;
    let left = area.left() + (area.width() - used_w).max(0.0) / 2.0;
    let extra_h = (area.height() - tree_h * k).max(0.0);
    let spread = (extra_h / (tree.rows as f32 + 1.0)).min(3.0 * k);
    // What the spread gaps leave over: the tree stands in the middle.
    let left_over = (extra_h - spread * (tree.rows as f32 + 1.0)).max(0.0);
    let top = area.top() + spread * 0.5 + left_over * 0.5;
    let mut row_top = Vec::new();
    let mut y = top;
    if tree.has_runner {
        y += (RUNNER_H + RUNNER_GAP) * k;
    }
    for r in 0..tree.rows {
        row_top.push(y);
        y += (tree.row_h(r) + tree.gap_under(r, input.gated)) * k + spread;
    }
    let node_w = tree.node_w * k;
    // Every process's place, born yet or not (what is in the way of a
    // channel must not change from one moment to the next).
    let places: BTreeMap<&str, Rect> = tree
        .at
        .iter()
        .filter(|(id, _)| **id != RUNNER_ID)
        .map(|(id, (row, sub, col))| {
            let rect = Rect::from_min_size(
                pos2(
                    left + col * unit - node_w / 2.0,
                    row_top[*row] + *sub as f32 * (tree.node_h + SUB_GAP) * k,
                ),
                vec2(node_w, tree.node_h * k),
            );
            (*id, rect)
        })
        .collect();
    for (id, (row, sub, col)) in &tree.at {
        let cx = left + col * unit;
        if *id == RUNNER_ID {
            let r = Rect::from_center_size(
                pos2(cx, top + RUNNER_H * k / 2.0),
                vec2((node_w * 1.2).min(area.width()), RUNNER_H * k),
            );
            if let Some(p) = world.processes.get(*id).or_else(|| live.processes.get(*id)) {
                out.nodes.insert(id.to_string(), runner_box(r, p, k));
            }
            continue;
        }
        let Some(&rect) = places.get(id) else {
            continue;
        };
        let Some(p) = world.processes.get(*id) else {
            // Not born yet at this moment: its place stays empty.
            continue;
        };
        let mut nb = node_box(
            rect,
            p,
            world,
            input.view_t_ns,
            k,
            (tree.tags_line, tree.two_line_state),
            k_min,
        );
        if input.gated && p.pending.is_some() && p.is_alive() {
            let below = if tree.pool_strip[*row] && *sub + 1 == tree.subrows[*row] {
                POOL_STRIP_H * k
            } else {
                0.0
            };
            nb.next = Some(Rect::from_min_size(
                pos2(rect.left(), rect.bottom() + below + NEXT_GAP * k),
                vec2(rect.width(), NEXT_H * k),
            ));
        }
        if erased_updates(world, &p.id) {
            put_news(&mut nb, LOST_UPDATE_TAG, k);
        }
        out.nodes.insert(id.to_string(), nb);
    }
    pools(&mut out, world, k);
    let mut in_the_way: Vec<(Pos2, Pos2)> = Vec::new();
    // Channels beside the tree first (their links are in the bands' way):
    // in their cell, the title over the box, both in the middle of the
    // cell and of its row's height.
    for (name, row, col) in &tree.cells {
        let (Some(c), Some(row_y)) = (
            world
                .channels
                .get(*name)
                .or_else(|| live.channels.get(*name)),
            row_top.get(*row),
        ) else {
            continue;
        };
        let top = row_y + (tree.row_h(*row) - STACKED_CHANNEL_H) * k / 2.0;
        let cb = stacked_channel(input, c, left + col * unit, top, k);
        for id in users_of(input, name) {
            if let Some(r) = places.get(id) {
                in_the_way.push(link_ends(*r, cb.rect));
            }
        }
        out.channels.insert(name.to_string(), cb);
    }
    // A parent's line down to its children's bar, whoever is born yet.
    let row_of = |id: &str| tree.at.get(id).map(|(row, _, _)| *row);
    let hangs_from_bar = |parent: &str, child: &str| {
        parent != RUNNER_ID
            && !tree.grid_parents.contains(parent)
            && matches!((row_of(parent), row_of(child)), (Some(pr), Some(cr)) if cr == pr + 1)
    };
    let bar_parents: std::collections::BTreeSet<&str> = live
        .processes
        .values()
        .filter_map(|p| p.parent.as_deref().filter(|par| hangs_from_bar(par, &p.id)))
        .collect();
    for id in &bar_parents {
        if let (Some(r), Some(row)) = (places.get(id), row_of(id)) {
            let to = row_top.get(row + 1).copied().unwrap_or(stage.bottom());
            in_the_way.push((r.center_bottom(), pos2(r.center().x, to)));
        }
    }
    // Where each row's children hang from their parents' bars: half way
    // between what is under the row (its pool's strip, next steps, band)
    // and the next row (its pool's frame).
    let mut below_row: Vec<f32> = (0..tree.rows)
        .map(|row| {
            let mut y = row_top[row] + tree.row_h(row) * k;
            if tree.pool_strip[row] {
                y += POOL_STRIP_H * k;
            }
            if input.gated {
                y += (NEXT_H + 0.4) * k;
            }
            y
        })
        .collect();
    // Channels in the band under their row.
    for row in 0..tree.bands.len() {
        let Some(row_y) = row_top.get(row) else {
            continue;
        };
        let lines = tree.band_lines(row);
        let mut band_top = row_y + tree.row_h(row) * k + 0.3 * k;
        if tree.pool_strip[row] {
            band_top += POOL_STRIP_H * k;
        }
        if input.gated {
            band_top += (NEXT_H + NEXT_GAP) * k;
        }
        // Centre the band in the room the gap has got.
        band_top += (tree.gap_under(row, input.gated)
            - BAND_H * lines.len() as f32
            - if tree.pool_strip[row] {
                POOL_STRIP_H
            } else {
                0.0
            }
            - if input.gated { NEXT_H + NEXT_GAP } else { 0.0 })
        .max(0.0)
            * k
            * 0.3
            + spread * 0.5;
        for (line, band) in lines.iter().enumerate() {
            let band_top = band_top + line as f32 * BAND_H * k;
            // Each channel's foot (title and box) and where it wants its
            // box's middle: under the middle of its users.
            let feet: Vec<(&str, &Channel, f32, f32)> = band
                .iter()
                .filter_map(|(name, want)| {
                    let c = live.channels.get(*name)?;
                    let (box_w, title_w) = tree.channel_w(c);
                    let foot = (title_w + 0.6 + box_w) * k;
                    let want_left = left + want * unit - (title_w + 0.6 + box_w / 2.0) * k;
                    Some((*name, c, want_left, foot))
                })
                .collect();
            let (y0, y1) = (band_top + 0.6 * k, band_top + (0.6 + CHANNEL_H) * k);
            if let Some(b) = below_row.get_mut(row).filter(|_| !feet.is_empty()) {
                *b = b.max(y1);
            }
            // Clear of the tree's edges and of the links beside it if
            // the line has room for that, else packed from the left.
            let blocked: Vec<(f32, f32)> = in_the_way
                .iter()
                .filter_map(|(a, b)| x_span_in(*a, *b, y0, y1))
                .map(|(x0, x1)| (x0 - 0.5 * k, x1 + 0.5 * k))
                .collect();
            let free = free_spans(area.left(), area.right(), blocked);
            let gap = COL_GAP * k;
            let room = (area.left(), area.right());
            let whole: Vec<(f32, f32)> = feet.iter().map(|f| (f.2, f.3)).collect();
            let lefts = dodge(&whole, &free, room, gap)
                .unwrap_or_else(|| pack_left(&whole, area.left(), area.right(), gap));
            for ((name, live_c, _, _), l) in feet.into_iter().zip(lefts) {
                let c = world.channels.get(name).unwrap_or(live_c);
                let (box_w, title_w) = tree.channel_w(c);
                let rect = Rect::from_min_size(
                    pos2(l + (title_w + 0.6) * k, y0),
                    vec2(box_w * k, CHANNEL_H * k),
                );
                let title_text = channel_title(c, readers_gone(input, name));
                let tw = text_w(&title_text, k);
                let title = Label {
                    rect: Rect::from_min_size(
                        pos2(rect.left() - 0.6 * k - tw, rect.center().y - 0.625 * k),
                        vec2(tw, 1.25 * k),
                    ),
                    font: k,
                    text: title_text,
                };
                let cb = ChannelBox {
                    rect,
                    title,
                    slots: slot_count(c),
                };
                out.channels.insert(name.to_string(), cb);
            }
        }
    }
    let bus_y: Vec<Option<f32>> = (0..tree.rows)
        .map(|row| {
            let next = row_top.get(row + 1)?;
            let frame = if tree.pool_strip.get(row + 1) == Some(&true) {
                POOL_PAD * k
            } else {
                0.0
            };
            Some((below_row[row] + next - frame) / 2.0)
        })
        .collect();
    // Tree edges. A parent's children in the row under it hang from a
    // bar (an "org chart"): one line down from the parent, under the
    // channels between the rows, so a channel sits clear of the edges
    // where the band has room. A grid of leaves hangs from one bar over
    // it; a child elsewhere (an orphan the runner adopted) gets a line.
    let mut grids: BTreeMap<&str, Rect> = BTreeMap::new();
    let mut families: BTreeMap<&str, Vec<(&str, Rect)>> = BTreeMap::new();
    for p in world.processes.values() {
        let (Some(c), Some((parent, par))) = (
            out.nodes.get(&p.id),
            p.parent
                .as_deref()
                .and_then(|id| out.nodes.get_key_value(id)),
        ) else {
            continue;
        };
        if let Some(key) = tree.grid_parents.get(parent.as_str()) {
            let r = grids.entry(key).or_insert(c.rect);
            *r = r.union(c.rect);
            continue;
        }
        if hangs_from_bar(parent, &p.id) {
            families
                .entry(parent.as_str())
                .or_default()
                .push((p.id.as_str(), c.rect));
        } else {
            out.edges.push((
                parent.clone(),
                p.id.clone(),
                par.rect.center_bottom(),
                c.rect.center_top(),
            ));
        }
    }
    for (parent, kids) in families {
        let (Some(par), Some(y)) = (
            out.nodes.get(parent),
            row_of(parent).and_then(|row| bus_y.get(row).copied().flatten()),
        ) else {
            continue;
        };
        let x = par.rect.center().x;
        if let [(kid, r)] = kids.as_slice()
            && (r.center().x - x).abs() < 0.5
        {
            // One child right under it: a straight line.
            out.edges.push((
                parent.to_string(),
                kid.to_string(),
                par.rect.center_bottom(),
                r.center_top(),
            ));
            continue;
        }
        out.edges.push((
            parent.to_string(),
            "down".to_string(),
            par.rect.center_bottom(),
            pos2(x, y),
        ));
        let (lo, hi) = kids.iter().fold((x, x), |(lo, hi), (_, r)| {
            (lo.min(r.center().x), hi.max(r.center().x))
        });
        out.edges.push((
            parent.to_string(),
            "bar".to_string(),
            pos2(lo, y),
            pos2(hi, y),
        ));
        for (kid, r) in kids {
            out.edges.push((
                parent.to_string(),
                kid.to_string(),
                pos2(r.center().x, y),
                r.center_top(),
            ));
        }
    }
    for (parent, r) in grids {
        let Some(par) = out.nodes.get(parent) else {
            continue;
        };
        let bar_y = r.top() - (r.top() - par.rect.bottom()) * 0.4;
        let half = node_w / 2.0;
        out.edges.push((
            parent.to_string(),
            "grid".to_string(),
            par.rect.center_bottom(),
            pos2(par.rect.center().x, bar_y),
        ));
        out.edges.push((
            parent.to_string(),
            "bar".to_string(),
            pos2(r.left() + half, bar_y),
            pos2(r.right() - half, bar_y),
        ));
    }
    links_and_dots(&mut out, input, k);
    out
}

/// A channel with its title over its box, both centred on `cx`, the
/// title's top at `top`.
fn stacked_channel(input: &StageInput, c: &Channel, cx: f32, top: f32, k: f32) -> ChannelBox {
    let (box_w, _) = channel_w(c);
    let rect = Rect::from_min_size(
        pos2(cx - box_w * k / 2.0, top + (1.25 + STACKED_TITLE_GAP) * k),
        vec2(box_w * k, CHANNEL_H * k),
    );
    let title_text = channel_title(c, readers_gone(input, &c.name));
    let tw = text_w(&title_text, k);
    let title = Label {
        rect: Rect::from_min_size(pos2(cx - tw / 2.0, top), vec2(tw, 1.25 * k)),
        font: k,
        text: title_text,
    };
    ChannelBox {
        rect,
        title,
        slots: slot_count(c),
    }
}

/// The processes that send to or receive from channel `name`.
fn users_of<'a>(input: &'a StageInput, name: &str) -> impl Iterator<Item = &'a str> {
    input
        .channel_users
        .get(name)
        .into_iter()
        .flat_map(|u| u.senders.iter().chain(u.receivers.iter()))
        .map(String::as_str)
        .filter(|id| *id != RUNNER_ID)
}

/// The x-span of the segment `a`–`b` between heights `y0` and `y1`, if it
/// passes there.
fn x_span_in(a: Pos2, b: Pos2, y0: f32, y1: f32) -> Option<(f32, f32)> {
    let (lo, hi) = if a.y <= b.y { (a, b) } else { (b, a) };
    if hi.y < y0 || lo.y > y1 {
        return None;
    }
    if hi.y - lo.y < 1e-3 {
        return Some((lo.x.min(hi.x), lo.x.max(hi.x)));
    }
    let x_at = |y: f32| lo.x + (hi.x - lo.x) * ((y - lo.y) / (hi.y - lo.y)).clamp(0.0, 1.0);
    let (xa, xb) = (x_at(y0.max(lo.y)), x_at(y1.min(hi.y)));
    Some((xa.min(xb), xa.max(xb)))
}

/// What is left of `lo`..`hi` once the `blocked` spans are taken out.
fn free_spans(lo: f32, hi: f32, mut blocked: Vec<(f32, f32)>) -> Vec<(f32, f32)> {
    blocked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut free = Vec::new();
    let mut from = lo;
    for (b0, b1) in blocked {
        if b0 > from {
            free.push((from, b0.min(hi)));
        }
        from = from.max(b1);
    }
    if from < hi {
        free.push((from, hi));
    }
    free.retain(|(a, b)| b > a);
    free
}

/// Lefts for items `(wanted left, width)`, in their order, each in a
/// `free` span inside `lo`..`hi`, `gap` apart, as near their wishes as
/// can be (the least distance moved in all, over the ways of giving them
/// spans); `None` if they do not all fit.
fn dodge(
    items: &[(f32, f32)],
    free: &[(f32, f32)],
    (lo, hi): (f32, f32),
    gap: f32,
) -> Option<Vec<f32>> {
    let mut search = Dodge {
        free,
        hi,
        gap,
        placed: Vec::with_capacity(items.len()),
        best: None,
        steps_left: DODGE_STEPS,
    };
    search.go(items, lo, 0, 0.0);
    search.best.map(|(_, lefts)| lefts)
}

/// The most ways [`dodge`] looks at (a band line holds a few channels,
/// and the search is the same every frame).
const DODGE_STEPS: usize = 4096;

/// [`dodge`]'s search, depth first, cut where it cannot do better.
struct Dodge<'a> {
    free: &'a [(f32, f32)],
    hi: f32,
    gap: f32,
    placed: Vec<f32>,
    /// Distance moved in all, and the lefts.
    best: Option<(f32, Vec<f32>)>,
    steps_left: usize,
}

impl Dodge<'_> {
    fn go(&mut self, items: &[(f32, f32)], cursor: f32, first_span: usize, moved: f32) {
        if self.steps_left == 0 || self.best.as_ref().is_some_and(|(m, _)| moved >= *m) {
            return;
        }
        self.steps_left -= 1;
        let Some((&(want, w), rest)) = items.split_first() else {
            self.best = Some((moved, self.placed.clone()));
            return;
        };
        for (j, &(a, b)) in self.free.iter().enumerate().skip(first_span) {
            let (from, to) = (a.max(cursor), (b - w).min(self.hi - w));
            if to < from {
                continue;
            }
            let l = want.clamp(from, to);
            self.placed.push(l);
            self.go(rest, l + w + self.gap, j, moved + (l - want).abs());
            self.placed.pop();
        }
    }
}

/// Lefts for items `(wanted left, width)` packed in order from where they
/// want to be, `gap` apart, slid back inside `lo`..`hi` when pushed past
/// its right end.
fn pack_left(items: &[(f32, f32)], lo: f32, hi: f32, gap: f32) -> Vec<f32> {
    let mut out = Vec::new();
    let mut cursor = lo;
    for (want, w) in items {
        let l = want.max(cursor);
        out.push(l);
        cursor = l + w + gap;
    }
    let over = cursor - gap - hi;
    if over > 0.0 {
        for l in &mut out {
            *l -= over;
        }
        // And never past the left end either.
        let under = lo - out.first().copied().unwrap_or(lo);
        if under > 0.0 {
            for l in &mut out {
                *l += under;
            }
        }
    }
    out
}

/// The caption's text at the largest size (from `big` down to `floor`)
/// at which it stands on one line, or on two split at its best `sep`, in
/// `room` points and `max_h` high; `None` if it does not fit even at
/// `floor`.
fn caption_fit_at(
    text: &str,
    (room, max_h): (f32, f32),
    big: f32,
    floor: f32,
    sep: &str,
) -> Option<(String, f32)> {
    // Widths grow with the size: the largest size on one line and on
    // two (split where the wider line is narrowest) follow from 1 pt.
    let one = (room / text_w(text, 1.0).max(1e-3))
        .min(big)
        .min(max_h / 1.3);
    let (two, w) = split_two_at(text, 1.0, sep);
    let two_font = (room / w.max(1e-3)).min(big).min(max_h / (2.0 * 1.3));
    let best = if one >= two_font || !two.contains('\n') {
        (text.to_string(), one)
    } else {
        (two, two_font)
    };
    // A hair under, so that a size scaled to the room stays within it.
    (best.1 >= floor * (1.0 - 1e-4)).then_some((best.0, best.1 * (1.0 - 1e-5)))
}

/// [`caption_fit_at`] split between two parts ("a · b") rather than
/// inside one, unless that costs more than a little size.
fn caption_fit(text: &str, room: f32, max_h: f32, big: f32, floor: f32) -> Option<(String, f32)> {
    let any = caption_fit_at(text, (room, max_h), big, floor, " ")?;
    match caption_fit_at(text, (room, max_h), big, floor, " · ") {
        Some(parts) if parts.1 >= 0.85 * any.1 => Some(parts),
        _ => Some(any),
    }
}

/// The caption's box and words: the first of `choices` (the fullest way
/// to say it first) that fits the strip's two lines at no less than the
/// key size; else the last, wrapped at 70 % of the usual size.
fn caption_label(choices: &[String], stage: Rect, top: f32, k: f32) -> (Rect, Label) {
    let room = stage.width() - 2.0 * k;
    let max_h = CAPTION_LINES * CAPTION_FONT * 1.3 * k;
    let big = CAPTION_FONT * k * 1.45;
    let fitted = choices
        .iter()
        .find_map(|t| caption_fit(t, room, max_h, big, k))
        .or_else(|| {
            let last = choices.last()?;
            caption_fit(last, room, max_h, big, CAPTION_FONT * k * 0.7)
        });
    let (text, font, w, h) = match fitted {
        Some((text, font)) => {
            let w = text.lines().map(|l| text_w(l, font)).fold(0.0, f32::max);
            let h = text.lines().count() as f32 * font * 1.3;
            (text, font, w, h)
        }
        None => {
            // Too long even for two lines: the painter wraps it at the
            // smallest size, and what is left over is cut.
            let text = choices.last().cloned().unwrap_or_default();
            let font = CAPTION_FONT * k * 0.7;
            (text, font, room, max_h)
        }
    };
    let box_r = Rect::from_center_size(
        pos2(stage.center().x, top + (stage.bottom() - top) / 2.0),
        vec2(w + 1.6 * k, h + 0.3 * k),
    );
    let l = Label {
        rect: Rect::from_min_size(box_r.min + vec2(0.8, 0.15) * k, vec2(w, h)),
        font,
        text,
    };
    (box_r, l)
}

fn node_box(
    rect: Rect,
    p: &Process,
    world: &World,
    view_t_ns: u64,
    k: f32,
    (tags_line, two_lines): (bool, bool),
    k_min: f32,
) -> NodeBox {
    let pad = NODE_PAD * k;
    let name = label(rect.min + vec2(pad, 0.3 * k), p.id.clone(), NAME_FONT * k);
    let pid = (p.pid > 0).then(|| {
        let text = format!("pid {}", p.pid);
        let w = text_w(&text, SMALL_FONT * k);
        Label {
            rect: Rect::from_min_size(
                pos2(rect.right() - pad - w, rect.top() + 0.5 * k),
                vec2(w, SMALL_FONT * k * 1.25),
            ),
            font: SMALL_FONT * k,
            text,
        }
    });
    let mut y = rect.top() + 1.85 * k;
    let tags = node_tags(p);
    let tags = (tags_line && !tags.is_empty()).then(|| {
        let room = rect.width() - 2.0 * pad;
        let font = (room / text_w(&tags, 1.0).max(0.1)).min(SMALL_FONT * k);
        label(pos2(rect.left() + pad, y), tags, font)
    });
    if tags_line {
        y += TAGS_H * k;
    }
    // The state on one line (on two when the nodes have room for two and
    // one is too narrow): a little smaller if it must (never under the
    // smallest key size), else cut.
    let room = rect.width() - 2.0 * pad - 0.8 * k;
    let mut text = state_words(p, view_t_ns);
    let mut text_width = text_w(&text, k);
    let (mut lines, mut font_k) = (1.0, k);
    if two_lines {
        font_k = STATE_FONT_2 * k;
        if text_w(&text, font_k) > room {
            let (split, w) = split_two(&text, k);
            if split.contains('\n') {
                (text, text_width, lines) = (split, w, 2.0);
            }
        }
    }
    let font = (k * room / text_width.max(0.1))
        .min(font_k)
        .max((0.8 * k).max(k_min.min(k)));
    if lines < 2.0 {
        while text_w(&text, font) > room && text.chars().count() > 3 {
            let cut: String = text.chars().take(text.chars().count() - 2).collect();
            text = format!("{cut}…");
        }
        text_width = text_w(&text, font);
    } else {
        text_width *= font / k;
    }
    let badge_h = if two_lines {
        (1.7 + STATE_LINE_H) * k
    } else {
        1.7 * k
    };
    let badge = Rect::from_min_size(
        pos2(rect.left() + pad * 0.7, y),
        vec2(rect.width() - pad * 1.4, badge_h),
    );
    let state = Label {
        rect: Rect::from_min_size(
            pos2(
                badge.left() + 0.4 * k,
                badge.center().y - font * 0.625 * lines,
            ),
            vec2(text_width, font * 1.25 * lines),
        ),
        font,
        text,
    };
    let mut y = badge.bottom() + 0.15 * k;
    let mut extra = Vec::new();
    for (line, color) in extra_lines(world, p) {
        if y + NODE_LINE_H * k > rect.bottom() {
            break;
        }
        // A line wider than the node is cut with "…" (never drawn past
        // its border): a command keeps its end (the script's name).
        let line = fit_line(line, SMALL_FONT * k, rect.width() - 1.5 * pad);
        let mut l = label(pos2(rect.left() + pad, y), line, SMALL_FONT * k);
        l.rect = l.rect.intersect(rect.shrink(pad * 0.5));
        extra.push((l, color));
        y += NODE_LINE_H * k;
    }
    NodeBox {
        rect,
        name,
        pid,
        tags,
        badge,
        state,
        extra,
        next: None,
        news: None,
    }
}

/// Whether `id`'s writes erased others' updates of a value that lost
/// some. No count: a write may erase 2 updates and another process's
/// write bring 1 back, so per-process figures do not add up to what is
/// lost; the true count is on the value's card and in the caption.
pub fn erased_updates(world: &World, id: &str) -> bool {
    world
        .values
        .values()
        .any(|v| v.updates_lost() > 0 && v.updates_lost_by(id).0 > 0)
}

/// A node's lost-update tag: short, so it reads at the key size beside
/// the name (the value card's banner and the caption spell it out).
pub const LOST_UPDATE_TAG: &str = "⚠ LOST";

/// The news of the moment on a node (a lost update, a signal): white on
/// red at the top right, where the pid was, never over the name. The pid
/// moves to the line under the name when that line has room for it, and
/// is left out (the inspector has it) when not.
pub fn put_news(nb: &mut NodeBox, text: &str, k: f32) {
    let pad = NODE_PAD * k;
    let rect = nb.rect;
    let room = rect.right() - 0.4 * k - (nb.name.rect.right() + 0.6 * k) - 0.5 * k;
    let font = k.min(room / text_w(text, 1.0).max(0.1)).max(0.6 * k);
    let text = fit_line(text.to_string(), font, room.max(0.0));
    let w = text_w(&text, font);
    let tag = Rect::from_min_size(
        pos2(rect.right() - 0.4 * k - w - 0.5 * k, rect.top() + 0.35 * k),
        vec2(w + 0.5 * k, font * 1.25 + 0.1 * k),
    );
    let words = Label {
        rect: Rect::from_min_size(tag.min + vec2(0.25 * k, 0.05 * k), vec2(w, font * 1.25)),
        font,
        text,
    };
    nb.news = Some((tag, words));
    let Some(mut pid) = nb.pid.take() else {
        return;
    };
    // The line under the name (the role's line), right-aligned.
    let line_top = rect.top() + 1.85 * k;
    let line_h = pid.rect.height();
    if nb.badge.top() + 0.01 < line_top + line_h {
        return;
    }
    let w = pid.rect.width();
    pid.rect = Rect::from_min_size(pos2(rect.right() - pad - w, line_top), vec2(w, line_h));
    let clear = nb
        .tags
        .as_ref()
        .is_none_or(|t| t.rect.right() + 0.5 * k <= pid.rect.left());
    if clear && pid.rect.left() >= rect.left() + pad {
        nb.pid = Some(pid);
    }
}

fn runner_box(rect: Rect, p: &Process, k: f32) -> NodeBox {
    let pid = if p.pid > 0 {
        format!(" · pid {}", p.pid)
    } else {
        String::new()
    };
    let text = format!("forkscope runner{pid} · adopts orphans");
    let font = (SMALL_FONT * k).min(rect.width() * 0.9 / text_w(&text, 1.0).max(0.1));
    let w = text_w(&text, font);
    let l = Label {
        rect: Rect::from_center_size(rect.center(), vec2(w, font * 1.25)),
        font,
        text,
    };
    NodeBox {
        rect,
        name: l.clone(),
        pid: None,
        tags: None,
        badge: Rect::NOTHING,
        state: l,
        extra: Vec::new(),
        next: None,
        news: None,
    }
}

/// A value card's value: whole on one line at up to 34 `big`, else whole
/// on two (split at its best space) at no less than `floor`, else its
/// lines cut with "…" at `floor`. Between the title and "written by" the
/// card has 44 `big` of height.
fn value_text(full: &str, room: f32, big: f32, floor: f32) -> (String, f32) {
    const ROOM_H: f32 = 44.0;
    // A hair of room kept so that a text scaled to the room fits it.
    let room = room * 0.999;
    let one = (room / text_w(full, 1.0).max(0.1)).min(34.0 * big);
    if one >= floor {
        return (full.to_string(), one);
    }
    let two_max = ROOM_H * big / 2.5;
    let (two, w1) = split_two(full, 1.0);
    let two_font = (room / w1.max(0.1)).min(two_max);
    if two.contains('\n') && two_font >= floor {
        return (two, two_font);
    }
    // Cut: as much as fits on the first line (broken at a space if
    // one is near), the rest on the second, cut at its end.
    let font = floor;
    if floor > two_max {
        return (fit_line(full.to_string(), font, room), font);
    }
    let chars: Vec<char> = full.chars().collect();
    let mut end = 0;
    while end < chars.len() && text_w(&chars[..=end].iter().collect::<String>(), font) <= room {
        end += 1;
    }
    let space = chars[..end].iter().rposition(|c| *c == ' ');
    let split = match space {
        Some(i) if i * 3 >= end * 2 && end < chars.len() => i + 1,
        _ => end,
    };
    let first: String = chars[..split].iter().collect();
    let rest: String = chars[split..].iter().collect();
    let text = if rest.is_empty() {
        fit_line(full.to_string(), font, room)
    } else {
        format!("{}\n{}", first.trim_end(), fit_line(rest, font, room))
    };
    (text, font)
}

fn value_card(r: Rect, v: &crate::model::SharedValue, k: f32, k_min: f32) -> Card {
    let big = k / CARD_BIG_PER_K;
    let kind = if v.is_array {
        "shared Array"
    } else {
        "shared Value"
    };
    let title = label(
        r.min + vec2(10.0, 6.0) * big,
        format!("{kind} {}", v.name),
        15.0 * big,
    );
    let room = r.width() - 20.0 * big;
    let (text, font) = value_text(&v.current.repr(), room, big, k_min.min(15.0 * big));
    let lines = text.lines().count().max(1) as f32;
    let main = Label {
        rect: Rect::from_min_size(
            r.min + vec2(10.0 * big, 26.0 * big),
            vec2(
                text.lines().map(|l| text_w(l, font)).fold(0.0, f32::max),
                lines * font * 1.25,
            ),
        ),
        font,
        text,
    };
    Card {
        rect: r,
        title,
        main,
        big,
    }
}

fn lock_card(r: Rect, name: &str, holder: Option<String>, k: f32) -> Card {
    let big = k / CARD_BIG_PER_K;
    let title = label(
        r.min + vec2(10.0, 6.0) * big,
        format!("🔒 Lock {name}"),
        17.0 * big,
    );
    let holder_y = r.top() + 32.0 * big;
    let main = match holder {
        Some(h) => {
            let font = 15.0 * big;
            let at = pos2(r.left() + 70.0 * big, holder_y - 2.0);
            Label {
                rect: Rect::from_min_size(at, vec2(text_w(&h, font) + 10.0 * big, font * 1.3)),
                font,
                text: h,
            }
        }
        None => label(
            pos2(r.left() + 10.0 * big, holder_y),
            "free".into(),
            14.0 * big,
        ),
    };
    Card {
        rect: r,
        title,
        main,
        big,
    }
}

fn pools(out: &mut StageLayout, world: &World, k: f32) {
    for (name, pool) in &world.pools {
        let role = format!("pool:{name}");
        let rects: Vec<Rect> = world
            .processes
            .values()
            .filter(|p| p.role == role)
            .filter_map(|p| out.nodes.get(&p.id).map(|n| n.rect))
            .collect();
        let Some(first) = rects.first() else { continue };
        let bounds = rects.iter().fold(*first, |a, b| a.union(*b));
        let frame = bounds
            .expand(POOL_PAD * k)
            .with_max_y(bounds.bottom() + POOL_STRIP_H * k);
        let text = format!("Pool {name}: {} workers · {}", pool.size, pool.progress());
        let room = frame.width() - 1.2 * k;
        let font = (0.95 * k).min(room / text_w(&text, 1.0).max(0.1));
        let l = label(
            pos2(
                frame.left() + 0.6 * k,
                frame.bottom() - 0.3 * k - font * 1.25,
            ),
            text,
            font,
        );
        out.pools.insert(name.clone(), PoolBox { frame, label: l });
    }
}

/// Where a link between a node and a channel box starts and ends: from
/// the node's side facing the channel's row to the channel's top or
/// bottom, never through the channel's title at its left.
fn link_ends(node: Rect, chan: Rect) -> (Pos2, Pos2) {
    // A channel beside its node (in a free cell of the node's row): from
    // the node's side to the box's side (its title is over it).
    let level = chan.center().y > node.top() && chan.center().y < node.bottom();
    if level && (chan.left() > node.right() || chan.right() < node.left()) {
        let y = chan.center().y;
        return if chan.left() > node.right() {
            (pos2(node.right(), y), pos2(chan.left(), y))
        } else {
            (pos2(node.left(), y), pos2(chan.right(), y))
        };
    }
    let above = node.center().y < chan.center().y;
    let nx = chan.center().x.clamp(node.left() + 8.0, node.right() - 8.0);
    let cx = node.center().x.clamp(chan.left() + 6.0, chan.right() - 6.0);
    if above {
        (pos2(nx, node.bottom()), pos2(cx, chan.top()))
    } else {
        (pos2(nx, node.top()), pos2(cx, chan.bottom()))
    }
}

pub fn slot_rect(r: Rect, i: usize, n: usize, k: f32) -> Rect {
    let w = (r.width() - 1.0 * k) / n.max(1) as f32;
    let x = r.left() + 0.5 * k + w * i as f32;
    Rect::from_min_size(
        pos2(x + 1.0, r.top() + 0.4 * k),
        vec2(w - 2.0, r.height() - 0.8 * k),
    )
}

/// The type of a message's text in its dot (k units): 18 px and more
/// where the key labels are.
pub const DOT_FONT: f32 = 0.92;

/// A dot's height: its text's line and a little (points).
fn dot_h(k: f32) -> f32 {
    DOT_FONT * k * 1.25 + 0.1 * k
}

/// A message's dot at `center`, at most `max_w` wide (a slot), its text cut
/// with "…" only if even the slot is too narrow.
fn dot(
    center: Pos2,
    max_w: Option<f32>,
    value: &Value,
    from: Option<String>,
    parked_in: Option<String>,
    channel: &str,
    k: f32,
) -> Dot {
    let r = DOT_R * k;
    let font = DOT_FONT * k;
    // The pill's ends around its text: narrow, so that a slot holds a
    // short message ("p1:3") whole at the key size.
    let pad = 0.3 * k;
    // Parked: never wider than its slot (pills in neighbouring slots do
    // not touch); travelling: a short word's width.
    let max_w = max_w.unwrap_or(4.0 * k);
    let mut text = dot_text(value);
    if text_w(&text, font) + pad > max_w {
        let mut cut: Vec<char> = text.chars().collect();
        while !cut.is_empty()
            && text_w(&format!("{}…", cut.iter().collect::<String>()), font) + pad > max_w
        {
            cut.pop();
        }
        text = format!("{}…", cut.iter().collect::<String>());
    }
    let h = dot_h(k);
    let w = (text_w(&text, font) + pad).max(h).min(max_w);
    let rect = Rect::from_center_size(center, vec2(w, h));
    let tw = text_w(&text, font);
    let text = Label {
        rect: Rect::from_center_size(center, vec2(tw, font * 1.25)),
        font,
        text,
    };
    Dot {
        center,
        radius: r,
        rect,
        text,
        value: value.clone(),
        from,
        parked_in,
        channel: channel.to_string(),
    }
}

/// What a message's dot says: its text (a pool task `worker(3)` shows
/// `3`); nothing for None.
pub fn dot_text(value: &Value) -> String {
    if *value == Value::None {
        return String::new();
    }
    let text = value.to_string();
    text.split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(&text)
        .to_string()
}

fn ease(f: f32) -> f32 {
    let f = f.clamp(0.0, 1.0);
    f * f * (3.0 - 2.0 * f)
}

/// Nobody is left who could read channel `name`: the run has ended, or
/// every process that reads it has (a reader not born yet still could).
pub fn readers_gone(input: &StageInput, name: &str) -> bool {
    let world = input.world;
    if super::captions::has_ended(world) {
        return true;
    }
    input.channel_users.get(name).is_some_and(|u| {
        !u.receivers.is_empty()
            && u.receivers
                .iter()
                .all(|r| world.process(r).is_some_and(|p| !p.is_alive()))
    })
}

fn links_and_dots(out: &mut StageLayout, input: &StageInput, k: f32) {
    let world = input.world;
    let now = input.view_t_ns;
    for (name, users) in input.channel_users {
        let Some(c) = out.channels.get(name) else {
            continue;
        };
        for (id, into) in users
            .senders
            .iter()
            .map(|s| (s, true))
            .chain(users.receivers.iter().map(|r| (r, false)))
        {
            if let Some(n) = out.nodes.get(id).filter(|_| id != RUNNER_ID) {
                let (a, b) = link_ends(n.rect, c.rect);
                let (from, to) = if into { (a, b) } else { (b, a) };
                out.links.push((name.clone(), id.clone(), from, to));
            }
        }
    }
    let mut dots = Vec::new();
    for (name, c) in &world.channels {
        let Some(cb) = out.channels.get(name) else {
            continue;
        };
        let n = cb.slots;
        // What waits in the channel is drawn in its slots, always: as many
        // as the title's depth (no dot still on its way in while the title
        // counts it).
        for (i, m) in c.in_flight.iter().enumerate().take(n) {
            let slot = slot_rect(cb.rect, i, n, k);
            dots.push(dot(
                slot.center(),
                Some(slot.width() - 0.1 * k),
                &m.value,
                Some(m.from.clone()),
                Some(name.clone()),
                name,
                k,
            ));
        }
        for d in &c.deliveries {
            let Some(to) = out.nodes.get(&d.to) else {
                continue;
            };
            // A message taken leaves the channel for its reader; it is
            // never drawn going in (it is no longer there), nor waiting on
            // the channel's border: it starts just outside the box.
            if now < d.recv_t_ns || now >= d.recv_t_ns.saturating_add(TRAVEL_NS) {
                continue;
            }
            // From just outside the box to just short of the reader's
            // node, along their link (down, up or sideways); where the two
            // are closer than a dot, it stays just outside the box (it
            // still shows what was taken).
            let (edge, exit) = link_ends(to.rect, cb.rect);
            let way = edge - exit;
            let Some(dir) = (way.length() >= 1.0).then(|| way / way.length()) else {
                continue;
            };
            let size = dot(exit, None, &d.value, None, None, name, k).rect.size() / 2.0;
            let reach = dir.x.abs() * size.x + dir.y.abs() * size.y;
            let start = exit + dir * (reach + 2.0);
            let mut end = edge - dir * (reach + 1.0);
            if (end - start).dot(dir) < 0.0 {
                end = start;
            }
            let f = ease((now - d.recv_t_ns) as f32 / TRAVEL_NS as f32);
            let leaving = dot(
                start.lerp(end, f),
                None,
                &d.value,
                d.from.clone(),
                None,
                name,
                k,
            );
            // Never over a node's words nor back on the box: where there
            // is no room between them, the taking shows in the slots.
            let covers = |r: Rect| r.intersects(leaving.rect);
            if covers(cb.rect) || out.nodes.values().any(|n| covers(n.rect)) {
                continue;
            }
            dots.push(leaving);
        }
    }
    // A link may pass under a channel's title (on its own ground, so the
    // words stay whole) where a band had no room to step aside: a dot on
    // its way passes under it too, never over the words.
    let titles: Vec<Rect> = out.channels.values().map(|c| c.title.rect).collect();
    dots.retain(|d| {
        d.parked_in.is_some() || !titles.iter().any(|t| t.expand(2.0).intersects(d.rect))
    });
    out.dots = dots;
}

// ---- the dump ----------------------------------------------------------------

impl StageLayout {
    /// Every box and label, in window pixels.
    pub fn items(&self, px_per_pt: f32) -> Vec<Item> {
        let px = |r: Rect| {
            [
                r.min.x * px_per_pt,
                r.min.y * px_per_pt,
                r.max.x * px_per_pt,
                r.max.y * px_per_pt,
            ]
        };
        // Words cut short to fit (a state that had no room): a test fails
        // on them.
        let cut_ids: std::collections::BTreeSet<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.state.text.ends_with('…'))
            .map(|(name, _)| format!("node:{name}/state"))
            .collect();
        let mut items = Vec::new();
        let mut add = |id: String,
                       kind: &'static str,
                       rect: Rect,
                       font: Option<f32>,
                       key: bool,
                       parent: Option<&str>| {
            items.push(Item {
                cut: cut_ids.contains(&id),
                id,
                kind,
                rect: px(rect),
                font_px: font.map(|f| (f * px_per_pt * 10.0).round() / 10.0),
                key,
                parent: parent.map(str::to_string),
            });
        };
        for (parent, child, a, b) in &self.edges {
            add(
                format!("edge:{parent}>{child}"),
                "edge",
                Rect::from_two_pos(*a, *b),
                None,
                false,
                None,
            );
        }
        for (chan, id, a, b) in &self.links {
            add(
                format!("link:{chan}:{id}"),
                "edge",
                Rect::from_two_pos(*a, *b),
                None,
                false,
                None,
            );
        }
        for (name, p) in &self.pools {
            let id = format!("pool:{name}");
            add(id.clone(), "pool", p.frame, None, false, None);
            add(
                format!("{id}/label"),
                "label",
                p.label.rect,
                Some(p.label.font),
                false,
                Some(&id),
            );
        }
        for (name, n) in &self.nodes {
            let id = format!("node:{name}");
            let runner = name == RUNNER_ID;
            add(id.clone(), "node", n.rect, None, false, None);
            add(
                format!("{id}/name"),
                "label",
                n.name.rect,
                Some(n.name.font),
                !runner,
                Some(&id),
            );
            if runner {
                continue;
            }
            if let Some(l) = &n.pid {
                add(
                    format!("{id}/pid"),
                    "label",
                    l.rect,
                    Some(l.font),
                    false,
                    Some(&id),
                );
            }
            if let Some(l) = &n.tags {
                add(
                    format!("{id}/tags"),
                    "label",
                    l.rect,
                    Some(l.font),
                    false,
                    Some(&id),
                );
            }
            add(
                format!("{id}/badge"),
                "badge",
                n.badge,
                None,
                false,
                Some(&id),
            );
            add(
                format!("{id}/state"),
                "label",
                n.state.rect,
                Some(n.state.font),
                true,
                Some(&id),
            );
            for (i, (l, _)) in n.extra.iter().enumerate() {
                add(
                    format!("{id}/line{i}"),
                    "label",
                    l.rect,
                    Some(l.font),
                    false,
                    Some(&id),
                );
            }
            if let Some((tag, words)) = &n.news {
                add(format!("{id}/news"), "badge", *tag, None, false, Some(&id));
                add(
                    format!("{id}/news/text"),
                    "label",
                    words.rect,
                    Some(words.font),
                    true,
                    Some(&id),
                );
            }
            if let Some(r) = n.next {
                add(format!("next:{name}"), "next", r, None, false, None);
            }
        }
        for (name, c) in &self.channels {
            let id = format!("channel:{name}");
            add(id.clone(), "channel", c.rect, None, false, None);
            add(
                format!("{id}/title"),
                "label",
                c.title.rect,
                Some(c.title.font),
                true,
                None,
            );
        }
        for (name, c) in &self.values {
            let id = format!("value:{name}");
            add(id.clone(), "value", c.rect, None, false, None);
            add(
                format!("{id}/title"),
                "label",
                c.title.rect,
                Some(c.title.font),
                true,
                Some(&id),
            );
            add(
                format!("{id}/value"),
                "label",
                c.main.rect,
                Some(c.main.font),
                true,
                Some(&id),
            );
        }
        for (name, c) in &self.locks {
            let id = format!("lock:{name}");
            add(id.clone(), "lock", c.rect, None, false, None);
            add(
                format!("{id}/title"),
                "label",
                c.title.rect,
                Some(c.title.font),
                true,
                Some(&id),
            );
            add(
                format!("{id}/holder"),
                "label",
                c.main.rect,
                Some(c.main.font),
                true,
                Some(&id),
            );
        }
        for (i, d) in self.dots.iter().enumerate() {
            let parent = d.parked_in.as_ref().map(|c| format!("channel:{c}"));
            add(
                format!("dot:{i}"),
                "dot",
                d.rect,
                None,
                false,
                parent.as_deref(),
            );
            // The message's text: a key label inside its dot.
            if !d.text.text.is_empty() {
                add(
                    format!("dot:{i}/text"),
                    "label",
                    d.text.rect,
                    Some(d.text.font),
                    true,
                    Some(&format!("dot:{i}")),
                );
            }
        }
        if let Some((r, l)) = &self.caption {
            add("caption".into(), "caption", *r, None, false, None);
            add(
                "caption/text".into(),
                "label",
                l.rect,
                Some(l.font),
                true,
                Some("caption"),
            );
        }
        if let Some((r, title, cycle)) = &self.banner {
            add("banner".into(), "banner", *r, None, false, None);
            add(
                "banner/title".into(),
                "label",
                title.rect,
                Some(title.font),
                true,
                Some("banner"),
            );
            add(
                "banner/cycle".into(),
                "label",
                cycle.rect,
                Some(cycle.font),
                true,
                Some("banner"),
            );
        }
        for p in self.painted.borrow().iter() {
            add(
                p.id.clone(),
                p.kind,
                p.rect,
                p.font,
                p.key,
                p.parent.as_deref(),
            );
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use egui::FontId;

    /// Every symbol the stage draws is in the fonts egui ships (a missing
    /// one shows as a box, as "⇄" did).
    #[test]
    fn the_stage_symbols_are_in_the_fonts() {
        let ctx = egui::Context::default();
        let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
        out.textures_delta.clear();
        let symbols = "▶⏸⏳⏹☠✔✖↔⚠⚡🔒⛔…·×";
        let missing: String = symbols
            .chars()
            .filter(|c| !ctx.fonts_mut(|f| f.has_glyph(&FontId::proportional(14.0), *c)))
            .collect();
        let old_missing = ctx.fonts_mut(|f| f.has_glyph(&FontId::proportional(14.0), '⇄'));
        assert_eq!(missing, "", "not in the fonts: {missing}");
        assert!(!old_missing, "⇄ was missing when this test was written");
    }
}

#[cfg(test)]
mod width_tests {
    use super::text_w;
    use egui::{Color32, FontId};

    /// `text_w` never says a text is narrower than it is drawn (a label
    /// would run into its neighbour), and is not far too generous either
    /// (the type would be smaller than it could be).
    #[test]
    fn text_width_estimate_is_close_and_never_short() {
        let ctx = egui::Context::default();
        let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
        out.textures_delta.clear();
        let samples = [
            "⏸ blocked: wait for any child",
            "⏳ waiting for lock counter_lock",
            "zZ sleeping (0.3 s)",
            "✔ exit 0",
            "☠ zombie: exited, not reaped",
            "main.1.1.1",
            "Queue po.tasks: 10/10 FULL",
            "worker of pool po · daemon",
            "MAIN JOINS THEM ALL",
            "pid 4194304",
        ];
        for s in samples {
            let real = ctx.fonts_mut(|f| {
                f.layout_no_wrap(s.to_string(), FontId::proportional(20.0), Color32::WHITE)
                    .size()
                    .x
            });
            let est = text_w(s, 20.0);
            let ratio = est / real;
            println!("{ratio:.2} {s}");
            assert!(ratio >= 1.0, "{s}: estimated {est}, drawn {real}");
            assert!(ratio < 1.35, "{s}: estimated {est}, drawn {real}");
        }
    }
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
                    name: None,
                    fds: vec![],
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
        // The lock its threads share is drawn in the process.
        assert!(
            lines.contains(&"🔒 l: held by main.t1, main.t2 waiting".to_string()),
            "{lines:?}"
        );
        assert!(extra_lines_max(&world) >= 3);
    }
}

#[cfg(test)]
mod fit_line_tests {
    use super::{caption_fit, fit_line, text_w, value_text};

    /// A traced program's command line is cut to the node's width from its
    /// start (the script's name stays); other lines from their end.
    #[test]
    fn a_long_line_is_cut_to_the_room_it_has() {
        let cmd = "$ /root/.pyenv/shims/python3 /tmp/hta/marks.py".to_string();
        let cut = fit_line(cmd.clone(), 10.0, 150.0);
        assert!(text_w(&cut, 10.0) <= 150.0, "{cut}");
        assert!(cut.starts_with("$ …") && cut.ends_with("marks.py"), "{cut}");
        assert_eq!(
            fit_line(cmd.clone(), 10.0, 1000.0),
            cmd,
            "room enough: as is"
        );
        let other = fit_line("runs task 3: some_long_function_name".into(), 10.0, 80.0);
        assert!(other.starts_with("runs") && other.ends_with('…'), "{other}");
    }

    /// A value card's value is whole when one line or two hold it (at no
    /// less than the floor), its lines within the room, and cut with "…"
    /// only when two lines at the floor are not enough.
    #[test]
    fn a_value_is_whole_on_one_or_two_lines_and_cut_only_past_two() {
        let (big, floor) = (1.0, 15.0);
        let room = 300.0;
        let fits = |text: &str, font: f32| text.lines().all(|l| text_w(l, font) <= room);
        // Short: one line, the big size.
        let (t, f) = value_text("'HELLO WORLD'", room, big, floor);
        assert_eq!((t.as_str(), f), ("'HELLO WORLD'", 34.0));
        // A size that the room scales it to exactly still fits (no cut
        // from rounding).
        let (t, f) = value_text("'HELLO WORLD, HELLO'", room, big, floor);
        assert_eq!(t, "'HELLO WORLD, HELLO'".to_string());
        assert!(fits(&t, f) && f >= floor, "{f}");
        // Long: two lines, split at a space, at no less than the floor.
        let a = "[[3.515625, 39.0625], [33.0625, 4.0], [5.640625, 90.25]]";
        let (t, f) = value_text(a, room, big, floor);
        assert_eq!(t.replace('\n', " "), a);
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(
            fits(&t, f) && f >= floor && 2.0 * f * 1.25 <= 44.0 * big,
            "{f}"
        );
        // Too long for two lines: cut at the floor, within the room.
        let long = (0..40)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (t, f) = value_text(&long, room, big, floor);
        assert_eq!(f, floor);
        assert!(t.ends_with('…') && t.lines().count() == 2, "{t}");
        assert!(fits(&t, f), "{t}");
    }

    /// The caption stands on two lines (split between two parts) rather
    /// than one cut line, at no less than the floor; `None` when even two
    /// lines at the floor are too few.
    #[test]
    fn a_caption_wraps_onto_its_second_line_between_parts() {
        let text =
            "Ended: both processes exited with code 0 · A = [[3.5, 39.0], [33.0, 4.0]] · n = 49";
        let (room, max_h) = (300.0, 2.0 * 10.0 * 1.3);
        let (t, f) = caption_fit(text, room, max_h, 14.0, 10.0).expect("two lines hold it");
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.lines().all(|l| text_w(l, f) <= room), "{t} at {f}");
        assert_eq!(t.replace('\n', " · "), text, "split between parts: {t}");
        assert!(f >= 9.99 && 2.0 * f * 1.3 <= max_h + 1e-3, "{f}");
        let long = text.repeat(4);
        assert_eq!(caption_fit(&long, room, max_h, 14.0, 10.0), None);
    }
}

#[cfg(test)]
mod placement_tests {
    use super::{dodge, free_cells, free_spans, pack_left, x_span_in};
    use crate::protocol::RUNNER_ID;
    use egui::pos2;
    use std::collections::BTreeMap;

    /// A channel whose wish puts it on a line steps to the nearer side of
    /// it when there is room, and the next one keeps its distance.
    #[test]
    fn a_band_steps_aside_from_a_line_where_it_has_room() {
        let line = x_span_in(pos2(100.0, 0.0), pos2(100.0, 50.0), 10.0, 20.0);
        assert_eq!(line, Some((100.0, 100.0)));
        let bar = x_span_in(pos2(50.0, 15.0), pos2(20.0, 15.0), 10.0, 20.0);
        assert_eq!(bar, Some((20.0, 50.0)));
        assert_eq!(
            x_span_in(pos2(0.0, 30.0), pos2(9.0, 40.0), 10.0, 20.0),
            None
        );
        let free = free_spans(0.0, 300.0, vec![(95.0, 105.0)]);
        assert_eq!(free, vec![(0.0, 95.0), (105.0, 300.0)]);
        // 60 wide, wanted on the line at 60..120: left of it is nearer.
        let lefts = dodge(&[(60.0, 60.0), (150.0, 60.0)], &free, (0.0, 300.0), 10.0);
        assert_eq!(lefts, Some(vec![35.0, 150.0]));
        // At 80..140: right of it is nearer, but then the next one moves
        // too; left of it, less is moved in all.
        let lefts = dodge(&[(80.0, 60.0), (150.0, 60.0)], &free, (0.0, 300.0), 10.0);
        assert_eq!(lefts, Some(vec![35.0, 150.0]));
        // Alone, it takes the nearer side.
        assert_eq!(
            dodge(&[(80.0, 60.0)], &free, (0.0, 300.0), 10.0),
            Some(vec![105.0])
        );
        // No room beside the line: no answer (the band is packed instead).
        assert_eq!(dodge(&[(80.0, 200.0)], &free, (0.0, 300.0), 10.0), None);
        assert_eq!(
            pack_left(&[(80.0, 200.0), (150.0, 100.0)], 0.0, 300.0, 10.0),
            vec![0.0, 210.0]
        );
    }

    /// A free cell goes to the nearest channel whose users are all in its
    /// row or the next and at most a column away; a channel with a user
    /// further off stays in its band.
    #[test]
    fn free_cells_go_to_channels_next_to_all_their_users() {
        // main over three children; the row of main has free columns 0 and 2.
        let at: BTreeMap<&str, (usize, usize, f32)> = [
            (RUNNER_ID, (0, 0, 1.5)),
            ("main", (0, 0, 1.5)),
            ("a", (1, 0, 0.5)),
            ("b", (1, 0, 1.5)),
            ("c", (1, 0, 2.5)),
        ]
        .into_iter()
        .collect();
        let bands = vec![vec![("all", 1.5), ("right", 2.0)], vec![("only_a", 0.5)]];
        let users: BTreeMap<&str, Vec<(usize, f32)>> = [
            ("all", vec![(0, 1.5), (1, 0.5), (1, 1.5), (1, 2.5)]),
            ("right", vec![(0, 1.5), (1, 1.5), (1, 2.5)]),
            ("only_a", vec![(1, 0.5)]),
        ]
        .into_iter()
        .collect();
        let cells = free_cells(&at, 2, 3.0, &bands, &users, |_| true);
        assert_eq!(cells, vec![("only_a", 0, 0.5), ("right", 0, 2.5)]);
        // Nothing fits: nothing moves.
        assert!(free_cells(&at, 2, 3.0, &bands, &users, |_| false).is_empty());
    }
}
