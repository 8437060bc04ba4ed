//! The World: what is known about a run, built only from events.
//!
//! [`World::apply`] is a pure fold over the event log: no clocks, no I/O, no
//! panics. Events come from many processes over many sockets, so they may
//! arrive late, twice, or about processes never introduced; every such case
//! is tolerated (entries are made on demand, impossible steps are ignored)
//! because a viewer that dies on odd input shows nothing at all.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::Processes;
use crate::protocol::{Body, Event, RUNNER_ID, ResourceKind, Stream, Value};

/// Output chunks kept per process and in the merged terminal.
pub const OUTPUT_CHUNKS_KEPT: usize = 2000;
/// Output text kept per process: a process printing long lines keeps fewer
/// than [`OUTPUT_CHUNKS_KEPT`] chunks.
pub const PROCESS_OUTPUT_BYTES_KEPT: usize = 64 * 1024;
/// Output text kept in the merged terminal.
pub const MERGED_OUTPUT_BYTES_KEPT: usize = 256 * 1024;
/// Reads and writes kept per shared value.
pub const VALUE_HISTORY_KEPT: usize = 1000;
/// Lost updates kept per shared value (the newest; older ones are counted).
pub const LOST_UPDATES_KEPT: usize = 1000;
/// Run-time errors kept (the first ones: they are the cause).
pub const ERRORS_KEPT: usize = 1000;
/// Pool results kept per pool (the newest task numbers).
pub const POOL_RESULTS_KEPT: usize = 10_000;
/// Receives whose send has not arrived yet, kept per channel.
const EARLY_RECEIVES_KEPT: usize = 1024;
/// Messages shown in flight per channel. A real pipe or queue holds a few
/// hundred at most; more means their receives were lost (dropped events),
/// and the oldest go.
pub const IN_FLIGHT_KEPT: usize = 4096;
/// Finished message trips kept per channel (enough to animate recent dots).
pub const DELIVERIES_KEPT: usize = 64;

pub(crate) use crate::protocol::{alloc_bytes, value_heap_bytes};

/// What a process is doing right now, as a learner would say it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProcState {
    #[default]
    Running,
    Sleeping,
    /// Waiting for something: `"lock NAME"` for locks, otherwise the `on`
    /// text of the `block` event (a child to join, an empty queue, …).
    Blocked(String),
    /// Stopped by `SIGSTOP` (or a terminal stop signal) until `SIGCONT`.
    Stopped,
    /// Exited, but its parent has not waited for it yet.
    Zombie,
    /// Exited and waited for: gone from the kernel's process table.
    Reaped,
}

impl ProcState {
    /// Whether the process still runs code (a stopped one will again).
    pub fn is_alive(&self) -> bool {
        !matches!(self, ProcState::Zombie | ProcState::Reaped)
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcState::Running => write!(f, "running"),
            ProcState::Sleeping => write!(f, "sleeping"),
            ProcState::Blocked(on) => write!(f, "blocked on {on}"),
            ProcState::Stopped => write!(f, "stopped"),
            ProcState::Zombie => write!(f, "zombie"),
            ProcState::Reaped => write!(f, "reaped"),
        }
    }
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(String),
    /// An `exit` that carried neither a code nor a signal.
    Unknown,
}

impl ExitStatus {
    fn from_parts(code: Option<i32>, signal: &Option<String>) -> Self {
        match (code, signal) {
            (_, Some(signal)) => ExitStatus::Signal(signal.clone()),
            (Some(code), None) => ExitStatus::Code(code),
            (None, None) => ExitStatus::Unknown,
        }
    }

    pub fn is_success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by {signal}"),
            ExitStatus::Unknown => write!(f, "exited"),
        }
    }
}

/// The pool task a worker is running.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub pool: String,
    pub task: u32,
    pub func: String,
    pub start_t_ns: u64,
}

/// One chunk of text a process wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputChunk {
    pub t_ns: u64,
    pub proc_id: String,
    pub stream: Stream,
    pub text: String,
}

/// Most bytes of a process's unflushed stdout text the model keeps (the
/// runner's buffer holds at most 8 KiB; a forged event may say more).
pub const STDOUT_BUFFER_BYTES_KEPT: usize = 16 * 1024;

/// A process's stdout buffer as its `buffered` and `flush` events tell it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StdoutBuffer {
    /// The unflushed text (its first [`STDOUT_BUFFER_BYTES_KEPT`] bytes).
    pub text: String,
    /// Unflushed bytes in all, kept or not.
    pub bytes: u64,
    /// Some of it was copied from the parent's buffer by `fork`.
    pub inherited: bool,
}

impl StdoutBuffer {
    fn push(&mut self, text: &str, inherited: bool) {
        self.bytes = self.bytes.saturating_add(text.len() as u64);
        self.inherited |= inherited;
        let room = STDOUT_BUFFER_BYTES_KEPT.saturating_sub(self.text.len());
        let mut cut = text.len().min(room);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&text[..cut]);
    }

    /// The first `n` bytes were written.
    fn drain(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_sub(n);
        let mut cut = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        while !self.text.is_char_boundary(cut) {
            cut += 1;
        }
        self.text.drain(..cut);
        if self.bytes == 0 {
            self.text.clear();
            self.inherited = false;
        }
    }

    fn clear(&mut self) {
        *self = StdoutBuffer::default();
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The unflushed text as Python's `repr` shows it (`'a\\n'`), cut to
    /// at most `max_chars` characters with `…`.
    pub fn shown(&self, max_chars: usize) -> String {
        let mut out = String::from("'");
        let more =
            (self.bytes as usize) > self.text.len() || self.text.chars().nth(max_chars).is_some();
        for c in self.text.chars().take(max_chars) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('\'');
        if more || out.chars().count() > max_chars {
            let cut: String = out
                .chars()
                .take(max_chars.saturating_sub(2).max(1))
                .collect();
            format!("{cut}…'")
        } else {
            out
        }
    }
}

/// The most recent output chunks; older ones are dropped but counted so a
/// view can say "… N earlier chunks not shown".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputBuffer {
    pub chunks: VecDeque<OutputChunk>,
    pub trimmed: u64,
    /// Text bytes in `chunks`.
    text_bytes: usize,
}

impl OutputBuffer {
    /// Appends a chunk, dropping the oldest ones past [`OUTPUT_CHUNKS_KEPT`]
    /// chunks or `max_text_bytes` of text (the newest chunk always stays).
    fn push(&mut self, chunk: OutputChunk, max_text_bytes: usize) {
        self.text_bytes += chunk.text.len();
        self.chunks.push_back(chunk);
        while self.chunks.len() > 1
            && (self.chunks.len() > OUTPUT_CHUNKS_KEPT || self.text_bytes > max_text_bytes)
        {
            if let Some(old) = self.chunks.pop_front() {
                self.text_bytes -= old.text.len();
                self.trimmed += 1;
            }
        }
    }

