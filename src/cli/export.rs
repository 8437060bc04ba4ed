//! `forkscope export FILE.jsonl --perfetto OUT.json`: a recording as a
//! Chrome trace (the JSON trace event format), which ui.perfetto.dev and
//! chrome://tracing open.
//!
//! What a recording becomes:
//! - one process per logical id (its host pid; a pid used again by a later
//!   process of the run gets a number of its own above the kernel's pid
//!   limit), named `ID · ROLE`, with a track (a thread) for its states:
//!   `running`, `sleeping`, `blocked: …`, `waiting for lock l`,
//!   `waiting for go: …` (step mode), `zombie (…)` until it is reaped;
//! - a track per lock a process holds, with a `holding l` span;
//! - a `messages` track with a short slice for every send/put/recv/get, and
//!   a flow arrow from each send/put to the recv/get of the same message
//!   (paired by channel and `msg` id);
//! - counter tracks for shared values (in the process `shared values`),
//!   private globals, CPU and memory (in their process);
//! - instant events for signals (at the sender and the target), lost
//!   updates, deadlocks, captions, output lines, exec, adoption and errors.
//!
//! Times are microseconds since the first event.

use crate::cli::ExportArgs;
use crate::protocol::{Body, Event, ResourceKind, Value};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;

/// One entry of the `traceEvents` array.
#[derive(Debug, Serialize)]
pub struct TraceEvent {
    pub name: String,
    pub ph: &'static str,
    pub ts: f64,
    pub pid: i64,
    pub tid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Flow end binding: `e` binds to the enclosing slice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bp: Option<&'static str>,
    /// Instant scope: `t` thread, `p` process, `g` global.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
}

impl TraceEvent {
    fn new(ph: &'static str, name: impl Into<String>, ts: f64, pid: i64, tid: i64) -> Self {
        TraceEvent {
            name: name.into(),
            ph,
            ts,
            pid,
            tid,
            dur: None,
            cat: None,
            id: None,
            bp: None,
            s: None,
            args: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Serialize)]
pub struct Trace {
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    pub display_time_unit: &'static str,
}

/// Numbers above Linux's largest possible pid (`PID_MAX_LIMIT`, 2^22) are
/// free for tracks and processes of our own.
const FIRST_SYNTHETIC_ID: i64 = 4_194_305;

/// The channel name that pairs a `spawn` with its child (no channel of a
/// scenario has a NUL in its name).
const SPAWN_KEY: &str = "\0spawn";

/// Slices on a `messages` track last this long (µs) unless the next one
/// starts sooner.
const MESSAGE_SLICE_US: f64 = 1.0;

struct Proc {
    pid: i64,
    role: Option<String>,
    order: usize,
    /// The state span open now: its name and start (µs).
    state: Option<(String, f64)>,
    /// Held locks: lock name → (track, since).
    holds: HashMap<String, (i64, f64)>,
    lock_tracks: HashMap<String, i64>,
    messages_tid: Option<i64>,
    /// Index in the output of the last slice on the messages track.
    last_message: Option<usize>,
    last_private: HashMap<String, String>,
    /// Stopped by a signal: the state it goes back to on `SIGCONT`.
    resume: Option<String>,
}

/// Where a message slice is.
#[derive(Clone, Copy)]
struct At {
    ts: f64,
    pid: i64,
    tid: i64,
}

struct Builder {
    out: Vec<TraceEvent>,
    procs: HashMap<String, Proc>,
    ids_in_order: Vec<String>,
    pid_owner: HashMap<i64, String>,
    next_synthetic: i64,
    shared_pid: Option<i64>,
    last_shared: HashMap<String, String>,
    /// Updates lost so far per shared value (the model's count).
    lost_so_far: HashMap<String, i64>,
    sends: HashMap<(String, String), At>,
    recvs: HashMap<(String, String), At>,
    /// Thread names: (pid, tid) → name.
    threads: Vec<(i64, i64, String)>,
}

/// Converts a recording to Chrome trace events.
pub fn chrome_trace(events: &[Event]) -> Trace {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.t_ns);
    let t0 = order.first().map_or(0, |e| e.t_ns);
    let t_end = order.last().map_or(0.0, |e| us(e.t_ns, t0));
    let mut b = Builder {
        out: Vec::new(),
        procs: HashMap::new(),
        ids_in_order: Vec::new(),
        lost_so_far: HashMap::new(),
        pid_owner: HashMap::new(),
        next_synthetic: FIRST_SYNTHETIC_ID,
        shared_pid: None,
        last_shared: HashMap::new(),
        sends: HashMap::new(),
        recvs: HashMap::new(),
        threads: Vec::new(),
    };
    for e in order {
        b.event(e, us(e.t_ns, t0));
    }
    b.finish(t_end)
}

