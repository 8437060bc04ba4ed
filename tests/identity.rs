//! Identity on the probe socket: a process of the same user that is not
//! part of the run cannot speak for the run's processes, a process of the
//! run cannot speak for another one, kinds only forkscope makes never come
//! from the socket, and a crowd of idle connections does not keep the
//! run's own processes out. All through the real binary.

mod common;

use common::*;
use forkscope::protocol::{Body, Event, Value};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One at a time: the last test holds 10,000 sockets.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One wire line from a stranger: `proc` claims to be someone.
fn wire(proc_id: &str, pid: i32, kind: &str, fields: serde_json::Value) -> String {
    let mut e = json!({
        "t_ns": forkscope::protocol::now_ns(),
        "seq": 1,
        "proc": proc_id,
        "pid": pid,
        "kind": kind,
    });
    if let (Some(e), Some(f)) = (e.as_object_mut(), fields.as_object()) {
        e.extend(f.clone());
    }
    format!("{e}\n")
}

/// Connects and sends `lines`; the stream (it may already be closed).
fn stranger(addr: &str, lines: &[String]) -> UnixStream {
    let mut s = connect_probe(addr).expect("the socket takes connections");
    for l in lines {
        if s.write_all(l.as_bytes()).is_err() {
            break; // closed on us: fine
        }
    }
    s
}

/// What the collector does with a connection within 5 s: `None` if it
/// closed it, else what it wrote to it.
fn answer(s: &mut UnixStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => Some(format!("still open ({e})")),
    }
}

fn hello_of<'a>(events: &'a [Event], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.proc_id == id && matches!(e.body, Body::Hello { .. }))
        .collect()
}

const SLOW_PAIR: &str = r#"
name = "slow-pair"
title = "Two processes that take their time"
explain = "For the identity tests."
source = "time.sleep(2)"
[values]
v = 0
[roles.main]
steps = [
  { spawn = "child", as = "c" },
  { sleep_ms = 2500 },
  { print = "main done" },
  { join = "c" },
]
[roles.child]
steps = [ { sleep_ms = 1500 }, { print = "child done" } ]
"#;

