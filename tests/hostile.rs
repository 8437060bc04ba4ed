//! Hostile scenario files (issue 9, points 5-9), through the real binary:
//! `check` and `run` end quickly with exit 2 (or a clean run whose failing
//! process says why), never with 101 (a panic), a signal or a hang.

mod common;

use common::{bin, parse_events};
use forkscope::protocol::Body;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A guard against a hang, not a speed test: the requirement is 2 s, and a
/// debug build on a busy machine gets a generous margin.
const HANG_S: u64 = 15;

/// A temp dir of this test's files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("forkscope-hostile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write scenario");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Outcome {
    /// None: killed by a signal.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the binary; kills it and fails the test if it hangs.
fn forkscope(args: &[&str]) -> Outcome {
    let t0 = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forkscope starts");
    // Read both pipes on threads so a big output cannot block the child.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(HANG_S) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("forkscope {args:?} hangs (over {HANG_S} s)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    Outcome {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took,
    }
}

fn scenario(main: &str, more: &str) -> String {
    format!(
        "name = \"hostile\"\ntitle = \"Hostile\"\nexplain = \"x\"\n[roles.main]\nsteps = [\n  {main}\n]\n[roles.child]\nsteps = [ {{ print = \"hi\" }} ]\n{more}"
    )
}

/// `check` and `run` both refuse the file: exit 2, the file's name and a
/// line:col in the message, and `says` in it.
fn refused(dir: &Dir, name: &str, text: &str, says: &str) {
    let path = dir.file(name, text);
    for cmd in ["check", "run"] {
        let o = forkscope(&[cmd, &path]);
        assert_eq!(o.code, Some(2), "{cmd} {name}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!("{path}:")),
            "{cmd} {name}: {}",
            o.stderr
        );
        assert!(o.stderr.contains(says), "{cmd} {name}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{cmd} {name}: {}", o.stderr);
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "one clear sentence: {}",
            o.stderr
        );
        eprintln!("{cmd} {name}: {:?}", o.took);
    }
}

/// The file checks, and its run ends cleanly: the failing process says
/// `says` in an error event, nothing panicked.
fn fails_cleanly_at_run_time(dir: &Dir, name: &str, text: &str, says: &str) {
    let path = dir.file(name, text);
    let o = forkscope(&["check", &path]);
    assert_eq!(o.code, Some(0), "check {name}: {}", o.stderr);
    let o = forkscope(&["run", &path, "--format", "jsonl", "--timeout", "10"]);
    assert!(
        matches!(o.code, Some(0 | 1)),
        "run {name}: {:?} {}",
        o.code,
        o.stderr
    );
    assert!(!o.stdout.contains("panicked"), "run {name}: {}", o.stdout);
    assert!(!o.stderr.contains("panicked"), "run {name}: {}", o.stderr);
    let events = parse_events(&o.stdout);
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Error { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|m| m.contains(says)),
        "run {name}: no error saying {says:?} in {errors:?}"
    );
    for e in &events {
        if let Body::Exit { code, signal } = &e.body {
            assert_ne!(*code, Some(101), "run {name}: {} panicked", e.proc_id);
            assert_eq!(*signal, None, "run {name}: {} was killed", e.proc_id);
        }
    }
    eprintln!("run {name}: {:?}", o.took);
}

