//! Captions and labels that are true: every built-in scenario is run for
//! real (the binary, `--format jsonl`), and at every event of the run the
//! stage's caption and channel titles are checked against the model at
//! that moment, as an audience would read them:
//!
//! - a channel's title says "empty" only when nothing waits in it and no
//!   message dot is parked in it; "N waiting" only when N wait and someone
//!   who reads it is still alive;
//! - a living ORPHAN / ADOPTED process is never on the stage without a
//!   caption that says so;
//! - a caption making a claim ("the child is stopped", "the queue is
//!   full") is only up while the claim holds;
//! - the last caption says how the run ended, computed from what happened
//!   (exit codes, final shared values, lost updates, unread messages).

mod common;

use egui::{Rect, pos2};
use forkscope::app::captions;
use forkscope::app::layout::{self, StageInput};
use forkscope::app::recording::Recording;
use forkscope::model::{ProcState, World};
use forkscope::protocol::RUNNER_ID;
use forkscope::scenario::catalog::BUILTINS;

/// A caption's words and what must be true while they are up.
type Claim = (&'static str, fn(&World) -> bool);

const CLAIMS: &[Claim] = &[
    ("the child is stopped", |w| {
        w.processes.values().any(|p| p.state == ProcState::Stopped)
    }),
    ("the queue is full", |w| {
        w.channels.values().any(|c| c.is_full())
            || w.processes
                .values()
                .any(|p| matches!(&p.state, ProcState::Blocked(on) if on.starts_with("put")))
    }),
    ("the child runs again", |w| {
        w.processes.values().all(|p| p.state != ProcState::Stopped)
    }),
    ("poll() is False", |w| {
        w.channels
            .values()
            .all(|c| c.depth() == 0 || c.in_flight.iter().all(|m| m.from == "main"))
    }),
    ("Ended:", captions::has_ended),
];

fn stage() -> Rect {
    Rect::from_min_max(pos2(8.0, 34.0), pos2(792.0, 364.0))
}

/// What is untrue on the stage at this moment (`with_layout`: lay the
/// stage out and read its channel titles too).
fn untrue(rec: &Recording, world: &World, with_layout: bool) -> Vec<String> {
    let mut found = Vec::new();
    let caption = captions::caption(world);
    if with_layout {
        found.extend(untrue_titles(rec, world));
    }
    // After a deadlock the stage shows the tree as it was then (the
    // processes are then killed, and orphaned as they go).
    for p in world
        .processes
        .values()
        .filter(|_| world.deadlock.is_none())
    {
        if p.id != RUNNER_ID
            && p.is_alive()
            && (p.orphaned || p.adopted)
            && !caption
                .as_deref()
                .is_some_and(|c| c.to_lowercase().contains("orphan"))
        {
            found.push(format!(
                "{} is tagged ORPHAN/ADOPTED, the caption says {caption:?}",
                p.id
            ));
        }
    }
    if let Some(text) = &caption {
        for (words, holds) in CLAIMS {
            if text.contains(words) && !holds(world) {
                found.push(format!("the caption {text:?} is not true"));
            }
        }
    }
    found
}

/// What a channel title says that is not so (the stage laid out at this
/// moment, presenter mode at 1280x720).
fn untrue_titles(rec: &Recording, world: &World) -> Vec<String> {
    let input = StageInput {
        layout_world: &rec.live,
        world,
        channel_users: &rec.channel_users,
        presenter: true,
        gated: false,
        deadlock: false,
        view_t_ns: world.last_t_ns,
        widest_state: &rec.widest_state,
        px_per_pt: 1.6,
        window_h_px: 720.0,
        zoom: 1.0,
    };
    let out = layout::layout(&input, stage());
    // The stage shows one of the ways to say the caption (the fullest
    // that fits its two lines), broken where it wraps.
    let shown = out.caption.as_ref().map(|(_, l)| l.text.clone());
    let choices = captions::caption_choices(world);
    assert_eq!(shown.is_some(), !choices.is_empty(), "a caption is shown");
    if let Some(shown) = shown {
        let as_one = |sep: &str| shown.replace('\n', sep);
        assert!(
            choices
                .iter()
                .any(|c| *c == as_one(" ") || *c == as_one(" · ")),
            "the stage shows the computed caption: {shown:?}, not one of {choices:?}"
        );
        let mut found = Vec::new();
        for (words, holds) in CLAIMS {
            if as_one(" ").contains(words) && !holds(world) {
                found.push(format!("the shown caption {shown:?} is not true"));
            }
        }
        assert!(found.is_empty(), "{found:?}");
    }
    let mut found = Vec::new();
    for (name, cb) in &out.channels {
        let Some(c) = world.channels.get(name) else {
            continue;
        };
        let title = &cb.title.text;
        let parked = out
            .dots
            .iter()
            .filter(|d| d.parked_in.as_deref() == Some(name.as_str()))
            .count();
        // The slots drawn filled are the depth the title gives.
        if parked != c.depth().min(cb.slots) {
            found.push(format!(
                "{title:?} with {} waiting but {parked} drawn in its slots",
                c.depth()
            ));
        }
        // No dot sits on the box's border: it is in a slot, or outside.
        for d in out.dots.iter().filter(|d| d.channel == *name) {
            let inside = cb.rect.contains_rect(d.rect);
            let clear = !cb.rect.intersects(d.rect.shrink(0.5));
            if !inside && !clear {
                found.push(format!(
                    "a dot ({}) sits on {title:?}'s border",
                    d.text.text
                ));
            }
            if inside && d.parked_in.as_deref() != Some(name.as_str()) {
                found.push(format!(
                    "a message taken ({}) is drawn in {title:?}",
                    d.text.text
                ));
            }
        }
        if title.ends_with("empty") && (c.depth() > 0 || parked > 0) {
            found.push(format!(
                "{title:?} with {} waiting and {parked} dots in it",
                c.depth()
            ));
        }
        if title.contains("waiting") && captions::has_ended(world) {
            found.push(format!("{title:?} after every process ended"));
        }
        if let Some(n) = title
            .rsplit(": ")
            .next()
            .and_then(|t| t.strip_suffix(" waiting"))
            .and_then(|n| n.parse::<usize>().ok())
            && n != c.depth()
        {
            found.push(format!("{title:?} while {} wait", c.depth()));
        }
    }
    found
}

#[test]
fn every_builtin_tells_a_true_story_to_its_end() {
    let mut failures = Vec::new();
    let mut endings = Vec::new();
    for b in BUILTINS {
        let run = common::run_jsonl(b.name, &["--time-scale", "0.3"]);
        assert!(!run.events.is_empty(), "{}: no events", b.name);
        let mut rec = Recording::new();
        for e in &run.events {
            rec.push(e.clone());
        }
        // At every event (the deadlock world as the app keeps it).
        let mut world = World::new();
        let mut problems = Vec::new();
        let n = rec.len();
        let stride = (n / 300).max(1);
        for (i, e) in rec.log.kept().iter().enumerate() {
            world.apply(e);
            let with_layout = i % stride == 0 || i + 1 == n;
            for p in untrue(&rec, &world, with_layout) {
                problems.push(format!("at event {}/{}: {p}", i + 1, rec.len()));
            }
        }
        // The end: the caption says how it ended, from the model.
        let end = captions::caption(&world).unwrap_or_default();
        endings.push(format!("{:<26} {end}", b.name));
        if !(end.starts_with("Ended: ") || end.starts_with("Deadlock: ")) {
            problems.push(format!("the last caption is not an ending: {end:?}"));
        }
        for p in world.processes.values().filter(|p| p.id != RUNNER_ID) {
            let bad = match &p.exit {
                Some(forkscope::model::ExitStatus::Code(0)) => None,
                Some(forkscope::model::ExitStatus::Code(c)) => Some(format!("exit {c}")),
                Some(forkscope::model::ExitStatus::Signal(s)) => Some(format!("killed by {s}")),
                _ => None,
            };
            if let Some(words) = bad
                && world.deadlock.is_none()
                && !end.contains(&words)
                && !end.contains("more did not exit")
            {
                problems.push(format!(
                    "{} ended with {words}: the ending says {end:?}",
                    p.id
                ));
            }
        }
        for (name, v) in &world.values {
            let lost = v.updates_lost();
            if lost > 0 && !end.contains("lost update") && !end.ends_with('…') {
                problems.push(format!(
                    "{name} lost {lost} updates: the ending says {end:?}"
                ));
            }
            // The lesson's own arithmetic: 2 workers × 100 adds of 1, so
            // the updates lost are 200 − final, whatever the race events.
            if b.name == "unlocked-counter" {
                let truth = 200 - v.current.as_i64().unwrap_or(0);
                if lost != truth {
                    problems.push(format!("{name}: {lost} lost updates counted, {truth} lost"));
                }
                if truth > 0 && !end.contains(&format!("({truth} lost update")) {
                    problems.push(format!("{truth} updates lost: the ending says {end:?}"));
                }
            }
        }
        problems.dedup();
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} problems, the first:\n    {}",
                b.name,
                problems.len(),
                problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
    }
    println!("{}", endings.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `pause = true` on a caption reaches the events (a replay's auto-pause
/// stops there); on any other step it is an error with its position, and
/// so is a parameter's `step` value out of its range.
#[test]
fn a_marked_caption_reaches_the_events_and_misplaced_marks_are_errors() {
    let ok = common::scenario_file(
        "marked",
        r#"
name = "marked"
title = "a marked caption"
explain = "a caption a replay stops at"
source = "print('done')"

[params.n]
default = 5
min = 1
max = 9
step = 2

[roles.main]
steps = [
  { narrate = "look: n = {n}", pause = true },
  { print = "done" },
]
"#,
    );
    let path = ok.to_string_lossy().into_owned();
    let run = common::run_jsonl(&path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let marked: Vec<_> = run
        .events
        .iter()
        .filter(|e| {
            matches!(&e.body, forkscope::protocol::Body::Narrate { text, pause: true }
                if text == "look: n = 5")
        })
        .collect();
    assert_eq!(marked.len(), 1, "{:?}", run.events);
    let mut log = forkscope::model::EventLog::new();
    for e in run.events {
        log.push(e);
    }
    let (_, what) = forkscope::app::marks::first_mark(&log, 0, log.len()).unwrap_or_default();
    assert_eq!(what, "look: n = 5");

    for (text, error) in [
        (
            "[roles.main]\nsteps = [\n  { print = \"hi\", pause = true },\n]\n",
            "misplaced.toml:8:27: `pause` marks a caption",
        ),
        (
            "[params.n]\ndefault = 5\nmin = 1\nmax = 9\nstep = 20\n\n[roles.main]\nsteps = [{ print = \"hi\" }]\n",
            "step value out of range",
        ),
    ] {
        let bad = common::scenario_file(
            "misplaced",
            &format!(
                "name = \"misplaced\"\ntitle = \"a mark in the wrong place\"\n\
                 explain = \"x\"\nsource = \"print('hi')\"\n\n{text}"
            ),
        );
        let path = bad.to_string_lossy().into_owned();
        let run = common::forkscope(&["check", &path]);
        assert_ne!(run.code, 0);
        assert!(run.stderr.contains(error), "{}", run.stderr);
    }
}
