//! The trust rules of the collector, driven through a real socket from
//! this test process (which plays every process: all connections have our
//! pid, so a hello is vouched for exactly when a `spawn` names our pid).

use super::*;
use std::io::Write;

struct Bench {
    state: State,
    rx: Receiver<Event>,
    path: PathBuf,
    dir: PathBuf,
    me: i32,
}

impl Bench {
    fn new() -> Bench {
        let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("forkscope-unit-XXXXXX"))
            .expect("temp dir");
        let path = dir.join("probe.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let (tx, rx) = bounded(1024);
        let mut state = State::new(
            listener,
            tx,
            Arc::new(Stats::default()),
            Arc::new(AtomicBool::new(false)),
        );
        state.window_ns = 0;
        let me = std::process::id() as i32;
        // We are the root of trust ourselves.
        state.root.store(me, Ordering::SeqCst);
        Bench {
            state,
            rx,
            path,
            dir,
            me,
        }
    }

    fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).expect("connect")
    }

    /// Lets the collector take in what was sent.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.state.poll_once();
        }
        self.state.flush(true);
    }

    fn events(&mut self) -> Vec<Event> {
        self.settle();
        self.rx.try_iter().collect()
    }

    fn stat(&self, n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn send(s: &mut UnixStream, proc_id: &str, kind: &str, fields: &str) {
    send_at(s, now_ns(), proc_id, kind, fields);
}

fn send_at(s: &mut UnixStream, t_ns: u64, proc_id: &str, kind: &str, fields: &str) {
    let comma = if fields.is_empty() { "" } else { "," };
    let line = format!(
        r#"{{"t_ns":{t_ns},"seq":1,"proc":"{proc_id}","pid":7,"kind":"{kind}"{comma}{fields}}}"#
    );
    s.write_all(format!("{line}\n").as_bytes()).expect("write");
}

fn hello(s: &mut UnixStream, proc_id: &str) {
    send(
        s,
        proc_id,
        "hello",
        r#""ppid":1,"role":"x","parent":"liar""#,
    );
}

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e.proc_id, e.body.kind()))
        .collect()
}

