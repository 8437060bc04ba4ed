//! The trust rules of the collector, driven through a real socket from
//! this test process (which plays every process: all connections have our
//! pid, so a hello is vouched for exactly when a `spawn` names our pid).

use super::*;
use std::io::Write;

struct Bench {
    state: State,
    rx: Events,
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
        let wake = Arc::new(EventFd::new().expect("eventfd"));
        let (tx, rx) = events::channel(1024, wake.clone());
        let mut state = State::new(
            listener,
            tx,
            wake,
            Arc::new(Stats::default()),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("epoll");
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

    /// The runner's connection, after its hello and its `spawn` of this
    /// test process as `main`.
    fn runner_spawning_me_as_main(&self) -> UnixStream {
        let mut runner = self.connect();
        hello(&mut runner, RUNNER_ID);
        self.spawn_me_as_main_at(&mut runner, now_ns());
        runner
    }

    /// The runner, connected, its hello taken in.
    fn runner(&mut self) -> UnixStream {
        let mut runner = self.connect();
        hello(&mut runner, RUNNER_ID);
        self.settle();
        runner
    }

    /// The runner's `spawn` of `main` with our own pid, stamped `t_ns`.
    fn spawn_me_as_main_at(&self, runner: &mut UnixStream, t_ns: u64) {
        let me = self.me;
        send_at(
            runner,
            t_ns,
            RUNNER_ID,
            "spawn",
            &format!(r#""child":"main","child_pid":{me},"role":"main""#),
        );
    }

    /// `main` (announced by the runner) says an old hello: two
    /// descriptors, stdout and stderr (its pipe grown to `pipe_bytes`
    /// unless 0); events on the socket. Its socket and the pipes' write
    /// ends.
    fn main_with_pipes(&mut self, pipe_bytes: i32) -> (UnixStream, OwnedFd, OwnedFd) {
        let main = self.connect();
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        if pipe_bytes > 0 {
            let _ = nix::fcntl::fcntl(&out_w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(pipe_bytes));
        }
        let line = format!(
            "{{\"t_ns\":{},\"seq\":1,\"proc\":\"main\",\"pid\":7,\"kind\":\"hello\",\"ppid\":1,\"role\":\"x\"}}\n",
            now_ns()
        );
        let iov = [std::io::IoSlice::new(line.as_bytes())];
        let raw = [out_r.as_raw_fd(), err_r.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        nix::sys::socket::sendmsg::<()>(main.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .expect("sendmsg");
        drop((out_r, err_r));
        self.settle();
        (main, out_w, err_w)
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

    /// Lets the collector go on, taking what it hands over, until `n`
    /// events came (20 s at most).
    fn take_events(&mut self, n: usize) -> Vec<Event> {
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        while got.len() < n && Instant::now() < until {
            self.settle();
            got.extend(self.rx.try_recv_batch().unwrap_or_default());
        }
        got
    }

    fn events(&mut self) -> Vec<Event> {
        self.settle();
        self.rx.try_recv_batch().unwrap_or_default()
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
    let line = line_at(t_ns, proc_id, kind, fields);
    s.write_all(format!("{line}\n").as_bytes()).expect("write");
}

/// One event line (without its newline), as [`send_at`] sends it.
fn line_at(t_ns: u64, proc_id: &str, kind: &str, fields: &str) -> String {
    let comma = if fields.is_empty() { "" } else { "," };
    format!(
        r#"{{"t_ns":{t_ns},"seq":1,"proc":"{proc_id}","pid":7,"kind":"{kind}"{comma}{fields}}}"#
    )
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
    let mut runner = b.runner();
    // The spawn is stamped before the fork...
    let t_fork = now_ns();
    // ...but main says hello (and more) before the spawn is read.
    let mut main = b.connect();
    hello(&mut main, "main");
    send(&mut main, "main", "narrate", r#""text":"early""#);
    let early = b.events();
    assert_eq!(kinds(&early), ["runner hello"]);
    assert_eq!(b.state.conns.iter().filter(|c| c.held.is_some()).count(), 1);
    b.spawn_me_as_main_at(&mut runner, t_fork);
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
    assert_eq!(events[1].pid, b.me);
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
    let _runner = b.runner_spawning_me_as_main();
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
    // The process started once: its hello after the exec is not passed on.
    let hellos = events
        .iter()
        .filter(|e| e.proc_id == "main" && e.body.kind() == "hello")
        .count();
    assert_eq!(hellos, 1, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.body, Body::Narrate { text, .. } if text == "after exec")),
        "{events:#?}"
    );
}

/// Set for the copy of this test binary that plays a runner core.
const HELPER_SOCK_ENV: &str = "FORKSCOPE_UNIT_RUNNER_SOCK";
const HELPER_LINGER_ENV: &str = "FORKSCOPE_UNIT_RUNNER_LINGER";

/// Not a test: run by the tests below in a process of its own. Says hello
/// as the runner, lingers if asked, and ends.
#[test]
#[ignore = "a helper process for the tests below"]
fn helper_runner_core() {
    let Some(sock) = std::env::var_os(HELPER_SOCK_ENV) else {
        return;
    };
    let probe = crate::probe::Probe::connect(
        std::path::Path::new(&sock),
        RUNNER_ID,
        "runner",
        None,
        false,
        crate::probe::Capture::None,
    );
    if std::env::var_os(HELPER_LINGER_ENV).is_some() {
        assert!(probe.linger(Duration::from_secs(20)), "nobody read us");
    }
}

/// Starts [`helper_runner_core`] as our child (so it descends from us, the
/// root of trust) and waits until its connection is at our door, not yet
/// accepted.
fn start_helper(b: &Bench, linger: bool) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "collector::identity_tests::helper_runner_core",
        "--ignored",
        "--test-threads=1",
    ])
    .env(HELPER_SOCK_ENV, &b.path)
    .stdout(std::process::Stdio::null());
    if linger {
        cmd.env(HELPER_LINGER_ENV, "1");
    }
    let child = cmd.spawn().expect("helper starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !os_readable_raw(b.state.listener.as_raw_fd()) {
        assert!(Instant::now() < deadline, "the helper never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Waits until `child` ended (and reaps it), at most `limit`; did it end?
fn ended_within(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

// The order of the bug: the collector (busy, or not scheduled on a loaded
// machine) accepts only after the whole run is over and reaped. The
// runner's claim rests on the kernel's word that it descends from the
// root; a peer gone by then has no such word, so its claim is refused
// (a stranger could have said the same), and with it the whole run.
#[test]
fn a_runner_gone_before_it_was_accepted_is_refused() {
    let mut b = Bench::new();
    let mut helper = start_helper(&b, false);
    assert!(ended_within(&mut helper, Duration::from_secs(30)));
    let events = b.events();
    assert!(kinds(&events).is_empty(), "{events:#?}");
    assert_eq!(b.stat(&b.state.stats.impostors), 1);
}

// ...so the runner core lingers at its end until the collector has read
// what it sent: however late the collector accepts, it judges a live peer.
#[test]
fn a_lingering_runner_is_judged_alive_however_late_it_is_accepted() {
    let mut b = Bench::new();
    let mut helper = start_helper(&b, true);
    // As late as we like: it does not end before we read it.
    assert!(!ended_within(&mut helper, Duration::from_millis(1500)));
    let mut events = b.events();
    assert_eq!(b.stat(&b.state.stats.impostors), 0);
    // Read, it ends (and the collector sees it end).
    assert!(ended_within(&mut helper, Duration::from_secs(30)));
    assert!(helper.wait().expect("wait").success());
    events.extend(b.events());
    assert_eq!(kinds(&events), ["runner hello", "runner exit"]);
}

#[test]
fn the_runner_may_reap_an_orphan_its_parent_has_not_announced_yet() {
    // fork-print: main forks, exits; the runner core reaps the orphan, and
    // its `reaped` can be read before main's `spawn` of that orphan.
    let mut b = Bench::new();
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    b.settle();
    send(
        &mut runner,
        "main.1",
        "reaped",
        &format!(r#""by":"runner","by_pid":{},"code":0"#, b.me),
    );
    let events = b.events();
    // Its exit comes from the status the reaper reports.
    assert_eq!(
        kinds(&events),
        ["runner hello", "main.1 exit", "main.1 reaped"]
    );
    assert_eq!(b.stat(&b.state.stats.forged), 0);
}

/// A gate (the app's way to say `go`) lasts as long as its connection:
/// a closed connection's socket is let go, not kept until the run ends.
#[test]
fn a_gate_goes_with_its_connection() {
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    b.settle();
    let mut main = b.connect();
    hello(&mut main, "main");
    b.settle();
    assert!(b.state.gates.go("main"), "main's gate is open");
    let mut line = [0u8; 3];
    std::io::Read::read_exact(&mut main, &mut line).expect("go");
    assert_eq!(&line, b"go\n");
    drop(main);
    b.settle();
    assert!(
        !b.state.gates.go("main"),
        "main's gate went with its connection"
    );
    assert!(b.state.gates.go(RUNNER_ID), "the runner's is still open");
}

/// Sends `main`'s hello on `s` with `fds` (SCM_RIGHTS), named as `names`.
fn hello_with_fds(s: &UnixStream, fds: &[RawFd], names: &str) {
    use nix::sys::socket::{ControlMessage, sendmsg};
    let line = format!(
        "{{\"t_ns\":{},\"seq\":1,\"proc\":\"main\",\"pid\":7,\"kind\":\"hello\",\"ppid\":1,\"role\":\"x\",\"fds\":{names}}}\n",
        now_ns()
    );
    let iov = [std::io::IoSlice::new(line.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).expect("sendmsg");
}

#[test]
fn a_hello_whose_event_pipe_is_no_pipe_is_shown_as_misbehaving_and_its_socket_still_speaks() {
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let mut main = b.connect();
    // A file, not a pipe, named as the event pipe.
    let file = std::fs::File::open("/dev/null").expect("/dev/null");
    hello_with_fds(&main, &[file.as_raw_fd()], r#"["events"]"#);
    drop(file);
    send(&mut main, "main", "narrate", r#""text":"on the socket""#);
    let events = b.events();
    assert_eq!(
        kinds(&events),
        ["runner hello", "runner spawn", "main hello", "main narrate"]
    );
    // What the consumers see of the hello is what it always was.
    assert!(matches!(&events[2].body, Body::Hello { fds, .. } if fds.is_empty()));
    assert_eq!(b.stat(&b.state.stats.bad_fds), 1);
    assert!(
        b.state
            .stats
            .summary()
            .contains("1 event pipes that were not pipes"),
        "{}",
        b.state.stats.summary()
    );
    assert!(b.state.conns.iter().all(|c| c.events.is_none()));
}

#[test]
fn every_event_in_the_pipe_arrives_though_the_process_is_gone_before_it_is_let_in() {
    let mut b = Bench::new();
    let mut runner = b.runner();
    let t_fork = now_ns();
    // `main` says hello with its event pipe, writes its events there and
    // is gone (both ends of its own closed) before its parent's `spawn`
    // is read: its hello is held, and nothing may be lost.
    let main = b.connect();
    let (events_r, events_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    hello_with_fds(&main, &[events_r.as_raw_fd()], r#"["events"]"#);
    drop(events_r);
    let mut w = std::fs::File::from(events_w);
    for k in 0..300 {
        let line = format!(
            "{{\"t_ns\":{},\"seq\":{},\"proc\":\"main\",\"pid\":7,\"kind\":\"narrate\",\"text\":\"{k}\"}}\n",
            now_ns(),
            k + 2
        );
        w.write_all(line.as_bytes()).expect("write");
    }
    // A half line at the end is not an event.
    w.write_all(b"{\"t_ns\":1,").expect("write");
    drop(w);
    drop(main);
    assert_eq!(kinds(&b.events()), ["runner hello"]);
    b.spawn_me_as_main_at(&mut runner, t_fork);
    let events = b.events();
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Narrate { text, .. } if e.proc_id == "main" => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, (0..300).map(|k| k.to_string()).collect::<Vec<_>>());
    assert_eq!(kinds(&events)[..2], ["runner spawn", "main hello"]);
    assert_eq!(b.state.stats.garbage(), 0);
    // The connection and its pipe are gone with the process.
    assert!(
        b.state
            .conns
            .iter()
            .all(|c| c.who.as_ref().is_none_or(|w| &*w.id != "main"))
    );
}

#[test]
fn a_hellos_descriptors_are_what_its_fds_says_or_the_old_two() {
    let fds = |n: usize| -> Vec<OwnedFd> {
        (0..n)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")))
            .collect()
    };
    let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let got = |s: [Option<OwnedFd>; 3]| s.map(|f| f.is_some());
    // Old hellos: two are stdout and stderr, any other number nothing.
    assert_eq!(got(sort_fds(fds(2), &[])), [true, true, false]);
    assert_eq!(got(sort_fds(fds(1), &[])), [false, false, false]);
    assert_eq!(got(sort_fds(fds(3), &[])), [false, false, false]);
    // Named: by place; unknown names, repeats and unnamed ones closed.
    let all = names(&["stdout", "stderr", "events"]);
    assert_eq!(got(sort_fds(fds(3), &all)), [true, true, true]);
    assert_eq!(
        got(sort_fds(fds(1), &names(&["events"]))),
        [false, false, true]
    );
    assert_eq!(
        got(sort_fds(fds(2), &names(&["events"]))),
        [false, false, true]
    );
    assert_eq!(
        got(sort_fds(fds(2), &names(&["tty", "events"]))),
        [false, false, true]
    );
    assert_eq!(
        got(sort_fds(fds(2), &names(&["events", "events"]))),
        [false, false, true]
    );
}

/// Takes the collector's events until its stream ends (20 s at most).
fn wait_until_the_stream_ends(collector: &Collector) {
    let started = Instant::now();
    loop {
        match collector
            .events
            .recv_batch_timeout(Duration::from_millis(50))
        {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            _ => assert!(
                started.elapsed() < Duration::from_secs(20),
                "the stream never ended"
            ),
        }
    }
}

#[test]
fn the_stream_ends_by_itself_when_the_runner_it_was_given_ends() {
    // The app looks whether its runner has ended every 20 ms at most; the
    // collector watches the runner's pidfd, so the last events are handed
    // over, and the stream ends, the moment it ends: without the app.
    let collector = Collector::start(64, 0).expect("collector");
    let mut runner = std::process::Command::new("sleep")
        .arg("0.2")
        .spawn()
        .expect("sleep");
    collector.finish_when_exits(runner.id());
    wait_until_the_stream_ends(&collector);
    assert!(
        runner.try_wait().expect("wait").is_some(),
        "the stream ended before the runner did"
    );
}

#[test]
fn what_is_still_unread_when_the_drain_gives_up_is_counted_not_lost_in_silence() {
    // A connection of ours that is still open (it never says hello) when
    // the run is over: the collector waits for it at most DRAIN_TIMEOUT,
    // then stops. What it held is lost; the summary says so.
    let collector = Collector::start(64, 0).expect("collector");
    collector.trust(std::process::id());
    let _open = crate::probe::connect_to(&collector.socket).expect("connect");
    // Accepted, judged ours (we are the root), and kept.
    std::thread::sleep(Duration::from_millis(50));
    collector.finish();
    let started = Instant::now();
    wait_until_the_stream_ends(&collector);
    assert!(started.elapsed() >= DRAIN_TIMEOUT / 2, "it did not wait");
    assert_eq!(collector.stats.unread_at_end.load(Ordering::Relaxed), 1);
    assert!(
        collector
            .stats
            .summary()
            .contains("1 connections or pipes still unread"),
        "{}",
        collector.stats.summary()
    );
}

#[test]
fn a_direct_sink_gets_every_event_in_order_and_the_run_ends_without_waiting() {
    // The consumer's work on the collector's thread: 3,000 wakes through
    // a channel bound of 64 events, and nobody ever takes any from
    // `events`. The sink gets them all, in order, none dropped; and the
    // end of the run waits for no consumer (with a channel nobody takes
    // from, it would wait DRAIN_TIMEOUT, then drop what is left).
    let got: Arc<std::sync::Mutex<Vec<Event>>> = Arc::default();
    let batches = Arc::new(AtomicU64::new(0));
    let (into, counted) = (got.clone(), batches.clone());
    let sink: Sink = Box::new(move |batch: Vec<Event>| {
        assert_eq!(
            std::thread::current().name(),
            Some("collector"),
            "called on the collector's thread"
        );
        counted.fetch_add(1, Ordering::Relaxed);
        into.lock().expect("sink").extend(batch);
    });
    let collector = Collector::start_direct(64, 0, sink).expect("collector");
    collector.trust(std::process::id());
    let mut runner = crate::probe::connect_to(&collector.socket).expect("connect");
    hello(&mut runner, RUNNER_ID);
    let t0 = now_ns();
    for i in 0..3000 {
        send_at(&mut runner, t0 + i, RUNNER_ID, "wake", "");
    }
    drop(runner);
    collector.finish();
    let started = Instant::now();
    wait_until_the_stream_ends(&collector);
    let took = started.elapsed();
    assert!(took < DRAIN_TIMEOUT / 2, "the end waited {took:?}");
    assert!(collector.events.is_empty(), "nothing crosses the channel");
    assert_eq!(collector.stats.dropped.load(Ordering::Relaxed), 0);
    let got = got.lock().expect("sink");
    assert_eq!(kinds(&got[..1]), ["runner hello"]);
    assert_wakes_in_order(&got, 3000);
    assert_eq!(
        collector.stats.events.load(Ordering::Relaxed),
        got.len() as u64
    );
    assert!(batches.load(Ordering::Relaxed) >= 1);
}

/// Every event of a pulled collector, read on this thread, until its
/// channel disconnects (20 s at most).
fn pull_to_the_end(collector: &mut Collector) -> Vec<Event> {
    let started = Instant::now();
    let mut got = Vec::new();
    loop {
        match collector.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => got.push(e),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return got,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "the stream never ended"
            ),
        }
    }
}

#[test]
fn a_pulled_collector_read_on_this_thread_gets_every_event_in_order_and_ends_without_waiting() {
    // No collector thread: `recv_timeout` reads on the caller's thread.
    // 3,000 wakes through a channel bound of 64 events (the writer blocks
    // on its full socket while this thread is not reading): all come, in
    // order, none dropped; the end of the run waits for no consumer (the
    // consumer is this thread: with a channel nobody takes from, a thread
    // would wait for it).
    let mut collector = Collector::start_pull(64, 0).expect("collector");
    assert!(collector.is_pulled());
    collector.trust(std::process::id());
    let mut runner = crate::probe::connect_to(&collector.socket).expect("connect");
    let writer = std::thread::spawn(move || {
        hello(&mut runner, RUNNER_ID);
        let t0 = now_ns();
        for i in 0..3000 {
            send_at(&mut runner, t0 + i, RUNNER_ID, "wake", "");
        }
    });
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < 3001 {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", got.len());
        if let Ok(e) = collector.recv_timeout(Duration::from_millis(50)) {
            got.push(e);
        }
    }
    writer.join().expect("writer");
    collector.finish();
    let ending = Instant::now();
    got.extend(pull_to_the_end(&mut collector));
    let took = ending.elapsed();
    assert!(took < DRAIN_TIMEOUT / 2, "the end waited {took:?}");
    assert_eq!(kinds(&got[..1]), ["runner hello"]);
    assert_wakes_in_order(&got, 3000);
    assert_eq!(collector.stats.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(
        collector.stats.events.load(Ordering::Relaxed),
        got.len() as u64
    );
}

#[test]
fn a_pulled_collector_ends_the_moment_its_runner_ends_during_a_wait() {
    // The finish comes while this thread waits in the collector's epoll:
    // the runner's pidfd (`finish_when_exits`). The wait returns, the
    // last events are handed over, and the channel disconnects: no wait
    // for a consumer, no timeout to run out.
    let mut collector = Collector::start_pull(64, 0).expect("collector");
    collector.trust(std::process::id());
    let mut conn = crate::probe::connect_to(&collector.socket).expect("connect");
    hello(&mut conn, RUNNER_ID);
    send_at(&mut conn, now_ns(), RUNNER_ID, "wake", "");
    drop(conn);
    let mut runner = std::process::Command::new("sleep")
        .arg("0.3")
        .spawn()
        .expect("sleep");
    collector.finish_when_exits(runner.id());
    let started = Instant::now();
    let got = match collector.recv_timeout(Duration::from_secs(10)) {
        Ok(first) => {
            let mut got = vec![first];
            got.extend(pull_to_the_end(&mut collector));
            got
        }
        Err(e) => panic!("{e:?}"),
    };
    let took = started.elapsed();
    assert!(
        runner.try_wait().expect("wait").is_some(),
        "the stream ended before the runner did"
    );
    assert!(took < Duration::from_secs(2), "the end took {took:?}");
    assert_eq!(kinds(&got), ["runner hello", "runner wake"]);
}

/// One narrate line of `main` with text `text`, stamped now.
fn narrate_line(text: &str) -> String {
    format!(
        "{{\"t_ns\":{},\"seq\":2,\"proc\":\"main\",\"pid\":7,\"kind\":\"narrate\",\"text\":\"{text}\"}}\n",
        now_ns()
    )
}

/// Sends `line` on `s` with `fds` (SCM_RIGHTS).
fn line_with_fds(s: &UnixStream, line: &str, fds: &[RawFd]) {
    use nix::sys::socket::{ControlMessage, sendmsg};
    let iov = [std::io::IoSlice::new(line.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).expect("sendmsg");
}

fn narrated(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Narrate { text, .. } if e.proc_id == "main" => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_line_after_the_hello_brings_the_event_pipe_and_a_second_descriptor_is_closed_and_counted() {
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let mut main = b.connect();
    hello(&mut main, "main");
    assert_eq!(
        kinds(&b.events()),
        ["runner hello", "runner spawn", "main hello"]
    );
    // The first line after the hello carries two descriptors: the first
    // is the event pipe, the second is not part of the protocol.
    let (events_r, events_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let extra = std::fs::File::open("/dev/null").expect("/dev/null");
    line_with_fds(
        &main,
        &narrate_line("on the socket"),
        &[events_r.as_raw_fd(), extra.as_raw_fd()],
    );
    drop(events_r);
    drop(extra);
    let mut w = std::fs::File::from(events_w);
    for k in 0..3 {
        w.write_all(narrate_line(&format!("piped {k}")).as_bytes())
            .expect("write");
    }
    let events = b.events();
    assert_eq!(
        narrated(&events),
        ["on the socket", "piped 0", "piped 1", "piped 2"]
    );
    assert_eq!(b.stat(&b.state.stats.not_json), 1, "the second one counted");
    assert_eq!(b.stat(&b.state.stats.bad_fds), 0);
    // Once there is a pipe, a descriptor on another line is closed and
    // counted, and its line is read as ever.
    let (other_r, _other_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    line_with_fds(&main, &narrate_line("late"), &[other_r.as_raw_fd()]);
    drop(other_r);
    w.write_all(narrate_line("piped 3").as_bytes())
        .expect("write");
    let events = b.events();
    let mut got = narrated(&events);
    got.sort();
    assert_eq!(got, ["late", "piped 3"]);
    assert_eq!(b.stat(&b.state.stats.not_json), 2);
    assert_eq!(b.state.stats.garbage(), 2);
}

#[test]
fn a_line_after_the_hello_with_a_descriptor_that_is_no_pipe_is_counted_and_its_line_read() {
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let mut main = b.connect();
    hello(&mut main, "main");
    b.settle();
    let file = std::fs::File::open("/dev/null").expect("/dev/null");
    line_with_fds(&main, &narrate_line("first"), &[file.as_raw_fd()]);
    drop(file);
    send(&mut main, "main", "narrate", r#""text":"second""#);
    let events = b.events();
    assert_eq!(narrated(&events), ["first", "second"]);
    assert_eq!(b.stat(&b.state.stats.bad_fds), 1);
    assert!(b.state.conns.iter().all(|c| c.events.is_none()));
}

#[test]
fn a_lazy_event_pipe_sent_before_the_hello_is_let_in_loses_nothing() {
    let mut b = Bench::new();
    let mut runner = b.runner();
    let t_fork = now_ns();
    // `main` says hello without descriptors, sends its first line with its
    // event pipe (the collector reads both in one go), writes the rest
    // into the pipe and is gone, all before its parent's `spawn` is read.
    let mut main = b.connect();
    hello(&mut main, "main");
    let (events_r, events_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    line_with_fds(&main, &narrate_line("first"), &[events_r.as_raw_fd()]);
    drop(events_r);
    let mut w = std::fs::File::from(events_w);
    for k in 0..300 {
        w.write_all(narrate_line(&k.to_string()).as_bytes())
            .expect("write");
    }
    w.write_all(b"{\"t_ns\":1,").expect("write");
    drop(w);
    drop(main);
    assert_eq!(kinds(&b.events()), ["runner hello"]);
    b.spawn_me_as_main_at(&mut runner, t_fork);
    let events = b.events();
    let mut want = vec!["first".to_string()];
    want.extend((0..300).map(|k| k.to_string()));
    assert_eq!(narrated(&events), want);
    assert_eq!(kinds(&events)[..2], ["runner spawn", "main hello"]);
    assert_eq!(b.state.stats.garbage(), 0);
}

#[test]
fn a_probe_whose_first_event_comes_after_a_long_silence_shows_every_event_in_order() {
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let mut probe = crate::probe::Probe::connect(
        &b.path,
        "main",
        "main",
        Some(RUNNER_ID),
        false,
        crate::probe::Capture::None,
    );
    assert_eq!(
        kinds(&b.events()),
        ["runner hello", "runner spawn", "main hello"]
    );
    assert!(
        b.state.conns.iter().all(|c| c.events.is_none()),
        "no event pipe before the first event"
    );
    std::thread::sleep(Duration::from_millis(300));
    b.settle();
    for k in 0..50 {
        probe.emit(Body::Narrate {
            text: k.to_string(),
            pause: false,
        });
        if k == 0 {
            // The first one brought the pipe: the rest go into it.
            b.settle();
        }
    }
    let events = b.events();
    assert_eq!(
        narrated(&events),
        (0..50).map(|k| k.to_string()).collect::<Vec<_>>()
    );
    assert!(
        b.state
            .conns
            .iter()
            .any(|c| c.who.as_ref().is_some_and(|w| &*w.id == "main") && c.events.is_some()),
        "the first event brought the pipe"
    );
    assert_eq!(b.state.stats.garbage(), 0);
}

/// How long the flood tests' hostile writers write at most, and how long
/// the collector may be held meanwhile: a bound far below the flood, for
/// a debug build on a loaded machine (before the drains were bounded, the
/// collector was held as long as the flood ran).
const FLOOD_GUARD: Duration = Duration::from_secs(60);
const HELD_AT_MOST: Duration = Duration::from_secs(20);

#[test]
fn a_flood_into_an_event_pipe_cannot_hold_the_collector_when_its_socket_ends() {
    use std::sync::atomic::AtomicBool;
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let main = b.connect();
    let (events_r, events_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // As big as an unprivileged process may make it.
    let _ = nix::fcntl::fcntl(&events_w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    hello_with_fds(&main, &[events_r.as_raw_fd()], r#"["events"]"#);
    drop(events_r);
    b.settle();
    assert!(b.state.conns.iter().any(|c| c.events.is_some()));
    // A hostile process writes junk into its event pipe as fast as it
    // can, and ends its socket (it lives on).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut w = std::fs::File::from(events_w);
            let chunk = b"x\n".repeat(32 * 1024);
            let guard = Instant::now();
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) && guard.elapsed() < FLOOD_GUARD {
                if w.write_all(&chunk).is_err() {
                    break;
                }
                written += chunk.len() as u64;
            }
            (guard.elapsed(), written)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    drop(main);
    let t0 = Instant::now();
    b.settle();
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (flooded, _) = writer.join().expect("writer");
    assert!(
        took < HELD_AT_MOST,
        "the collector was held {took:?} (the flood ran {flooded:?})"
    );
    // What the process wrote is counted as junk, not shown.
    assert!(b.stat(&b.state.stats.not_json) > 0);
}

#[test]
fn a_flood_on_a_socket_cannot_hold_the_collector_while_it_reads_announcements() {
    use std::sync::atomic::AtomicBool;
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let (main, out_w, _err_w) = b.main_with_pipes(0);
    assert_eq!(b.state.outs.len(), 2);
    // A hostile process floods its socket with junk and prints a little:
    // each print makes the collector read the socket's announcements.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mut sock = main.try_clone().expect("clone");
        std::thread::spawn(move || {
            let chunk = b"x\n".repeat(32 * 1024);
            let guard = Instant::now();
            while !stop.load(Ordering::Relaxed) && guard.elapsed() < FLOOD_GUARD {
                if sock.write_all(&chunk).is_err() {
                    break;
                }
            }
            guard.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut out = std::fs::File::from(out_w);
    out.write_all(b"hi\n").expect("print");
    let t0 = Instant::now();
    b.settle();
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    // (Wakes the writer if it waits on a full socket.)
    let _ = main.shutdown(std::net::Shutdown::Both);
    let flooded = writer.join().expect("writer");
    assert!(
        took < HELD_AT_MOST,
        "the collector was held {took:?} (the flood ran {flooded:?})"
    );
}

/// Hellos whose `fds` lies, in every way we could think of: the
/// collector neither panics nor stalls, the socket still speaks, and
/// what it takes as the event pipe is read as `main`'s own.
#[test]
fn hellos_whose_fds_lie_are_contained() {
    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;
    struct Case {
        name: &'static str,
        names: &'static str,
        /// Descriptors sent; the last pipe's write end is written to.
        fds: Vec<OwnedFd>,
        write_end: Option<OwnedFd>,
        /// Lines written into `write_end` arrive as main's.
        piped: bool,
        bad: u64,
    }
    let pipe = || pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
    let mut cases = Vec::new();
    {
        let (r, w) = pipe();
        cases.push(Case {
            name: "more names than descriptors",
            names: r#"["stdout","stderr","events"]"#,
            fds: vec![r],
            write_end: Some(w),
            piped: false,
            bad: 0,
        });
    }
    {
        let (r, w) = pipe();
        cases.push(Case {
            name: "fewer names than descriptors",
            names: r#"["events"]"#,
            fds: vec![r, null(), null()],
            write_end: Some(w),
            piped: true,
            bad: 0,
        });
    }
    {
        let (r, w) = pipe();
        let r2 = r.try_clone().expect("dup");
        cases.push(Case {
            name: "the same pipe twice",
            names: r#"["events","events"]"#,
            fds: vec![r, r2],
            write_end: Some(w),
            piped: true,
            bad: 0,
        });
    }
    {
        let (r, w) = pipe();
        cases.push(Case {
            name: "unknown names",
            names: r#"["tty","socket","x\u0000y"]"#,
            fds: vec![r],
            write_end: Some(w),
            piped: false,
            bad: 0,
        });
    }
    {
        let (r, w) = pipe();
        let w2 = w.try_clone().expect("dup");
        cases.push(Case {
            name: "a pipe's write end as the event pipe",
            names: r#"["events"]"#,
            fds: vec![w2],
            write_end: Some(w),
            piped: false,
            bad: 0,
        });
        drop(r);
    }
    {
        let (a, _b) = UnixStream::pair().expect("pair");
        cases.push(Case {
            name: "a socket as the event pipe",
            names: r#"["events"]"#,
            fds: vec![OwnedFd::from(a)],
            write_end: None,
            piped: false,
            bad: 1,
        });
    }
    {
        let (r, w) = pipe();
        cases.push(Case {
            name: "stdout and events the same pipe",
            names: r#"["stdout","stderr","events"]"#,
            fds: vec![r.try_clone().expect("dup"), null(), r],
            // (What is written there goes to whichever reader is first.)
            write_end: None,
            piped: false,
            bad: 0,
        });
        drop(w);
    }
    {
        let (r, w) = pipe();
        cases.push(Case {
            name: "a long list of names",
            names: Box::leak(format!("[{}\"events\"]", "\"stdout\",".repeat(400)).into_boxed_str()),
            fds: vec![r],
            write_end: Some(w),
            piped: false,
            bad: 0,
        });
    }
    for case in cases {
        let mut b = Bench::new();
        let _runner = b.runner_spawning_me_as_main();
        let mut main = b.connect();
        let raw: Vec<RawFd> = case.fds.iter().map(AsRawFd::as_raw_fd).collect();
        hello_with_fds(&main, &raw, case.names);
        drop(case.fds);
        b.settle();
        send(&mut main, "main", "narrate", r#""text":"socket""#);
        if let Some(w) = case.write_end {
            let mut w = std::fs::File::from(w);
            let line = format!(
                "{{\"t_ns\":{},\"seq\":2,\"proc\":\"runner\",\"pid\":1,\"kind\":\"narrate\",\"text\":\"pipe\"}}\n",
                now_ns()
            );
            // (A write end with no reader left: EPIPE, nothing to read.)
            let _ = w.write_all(line.as_bytes());
        }
        let t0 = Instant::now();
        let events = b.events();
        assert!(t0.elapsed() < HELD_AT_MOST, "{}", case.name);
        let texts: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Narrate { text, .. } => Some((e.proc_id.clone(), text.clone())),
                _ => None,
            })
            .collect();
        let mut want = vec![("main".to_string(), "socket".to_string())];
        if case.piped {
            // As main's, whoever it claims to be.
            want.push(("main".to_string(), "pipe".to_string()));
        }
        assert_eq!(texts, want, "{}", case.name);
        assert_eq!(b.stat(&b.state.stats.bad_fds), case.bad, "{}", case.name);
        // Gone with the socket, pipe and all.
        drop(main);
        b.settle();
        assert!(
            b.state
                .conns
                .iter()
                .all(|c| c.who.as_ref().is_none_or(|w| &*w.id != "main")),
            "{}",
            case.name
        );
    }
}

#[test]
fn the_drain_of_output_before_an_exit_reads_no_more_than_was_there() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let (main, out_w, _err_w) = b.main_with_pipes(1 << 20);
    let out = b
        .state
        .outs
        .iter()
        .position(|o| o.proc_id == "main" && o.stream == crate::protocol::Stream::Stdout)
        .expect("main's stdout");
    // `main` is dead; a program it left behind holds its stdout and writes
    // as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || {
            let mut out = std::fs::File::from(out_w);
            let chunk = b"y\n".repeat(32 * 1024);
            let guard = Instant::now();
            while !stop.load(Ordering::Relaxed) && guard.elapsed() < FLOOD_GUARD {
                if out.write_all(&chunk).is_err() {
                    break;
                }
                written.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    b.state.exited("main", now_ns(), Some(0), None);
    let (w, left) = (
        written.load(Ordering::Relaxed),
        unread_bytes(&b.state.outs[out].fd),
    );
    stop.store(true, Ordering::Relaxed);
    // (Wakes the writer if it waits on a full pipe.)
    b.state.outs.clear();
    writer.join().expect("writer");
    // What was in the pipe (at most its 1 MiB) and a few reads more; the
    // rest is read paced, as any flood. (The writer's count may lag one
    // write behind.)
    let read = (w + 64 * 1024).saturating_sub(left);
    assert!(read <= 2 << 20, "the drain read {read} bytes");
    assert!(b.state.procs.get("main").is_some_and(|p| p.exited));
    drop(main);
}

/// The runner says hello and sends `n` wakes, one nanosecond apart, from
/// another thread: the socket's buffer may fill before the collector
/// (the test's thread) reads.
fn runner_sends_wakes(b: &Bench, n: u64) -> std::thread::JoinHandle<UnixStream> {
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    let t0 = now_ns();
    std::thread::spawn(move || {
        for i in 0..n {
            send_at(&mut runner, t0 + i, RUNNER_ID, "wake", "");
        }
        runner
    })
}

#[test]
fn a_full_channel_holds_events_back_in_order_and_drops_none() {
    // The channel takes 1,024 events; the runner sends three times that
    // before anything is taken. Nothing is dropped: what has no room waits
    // in the collector, in order, until the consumer takes some.
    let mut b = Bench::new();
    let writer = runner_sends_wakes(&b, 3000);
    let got = b.take_events(3001);
    let _runner = writer.join().expect("writer");
    // (The channel itself drops what passes its bound: handing over more
    // than its room would show here.)
    assert_eq!(b.stat(&b.state.stats.dropped), 0);
    assert_wakes_in_order(&got, 3000);
}

#[test]
fn a_stalled_consumer_is_waited_for_not_polled_every_millisecond() {
    // The channel full, more events due, and nobody taking any (a window
    // that stopped drawing, a blocked stdout): the collector sleeps until
    // the consumer wakes it, instead of waking every millisecond to find
    // still no room. Then nothing is lost.
    let mut b = Bench::new();
    let writer = runner_sends_wakes(&b, 3000);
    let until = Instant::now() + Duration::from_secs(20);
    let held = |s: &State| !s.outbox.is_empty() || s.pending.first_t_ns().is_some();
    while !(b.state.tx.room() == 0 && held(&b.state)) && Instant::now() < until {
        b.settle();
    }
    assert!(held(&b.state), "the channel never filled");
    b.state.next_housekeeping = Instant::now() + Duration::from_secs(1);
    let wait = b.state.next_timeout(None, None).as_millis();
    assert!(wait.is_some_and(|ms| ms >= 500), "waits {wait:?} ms");
    let mut got = 0;
    while got < 3001 && Instant::now() < until {
        got += b.rx.try_recv_batch().unwrap_or_default().len();
        b.settle();
    }
    let _runner = writer.join().expect("writer");
    assert_eq!(got, 3001, "the hello and 3,000 wakes");
    assert_eq!(b.stat(&b.state.stats.dropped), 0);
}

/// Lets the collector read what is there for a while, without letting go
/// of what its window holds (as [`Bench::settle`] does).
fn read_without_flushing(b: &mut Bench, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        b.state.poll_once();
        b.state.flush(false);
    }
}

#[test]
fn the_window_holds_no_more_than_its_bytes_and_the_writer_waits() {
    // Events of 2 KiB lines, never due (a window of a minute): the
    // window stops taking them at its bound in bytes, long before its
    // bound in events; the process's writes wait; none is lost.
    let mut b = Bench::new();
    b.state.window_ns = 60_000_000_000;
    b.state.max_pending_bytes = 256 << 10;
    let mut runner = b.connect();
    hello(&mut runner, RUNNER_ID);
    let name = "n".repeat(2000);
    let t0 = now_ns();
    let writer = std::thread::spawn(move || {
        for i in 0..2000 {
            let fields = format!(r#""lock":"{name}{i}""#);
            send_at(&mut runner, t0 + i, RUNNER_ID, "lock_wait", &fields);
        }
        runner
    });
    read_without_flushing(&mut b, Duration::from_millis(300));
    let held = b.state.pending.bytes();
    assert!(held >= 256 << 10, "the window filled to {held} bytes only");
    // Past the bound by one read at most.
    assert!(
        held < (256 << 10) + 2 * READ_BYTES,
        "the window holds {held} bytes"
    );
    assert!(!writer.is_finished(), "the writer never had to wait");
    // The window lets go: everything arrives, in order.
    b.state.window_ns = 0;
    let got = b.take_events(2001);
    let _runner = writer.join().expect("writer");
    assert_eq!(got.len(), 2001, "the hello and 2,000 lock_waits");
    assert!(got.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    assert_eq!(b.stat(&b.state.stats.dropped), 0);
}

#[test]
fn an_event_stamped_in_the_future_is_shown_when_it_arrived() {
    // An hour ahead: without a check it would wait in the window for an
    // hour (and a process sending many would fill it for good).
    let mut b = Bench::new();
    b.state.window_ns = 20_000_000;
    let mut runner = b.runner();
    let t_sent = now_ns();
    send_at(
        &mut runner,
        t_sent + 3_600_000_000_000,
        RUNNER_ID,
        "wake",
        "",
    );
    send(&mut runner, RUNNER_ID, "sleep", r#""duration_ms":1.0"#);
    read_without_flushing(&mut b, Duration::from_millis(200));
    let got = b.rx.try_recv_batch().unwrap_or_default();
    // The wake is shown when it was read: after the sleep, stamped when
    // it was sent.
    let kinds: Vec<&str> = got.iter().map(|e| e.body.kind()).collect();
    assert_eq!(kinds, ["hello", "sleep", "wake"]);
    assert!(got[2].t_ns >= t_sent && got[2].t_ns <= now_ns());
    assert_eq!(b.stat(&b.state.stats.future_stamps), 1);
    assert!(
        b.state
            .stats
            .summary()
            .contains("1 events stamped later than they arrived")
    );
}

#[test]
fn output_waits_unread_while_the_consumer_is_behind() {
    // Reading an output pipe reads its process's connection too: while
    // the consumer is behind, neither is read; then both are.
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let (mut main, out_w, _err_w) = b.main_with_pipes(0);
    fall_behind(&mut b, &mut main);
    announce(&mut main, "hi\n");
    std::fs::File::from(out_w)
        .write_all(b"hi\n")
        .expect("print");
    b.settle();
    assert!(b.state.outs.iter().any(|o| o.paused), "the pipe was read");
    // Its writer is gone (a hang-up): still it does not wake us.
    let t0 = Instant::now();
    b.state.poll_once();
    assert!(t0.elapsed() >= Duration::from_millis(5), "woken at once");
    let said_hi = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(&e.body, Body::Output { text, .. } if text == "hi\n"))
    };
    let before = b.rx.try_recv_batch().unwrap_or_default();
    assert!(!said_hi(&before), "shown while the consumer was behind");
    let after = b.events();
    assert!(said_hi(&after), "never shown: {after:?}");
    assert!(b.state.outs.iter().all(|o| !o.paused));
}

/// `main` sends 600 wakes that nobody takes: the consumer is behind.
fn fall_behind(b: &mut Bench, main: &mut UnixStream) {
    // In one write: a unix socket takes a few hundred small ones only.
    let wake = line_at(now_ns(), "main", "wake", "");
    main.write_all(format!("{wake}\n").repeat(600).as_bytes())
        .expect("write");
    b.settle();
    assert!(b.state.behind(), "600 events untaken in a channel of 1,024");
}

/// `main`'s event: an announcement of `text` on stdout.
fn announce(main: &mut UnixStream, text: &str) {
    let fields = format!(r#""stream":"stdout","text":{}"#, serde_json::json!(text));
    send(main, "main", "output", &fields);
}

#[test]
fn announced_output_is_read_while_the_consumer_is_behind() {
    // Announced before the consumer fell behind: the events after the
    // announcement wait for its bytes, so those bytes (and no more) are
    // read even now.
    let mut b = Bench::new();
    let _runner = b.runner_spawning_me_as_main();
    let (mut main, out_w, _err_w) = b.main_with_pipes(0);
    announce(&mut main, "hi\n");
    b.settle();
    fall_behind(&mut b, &mut main);
    let mut out = std::fs::File::from(out_w);
    out.write_all(b"hi\nunannounced\n").expect("print");
    b.state.poll_once(); // reads "hi\n"
    b.state.poll_once(); // finds more, unannounced: pauses the pipe
    assert!(
        b.state.outs.iter().all(|o| o.awaited_bytes() == 0),
        "the announced bytes were not read"
    );
    assert!(b.state.outs.iter().any(|o| o.paused), "read past them");
    // The consumer takes what is there; then the rest is read.
    let mut after = b.events();
    after.extend(b.events());
    let texts: Vec<&str> = after
        .iter()
        .filter_map(|e| match &e.body {
            Body::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["hi\n", "unannounced\n"]);
}

/// `got` holds `n` wakes, in the order they were stamped.
fn assert_wakes_in_order(got: &[Event], n: usize) {
    let wakes: Vec<u64> = got
        .iter()
        .filter(|e| matches!(e.body, Body::Wake {}))
        .map(|e| e.t_ns)
        .collect();
    assert_eq!(wakes.len(), n);
    assert!(wakes.windows(2).all(|w| w[0] < w[1]), "out of order");
}
