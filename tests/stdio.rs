//! Issue 8, defect 5: `print` fills the process's own stdout buffer, as
//! Python's `sys.stdout` does (by line on a terminal, in 8 KiB blocks on a
//! pipe). A fork copies an unflushed buffer; a process killed by a signal
//! never writes it; a normal end does.

mod common;

use common::*;
use forkscope::protocol::Body;

fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn exit_signal(run: &Run, id: &str) -> Option<String> {
    run.events.iter().find_map(|e| match &e.body {
        Body::Exit { signal, .. } if e.proc_id == id => signal.clone(),
        _ => None,
    })
}

#[test]
fn fork_copies_an_unflushed_line_so_it_comes_out_once_per_process() {
    for _ in 0..3 {
        let run = run_jsonl("fork-stdio-buffer", &["--set", "pause_ms=0"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let main_pid = run
            .events
            .iter()
            .find(|e| e.proc_id == "main")
            .map(|e| e.pid)
            .expect("main spoke");
        let line = format!("main pid {main_pid}");
        // Once from main, once from its child: the same text, main's pid.
        // (Its stderr on failure: the collector's counts of what it
        // dropped, a probe that could not connect.)
        assert_eq!(
            lines_with(&run.output_of("main"), "main pid"),
            vec![line.as_str()],
            "stderr: {}\nstdout: {}",
            run.stderr,
            run.stdout
        );
        assert_eq!(
            lines_with(&run.output_of("main.1"), "main pid"),
            vec![line.as_str()],
            "stderr: {}\nstdout: {}",
            run.stderr,
            run.stdout
        );
        assert_eq!(lines_with(&run.terminal(), "main pid").len(), 2);
        // The child says it found the line in its copy of the buffer.
        assert!(
            run.events.iter().any(|e| e.proc_id == "main.1"
                && e.body
                    == Body::Buffered {
                        text: format!("{line}\n"),
                        inherited: true
                    }),
            "no inherited buffer in main.1"
        );
        assert_eq!(lines_with(&run.terminal(), "child pid").len(), 1);
        assert_eq!(lines_with(&run.terminal(), "parent: child").len(), 1);
    }
}

#[test]
fn a_flush_before_fork_writes_the_line_once() {
    for _ in 0..3 {
        let run = run_jsonl(
            "fork-stdio-buffer",
            &["--set", "flush_before_fork=true", "--set", "pause_ms=0"],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(lines_with(&run.output_of("main"), "main pid").len(), 1);
        assert_eq!(lines_with(&run.output_of("main.1"), "main pid").len(), 0);
        assert_eq!(lines_with(&run.terminal(), "main pid").len(), 1);
        assert!(
            !run.events.iter().any(|e| matches!(
                e.body,
                Body::Buffered {
                    inherited: true,
                    ..
                }
            )),
            "the child's copy of the buffer was empty"
        );
    }
}

/// `loud` ends normally; `quiet` prints, says it is ready, and waits to be
/// terminated.
const TERMINATED: &str = r#"
name = "terminated"
title = "t"
explain = "t"
stdout = "block"

[queues.q]
maxsize = 0

[roles.main]
steps = [
  { spawn = "loud", as = "a" },
  { spawn = "quiet", as = "b" },
  { join = "a" },
  { get = "q" },
  { terminate = "b" },
  { join = "b" },
]

[roles.loud]
steps = [ { print = "loud 1" }, { print = "loud 2" } ]

[roles.quiet]
steps = [
  { print = "quiet 1" },
  { print = "quiet 2" },
  { put = "q", value = "'ready'" },
  { sleep_ms = 20000 },
]
"#;

#[test]
fn a_block_buffered_process_killed_by_sigterm_loses_its_unflushed_lines() {
    let file = scenario_file("terminated", TERMINATED);
    let path = file.to_str().expect("utf-8 path");
    for _ in 0..3 {
        let run = run_jsonl(path, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        // The process that ended normally wrote its buffer at its end.
        assert_eq!(run.output_of("main.1"), "loud 1\nloud 2\n");
        // The terminated one printed (into its buffer) but never wrote.
        assert_eq!(exit_signal(&run, "main.2").as_deref(), Some("SIGTERM"));
        let buffered: Vec<&Body> = run
            .events
            .iter()
            .filter(|e| e.proc_id == "main.2" && matches!(e.body, Body::Buffered { .. }))
            .map(|e| &e.body)
            .collect();
        assert_eq!(buffered.len(), 2, "quiet printed twice into its buffer");
        assert_eq!(run.output_of("main.2"), "", "its lines are lost");
        assert!(!run.terminal().contains("quiet"), "{}", run.terminal());
    }
    // The text log's summary says what was lost.
    let run = forkscope(&["run", path]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            r"lost: main.2 (killed by SIGTERM) never wrote 16 bytes of its stdout buffer: 'quiet 1\nquiet 2\n'"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn with_line_buffering_the_terminated_process_had_written_its_lines() {
    let file = scenario_file("terminated", TERMINATED);
    let path = file.to_str().expect("utf-8 path");
    let run = run_jsonl(path, &["--stdout", "line"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(exit_signal(&run, "main.2").as_deref(), Some("SIGTERM"));
    assert_eq!(run.output_of("main.2"), "quiet 1\nquiet 2\n");
    assert_eq!(run.output_of("main.1"), "loud 1\nloud 2\n");
}

#[test]
fn a_print_without_newline_stays_buffered_in_line_mode_until_the_newline() {
    let file = scenario_file(
        "partial",
        r#"
name = "partial"
title = "t"
explain = "t"

[queues.q]
maxsize = 0

[roles.main]
steps = [
  { print = "waiting... ", end = "" },
  { narrate = "nothing written yet" },
  { print = "done" },
  { spawn = "child", as = "c" },
  { get = "q" },
  { terminate = "c" },
  { join = "c" },
]

[roles.child]
steps = [
  { print = "half a line", end = "" },
  { put = "q", value = "'ready'" },
  { sleep_ms = 20000 },
]
"#,
    );
    let path = file.to_str().expect("utf-8 path");
    for _ in 0..3 {
        let run = run_jsonl(path, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        // One write of the whole line, after the caption: the first part
        // waited in the buffer for the newline.
        let main: Vec<&Body> = run
            .events
            .iter()
            .filter(|e| e.proc_id == "main")
            .map(|e| &e.body)
            .filter(|b| matches!(b, Body::Narrate { .. } | Body::Output { .. }))
            .collect();
        assert!(
            matches!(main.as_slice(), [Body::Narrate { .. }, Body::Output { text, .. }]
                if text == "waiting... done\n"),
            "{main:?}"
        );
        // The child's half line never got its newline: killed, it is lost.
        assert_eq!(exit_signal(&run, "main.1").as_deref(), Some("SIGTERM"));
        assert_eq!(run.output_of("main.1"), "");
        assert_eq!(run.terminal(), "waiting... done\n");
    }
}

#[test]
fn an_os_fork_child_writes_its_copy_at_a_normal_end_but_not_on_os_exit() {
    // As python3 does (docs/reliability/stdout-buffer.md): a child that returns
    // writes its copy of the buffer at interpreter shutdown; os._exit()
    // skips that, and the copy is lost.
    let file = scenario_file(
        "osexit",
        r#"
name = "osexit"
title = "t"
explain = "t"
stdout = "block"

[params.os_exit]
default = true
help = "the child ends with os._exit(0)"

[roles.main]
steps = [
  { print = "x" },
  { fork = "res" },
  { if = "res == 0", then = [
    { print = "child" },
    { if = "os_exit", then = [ { os_exit = 0 } ] },
  ], else = [ { wait = "" } ] },
]
"#,
    );
    let path = file.to_str().expect("utf-8 path");
    let run = run_jsonl(path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.output_of("main"), "x\n");
    assert_eq!(run.output_of("main.1"), "", "os._exit: the copy is lost");
    let run = run_jsonl(path, &["--set", "os_exit=false"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.output_of("main"), "x\n");
    assert_eq!(
        run.output_of("main.1"),
        "x\nchild\n",
        "its copy, then its own line"
    );
}
