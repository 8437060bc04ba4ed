//! The race lab from the command line: seeded schedules, replays, stats,
//! exhaustive exploration, lost updates and deadlocks, on real processes.

mod common;

use common::*;
use forkscope::protocol::{Body, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn outcome_lines(run: &Run) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn counters(lines: &[serde_json::Value]) -> BTreeSet<i64> {
    lines
        .iter()
        .map(|l| l["outcome"]["counter"].as_i64().expect("a counter"))
        .collect()
}

fn explore(extra: &[&str], dir: &Path) -> Vec<serde_json::Value> {
    let mut args = vec![
        "explore",
        "unlocked-counter",
        "--set",
        "workers=2",
        "--format",
        "jsonl",
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = forkscope(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    outcome_lines(&run)
}

fn replayed_counter(schedule_file: &str, extra: &[&str]) -> i64 {
    let mut args = vec![
        "run",
        "unlocked-counter",
        "--set",
        "workers=2",
        "--format",
        "jsonl",
    ];
    args.extend_from_slice(extra);
    args.extend(["--schedule-file", schedule_file]);
    let run = forkscope(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Write { name, value, .. } if name == "counter" => value.as_i64(),
            _ => None,
        })
        .next_back()
        .unwrap_or(0)
}

#[test]
fn explore_finds_exactly_the_possible_outcomes_and_replays_them() {
    let dir = TempDir::new("lab");
    for (adds, lock, want) in [
        ("adds=1", "lock=false", vec![1, 2]),
        ("adds=2", "lock=false", vec![2, 3, 4]),
        ("adds=1", "lock=true", vec![2]),
        ("adds=2", "lock=true", vec![4]),
    ] {
        let sub = dir.join(format!("{adds}-{lock}"));
        let lines = explore(&["--set", adds, "--set", lock], &sub);
        assert_eq!(
            counters(&lines),
            want.iter().copied().collect(),
            "{adds} {lock}: {lines:?}"
        );
        for l in &lines {
            assert_eq!(l["deadlock"], false);
            assert!(l["schedules"].as_u64().unwrap() >= 1);
            let file = l["schedule_file"].as_str().unwrap();
            let got = replayed_counter(file, &["--set", adds, "--set", lock]);
            assert_eq!(got, l["outcome"]["counter"].as_i64().unwrap(), "{file}");
        }
    }
}

/// `--jobs N` runs N schedules at a time, each on a runner of its own;
/// what explore finds and reports (outcomes, how many schedules reach
/// each, the schedule written for each) is the same for every N.
#[test]
fn explore_reports_the_same_whatever_the_number_of_runs_at_a_time() {
    let dir = TempDir::new("lab-jobs");
    let mut reports = Vec::new();
    for jobs in ["1", "2", "3"] {
        let sub = dir.join(format!("jobs-{jobs}"));
        let lines = explore(&["--set", "adds=2", "--jobs", jobs], &sub);
        let counts: Vec<(i64, u64)> = lines
            .iter()
            .map(|l| {
                (
                    l["outcome"]["counter"].as_i64().unwrap(),
                    l["schedules"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            [(2, 12), (3, 16), (4, 6)],
            "--jobs {jobs}: {lines:?}"
        );
        let schedules: Vec<String> = lines
            .iter()
            .map(|l| {
                let file = l["schedule_file"].as_str().unwrap();
                // The replay hint names the file itself: leave it out.
                std::fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .filter(|line| !line.starts_with("# replay:"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        reports.push((jobs, schedules));
    }
    for (jobs, schedules) in &reports[1..] {
        assert_eq!(schedules, &reports[0].1, "--jobs {jobs} against --jobs 1");
    }
    // A number of runs at a time that makes no sense is a clear error.
    for bad in ["0", "65", "many"] {
        let run = forkscope(&["explore", "unlocked-counter", "--jobs", bad]);
        assert_eq!(run.code, 2, "--jobs {bad}: {}", run.stderr);
        assert!(
            run.stderr.contains("--jobs"),
            "--jobs {bad}: {}",
            run.stderr
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_outcome_every_time() {
    let args = [
        "stats",
        "unlocked-counter",
        "--set",
        "workers=2",
        "--set",
        "adds=3",
        "--runs",
        "1",
        "--seed",
        "7",
        "--format",
        "jsonl",
    ];
    let first = forkscope(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    for _ in 0..19 {
        let again = forkscope(&args);
        assert_eq!(again.stdout, first.stdout);
    }
}

#[test]
fn a_seeded_run_takes_the_same_schedule_and_events_again() {
    let dir = TempDir::new("seed");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seen: Option<(String, Vec<String>)> = None;
    for i in 0..3 {
        let file = dir.join(format!("s{i}.schedule"));
        let run = run_jsonl(
            "unlocked-counter",
            &[
                "--set",
                "workers=2",
                "--set",
                "adds=3",
                "--schedule",
                "seeded",
                "--seed",
                "11",
                "--save-schedule",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let schedule: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        // The shared-memory events, in order, without pids and times.
        let effects: Vec<String> = run
            .events
            .iter()
            .filter(|e| matches!(e.body, Body::Read { .. } | Body::Write { .. }))
            .map(|e| format!("{} {:?}", e.proc_id, e.body))
            .collect();
        match &seen {
            None => seen = Some((schedule, effects)),
            Some((s, f)) => {
                assert_eq!(&schedule, s);
                assert_eq!(&effects, f);
            }
        }
    }
}

#[test]
fn different_seeds_reach_different_outcomes() {
    let run = forkscope(&[
        "stats",
        "unlocked-counter",
        "--set",
        "workers=2",
        "--set",
        "adds=3",
        "--runs",
        "50",
        "--seed",
        "1",
        "--format",
        "jsonl",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = outcome_lines(&run);
    assert!(lines.len() >= 2, "{lines:?}");
    let runs: u64 = lines.iter().map(|l| l["runs"].as_u64().unwrap()).sum();
    assert_eq!(runs, 50);
}

#[test]
fn a_lost_update_is_reported_as_a_race() {
    let dir = TempDir::new("race");
    let lines = explore(&["--set", "adds=1"], &dir);
    let lost = lines
        .iter()
        .find(|l| l["outcome"]["counter"] == 1)
        .expect("the lost-update outcome");
    let run = forkscope(&[
        "run",
        "unlocked-counter",
        "--set",
        "workers=2",
        "--set",
        "adds=1",
        "--format",
        "jsonl",
        "--schedule-file",
        lost["schedule_file"].as_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let races: Vec<(String, Body)> = run
        .events
        .iter()
        .filter(|e| matches!(e.body, Body::Race { .. }))
        .map(|e| (e.proc_id.clone(), e.body.clone()))
        .collect();
    assert_eq!(races.len(), 1, "{races:?}");
    let (writer, body) = &races[0];
    assert!(writer == "main.1" || writer == "main.2", "{writer}");
    assert_eq!(
        body,
        &Body::Race {
            name: "counter".into(),
            read: Value::Int(0),
            replaced: Value::Int(1),
            written: Value::Int(1),
            lost: Value::Int(1),
        }
    );
}

#[test]
fn a_seeded_deadlock_exits_3_naming_the_cycle_and_leaves_nothing() {
    let mut found = false;
    for seed in 1..=30 {
        let seed = seed.to_string();
        let started = std::time::Instant::now();
        let run = run_jsonl(
            "deadlock-two-locks",
            &["--schedule", "seeded", "--seed", &seed],
        );
        if run.code == 0 {
            continue;
        }
        assert_eq!(run.code, 3, "{}", run.stderr);
        // Found at once, not at the 60 s timeout.
        assert!(started.elapsed().as_secs_f64() < 5.0);
        let line = run.stderr.lines().next().unwrap_or_default();
        assert!(
            line == "deadlock: main.1 holds a, waits for b; main.2 holds b, waits for a"
                || line == "deadlock: main.2 holds b, waits for a; main.1 holds a, waits for b",
            "{line}"
        );
        assert!(run.of_kind("deadlock").len() == 1);
        assert_eq!(survivors_after_2s(&run.pids()), Vec::<i32>::new());
        found = true;
        break;
    }
    assert!(found, "no seed in 1..=30 deadlocked");
}

#[test]
fn a_free_run_that_deadlocks_is_stopped_with_exit_3() {
    let run = run_jsonl("deadlock-two-locks", &["--time-scale", "0.5"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.starts_with("deadlock: "), "{}", run.stderr);
    assert_eq!(survivors_after_2s(&run.pids()), Vec::<i32>::new());
}

#[test]
fn the_lock_chain_prints_in_strict_rotation() {
    let run = run_jsonl("lock-chain-round-robin", &["--time-scale", "0.02"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let order: Vec<String> = run
        .terminal()
        .lines()
        .map(|l| l.trim_matches(|c| c == '-' || c == ' ').to_string())
        .collect();
    let want: Vec<String> = (0..9).map(|i| format!("Task {}", i % 3 + 1)).collect();
    assert_eq!(order, want);
}

#[test]
fn explore_writes_only_into_a_private_directory_of_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("explore-tmp");
    let explore_in = |tmpdir: &Path, out: Option<&Path>| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["explore", "unlocked-counter", "--set", "workers=2"])
            .args(["--set", "adds=1", "--format", "jsonl"])
            .env("TMPDIR", tmpdir);
        if let Some(out) = out {
            cmd.arg("--out").arg(out);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };

    // By default: a fresh directory with a name nobody can guess, 0700.
    let mut dirs = BTreeSet::new();
    for _ in 0..2 {
        let (code, stdout, stderr) = explore_in(&tmp, None);
        assert_eq!(code, Some(0), "{stderr}");
        let first: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        let file = Path::new(first["schedule_file"].as_str().unwrap()).to_path_buf();
        let dir = file.parent().unwrap().to_path_buf();
        assert_eq!(dir.parent(), Some(tmp.path()));
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
        dirs.insert(dir);
    }
    assert_eq!(dirs.len(), 2, "each explore gets its own directory");

    // Someone planted a symlink where a schedule file goes: refused, and
    // what it points at is untouched.
    let precious = tmp.join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    let out = tmp.join("out");
    std::fs::create_dir(&out).unwrap();
    for i in 1..=3 {
        std::os::unix::fs::symlink(
            &precious,
            out.join(format!("unlocked-counter-{i}.schedule")),
        )
        .unwrap();
    }
    let (code, _, stderr) = explore_in(&tmp, Some(&out));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // An --out that is a symlink to a directory is refused too.
    let link = tmp.join("link");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    let (code, _, stderr) = explore_in(&tmp, Some(&link));
    assert_eq!(code, Some(2), "{stderr}");
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The names of the threads of process `pid` now (none once it is gone).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Runs `forkscope ARGS` to the end, looking at its threads every
/// millisecond: every thread name seen, and how many looks there were.
fn threads_seen(args: &[&str]) -> (BTreeSet<String>, usize) {
    let mut child = std::process::Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("forkscope runs");
    let mut seen = BTreeSet::new();
    let mut looks = 0;
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed().as_secs() < 60, "{args:?} never ended");
        seen.extend(thread_names(child.id()));
        looks += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    (seen, looks)
}

#[test]
fn the_lab_reads_its_runs_on_its_own_thread_with_no_collector_thread() {
    // `stats` and `explore` (a shared runner) and a seeded `run` (a runner
    // of its own) read their runs' events on the lab's thread: the process
    // writes wake the lab directly, no collector thread in between.
    // (explore keeps its example schedules: in a directory of ours.)
    let dir = TempDir::new("lab-threads");
    let out = dir.join("explore");
    let out = out.to_str().expect("a UTF-8 path");
    let lab: [&[&str]; 3] = [
        &[
            "stats",
            "unlocked-counter",
            "--set",
            "adds=20",
            "--runs",
            "20",
        ],
        &[
            "explore",
            "unlocked-counter",
            "--set",
            "workers=2",
            "--set",
            "adds=2",
            "--out",
            out,
        ],
        &[
            "run",
            "unlocked-counter",
            "--set",
            "adds=1000",
            "--schedule",
            "seeded",
        ],
    ];
    for args in lab {
        let (seen, looks) = threads_seen(args);
        assert!(looks >= 10, "{args:?}: looked {looks} times only");
        assert!(!seen.is_empty(), "{args:?}: no thread seen");
        assert!(
            !seen.contains("collector"),
            "{args:?} has a collector thread: {seen:?}"
        );
    }
    // A free `run` keeps its collector thread (it writes while it reads).
    let (seen, _) = threads_seen(&["run", "unlocked-counter", "--set", "adds=2000"]);
    assert!(seen.contains("collector"), "{seen:?}");
}

/// The signals sent and main.1's end, in the order the run reported them.
fn signal_story(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Signal { target, signal, .. } => Some(format!("{} {signal} {target}", e.proc_id)),
            Body::Reaped { by, signal, .. } if e.proc_id == "main.1" => {
                Some(format!("{by} reaped main.1 {signal:?}"))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_gated_run_of_an_endless_ticker_stops_continues_and_terminates_it() {
    // The ticker only ever prints and sleeps (steps nobody else observes):
    // it once went forever and main's SIGSTOP never.
    let dir = TempDir::new("signals");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("signals.schedule");
    let started = std::time::Instant::now();
    let gated = ["--schedule", "seeded", "--seed", "5", "--time-scale", "0"];
    let mut args = vec!["--timeout", "60", "--save-schedule", file.to_str().unwrap()];
    args.extend(gated);
    let run = run_jsonl("signals", &args);
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let story = signal_story(&run);
    assert_eq!(
        story,
        [
            "main SIGSTOP main.1",
            "main SIGCONT main.1",
            "main SIGTERM main.1",
            "main reaped main.1 Some(\"SIGTERM\")",
        ],
        "{}",
        run.terminal()
    );
    assert!(
        run.output_of("main")
            .ends_with("main: child ended, exit code -15\n"),
        "{}",
        run.terminal()
    );
    // It ticked before the SIGSTOP and after the SIGCONT, never between.
    let at = |sig: &str| {
        run.events
            .iter()
            .position(|e| matches!(&e.body, Body::Signal { signal, .. } if signal == sig))
            .unwrap()
    };
    let ticks = |from: usize, to: usize| {
        run.events[from..to]
            .iter()
            .filter(|e| e.proc_id == "main.1" && matches!(e.body, Body::Output { .. }))
            .count()
    };
    let (stop, cont, term) = (at("SIGSTOP"), at("SIGCONT"), at("SIGTERM"));
    assert!(
        ticks(0, stop) > 0 && ticks(cont, term) > 0,
        "{}",
        run.terminal()
    );
    assert_eq!(ticks(stop, cont), 0, "{}", run.terminal());

    // Every go is in the schedule: replaying it tells the same story.
    let replay = run_jsonl(
        "signals",
        &[
            "--timeout",
            "60",
            "--time-scale",
            "0",
            "--schedule-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert_eq!(signal_story(&replay), story);
    assert_eq!(replay.terminal(), run.terminal());
}

/// The catalog's scenarios that start a `Pool` (and no `Manager`: gated
/// runs refuse those, saying so).
fn pool_scenarios() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.contains("{ pool = ") && !text.contains("{ manager = ")
        })
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What the processes printed, one line each, sorted, with every pid of
/// the run written `PID` (pids differ from run to run, and so may the
/// order of lines of different processes).
fn printed_lines(run: &Run) -> Vec<String> {
    let pids: BTreeSet<String> = run.pids().iter().map(|p| p.to_string()).collect();
    let mut lines: Vec<String> = run
        .terminal()
        .lines()
        .map(|l| {
            let mut out = String::new();
            let mut digits = String::new();
            for c in l.chars().chain(std::iter::once('\n')) {
                if c.is_ascii_digit() {
                    digits.push(c);
                    continue;
                }
                if pids.contains(&digits) {
                    out.push_str("PID");
                } else {
                    out.push_str(&digits);
                }
                digits.clear();
                if c != '\n' {
                    out.push(c);
                }
            }
            out
        })
        .collect();
    lines.sort();
    lines
}

/// A pool's `close` puts one stop per worker on its tasks pipe; a gated
/// run used to leave them unseen (the scheduler judged the workers' "take
/// a task" could never go through) and called a deadlock that CPython
/// never reaches: `main waits for p.w1 to end; p.w1 waits for
/// pool-tasks:p ...`. Every pool scenario must end under a seeded
/// schedule as its free run does: same exit code, same printed lines.
#[test]
fn every_pool_scenario_ends_under_a_seeded_schedule_as_it_does_free() {
    let names = pool_scenarios();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let free = run_jsonl(name, &["--time-scale", "0"]);
        assert!(
            free.code == 0 || free.code == 1,
            "{name} free: {}",
            free.stderr
        );
        assert!(free.of_kind("deadlock").is_empty(), "{name} free");
        let expected = printed_lines(&free);
        assert!(!expected.is_empty(), "{name} printed nothing");
        for seed in 1..=5 {
            let seed = seed.to_string();
            let gated = run_jsonl(
                name,
                &["--time-scale", "0", "--schedule", "seeded", "--seed", &seed],
            );
            assert_eq!(
                gated.code, free.code,
                "{name} --seed {seed}: {}",
                gated.stderr
            );
            assert!(
                gated.of_kind("deadlock").is_empty(),
                "{name} --seed {seed}: {}",
                gated.stderr
            );
            assert_eq!(printed_lines(&gated), expected, "{name} --seed {seed}");
        }
    }
}

/// After the last result, a pool's results pipe is at its end (every
/// worker gone) and so readable: a gated owner that looked for more there
/// (`apply_async` on a closed pool, the next round of `pool-close-in-loop`)
/// announced a read nobody could satisfy. It fails as CPython does.
#[test]
fn apply_async_on_a_closed_pool_fails_as_in_python_under_any_seed() {
    for seed in ["1", "2", "3"] {
        let run = run_jsonl(
            "pool-close-in-loop",
            &["--time-scale", "0", "--schedule", "seeded", "--seed", seed],
        );
        assert_eq!(run.code, 1, "--seed {seed}: {}", run.stderr);
        let errors: Vec<String> = run
            .events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Error { message } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            ["ValueError: Pool not running (pool po is closed)"],
            "--seed {seed}"
        );
        assert_eq!(
            printed_lines(&run),
            [
                "-----end-----",
                "----start----",
                "main failed (line 14): ValueError: Pool not running (pool po is closed)",
                "task 0 done",
                "task 0 runs in PID"
            ],
            "--seed {seed}"
        );
    }
}

/// `explore` of a pool scenario: no schedule ends in a deadlock (each one
/// used to).
#[test]
fn exploring_pool_scenarios_finds_no_deadlock() {
    for (name, extra) in [("pool-map", "workers=2"), ("pool-async", "tasks=3")] {
        let dir = TempDir::new("pool-explore");
        std::fs::create_dir_all(&dir).unwrap();
        let run = forkscope(&[
            "explore",
            name,
            "--set",
            extra,
            "--time-scale",
            "0",
            "--max-schedules",
            "40",
            "--format",
            "jsonl",
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let lines = outcome_lines(&run);
        assert!(!lines.is_empty(), "{name}");
        for l in &lines {
            assert_eq!(l["deadlock"], false, "{name}: {l}");
        }
    }
}