fn us(t_ns: u64, t0: u64) -> f64 {
    t_ns.saturating_sub(t0) as f64 / 1000.0
}

/// A value as a counter's numbers, if it has any.
fn counter_args(v: &Value) -> Option<serde_json::Value> {
    match v {
        Value::List(items) => {
            let mut map = serde_json::Map::new();
            for (i, item) in items.iter().enumerate() {
                map.insert(format!("[{i}]"), json!(item.as_f64()?));
            }
            (!map.is_empty()).then_some(serde_json::Value::Object(map))
        }
        other => other
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| json!({ "value": x })),
    }
}

fn short(text: &str) -> String {
    let text = text.trim_end();
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

impl Builder {
    fn synthetic(&mut self) -> i64 {
        let id = self.next_synthetic;
        self.next_synthetic += 1;
        id
    }

    /// The process with logical id `id`, made on first sight with `pid`.
    fn proc(&mut self, id: &str, pid: i32, ts: f64) -> &mut Proc {
        if !self.procs.contains_key(id) {
            let mut pid = i64::from(pid);
            if pid <= 0 || self.pid_owner.contains_key(&pid) {
                pid = self.synthetic();
            }
            self.pid_owner.insert(pid, id.to_string());
            self.threads.push((pid, pid, id.to_string()));
            self.ids_in_order.push(id.to_string());
            self.procs.insert(
                id.to_string(),
                Proc {
                    pid,
                    role: None,
                    order: self.ids_in_order.len(),
                    state: Some(("running".into(), ts)),
                    holds: HashMap::new(),
                    lock_tracks: HashMap::new(),
                    messages_tid: None,
                    last_message: None,
                    last_private: HashMap::new(),
                    resume: None,
                },
            );
        }
        self.procs.get_mut(id).expect("inserted above")
    }

    /// Ends the open state span of `id` at `ts` and opens `next` (none: the
    /// process is gone).
    fn set_state(&mut self, id: &str, pid: i32, ts: f64, next: Option<String>) {
        let p = self.proc(id, pid, ts);
        let pid = p.pid;
        let closed = p.state.take();
        p.state = next.map(|n| (n, ts));
        if let Some((name, since)) = closed {
            self.span(name, since, ts, pid, pid);
        }
    }

    fn span(&mut self, name: String, since: f64, until: f64, pid: i64, tid: i64) {
        if until > since {
            let mut t = TraceEvent::new("X", name, since, pid, tid);
            // Rounded to the nanosecond the events were stamped with.
            t.dur = Some(((until - since) * 1000.0).round() / 1000.0);
            t.cat = Some("state");
            self.out.push(t);
        }
    }

    fn instant(
        &mut self,
        scope: &'static str,
        name: String,
        ts: f64,
        pid: i64,
        args: serde_json::Value,
    ) {
        let mut t = TraceEvent::new("i", name, ts, pid, pid);
        t.s = Some(scope);
        t.args = Some(args);
        self.out.push(t);
    }

    fn release(&mut self, id: &str, lock: &str, ts: f64) {
        let Some(p) = self.procs.get_mut(id) else {
            return;
        };
        let pid = p.pid;
        if let Some((tid, since)) = p.holds.remove(lock) {
            self.span(format!("holding {lock}"), since, ts, pid, tid);
        }
    }

    fn message(&mut self, e: &Event, ts: f64, name: String, channel: &str, msg: &str, sent: bool) {
        self.message_on(&e.proc_id, e.pid, ts, name, channel, msg, sent);
    }

    /// A short slice on the `messages` track of `id`: one end of an arrow
    /// keyed by (`channel`, `msg`).
    #[allow(clippy::too_many_arguments)]
    fn message_on(
        &mut self,
        id: &str,
        pid: i32,
        ts: f64,
        name: String,
        channel: &str,
        msg: &str,
        sent: bool,
    ) {
        let p = self.proc(id, pid, ts);
        let pid = p.pid;
        let id = id.to_string();
        let tid = match p.messages_tid {
            Some(t) => t,
            None => {
                let t = self.synthetic();
                self.threads.push((pid, t, format!("{id} messages")));
                let p = self.procs.get_mut(&id).expect("made above");
                p.messages_tid = Some(t);
                t
            }
        };
        let index = self.out.len();
        let p = self.procs.get_mut(&id).expect("made above");
        if let Some(prev) = p.last_message.replace(index) {
            let prev = &mut self.out[prev];
            prev.dur = Some((ts - prev.ts).clamp(0.0, MESSAGE_SLICE_US));
        }
        let mut t = TraceEvent::new("X", name, ts, pid, tid);
        t.dur = Some(MESSAGE_SLICE_US);
        t.cat = Some("message");
        t.args = Some(json!({ "channel": channel, "msg": msg }));
        self.out.push(t);
        let key = (channel.to_string(), msg.to_string());
        let at = At { ts, pid, tid };
        let map = if sent {
            &mut self.sends
        } else {
            &mut self.recvs
        };
        map.entry(key).or_insert(at);
    }

    fn shared_counter(&mut self, name: &str, value: &Value, ts: f64) {
        let Some(args) = counter_args(value) else {
            return;
        };
        let text = args.to_string();
        if self.last_shared.get(name) == Some(&text) {
            return;
        }
        self.last_shared.insert(name.to_string(), text);
        let pid = match self.shared_pid {
            Some(p) => p,
            None => {
                let p = self.synthetic();
                self.shared_pid = Some(p);
                p
            }
        };
        let mut t = TraceEvent::new("C", name, ts, pid, pid);
        t.args = Some(args);
        self.out.push(t);
    }

    /// `SIGSTOP` freezes the target (a `stopped` span) until `SIGCONT`
    /// puts it back in the state it was in, as the app's model does.
    fn stop_or_continue(&mut self, target: &str, target_pid: i32, signal: &str, ts: f64) {
        let p = self.proc(target, target_pid, ts);
        match signal {
            "SIGSTOP" | "SIGTSTP" | "SIGTTIN" | "SIGTTOU" if p.resume.is_none() => {
                let Some((now, _)) = p.state.as_ref() else {
                    return; // already gone
                };
                if now.starts_with("zombie") {
                    return;
                }
                p.resume = Some(now.clone());
                self.set_state(target, target_pid, ts, Some(format!("stopped ({signal})")));
            }
            "SIGCONT" => {
                if let Some(back) = p.resume.take() {
                    self.set_state(target, target_pid, ts, Some(back));
                }
            }
            _ => {}
        }
    }

    fn event(&mut self, e: &Event, ts: f64) {
        let id = e.proc_id.as_str();
        match &e.body {
            Body::Hello { role, .. } => {
                let p = self.proc(id, e.pid, ts);
                p.role = Some(role.clone());
            }
            Body::Spawn {
                child,
                child_pid,
                role,
                ..
            } => {
                self.proc(id, e.pid, ts);
                let c = self.proc(child, *child_pid, ts);
                c.role.get_or_insert_with(|| role.clone());
                // An arrow from the parent to its new child.
                let name = format!("start {child}");
                self.message_on(id, e.pid, ts, name, SPAWN_KEY, child, true);
                let name = format!("started by {id}");
                self.message_on(child, *child_pid, ts, name, SPAWN_KEY, child, false);
            }
            Body::Resource {
                res, name, value, ..
            } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant(
                    "t",
                    format!("{res:?} {name}").to_lowercase(),
                    ts,
                    pid,
                    json!({}),
                );
                if matches!(res, ResourceKind::Value | ResourceKind::Array)
                    && let Some(v) = value
                {
                    self.shared_counter(name, v, ts);
                }
            }
            Body::Exec { program, args } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant(
                    "t",
                    format!("exec {program}"),
                    ts,
                    pid,
                    json!({ "args": args }),
                );
            }
            Body::Exit { code, signal } => {
                let how = match (code, signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (None, Some(s)) => format!("killed by {s}"),
                    (None, None) => "status unknown".to_string(),
                };
                let locks: Vec<String> = self.proc(id, e.pid, ts).holds.keys().cloned().collect();
                for l in locks {
                    self.release(id, &l, ts);
                }
                self.proc(id, e.pid, ts).resume = None;
                self.set_state(id, e.pid, ts, Some(format!("zombie ({how})")));
            }
            Body::Reaped { by, .. } => {
                let id = if id.is_empty() {
                    match self.pid_owner.get(&i64::from(e.pid)) {
                        Some(owner) => owner.clone(),
                        None => return,
                    }
                } else {
                    id.to_string()
                };
                let pid = self.proc(&id, e.pid, ts).pid;
                self.set_state(&id, e.pid, ts, None);
                self.instant("t", format!("reaped by {by}"), ts, pid, json!({}));
            }
            Body::Adopted { by, .. } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant("t", format!("adopted by {by}"), ts, pid, json!({}));
            }
            Body::Output { stream, text } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let args = json!({ "stream": stream, "text": text });
                self.instant("t", format!("print {}", short(text)), ts, pid, args);
            }
            Body::Send {
                channel,
                end,
                msg,
                value,
            } => {
                let name = format!("send {} on {end}", short(&value.repr()));
                self.message(e, ts, name, channel, msg, true);
            }
            Body::Recv {
                channel,
                end,
                msg,
                value,
            } => {
                let name = format!("recv {} on {end}", short(&value.repr()));
                self.message(e, ts, name, channel, msg, false);
            }
            Body::Put {
                channel,
                msg,
                value,
            } => {
                let name = format!("put {} in {channel}", short(&value.repr()));
                self.message(e, ts, name, channel, msg, true);
            }
            Body::Get {
                channel,
                msg,
                value,
            } => {
                let name = format!("get {} from {channel}", short(&value.repr()));
                self.message(e, ts, name, channel, msg, false);
            }
            // What sits in a stdout buffer is not yet output: the trace shows
            // output where it was written.
            Body::Buffered { .. } | Body::Flush { .. } => {}
            // Threads share their process's track (one per process here);
            // their start, end and join are marks on it.
            Body::ThreadStart { .. } | Body::ThreadEnd { .. } | Body::ThreadJoin { .. } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let thread = e.thread.as_deref().unwrap_or("a thread");
                let name = format!("{thread}: {}", e.body.kind().replace('_', " "));
                self.instant("t", name, ts, pid, json!({}));
            }
            Body::Poll { end, ready, .. } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let name = format!("poll {end}: {}", if *ready { "ready" } else { "nothing" });
                self.instant("t", name, ts, pid, json!({}));
            }
            Body::LockWait { lock } => {
                self.set_state(id, e.pid, ts, Some(format!("waiting for lock {lock}")));
            }
            Body::LockAcquire { lock } => {
                self.set_state(id, e.pid, ts, Some("running".into()));
                let p = self.proc(id, e.pid, ts);
                let pid = p.pid;
                let tid = match p.lock_tracks.get(lock) {
                    Some(t) => *t,
                    None => {
                        let t = self.synthetic();
                        self.threads.push((pid, t, format!("{id} holds {lock}")));
                        self.procs
                            .get_mut(id)
                            .expect("made above")
                            .lock_tracks
                            .insert(lock.clone(), t);
                        t
                    }
                };
                let p = self.procs.get_mut(id).expect("made above");
                p.holds.entry(lock.clone()).or_insert((tid, ts));
            }
            Body::LockRelease { lock } => self.release(id, lock, ts),
            Body::Read {
                name,
                value,
                private,
            }
            | Body::Write {
                name,
                value,
                private,
            } => {
                if *private {
                    let Some(args) = counter_args(value) else {
                        return;
                    };
                    let p = self.proc(id, e.pid, ts);
                    let text = args.to_string();
                    if p.last_private.get(name) == Some(&text) {
                        return;
                    }
                    p.last_private.insert(name.clone(), text);
                    let pid = p.pid;
                    let mut t = TraceEvent::new("C", format!("{name} (private)"), ts, pid, pid);
                    t.args = Some(args);
                    self.out.push(t);
                } else {
                    self.proc(id, e.pid, ts);
                    self.shared_counter(name, value, ts);
                }
            }
            Body::TaskStart { pool, task, func } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant(
                    "t",
                    format!("task {task} starts: {func}"),
                    ts,
                    pid,
                    json!({ "pool": pool }),
                );
            }
            Body::TaskDone { pool, task, value } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let name = format!("task {task} done: {}", short(&value.repr()));
                self.instant("t", name, ts, pid, json!({ "pool": pool }));
            }
            Body::Signal {
                target,
                target_pid,
                signal,
            } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let args = json!({ "target": target, "target_pid": target_pid, "signal": signal });
                self.instant("t", format!("{signal} → {target}"), ts, pid, args.clone());
                let target_track = self.proc(target, *target_pid, ts).pid;
                self.instant("t", format!("{signal} from {id}"), ts, target_track, args);
                self.stop_or_continue(target, *target_pid, signal, ts);
            }
            Body::Sleep { duration_ms } => {
                self.set_state(id, e.pid, ts, Some(format!("sleeping {duration_ms} ms")));
            }
            Body::Wake {} | Body::Unblock { .. } | Body::Go {} => {
                self.set_state(id, e.pid, ts, Some("running".into()));
            }
            Body::Block { on } => {
                self.set_state(id, e.pid, ts, Some(format!("blocked: {on}")));
            }
            Body::Pending { action, .. } => {
                self.set_state(id, e.pid, ts, Some(format!("waiting for go: {action}")));
            }
            Body::Free {} | Body::Named { .. } => {}
            Body::Callback {
                pool,
                task,
                func,
                error,
            } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let args = json!({ "pool": pool, "task": task, "func": func, "error": error });
                self.instant(
                    "t",
                    format!("callback {func} ({pool} task {task})"),
                    ts,
                    pid,
                    args,
                );
            }
            Body::Narrate { text, .. } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant("g", short(text), ts, pid, json!({ "text": text }));
            }
            Body::Sample {
                cpu_percent,
                rss_bytes,
            } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let mut t = TraceEvent::new("C", "cpu %", ts, pid, pid);
                t.args = Some(json!({ "cpu_percent": f64::from(*cpu_percent) }));
                self.out.push(t);
                let mut t = TraceEvent::new("C", "memory MiB", ts, pid, pid);
                t.args = Some(json!({ "rss_mib": *rss_bytes as f64 / 1_048_576.0 }));
                self.out.push(t);
            }
            Body::Race {
                name,
                read,
                replaced,
                written,
                lost,
            } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let n = crate::model::race_updates(read, written, lost);
                let so_far = self.lost_so_far.entry(name.clone()).or_default();
                *so_far += n;
                let so_far = *so_far;
                let args = json!({
                    "read": read, "replaced": replaced, "written": written, "lost": lost,
                    "updates": n, "updates_lost_so_far": so_far,
                });
                let s = |n: i64| if n.abs() == 1 { "" } else { "s" };
                // Only a write that erased updates is a lost update; one
                // that found a smaller value (another's stale write) puts
                // erased updates back.
                let what = if n > 0 {
                    format!(
                        "lost update of {name}: erases {n} update{} ({so_far} lost so far)",
                        s(n)
                    )
                } else {
                    format!(
                        "{name}: a stale write overwritten, {} update{} back ({so_far} lost so far)",
                        -n,
                        s(n)
                    )
                };
                self.instant("t", what, ts, pid, args);
                if let Some(shared) = self.shared_pid {
                    let mut t =
                        TraceEvent::new("C", format!("{name}: updates lost"), ts, shared, shared);
                    t.args = Some(json!({ "lost": so_far }));
                    self.out.push(t);
                }
            }
            Body::Deadlock { cycle } => {
                let pid = self.proc(id, e.pid, ts).pid;
                self.instant(
                    "g",
                    format!("deadlock: {cycle}"),
                    ts,
                    pid,
                    json!({ "cycle": cycle }),
                );
            }
            Body::Error { message } => {
                let pid = self.proc(id, e.pid, ts).pid;
                let args = json!({ "message": message });
                self.instant("t", format!("error: {}", short(message)), ts, pid, args);
            }
        }
    }

    fn finish(mut self, t_end: f64) -> Trace {
        // What is still open ends with the recording.
        for id in self.ids_in_order.clone() {
            let locks: Vec<String> = self.procs[&id].holds.keys().cloned().collect();
            for l in locks {
                self.release(&id, &l, t_end);
            }
            let p = self.procs.get_mut(&id).expect("listed");
            let pid = p.pid;
            if let Some((name, since)) = p.state.take() {
                self.span(name, since, t_end, pid, pid);
            }
        }
        let mut flow_id = 0u64;
        let mut pairs: Vec<(&(String, String), &At)> = self.sends.iter().collect();
        pairs.sort_by(|a, b| a.1.ts.total_cmp(&b.1.ts));
        let mut flows = Vec::new();
        for (key, from) in pairs {
            let Some(to) = self.recvs.get(key).filter(|to| to.ts >= from.ts) else {
                // Never received (or, in a damaged file, received before
                // it was sent: no arrow back in time).
                continue;
            };
            flow_id += 1;
            let name = if key.0 == SPAWN_KEY {
                format!("spawn {}", key.1)
            } else {
                format!("message {}", key.1)
            };
            let mut s = TraceEvent::new("s", name.clone(), from.ts, from.pid, from.tid);
            s.cat = Some("message");
            s.id = Some(flow_id);
            let mut f = TraceEvent::new("f", name, to.ts, to.pid, to.tid);
            f.cat = Some("message");
            f.id = Some(flow_id);
            f.bp = Some("e");
            flows.push(s);
            flows.push(f);
        }
        let mut meta = Vec::new();
        for id in &self.ids_in_order {
            let p = &self.procs[id];
            let name = match &p.role {
                Some(role) if role != id => format!("{id} · {role}"),
                _ => id.clone(),
            };
            let mut m = TraceEvent::new("M", "process_name", 0.0, p.pid, p.pid);
            m.args = Some(json!({ "name": name }));
            meta.push(m);
            let mut m = TraceEvent::new("M", "process_sort_index", 0.0, p.pid, p.pid);
            m.args = Some(json!({ "sort_index": p.order }));
            meta.push(m);
        }
        if let Some(pid) = self.shared_pid {
            let mut m = TraceEvent::new("M", "process_name", 0.0, pid, pid);
            m.args = Some(json!({ "name": "shared values" }));
            meta.push(m);
            let mut m = TraceEvent::new("M", "process_sort_index", 0.0, pid, pid);
            m.args = Some(json!({ "sort_index": 0 }));
            meta.push(m);
        }
        for (i, (pid, tid, name)) in self.threads.iter().enumerate() {
            let mut m = TraceEvent::new("M", "thread_name", 0.0, *pid, *tid);
            m.args = Some(json!({ "name": name }));
            meta.push(m);
            let mut m = TraceEvent::new("M", "thread_sort_index", 0.0, *pid, *tid);
            m.args = Some(json!({ "sort_index": i }));
            meta.push(m);
        }
        meta.append(&mut self.out);
        meta.append(&mut flows);
        Trace {
            trace_events: meta,
            display_time_unit: "ms",
        }
    }
}

/// The command: exit 0 written, 2 bad input (the recording or OUT).
pub fn export(args: &ExportArgs) -> i32 {
    let events = match crate::trace_file::read(&args.file) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let trace = chrome_trace(&events);
    let written = crate::safe_fs::create_file(&args.perfetto).and_then(|f| {
        let mut out = std::io::BufWriter::new(f);
        serde_json::to_writer(&mut out, &trace)?;
        out.write_all(b"\n")?;
        out.flush()
    });
    if let Err(e) = written {
        eprintln!("forkscope: cannot write {}: {e}", args.perfetto.display());
        return 2;
    }
    println!(
        "wrote {}: {} trace events from {} recorded events; open it at https://ui.perfetto.dev",
        args.perfetto.display(),
        trace.trace_events.len(),
        events.len()
    );
    0
}
