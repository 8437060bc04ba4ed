//! Event lines written by hand: byte for byte what
//! `serde_json::to_writer(&event)` writes, without serde's map machinery.
//!
//! The derived `Serialize` of [`Event`] goes through a map serializer and
//! `#[serde(flatten)]` for every field; in a flood (200 processes each
//! sending `sleep`, `wake`, `write` without pause) that was a good part of
//! what every scenario process spent per step, and of what `forkscope run
//! --format jsonl` spent per event. The kinds a busy process sends most
//! (`sleep`, `wake`, `read`, `write`, locks, `block`/`unblock`), and those
//! of every process's start and end (`hello`, `spawn`, `exit`, `reaped`),
//! are written here straight into the caller's buffer; every other kind, and any string
//! that needs an escape, is written by `serde_json` itself, so the bytes
//! are the same either way (`tests` below compare them kind by kind).

use crate::protocol::{Body, Event, Value};
use serde_json::ser::{CompactFormatter, Formatter};

/// The fields every event starts with (borrowed: a probe writes its own
/// without building an [`Event`]).
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    pub t_ns: u64,
    pub seq: u64,
    pub proc_id: &'a str,
    pub pid: i32,
    pub line: Option<u32>,
    pub thread: Option<&'a str>,
    pub tid: Option<i32>,
}

impl<'a> Head<'a> {
    pub fn of(e: &'a Event) -> Head<'a> {
        Head {
            t_ns: e.t_ns,
            seq: e.seq,
            proc_id: &e.proc_id,
            pid: e.pid,
            line: e.line,
            thread: e.thread.as_deref(),
            tid: e.tid,
        }
    }
}

/// Appends `e` as one JSON object (no newline), exactly as
/// `serde_json::to_writer` would.
pub fn write_event(out: &mut Vec<u8>, e: &Event) {
    let start = out.len();
    write_head(out, &Head::of(e));
    if !write_body(out, &e.body) {
        out.truncate(start);
        // Writing to a `Vec` does not fail, and an `Event` always
        // serializes (no map with other than string keys).
        let _ = serde_json::to_writer(&mut *out, e);
    }
}

/// `{"t_ns":…,"seq":…,"proc":…,"pid":…` and the optional `line`,
/// `thread`, `tid`: everything before `kind`.
pub fn write_head(out: &mut Vec<u8>, h: &Head) {
    out.extend_from_slice(b"{\"t_ns\":");
    write_u64(out, h.t_ns);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, h.seq);
    out.extend_from_slice(b",\"proc\":");
    write_str(out, h.proc_id);
    out.extend_from_slice(b",\"pid\":");
    write_i64(out, i64::from(h.pid));
    if let Some(line) = h.line {
        out.extend_from_slice(b",\"line\":");
        write_u64(out, u64::from(line));
    }
    if let Some(thread) = h.thread {
        out.extend_from_slice(b",\"thread\":");
        write_str(out, thread);
    }
    if let Some(tid) = h.tid {
        out.extend_from_slice(b",\"tid\":");
        write_i64(out, i64::from(tid));
    }
}

/// `,"kind":…` and the kind's fields and the closing brace, for the busy
/// kinds; false (and nothing written) for the others.
pub fn write_body(out: &mut Vec<u8>, body: &Body) -> bool {
    match body {
        Body::Sleep { duration_ms } => {
            out.extend_from_slice(b",\"kind\":\"sleep\",\"duration_ms\":");
            write_f64(out, *duration_ms);
            out.push(b'}');
        }
        Body::Wake {} => out.extend_from_slice(b",\"kind\":\"wake\"}"),
        Body::Read {
            name,
            value,
            private,
        } => write_access(out, b"read", name, value, *private),
        Body::Write {
            name,
            value,
            private,
        } => write_access(out, b"write", name, value, *private),
        Body::LockWait { lock } => write_text(out, b"lock_wait", b"lock", lock),
        Body::LockAcquire { lock } => write_text(out, b"lock_acquire", b"lock", lock),
        Body::LockRelease { lock } => write_text(out, b"lock_release", b"lock", lock),
        Body::Block { on } => write_text(out, b"block", b"on", on),
        Body::Unblock { on } => write_text(out, b"unblock", b"on", on),
        // The lines of every process's start and end (a short-lived
        // child is little else): its hello, its parent's spawn and
        // reaped, the collector's exit.
        Body::Hello {
            ppid,
            role,
            parent,
            daemon,
            ns_pid,
            name,
            fds,
        } => write_hello(
            out,
            &Hello {
                ppid: *ppid,
                role,
                parent: parent.as_deref(),
                daemon: *daemon,
                ns_pid: *ns_pid,
                name: name.as_deref(),
                fds,
            },
        ),
        Body::Spawn {
            child,
            child_pid,
            role,
            daemon,
        } => write_spawn(out, child, *child_pid, role, *daemon),
        Body::Exit { code, signal } => {
            out.extend_from_slice(b",\"kind\":\"exit\"");
            write_status(out, *code, signal.as_deref());
        }
        Body::Reaped {
            by,
            by_pid,
            code,
            signal,
        } => {
            out.extend_from_slice(b",\"kind\":\"reaped\",\"by\":");
            write_str(out, by);
            out.extend_from_slice(b",\"by_pid\":");
            write_i64(out, i64::from(*by_pid));
            write_status(out, *code, signal.as_deref());
        }
        _ => return false,
    }
    true
}

