//! `forkscope trace` on Python programs that use locks, queues, pipes,
//! shared values and pools (tests/python/*.py), checked as a user would:
//!
//! - the program prints the same lines (a multiset) and exits with the
//!   same code as under plain python3, and its tracebacks read the same;
//! - the events show what it did: every `put`/`send` paired by id with
//!   one `get`/`recv` of the same value, pool tasks and results, lock
//!   holders one at a time, `v.value += 1` as a read then a write;
//! - lost updates are exact: the sum of `race.lost` is what the final
//!   value is short of;
//! - gated runs (`--schedule seeded`): the unlocked Value program gives the
//!   same final value for one seed every time and more than one over seeds
//!   1..50, a saved schedule replays the run, and the other programs run
//!   to their end with the same output as python3.
//!
//! Without python3 the tests say so and pass.

mod common;

use common::{bin, python_command as command, python_program as program};
use forkscope::protocol::{Body, Event, Stream, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The programs of this file, each ends by itself with the same output
/// under any schedule (the unlocked Value program prints its final value,
/// which depends on the schedule, so it is checked apart).
const PROGRAMS: &[&str] = &[
    "value_locked.py",
    "queue_producer_consumer.py",
    "queue_bounded.py",
    "pipe_duplex_poll.py",
    "pipe_two_readers.py",
    "sync_primitives.py",
    "pool_callback_map.py",
    "pool_shapes.py",
    "ops_errors.py",
    "ops_spawn.py",
];

fn python() -> Option<String> {
    let py = common::python_executable();
    if py.is_none() {
        eprintln!("python3 is missing: the trace_ops tests are skipped");
    }
    py
}

struct Traced {
    code: i32,
    events: Vec<Event>,
    stderr: String,
}

impl Traced {
    fn stream(&self, which: Stream) -> String {
        self.events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Output { stream, text } if *stream == which => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn kinds(&self, kind: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.body.kind() == kind)
            .collect()
    }

    /// What the `race` events say was lost, in all.
    fn lost(&self) -> i64 {
        self.events
            .iter()
            .map(|e| match &e.body {
                Body::Race { lost, .. } => lost.as_i64().unwrap_or(0),
                _ => 0,
            })
            .sum()
    }
}

/// `forkscope trace --format jsonl [extra] PROGRAM [args]`.
fn traced(py: &str, name: &str, extra: &[&str], args: &[&str]) -> Traced {
    let out = command(bin())
        .args([
            "trace",
            "--python",
            py,
            "--format",
            "jsonl",
            "--timeout",
            "60",
        ])
        .args(extra)
        .arg(program(name))
        .args(args)
        .output()
        .expect("forkscope runs");
    Traced {
        code: out.status.code().unwrap_or(-1),
        events: common::parse_events(&String::from_utf8_lossy(&out.stdout)),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Plain python3: (exit code, stdout, stderr).
fn plain(py: &str, name: &str, args: &[&str]) -> (i32, String, String) {
    let out = command(py)
        .arg(program(name))
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// `final N` as the Value programs print it.
fn final_value(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("final "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `final N` line in {stdout:?}"))
}

/// (channel, msg) -> value, for one kind of event.
fn messages(t: &Traced, kinds: &[&str]) -> BTreeMap<(String, String), Vec<Value>> {
    let mut out: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for e in &t.events {
        let (channel, msg, value) = match &e.body {
            Body::Put {
                channel,
                msg,
                value,
            }
            | Body::Get {
                channel,
                msg,
                value,
            }
            | Body::Send {
                channel,
                msg,
                value,
                ..
            }
            | Body::Recv {
                channel,
                msg,
                value,
                ..
            } => (channel, msg, value),
            _ => continue,
        };
        if kinds.contains(&e.body.kind()) {
            out.entry((channel.clone(), msg.clone()))
                .or_default()
                .push(value.clone());
        }
    }
    out
}

/// Every message sent once and received once, with the same value.
fn assert_paired(t: &Traced, what: &str) -> usize {
    let sent = messages(t, &["put", "send"]);
    let got = messages(t, &["get", "recv"]);
    assert!(!sent.is_empty(), "{what}: no message at all");
    for (k, v) in &sent {
        assert_eq!(v.len(), 1, "{what}: {k:?} sent {} times", v.len());
        let r = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: {k:?} ({:?}) was never received", v[0]));
        assert_eq!(r, v, "{what}: {k:?} received as something else");
    }
    for k in got.keys() {
        assert!(sent.contains_key(k), "{what}: {k:?} received, never sent");
    }
    sent.len()
}

#[test]
fn ops_programs_print_what_python3_prints() {
    let Some(py) = python() else { return };
    for name in PROGRAMS {
        // python3 writing into a pipe buffers by blocks: so does the
        // traced program with --stdout block.
        let (code, out, err) = plain(&py, name, &[]);
        let t = traced(&py, name, &["--stdout", "block"], &[]);
        assert_eq!(t.code, code, "{name}: exit code; stderr: {}", t.stderr);
        assert_eq!(
            lines(&t.stream(Stream::Stdout)),
            lines(&out),
            "{name}: stdout lines"
        );
        assert_eq!(
            t.stream(Stream::Stderr),
            err,
            "{name}: stderr (tracebacks without the probe)"
        );
    }
    // The unlocked counter prints what the race left (usually 200 when
    // run plainly, often less when traced): one `final N` line, N <= 200.
    let t = traced(&py, "value_unlocked.py", &["--stdout", "block"], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let out = t.stream(Stream::Stdout);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!((1..=200).contains(&final_value(&out)), "{out:?}");
}

#[test]
fn queue_items_and_pipe_messages_pair_up_by_id() {
    let Some(py) = python() else { return };
    for name in [
        "queue_producer_consumer.py",
        "queue_bounded.py",
        "pipe_duplex_poll.py",
        "pipe_two_readers.py",
    ] {
        let t = traced(&py, name, &[], &[]);
        assert_eq!(t.code, 0, "{name}: {}", t.stderr);
        assert_paired(&t, name);
    }

    // The consumer's five items, by name, on queue `q`.
    let t = traced(&py, "queue_producer_consumer.py", &[], &[]);
    let puts: Vec<&Event> = t
        .kinds("put")
        .into_iter()
        .filter(|e| matches!(&e.body, Body::Put { channel, .. } if channel == "q"))
        .collect();
    assert_eq!(puts.len(), 5, "five items put on q");
    assert!(
        puts.iter().all(|e| e.proc_id == "main.1"),
        "by the producer"
    );

    // A full bounded queue makes its producer wait, and says so.
    let t = traced(&py, "queue_bounded.py", &[], &[]);
    assert!(
        t.events.iter().any(|e| matches!(&e.body,
            Body::Resource { name, size: Some(2), .. } if name == "q")),
        "q declared with its 2 places"
    );
    assert!(
        t.events.iter().any(|e| matches!(&e.body,
            Body::Block { on } if on == "put on full queue q")),
        "the producer waits on the full queue"
    );

    // The duplex pipe: its two ends, polls, and every recv on the other end.
    let t = traced(&py, "pipe_duplex_poll.py", &[], &[]);
    assert!(
        t.events.iter().any(|e| matches!(&e.body,
            Body::Resource { ends, duplex: true, .. }
                if ends == &["parent_conn".to_string(), "child_conn".to_string()])),
        "the pipe with its ends"
    );
    assert!(!t.kinds("poll").is_empty(), "polls are shown");
    for e in &t.events {
        if let Body::Send { end, .. } = &e.body {
            let other = if end == "parent_conn" {
                "child_conn"
            } else {
                "parent_conn"
            };
            let Body::Send { msg, .. } = &e.body else {
                continue;
            };
            assert!(
                t.events.iter().any(|r| matches!(&r.body,
                    Body::Recv { msg: m, end: re, .. } if m == msg && re == other)),
                "a message sent on {end} is received on {other}"
            );
        }
    }
}

#[test]
fn pool_tasks_results_and_callbacks_are_shown() {
    let Some(py) = python() else { return };
    let t = traced(&py, "pool_callback_map.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.events.iter().any(|e| matches!(&e.body,
            Body::Resource { name, size: Some(2), .. } if name == "pool")),
        "the pool and its size"
    );
    let workers: BTreeSet<&str> = t
        .kinds("task_start")
        .iter()
        .map(|e| e.proc_id.as_str())
        .collect();
    assert!(!workers.is_empty());
    assert!(
        workers.iter().all(|w| *w == "pool.w1" || *w == "pool.w2"),
        "tasks run in the pool's workers: {workers:?}"
    );
    let n = assert_paired(&t, "pool") / 2;
    assert_eq!(t.kinds("task_start").len(), n, "one task_start per task");
    assert_eq!(t.kinds("task_done").len(), n, "one task_done per task");
    // apply_async(square, (7,)): the call, its result and its callback.
    assert!(t.events.iter().any(|e| matches!(&e.body,
        Body::Put { channel, value: Value::Str(s), .. }
            if channel == "pool.tasks" && s == "square(7)")));
    assert!(t.events.iter().any(|e| matches!(
        &e.body,
        Body::TaskDone {
            value: Value::Int(49),
            ..
        }
    )));
    // The callback runs in the owner's result thread, right after the
    // result came in there: its print follows that recv, on that thread.
    let recv = t
        .events
        .iter()
        .position(|e| {
            matches!(
                &e.body,
                Body::Recv {
                    value: Value::Int(49),
                    ..
                }
            )
        })
        .expect("the result 49 received");
    assert!(
        t.events[recv].thread.is_some(),
        "results come in on the pool's result thread"
    );
    assert!(
        t.events[recv..].iter().any(
            |e| matches!(&e.body, Body::Output { text, .. } if text.contains("callback got 49"))
        ),
        "the callback's print comes after its result"
    );
}

#[test]
fn locks_show_one_holder_at_a_time_and_nothing_is_lost() {
    let Some(py) = python() else { return };
    let t = traced(&py, "value_locked.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert_eq!(final_value(&t.stream(Stream::Stdout)), 200);
    assert!(t.kinds("race").is_empty(), "no lost update under the lock");
    let mut holder: Option<String> = None;
    let mut acquires = 0;
    for e in &t.events {
        match &e.body {
            Body::LockAcquire { lock } if lock == "lock" => {
                assert_eq!(holder, None, "two holders of lock at once");
                holder = Some(e.proc_id.clone());
                acquires += 1;
            }
            Body::LockRelease { lock } if lock == "lock" => {
                assert_eq!(holder.as_deref(), Some(e.proc_id.as_str()));
                holder = None;
            }
            // Each read and write of counter happens under the lock.
            Body::Read { name, .. } | Body::Write { name, .. }
                if name == "counter" && e.proc_id != "main" =>
            {
                assert_eq!(holder.as_deref(), Some(e.proc_id.as_str()));
            }
            _ => {}
        }
    }
    assert_eq!(acquires, 200);
    // `counter.value += 1`: a read, then a write of one more.
    assert_eq!(t.kinds("write").len(), 200);
    assert_eq!(t.kinds("read").len(), 201);

    let t = traced(&py, "sync_primitives.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let has = |f: &dyn Fn(&Body) -> bool| t.events.iter().any(|e| f(&e.body));
    assert!(has(
        &|b| matches!(b, Body::Block { on } if on == "wait on cond")
    ));
    for lock in ["cond", "room", "guard", "nest", "sem", "mplock"] {
        assert!(
            has(&|b| matches!(b, Body::LockAcquire { lock: l } if l == lock)),
            "lock {lock} is shown"
        );
    }
    for flag in ["ready", "started"] {
        assert!(
            has(
                &|b| matches!(b, Body::Write { name, value: Value::Bool(true), .. } if name == flag)
            ),
            "event {flag} set"
        );
    }
    // A nested RLock is held once.
    let nest = t
        .events
        .iter()
        .filter(|e| matches!(&e.body, Body::LockAcquire { lock } if lock == "nest"))
        .count();
    assert_eq!(nest, 1);
    // Threads hold locks as themselves.
    assert!(
        t.events.iter().any(|e| e.thread.is_some()
            && matches!(&e.body, Body::LockAcquire { lock } if lock == "room"))
    );
}

#[test]
fn lost_updates_are_exact() {
    let Some(py) = python() else { return };
    // Free runs: the operating system interleaves 4 x 3000 increments.
    for _ in 0..3 {
        let t = traced(&py, "value_unlocked.py", &[], &["3000"]);
        assert_eq!(t.code, 0, "{}", t.stderr);
        let fin = final_value(&t.stream(Stream::Stdout));
        assert_eq!(
            t.lost(),
            12_000 - fin,
            "the race events account for every lost update"
        );
        for e in t.kinds("race") {
            assert_ne!(e.proc_id, "main", "races are the workers'");
        }
    }
}

#[test]
fn a_seed_repeats_the_unlocked_value_program() {
    let Some(py) = python() else { return };
    let mut finals = BTreeSet::new();
    for _ in 0..20 {
        let t = traced(
            &py,
            "value_unlocked.py",
            &["--schedule", "seeded", "--seed", "7"],
            &[],
        );
        assert_eq!(t.code, 0, "{}", t.stderr);
        let fin = final_value(&t.stream(Stream::Stdout));
        assert_eq!(t.lost(), 200 - fin);
        finals.insert(fin);
    }
    assert_eq!(finals.len(), 1, "seed 7 gave {finals:?}");

    // Over seeds 1..50 (`stats` takes the program as it is).
    let out = command(bin())
        .args(["stats", "--runs", "50", "--seed", "1", "--format", "jsonl"])
        .arg(program("value_unlocked.py"))
        .output()
        .expect("forkscope stats runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(rows.len() >= 2, "one final value over 50 seeds: {rows:?}");
    let mut runs = 0;
    for r in &rows {
        let n = r["runs"].as_i64().unwrap_or(0);
        let fin = r["outcome"]["counter"]
            .as_i64()
            .expect("counter's final value");
        assert_eq!(r["deadlock"], false);
        assert_eq!(r["lost"].as_i64(), Some(n * (200 - fin)), "exact lost: {r}");
        runs += n;
    }
    assert_eq!(runs, 50);
}

#[test]
fn a_saved_schedule_replays_a_traced_run() {
    let Some(py) = python() else { return };
    let dir = common::TempDir::new("trace-ops-schedule");
    let file = dir.path().join("value.schedule");
    let file_s = file.to_string_lossy().into_owned();
    let first = traced(
        &py,
        "value_unlocked.py",
        &[
            "--schedule",
            "seeded",
            "--seed",
            "11",
            "--save-schedule",
            &file_s,
        ],
        &[],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = traced(&py, "value_unlocked.py", &["--schedule-file", &file_s], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let races = |t: &Traced| -> Vec<(String, String)> {
        t.kinds("race")
            .iter()
            .map(|e| (e.proc_id.clone(), format!("{:?}", e.body)))
            .collect()
    };
    assert_eq!(
        final_value(&again.stream(Stream::Stdout)),
        final_value(&first.stream(Stream::Stdout))
    );
    assert_eq!(races(&again), races(&first), "the same lost updates");
}

#[test]
fn gated_runs_of_the_ops_programs_end_as_python3_does() {
    let Some(py) = python() else { return };
    for name in PROGRAMS {
        if *name == "ops_errors.py" {
            continue; // its Queue.get(timeout=0.05) waits for ever when gated
        }
        let (code, out, _) = plain(&py, name, &[]);
        for seed in ["1", "2"] {
            let t = traced(
                &py,
                name,
                &["--stdout", "block", "--schedule", "seeded", "--seed", seed],
                &[],
            );
            assert_eq!(t.code, code, "{name} seed {seed}: {}", t.stderr);
            assert_eq!(
                lines(&t.stream(Stream::Stdout)),
                lines(&out),
                "{name} seed {seed}"
            );
            assert!(
                !t.kinds("pending").is_empty(),
                "{name}: a gated run has steps"
            );
            if name.starts_with("queue") || name.starts_with("pipe") {
                assert_paired(&t, name);
            }
        }
    }
}

#[test]
fn a_spawned_child_gets_the_names_with_the_objects() {
    let Some(py) = python() else { return };
    let t = traced(&py, "ops_spawn.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let child: BTreeSet<String> = t
        .events
        .iter()
        .filter(|e| e.proc_id != "main")
        .filter_map(|e| match &e.body {
            Body::Get { channel, .. } | Body::Put { channel, .. } | Body::Send { channel, .. } => {
                Some(channel.clone())
            }
            Body::LockAcquire { lock } => Some(lock.clone()),
            Body::Write { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    for name in ["jq", "sq", "a/b", "lock", "v"] {
        assert!(
            child.contains(name),
            "the spawned child uses {name} under its name: {child:?}"
        );
    }
    assert_paired(&t, "ops_spawn.py");
    assert_eq!(t.lost(), 0);
}

#[test]
fn a_seed_repeats_which_worker_takes_which_task() {
    let Some(py) = python() else { return };
    let order = |t: &Traced| -> Vec<(String, u32)> {
        t.events
            .iter()
            .filter_map(|e| match &e.body {
                Body::TaskStart { task, .. } => Some((e.proc_id.clone(), *task)),
                _ => None,
            })
            .collect()
    };
    let mut seen = BTreeSet::new();
    for seed in ["3", "3", "3", "4", "5", "6"] {
        let t = traced(
            &py,
            "pool_callback_map.py",
            &["--schedule", "seeded", "--seed", seed],
            &[],
        );
        assert_eq!(t.code, 0, "seed {seed}: {}", t.stderr);
        assert_paired(&t, "gated pool");
        let o = order(&t);
        assert_eq!(o.len(), 12, "every task ran");
        if seed == "3" {
            seen.insert(o);
        }
    }
    assert_eq!(seen.len(), 1, "seed 3 handed the tasks out the same way");
}

/// Programs whose library helpers (a `Manager`'s server process and its
/// threads, a `ProcessPoolExecutor`'s workers and threads) run free in a
/// gated run, with the arguments each is run with.
const HELPER_PROGRAMS: &[(&str, &[&str])] = &[
    ("manager_queue.py", &[]),
    ("manager_value_dict.py", &[]),
    ("process_pool_executor.py", &[]),
    ("manager_start_methods.py", &["fork"]),
    ("manager_start_methods.py", &["spawn"]),
    ("manager_start_methods.py", &["forkserver"]),
];

/// Each process's (or thread's) announced steps, in order.
fn steps(t: &Traced) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &t.events {
        if let Body::Pending { action, retry, .. } = &e.body {
            let who = e.thread.clone().unwrap_or_else(|| e.proc_id.clone());
            m.entry(who)
                .or_default()
                .push(format!("{action}{}", if *retry { " (again)" } else { "" }));
        }
    }
    m
}

#[test]
fn gated_runs_of_managers_and_executors_end_as_python3_does() {
    let Some(py) = python() else { return };
    for (name, args) in HELPER_PROGRAMS {
        let (code, out, _) = plain(&py, name, args);
        let what = format!("{name} {}", args.join(" "));
        // A free run too (a Manager under spawn/forkserver pickles its
        // registry, `threading.Lock` among it).
        let t = traced(&py, name, &["--stdout", "block"], args);
        assert_eq!(t.code, code, "{what} free: {}", t.stderr);
        assert_eq!(lines(&t.stream(Stream::Stdout)), lines(&out), "{what} free");
        assert!(t.kinds("free").is_empty(), "{what}: `free` only when gated");
        let mut first: Option<(String, BTreeMap<String, Vec<String>>)> = None;
        for seed in ["1", "2", "1"] {
            let t = traced(
                &py,
                name,
                &["--stdout", "block", "--schedule", "seeded", "--seed", seed],
                args,
            );
            assert_eq!(t.code, code, "{what} seed {seed}: {}", t.stderr);
            let stdout = t.stream(Stream::Stdout);
            assert_eq!(lines(&stdout), lines(&out), "{what} seed {seed}");
            assert!(
                !t.kinds("pending").is_empty(),
                "{what}: a gated run has steps"
            );
            // The helpers said that they run free.
            assert!(!t.kinds("free").is_empty(), "{what}: nobody runs free");
            for e in t.kinds("free") {
                assert!(
                    !t.events.iter().any(|p| p.body.kind() == "pending"
                        && p.proc_id == e.proc_id
                        && p.thread == e.thread
                        && p.seq > e.seq),
                    "{what}: {} {:?} runs free, yet waits for go",
                    e.proc_id,
                    e.thread
                );
            }
            if seed == "1" {
                let s = (stdout, steps(&t));
                match &first {
                    None => first = Some(s),
                    Some(f) => assert_eq!(&s, f, "{what}: seed 1 twice"),
                }
            }
        }
    }
}

#[test]
fn a_seed_repeats_the_manager_value_program() {
    let Some(py) = python() else { return };
    let mut by_seed = BTreeMap::new();
    for seed in ["4", "4", "4", "1", "2", "3", "5", "6", "7", "8"] {
        let t = traced(
            &py,
            "manager_value_unlocked.py",
            &["--schedule", "seeded", "--seed", seed],
            &[],
        );
        assert_eq!(t.code, 0, "seed {seed}: {}", t.stderr);
        let fin = final_value(&t.stream(Stream::Stdout));
        assert!((1..=10).contains(&fin), "seed {seed}: final {fin}");
        // `v.value += 1` on a proxy: a get, then a set, each a step.
        let s = steps(&t);
        assert_eq!(
            s.get("main.2")
                .map(|v| v.iter().filter(|a| a.ends_with("Value.set")).count()),
            Some(5),
            "{s:?}"
        );
        by_seed
            .entry(seed)
            .or_insert_with(BTreeSet::new)
            .insert(fin);
    }
    assert_eq!(by_seed["4"].len(), 1, "seed 4 gave {:?}", by_seed["4"]);
    let finals: BTreeSet<i64> = by_seed.values().flatten().copied().collect();
    assert!(
        finals.len() >= 2,
        "one final value over 8 seeds: {finals:?}"
    );
}

/// A `Manager().Value` is a shared value too: `stats` shows its final
/// value (not "(no shared values)"), and its lost updates, exactly.
#[test]
fn stats_shows_a_manager_values_final_value_and_its_lost_updates() {
    let Some(py) = python() else { return };
    // A free run: the race events account for every lost update.
    let t = traced(&py, "manager_value_unlocked.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.kinds("resource")
            .iter()
            .any(|e| matches!(&e.body, Body::Resource { name, .. } if name == "v")),
        "the Manager's Value is set up as v"
    );
    assert_eq!(t.lost(), 10 - final_value(&t.stream(Stream::Stdout)));

    let out = command(bin())
        .args(["stats", "--runs", "8", "--seed", "1"])
        .arg(program("manager_value_unlocked.py"))
        .output()
        .expect("forkscope stats runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("no shared values"), "{text}");
    // `  v = 7  ####### 3`: final value and runs.
    let mut runs = 0;
    let mut short = 0;
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("v = ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let fin: i64 = words.next().and_then(|w| w.parse().ok()).expect("a value");
        let n: i64 = words.last().and_then(|w| w.parse().ok()).expect("runs");
        assert!((1..=10).contains(&fin), "{text}");
        runs += n;
        short += n * (10 - fin);
    }
    assert_eq!(runs, 8, "{text}");
    if short == 0 {
        assert!(text.contains("lost updates: none"), "{text}");
    } else {
        assert!(
            text.contains(&format!("lost updates: {short} updates lost")),
            "exact lost updates ({short}): {text}"
        );
    }
}

#[test]
fn pool_callbacks_have_events_of_their_own() {
    let Some(py) = python() else { return };
    let t = traced(&py, "pool_callback_map.py", &[], &[]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let cb = t
        .events
        .iter()
        .position(|e| matches!(&e.body, Body::Callback { func, error: false, .. } if func == "got"))
        .expect("a callback event");
    let (pool, task) = match &t.events[cb].body {
        Body::Callback { pool, task, .. } => (pool.clone(), *task),
        _ => unreachable!(),
    };
    assert_eq!(pool, "pool");
    // For the task whose result (49) it gets, after that result came in,
    // from the same thread, before what the callback prints.
    let done = t
        .events
        .iter()
        .position(|e| matches!(&e.body, Body::TaskDone { task: n, value: Value::Int(49), .. } if *n == task))
        .expect("task 0's result");
    let recv = t
        .events
        .iter()
        .position(|e| {
            matches!(
                &e.body,
                Body::Recv {
                    value: Value::Int(49),
                    ..
                }
            )
        })
        .expect("the result received");
    assert!(done < cb && recv < cb, "the callback runs after its result");
    assert_eq!(t.events[cb].thread, t.events[recv].thread);
    assert!(
        t.events[cb..].iter().any(
            |e| matches!(&e.body, Body::Output { text, .. } if text.contains("callback got 49"))
        ),
        "the callback's print comes after its event"
    );
    assert_eq!(t.kinds("callback").len(), 1, "map has no callback");

    // An error_callback is one too, said as such.
    let t = traced(&py, "pool_shapes.py", &[], &[]);
    assert!(
        t.events
            .iter()
            .any(|e| matches!(&e.body, Body::Callback { error: true, .. })),
        "the error_callback"
    );
    // The gated pool runs callbacks in the owner's thread: said there too.
    let t = traced(
        &py,
        "pool_callback_map.py",
        &["--schedule", "seeded", "--seed", "3"],
        &[],
    );
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert_eq!(t.kinds("callback").len(), 1);
}
