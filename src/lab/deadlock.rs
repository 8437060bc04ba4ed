//! The wait-for graph of a stuck gated run: who waits for whom, and the
//! cycle that keeps them all waiting, in words.

use super::Waiting;
use crate::model::World;
use std::collections::BTreeMap;

/// What one waiting process waits for, and who could end that wait.
struct Edge {
    what: String,
    whom: Option<String>,
}

fn edge(world: &World, blocked: &str) -> Edge {
    let (kind, what) = blocked.split_once(':').unwrap_or((blocked, ""));
    match kind {
        "lock" => Edge {
            what: what.to_string(),
            whom: world.locks.get(what).and_then(|l| l.holder.clone()),
        },
        "join" => Edge {
            what: format!("{what} to end"),
            whom: Some(what.to_string()),
        },
        "queue-get" => Edge {
            what: format!("an item in queue {what}"),
            whom: None,
        },
        "queue-put" => Edge {
            what: format!("room in queue {what}"),
            whom: None,
        },
        "recv" => Edge {
            what: format!("a message on {what}"),
            whom: None,
        },
        "send" => Edge {
            what: format!("room in pipe end {what}"),
            whom: None,
        },
        "wait" => Edge {
            what: "a child to end".into(),
            whom: None,
        },
        _ => Edge {
            what: blocked.to_string(),
            whom: None,
        },
    }
}

/// One line naming the cycle, e.g. `main.1 holds a, waits for b; main.2
/// holds b, waits for a`; without a cycle, who waits for what.
pub fn explain(world: &World, waiting: &BTreeMap<String, Waiting>) -> String {
    let edges: BTreeMap<&str, Edge> = waiting
        .iter()
        .filter_map(|(p, w)| w.waits_for.as_deref().map(|b| (p.as_str(), edge(world, b))))
        .collect();
    if let Some(cycle) = find_cycle(world, &edges, |_| true) {
        return cycle;
    }
    let waits: Vec<String> = edges
        .iter()
        .map(|(p, e)| format!("{p} waits for {}", e.what))
        .collect();
    format!("{}; nobody can wake them", waits.join("; "))
}

/// A deadlock seen in a free run: a circle of processes, each waiting for
/// a lock the next one holds (or for the next one to end). Such a circle
/// never breaks by itself. `None` when there is none.
pub fn in_world(world: &World) -> Option<String> {
    let mut edges: BTreeMap<&str, Edge> = BTreeMap::new();
    for l in world.locks.values() {
        let Some(holder) = l.holder.as_deref() else {
            continue;
        };
        for w in &l.waiters {
            edges.insert(
                w.as_str(),
                Edge {
                    what: l.name.clone(),
                    whom: Some(holder.to_string()),
                },
            );
        }
    }
    for p in world.processes.values() {
        if let crate::model::ProcState::Blocked(on) = &p.state
            && let Some(target) = join_target(on)
        {
            edges.insert(
                p.id.as_str(),
                Edge {
                    what: format!("{target} to end"),
                    whom: Some(target.to_string()),
                },
            );
        }
    }
    // A thread can be in a cycle too (two threads, two thread locks).
    let alive = |p: &str| {
        world.process(p).is_some_and(|p| p.is_alive())
            || world
                .thread(p)
                .is_some_and(|(p, t)| p.is_alive() && !t.done)
    };
    find_cycle(world, &edges, alive)
}