#[test]
fn a_hello_before_its_parents_spawn_waits_for_it() {
    let mut b = Bench::new();
    let me = b.me;
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    b.settle();
    // The spawn is stamped before the fork...
    let t_fork = now_ns();
    // ...but main says hello (and more) before the spawn is read.
    let mut main = b.connect();
    hello(&mut main, "main");
    send(&mut main, "main", "narrate", r#""text":"early""#);
    let early = b.events();
    assert_eq!(kinds(&early), ["runner hello"]);
    assert_eq!(b.state.conns.iter().filter(|c| c.held.is_some()).count(), 1);
    send_at(
        &mut runner,
        t_fork,
        RUNNER_ID,
        "spawn",
        &format!(r#""child":"main","child_pid":{me},"role":"main""#),
    );
    send(&mut main, "main", "narrate", r#""text":"later""#);
    let events = b.events();
    assert_eq!(
        kinds(&events),
        ["runner spawn", "main hello", "main narrate", "main narrate"]
    );
    // The parent is the one that announced it, not the one it claims.
    assert!(matches!(
        &events[1].body,
        Body::Hello { parent: Some(p), .. } if p == RUNNER_ID
    ));
    assert_eq!(events[1].pid, me);
    assert_eq!(b.stat(&b.state.stats.impostors), 0);
}

#[test]
fn a_hello_from_another_pid_than_announced_is_refused() {
    let mut b = Bench::new();
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    // Announced with a pid that is not ours: before and after the hello.
    send(
        &mut runner,
        RUNNER_ID,
        "spawn",
        r#""child":"main","child_pid":1,"role":"main""#,
    );
    b.settle();
    let mut main = b.connect();
    hello(&mut main, "main");
    let mut early = b.connect();
    hello(&mut early, "main.1");
    b.settle();
    send(
        &mut runner,
        RUNNER_ID,
        "spawn",
        r#""child":"main.1","child_pid":1,"role":"x""#,
    );
    // A second runner.
    let mut second = b.connect();
    hello(&mut second, RUNNER_ID);
    let events = b.events();
    assert_eq!(
        kinds(&events),
        ["runner hello", "runner spawn", "runner spawn"]
    );
    assert_eq!(b.stat(&b.state.stats.impostors), 3);
    assert!(b.state.conns.iter().filter(|c| !c.dead).count() == 1);
}

#[test]
fn events_about_others_come_only_from_their_parent_or_the_runner() {
    let mut b = Bench::new();
    let me = b.me;
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    for child in ["main", "main.1"] {
        send(
            &mut runner,
            RUNNER_ID,
            "spawn",
            &format!(r#""child":"{child}","child_pid":{me},"role":"x""#),
        );
    }
    b.settle();
    let mut main = b.connect();
    hello(&mut main, "main");
    b.settle();
    let _ = b.events();
    // Forged by main: kinds only forkscope makes, the end of its parent,
    // of itself as reaped, of a sibling it did not start, a taken name.
    send(
        &mut main,
        "main.1",
        "race",
        r#""name":"v","read":0,"replaced":2,"written":1,"lost":2"#,
    );
    send(&mut main, "main", "deadlock", r#""cycle":"a""#);
    send(
        &mut main,
        "main",
        "sample",
        r#""cpu_percent":1.0,"rss_bytes":1"#,
    );
    send(
        &mut main,
        "main.1",
        "adopted",
        r#""by":"runner","new_ppid":1"#,
    );
    send(&mut main, RUNNER_ID, "exit", r#""code":9"#);
    send(
        &mut main,
        RUNNER_ID,
        "reaped",
        r#""by":"main","by_pid":1,"code":9"#,
    );
    send(
        &mut main,
        "main",
        "reaped",
        r#""by":"main","by_pid":1,"code":9"#,
    );
    send(&mut main, "main.1", "exit", r#""code":9"#);
    send(
        &mut main,
        "main.1",
        "reaped",
        r#""by":"main","by_pid":1,"code":9"#,
    );
    send(
        &mut main,
        "main",
        "spawn",
        r#""child":"main.1","child_pid":1,"role":"x""#,
    );
    let stop = r#""target":"runner","target_pid":1,"signal":"SIGSTOP""#;
    send(&mut main, "main", "signal", stop);
    // Allowed: its own child's end, its own exit, and anyone's reaping by
    // the runner (orphans); `by` is always the sender.
    send(
        &mut main,
        "main",
        "spawn",
        r#""child":"main.2","child_pid":5,"role":"x""#,
    );
    let term = r#""target":"main.2","target_pid":1,"signal":"SIGTERM""#;
    send(&mut main, "main", "signal", term);
    send(&mut main, "main.2", "exit", r#""signal":"SIGTERM""#);
    send(
        &mut main,
        "main.2",
        "reaped",
        r#""by":"runner","by_pid":1,"signal":"SIGTERM""#,
    );
    send(
        &mut runner,
        "main.1",
        "reaped",
        r#""by":"x","by_pid":1,"code":0"#,
    );
    let events = b.events();
    assert_eq!(b.stat(&b.state.stats.forged), 11, "{events:#?}");
    let shown = kinds(&events);
    assert_eq!(
        shown,
        [
            "main spawn",
            "main signal",
            "main.2 exit",
            "main.2 reaped",
            "main.1 exit",
            "main.1 reaped",
        ],
        "{events:#?}"
    );
    assert!(matches!(
        &events[1].body,
        Body::Signal { target_pid: 5, .. }
    ));
    assert!(matches!(&events[3].body, Body::Reaped { by, .. } if by == "main"));
    assert_eq!(events[3].pid, 5);
    assert!(matches!(&events[5].body, Body::Reaped { by, .. } if by == RUNNER_ID));
}

#[test]
fn the_same_process_may_connect_again_until_it_ends() {
    let mut b = Bench::new();
    let me = b.me;
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    send(
        &mut runner,
        RUNNER_ID,
        "spawn",
        &format!(r#""child":"main","child_pid":{me},"role":"main""#),
    );
    let mut main = b.connect();
    hello(&mut main, "main");
    b.settle();
    // A program main exec'd speaks again (same pid): welcome.
    drop(main);
    let mut again = b.connect();
    hello(&mut again, "main");
    send(&mut again, "main", "narrate", r#""text":"after exec""#);
    b.settle();
    assert_eq!(b.stat(&b.state.stats.impostors), 0);
    // Once it has ended, its pid is no proof any more.
    send(&mut again, "main", "exit", r#""code":0"#);
    b.settle();
    let mut late = b.connect();
    hello(&mut late, "main");
    let events = b.events();
    assert_eq!(b.stat(&b.state.stats.impostors), 1, "{events:#?}");
}
