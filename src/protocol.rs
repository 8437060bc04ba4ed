//! The events every scenario process sends, shared by the probe, the
//! collector, the model and trace files.
//!
//! On the wire an event is one JSON object on one line (at most
//! [`MAX_LINE_BYTES`] bytes with its newline): the common fields (`t_ns`,
//! `seq`, `proc`, `pid`, optional `line`) and a `kind` with its own fields,
//! all flat. `docs/PROTOCOL.md` describes it for probes in other languages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest event line a probe may send, newline included. One `write` of at
/// most this many bytes to a stream socket is never interleaved with another
/// process's line.
pub const MAX_LINE_BYTES: usize = 4096;

/// Environment variable that names the collector's socket for every scenario
/// process (and for anything it `exec`s). `@NAME` is `NAME` in Linux's
/// abstract socket namespace (what the collector uses: no file to leave
/// behind); anything else is a path.
pub const SOCKET_ENV: &str = "FORKSCOPE_SOCK";

/// Logical id of the runner: the process that adopts orphans.
pub const RUNNER_ID: &str = "runner";

/// A bare event for unit tests: `body` from `proc_id` (pid 1) at `t_ns`,
/// numbered by its time, no listing line, from the main thread.
#[cfg(test)]
pub(crate) fn test_event(t_ns: u64, proc_id: &str, body: Body) -> Event {
    Event {
        t_ns,
        seq: t_ns,
        proc_id: proc_id.into(),
        pid: 1,
        line: None,
        thread: None,
        tid: None,
        body,
    }
}

/// One thing that happened in one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `CLOCK_MONOTONIC` time, stamped by the process itself.
    pub t_ns: u64,
    /// Per-sender sequence number (0 for events the collector makes).
    #[serde(default)]
    pub seq: u64,
    /// Logical id (`main`, `main.1`, `pool.w2`): stable across runs.
    #[serde(rename = "proc")]
    pub proc_id: String,
    /// The pid as `ps` shows it (outside any PID namespace).
    pub pid: i32,
    /// The line of the scenario's `source` listing this step belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The thread that did it (`main.t1`), when not the process's main thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// That thread's kernel tid (`gettid`, as `/proc/PID/task` lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<i32>,
    #[serde(flatten)]
    pub body: Body,
}

/// Which output stream a chunk of text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The kind of resource a `resource` event declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Value,
    Array,
    Lock,
    Pipe,
    Queue,
    Pool,
    Global,
}

