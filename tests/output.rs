//! What a user sees of the processes' output, and how a run stops: every
//! line printed once is shown exactly once, in order; `--timeout` and
//! Ctrl-C stop a run however fast events come, and even when nobody reads
//! our stdout.
//!
//! `FORKSCOPE_OUTPUT_RUNS=500 cargo test --test output exactly_once` runs
//! the output check 500 times (docs/reliability/output-and-stopping.md);
//! `FORKSCOPE_OUTPUT_BIN=PATH` runs it against another build (to compare).

mod common;

use common::*;
use forkscope::protocol::{Body, Event};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: each loads the machine on purpose, and a run
/// starved by another test's load would pause between events.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three kinds of processes (a forked copy, spawned children, main) print
/// numbered lines in bursts, with and without pauses. A line is longer
/// than one announced piece (1024 bytes), so one `print` is several
/// announce-then-write pairs in a row.
const BURSTS: &str = r#"
name = "bursts"
title = "Numbered lines in bursts"
explain = "Every process prints numbered lines, several at once, then pauses."
source = "print(n)"

[params.rounds]
default = 4
min = 1
max = 100
help = "bursts per process"

[params.burst]
default = 6
min = 1
max = 100
help = "lines per burst"

[params.pad]
default = 2500
min = 0
max = 10000
help = "dots after the number"

[roles.main]
steps = [
  { fork = "res" },
  { if = "res == 0", then = [
    { repeat = "rounds", var = "r", steps = [
      { repeat = "burst", var = "k", steps = [ { print = "forked {r}.{k} {'.' * pad}" } ] },
      { sleep_ms = 1 },
    ] },
    { exit = 0 },
  ] },
  { spawn = "printer", as = "a", args = { who = "'a'" } },
  { spawn = "printer", as = "b", args = { who = "'b'" } },
  { repeat = "rounds", var = "r", steps = [
    { repeat = "burst", var = "k", steps = [ { print = "main {r}.{k} {'.' * pad}" } ] },
    { print = "part ", end = "" },
    { print = "of main {r}" },
    { sleep_ms = 1 },
  ] },
  { join = "a" },
  { join = "b" },
  { wait = "" },
]

[roles.printer]
args = ["who"]
steps = [
  { repeat = "rounds", var = "r", steps = [
    { repeat = "burst", var = "k", steps = [ { print = "{who} {r}.{k} {'.' * pad}" } ] },
    { sleep_ms = 1 },
  ] },
]
"#;

/// The lines each process prints, in order, by logical id.
fn expected(rounds: u32, burst: u32, pad: usize) -> BTreeMap<String, Vec<String>> {
    let mut want = BTreeMap::new();
    let dots = ".".repeat(pad);
    let numbered = |name: &str, extra: bool| {
        let mut lines = Vec::new();
        for r in 0..rounds {
            for k in 0..burst {
                lines.push(format!("{name} {r}.{k} {dots}"));
            }
            if extra {
                lines.push(format!("part of main {r}"));
            }
        }
        lines
    };
    want.insert("main".to_string(), numbered("main", true));
    want.insert("main.1".to_string(), numbered("forked", false));
    want.insert("main.2".to_string(), numbered("a", false));
    want.insert("main.3".to_string(), numbered("b", false));
    want
}

/// Lines of each process as shown, in the order shown.
fn shown(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    for e in events {
        if let Body::Output { text: t, .. } = &e.body {
            text.entry(e.proc_id.clone()).or_default().push_str(t);
        }
    }
    text.into_iter()
        .map(|(id, t)| (id, t.lines().map(str::to_string).collect()))
        .collect()
}