#[test]
fn a_stranger_cannot_speak_for_the_runs_processes() {
    let _one = serial();
    let file = scenario_file("identity-stranger", SLOW_PAIR);
    let mut live = Live::start(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    let child = live.wait_for(Duration::from_secs(10), |e| {
        e.proc_id == "main.1" && matches!(e.body, Body::Hello { .. })
    });
    let main_pid = hello_of(&live.seen, "main")[0].pid;
    let runner_pid = hello_of(&live.seen, "runner")[0].pid;
    let addr = probe_address(live.child.id());
    let me = std::process::id() as i32;
    let hello = |id: &str, parent: Option<&str>| {
        let mut f = json!({"ppid": 1, "role": "x"});
        if let Some(p) = parent {
            f["parent"] = p.into();
        }
        wire(id, me, "hello", f)
    };
    let mut conns = [
        // Hello as main, then speak for it.
        stranger(
            &addr,
            &[
                hello("main", Some("runner")),
                wire(
                    "main",
                    main_pid,
                    "output",
                    json!({"stream": "stdout", "text": "forged by a stranger\n"}),
                ),
                wire(
                    "main",
                    main_pid,
                    "write",
                    json!({"name": "v", "value": 666}),
                ),
                wire("main", main_pid, "exit", json!({"code": 99})),
                wire(
                    "main",
                    main_pid,
                    "race",
                    json!({"name": "v", "read": 0, "replaced": 2, "written": 1, "lost": 2}),
                ),
                wire(
                    "main",
                    main_pid,
                    "deadlock",
                    json!({"cycle": "main -> main.1 -> main"}),
                ),
                wire("main", main_pid, "go", json!({})),
            ],
        ),
        // Hello as the runner: end main and the runner.
        stranger(
            &addr,
            &[
                hello("runner", None),
                wire(
                    "main",
                    main_pid,
                    "reaped",
                    json!({"by": "runner", "by_pid": runner_pid, "code": 99}),
                ),
                wire("runner", runner_pid, "exit", json!({"code": 42})),
            ],
        ),
        // Hello as the child.
        stranger(
            &addr,
            &[
                hello("main.1", Some("main")),
                wire(
                    "main.1",
                    child.pid,
                    "output",
                    json!({"stream": "stdout", "text": "forged by a stranger\n"}),
                ),
            ],
        ),
        // A name nobody announced, speaking about others.
        stranger(
            &addr,
            &[
                hello("stranger", Some("main")),
                wire(
                    "main",
                    main_pid,
                    "reaped",
                    json!({"by": "stranger", "by_pid": me, "code": 99}),
                ),
                wire("main.1", child.pid, "exit", json!({"code": 99})),
                wire(
                    "main.1",
                    child.pid,
                    "adopted",
                    json!({"by": "runner", "new_ppid": me}),
                ),
            ],
        ),
    ];
    for (n, s) in conns.iter_mut().enumerate() {
        assert_eq!(answer(s), None, "stranger connection {n} was not closed");
    }
    let (code, stderr) = live.finish();
    live.drain();
    let events = &live.seen;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        events.iter().all(|e| e.pid != me),
        "an event with the stranger's pid: {events:#?}"
    );
    for e in events {
        match &e.body {
            Body::Output { text, .. } => assert!(!text.contains("stranger"), "{e:?}"),
            Body::Write { value, .. } => assert_ne!(value, &Value::Int(666), "{e:?}"),
            Body::Exit { code, .. } => assert!(!matches!(code, Some(99 | 42)), "{e:?}"),
            Body::Reaped { code, by, .. } => {
                assert!(code != &Some(99) && by != "stranger", "{e:?}")
            }
            Body::Race { .. } | Body::Deadlock { .. } | Body::Adopted { .. } => {
                panic!("forged {e:?}")
            }
            _ => {}
        }
    }
    for id in ["runner", "main", "main.1"] {
        assert_eq!(hello_of(events, id).len(), 1, "hellos of {id}: {events:#?}");
    }
    assert!(hello_of(events, "stranger").is_empty());
    assert!(
        stderr.contains("4 connections refused (from a process outside the run)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn a_process_of_the_run_cannot_speak_for_another() {
    let _one = serial();
    // main.1 is a program that speaks the protocol: it says hello as its
    // parent (refused: not the pid main's parent announced), then, as
    // itself, sends kinds only forkscope makes and events about main.
    let file = scenario_file("identity-impostor", &shim_scenario("impostor", "impostor"));
    let run = forkscope(&[
        "run",
        file.to_str().unwrap(),
        "--allow-exec",
        "--format",
        "jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shim_pid = run
        .of_kind("exec")
        .first()
        .map(|e| e.pid)
        .expect("main.1 execs the shim");
    assert_eq!(hello_of(&run.events, "main").len(), 1, "{:#?}", run.events);
    assert!(
        hello_of(&run.events, "main.1")
            .iter()
            .all(|e| e.pid == shim_pid)
    );
    assert!(
        run.output_of("main.1")
            .contains("impostor connection closed"),
        "{}",
        run.output_of("main.1")
    );
    // Its own words get through...
    assert!(run.events.iter().any(|e| e.proc_id == "main.1"
        && matches!(&e.body, Body::Narrate { text, .. } if text == "the shim speaks")));
    // ...its forgeries do not.
    for kind in ["race", "deadlock", "adopted", "sample", "signal"] {
        assert!(run.of_kind(kind).is_empty(), "{kind}: {:#?}", run.events);
    }
    let main_ends: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.proc_id == "main")
        .filter(|e| matches!(e.body, Body::Exit { .. } | Body::Reaped { .. }))
        .collect();
    assert_eq!(main_ends.len(), 2, "{main_ends:#?}");
    assert!(main_ends.iter().all(|e| matches!(
        e.body,
        Body::Exit { code: Some(0), .. } | Body::Reaped { code: Some(0), .. }
    )));
    assert!(
        run.stderr.contains("1 hellos under an identity not theirs"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("7 events forged for other processes"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

const GATED: &str = r#"
name = "gated-pair"
title = "A child that waits for main, which runs a real program first"
explain = "For the gated identity test."
source = "q.get()"
[queues.q]
maxsize = 0
[roles.main]
steps = [
  { spawn = "child", as = "c" },
  { exec = ["sleep", "2"], capture = false },
  { put = "q", value = "'x'" },
  { join = "c" },
]
[roles.child]
steps = [ { get = "q", into = "x" }, { print = "child got {x}" } ]
"#;

#[test]
fn a_stranger_cannot_take_a_processs_go() {
    let _one = serial();
    let file = scenario_file("identity-gated", GATED);
    let mut live = Live::start(&[
        "run",
        file.to_str().unwrap(),
        "--schedule",
        "seeded",
        "--allow-exec",
        "--timeout",
        "20",
        "--format",
        "jsonl",
    ]);
    // main.1 waits for the queue; main runs `sleep 2` (main.2).
    live.wait_for(Duration::from_secs(10), |e| {
        e.proc_id == "main.2" && matches!(e.body, Body::Exec { .. })
    });
    let child_pid = hello_of(&live.seen, "main.1")[0].pid;
    let addr = probe_address(live.child.id());
    let hello = wire(
        "main.1",
        child_pid,
        "hello",
        json!({"ppid": 1, "role": "child", "parent": "main"}),
    );
    let mut s = stranger(&addr, &[hello]);
    assert_eq!(answer(&mut s), None, "the stranger was not refused");
    let (code, stderr) = live.finish();
    live.drain();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        live.seen.iter().any(|e| e.proc_id == "main.1"
            && matches!(&e.body, Body::Output { text, .. } if text.contains("child got x"))),
        "{:#?}",
        live.seen
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

const SPAWNER: &str = r#"
name = "spawner"
title = "Starts a child every 100 ms"
explain = "For the crowd test."
source = "for i in range(n): Process(target=f).start()"
[params.n]
default = 30
min = 1
max = 100
[roles.main]
steps = [
  { repeat = "n", steps = [ { spawn = "child" }, { sleep_ms = 100 } ] },
  { join = "*" },
]
[roles.child]
steps = [ { print = "child {pid} done" } ]
"#;

/// Raises our soft limit on open files as far as allowed; the limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn ten_thousand_idle_connections_do_not_keep_the_runs_processes_out() {
    let _one = serial();
    let crowd = 10_000usize;
    let limit = raise_nofile();
    assert!(
        limit > crowd as u64 + 200,
        "this test needs {} open files (ulimit -Hn is {limit})",
        crowd + 200
    );
    let file = scenario_file("identity-crowd", SPAWNER);
    let mut live = Live::start(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    live.wait_for(Duration::from_secs(10), |e| {
        e.proc_id == "main" && matches!(e.body, Body::Hello { .. })
    });
    let addr = probe_address(live.child.id());
    // A stranger keeps 10,000 connections open that never say anything:
    // whenever the collector closes some, it opens new ones.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let holder = {
        let (stop, opened) = (stop.clone(), opened.clone());
        std::thread::spawn(move || {
            let mut held: Vec<UnixStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                held.retain(|s| {
                    let _ = s.set_nonblocking(true);
                    let mut b = [0u8; 1];
                    // Still open: nothing to read yet.
                    matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < crowd && !stop.load(Ordering::SeqCst) {
                    match connect_probe(&addr) {
                        Ok(s) => held.push(s),
                        Err(_) => break,
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                let pause = Instant::now() + Duration::from_millis(500);
                while Instant::now() < pause && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let (code, stderr) = live.finish();
    live.drain();
    stop.store(true, Ordering::SeqCst);
    let _ = holder.join();
    assert!(
        opened.load(Ordering::Relaxed) >= crowd,
        "the crowd never formed"
    );
    assert_eq!(code, Some(0), "{stderr}");
    let events = &live.seen;
    let children: Vec<&Event> = events
        .iter()
        .filter(|e| e.proc_id.starts_with("main.") && matches!(e.body, Body::Hello { .. }))
        .collect();
    assert_eq!(children.len(), 30, "children that said hello; {stderr}");
    for c in children {
        let printed: String = events
            .iter()
            .filter(|e| e.proc_id == c.proc_id)
            .filter_map(|e| match &e.body {
                Body::Output { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(printed, format!("child {} done\n", c.pid), "{}", c.proc_id);
    }
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
