//! Marked moments: where a replay with auto-pause stops so that a
//! lecturer can talk. A lost update, a deadlock, an error, a zombie (a
//! child that has exited and stays unreaped for a while), and a `narrate`
//! step marked `pause = true` in the scenario.

use crate::model::EventLog;
use crate::protocol::{Body, Event, RUNNER_ID};

/// A child unreaped this long after its exit is a zombie worth a pause
/// (most are reaped within microseconds).
pub const ZOMBIE_NS: u64 = 50_000_000;

/// The first marked moment among events `a..b` of `log`: its time and
/// what it is ("a lost update: …").
pub fn first_mark(log: &EventLog, a: usize, b: usize) -> Option<(u64, String)> {
    let start = a.max(log.first_kept());
    log.range(start, b).iter().enumerate().find_map(|(i, e)| {
        let later = log.range(start + i + 1, log.len());
        Some((e.t_ns, mark(e, later)?))
    })
}

/// Whether `e` is a marked moment, and what it is; `later` are the events
/// after it (to tell a zombie from a child reaped at once).
pub fn mark(e: &Event, later: &[Event]) -> Option<String> {
    Some(match &e.body {
        // A write that put erased updates back is no lost update.
        Body::Race {
            name,
            read,
            replaced,
            written,
            ..
        } if crate::model::race_body_updates(&e.body).unwrap_or(0) > 0 => format!(
            "a lost update: {} read {read}, wrote {written} over {replaced} ({name})",
            e.proc_id
        ),
        Body::Deadlock { cycle } => format!("the deadlock: {cycle}"),
        Body::Error { message } => format!("an error in {}: {message}", e.proc_id),
        Body::Narrate { text, pause: true } => text.clone(),
        Body::Exit { .. } if e.proc_id != RUNNER_ID => {
            let reaped = later.iter().find(|x| {
                x.proc_id == e.proc_id && matches!(x.body, Body::Reaped { .. })
                    || x.t_ns > e.t_ns.saturating_add(ZOMBIE_NS)
            });
            match reaped {
                Some(x) if matches!(x.body, Body::Reaped { .. }) => return None,
                // Never reaped before the log ends: only a zombie if the
                // log goes on for a while.
                None => return None,
                Some(_) => format!(
                    "a zombie: {} has exited, and its parent has not reaped it yet",
                    e.proc_id
                ),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_event as ev;

    fn exit(t: u64, id: &str) -> Event {
        ev(
            t,
            id,
            Body::Exit {
                code: Some(0),
                signal: None,
            },
        )
    }

    fn reaped(t: u64, id: &str) -> Event {
        ev(
            t,
            id,
            Body::Reaped {
                by: "main".into(),
                by_pid: 1,
                code: Some(0),
                signal: None,
            },
        )
    }

    fn narrate(t: u64, text: &str, pause: bool) -> Event {
        ev(
            t,
            "main",
            Body::Narrate {
                text: text.into(),
                pause,
            },
        )
    }

    #[test]
    fn a_zombie_and_a_marked_caption_are_moments_a_child_reaped_at_once_is_not() {
        let ms = 1_000_000;
        let mut log = EventLog::new();
        for e in [
            narrate(0, "plain", false),
            exit(ms, "main.1"),
            reaped(ms + 10, "main.1"),
            narrate(2 * ms, "look here", true),
            exit(3 * ms, "main.2"),
            narrate(100 * ms, "later", false),
            reaped(200 * ms, "main.2"),
        ] {
            log.push(e);
        }
        assert_eq!(
            first_mark(&log, 0, log.len()),
            Some((2 * ms, "look here".to_string()))
        );
        let (t, what) = first_mark(&log, 4, log.len()).unwrap_or_default();
        assert_eq!(t, 3 * ms);
        assert!(what.starts_with("a zombie: main.2"), "{what}");
        assert_eq!(first_mark(&log, 5, log.len()), None);
    }
}
