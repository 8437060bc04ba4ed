//! `Manager()`: a real server process holds the queue; every put, get and
//! qsize is a request to it over a socket, answered by a reply.

mod common;

use common::*;
use forkscope::protocol::{Body, Event, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// Requests sent by `from` on the manager's channel, with their msg ids.
fn requests<'a>(run: &'a Run, from: &str) -> Vec<(&'a str, &'a Value)> {
    run.events
        .iter()
        .filter(|e| e.proc_id == from)
        .filter_map(|e| match &e.body {
            Body::Send {
                channel,
                msg,
                value,
                ..
            } if channel == "manager" => Some((msg.as_str(), value)),
            _ => None,
        })
        .collect()
}

fn received_by<'a>(run: &'a Run, by: &str, channel: &str) -> Vec<(&'a str, &'a Value)> {
    run.events
        .iter()
        .filter(|e| e.proc_id == by)
        .filter_map(|e| match &e.body {
            Body::Recv {
                channel: c,
                msg,
                value,
                ..
            } if c == channel => Some((msg.as_str(), value)),
            _ => None,
        })
        .collect()
}

fn position(run: &Run, what: &str, f: impl Fn(&Event) -> bool) -> usize {
    run.events
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("no {what}"))
}

#[test]
fn manager_queue_is_a_server_process_and_every_put_and_get_is_a_message_to_it() {
    let run = run_jsonl("manager-queue", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Four processes: main, the manager's server, two pool workers.
    let hellos: BTreeMap<String, (String, Option<String>, i32)> = run
        .events
        .iter()
        .filter(|e| e.proc_id != "runner")
        .filter_map(|e| match &e.body {
            Body::Hello { role, parent, .. } => {
                Some((e.proc_id.clone(), (role.clone(), parent.clone(), e.pid)))
            }
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = hellos.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        ["main", "main.manager", "po.w1", "po.w2"],
        "{hellos:?}"
    );
    let (role, parent, mgr_pid) = &hellos["main.manager"];
    assert_eq!(role, "SyncManager");
    assert_eq!(parent.as_deref(), Some("main"));
    assert_ne!(*mgr_pid, hellos["main"].2, "a process of its own");

    // Each of the six puts is a request from the writer, received by the
    // manager, which keeps the item (a `put` on q by the manager itself).
    let mut writer = None;
    for w in ["po.w1", "po.w2"] {
        if requests(&run, w)
            .iter()
            .any(|(_, v)| **v == s("q.put('d')"))
        {
            writer = Some(w);
        }
    }
    let writer = writer.expect("a worker sends q.put('d') to the manager");
    let puts: Vec<&str> = requests(&run, writer)
        .into_iter()
        .filter(|(_, v)| matches!(v, Value::Str(t) if t.starts_with("q.put(")))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(puts.len(), 6, "one request per letter of 'dongGe'");
    let at_manager: Vec<&str> = received_by(&run, "main.manager", "manager")
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    for m in &puts {
        assert!(at_manager.contains(m), "the manager received {m}");
    }
    let kept: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Put { channel, value, .. } if channel == "q" => {
                assert_eq!(e.proc_id, "main.manager", "only the server touches q");
                Some(value)
            }
            _ => None,
        })
        .collect();
    let letters: Vec<Value> = "dongGe".chars().map(|c| s(&c.to_string())).collect();
    assert_eq!(kept, letters.iter().collect::<Vec<_>>());
    let taken: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Get { channel, value, .. } if channel == "q" => {
                assert_eq!(e.proc_id, "main.manager", "only the server touches q");
                Some(value)
            }
            _ => None,
        })
        .collect();
    assert_eq!(taken, letters.iter().collect::<Vec<_>>());

    // The reader asks (qsize, then a get per item), and every answer is a
    // reply from the manager, in the order the writer put them.
    // Either worker may take the reader's task, the writer's too (a pool
    // hands each task to whichever worker is free, in CPython as here).
    let reader = ["po.w1", "po.w2"]
        .into_iter()
        .find(|w| requests(&run, w).iter().any(|(_, v)| **v == s("q.qsize()")))
        .expect("a worker asks q.qsize()");
    let all = requests(&run, reader);
    let first = all
        .iter()
        .position(|(_, v)| **v == s("q.qsize()"))
        .unwrap_or_default();
    let asked: Vec<&Value> = all[first..].iter().map(|(_, v)| *v).collect();
    assert_eq!(asked.iter().filter(|v| ***v == s("q.get()")).count(), 6);
    // Each request has its reply, in order: skip the writer's acks.
    let replies: Vec<&Value> = received_by(&run, reader, "manager")
        .into_iter()
        .skip(first)
        .map(|(_, v)| v)
        .collect();
    let mut expected = vec![Value::Int(6)];
    expected.extend(letters.iter().cloned());
    assert_eq!(replies, expected.iter().collect::<Vec<_>>());
    // What the reader printed, as it announced it (seq > 0: the collector's
    // own copy of a line, issue 9's duplicate-line defect, is not counted).
    let printed: String = run
        .events
        .iter()
        .filter(|e| e.proc_id == reader && e.seq > 0)
        .filter_map(|e| match &e.body {
            Body::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let got: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("reader got from the Queue: "))
        .collect();
    assert_eq!(got, ["d", "o", "n", "g", "G", "e"], "{printed}");

    // At main's end the manager is shut down (a last request), exits 0 and
    // is reaped by main, before main exits.
    let shutdown = position(&run, "shutdown request", |e| {
        e.proc_id == "main"
            && matches!(&e.body, Body::Send { value, .. } if *value == s("shutdown()"))
    });
    let end = position(&run, "(pid) End", |e| {
        e.proc_id == "main" && matches!(&e.body, Body::Output { text, .. } if text.contains("End"))
    });
    let mgr_exit = position(&run, "the manager's exit", |e| {
        e.proc_id == "main.manager" && matches!(e.body, Body::Exit { code: Some(0), .. })
    });
    let reaped = position(&run, "the manager reaped by main", |e| {
        e.proc_id == "main.manager" && matches!(&e.body, Body::Reaped { by, .. } if by == "main")
    });
    let main_exit = position(&run, "main's exit", |e| {
        e.proc_id == "main" && matches!(e.body, Body::Exit { .. })
    });
    assert!(
        end < shutdown && shutdown < mgr_exit && mgr_exit < reaped && reaped < main_exit,
        "end {end}, shutdown {shutdown}, manager exit {mgr_exit}, reaped {reaped}, main exit {main_exit}: {:#?}",
        &run.events[end.min(shutdown)..]
    );
}