#[test]
fn every_line_printed_once_is_shown_exactly_once_in_order() {
    let runs: usize = std::env::var("FORKSCOPE_OUTPUT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    exactly_once(runs, &[]);
}

/// The same with Python's buffering on a pipe: each process writes its
/// lines in 8 KiB blocks (many announced lines per write, cut anywhere by
/// the collector's reads) and the rest when it ends.
#[test]
fn with_block_buffering_every_line_is_shown_exactly_once_in_order() {
    let runs: usize = std::env::var("FORKSCOPE_OUTPUT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    exactly_once(runs, &["--stdout", "block"]);
}

fn exactly_once(runs: usize, extra: &[&str]) {
    let _serial = one_at_a_time();
    let exe = std::env::var("FORKSCOPE_OUTPUT_BIN").unwrap_or_else(|_| bin().to_string());
    let file = scenario_file("bursts", BURSTS);
    let path = file.to_str().expect("utf-8 path").to_string();
    let want = expected(4, 6, 2500);
    // A few runs at a time through the real binary, each its own process.
    let parallel = 3;
    let mut failures = Vec::new();
    let mut done = 0;
    while done < runs {
        let batch = parallel.min(runs - done);
        let children: Vec<_> = (0..batch)
            .map(|_| {
                Command::new(&exe)
                    .args(["run", &path, "--format", "jsonl", "--timeout", "30"])
                    .args(extra)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("forkscope starts")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("forkscope ends");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let got = shown(&parse_events(&stdout));
            if out.status.code() != Some(0) || got != want {
                failures.push(format!(
                    "code {:?}, stderr {}\nshown {got:#?}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        done += batch;
    }
    let _ = std::fs::remove_dir_all(file.parent().expect("temp dir"));
    eprintln!(
        "{runs} runs {extra:?}, {} not exactly as printed ({exe})",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} runs did not show every line exactly once; first: {}",
        failures.len(),
        failures[0]
    );
}

/// Events without a pause: three processes narrate in a loop, more than
/// the consumer can take, so events always wait in the channel.
const EVENT_FLOOD: &str = r#"
name = "event-flood"
title = "Events without end"
explain = "main and two children narrate in a loop, as fast as they can."
source = "while True: pass"
[roles.main]
steps = [
  { spawn = "talker", as = "a" },
  { spawn = "talker", as = "b" },
  { loop = [ { narrate = "again" } ] },
]
[roles.talker]
steps = [ { loop = [ { narrate = "again" } ] } ]
"#;

/// Waits for `child` to end, but not past `limit`: then kills it. Its exit
/// code, and how long it ran (from `started`).
fn wait_at_most(
    child: &mut std::process::Child,
    started: Instant,
    limit: Duration,
) -> (Option<i32>, Duration) {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status.code(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every host pid a recorded run reported.
fn recorded_pids(record: &std::path::Path) -> Vec<i32> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut pids: Vec<i32> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter(|e| matches!(e.body, Body::Hello { .. }))
        .map(|e| e.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Starts `forkscope run FILE ARGS --record …` with stdout going to
/// `stdout`; the child and the record's path.
fn start_recorded(
    name: &str,
    scenario: &str,
    args: &[&str],
    stdout: Stdio,
) -> (std::process::Child, std::path::PathBuf, ScenarioFile) {
    let file = scenario_file(name, scenario);
    let record = file.with_extension("jsonl");
    let child = Command::new(bin())
        .arg("run")
        .arg(&*file)
        .args(args)
        .arg("--record")
        .arg(&record)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("forkscope starts");
    (child, record, file)
}

fn remove_test_dir(record: &std::path::Path) {
    if let Some(dir) = record.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The record file makes every event cost a write, so events wait in the
/// channel all the time: the loop never goes 20 ms without one.
#[test]
fn timeout_stops_a_run_whose_events_never_pause() {
    let _serial = one_at_a_time();
    let started = Instant::now();
    let (mut child, record, _file) = start_recorded(
        "flood-timeout",
        EVENT_FLOOD,
        &["--format", "jsonl", "--timeout", "2"],
        Stdio::null(),
    );
    let (code, took) = wait_at_most(&mut child, started, Duration::from_secs(20));
    let pids = recorded_pids(&record);
    remove_test_dir(&record);
    assert_eq!(code, Some(1), "ran {took:?} and was killed");
    assert!(took < Duration::from_secs(8), "a 2 s timeout took {took:?}");
    assert!(!pids.is_empty());
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}

#[test]
fn ctrl_c_stops_a_run_whose_events_never_pause() {
    let _serial = one_at_a_time();
    let (mut child, record, _file) = start_recorded(
        "flood-ctrlc",
        EVENT_FLOOD,
        &["--format", "jsonl", "--timeout", "60"],
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let (code, took) = wait_at_most(&mut child, Instant::now(), Duration::from_secs(20));
    let pids = recorded_pids(&record);
    remove_test_dir(&record);
    assert_eq!(code, Some(1), "ran {took:?} after Ctrl-C and was killed");
    assert!(took < Duration::from_secs(6), "Ctrl-C took {took:?}");
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}

/// Events that keep coming at a calm pace, and a reader that never reads.
const SLEEP_LOOP: &str = r#"
name = "sleep-loop"
title = "Sleeps in short steps, forever"
explain = "main sleeps 2 ms at a time; every sleep is two events."
source = "while True: time.sleep(0.002)"
[roles.main]
steps = [ { spawn = "sleeper", as = "c" }, { loop = [ { sleep_ms = 2 } ] } ]
[roles.sleeper]
steps = [ { loop = [ { sleep_ms = 2 } ] } ]
"#;

/// A pipe whose read end we hold and never read from.
fn unread_pipe() -> (std::os::fd::OwnedFd, Stdio) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    (r, Stdio::from(w))
}

#[test]
fn timeout_stops_the_run_even_when_nobody_reads_stdout() {
    let _serial = one_at_a_time();
    let (_unread, stdout) = unread_pipe();
    let started = Instant::now();
    let (mut child, record, _file) = start_recorded(
        "stuck-timeout",
        SLEEP_LOOP,
        &["--format", "jsonl", "--timeout", "2"],
        stdout,
    );
    let (code, took) = wait_at_most(&mut child, started, Duration::from_secs(20));
    let pids = recorded_pids(&record);
    remove_test_dir(&record);
    assert_eq!(code, Some(1), "ran {took:?} and was killed");
    assert!(took < Duration::from_secs(8), "a 2 s timeout took {took:?}");
    assert!(pids.len() >= 3, "{pids:?}");
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}

#[test]
fn ctrl_c_stops_the_run_even_when_nobody_reads_stdout() {
    let _serial = one_at_a_time();
    let (_unread, stdout) = unread_pipe();
    let (mut child, record, _file) = start_recorded(
        "stuck-ctrlc",
        SLEEP_LOOP,
        &["--format", "jsonl", "--timeout", "60"],
        stdout,
    );
    // Long enough to fill the pipe (64 KiB) with events.
    std::thread::sleep(Duration::from_millis(2500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let (code, took) = wait_at_most(&mut child, Instant::now(), Duration::from_secs(20));
    let pids = recorded_pids(&record);
    remove_test_dir(&record);
    assert_eq!(code, Some(1), "ran {took:?} after Ctrl-C and was killed");
    assert!(took < Duration::from_secs(6), "Ctrl-C took {took:?}");
    assert!(pids.len() >= 3, "{pids:?}");
    assert_eq!(survivors_after_2s(&pids), Vec::<i32>::new());
}
