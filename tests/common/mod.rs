//! Helpers for end-to-end tests: run the real `forkscope` binary, read its
//! JSONL events, and check what the kernel says about processes.

#![allow(dead_code)]

use forkscope::protocol::{Body, Event};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_forkscope")
}

pub struct Run {
    pub code: i32,
    pub events: Vec<Event>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything the processes printed, in time order, as one terminal.
    pub fn terminal(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Output { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.body.kind() == kind)
            .collect()
    }

    pub fn output_of(&self, proc_id: &str) -> String {
        self.events
            .iter()
            .filter(|e| e.proc_id == proc_id)
            .filter_map(|e| match &e.body {
                Body::Output { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every host pid the run reported.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .events
            .iter()
            .filter(|e| matches!(e.body, Body::Hello { .. }))
            .map(|e| e.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Runs `forkscope ARGS` to the end.
pub fn forkscope(args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("forkscope runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let events = if args.first() == Some(&"run") && args.contains(&"jsonl") {
        parse_events(&stdout)
    } else {
        Vec::new()
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        events,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a scenario with `--format jsonl` and extra args.
pub fn run_jsonl(scenario: &str, extra: &[&str]) -> Run {
    let mut args = vec!["run", scenario, "--format", "jsonl"];
    args.extend_from_slice(extra);
    forkscope(&args)
}

pub fn parse_events(text: &str) -> Vec<Event> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// A run in the background whose events we read as they come.
pub struct Live {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<Event>,
    pub seen: Vec<Event>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Live {
    pub fn start(args: &[&str]) -> Live {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        Live::spawn(cmd)
    }

    /// Starts `cmd` (which runs forkscope with `--format jsonl`).
    pub fn spawn(mut cmd: Command) -> Live {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("forkscope starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut text);
            if let Ok(mut s) = sink.lock() {
                *s = text;
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(e) = serde_json::from_str::<Event>(&line)
                    && tx.send(e).is_err()
                {
                    break;
                }
            }
        });
        Live {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the run to end; its exit code and stderr.
    pub fn finish(&mut self) -> (Option<i32>, String) {
        let code = self.child.wait().ok().and_then(|s| s.code());
        // The reader thread ends with the pipe; give it a moment.
        for _ in 0..100 {
            if let Ok(s) = self.stderr.lock()
                && !s.is_empty()
            {
                return (code, s.clone());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (code, String::new())
    }

    /// After [`Live::finish`]: takes in every event not read yet.
    pub fn drain(&mut self) {
        while let Ok(e) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(e);
        }
    }

    /// Reads events until one matches (or panics after `timeout`).
    pub fn wait_for(&mut self, timeout: Duration, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if f(&e) {
                        return e;
                    }
                }
                Err(_) => panic!("event not seen in {timeout:?}; saw {:#?}", self.seen),
            }
        }
    }

    pub fn pids(&self) -> Vec<i32> {
        self.seen
            .iter()
            .filter(|e| matches!(e.body, Body::Hello { .. }))
            .map(|e| e.pid)
            .collect()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
            state.as_deref() != Some("Z")
        }
        Err(_) => false,
    }
}

/// Waits up to 2 s for every pid to be gone; the ones still alive.
pub fn survivors_after_2s(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `PPid:` of a live process, from the kernel.
pub fn kernel_ppid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A scenario file in a fresh temp dir, removed when dropped.
pub struct ScenarioFile {
    path: std::path::PathBuf,
    _dir: TempDir,
}

impl std::ops::Deref for ScenarioFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

/// Writes a scenario file into a fresh temp dir (gone when the returned
/// value is dropped).
pub fn scenario_file(name: &str, text: &str) -> ScenarioFile {
    let dir = TempDir::new("test");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    ScenarioFile { path, _dir: dir }
}

/// A fresh private directory in the temp directory, removed with all it
/// holds when dropped (so `cargo test` leaves nothing there).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), name)
    }

    pub fn new_in(base: &std::path::Path, name: &str) -> TempDir {
        let template = base.join(format!("forkscope-{name}-XXXXXX"));
        TempDir(nix::unistd::mkdtemp(&template).expect("a temp dir"))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pids of live processes whose environment holds `NAME=VALUE`: the
/// processes of one run, marked by the test (never "everything named
/// forkscope"). A zombie's environment reads empty, so it is not counted.
pub fn marked_processes(name: &str, value: &str) -> Vec<i32> {
    let want = format!("{name}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Where the run started by the `forkscope` process `app_pid` listens for
/// probes: `FORKSCOPE_SOCK` in its runner's environment (what every
/// scenario process inherits, and what a stranger of the same user can
/// read in `/proc`). Waits up to 10 s for the runner to appear.
pub fn probe_address(app_pid: u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = find_probe_address(app_pid as i32) {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no runner of {app_pid} with {}",
            forkscope::protocol::SOCKET_ENV
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find_probe_address(app_pid: i32) -> Option<String> {
    let want = format!("{}=", forkscope::protocol::SOCKET_ENV);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if kernel_ppid(pid) != Some(app_pid) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        for var in env.split(|&b| b == 0) {
            if let Some(value) = var.strip_prefix(want.as_bytes()) {
                return Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    None
}

/// Connects to a probe address as `FORKSCOPE_SOCK` spells it: a path, or
/// `@NAME` for a socket in the abstract namespace.
pub fn connect_probe(addr: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::unix::net::UnixStream;
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        return UnixStream::connect_addr(&a);
    }
    UnixStream::connect(addr)
}

/// The test program that speaks the probe protocol from inside a run
/// (`exec = ["python3", SHIM, MODE, ID]`).
pub fn probe_shim() -> String {
    format!("{}/tests/shim/probe_shim.py", env!("CARGO_MANIFEST_DIR"))
}

/// A scenario whose main `exec`s the probe shim (tests/shim/probe_shim.py)
/// as `main.1`, then prints "still here".
pub fn shim_scenario(name: &str, mode: &str) -> String {
    format!(
        r#"
name = "{name}"
title = "Runs a program that speaks the probe protocol"
explain = "For the socket tests."
source = "subprocess.run(['python3', 'probe_shim.py'])"
[roles.main]
steps = [
  {{ exec = ["python3", "{shim}", "{mode}", "main.1"], capture = false }},
  {{ print = "still here" }},
]
"#,
        shim = probe_shim()
    )
}

/// The python3 on `PATH` as the real interpreter (`sys.executable`), not
/// a wrapper script such as pyenv's shim, whose own helper processes would
/// count as the program's. `None` if there is no python3.
pub fn python_executable() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !exe.is_empty()).then_some(exe)
}

/// A test program in `tests/python/`.
pub fn python_program(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A command with the environment every Python run of the tests shares:
/// no PYTHONUNBUFFERED (it would split one print into several writes), no
/// PYTHONSTARTUP, stdin from /dev/null.
pub fn python_command(exe: &str) -> Command {
    let mut c = Command::new(exe);
    c.env_remove("PYTHONUNBUFFERED")
        .env_remove("PYTHONSTARTUP")
        .stdin(Stdio::null());
    c
}

/// The first `name` on `PATH` that is a file.
pub fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    })
}