/// What happened. The `kind` field on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// First line of every connection: who is speaking.
    Hello {
        ppid: i32,
        role: String,
        /// Logical id of the parent (absent for the runner).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        daemon: bool,
        /// The pid inside forkscope's PID namespace, if it uses one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ns_pid: Option<i32>,
        /// The program's own name for the process, when it has one
        /// (a traced Python program's `Process-1`, `ForkPoolWorker-2`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The runner declares a shared resource before the scenario starts.
    Resource {
        res: ResourceKind,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        /// Queue capacity (0 = unbounded) or pool size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u32>,
        /// Pipe ends, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ends: Vec<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        duplex: bool,
    },
    /// This process started a child (fork, Process.start, a pool worker).
    Spawn {
        child: String,
        child_pid: i32,
        role: String,
        #[serde(default, skip_serializing_if = "is_false")]
        daemon: bool,
    },
    /// A thread of this process started (sent by the new thread itself).
    ThreadStart {
        role: String,
        #[serde(default, skip_serializing_if = "is_false")]
        daemon: bool,
    },
    /// A thread of this process ran to its end (sent by that thread).
    ThreadEnd {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// This thread joined (waited for the end of) thread `joined`.
    ThreadJoin {
        joined: String,
    },
    /// This process replaces itself with a real program.
    Exec {
        program: String,
        args: Vec<String>,
    },
    /// This process ended. Exactly one of `code` and `signal` is set.
    Exit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    /// This (dead) process was waited for by `by`; it is gone for good.
    Reaped {
        by: String,
        by_pid: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
    },
    /// This process lost its parent and now belongs to `by`.
    Adopted {
        by: String,
        new_ppid: i32,
    },
    /// A chunk of what the process wrote (a whole line, newline included,
    /// or what was there when the process paused).
    Output {
        stream: Stream,
        text: String,
    },
    /// `print` put `text` into this process's stdout buffer (Python's
    /// `sys.stdout`, in the process's own memory): it is not written yet.
    /// `inherited`: a forked child found it in its copy of the parent's
    /// buffer (os.fork copies the memory, buffer included).
    Buffered {
        text: String,
        #[serde(default, skip_serializing_if = "is_false")]
        inherited: bool,
    },
    /// The first `bytes` bytes of this process's stdout buffer are written
    /// now (a full line or block, `sys.stdout.flush()`, a normal exit);
    /// their `output` events follow.
    Flush {
        bytes: u64,
    },
    Send {
        channel: String,
        end: String,
        msg: String,
        value: Value,
    },
    Recv {
        channel: String,
        end: String,
        msg: String,
        value: Value,
    },
    /// The result of `poll` on a pipe end.
    Poll {
        channel: String,
        end: String,
        ready: bool,
    },
    Put {
        channel: String,
        msg: String,
        value: Value,
    },
    Get {
        channel: String,
        msg: String,
        value: Value,
    },
    LockWait {
        lock: String,
    },
    LockAcquire {
        lock: String,
    },
    LockRelease {
        lock: String,
    },
    /// A read of a shared value (or of a private global when `private`).
    Read {
        name: String,
        value: Value,
        #[serde(default, skip_serializing_if = "is_false")]
        private: bool,
    },
    Write {
        name: String,
        value: Value,
        #[serde(default, skip_serializing_if = "is_false")]
        private: bool,
    },
    TaskStart {
        pool: String,
        task: u32,
        func: String,
    },
    TaskDone {
        pool: String,
        task: u32,
        value: Value,
    },
    /// The owner of pool `pool` runs the program's callback `func` for the
    /// result of task `task` (a traced Python program's `apply_async(...,
    /// callback=f)`, `map_async`; `error`: its `error_callback`, for a
    /// task that failed). Sent by the thread that runs it, right before.
    Callback {
        pool: String,
        task: u32,
        func: String,
        #[serde(default, skip_serializing_if = "is_false")]
        error: bool,
    },
    /// This process learned its program's own name for it after its
    /// `hello` (a traced Python program's child forked by the forkserver,
    /// once it has read which `Process` it is: `Process-1`).
    Named {
        name: String,
    },
    /// This process sends a signal to `target`.
    Signal {
        target: String,
        target_pid: i32,
        signal: String,
    },
    Sleep {
        duration_ms: f64,
    },
    Wake {},
    /// About to wait for something that is not ready (a child, a full or
    /// empty queue, a pipe with nothing in it).
    Block {
        on: String,
    },
    Unblock {
        on: String,
    },
    /// A caption for the audience.
    Narrate {
        text: String,
        /// A replay with auto-pause stops here (`pause = true` on the
        /// `narrate` step).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pause: bool,
    },
    /// CPU and memory of a process, from the sampler.
    Sample {
        cpu_percent: f32,
        rss_bytes: u64,
    },
    /// Gated runs: the next action this process will take when told to go.
    /// `local` actions touch nothing another process can see. `waits_for`
    /// names what the action needs to go through (`lock:l`, `queue-get:q`,
    /// `queue-put:q`, `recv:end`, `join:main.1`, `wait`, `pool-tasks:p`,
    /// `pool-results:p`); `retry` says its last try found it unavailable.
    /// `touches` lists what it reads or changes (`r:v`, `w:v`, `lock:l`,
    /// `queue:q`, `pipe:p`, `proc:main.1`, `*` for anything): two actions
    /// that touch nothing in common give the same result in either order.
    Pending {
        action: String,
        #[serde(default, skip_serializing_if = "is_false")]
        local: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waits_for: Option<String>,
        #[serde(default, skip_serializing_if = "is_false")]
        retry: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        touches: Vec<String>,
    },
    /// Gated runs: the process was told to go and takes its pending action.
    Go {},
    /// Gated runs: this process or thread (a thread when the event carries
    /// `thread`) runs free: it never waits for `go`, so the scheduler does
    /// not wait for its first step. Sent right after its `hello` or
    /// `thread_start` by the helpers of a traced Python program (a
    /// `Manager`'s server process, a `ProcessPoolExecutor`'s workers, the
    /// standard library's own threads).
    Free {},
    /// A lost update, sent by the writer itself: its write of `name` was
    /// computed from `read` (the value it last read from, or wrote to,
    /// `name`), but the atomic exchange that stored `written` found
    /// `replaced` there: others wrote in between, and this write threw
    /// their work away. `lost = replaced - read` for numbers (negative
    /// when a stale write had set the value back), `replaced` otherwise.
    Race {
        name: String,
        read: Value,
        replaced: Value,
        written: Value,
        lost: Value,
    },
    /// Every live process waits and none can ever wake the others.
    Deadlock {
        cycle: String,
    },
    /// Something went wrong inside a scenario process (bad step at run time,
    /// a limit hit); the run goes on where it can.
    Error {
        message: String,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Body {
    /// The `kind` name as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Hello { .. } => "hello",
            Body::Resource { .. } => "resource",
            Body::Spawn { .. } => "spawn",
            Body::ThreadStart { .. } => "thread_start",
            Body::ThreadEnd { .. } => "thread_end",
            Body::ThreadJoin { .. } => "thread_join",
            Body::Exec { .. } => "exec",
            Body::Exit { .. } => "exit",
            Body::Reaped { .. } => "reaped",
            Body::Adopted { .. } => "adopted",
            Body::Output { .. } => "output",
            Body::Buffered { .. } => "buffered",
            Body::Flush { .. } => "flush",
            Body::Send { .. } => "send",
            Body::Recv { .. } => "recv",
            Body::Poll { .. } => "poll",
            Body::Put { .. } => "put",
            Body::Get { .. } => "get",
            Body::LockWait { .. } => "lock_wait",
            Body::LockAcquire { .. } => "lock_acquire",
            Body::LockRelease { .. } => "lock_release",
            Body::Read { .. } => "read",
            Body::Write { .. } => "write",
            Body::TaskStart { .. } => "task_start",
            Body::TaskDone { .. } => "task_done",
            Body::Callback { .. } => "callback",
            Body::Named { .. } => "named",
            Body::Signal { .. } => "signal",
            Body::Sleep { .. } => "sleep",
            Body::Wake {} => "wake",
            Body::Block { .. } => "block",
            Body::Unblock { .. } => "unblock",
            Body::Narrate { .. } => "narrate",
            Body::Sample { .. } => "sample",
            Body::Pending { .. } => "pending",
            Body::Go {} => "go",
            Body::Free {} => "free",
            Body::Race { .. } => "race",
            Body::Deadlock { .. } => "deadlock",
            Body::Error { .. } => "error",
        }
    }
}

/// A value a scenario computes with: what travels in messages, what shared
/// values hold, what `print` formats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum Value {
    #[default]
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
        }
    }

    /// What a value of this type is, in words, with its article: for
    /// messages to a person ("needs an integer").
    pub fn kind_in_words(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "true or false",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
        }
    }

    /// Python-like truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// How Python's `repr` would show it (strings quoted), used inside lists.
    pub fn repr(&self) -> String {
        match self {
            Value::Str(s) => format!("'{s}'"),
            other => other.to_string(),
        }
    }
}

