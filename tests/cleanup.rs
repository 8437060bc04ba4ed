//! Nothing outlives the app, for any user: `kill -9` of forkscope leaves
//! no process of its run and no file, also as a user who gets no PID
//! namespace (most learners). scripts/kill9-trials.sh does the same 300
//! times; this is the short version for every `cargo test`.

mod common;

use common::*;
use forkscope::protocol::{Body, Event};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MARKER: &str = "FORKSCOPE_TRIAL";

const FORK_TREE: &str = r#"
name = "fork-tree"
title = "a tree of forks that sleeps"
explain = "16 processes."
source = "for i in range(4): os.fork()"
[roles.main]
steps = [ { repeat = "4", steps = [ { fork = "" } ] }, { sleep_ms = 20000 } ]
"#;

const LEAVE_GROUP: &str = r#"
name = "leave-group"
title = "programs that leave the process group and the session"
explain = "setsid, and a shell that backgrounds a setsid'd child."
source = "subprocess.call(['setsid', 'sleep', '30'])"
[roles.main]
steps = [
  { spawn = "away", as = "a" },
  { exec = ["sh", "-c", "setsid sleep 30 & exec sleep 30"], capture = false },
  { join = "a" },
]
[roles.away]
steps = [ { exec = ["setsid", "sleep", "30"], capture = false } ]
"#;

/// How to run forkscope as a user without a PID namespace: as nobody when
/// we are root (with setpriv), else as ourselves. `None`: cannot (said why).
fn unprivileged() -> Option<(Vec<&'static str>, &'static str)> {
    if !as_root() {
        return Some((Vec::new(), "the current user"));
    }
    let has_setpriv = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("setpriv").is_file()));
    if !has_setpriv {
        eprintln!(
            "skipped: running as root and setpriv is missing, so no user without a PID namespace"
        );
        return None;
    }
    let setpriv = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    Some((setpriv, "nobody"))
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Where nobody can reach what we make: our TMPDIR may be a private
/// (0700) directory of root's, so as root use /tmp.
fn reachable_base() -> PathBuf {
    if as_root() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    }
}

/// Our binary and scenario files where any user can run and read them.
struct Place {
    dir: TempDir,
    bin: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = TempDir::new_in(&reachable_base(), "cleanup-bin");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("forkscope");
        std::fs::copy(bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        Place { dir, bin: copy }
    }

    fn scenario(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path.display().to_string()
    }
}

/// A temp directory anyone may write to (like /tmp), for one run.
fn shared_tmp(name: &str) -> TempDir {
    let tmp = TempDir::new_in(&reachable_base(), name);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    tmp
}

/// Live processes of the run marked `marker`, waiting up to 3 s for them
/// to go (the watchdog needs a moment to kill and reap).
fn leftovers(marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = marked_processes(MARKER, marker);
        if left.is_empty() || Instant::now() > deadline {
            return left
                .into_iter()
                .map(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let state = stat.rfind(')').map_or("", |i| &stat[i + 2..i + 3]);
                    // Do not leave it for the next test either.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    format!(
                        "{pid} [{state}] {}",
                        String::from_utf8_lossy(&cmd).replace('\0', " ")
                    )
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What to wait for before the kill.
type Ready = fn(&[Event]) -> bool;

#[test]
fn kill_9_as_a_user_without_a_pid_namespace_leaves_no_process_and_no_file() {
    let Some((prefix, who)) = unprivileged() else {
        return;
    };
    let place = Place::new();
    let fork_tree = place.scenario("fork-tree", FORK_TREE);
    let leave_group = place.scenario("leave-group", LEAVE_GROUP);
    let trials: Vec<(Vec<&str>, Ready)> = vec![
        // Killed at once: the runner may not even have read its spec.
        (vec!["locked-counter"], |_| true),
        // A child stopped by SIGSTOP.
        (vec!["signals"], |seen| {
            seen.iter().any(
                |e| matches!(&e.body, Body::Output { text, .. } if text.contains("sent SIGSTOP")),
            )
        }),
        // Two processes stuck in sem_wait, each holding the other's lock.
        (vec!["deadlock-two-locks", "--set", "hold_ms=300"], |seen| {
            seen.iter().filter(|e| e.body.kind() == "lock_wait").count() >= 1
        }),
        (vec![fork_tree.as_str()], |seen| {
            // The runner and all 16 processes of the tree.
            seen.iter().filter(|e| e.body.kind() == "hello").count() >= 17
        }),
        // Programs in a session and process group of their own.
        (vec![leave_group.as_str(), "--allow-exec"], |seen| {
            seen.iter().filter(|e| e.body.kind() == "exec").count() >= 2
        }),
        (vec!["queue-producer-consumer"], |seen| {
            seen.iter().filter(|e| e.body.kind() == "hello").count() >= 3
        }),
        (vec!["pool-map"], |seen| {
            seen.iter().filter(|e| e.body.kind() == "hello").count() >= 3
        }),
    ];
    let mut failures = Vec::new();
    for (i, (args, ready)) in trials.iter().enumerate() {
        let marker = format!("cleanup-test-{}-{i}", std::process::id());
        let tmp = shared_tmp("cleanup-run");
        let mut cmd = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(place.bin.to_str().unwrap()),
        );
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(&place.bin);
        }
        cmd.arg("run")
            .args(args)
            .args(["--format", "jsonl"])
            .env(MARKER, &marker)
            .env("TMPDIR", tmp.path())
            .env("XDG_RUNTIME_DIR", tmp.path())
            .current_dir(tmp.path());
        let mut live = Live::spawn(cmd);
        live.wait_for(Duration::from_secs(20), |_| true);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(&live.seen) && Instant::now() < deadline {
            live.wait_for(Duration::from_secs(20), |_| true);
        }
        if args[0] == leave_group {
            std::thread::sleep(Duration::from_millis(200)); // let setsid run
        }
        live.child.kill().unwrap(); // SIGKILL: no chance to clean up
        let _ = live.child.wait();
        let left = leftovers(&marker);
        if !left.is_empty() {
            failures.push(format!("{args:?}: processes left: {left:#?}"));
        }
        // No socket directory (nor anything else) in the run's TMPDIR.
        let files = files_in(tmp.path());
        if !files.is_empty() {
            failures.push(format!("{args:?}: files left in TMPDIR: {files:?}"));
        }
    }
    assert!(failures.is_empty(), "as {who}: {failures:#?}");
}