/// Follows the edges from each waiting process; the first circle found,
/// in words. Only nodes for which `keep` holds are followed.
fn find_cycle(
    world: &World,
    edges: &BTreeMap<&str, Edge>,
    keep: impl Fn(&str) -> bool,
) -> Option<String> {
    let held = |p: &str| -> String {
        let locks: Vec<&str> = world
            .locks_held_by(p)
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        if locks.is_empty() {
            "nothing".into()
        } else {
            locks.join(", ")
        }
    };
    for start in edges.keys() {
        let mut path: Vec<&str> = vec![start];
        let mut at: &str = start;
        while let Some(next) = edges.get(at).and_then(|e| e.whom.as_deref()) {
            if !keep(next) {
                break;
            }
            if let Some(i) = path.iter().position(|p| *p == next) {
                return Some(
                    path[i..]
                        .iter()
                        .map(|p| format!("{p} holds {}, waits for {}", held(p), edges[p].what))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            if !edges.contains_key(next) {
                break;
            }
            path.push(next);
            at = next;
        }
    }
    None
}

/// One arrow of a wait-for cycle, for drawing: `waiter` waits for `lock`
/// (or, when `lock` is `None`, for `holder` to end), and `holder` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitEdge {
    pub waiter: String,
    pub lock: Option<String>,
    pub holder: String,
}

/// The cycle of a stuck gated run as arrows (the same cycle [`explain`]
/// names); empty when the waiting processes form no cycle.
pub fn cycle_of_waiting(world: &World, waiting: &BTreeMap<String, Waiting>) -> Vec<WaitEdge> {
    let edges: BTreeMap<String, WaitEdge> = waiting
        .iter()
        .filter_map(|(p, w)| {
            let blocked = w.waits_for.as_deref()?;
            let (kind, what) = blocked.split_once(':').unwrap_or((blocked, ""));
            let (lock, holder) = match kind {
                "lock" => (
                    Some(what.to_string()),
                    world.locks.get(what).and_then(|l| l.holder.clone())?,
                ),
                "join" => (None, what.to_string()),
                _ => return None,
            };
            Some((
                p.clone(),
                WaitEdge {
                    waiter: p.clone(),
                    lock,
                    holder,
                },
            ))
        })
        .collect();
    first_cycle(&edges, |_| true)
}

/// The cycle [`in_world`] finds in a free run, as arrows; empty if none.
pub fn cycle_in_world(world: &World) -> Vec<WaitEdge> {
    let mut edges: BTreeMap<String, WaitEdge> = BTreeMap::new();
    for l in world.locks.values() {
        let Some(holder) = l.holder.as_deref() else {
            continue;
        };
        for w in &l.waiters {
            edges.insert(
                w.clone(),
                WaitEdge {
                    waiter: w.clone(),
                    lock: Some(l.name.clone()),
                    holder: holder.to_string(),
                },
            );
        }
    }
    for p in world.processes.values() {
        if let crate::model::ProcState::Blocked(on) = &p.state
            && let Some(target) = join_target(on)
        {
            edges.insert(
                p.id.clone(),
                WaitEdge {
                    waiter: p.id.clone(),
                    lock: None,
                    holder: target.to_string(),
                },
            );
        }
    }
    first_cycle(&edges, |p| world.process(p).is_some_and(|p| p.is_alive()))
}

/// Follows waiter → holder from each waiter in turn; the first circle
/// found, in the order it is walked.
fn first_cycle(edges: &BTreeMap<String, WaitEdge>, alive: impl Fn(&str) -> bool) -> Vec<WaitEdge> {
    for start in edges.keys() {
        let mut path: Vec<&str> = vec![start];
        let mut at: &str = start;
        while let Some(next) = edges.get(at).map(|e| e.holder.as_str()) {
            if !alive(next) {
                break;
            }
            if let Some(i) = path.iter().position(|p| *p == next) {
                return path[i..]
                    .iter()
                    .filter_map(|p| edges.get(*p).cloned())
                    .collect();
            }
            if !edges.contains_key(next) {
                break;
            }
            path.push(next);
            at = next;
        }
    }
    Vec::new()
}

/// `join main.1` or `join main.1 (joins its children at exit)` → `main.1`.
fn join_target(on: &str) -> Option<&str> {
    on.strip_prefix("join ")?.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, Event};

    fn ev(proc_id: &str, body: Body) -> Event {
        Event {
            seq: 0,
            ..crate::protocol::test_event(1, proc_id, body)
        }
    }

    fn two_locks_crossed() -> World {
        let mut w = World::new();
        for (p, l) in [("main.1", "a"), ("main.2", "b")] {
            w.apply(&ev(p, Body::LockAcquire { lock: l.into() }));
        }
        w
    }

    #[test]
    fn the_gated_cycle_is_two_arrows_through_the_locks() {
        let w = two_locks_crossed();
        let waiting = |lock: &str| Waiting {
            action: format!("acquire lock {lock}"),
            local: false,
            waits_for: Some(format!("lock:{lock}")),
            retry: false,
            touches: vec![format!("lock:{lock}")],
        };
        let map: BTreeMap<String, Waiting> = [
            ("main.1".to_string(), waiting("b")),
            ("main.2".to_string(), waiting("a")),
        ]
        .into();
        let cycle = cycle_of_waiting(&w, &map);
        let arrows: Vec<(&str, Option<&str>, &str)> = cycle
            .iter()
            .map(|e| (e.waiter.as_str(), e.lock.as_deref(), e.holder.as_str()))
            .collect();
        assert_eq!(
            arrows,
            [
                ("main.1", Some("b"), "main.2"),
                ("main.2", Some("a"), "main.1")
            ]
        );
    }

    #[test]
    fn the_free_cycle_matches_in_world() {
        let mut w = two_locks_crossed();
        w.apply(&ev("main.1", Body::LockWait { lock: "b".into() }));
        assert!(cycle_in_world(&w).is_empty(), "one waiter is no cycle");
        assert!(in_world(&w).is_none());
        w.apply(&ev("main.2", Body::LockWait { lock: "a".into() }));
        assert_eq!(cycle_in_world(&w).len(), 2);
        assert!(in_world(&w).is_some());
    }
}