/// How Python's `str()` would show it.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => write!(f, "None"),
            Value::Bool(true) => write!(f, "True"),
            Value::Bool(false) => write!(f, "False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
                    write!(f, "{x:.1}")
                } else {
                    write!(f, "{x}")
                }
            }
            Value::Str(s) => write!(f, "{s}"),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", item.repr())?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Signal names as learners know them.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("SIG{signal}"),
    }
}

/// Current `CLOCK_MONOTONIC` time in nanoseconds: the clock every process
/// stamps its events with.
pub fn now_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_flat_json_with_kind() {
        let e = Event {
            t_ns: 5,
            seq: 1,
            proc_id: "main.1".into(),
            pid: 42,
            line: Some(3),
            thread: None,
            tid: None,
            body: Body::Write {
                name: "v".into(),
                value: Value::Int(7),
                private: false,
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"t_ns":5,"seq":1,"proc":"main.1","pid":42,"line":3,"kind":"write","name":"v","value":7}"#
        );
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let r: Result<Event, _> =
            serde_json::from_str(r#"{"t_ns":1,"proc":"x","pid":1,"kind":"dance"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn values_print_like_python() {
        assert_eq!(Value::Float(49.0).to_string(), "49.0");
        assert_eq!(
            Value::List(vec![Value::Str("a".into()), Value::Int(2)]).to_string(),
            "['a', 2]"
        );
        assert_eq!(Value::Bool(true).to_string(), "True");
    }
}