/// A `hello`'s fields, borrowed: a freshly forked child writes its hello
/// without building a [`Body`] (each `String` of one would be an
/// allocation, and a child's first allocations write pages it still
/// shares with its parent, each one a page the kernel copies).
pub struct Hello<'a, F: AsRef<str>> {
    pub ppid: i32,
    pub role: &'a str,
    pub parent: Option<&'a str>,
    pub daemon: bool,
    pub ns_pid: Option<i32>,
    pub name: Option<&'a str>,
    pub fds: &'a [F],
}

/// `,"kind":"hello",…}`: a hello's kind and fields and the closing brace.
pub fn write_hello<F: AsRef<str>>(out: &mut Vec<u8>, h: &Hello<'_, F>) {
    out.extend_from_slice(b",\"kind\":\"hello\",\"ppid\":");
    write_i64(out, i64::from(h.ppid));
    out.extend_from_slice(b",\"role\":");
    write_str(out, h.role);
    if let Some(parent) = h.parent {
        out.extend_from_slice(b",\"parent\":");
        write_str(out, parent);
    }
    if h.daemon {
        out.extend_from_slice(b",\"daemon\":true");
    }
    if let Some(ns_pid) = h.ns_pid {
        out.extend_from_slice(b",\"ns_pid\":");
        write_i64(out, i64::from(ns_pid));
    }
    if let Some(name) = h.name {
        out.extend_from_slice(b",\"name\":");
        write_str(out, name);
    }
    if !h.fds.is_empty() {
        out.extend_from_slice(b",\"fds\":");
        write_list(out, h.fds, |out, fd| write_str(out, fd.as_ref()));
    }
    out.push(b'}');
}

/// The body of a `spawn` (the probe writes it without building a [`Body`]).
pub fn write_spawn(out: &mut Vec<u8>, child: &str, child_pid: i32, role: &str, daemon: bool) {
    out.extend_from_slice(b",\"kind\":\"spawn\",\"child\":");
    write_str(out, child);
    out.extend_from_slice(b",\"child_pid\":");
    write_i64(out, i64::from(child_pid));
    out.extend_from_slice(b",\"role\":");
    write_str(out, role);
    if daemon {
        out.extend_from_slice(b",\"daemon\":true");
    }
    out.push(b'}');
}

/// The optional `code` and `signal` of an `exit` or `reaped`, and the
/// closing brace.
fn write_status(out: &mut Vec<u8>, code: Option<i32>, signal: Option<&str>) {
    if let Some(code) = code {
        out.extend_from_slice(b",\"code\":");
        write_i64(out, i64::from(code));
    }
    if let Some(signal) = signal {
        out.extend_from_slice(b",\"signal\":");
        write_str(out, signal);
    }
    out.push(b'}');
}

/// The body of a `read` or `write` (`kind` is `b"read"` or `b"write"`).
pub fn write_access(out: &mut Vec<u8>, kind: &[u8], name: &str, value: &Value, private: bool) {
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind);
    out.extend_from_slice(b"\",\"name\":");
    write_str(out, name);
    out.extend_from_slice(b",\"value\":");
    write_value(out, value);
    if private {
        out.extend_from_slice(b",\"private\":true");
    }
    out.push(b'}');
}

/// A kind with one text field (`lock`, `on`).
fn write_text(out: &mut Vec<u8>, kind: &[u8], field: &[u8], text: &str) {
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind);
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(field);
    out.extend_from_slice(b"\":");
    write_str(out, text);
    out.push(b'}');
}

