//! Bad input and misbehaving processes: clear errors, nothing left behind,
//! garbage counted and dropped while the run goes on.

mod common;

use common::*;
use forkscope::protocol::Body;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const LONG_RUN: &str = r#"
name = "long-run"
title = "Sleeps for a long time"
explain = "A main and a child that both sleep."
source = "time.sleep(30)"
[roles.main]
steps = [
  { spawn = "sleeper", as = "c" },
  { sleep_ms = 30000 },
  { join = "c" },
]
[roles.sleeper]
steps = [ { sleep_ms = 30000 } ]
"#;

fn wait_for_child(live: &mut Live) {
    live.wait_for(Duration::from_secs(10), |e| {
        e.proc_id == "main.1" && matches!(e.body, Body::Hello { .. })
    });
}

#[test]
fn nothing_remains_after_a_finished_run() {
    let run = run_jsonl("no-join", &["--time-scale", "0.1"]);
    assert_eq!(run.code, 0);
    assert!(run.pids().len() >= 3);
    assert_eq!(survivors_after_2s(&run.pids()), Vec::<i32>::new());
}

#[test]
fn nothing_remains_after_a_timeout() {
    let file = scenario_file("timeout", LONG_RUN);
    let run = forkscope(&[
        "run",
        file.to_str().unwrap(),
        "--format",
        "jsonl",
        "--timeout",
        "1",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    let pids = run.pids();
    assert!(pids.len() >= 3, "{pids:?}");
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}

#[test]
fn nothing_remains_after_ctrl_c() {
    let file = scenario_file("ctrlc", LONG_RUN);
    let mut live = Live::start(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    wait_for_child(&mut live);
    let pid = nix::unistd::Pid::from_raw(live.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let (code, _) = live.finish();
    assert_eq!(code, Some(1));
    assert_eq!(survivors_after_2s(&live.pids()), Vec::<i32>::new());
}

#[test]
fn nothing_remains_after_kill_9_of_forkscope() {
    let file = scenario_file("kill9", LONG_RUN);
    let mut live = Live::start(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    wait_for_child(&mut live);
    let pids = live.pids();
    assert!(pids.iter().all(|&p| alive(p)));
    live.child.kill().unwrap(); // SIGKILL: no chance to clean up
    let _ = live.child.wait();
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}

const GOOD: &str = r#"
name = "good"
title = "A good scenario"
explain = "Fine."
source = "print(n)"
locks = ["l"]

[params.n]
default = 2
min = 1
max = 4
help = "how many"

[values]
v = 0

[roles.main]
steps = [
  { print = "n = {n}" },
  { spawn = "child", as = "c" },
  { join = "c" },
]

[roles.child]
steps = [ { lock = "l" }, { add = "v", by = 1 }, { unlock = "l" } ]
"#;

/// (what is broken, how, and the text that marks the spot)
fn broken_files() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "syntax error",
            GOOD.replace("title = \"A good", "title = A good"),
            "title = A good",
        ),
        (
            "unknown key",
            GOOD.replace("{ join = \"c\" }", "{ jion = \"c\" }"),
            "jion",
        ),
        (
            "wrong type",
            GOOD.replace("{ print = \"n = {n}\" }", "{ print = 5 }"),
            "print = 5",
        ),
        (
            "unknown role",
            GOOD.replace("spawn = \"child\"", "spawn = \"kid\""),
            "spawn = \"kid\"",
        ),
        (
            "param out of range",
            GOOD.replace("default = 2", "default = 9"),
            "default = 9",
        ),
        (
            "unknown lock",
            GOOD.replace("{ lock = \"l\" }", "{ lock = \"m\" }"),
            "lock = \"m\"",
        ),
    ]
}

#[test]
fn broken_scenario_files_name_file_line_and_column() {
    for (what, text, marker) in broken_files() {
        let file = scenario_file(&what.replace(' ', "-"), &text);
        let path = file.to_str().unwrap();
        let line = text.lines().position(|l| l.contains(marker)).unwrap() + 1;
        for cmd in ["check", "run"] {
            let run = forkscope(&[cmd, path]);
            assert_eq!(run.code, 2, "{what} ({cmd}): {}", run.stderr);
            let want = format!("{path}:{line}:");
            assert!(
                run.stderr.contains(&want),
                "{what} ({cmd}): expected {want} in {}",
                run.stderr
            );
            assert_eq!(
                run.stderr.lines().count(),
                1,
                "one sentence: {}",
                run.stderr
            );
        }
    }
    let good = scenario_file("good", GOOD);
    assert_eq!(forkscope(&["check", good.to_str().unwrap()]).code, 0);
}

#[test]
fn bad_command_lines_exit_2() {
    let run = forkscope(&["run", "no-such-scenario"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("forkscope list"), "{}", run.stderr);
    let run = forkscope(&["run", "unlocked-counter", "--set", "workers=99"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("maximum"), "{}", run.stderr);
    let run = forkscope(&["run", "unlocked-counter", "--set", "workers=two"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("needs an integer"), "{}", run.stderr);
    let run = forkscope(&["run", "unlocked-counter", "--set", "wrokers=2"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("workers"), "{}", run.stderr);
}

#[test]
fn without_a_display_the_app_says_so_in_one_line_and_exits_2() {
    let out = Command::new(bin())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("forkscope runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no display"), "{stderr}");
    assert!(!stderr.contains("registry"), "{stderr}");
}

const FORK_BOMB: &str = r#"
name = "fork-tree"
title = "fork in a loop"
explain = "2^n processes."
source = "for i in range(n): os.fork()"
[params.n]
default = 10
min = 1
max = 20
[roles.main]
steps = [ { repeat = "n", steps = [ { fork = "" } ] } ]
"#;

#[test]
fn too_many_processes_are_refused_before_anything_forks() {
    let file = scenario_file("fork-tree", FORK_BOMB);
    let path = file.to_str().unwrap();
    let run = forkscope(&["run", path]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("1024 processes"), "{}", run.stderr);
    assert!(run.stderr.contains("--max-procs"), "{}", run.stderr);
    // Within the limit it runs: 2^5 = 32 processes.
    let run = forkscope(&["run", path, "--set", "n=5", "--format", "jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.of_kind("hello").len(), 1 + 32);
}

#[test]
fn a_failing_scenario_exits_1() {
    let text = GOOD.replace("{ join = \"c\" }", "{ join = \"c\" }, { exit = 3 }");
    let file = scenario_file("fails", &text);
    let run = forkscope(&["run", file.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("code 3"), "{}", run.stderr);
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let mut child = Command::new(bin())
        .args(["run", "locked-counter", "--time-scale", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _ = lines.next();
    drop(lines); // like `| head -1`
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn garbage_on_the_socket_is_counted_and_the_run_goes_on() {
    // The run's own `main.1` (a program it exec'd, speaking the protocol)
    // says hello properly, then misbehaves; and opens a connection that
    // never says hello.
    let file = scenario_file("garbage", &shim_scenario("garbage", "garbage"));
    let mut live = Live::start(&[
        "run",
        file.to_str().unwrap(),
        "--allow-exec",
        "--format",
        "jsonl",
    ]);
    live.wait_for(Duration::from_secs(10), |e| {
        e.proc_id == "main.1" && matches!(e.body, Body::Hello { .. })
    });
    // A stranger of the same user is not even heard.
    let mut s = connect_probe(&probe_address(live.child.id())).unwrap();
    let hello =
        r#"{"t_ns":1,"seq":1,"proc":"intruder","pid":1,"kind":"hello","ppid":1,"role":"x"}"#;
    let _ = writeln!(s, "{hello}"); // it may be closed already

    live.wait_for(
        Duration::from_secs(15),
        |e| matches!(&e.body, Body::Output { text, .. } if text.contains("still here")),
    );
    drop(s);
    let (code, stderr) = live.finish();
    assert_eq!(code, Some(0), "{stderr}");
    for counted in [
        "1 lines that were not JSON",
        "1 lines over 4 KiB",
        "1 lines of an unknown kind",
        "1 connections that never said hello",
        "1 connections refused (from a process outside the run)",
    ] {
        assert!(stderr.contains(counted), "{counted:?} not in {stderr}");
    }
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn record_writes_the_same_events_as_they_happen() {
    let dir = TempDir::new("record");
    let file = dir.join("record.jsonl");
    let run = forkscope(&[
        "run",
        "locked-counter",
        "--time-scale",
        "0.1",
        "--format",
        "jsonl",
        "--record",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert_eq!(recorded, run.stdout);
    assert!(parse_events(&recorded).len() > 20);
}

const FLOOD: &str = r#"
name = "flood"
title = "Prints as fast as it can"
explain = "An output flood."
source = "while True: print('x' * 1000)"
[roles.main]
steps = [
  { repeat = 20000, steps = [ { print = "{'x' * 1000}" } ] },
  { print = "done" },
]
"#;

#[test]
fn an_output_flood_is_cut_counted_and_the_run_ends() {
    let file = scenario_file("flood", FLOOD);
    let run = forkscope(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("bytes of output dropped"),
        "{}",
        run.stderr
    );
    // What was shown stays within the budget, and the flood is named.
    let shown: usize = run
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Output { text, .. } => Some(text.len()),
            _ => None,
        })
        .sum();
    assert!(shown < 20_000 * 1001, "{shown} bytes shown");
    assert!(run.of_kind("error").iter().any(|e| matches!(
        &e.body,
        Body::Error { message } if message.contains("faster than can be shown")
    )));
}

const SELF_SPAWN: &str = r#"
name = "self-spawn"
title = "A role that starts itself"
explain = "Unbounded recursion of processes."
source = "def f(): Process(target=f).start()"
[roles.main]
steps = [ { spawn = "main" } ]
"#;

#[test]
fn a_process_that_starts_itself_is_refused() {
    let file = scenario_file("self-spawn", SELF_SPAWN);
    let run = forkscope(&["run", file.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("nest"), "{}", run.stderr);
}
