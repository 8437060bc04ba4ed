//! The stage's caption, true at every moment, computed from the model:
//!
//! - while the run goes on, the scenario's latest `narrate`;
//! - a process that became an orphan after that narration gets a word
//!   (the ORPHAN / ADOPTED tag on its node is not left unexplained), and
//!   so does a signal sent after it (SIGCONT wakes a stopped child: a
//!   "stopped" caption does not stay up);
//! - a deadlock names its cycle;
//! - once every process has ended, how the run ended: exit codes, final
//!   shared values and lost updates, messages nobody read, lost output,
//!   errors. A narration from the middle of the run never stays up to say
//!   something that has stopped being true.

use crate::model::{ChannelKind, ExitStatus, World};
use crate::protocol::RUNNER_ID;

/// Most items an ending lists before "…" (the caption has two lines).
const ENDING_PARTS: usize = 4;

/// The caption at this moment, if there is one.
pub fn caption(world: &World) -> Option<String> {
    if let Some(cycle) = &world.deadlock {
        return Some(if has_ended(world) {
            format!("Deadlock: {cycle}. Nobody could go on: forkscope ended the run (SIGKILL).")
        } else {
            format!("Deadlock: {cycle}. Nobody can go on, so forkscope ends the run.")
        });
    }
    if has_ended(world) {
        return Some(ending(world));
    }
    // The latest of: the narration, an orphan, a signal. A narration that
    // says nothing of orphans does not hide one (a child's own narration
    // may come in after its parent has gone).
    let orphan = orphan_note(world);
    let mut best: Option<(u64, String)> = world.caption.as_ref().map(|c| {
        let silent = orphan.is_some() && !c.to_lowercase().contains("orphan");
        (if silent { 0 } else { world.caption_t_ns }, c.clone())
    });
    for (t, note) in [orphan, signal_note(world)].into_iter().flatten() {
        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            best = Some((t, note));
        }
    }
    best.map(|(_, text)| text)
}

/// The latest signal one process sent another, in words.
fn signal_note(world: &World) -> Option<(u64, String)> {
    let s = world.last_signal.as_ref()?;
    let what = match s.signal.as_str() {
        "SIGSTOP" | "SIGTSTP" => "the kernel stops it: frozen, it does nothing".to_string(),
        "SIGCONT" => "a stopped process runs again".to_string(),
        "SIGTERM" => "it ends unless it handles the signal".to_string(),
        "SIGKILL" => "the kernel ends it at once".to_string(),
        "SIGINT" => "as Ctrl-C would".to_string(),
        other => format!("the kernel delivers {other}"),
    };
    Some((
        s.t_ns,
        format!("{} sent {} to {}: {what}", s.from, s.signal, s.to),
    ))
}

/// Every process of the run has ended (and there was one besides the
/// runner).
pub fn has_ended(world: &World) -> bool {
    world.processes.keys().any(|id| id != RUNNER_ID)
        && world.processes.values().all(|p| !p.is_alive())
}

/// A process whose parent ended after the latest narration, still alive:
/// what its ORPHAN / ADOPTED tag means.
fn orphan_note(world: &World) -> Option<(u64, String)> {
    let p = world
        .processes
        .values()
        .filter(|p| p.id != RUNNER_ID && p.is_alive())
        .filter(|p| p.orphaned_t_ns.is_some())
        .min_by_key(|p| p.spawn_order)?;
    let t = p.orphaned_t_ns?;
    let parent = p
        .original_parent
        .as_deref()
        .or(p.parent.as_deref())
        .unwrap_or("its parent");
    Some((
        t,
        if p.adopted {
            let by = p.parent.as_deref().unwrap_or(RUNNER_ID);
            format!(
                "{parent} ended before its child {}: {} is an ORPHAN, ADOPTED by {by}, \
             which will reap it",
                p.id, p.id
            )
        } else {
            format!(
                "{parent} ended before its child {}: {} is an ORPHAN; \
             a new parent will adopt it",
                p.id, p.id
            )
        },
    ))
}

/// How the run ended, from the model: "Ended: all 3 processes exited with
/// code 0 · counter = 173 (27 lost updates)".
pub fn ending(world: &World) -> String {
    ending_with(world, ENDING_PARTS, VALUE_CHARS)
}

/// A value in the ending at most this many characters long, in its
/// shortest form.
const VALUE_CHARS: usize = 24;
/// ... and at most this long when the caption has room for it whole.
const VALUE_CHARS_WHOLE: usize = 80;