    /// Roughly the memory the kept chunks use.
    pub fn approx_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<OutputChunk>()
            + self
                .chunks
                .iter()
                .map(|c| alloc_bytes(c.proc_id.len()) + alloc_bytes(c.text.len()))
                .sum::<usize>()
    }

    /// The kept text, concatenated (what a terminal would show).
    pub fn text(&self) -> String {
        self.chunks.iter().map(|c| c.text.as_str()).collect()
    }
}

/// Everything known about one scenario process.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// Logical id: the key everywhere (pids are reused, these are not).
    pub id: String,
    /// 0 until an event tells us.
    pub pid: i32,
    pub ns_pid: Option<i32>,
    /// The program's own name for it (a traced Python program's
    /// `Process-1`), from its hello.
    pub name: Option<String>,
    pub ppid: i32,
    /// Current parent (the adopter after adoption).
    pub parent: Option<String>,
    /// The parent that started it, kept after adoption to draw where it came from.
    pub original_parent: Option<String>,
    pub role: String,
    pub state: ProcState,
    pub exit: Option<ExitStatus>,
    pub reaped_by: Option<String>,
    pub daemon: bool,
    /// Its parent died while it was not yet reaped.
    pub orphaned: bool,
    /// A new parent (normally the runner) took it over.
    pub adopted: bool,
    /// When its parent died (it became an orphan).
    pub orphaned_t_ns: Option<u64>,
    /// Whether its own `hello` arrived (a spawned child may not have spoken yet).
    pub hello_seen: bool,
    /// Order of first appearance: siblings are laid out by it, so the stage
    /// does not reshuffle as events arrive.
    pub spawn_order: u64,
    /// Program and arguments after `exec`.
    pub exec: Option<String>,
    pub task: Option<Task>,
    /// Current line in the scenario's source listing.
    pub line: Option<u32>,
    pub first_t_ns: u64,
    pub last_t_ns: u64,
    /// When the current sleep should end (for a countdown).
    pub sleep_until_t_ns: Option<u64>,
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
    /// Step mode: the action it will take on `go`.
    pub pending: Option<String>,
    /// The last signal another process sent it.
    pub last_signal: Option<String>,
    pub output: OutputBuffer,
    /// What it printed that sits in its stdout buffer, not written yet
    /// (`buffered` and `flush` events). A fork copies it; a process killed
    /// by a signal never writes it: then it is what the process lost.
    pub stdout_buffer: StdoutBuffer,
    /// What it was doing when stopped, restored by `SIGCONT`; also where
    /// state changes go while it is stopped.
    resume_state: ProcState,
    /// Its threads other than the main one, in the order they started.
    pub threads: Vec<ThreadInfo>,
}

/// One thread of a process (not its main thread), from `thread_*` events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ThreadInfo {
    /// `main.t1`: unique in the run.
    pub name: String,
    /// The kernel's tid (`/proc/PID/task/TID`).
    pub tid: i32,
    pub role: String,
    pub daemon: bool,
    /// Running, sleeping, blocked on a lock; `Reaped` once it ended.
    pub state: ProcState,
    /// Ended (`thread_end`).
    pub done: bool,
    /// Step mode: the action it will take on `go`.
    pub pending: Option<String>,
    /// The source line it is on (events' `line`, from this thread).
    pub line: Option<u32>,
    /// Order of first appearance among processes and threads (step mode
    /// numbers them in that order).
    pub spawn_order: u64,
}

impl Process {
    pub(super) fn new(id: &str, t_ns: u64, spawn_order: u64) -> Self {
        Process {
            id: id.to_string(),
            pid: 0,
            ns_pid: None,
            name: None,
            ppid: 0,
            parent: None,
            original_parent: None,
            role: String::new(),
            state: ProcState::Running,
            exit: None,
            reaped_by: None,
            daemon: false,
            orphaned: false,
            adopted: false,
            orphaned_t_ns: None,
            hello_seen: false,
            spawn_order,
            exec: None,
            task: None,
            line: None,
            first_t_ns: t_ns,
            last_t_ns: t_ns,
            sleep_until_t_ns: None,
            cpu_percent: None,
            rss_bytes: None,
            pending: None,
            last_signal: None,
            output: OutputBuffer::default(),
            stdout_buffer: StdoutBuffer::default(),
            resume_state: ProcState::Running,
            threads: Vec::new(),
        }
    }

    /// One of its threads by name.
    pub fn thread(&self, name: &str) -> Option<&ThreadInfo> {
        self.threads.iter().find(|t| t.name == name)
    }

    fn thread_mut(&mut self, name: &str, tid: i32) -> &mut ThreadInfo {
        let i = match self.threads.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                self.threads.push(ThreadInfo {
                    name: name.to_string(),
                    tid,
                    ..ThreadInfo::default()
                });
                self.threads.len() - 1
            }
        };
        &mut self.threads[i]
    }

    pub fn is_alive(&self) -> bool {
        self.state.is_alive()
    }

    /// The state that sleep/block/wake events act on: the saved one while
    /// stopped, none once dead (late events must not revive a zombie).
    fn activity_mut(&mut self) -> Option<&mut ProcState> {
        match self.state {
            ProcState::Zombie | ProcState::Reaped => None,
            ProcState::Stopped => Some(&mut self.resume_state),
            _ => Some(&mut self.state),
        }
    }

    fn set_activity(&mut self, state: ProcState) {
        if let Some(current) = self.activity_mut() {
            *current = state;
        }
    }

    /// Back to running, if what it was doing matches `was` (a `wake` ends a
    /// sleep, not a wait for a lock).
    fn resume_if(&mut self, was: impl Fn(&ProcState) -> bool) {
        if let Some(current) = self.activity_mut()
            && was(current)
        {
            *current = ProcState::Running;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Pipe,
    Queue,
}

/// A message sent or put but not yet received.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub msg: String,
    pub from: String,
    /// The pipe end it was sent on (`None` for queues).
    pub end: Option<String>,
    pub value: Value,
    pub t_ns: u64,
}

/// A finished trip, kept briefly so a view can animate the dot arriving.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub msg: String,
    /// `None` if the receive arrived before its send.
    pub from: Option<String>,
    pub to: String,
    pub value: Value,
    pub sent_t_ns: Option<u64>,
    pub recv_t_ns: u64,
}

/// A pipe or a queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Pipe end names, in declaration order.
    pub ends: Vec<String>,
    pub duplex: bool,
    /// Queue capacity; `None` means unbounded.
    pub maxsize: Option<u32>,
    /// In send order: the head of a queue is `in_flight[0]`.
    pub in_flight: Vec<Message>,
    pub sent_total: u64,
    pub received_total: u64,
    pub deliveries: VecDeque<Delivery>,
    /// Message ids received before their send arrived (events from two
    /// sockets can cross); the late send then completes at once.
    early_receives: Vec<String>,
}