/// A [`Value`] as its untagged `Serialize` writes it.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::None => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::Float(f) => write_f64(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::List(items) => write_list(out, items, write_value),
    }
}

/// `[a,b,…]`, each item written by `one`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], mut one: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        one(out, item);
    }
    out.push(b']');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    // Writing to a `Vec` does not fail.
    let _ = CompactFormatter.write_u64(out, n);
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    let _ = CompactFormatter.write_i64(out, n);
}

/// As `serde_json` writes an `f64`: shortest round-trip digits, `null` for
/// NaN and the infinities.
fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        let _ = CompactFormatter.write_f64(out, f);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A JSON string. `serde_json` escapes only `"`, `\` and control
/// characters below U+0020; a string with none is copied as it is, any
/// other is left to `serde_json`.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ResourceKind, Stream};

    fn texts() -> Vec<String> {
        vec![
            String::new(),
            "v".into(),
            "main.12".into(),
            "arr[3]".into(),
            "quote \" and \\ backslash".into(),
            "tab\tnew\nline\rcr\u{8}\u{c}".into(),
            "nul \u{0} unit \u{1f} del \u{7f}".into(),
            "é ü 漢字 🦀 \u{2028}\u{2029}".into(),
            "</script>".into(),
        ]
    }

    fn values() -> Vec<Value> {
        let mut v = vec![
            Value::None,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i64::MAX),
            Value::Int(i64::MIN),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Float(0.1),
            Value::Float(1.5),
            Value::Float(1e300),
            Value::Float(-2.5e-300),
            Value::Float(123456789.125),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(f64::MIN_POSITIVE),
            Value::Float(1e16),
            Value::List(vec![]),
        ];
        v.extend(texts().into_iter().map(Value::Str));
        v.push(Value::List(v.clone()));
        v.push(Value::List(vec![
            Value::List(vec![Value::Int(1)]),
            Value::None,
        ]));
        v
    }

    /// Every kind (the busy ones with every value and odd text), so that
    /// both paths are compared with `serde_json`.
    fn bodies() -> Vec<Body> {
        let mut b = Vec::new();
        for d in [
            0.0,
            60.0,
            0.5,
            -1.0,
            1e300,
            f64::NAN,
            f64::INFINITY,
            86_400_000.0,
        ] {
            b.push(Body::Sleep { duration_ms: d });
        }
        b.push(Body::Wake {});
        for name in texts() {
            for value in values() {
                for private in [false, true] {
                    b.push(Body::Read {
                        name: name.clone(),
                        value: value.clone(),
                        private,
                    });
                    b.push(Body::Write {
                        name: name.clone(),
                        value: value.clone(),
                        private,
                    });
                }
            }
            b.push(Body::LockWait { lock: name.clone() });
            b.push(Body::LockAcquire { lock: name.clone() });
            b.push(Body::LockRelease { lock: name.clone() });
            b.push(Body::Block { on: name.clone() });
            b.push(Body::Unblock { on: name.clone() });
        }
        for text in texts() {
            let some = || Some(text.clone());
            for (daemon, opt) in [(false, None), (true, some())] {
                b.push(Body::Hello {
                    ppid: -7,
                    role: text.clone(),
                    parent: opt.clone(),
                    daemon,
                    ns_pid: opt.as_ref().map(|_| i32::MAX),
                    name: opt.clone(),
                    fds: vec![text.clone(), "events".into()],
                });
                b.push(Body::Hello {
                    ppid: 0,
                    role: "nothing".into(),
                    parent: None,
                    daemon,
                    ns_pid: None,
                    name: opt.clone(),
                    fds: vec![],
                });
                b.push(Body::Spawn {
                    child: text.clone(),
                    child_pid: i32::MIN,
                    role: text.clone(),
                    daemon,
                });
                b.push(Body::Exit {
                    code: opt.as_ref().map(|_| -1),
                    signal: opt.clone(),
                });
                b.push(Body::Reaped {
                    by: text.clone(),
                    by_pid: 12,
                    code: if daemon { None } else { Some(255) },
                    signal: opt.clone(),
                });
            }
        }
        b.extend([
            Body::Hello {
                ppid: 3,
                role: "worker".into(),
                parent: Some("main".into()),
                daemon: true,
                ns_pid: Some(2),
                name: None,
                fds: vec![],
            },
            Body::Resource {
                res: ResourceKind::Queue,
                name: "q".into(),
                value: None,
                size: Some(2),
                ends: vec![],
                duplex: false,
            },
            Body::Output {
                stream: Stream::Stdout,
                text: "hi \"there\"\n".into(),
            },
            Body::Send {
                channel: "p".into(),
                end: "a".into(),
                msg: "main#4".into(),
                value: Value::List(vec![Value::Int(1), Value::Str("x".into())]),
            },
            Body::Exit {
                code: Some(0),
                signal: None,
            },
            Body::Race {
                name: "v".into(),
                read: Value::Int(1),
                replaced: Value::Int(3),
                written: Value::Int(2),
                lost: Value::Int(2),
            },
            Body::Sample {
                cpu_percent: f32::NAN,
                rss_bytes: 5,
            },
            Body::Go {},
            Body::Error {
                message: "bad\u{1}".into(),
            },
        ]);
        b
    }

    /// proc, pid, line, thread, tid.
    type HeadFields = (String, i32, Option<u32>, Option<String>, Option<i32>);

    fn heads() -> Vec<HeadFields> {
        let mut h = vec![
            ("main.1".to_string(), 4242, None, None, None),
            ("main".into(), 1, Some(7), None, None),
            (
                "main".into(),
                -1,
                Some(u32::MAX),
                Some("main.t1".into()),
                Some(99),
            ),
            ("pool.w2".into(), i32::MAX, None, None, Some(i32::MIN)),
        ];
        for t in texts() {
            h.push((t.clone(), 0, Some(0), Some(t), None));
        }
        h
    }

    #[test]
    fn hand_written_lines_are_byte_for_byte_what_serde_json_writes() {
        let mut n = 0;
        let mut buf = Vec::new();
        for (i, (proc_id, pid, line, thread, tid)) in heads().into_iter().enumerate() {
            for body in bodies() {
                let e = Event {
                    t_ns: [0, 1, u64::MAX, 1_234_567_890_123][i % 4],
                    seq: [0, 9, 1 << 40, u64::MAX][(i + 1) % 4],
                    proc_id: proc_id.clone(),
                    pid,
                    line,
                    thread: thread.clone(),
                    tid,
                    body,
                };
                let want = serde_json::to_vec(&e).expect("serializes");
                buf.clear();
                buf.extend_from_slice(b"before");
                write_event(&mut buf, &e);
                assert_eq!(
                    String::from_utf8_lossy(&buf[6..]),
                    String::from_utf8_lossy(&want),
                    "{e:?}"
                );
                assert_eq!(&buf[..6], b"before");
                n += 1;
            }
        }
        assert!(n > 5000, "{n} events compared");
    }

    #[test]
    fn values_are_written_as_their_serialize_writes_them() {
        for v in values() {
            let mut buf = Vec::new();
            write_value(&mut buf, &v);
            assert_eq!(buf, serde_json::to_vec(&v).expect("serializes"), "{v:?}");
        }
    }

    #[test]
    fn a_child_hello_from_borrowed_fields_is_the_line_of_its_event() {
        // What `Probe::become_child` writes, against the event's own line.
        for text in texts() {
            for parent in [None, Some(text.as_str()), Some("main")] {
                let fds = [crate::probe::FD_STDOUT, crate::probe::FD_STDERR];
                let head = Head {
                    t_ns: 7,
                    seq: 1,
                    proc_id: &text,
                    pid: 42,
                    line: None,
                    thread: None,
                    tid: None,
                };
                let mut ours = Vec::new();
                write_head(&mut ours, &head);
                write_hello(
                    &mut ours,
                    &Hello {
                        ppid: 41,
                        role: &text,
                        parent,
                        daemon: true,
                        ns_pid: Some(3),
                        name: None,
                        fds: &fds,
                    },
                );
                let e = Event {
                    t_ns: 7,
                    seq: 1,
                    proc_id: text.clone(),
                    pid: 42,
                    line: None,
                    thread: None,
                    tid: None,
                    body: Body::Hello {
                        ppid: 41,
                        role: text.clone(),
                        parent: parent.map(str::to_string),
                        daemon: true,
                        ns_pid: Some(3),
                        name: None,
                        fds: fds.iter().map(|f| f.to_string()).collect(),
                    },
                };
                assert_eq!(
                    ours,
                    serde_json::to_vec(&e).expect("serializes"),
                    "{text:?}"
                );
            }
        }
    }
}
