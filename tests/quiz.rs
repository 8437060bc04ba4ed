//! `forkscope quiz NAME`: the real binary asks its questions, reads the
//! answers from a pipe, runs the scenario for real, and prints the real
//! answer, right or wrong, and the event that decided it. Bad quiz tables
//! are refused with file:line:column. Every built-in question has an
//! answer its run gives (and, with choices, one of them is it).

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Quiz {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `forkscope quiz ARGS` with `input` piped to its stdin; a guard
/// against a hang, not a speed test.
fn quiz(args: &[&str], input: &str) -> Quiz {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .arg("quiz")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forkscope starts");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(input.as_bytes());
        // Dropped: end of input.
    }
    let out = child.wait_with_output().expect("forkscope ends");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "quiz {args:?} took {:?}",
        started.elapsed()
    );
    Quiz {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_right_number_is_right_and_names_the_deciding_event() {
    let q = quiz(&["fork-print"], "2\n");
    assert_eq!(q.code, 0, "{}{}", q.stdout, q.stderr);
    let o = &q.stdout;
    assert!(
        o.contains("Question 1 of 1: How many times does 1111111111 come out?"),
        "{o}"
    );
    assert!(o.contains("Type a number:"), "{o}");
    assert!(o.contains("  answer: 2\n"), "{o}");
    assert!(o.contains("you said: 2 — right!"), "{o}");
    assert!(
        o.contains("decided by: ") && o.contains("the 2nd line with \"1111111111\""),
        "{o}"
    );
    assert!(
        o.contains("(at ") && o.contains("line 4)"),
        "the time and the listing line: {o}"
    );
    assert!(o.contains("1 of 1 right."), "{o}");
    // What the program printed is shown too.
    assert!(
        o.contains("--- terminal ---\n1111111111\n1111111111\n"),
        "{o}"
    );
}

#[test]
fn a_wrong_choice_is_wrong_and_the_right_one_is_shown() {
    // Choice 1 is "child start...": main's last line is "child end".
    let q = quiz(&["process-join", "--set", "work_ms=20"], "1\n");
    assert_eq!(q.code, 0, "{}{}", q.stdout, q.stderr);
    let o = &q.stdout;
    assert!(o.contains("  1) child start...\n"), "{o}");
    assert!(o.contains("  3) child end\n"), "{o}");
    assert!(o.contains("Your answer (1-3): "), "{o}");
    assert!(o.contains("  answer: child end\n"), "{o}");
    assert!(o.contains("you said: child start... — wrong"), "{o}");
    assert!(o.contains("decided by: main prints \"child end\""), "{o}");
    assert!(o.contains("0 of 1 right."), "{o}");
}

#[test]
fn a_choice_may_be_typed_as_its_text_and_bad_input_is_asked_again() {
    let q = quiz(&["no-join", "--set", "sleep_ms=50"], "banana\n7\nMAIN.1\n");
    assert_eq!(q.code, 0, "{}{}", q.stdout, q.stderr);
    let o = &q.stdout;
    assert!(
        o.contains("\"banana\" is none of the choices: type 1 to 2. Again: "),
        "{o}"
    );
    assert!(o.contains("\"7\" is none of the choices"), "{o}");
    assert!(o.contains("  answer: main.1\n"), "{o}");
    assert!(o.contains("you said: main.1 — right!"), "{o}");
    assert!(
        o.contains("decided by: main.1 exits with code 0, the first to end"),
        "{o}"
    );
}

#[test]
fn no_answer_on_stdin_still_runs_and_shows_the_answer() {
    let q = quiz(&["shared-ctypes"], "");
    assert_eq!(q.code, 0, "{}{}", q.stdout, q.stderr);
    let o = &q.stdout;
    assert!(o.contains("(no answer)"), "{o}");
    assert!(o.contains("  answer: 49\n"), "{o}");
    assert!(o.contains("you said nothing"), "{o}");
    assert!(
        o.contains("decided by: main.1 writes n = 49, the last write"),
        "{o}"
    );
}

#[test]
fn a_race_says_its_answer_varies_and_a_deadlock_is_an_answer() {
    let q = quiz(
        &[
            "unlocked-counter",
            "--set",
            "adds=20",
            "--time-scale",
            "0.1",
        ],
        "40\n",
    );
    assert_eq!(q.code, 0, "{}{}", q.stdout, q.stderr);
    assert!(
        q.stdout
            .contains("(a race: the answer varies from run to run)"),
        "{}",
        q.stdout
    );
    assert!(
        q.stdout
            .contains("(this run's answer: it varies from run to run)"),
        "{}",
        q.stdout
    );
    // Almost always a deadlock (one lock held 100 ms); when the second
    // process starts late, no deadlock: either way the answer and its
    // deciding event agree.
    let d = quiz(&["deadlock-two-locks"], "yes\n");
    assert_eq!(
        d.code, 0,
        "a deadlock is the answer, not a failure: {}{}",
        d.stdout, d.stderr
    );
    let o = &d.stdout;
    let yes = o.contains("  answer: yes (this run's answer");
    let no = o.contains("  answer: no (this run's answer");
    assert!(yes || no, "{o}");
    if yes {
        assert!(o.contains("you said: yes — right!"), "{o}");
        assert!(o.contains("decided by: deadlock: main.1 holds"), "{o}");
    } else {
        assert!(o.contains("ends: no deadlock"), "{o}");
    }
}

#[test]
fn a_scenario_without_questions_is_refused() {
    let q = quiz(&["zombie"], "");
    assert_eq!(q.code, 2);
    assert!(
        q.stderr.contains("zombie asks no questions"),
        "{}",
        q.stderr
    );
    assert!(
        q.stderr.contains("fork-print"),
        "names the ones that do: {}",
        q.stderr
    );
}

#[test]
fn a_bad_quiz_table_names_file_line_and_column() {
    let f = scenario_file(
        "bad-quiz",
        r#"name = "bad-quiz"
title = "t"
explain = "e"

[values]
v = 0

[roles.main]
steps = [ { print = "hi" } ]

[[quiz]]
ask = "final?"
answer = "final_value"
value = "w"
"#,
    );
    let path = f.to_str().expect("utf-8");
    let q = quiz(&[path], "1\n");
    assert_eq!(q.code, 2, "{}", q.stdout);
    assert!(
        q.stderr.contains(&format!(
            "{path}:14:9: unknown shared value \"w\" (declared: v)"
        )),
        "{}",
        q.stderr
    );
    let check = forkscope(&["check", path]);
    assert_eq!(check.code, 2);
    assert!(
        check.stderr.contains(&format!("{path}:14:9:")),
        "{}",
        check.stderr
    );
}

/// Every built-in question: its run gives an answer and, when there are
/// choices, one of them is it (so no question is a trick).
#[test]
fn every_builtin_question_has_its_answer_among_the_choices() {
    let mut asked = 0;
    for b in forkscope::scenario::catalog::BUILTINS {
        let s = b.load().expect("built-ins load");
        if s.quiz.is_empty() {
            continue;
        }
        asked += 1;
        let q = quiz(&[b.name, "--time-scale", "0.1"], "");
        assert_eq!(q.code, 0, "{}: {}{}", b.name, q.stdout, q.stderr);
        assert!(
            !q.stdout.contains("answer: none"),
            "{}: {}",
            b.name,
            q.stdout
        );
        assert!(
            !q.stdout.contains("none of the choices"),
            "{}: {}",
            b.name,
            q.stdout
        );
        assert!(
            q.stdout.contains("decided by: "),
            "{}: {}",
            b.name,
            q.stdout
        );
    }
    assert!(asked >= 10, "{asked} built-ins carry a question");
}

#[test]
fn a_run_cut_short_by_the_timeout_says_so_and_exits_1() {
    let q = quiz(
        &["no-join", "--set", "sleep_ms=5000", "--timeout", "1"],
        "2\n",
    );
    assert_eq!(q.code, 1, "{}{}", q.stdout, q.stderr);
    assert!(
        q.stderr.contains("longer than 1 s and was stopped"),
        "{}",
        q.stderr
    );
    assert!(
        q.stdout
            .contains("(the run was stopped before its end: these are the answers so far)"),
        "{}",
        q.stdout
    );
}
