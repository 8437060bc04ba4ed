//! A sink in place of the channel: every event reaches it, on the
//! collector's own thread, in order, and nothing goes through the channel.

use super::*;
use std::io::Write;
use std::sync::Mutex;

fn line(proc_id: &str, kind: &str, fields: &str) -> String {
    let comma = if fields.is_empty() { "" } else { "," };
    format!(
        "{{\"t_ns\":{},\"seq\":1,\"proc\":\"{proc_id}\",\"pid\":7,\"kind\":\"{kind}\"{comma}{fields}}}\n",
        now_ns()
    )
}

#[test]
fn a_sink_gets_every_event_in_order_and_the_channel_none() {
    let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("forkscope-unit-XXXXXX"))
        .expect("temp dir");
    let path = dir.join("probe.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let wake = Arc::new(EventFd::new().expect("eventfd"));
    let got: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let into = got.clone();
    let sink: Sink = Box::new(move |batch: Vec<Event>| {
        let kinds = batch
            .iter()
            .map(|e| format!("{} {}", e.proc_id, e.body.kind()))
            .collect();
        into.lock().expect("not poisoned").push(kinds);
    });
    let (tx, rx) = events::channel_to(1024, wake.clone(), Some(sink));
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
    // This test process is the root of trust, and plays every process.
    state.root.store(me, Ordering::SeqCst);
    let settle = |state: &mut State| {
        for _ in 0..20 {
            state.poll_once();
        }
        state.flush(true);
    };
    let mut runner = UnixStream::connect(&path).expect("connect");
    let hello = line(RUNNER_ID, "hello", r#""ppid":1,"role":"x""#);
    runner.write_all(hello.as_bytes()).expect("write");
    let spawn = line(
        RUNNER_ID,
        "spawn",
        &format!(r#""child":"main","child_pid":{me},"role":"main""#),
    );
    runner.write_all(spawn.as_bytes()).expect("write");
    settle(&mut state);
    let mut main = UnixStream::connect(&path).expect("connect");
    let hello = line("main", "hello", r#""ppid":1,"role":"main""#);
    main.write_all(hello.as_bytes()).expect("write");
    for text in ["one", "two"] {
        let narrate = line("main", "narrate", &format!(r#""text":"{text}""#));
        main.write_all(narrate.as_bytes()).expect("write");
    }
    settle(&mut state);
    let all: Vec<String> = got.lock().expect("not poisoned").concat();
    assert_eq!(
        all,
        [
            "runner hello",
            "runner spawn",
            "main hello",
            "main narrate",
            "main narrate"
        ]
    );
    assert!(rx.try_recv_batch().unwrap_or_default().is_empty());
    assert!(!state.behind());
    let _ = std::fs::remove_dir_all(&dir);
}