const WAITING_GET: &str = r#"
name = "mgr-wait"
title = "t"
explain = "x"
[queues.q]
manager = "m"
[roles.main]
steps = [
  { manager = "m" },
  { spawn = "getter", as = "g" },
  { sleep_ms = 300 },
  { put = "q", value = "'late'" },
  { join = "g" },
]
[roles.getter]
steps = [
  { get = "q", into = "v" },
  { print = "got {v}" },
]
"#;

#[test]
fn a_get_on_an_empty_manager_queue_waits_for_the_servers_reply() {
    let f = scenario_file("mgr-wait", WAITING_GET);
    let run = run_jsonl(f.to_str().expect("utf-8 path"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.terminal().contains("got late"), "{}", run.terminal());
    let blocked = position(&run, "the getter blocked", |e| {
        e.proc_id == "main.1"
            && matches!(&e.body, Body::Block { on } if on.starts_with("get on empty manager queue q"))
    });
    let put = position(&run, "main's put request", |e| {
        e.proc_id == "main"
            && matches!(&e.body, Body::Send { value, .. } if *value == s("q.put('late')"))
    });
    let reply = position(&run, "the reply with the item", |e| {
        e.proc_id == "main.1"
            && matches!(&e.body, Body::Recv { channel, value, .. }
                if channel == "m" && *value == s("late"))
    });
    assert!(blocked < put && put < reply);
    // The server's reply to the getter came only after the put arrived.
    let sent = position(&run, "the manager's reply", |e| {
        e.proc_id == "main.m" && matches!(&e.body, Body::Send { value, .. } if *value == s("late"))
    });
    assert!(put < sent && sent < reply);
}

const OWNER_KILLED: &str = r#"
name = "mgr-owner-killed"
title = "t"
explain = "x"
[queues.q]
manager = "m"
[roles.main]
steps = [
  { spawn = "owner", as = "o" },
  { sleep_ms = 300 },
  { signal = "o", sig = "KILL" },
  { join = "o" },
]
[roles.owner]
steps = [
  { manager = "m" },
  { put = "q", value = 1 },
  { sleep_ms = 60000 },
]
"#;

#[test]
fn a_manager_dies_with_its_owner_and_never_outlives_the_run() {
    let f = scenario_file("mgr-owner-killed", OWNER_KILLED);
    let start = Instant::now();
    let run = run_jsonl(f.to_str().expect("utf-8 path"), &["--timeout", "20"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the run waited for the manager: {:?}",
        start.elapsed()
    );
    let exit = run
        .events
        .iter()
        .find(|e| e.proc_id == "main.1.m" && matches!(e.body, Body::Exit { .. }))
        .expect("the manager's end is seen");
    assert!(
        matches!(&exit.body, Body::Exit { signal: Some(s), .. } if s == "SIGKILL"),
        "{exit:?}"
    );
}

#[test]
fn gated_runs_of_a_manager_scenario_are_refused_with_a_reason() {
    let run = forkscope(&[
        "run",
        "manager-queue",
        "--schedule",
        "seeded",
        "--seed",
        "1",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("Manager") && run.stderr.contains("run it free"),
        "{}",
        run.stderr
    );
}