#[test]
fn stop_and_a_finished_run_leave_nothing_as_a_user_without_a_pid_namespace() {
    let Some((prefix, who)) = unprivileged() else {
        return;
    };
    let place = Place::new();
    let leave_group = place.scenario("leave-group", LEAVE_GROUP);
    let runs: Vec<Vec<&str>> = vec![
        // Ends by itself; an orphan is adopted and reaped on the way.
        vec!["no-join", "--time-scale", "0.2"],
        // Stopped by --timeout with a stopped child, and with programs that
        // left the process group.
        vec!["signals", "--set", "stop_ms=5000", "--timeout", "1"],
        vec![leave_group.as_str(), "--allow-exec", "--timeout", "1"],
    ];
    let mut failures = Vec::new();
    for (i, args) in runs.iter().enumerate() {
        let marker = format!("cleanup-stop-{}-{i}", std::process::id());
        let tmp = shared_tmp("cleanup-stop");
        let mut cmd = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(place.bin.to_str().unwrap()),
        );
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(&place.bin);
        }
        let out = cmd
            .arg("run")
            .args(args)
            .env(MARKER, &marker)
            .env("TMPDIR", tmp.path())
            .env("XDG_RUNTIME_DIR", tmp.path())
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = leftovers(&marker);
        if !left.is_empty() {
            failures.push(format!("{args:?}: processes left: {left:#?}"));
        }
        let files = files_in(tmp.path());
        if !files.is_empty() {
            failures.push(format!("{args:?}: files left in TMPDIR: {files:?}"));
        }
    }
    assert!(failures.is_empty(), "as {who}: {failures:#?}");
}

#[test]
fn a_long_tmpdir_runs_and_stays_empty() {
    // Longer than a socket path may be (108 bytes).
    let tmp = TempDir::new("long-tmpdir");
    let long = tmp.join("a-long-directory-name-".repeat(6));
    std::fs::create_dir(&long).unwrap();
    let out = Command::new(bin())
        .args(["run", "locked-counter", "--time-scale", "0.1"])
        .env("TMPDIR", &long)
        .env("XDG_RUNTIME_DIR", &long)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(&long), Vec::<String>::new());
}

/// `stats` and `explore` run many runs on one shared runner
/// (`__runner --serve`): `kill -9` of the app in the middle of its runs,
/// and a normal end, leave no process of it (server, run watchdog, core,
/// scenario processes) and no file.
#[test]
fn many_runs_on_one_runner_leave_nothing_after_kill_9_or_their_end() {
    let Some((prefix, who)) = unprivileged() else {
        return;
    };
    let place = Place::new();
    let fork_tree = place.scenario("fork-tree", FORK_TREE);
    let trials: Vec<(Vec<&str>, bool)> = vec![
        // Killed while a run of 16 sleeping processes goes on.
        (vec!["stats", fork_tree.as_str(), "--runs", "5"], true),
        // Killed among the short gated runs of an exploration.
        (
            vec![
                "explore",
                "unlocked-counter",
                "--set",
                "workers=3",
                "--set",
                "adds=3",
            ],
            true,
        ),
        // Ends by itself.
        (
            vec![
                "stats",
                "locked-counter",
                "--runs",
                "3",
                "--time-scale",
                "0",
            ],
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (i, (args, kill)) in trials.iter().enumerate() {
        let marker = format!("cleanup-many-{}-{i}", std::process::id());
        let tmp = shared_tmp("cleanup-many");
        let mut cmd = Command::new(
            prefix
                .first()
                .copied()
                .unwrap_or(place.bin.to_str().unwrap()),
        );
        if !prefix.is_empty() {
            cmd.args(&prefix[1..]).arg(&place.bin);
        }
        cmd.args(args)
            .env(MARKER, &marker)
            .env("TMPDIR", tmp.path())
            .env("XDG_RUNTIME_DIR", tmp.path())
            .current_dir(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if *kill {
            // Wait for a run under way: the app, the server, a run's
            // watchdog, its core and main are all marked.
            let deadline = Instant::now() + Duration::from_secs(20);
            while marked_processes(MARKER, &marker).len() < 5 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            child.kill().unwrap(); // SIGKILL: no chance to clean up
            let _ = child.wait();
        } else {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let left = leftovers(&marker);
        if !left.is_empty() {
            failures.push(format!("{args:?}: processes left: {left:#?}"));
        }
        // explore's folder of schedules is its output, made before the runs.
        let files: Vec<String> = files_in(tmp.path())
            .into_iter()
            .filter(|f| !f.starts_with("forkscope-explore-"))
            .collect();
        if !files.is_empty() {
            failures.push(format!("{args:?}: files left in TMPDIR: {files:?}"));
        }
    }
    assert!(failures.is_empty(), "as {who}: {failures:#?}");
}
