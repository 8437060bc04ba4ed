//! Issue 13, "threads": a scenario's threads are real threads of its real
//! process, the kernel lists them, their globals are one memory (lost
//! updates counted exactly), and a process with threads never forks.

mod common;

use common::*;
use forkscope::protocol::{Body, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The number main printed after `prefix`.
fn printed(run: &Run, prefix: &str) -> i64 {
    run.terminal()
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {}", run.terminal()))
}

/// The `lost` of every `race` on `counter`, with the thread that wrote.
fn lost_updates(run: &Run) -> Vec<(Option<String>, i64)> {
    run.events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Race {
                name,
                lost: Value::Int(l),
                ..
            } if name == "counter" => Some((e.thread.clone(), *l)),
            _ => None,
        })
        .collect()
}

/// `run thread-counter --format jsonl` with these threads, adds and lock,
/// and `extra` args.
fn thread_counter(threads: u32, adds: u32, lock: bool, extra: &[&str]) -> Run {
    let sets = [
        format!("threads={threads}"),
        format!("adds={adds}"),
        format!("lock={lock}"),
    ];
    let mut args = Vec::new();
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    args.extend_from_slice(extra);
    let run = run_jsonl("thread-counter", &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// A scenario file named `name` (title and explain filled in: `body`
/// starts at line 4).
fn scenario(name: &str, body: &str) -> ScenarioFile {
    scenario_file(
        name,
        &format!("name = \"{name}\"\ntitle = \"t\"\nexplain = \"x\"\n{body}"),
    )
}

/// `check` refuses the scenario `name`: its error names `FILE:at` and says
/// each of `says`.
fn check_refuses(name: &str, body: &str, at: &str, says: &[&str]) {
    let f = scenario(name, body);
    let path = f.to_str().expect("utf-8 path");
    let out = forkscope(&["check", path]);
    assert_ne!(out.code, 0, "{name}: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("{path}:{at}")),
        "{name}: names file:line:col: {}",
        out.stderr
    );
    for s in says {
        assert!(out.stderr.contains(s), "{name}: {}", out.stderr);
    }
}

/// `run FILE --format jsonl` of a scenario that leaves nothing behind.
fn run_scenario(name: &str, body: &str, extra: &[&str]) -> Run {
    let f = scenario(name, body);
    let run = run_jsonl(f.to_str().expect("utf-8 path"), extra);
    assert!(survivors_after_2s(&run.pids()).is_empty(), "{name}");
    run
}

#[test]
fn sing_and_dance_are_two_real_threads_of_one_process() {
    let mut live = Live::start(&[
        "run",
        "threads-sing-dance",
        "--format",
        "jsonl",
        "--set",
        "pause_ms=400",
    ]);
    // Both threads have started: their first lines are printed.
    let mut started = Vec::new();
    while started.len() < 2 {
        let e = live.wait_for(Duration::from_secs(20), |e| {
            matches!(e.body, Body::ThreadStart { .. })
        });
        started.push(e);
    }
    let pid = started[0].pid;
    // While they sleep: the kernel lists main's thread and the two others.
    let tasks: BTreeSet<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process is alive while its threads sleep")
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let named: BTreeSet<i32> = started.iter().filter_map(|e| e.tid).collect();
    assert_eq!(tasks.len(), 3, "main + 2 threads: {tasks:?}");
    assert!(tasks.contains(&pid), "the main thread's tid is the pid");
    assert_eq!(named.len(), 2, "{started:?}");
    assert!(
        named.is_subset(&tasks),
        "events name {named:?}, kernel lists {tasks:?}"
    );
    let (code, stderr) = live.finish();
    assert_eq!(code, Some(0), "{stderr}");
    live.drain();
    // One process, its threads named after it; every thread event says its tid.
    let hellos: Vec<_> = live
        .seen
        .iter()
        .filter(|e| matches!(e.body, Body::Hello { .. }) && e.proc_id != "runner")
        .collect();
    assert_eq!(hellos.len(), 1, "threads are not processes");
    for e in live.seen.iter().filter(|e| e.thread.is_some()) {
        assert_eq!(e.pid, pid);
        assert!(named.contains(&e.tid.unwrap_or(0)), "{e:?}");
        assert!(e.thread.as_deref().is_some_and(|t| t.starts_with("main.t")));
    }
    let ends = live
        .seen
        .iter()
        .filter(|e| matches!(e.body, Body::ThreadEnd { .. }))
        .count();
    assert_eq!(ends, 2);
    // Main printed its last line before the threads ended, and the
    // program still waited for them (no sleep, no join in the listing).
    let out: String = live
        .seen
        .iter()
        .filter_map(|e| match &e.body {
            Body::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(out.lines().filter(|l| l.starts_with("singing")).count(), 3);
    assert_eq!(out.lines().filter(|l| l.starts_with("dancing")).count(), 3);
    assert!(
        out.lines().position(|l| l == "---end---") < out.lines().position(|l| l == "singing...2")
    );
}

#[test]
fn unlocked_threads_lose_updates_and_each_loss_is_counted_exactly() {
    let mut lossy_runs = 0;
    for _ in 0..6 {
        let run = thread_counter(2, 2000, false, &[]);
        let last = printed(&run, "counter =");
        let races = lost_updates(&run);
        let lost: i64 = races.iter().map(|r| r.1).sum();
        assert_eq!(lost, 4000 - last, "{} race events", races.len());
        for (thread, _) in &races {
            assert!(thread.is_some(), "a race of threads is told by a thread");
        }
        if last < 4000 {
            lossy_runs += 1;
        }
    }
    assert!(lossy_runs > 0, "no run of 6 lost an update");
}

#[test]
fn with_a_thread_lock_no_update_is_lost() {
    for _ in 0..5 {
        let run = thread_counter(3, 500, true, &[]);
        assert_eq!(printed(&run, "counter ="), 1500);
        assert_eq!(lost_updates(&run), vec![]);
    }
}

#[test]
fn a_process_with_threads_may_not_fork_afterwards() {
    check_refuses(
        "fork-after-thread",
        r#"[roles.main]
steps = [
  { thread = "t", as = "a" },
  { join = "a" },
  { fork = "" },
]
[roles.t]
steps = [ { print = "hi" } ]
"#,
        "8:3:",
        &["must not fork", "line 6, column 3"],
    );
    // Nor may a thread itself start a process.
    check_refuses(
        "spawn-in-thread",
        r#"[roles.main]
steps = [ { thread = "t", as = "a" }, { join = "a" } ]
[roles.t]
steps = [ { spawn = "c" } ]
[roles.c]
steps = [ { print = "hi" } ]
"#,
        "7:11:",
        &[],
    );
    // Forks before the first thread are fine.
    let h = scenario(
        "fork-then-thread",
        r#"[roles.main]
steps = [ { spawn = "c", as = "p" }, { join = "p" }, { thread = "t", as = "a" }, { join = "a" } ]
[roles.t]
steps = [ { print = "hi" } ]
[roles.c]
steps = [ { print = "child" } ]
"#,
    );
    let out = forkscope(&["check", h.to_str().expect("utf-8 path")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `explore thread-counter` with extra args: its outcome lines.
fn explore_threads(extra: &[&str], dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut args = vec![
        "explore",
        "thread-counter",
        "--format",
        "jsonl",
        "--out",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let run = forkscope(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn explore_finds_every_outcome_of_two_threads_adding_and_replays_them() {
    let dir = TempDir::new("threads-lab");
    for (adds, lock, want) in [
        (1, false, vec![1, 2]),
        (2, false, vec![2, 3, 4]),
        (1, true, vec![2]),
    ] {
        let sub = dir.join(format!("adds={adds}-lock={lock}"));
        let (adds_set, lock_set) = (format!("adds={adds}"), format!("lock={lock}"));
        let lines = explore_threads(
            &["--set", "threads=2", "--set", &adds_set, "--set", &lock_set],
            &sub,
        );
        let got: BTreeSet<i64> = lines
            .iter()
            .map(|l| l["outcome"]["counter"].as_i64().expect("a counter"))
            .collect();
        assert_eq!(
            got,
            want.iter().copied().collect(),
            "{adds} {lock}: {lines:?}"
        );
        for l in &lines {
            assert_eq!(l["deadlock"], false);
            // The schedule file repeats that outcome: main prints it.
            let file = l["schedule_file"].as_str().expect("a schedule file");
            let run = thread_counter(2, adds, lock, &["--schedule-file", file]);
            assert_eq!(
                printed(&run, "counter ="),
                l["outcome"]["counter"].as_i64().expect("a counter"),
                "{file}"
            );
        }
    }
}

#[test]
fn a_seeded_schedule_of_threads_repeats_exactly() {
    let args = [
        "stats",
        "thread-counter",
        "--set",
        "threads=3",
        "--set",
        "adds=3",
        "--runs",
        "3",
        "--seed",
        "11",
        "--format",
        "jsonl",
    ];
    let first = forkscope(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    for _ in 0..3 {
        assert_eq!(forkscope(&args).stdout, first.stdout);
    }
}

#[test]
fn each_thread_sees_only_its_own_thread_local() {
    for extra in [&[][..], &["--schedule", "seeded", "--seed", "5"][..]] {
        let run = run_jsonl("thread-local", extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut lines: Vec<String> = run.terminal().lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "Hello, dongdong (in Thread-A)",
                "Hello, wanger (in Thread-B)"
            ],
            "{extra:?}"
        );
        // Each line is printed by the thread whose value it shows.
        for e in &run.events {
            if let Body::Output { text, .. } = &e.body {
                let who = if text.contains("dongdong") {
                    "main.t1"
                } else {
                    "main.t2"
                };
                assert_eq!(e.thread.as_deref(), Some(who), "{text}");
            }
        }
    }
}

#[test]
fn three_threads_pass_the_turn_with_thread_locks_in_strict_rotation() {
    for extra in [
        &["--set", "sleep_ms=20"][..],
        &["--schedule", "seeded", "--seed", "9"][..],
    ] {
        let run = run_jsonl("thread-lock-chain", extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let order: Vec<String> = run
            .terminal()
            .lines()
            .map(|l| l.trim_matches(|c| c == '-' || c == ' ').to_string())
            .collect();
        let want: Vec<String> = (0..9).map(|i| format!("Task {}", i % 3 + 1)).collect();
        assert_eq!(order, want, "{extra:?}");
    }
}

#[test]
fn a_lock_kind_must_be_process_or_thread() {
    check_refuses(
        "bad-kind",
        r#"locks = [{ name = "l", kind = "fiber" }]
[roles.main]
steps = [ { lock = "l" }, { unlock = "l" } ]
"#,
        "4:",
        &["unknown lock kind"],
    );
    // A thread's name goes with a thread step only.
    check_refuses(
        "stray-name",
        r#"[roles.main]
steps = [ { print = "hi", name = "Thread-A" } ]
"#,
        "5:",
        &["`name` names a thread"],
    );
}

#[test]
fn two_threads_in_a_lock_cycle_are_a_deadlock_stopped_with_exit_3() {
    let run = run_scenario(
        "thread-deadlock",
        r#"locks = [{ name = "a", kind = "thread" }, { name = "b", kind = "thread" }]
[roles.main]
steps = [ { thread = "one", as = "t1" }, { thread = "two", as = "t2" }, { join = "t1" }, { join = "t2" } ]
[roles.one]
steps = [ { lock = "a" }, { sleep_ms = 100 }, { lock = "b" } ]
[roles.two]
steps = [ { lock = "b" }, { sleep_ms = 100 }, { lock = "a" } ]
"#,
        &[],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("main.t1 holds a, waits for b")
            && run.stderr.contains("main.t2 holds b, waits for a"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_thread_that_fails_ends_alone_and_daemon_threads_die_with_their_process() {
    let run = run_scenario(
        "thread-misc",
        r#"[globals]
g = 0
[roles.main]
steps = [
  { thread = "forever", daemon = true },
  { thread = "bad", as = "b" },
  { thread = "parent", as = "p" },
  { join = "b" },
  { join = "p" },
  { print = "main ends" },
]
[roles.forever]
steps = [ { loop = [ { sleep_ms = 20 }, { add = "g", by = 1 } ] } ]
[roles.bad]
steps = [ { print = "bad {1 // 0}" } ]
[roles.parent]
steps = [ { thread = "child", as = "c" }, { join = "c" }, { print = "parent {thread_name} done" } ]
[roles.child]
steps = [ { print = "child {thread_name}" }, { return = 0 } ]
"#,
        &[],
    );
    // As CPython: the exception is printed, the process goes on and ends 0.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.terminal();
    assert!(out.contains("Exception in thread Thread-2 (bad)"), "{out}");
    assert!(out.contains("child Thread-4 (child)"), "{out}");
    assert!(out.contains("parent Thread-3 (parent) done"), "{out}");
    assert!(out.contains("main ends"), "{out}");
    // A thread's thread is named after it.
    assert!(
        run.events
            .iter()
            .any(|e| e.thread.as_deref() == Some("main.t3.t1"))
    );
    // The daemon thread never ended: it died with the process.
    let ended: BTreeSet<&str> = run
        .events
        .iter()
        .filter(|e| matches!(e.body, Body::ThreadEnd { .. }))
        .filter_map(|e| e.thread.as_deref())
        .collect();
    assert!(!ended.contains("main.t1"), "{ended:?}");
}

#[test]
fn a_role_that_starts_itself_as_threads_hits_the_thread_limit_not_the_machine() {
    let run = run_scenario(
        "thread-bomb",
        r#"[roles.main]
steps = [ { thread = "t", as = "a" }, { join = "a" }, { print = "main ends" } ]
[roles.t]
steps = [ { thread = "t", as = "b" }, { thread = "t", as = "c" }, { sleep_ms = 200 }, { join = "b" }, { join = "c" } ]
"#,
        &["--timeout", "30"],
    );
    assert!(
        run.events.iter().any(|e| matches!(&e.body,
            Body::Error { message } if message.contains("a process may run at most 256 threads at once"))),
        "{}",
        run.stderr
    );
    assert!(run.terminal().contains("main ends"), "{}", run.terminal());
    let most_threads = run
        .events
        .iter()
        .filter_map(|e| e.tid)
        .collect::<BTreeSet<i32>>()
        .len();
    assert!(most_threads > 0);
}