impl Channel {
    fn new(name: &str, kind: ChannelKind) -> Self {
        Channel {
            name: name.to_string(),
            kind,
            ends: Vec::new(),
            duplex: false,
            maxsize: None,
            in_flight: Vec::new(),
            sent_total: 0,
            received_total: 0,
            deliveries: VecDeque::new(),
            early_receives: Vec::new(),
        }
    }

    /// Messages waiting in the channel (queue depth = puts − gets).
    pub fn depth(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_full(&self) -> bool {
        self.maxsize
            .is_some_and(|max| self.depth() >= usize::try_from(max).unwrap_or(usize::MAX))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The value the runner declared.
    Initial,
    Read,
    Write,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueAccess {
    pub t_ns: u64,
    pub proc_id: String,
    pub value: Value,
    pub access: Access,
}

/// A write based on a stale read, as its writer reported it (a `race`
/// event): `proc_id` read `read`, others wrote in between, and its write of
/// `written` replaced `replaced`, erasing `lost` (= replaced - read). This
/// is the classic lost update the race lab highlights.
#[derive(Clone, Debug, PartialEq)]
pub struct LostUpdate {
    /// When the write happened (the writer's `write` event; the `race`
    /// event's own time if there is none).
    pub t_ns: u64,
    pub proc_id: String,
    pub read: Value,
    pub replaced: Value,
    pub written: Value,
    pub lost: Value,
}

impl LostUpdate {
    /// How many updates this write erased (> 0), or brought back (< 0):
    /// `lost` counted in updates of the size this write made (`written −
    /// read`), so for a counter added to by 1 it is `replaced − read`.
    /// A write that found a *smaller* value than it read (another
    /// process's stale write had erased updates meanwhile) puts some of
    /// them back: over a run these add up to exactly the updates missing
    /// from the value (`adds − (final − initial)`), at every moment.
    /// A value that is not a number erased one update.
    pub fn updates(&self) -> i64 {
        race_updates(&self.read, &self.written, &self.lost)
    }

    /// Whether this write erased updates (not one that put some back).
    pub fn erased(&self) -> bool {
        self.updates() > 0
    }
}

/// [`LostUpdate::updates`] of a `race` event's fields.
pub fn race_updates(read: &Value, written: &Value, lost: &Value) -> i64 {
    {
        let (Some(lost), Some(read), Some(written)) =
            (lost.as_f64(), read.as_f64(), written.as_f64())
        else {
            return 1;
        };
        let step = written - read;
        let n = if step.abs() > f64::EPSILON {
            (lost / step).round()
        } else {
            lost.round()
        };
        if n.is_finite() { n as i64 } else { 0 }
    }
}

/// For a `race` event: the updates it erased (> 0) or put back (< 0).
pub fn race_body_updates(body: &Body) -> Option<i64> {
    match body {
        Body::Race {
            read,
            written,
            lost,
            ..
        } => Some(race_updates(read, written, lost)),
        _ => None,
    }
}

/// A shared `Value` or `Array` (one slot in shared memory, seen by all).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedValue {
    pub name: String,
    pub is_array: bool,
    pub current: Value,
    pub history: VecDeque<ValueAccess>,
    pub history_trimmed: u64,
    pub reads: u64,
    pub writes: u64,
    /// The newest [`LOST_UPDATES_KEPT`] lost updates (from `race` events).
    pub lost_updates: VecDeque<LostUpdate>,
    /// Older lost updates no longer kept.
    pub lost_updates_trimmed: u64,
    /// The updates lost so far, all writes counted (kept or not): the sum
    /// of [`LostUpdate::updates`].
    pub updates_lost: i64,
}

impl SharedValue {
    fn new(name: &str, initial: Value, is_array: bool) -> Self {
        SharedValue {
            name: name.to_string(),
            is_array,
            current: initial,
            history: VecDeque::new(),
            history_trimmed: 0,
            reads: 0,
            writes: 0,
            lost_updates: VecDeque::new(),
            lost_updates_trimmed: 0,
            updates_lost: 0,
        }
    }

    fn record(&mut self, t_ns: u64, proc_id: &str, value: &Value, access: Access) {
        let kept = if self.history.len() >= VALUE_HISTORY_KEPT {
            self.history_trimmed += 1;
            self.history.pop_front()
        } else {
            None
        };
        // The oldest entry's memory serves the newest one.
        let entry = match kept {
            Some(mut old) => {
                old.t_ns = t_ns;
                old.proc_id.clear();
                old.proc_id.push_str(proc_id);
                old.value.clone_from(value);
                old.access = access;
                old
            }
            None => ValueAccess {
                t_ns,
                proc_id: proc_id.to_string(),
                value: value.clone(),
                access,
            },
        };
        self.history.push_back(entry);
    }

    /// How many updates are lost so far: for a counter only added to,
    /// exactly `adds − (current − initial)` (writes that put erased
    /// updates back count against the ones that erased them). Not the
    /// number of `race` events: one write may erase 2 updates, a later
    /// one bring 1 back.
    pub fn updates_lost(&self) -> i64 {
        self.updates_lost
    }

    /// The updates `proc_id`'s writes erased (> 0) and put back (as a
    /// positive number), among the lost updates kept.
    pub fn updates_lost_by(&self, proc_id: &str) -> (i64, i64) {
        self.lost_updates
            .iter()
            .filter(|lu| lu.proc_id == proc_id)
            .fold((0, 0), |(erased, back), lu| {
                let n = lu.updates();
                if n > 0 {
                    (erased + n, back)
                } else {
                    (erased, back - n)
                }
            })
    }

    /// The newest write that erased updates (not one that put some back).
    pub fn last_erasing(&self) -> Option<&LostUpdate> {
        self.lost_updates.iter().rev().find(|lu| lu.erased())
    }

    /// The written values, oldest first (for a small sparkline).
    pub fn writes(&self) -> impl Iterator<Item = &ValueAccess> {
        self.history.iter().filter(|a| a.access == Access::Write)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lock {
    pub name: String,
    pub holder: Option<String>,
    pub held_since_t_ns: Option<u64>,
    /// The waiting line, first come first.
    pub waiters: Vec<String>,
    pub acquire_count: u64,
    /// Acquires that had to wait first.
    pub contended_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pool {
    pub name: String,
    pub size: u32,
    pub tasks_started: u64,
    pub tasks_done: u64,
    /// Tasks handed to the pool so far (its tasks pipe's puts; 0 when the
    /// program does not say, e.g. a traced pool).
    pub tasks_queued: u64,
    /// Results by task number.
    pub results: BTreeMap<u32, Value>,
}

impl Pool {
    /// "6 of 10 tasks done": out of the tasks queued so far when they are
    /// known, else "6 done of 9 taken" (the tasks workers took).
    pub fn progress(&self) -> String {
        if self.tasks_queued >= self.tasks_started && self.tasks_queued > 0 {
            format!("{} of {} tasks done", self.tasks_done, self.tasks_queued)
        } else {
            format!("{} done of {} taken", self.tasks_done, self.tasks_started)
        }
    }
}

/// A run-time error a scenario process reported.
#[derive(Clone, Debug, PartialEq)]
pub struct RunError {
    pub t_ns: u64,
    pub proc_id: String,
    pub message: String,
}

/// A signal one process sent another (for a caption).
#[derive(Clone, Debug, PartialEq)]
pub struct SignalSent {
    pub t_ns: u64,
    pub from: String,
    pub to: String,
    pub signal: String,
}

/// One row of [`World::processes_by_tree`].
#[derive(Clone, Copy, Debug)]
pub struct TreeRow<'a> {
    pub depth: usize,
    pub process: &'a Process,
}

/// Everything known about a run at one point of its event log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct World {
    pub processes: Processes,
    pub channels: BTreeMap<String, Channel>,
    /// Shared values and arrays.
    pub values: BTreeMap<String, SharedValue>,
    /// Declared private globals and their initial values.
    pub globals: BTreeMap<String, Value>,
    /// Each process's own copy of a private global, keyed by (process, name).
    pub private_values: BTreeMap<(String, String), Value>,
    pub locks: BTreeMap<String, Lock>,
    pub pools: BTreeMap<String, Pool>,
    /// All output in arrival order, as one terminal would show it.
    pub merged_output: OutputBuffer,
    pub caption: Option<String>,
    /// When the caption was set.
    pub caption_t_ns: u64,
    /// The latest signal one process sent another.
    pub last_signal: Option<SignalSent>,
    /// The first [`ERRORS_KEPT`] errors.
    pub errors: Vec<RunError>,
    /// Errors after those, counted only.
    pub errors_trimmed: u64,
    /// The wait-for cycle, once a deadlock was found.
    pub deadlock: Option<String>,
    pub first_t_ns: Option<u64>,
    /// Latest timestamp seen (events may arrive out of order).
    pub last_t_ns: u64,
    pub events_applied: u64,
    next_spawn_order: u64,
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut world = World::new();
        for event in events {
            world.apply(event);
        }
        world
    }

    pub fn process(&self, id: &str) -> Option<&Process> {
        self.processes.get(id)
    }

    /// A thread by its name (`main.t1`), with its process.
    pub fn thread(&self, name: &str) -> Option<(&Process, &ThreadInfo)> {
        self.processes
            .values()
            .find_map(|p| Some((p, p.thread(name)?)))
    }

    /// Children whose current parent is `id`, in spawn order.
    pub fn children(&self, id: &str) -> Vec<&Process> {
        let mut kids: Vec<&Process> = self
            .processes
            .values()
            .filter(|p| p.parent.as_deref() == Some(id) && p.id != id)
            .collect();
        kids.sort_by_key(|p| p.spawn_order);
        kids
    }

    /// Every process once, depth first, siblings in spawn order: a stable
    /// layout for trees and swim lanes. Parent links are followed as they
    /// are now, so an adopted process appears under its adopter; processes
    /// whose parent is unknown are roots, and odd cycles are broken.
    pub fn processes_by_tree(&self) -> Vec<TreeRow<'_>> {
        // By index in `processes` (id order): every view asks for this
        // every frame, so no maps of strings here.
        let procs: Vec<&Process> = self.processes.values().collect();
        let index_of = |id: &str| procs.binary_search_by(|p| p.id.as_str().cmp(id)).ok();
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); procs.len()];
        let mut roots: Vec<usize> = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            match p.parent.as_deref() {
                Some(parent)
                    if parent != p.id
                        && let Some(at) = index_of(parent) =>
                {
                    kids[at].push(i)
                }
                _ => roots.push(i),
            }
        }
        let order = |i: &usize| procs[*i].spawn_order;
        for list in &mut kids {
            list.sort_by_key(order);
        }
        roots.sort_by_key(order);
        // Anything in a parent cycle is unreachable from the roots; visit it
        // afterwards as a root of its own.
        let mut by_order: Vec<usize> = (0..procs.len()).collect();
        by_order.sort_by_key(order);

        let mut rows = Vec::with_capacity(procs.len());
        let mut seen = vec![false; procs.len()];
        let mut stack = Vec::new();
        for start in roots.into_iter().chain(by_order) {
            stack.push((0_usize, start));
            while let Some((depth, i)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                rows.push(TreeRow {
                    depth,
                    process: procs[i],
                });
                stack.extend(kids[i].iter().rev().map(|c| (depth + 1, *c)));
            }
        }
        rows
    }

    /// `proc_id`'s copy of a private global: its own if it wrote or read
    /// one (or inherited it at fork), else the declared initial value.
    pub fn private_value(&self, proc_id: &str, name: &str) -> Option<&Value> {
        self.private_values
            .get(&(proc_id.to_string(), name.to_string()))
            .or_else(|| self.globals.get(name))
    }

    /// Locks `proc_id` holds now (a process that dies holding one keeps it:
    /// that is what deadlocks the others).
    pub fn locks_held_by(&self, proc_id: &str) -> Vec<&Lock> {
        self.locks
            .values()
            .filter(|l| l.holder.as_deref() == Some(proc_id))
            .collect()
    }

    /// Roughly the memory this World uses (what a copy of it costs): the
    /// parts that grow with a run are counted, small fixed ones estimated.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let s = |text: &String| alloc_bytes(text.len());
        let opt = |text: &Option<String>| text.as_ref().map_or(0, s);
        // A B-tree map costs about its entries and a third more in nodes.
        let map = |n: usize, entry: usize| n * entry * 4 / 3;
        let processes: usize = self
            .processes
            .values()
            .map(|p| {
                size_of::<Process>()
                    + s(&p.id) * 2
                    + s(&p.role)
                    + opt(&p.parent)
                    + opt(&p.original_parent)
                    + opt(&p.exec)
                    + opt(&p.pending)
                    + opt(&p.last_signal)
                    + p.output.approx_bytes()
                    + alloc_bytes(p.stdout_buffer.text.capacity())
            })
            .sum();
        let channels: usize = self
            .channels
            .values()
            .map(|c| {
                size_of::<Channel>()
                    + s(&c.name) * 2
                    + c.ends.iter().map(s).sum::<usize>()
                    + c.in_flight.capacity() * size_of::<Message>()
                    + c.in_flight
                        .iter()
                        .map(|m| s(&m.msg) + s(&m.from) + opt(&m.end) + value_heap_bytes(&m.value))
                        .sum::<usize>()
                    + c.deliveries.capacity() * size_of::<Delivery>()
                    + c.deliveries
                        .iter()
                        .map(|d| s(&d.msg) + opt(&d.from) + s(&d.to) + value_heap_bytes(&d.value))
                        .sum::<usize>()
                    + c.early_receives.iter().map(s).sum::<usize>()
            })
            .sum();
        let values: usize = self
            .values
            .values()
            .map(|v| {
                size_of::<SharedValue>()
                    + s(&v.name) * 2
                    + value_heap_bytes(&v.current)
                    + v.history.capacity() * size_of::<ValueAccess>()
                    + v.history
                        .iter()
                        .map(|a| s(&a.proc_id) + value_heap_bytes(&a.value))
                        .sum::<usize>()
                    + v.lost_updates.capacity() * size_of::<LostUpdate>()
                    + v.lost_updates
                        .iter()
                        .map(|l| {
                            s(&l.proc_id)
                                + value_heap_bytes(&l.read)
                                + value_heap_bytes(&l.replaced)
                                + value_heap_bytes(&l.lost)
                                + value_heap_bytes(&l.written)
                        })
                        .sum::<usize>()
            })
            .sum();
        let private = map(
            self.private_values.len(),
            size_of::<((String, String), Value)>() + 64,
        ) + self
            .private_values
            .values()
            .map(value_heap_bytes)
            .sum::<usize>();
        let locks = map(self.locks.len(), size_of::<Lock>() + 64)
            + self
                .locks
                .values()
                .map(|l| l.waiters.iter().map(s).sum::<usize>())
                .sum::<usize>();
        let pools: usize = self
            .pools
            .values()
            .map(|p| {
                size_of::<Pool>()
                    + map(p.results.len(), size_of::<(u32, Value)>())
                    + p.results.values().map(value_heap_bytes).sum::<usize>()
            })
            .sum();
        let errors: usize = self
            .errors
            .iter()
            .map(|e| size_of::<RunError>() + s(&e.proc_id) + s(&e.message))
            .sum();
        size_of::<World>()
            + map(self.processes.len(), 32)
            + processes
            + map(self.channels.len(), 32)
            + channels
            + map(self.values.len(), 32)
            + values
            + map(self.globals.len(), size_of::<(String, Value)>() + 32)
            + private
            + locks
            + pools
            + self.merged_output.approx_bytes()
            + opt(&self.caption)
            + errors
            + opt(&self.deadlock)
    }

    /// Folds one event into the world.
    pub fn apply(&mut self, e: &Event) {
        self.events_applied += 1;
        self.first_t_ns = Some(self.first_t_ns.map_or(e.t_ns, |t| t.min(e.t_ns)));
        self.last_t_ns = self.last_t_ns.max(e.t_ns);
        let t_ns = e.t_ns;
        let me = e.proc_id.as_str();
        self.touch(e);
        if let Some(thread) = e.thread.as_deref()
            && self.on_thread_event(e, thread)
        {
            return;
        }
        // Locks are held by threads: a thread's lock events name it.
        let me_or_thread = e.thread.as_deref().unwrap_or(me);

        match &e.body {
            Body::Hello {
                ppid,
                role,
                parent,
                daemon,
                ns_pid,
                name,
                ..
            } => {
                self.on_hello(t_ns, me, *ppid, role, parent, *daemon, *ns_pid);
                if name.is_some() {
                    self.proc_mut(me, t_ns).name = name.clone();
                }
            }
            Body::Resource {
                res,
                name,
                value,
                size,
                ends,
                duplex,
            } => self.on_resource(*res, name, value, *size, ends, *duplex),
            Body::Spawn {
                child,
                child_pid,
                role,
                daemon,
            } => {
                self.on_spawn(t_ns, me, child, *child_pid, role, *daemon);
                // A bare `os.fork()` child starts where its parent forked
                // (until its own events say where it is).
                if role == "fork"
                    && let Some(line) = e.line
                {
                    let c = self.proc_mut(child, t_ns);
                    if c.line.is_none() {
                        c.line = Some(line);
                    }
                }
            }
            Body::ThreadStart { .. } | Body::ThreadEnd { .. } | Body::ThreadJoin { .. } => {}
            Body::Exec { program, args } => {
                let mut line = program.clone();
                for arg in args {
                    line.push(' ');
                    line.push_str(arg);
                }
                let p = self.proc_mut(me, t_ns);
                p.exec = Some(line);
                // exec replaces the memory image, Python's buffer with it.
                p.stdout_buffer.clear();
            }
            Body::Buffered { text, inherited } => {
                self.proc_mut(me, t_ns).stdout_buffer.push(text, *inherited);
            }
            Body::Flush { bytes } => self.proc_mut(me, t_ns).stdout_buffer.drain(*bytes),
            Body::Exit { code, signal } => self.on_exit(t_ns, me, *code, signal),
            Body::Reaped {
                by, code, signal, ..
            } => {
                let p = self.proc_mut(me, t_ns);
                p.state = ProcState::Reaped;
                // An orphan reaped by another than its parent was adopted
                // by it, whether or not its `adopted` came (the kernel
                // handed it over when its parent died).
                if p.orphaned && !p.adopted && p.parent.as_deref() != Some(by.as_str()) {
                    if p.original_parent.is_none() {
                        p.original_parent = p.parent.clone();
                    }
                    p.parent = Some(by.clone());
                    p.adopted = true;
                }
                p.reaped_by = Some(by.clone());
                p.pending = None;
                if p.exit.is_none() {
                    p.exit = Some(ExitStatus::from_parts(*code, signal));
                }
                self.leave_lock_lines(me);
            }
            Body::Adopted { by, new_ppid } => {
                let p = self.proc_mut(me, t_ns);
                if by != me {
                    if p.original_parent.is_none() {
                        p.original_parent = p.parent.clone();
                    }
                    p.parent = Some(by.clone());
                }
                p.ppid = *new_ppid;
                p.orphaned_t_ns.get_or_insert(t_ns);
                p.orphaned = true;
                p.adopted = true;
            }
            Body::Output { stream, text } => {
                let chunk = OutputChunk {
                    t_ns,
                    proc_id: me.to_string(),
                    stream: *stream,
                    text: text.clone(),
                };
                self.proc_mut(me, t_ns)
                    .output
                    .push(chunk.clone(), PROCESS_OUTPUT_BYTES_KEPT);
                self.merged_output.push(chunk, MERGED_OUTPUT_BYTES_KEPT);
            }
            Body::Send {
                channel,
                end,
                msg,
                value,
            } => self.on_send(t_ns, me, ChannelKind::Pipe, channel, Some(end), msg, value),
            Body::Put {
                channel,
                msg,
                value,
            } => {
                // A task queued (apply_async, map): the pool's tasks pipe.
                // (The stops `close` puts there, one per worker, are no
                // task.)
                if let Some(pool) = channel.strip_suffix(".tasks")
                    && !crate::protocol::is_pool_stop(pool, msg)
                    && let Some(p) = self.pools.get_mut(pool)
                {
                    p.tasks_queued += 1;
                }
                self.on_send(t_ns, me, ChannelKind::Queue, channel, None, msg, value)
            }
            Body::Recv {
                channel,
                msg,
                value,
                ..
            } => self.on_recv(t_ns, me, ChannelKind::Pipe, channel, msg, value),
            Body::Get {
                channel,
                msg,
                value,
            } => self.on_recv(t_ns, me, ChannelKind::Queue, channel, msg, value),
            Body::LockWait { lock } => {
                let me = me_or_thread;
                let l = self.lock_mut(lock);
                if l.holder.as_deref() != Some(me) && !l.waiters.iter().any(|w| w == me) {
                    l.waiters.push(me.to_string());
                }
                let me = e.proc_id.as_str();
                self.proc_mut(me, t_ns)
                    .set_activity(ProcState::Blocked(lock_label(lock)));
            }
            Body::LockAcquire { lock } => {
                let holder = me_or_thread;
                let l = self.lock_mut(lock);
                let waited = l.waiters.iter().any(|w| w == holder);
                l.waiters.retain(|w| w != holder);
                // A holder still set here means its release is late on
                // another socket; that release is then ignored below.
                l.holder = Some(holder.to_string());
                l.held_since_t_ns = Some(t_ns);
                l.acquire_count += 1;
                if waited {
                    l.contended_count += 1;
                }
                let waiting_for = ProcState::Blocked(lock_label(lock));
                self.proc_mut(me, t_ns).resume_if(|s| *s == waiting_for);
            }
            Body::LockRelease { lock } => {
                // A multiprocessing.Lock is a semaphore: any process may
                // release it (a lock chain hands turns on that way). The
                // collector sends events in time order, so a release never
                // arrives after the next acquire.
                let _ = me;
                let l = self.lock_mut(lock);
                l.holder = None;
                l.held_since_t_ns = None;
            }
            Body::Read {
                name,
                value,
                private,
            } => self.on_access(t_ns, me, name, value, *private, Access::Read),
            Body::Write {
                name,
                value,
                private,
            } => self.on_access(t_ns, me, name, value, *private, Access::Write),
            Body::TaskStart { pool, task, func } => {
                self.pool_mut(pool).tasks_started += 1;
                self.proc_mut(me, t_ns).task = Some(Task {
                    pool: pool.clone(),
                    task: *task,
                    func: func.clone(),
                    start_t_ns: t_ns,
                });
            }
            Body::TaskDone { pool, task, value } => {
                let p = self.pool_mut(pool);
                p.tasks_done += 1;
                p.results.insert(*task, value.clone());
                if p.results.len() > POOL_RESULTS_KEPT {
                    p.results.pop_first();
                }
                let worker = self.proc_mut(me, t_ns);
                if worker.task.as_ref().is_some_and(|t| t.task == *task) {
                    worker.task = None;
                }
            }
            Body::Signal { target, signal, .. } => {
                self.last_signal = Some(SignalSent {
                    t_ns,
                    from: me.to_string(),
                    to: target.clone(),
                    signal: signal.clone(),
                });
                if let Some(p) = self.processes.get_mut(target) {
                    p.last_signal = Some(signal.clone());
                    on_signal(p, signal);
                }
            }
            Body::Sleep { duration_ms } => {
                let p = self.proc_mut(me, t_ns);
                if p.is_alive() {
                    // `as` saturates: NaN and negatives become 0, huge values MAX.
                    let sleep_ns = (duration_ms * 1e6) as u64;
                    p.sleep_until_t_ns = Some(t_ns.saturating_add(sleep_ns));
                }
                p.set_activity(ProcState::Sleeping);
            }
            Body::Wake {} => {
                let p = self.proc_mut(me, t_ns);
                p.sleep_until_t_ns = None;
                p.resume_if(|s| *s == ProcState::Sleeping);
            }
            Body::Block { on } => self
                .proc_mut(me, t_ns)
                .set_activity(ProcState::Blocked(on.clone())),
            Body::Unblock { .. } => self
                .proc_mut(me, t_ns)
                .resume_if(|s| matches!(s, ProcState::Blocked(_))),
            Body::Narrate { text, .. } => {
                self.caption = Some(text.clone());
                self.caption_t_ns = t_ns;
            }
            Body::Sample {
                cpu_percent,
                rss_bytes,
            } => {
                let p = self.proc_mut(me, t_ns);
                p.cpu_percent = Some(*cpu_percent);
                p.rss_bytes = Some(*rss_bytes);
            }
            Body::Pending { action, .. } => self.proc_mut(me, t_ns).pending = Some(action.clone()),
            Body::Go {} => self.proc_mut(me, t_ns).pending = None,
            // Only the gatekeeper cares: nothing to show in the model.
            Body::Free {} => {}
            Body::Named { name } => self.proc_mut(me, t_ns).name = Some(name.clone()),
            // Shown in the log; what the callback does has events of its own.
            Body::Callback { .. } => {}
            Body::Race {
                name,
                read,
                replaced,
                written,
                lost,
            } => {
                let v = self
                    .values
                    .entry(name.clone())
                    .or_insert_with(|| SharedValue::new(name, replaced.clone(), false));
                // Marked at the write it comes from (the writer's latest).
                let at = v
                    .history
                    .iter()
                    .rev()
                    .find(|a| a.access == Access::Write && a.proc_id == me)
                    .map_or(t_ns, |a| a.t_ns);
                if v.lost_updates.len() >= LOST_UPDATES_KEPT {
                    v.lost_updates.pop_front();
                    v.lost_updates_trimmed += 1;
                }
                let lu = LostUpdate {
                    t_ns: at,
                    proc_id: me.to_string(),
                    read: read.clone(),
                    replaced: replaced.clone(),
                    written: written.clone(),
                    lost: lost.clone(),
                };
                v.updates_lost += lu.updates();
                v.lost_updates.push_back(lu);
            }
            Body::Deadlock { cycle } => self.deadlock = Some(cycle.clone()),
            Body::Error { message } if self.errors.len() < ERRORS_KEPT => {
                self.errors.push(RunError {
                    t_ns,
                    proc_id: me.to_string(),
                    message: message.clone(),
                })
            }
            Body::Error { .. } => self.errors_trimmed += 1,
            Body::Poll { .. } => {}
        }
    }

    /// Every event is about its sender: make sure it exists and note its
    /// pid, time and source line.
    /// An event of a thread (not the main one): its own state. True when
    /// the event is about that thread alone (sleep, wake, start, end), so
    /// the process's state stays as its main thread left it.
    fn on_thread_event(&mut self, e: &Event, thread: &str) -> bool {
        let tid = e.tid.unwrap_or(0);
        let t_ns = e.t_ns;
        let known = self
            .processes
            .get(&e.proc_id)
            .is_some_and(|p| p.thread(thread).is_some());
        if !known {
            self.next_spawn_order += 1;
        }
        let order = self.next_spawn_order;
        let p = self.proc_mut(&e.proc_id, t_ns);
        let t = p.thread_mut(thread, tid);
        if !known {
            t.spawn_order = order;
        }
        if let Some(line) = e.line {
            t.line = Some(line);
        }
        if tid > 0 {
            t.tid = tid;
        }
        match &e.body {
            Body::ThreadStart { role, daemon } => {
                t.role = role.clone();
                t.daemon = *daemon;
                t.state = ProcState::Running;
                true
            }
            Body::ThreadEnd { .. } => {
                t.done = true;
                t.pending = None;
                t.state = ProcState::Reaped;
                true
            }
            Body::Sleep { .. } => {
                t.state = ProcState::Sleeping;
                true
            }
            Body::Wake {} | Body::Unblock { .. } => {
                t.state = ProcState::Running;
                true
            }
            Body::Block { on } => {
                t.state = ProcState::Blocked(on.clone());
                true
            }
            Body::LockWait { lock } => {
                t.state = ProcState::Blocked(lock_label(lock));
                let l = self.lock_mut(lock);
                if l.holder.as_deref() != Some(thread) && !l.waiters.iter().any(|w| w == thread) {
                    l.waiters.push(thread.to_string());
                }
                true
            }
            Body::LockAcquire { .. } => {
                t.state = ProcState::Running;
                false
            }
            Body::Pending { action, .. } => {
                t.pending = Some(action.clone());
                true
            }
            Body::Go {} => {
                t.pending = None;
                true
            }
            _ => false,
        }
    }

    fn touch(&mut self, e: &Event) {
        let p = self.proc_mut(&e.proc_id, e.t_ns);
        if e.pid > 0 && !matches!(e.body, Body::Reaped { .. }) {
            p.pid = e.pid;
        }
        p.first_t_ns = p.first_t_ns.min(e.t_ns);
        p.last_t_ns = p.last_t_ns.max(e.t_ns);
        // A thread's line is its own (see `on_thread_event`): the
        // process's is its main thread's.
        if let Some(line) = e.line
            && e.thread.is_none()
        {
            p.line = Some(line);
        }
    }

    fn proc_mut(&mut self, id: &str, t_ns: u64) -> &mut Process {
        let order = &mut self.next_spawn_order;
        self.processes.get_or_insert_with(id, || {
            *order += 1;
            Process::new(id, t_ns, *order)
        })
    }

    fn lock_mut(&mut self, name: &str) -> &mut Lock {
        self.locks.entry(name.to_string()).or_insert_with(|| Lock {
            name: name.to_string(),
            ..Lock::default()
        })
    }

    fn pool_mut(&mut self, name: &str) -> &mut Pool {
        self.pools.entry(name.to_string()).or_insert_with(|| Pool {
            name: name.to_string(),
            ..Pool::default()
        })
    }

    fn channel_mut(&mut self, name: &str, kind: ChannelKind) -> &mut Channel {
        self.channels
            .entry(name.to_string())
            .or_insert_with(|| Channel::new(name, kind))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_hello(
        &mut self,
        t_ns: u64,
        me: &str,
        ppid: i32,
        role: &str,
        parent: &Option<String>,
        daemon: bool,
        ns_pid: Option<i32>,
    ) {
        let p = self.proc_mut(me, t_ns);
        p.hello_seen = true;
        p.ppid = ppid;
        p.ns_pid = ns_pid;
        p.daemon |= daemon;
        if !role.is_empty() {
            p.role = role.to_string();
        }
        // The parent's `spawn` (or an adoption) may already have said more.
        if p.parent.is_none() && !p.adopted && parent.as_deref() != Some(me) {
            p.parent = parent.clone();
        }
        if p.original_parent.is_none() {
            p.original_parent = parent.clone();
        }
    }

    fn on_resource(
        &mut self,
        res: ResourceKind,
        name: &str,
        value: &Option<Value>,
        size: Option<u32>,
        ends: &[String],
        duplex: bool,
    ) {
        let initial = value.clone().unwrap_or_default();
        match res {
            ResourceKind::Value | ResourceKind::Array => {
                let mut v = SharedValue::new(name, initial.clone(), res == ResourceKind::Array);
                v.record(0, "", &initial, Access::Initial);
                self.values.insert(name.to_string(), v);
            }
            ResourceKind::Lock => {
                self.lock_mut(name);
            }
            ResourceKind::Pipe | ResourceKind::Queue => {
                let kind = if res == ResourceKind::Pipe {
                    ChannelKind::Pipe
                } else {
                    ChannelKind::Queue
                };
                let c = self.channel_mut(name, kind);
                c.kind = kind;
                c.ends = ends.to_vec();
                c.duplex = duplex;
                c.maxsize = size.filter(|s| *s > 0);
            }
            ResourceKind::Pool => self.pool_mut(name).size = size.unwrap_or(0),
            ResourceKind::Global => {
                self.globals.insert(name.to_string(), initial);
            }
        }
    }

    fn on_spawn(
        &mut self,
        t_ns: u64,
        parent: &str,
        child: &str,
        child_pid: i32,
        role: &str,
        daemon: bool,
    ) {
        if child == parent {
            return;
        }
        let parent_pid = self.proc_mut(parent, t_ns).pid;
        let fresh = !self.processes.contains_key(child);
        let c = self.proc_mut(child, t_ns);
        if child_pid > 0 {
            c.pid = child_pid;
        }
        c.ppid = parent_pid;
        c.role = role.to_string();
        c.daemon |= daemon;
        if !c.adopted {
            c.parent = Some(parent.to_string());
        }
        if c.original_parent.is_none() {
            c.original_parent = Some(parent.to_string());
        }
        // fork copies memory: the child starts with the parent's private
        // globals as they are now (unless the child already spoke).
        if fresh {
            let inherited: Vec<((String, String), Value)> = self
                .private_values
                .iter()
                .filter(|((owner, _), _)| owner == parent)
                .map(|((_, name), v)| ((child.to_string(), name.clone()), v.clone()))
                .collect();
            self.private_values.extend(inherited);
        }
    }

    fn on_exit(&mut self, t_ns: u64, me: &str, code: Option<i32>, signal: &Option<String>) {
        let p = self.proc_mut(me, t_ns);
        p.exit = Some(ExitStatus::from_parts(code, signal));
        if p.state != ProcState::Reaped {
            p.state = ProcState::Zombie;
        }
        p.pending = None;
        p.sleep_until_t_ns = None;
        let program = p.exec.is_some();
        self.leave_lock_lines(me);
        // A program's stdin (`communicate(input)`): the program says
        // nothing, so its input counts as taken when it exits (read, or
        // thrown away with the pipe): it no longer waits anywhere.
        if program {
            let stdin = format!("{me}.stdin");
            let waiting: Vec<(String, Value)> = self
                .channels
                .get(&stdin)
                .map(|c| {
                    c.in_flight
                        .iter()
                        .map(|m| (m.msg.clone(), m.value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            for (msg, value) in waiting {
                self.on_recv(t_ns, me, ChannelKind::Pipe, &stdin, &msg, &value);
            }
        }
        // The kernel reparents the children at once; `adopted` names the
        // new parent when it arrives. Only a child still alive is an
        // orphan: one that ended first (a zombie not reaped yet) is handed
        // over too, but it never outlived its parent.
        for child in self.processes.values_mut() {
            if child.parent.as_deref() == Some(me)
                && child.state != ProcState::Reaped
                && child.exit.is_none()
            {
                child.orphaned_t_ns.get_or_insert(t_ns);
                child.orphaned = true;
            }
        }
    }

    /// A dead process waits for nothing (but keeps what it holds).
    fn leave_lock_lines(&mut self, me: &str) {
        for lock in self.locks.values_mut() {
            lock.waiters.retain(|w| w != me);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_send(
        &mut self,
        t_ns: u64,
        me: &str,
        kind: ChannelKind,
        channel: &str,
        end: Option<&String>,
        msg: &str,
        value: &Value,
    ) {
        let c = self.channel_mut(channel, kind);
        c.sent_total += 1;
        if let Some(i) = c.early_receives.iter().position(|m| m == msg) {
            c.early_receives.remove(i);
            return;
        }
        if c.in_flight.len() >= IN_FLIGHT_KEPT {
            c.in_flight.drain(..IN_FLIGHT_KEPT / 4);
        }
        c.in_flight.push(Message {
            msg: msg.to_string(),
            from: me.to_string(),
            end: end.cloned(),
            value: value.clone(),
            t_ns,
        });
    }

    fn on_recv(
        &mut self,
        t_ns: u64,
        me: &str,
        kind: ChannelKind,
        channel: &str,
        msg: &str,
        value: &Value,
    ) {
        let c = self.channel_mut(channel, kind);
        c.received_total += 1;
        let sent = match c.in_flight.iter().position(|m| m.msg == msg) {
            Some(i) => Some(c.in_flight.remove(i)),
            None => {
                if c.early_receives.len() >= EARLY_RECEIVES_KEPT {
                    c.early_receives.remove(0);
                }
                c.early_receives.push(msg.to_string());
                None
            }
        };
        if c.deliveries.len() >= DELIVERIES_KEPT {
            c.deliveries.pop_front();
        }
        c.deliveries.push_back(Delivery {
            msg: msg.to_string(),
            from: sent.as_ref().map(|m| m.from.clone()),
            to: me.to_string(),
            value: value.clone(),
            sent_t_ns: sent.map(|m| m.t_ns),
            recv_t_ns: t_ns,
        });
    }

    fn on_access(
        &mut self,
        t_ns: u64,
        me: &str,
        name: &str,
        value: &Value,
        private: bool,
        access: Access,
    ) {
        if private {
            self.private_values
                .insert((me.to_string(), name.to_string()), value.clone());
            return;
        }
        // `arr[3]` is one element of the shared array `arr`.
        let element = split_index(name).filter(|(base, _)| {
            self.values
                .get(*base)
                .is_some_and(|v| matches!(v.current, Value::List(_)))
        });
        let key = element.map_or(name, |(base, _)| base);
        // Looked up without making its key each time (a flood writes one
        // value 200 000 times).
        if !self.values.contains_key(key) {
            self.values
                .insert(key.to_string(), SharedValue::new(key, value.clone(), false));
        }
        let Some(v) = self.values.get_mut(key) else {
            return;
        };
        v.record(t_ns, me, value, access);
        match access {
            Access::Read => {
                v.reads += 1;
                // The runner reads every shared value once all processes
                // are gone: that is what memory holds, whatever order the
                // write events came in.
                if me == RUNNER_ID && element.is_none() {
                    v.current = value.clone();
                }
            }
            Access::Write => {
                v.writes += 1;
                match (element, &mut v.current) {
                    (Some((_, i)), Value::List(items)) => {
                        if let Some(slot) = items.get_mut(i) {
                            *slot = value.clone();
                        }
                    }
                    _ => v.current = value.clone(),
                }
            }
            Access::Initial => {}
        }
    }
}

/// `SIGSTOP` freezes a process until `SIGCONT`; other signals show up as
/// an `exit` (or nothing) from the target itself.
fn on_signal(p: &mut Process, signal: &str) {
    match signal {
        "SIGSTOP" | "SIGTSTP" | "SIGTTIN" | "SIGTTOU"
            if p.is_alive() && p.state != ProcState::Stopped =>
        {
            p.resume_state = std::mem::take(&mut p.state);
            p.state = ProcState::Stopped;
        }
        "SIGCONT" if p.state == ProcState::Stopped => {
            p.state = std::mem::take(&mut p.resume_state);
        }
        _ => {}
    }
}

/// What a process waiting for lock `name` is blocked on.
fn lock_label(name: &str) -> String {
    format!("lock {name}")
}

/// `"arr[3]"` → `("arr", 3)`.
fn split_index(name: &str) -> Option<(&str, usize)> {
    let inner = name.strip_suffix(']')?;
    let (base, index) = inner.split_once('[')?;
    Some((base, index.parse().ok()?))
}

#[cfg(test)]
mod by_tree_tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `processes_by_tree` as it was written first (maps of strings): the
    /// reference the faster one must agree with.
    fn by_tree_reference(w: &World) -> Vec<(usize, String)> {
        let mut kids: BTreeMap<&str, Vec<&Process>> = BTreeMap::new();
        let mut roots: Vec<&Process> = Vec::new();
        for p in w.processes.values() {
            match p.parent.as_deref() {
                Some(parent) if parent != p.id && w.processes.contains_key(parent) => {
                    kids.entry(parent).or_default().push(p)
                }
                _ => roots.push(p),
            }
        }
        for list in kids.values_mut() {
            list.sort_by_key(|p| p.spawn_order);
        }
        roots.sort_by_key(|p| p.spawn_order);
        let mut by_order: Vec<&Process> = w.processes.values().collect();
        by_order.sort_by_key(|p| p.spawn_order);
        let mut rows = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for start in roots.into_iter().chain(by_order) {
            let mut stack = vec![(0_usize, start)];
            while let Some((depth, p)) = stack.pop() {
                if !seen.insert(p.id.as_str()) {
                    continue;
                }
                rows.push((depth, p.id.clone()));
                if let Some(list) = kids.get(p.id.as_str()) {
                    stack.extend(list.iter().rev().map(|c| (depth + 1, *c)));
                }
            }
        }
        rows
    }

    #[test]
    fn the_tree_order_is_the_reference_one_with_cycles_and_unknown_parents() {
        let mut state = 7u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            let n = next(40) + 1;
            let mut w = World::default();
            for i in 0..n {
                let id = format!("p{i}");
                // Spawn orders tie now and then: siblings keep id order.
                let mut p = Process::new(&id, 0, next(n));
                p.parent = match next(5) {
                    0 => None,
                    1 => Some("nobody".to_string()),
                    2 => Some(id.clone()),
                    _ => Some(format!("p{}", next(n))),
                };
                w.processes.get_or_insert_with(&id, || p);
            }
            let rows: Vec<(usize, String)> = w
                .processes_by_tree()
                .iter()
                .map(|r| (r.depth, r.process.id.clone()))
                .collect();
            assert_eq!(rows, by_tree_reference(&w));
        }
    }
}