#[test]
fn non_ascii_letters_in_expressions_are_errors() {
    // Issue 9.5: both panicked (exit 101).
    let dir = Dir::new("ascii");
    refused(
        &dir,
        "sleep-e",
        &scenario(r#"{ sleep_ms = "é" }"#, ""),
        "uses \"é\"",
    );
    refused(
        &dir,
        "print-e",
        &scenario(r#"{ print = "{é}" }"#, ""),
        "uses \"é\"",
    );
    refused(
        &dir,
        "euro",
        &scenario(r#"{ print = "a {1 + €} b" }"#, ""),
        "unexpected character '€'",
    );
}

#[test]
fn integer_overflow_is_an_error_in_check_and_in_a_running_process() {
    // Issue 9.6: at check time (a repeat count the estimator evaluates) and
    // in a running process.
    let dir = Dir::new("overflow");
    for (name, expr) in [("floordiv", "(2**63) // -1"), ("mod", "(2**63) % -1")] {
        let text = scenario(
            &format!(r#"{{ repeat = "{expr}", steps = [ {{ spawn = "child" }} ] }}"#),
            "",
        );
        fails_cleanly_at_run_time(&dir, name, &text, "integer overflow");
        let text = scenario(
            r#"{ spawn = "child", as = "c" }, { join = "c" }"#,
            "",
        )
        .replace(
            r#"[ { print = "hi" } ]"#,
            &format!(r#"[ {{ set = "m", value = "-9223372036854775807 - 1" }}, {{ print = "{{m // -1}} {{m % -1}} {expr}" }} ]"#),
        );
        fails_cleanly_at_run_time(&dir, &format!("{name}-child"), &text, "integer overflow");
    }
}

#[test]
fn thousands_of_parentheses_are_an_error_with_a_position() {
    // Issue 9.7: a stack overflow (SIGSEGV/SIGABRT).
    let dir = Dir::new("parens");
    let deep = format!("{}1{}", "(".repeat(6000), ")".repeat(6000));
    refused(
        &dir,
        "parens",
        &scenario(&format!(r#"{{ sleep_ms = "{deep}" }}"#), ""),
        "nests more than 100 levels deep",
    );
    refused(
        &dir,
        "print-parens",
        &scenario(&format!(r#"{{ print = "{{{deep}}}" }}"#), ""),
        "nests more than 100 levels deep",
    );
    // And in the TOML: steps inside steps inside steps.
    let n = 5000;
    let steps = format!(
        "{}{{ print = \"x\" }}{}",
        "{ repeat = 1, steps = [ ".repeat(n),
        " ] }".repeat(n)
    );
    refused(
        &dir,
        "repeats",
        &scenario(&steps, ""),
        "nest more than 24 levels deep",
    );
    let arrays = scenario(
        "{ print = \"x\" }",
        &format!("[globals]\ng = {}1{}\n", "[".repeat(n), "]".repeat(n)),
    );
    refused(&dir, "arrays", &arrays, "nest more than 24 levels deep");
}

#[test]
fn nested_repeats_around_a_spawn_are_counted_at_once() {
    // Issue 9.8: two levels of 100,000 took 475 s in `check`.
    let dir = Dir::new("repeats");
    let text = scenario(
        r#"{ repeat = 100000, steps = [ { repeat = 100000, steps = [ { spawn = "child" } ] } ] }"#,
        "",
    );
    let path = dir.file("nested", &text);
    for cmd in ["check", "run"] {
        let o = forkscope(&[cmd, &path]);
        assert_eq!(o.code, Some(2), "{cmd}: {}", o.stderr);
        assert!(
            o.stderr.contains("more than a billion processes"),
            "{}",
            o.stderr
        );
        eprintln!("{cmd} nested: {:?}", o.took);
    }
}

#[test]
fn impossible_sleeps_are_refused_by_check_and_fail_cleanly_when_computed() {
    // Issue 9.9: these passed `check` and panicked in the running process.
    let dir = Dir::new("sleep");
    for (name, v, says) in [
        (
            "huge",
            "1e300",
            "1e300 ms is longer than the limit of a day",
        ),
        ("inf", "inf", "inf ms is longer than the limit of a day"),
        ("nan", "nan", "NaN"),
        ("negative", "-1", "cannot be negative"),
    ] {
        refused(
            &dir,
            name,
            &scenario(&format!("{{ sleep_ms = {v} }}"), ""),
            says,
        );
    }
    // A parameter decides: refused before the run (`--set` too).
    let param = scenario(r#"{ sleep_ms = "ms" }"#, "[params.ms]\ndefault = 10.0\n");
    let path = dir.file("param", &param);
    let o = forkscope(&["run", &path, "--set", "ms=1e300"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("sleep_ms 1e300 ms"), "{}", o.stderr);
    // Computed in the process: the step fails with an error event.
    for (name, value, says) in [
        (
            "computed-huge",
            "1e300 * 10",
            "longer than the limit of a day",
        ),
        (
            "computed-inf",
            "float('inf')",
            "longer than the limit of a day",
        ),
        ("computed-nan", "float('nan')", "NaN"),
        ("computed-negative", "0 - 5", "cannot be negative"),
    ] {
        let text = scenario(
            &format!(r#"{{ set = "t", value = "{value}" }}, {{ sleep_ms = "t" }}"#),
            "",
        );
        fails_cleanly_at_run_time(&dir, name, &text, says);
    }
    let gap = scenario(
        r#"{ set = "t", value = "float('inf')" }, { add = "v", by = 1, gap_ms = "t" }"#,
        "[values]\nv = 0\n",
    );
    fails_cleanly_at_run_time(&dir, "gap", &gap, "gap_ms");
}

#[test]
fn huge_prints_and_growing_values_fail_the_step_not_the_process() {
    // A panic in a forked scenario process is an abort with no message
    // the user can act on; these fail the step with a clear error instead.
    let dir = Dir::new("huge");
    for (name, steps, says) in [
        (
            "wide",
            r#"{ set = "x", value = "1.5" }, { print = "{x:>70000}" }"#,
            "a width is at most",
        ),
        (
            "precise",
            r#"{ set = "x", value = "1.5" }, { print = "{x:.70000f}" }"#,
            "a precision is at most",
        ),
        (
            "doubling-string",
            r#"{ set = "s", value = "'x'" }, { loop = [ { set = "s", value = "s + s" } ] }"#,
            "over the limit",
        ),
        (
            "doubling-list",
            r#"{ set = "l", value = "[1]" }, { loop = [ { set = "l", value = "l + l" } ] }"#,
            "over the limit",
        ),
        (
            "nesting-list",
            r#"{ set = "l", value = "[1]" }, { loop = [ { set = "l", value = "[l]" } ] }"#,
            "levels deep",
        ),
        (
            "randint",
            r#"{ print = "{randint(-9223372036854775807, 9223372036854775807) * 0}" }, { exit = "1 // 0" }"#,
            "division by zero",
        ),
    ] {
        let text = scenario(r#"{ spawn = "child", as = "c" }, { join = "c" }"#, "")
            .replace(r#"[ { print = "hi" } ]"#, &format!("[ {steps} ]"));
        fails_cleanly_at_run_time(&dir, name, &text, says);
    }
}