/// The ways to say the caption, the fullest first: once the run has
/// ended, every part with values whole, then values cut, then fewer parts
/// ("· …"); the last is [`caption`]. The stage shows the first that fits
/// its two lines.
pub fn caption_choices(world: &World) -> Vec<String> {
    let Some(last) = caption(world) else {
        return Vec::new();
    };
    if world.deadlock.is_some() || !has_ended(world) {
        return vec![last];
    }
    let all = ending_parts(world, VALUE_CHARS).len();
    let mut out = Vec::new();
    for n in (ENDING_PARTS..=all.max(ENDING_PARTS)).rev() {
        for chars in [VALUE_CHARS_WHOLE, VALUE_CHARS] {
            let text = ending_with(world, n, chars);
            if !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out.retain(|t| *t != last);
    out.push(last);
    out
}

/// The ending with at most `max_parts` parts and values of at most
/// `value_chars` characters.
fn ending_with(world: &World, max_parts: usize, value_chars: usize) -> String {
    let mut parts = ending_parts(world, value_chars);
    let cut = parts.len() > max_parts;
    parts.truncate(max_parts);
    let mut text = format!("Ended: {}", parts.join(" · "));
    if cut {
        text.push_str(" · …");
    }
    text
}

fn ending_parts(world: &World, value_chars: usize) -> Vec<String> {
    let mut parts = vec![exits(world)];
    if let Some(p) = world
        .processes
        .values()
        .find(|p| p.orphaned && p.id != RUNNER_ID && world.deadlock.is_none())
    {
        let parent = p.original_parent.as_deref().unwrap_or("its parent");
        let by = p
            .reaped_by
            .as_deref()
            .or(p.parent.as_deref())
            .unwrap_or(RUNNER_ID);
        parts.push(if p.adopted {
            format!(
                "{} outlived {parent}: an orphan, adopted and reaped by {by}",
                p.id
            )
        } else {
            format!("{} outlived {parent}: an orphan", p.id)
        });
    }
    for (name, v) in &world.values {
        let lost = v.updates_lost();
        let value = super::layout::short(&v.current, value_chars);
        parts.push(if lost > 0 {
            let s = if lost == 1 { "" } else { "s" };
            format!("{name} = {value} ({lost} lost update{s})")
        } else {
            format!("{name} = {value}")
        });
    }
    let kind = |c: &crate::model::Channel| match c.kind {
        ChannelKind::Queue => "queue",
        ChannelKind::Pipe => "pipe",
    };
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    for c in world.channels.values().filter(|c| c.depth() > 0) {
        let n = c.depth() as u64;
        parts.push(format!(
            "{n} message{} never read from {} {}",
            plural(n),
            kind(c),
            c.name
        ));
    }
    for p in world
        .processes
        .values()
        .filter(|p| !p.stdout_buffer.is_empty())
    {
        parts.push(format!("{}'s unflushed print was lost", p.id));
    }
    if let Some(e) = world.errors.first() {
        let more = world.errors.len() as u64 - 1 + world.errors_trimmed;
        let more = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        parts.push(format!("error in {}: {}{more}", e.proc_id, e.message));
    }
    // The scenario's own channels (not a pool's, a manager's or a
    // program's stdin): how much went through.
    let internal = |c: &crate::model::Channel| {
        c.name.ends_with(".stdin")
            || c.ends.iter().any(|e| e.ends_with(".proxy"))
            || world
                .pools
                .keys()
                .any(|p| c.name == format!("{p}.tasks") || c.name == format!("{p}.results"))
    };
    for c in world
        .channels
        .values()
        .filter(|c| c.sent_total > 0 && c.depth() == 0 && !internal(c))
    {
        let sent = c.sent_total;
        parts.push(format!(
            "{} {}: all {sent} message{} read",
            kind(c),
            c.name,
            plural(sent)
        ));
    }
    for p in world.pools.values().filter(|p| p.tasks_started > 0) {
        parts.push(format!("pool {}: {}", p.name, p.progress()));
    }
    parts
}

/// "all 3 processes exited with code 0", "main exit 0, main.1 killed by
/// SIGTERM", "4 exit 0, po.w1 exit 1".
fn exits(world: &World) -> String {
    let procs: Vec<_> = world
        .processes
        .values()
        .filter(|p| p.id != RUNNER_ID)
        .collect();
    let ok = procs
        .iter()
        .filter(|p| p.exit.as_ref().is_some_and(ExitStatus::is_success))
        .count();
    if ok == procs.len() {
        return match ok {
            1 => format!("{} exited with code 0", procs[0].id),
            2 => "both processes exited with code 0".to_string(),
            n => format!("all {n} processes exited with code 0"),
        };
    }
    let mut words: Vec<String> = procs
        .iter()
        .filter(|p| !p.exit.as_ref().is_some_and(ExitStatus::is_success))
        .take(3)
        .map(|p| format!("{} {}", p.id, super::theme::exit_words(p.exit.as_ref())))
        .collect();
    let bad = procs.len() - ok;
    if bad > 3 {
        words.push(format!("{} more did not exit with 0", bad - 3));
    }
    match ok {
        0 => {}
        1 if procs.len() > 1 => {
            if let Some(p) = procs
                .iter()
                .find(|p| p.exit.as_ref().is_some_and(ExitStatus::is_success))
            {
                words.push(format!("{} exit 0", p.id));
            }
        }
        n => words.push(format!("the other {n} exit 0")),
    }
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, Event, Value};

    use crate::protocol::test_event as ev;

    fn hello(t: u64, id: &str, parent: Option<&str>) -> Event {
        ev(
            t,
            id,
            Body::Hello {
                ppid: 1,
                role: "main".into(),
                parent: parent.map(str::to_string),
                daemon: false,
                ns_pid: None,
                name: None,
                fds: vec![],
            },
        )
    }

    fn exit(t: u64, id: &str, code: Option<i32>, signal: Option<&str>) -> Event {
        ev(
            t,
            id,
            Body::Exit {
                code,
                signal: signal.map(str::to_string),
            },
        )
    }

    #[test]
    fn a_narration_gives_way_to_how_the_run_ended() {
        let mut w = World::new();
        for e in [
            hello(1, "main", None),
            hello(2, "main.1", Some("main")),
            ev(
                3,
                "main",
                Body::Narrate {
                    text: "the child is stopped".into(),
                    pause: false,
                },
            ),
        ] {
            w.apply(&e);
        }
        assert_eq!(caption(&w).as_deref(), Some("the child is stopped"));
        w.apply(&exit(4, "main.1", None, Some("SIGTERM")));
        w.apply(&exit(5, "main", Some(0), None));
        assert_eq!(
            caption(&w).as_deref(),
            Some("Ended: main.1 killed by SIGTERM, main exit 0")
        );
    }

    #[test]
    fn an_orphan_is_explained_when_it_appears() {
        let mut w = World::new();
        for e in [
            hello(1, "main", None),
            hello(2, "main.1", Some("main")),
            ev(
                3,
                "main",
                Body::Narrate {
                    text: "two processes".into(),
                    pause: false,
                },
            ),
            exit(4, "main", Some(0), None),
        ] {
            w.apply(&e);
        }
        let c = caption(&w).unwrap_or_default();
        assert!(c.contains("main.1 is an ORPHAN"), "{c}");
        w.apply(&ev(
            5,
            "main.1",
            Body::Adopted {
                by: "runner".into(),
                new_ppid: 9,
            },
        ));
        let c = caption(&w).unwrap_or_default();
        assert!(c.contains("ADOPTED by runner"), "{c}");
        w.apply(&exit(6, "main.1", Some(0), None));
        assert_eq!(
            caption(&w).as_deref(),
            Some(
                "Ended: both processes exited with code 0 · main.1 outlived main: \
                 an orphan, adopted and reaped by runner"
            )
        );
    }

    /// fork-print when the child ends first: no ORPHAN anywhere, and the
    /// ending says nothing of one.
    #[test]
    fn a_child_that_ended_first_is_no_orphan_in_the_caption() {
        let mut w = World::new();
        for e in [
            hello(1, "main", None),
            hello(2, "main.1", Some("main")),
            exit(3, "main.1", Some(0), None),
            exit(4, "main", Some(0), None),
        ] {
            w.apply(&e);
        }
        assert!(!w.processes["main.1"].orphaned);
        assert_eq!(
            caption(&w).as_deref(),
            Some("Ended: both processes exited with code 0")
        );
    }

    #[test]
    fn the_ending_names_values_lost_updates_and_unread_messages() {
        let mut w = World::new();
        for e in [
            hello(1, "main", None),
            ev(
                2,
                "main",
                Body::Resource {
                    res: crate::protocol::ResourceKind::Value,
                    name: "counter".into(),
                    value: Some(Value::Int(0)),
                    size: None,
                    ends: Vec::new(),
                    duplex: false,
                },
            ),
            exit(9, "main", Some(1), None),
        ] {
            w.apply(&e);
        }
        let c = caption(&w).unwrap_or_default();
        assert_eq!(c, "Ended: main exit 1 · counter = 0");
    }
}
