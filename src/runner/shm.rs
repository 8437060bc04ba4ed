//! Everything the scenario's processes really share, set up by the runner
//! before it forks `main`: one `MAP_SHARED` mapping of a memfd (inherited by
//! every fork at the same address; a `spawn`ed child, a fresh `exec` of our
//! binary, maps the same memfd again: everything in it is found by offset)
//! holding shared values and arrays, the
//! process-shared semaphores that are the locks and the queues' free-slot
//! counts, and the table of processes (for the process limit and for the
//! runner to name the orphans it reaps).

use super::RunError;
use crate::protocol::Value;
use crate::scenario::{ElemKind, Scenario};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicU64, Ordering};

/// Bytes a shared string (a `c_char` array) can hold.
pub const STR_CAPACITY: usize = 256;
/// Bytes of a logical id in the process table.
const ID_BYTES: usize = 56;

/// Where a shared value lives and how to read it.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Int(usize),
    Float(usize),
    Bool(usize),
    /// Length word, then `STR_CAPACITY` bytes.
    Str(usize),
    Array {
        kind: ElemKind,
        offset: usize,
        len: usize,
    },
}

/// One row of the process table.
#[repr(C)]
struct ProcEntry {
    ns_pid: AtomicI32,
    pid: AtomicI32,
    /// Set just before the process calls `_exit`.
    exiting: AtomicI32,
    id: [AtomicU8; ID_BYTES],
}

pub struct Shm {
    base: NonNull<u8>,
    /// The memfd behind the mapping (close-on-exec; handed to a `spawn`ed
    /// child on purpose).
    fd: OwnedFd,
    len: usize,
    slots: BTreeMap<String, Slot>,
    sems: BTreeMap<String, usize>,
    depth: BTreeMap<String, usize>,
    procs_offset: usize,
    procs_cap: usize,
    counter_offset: usize,
}

struct Layout {
    len: usize,
}

impl Layout {
    fn take(&mut self, bytes: usize, align: usize) -> usize {
        let at = self.len.div_ceil(align) * align;
        self.len = at + bytes;
        at
    }
}

impl Shm {
    /// Lays out and initializes the shared mapping for a scenario.
    pub fn create(scenario: &Scenario, max_procs: u32) -> Result<Shm, RunError> {
        let fd =
            nix::sys::memfd::memfd_create(c"forkscope-shm", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(|e| RunError(format!("cannot create shared memory: {e}")))?;
        let shm = Shm::map(scenario, max_procs, fd, true)?;
        for (name, v) in &scenario.values {
            shm.store(name, None, v)?;
        }
        for (name, a) in &scenario.arrays {
            shm.store(name, None, &a.init)?;
        }
        for (name, &offset) in &shm.sems {
            let initial = match name.strip_prefix("queue:") {
                Some(q) => scenario.queues.get(q).copied().unwrap_or(0),
                None => 1,
            };
            // SAFETY: `offset` was laid out for a sem_t inside the mapping,
            // suitably aligned; pshared = 1 because processes share it.
            let rc = unsafe { libc::sem_init(shm.sem_ptr(offset), 1, initial) };
            if rc != 0 {
                return Err(RunError(format!("cannot create semaphore {name}")));
            }
        }
        Ok(shm)
    }

    /// In a `spawn`ed child (a fresh `exec`): maps the run's shared memory
    /// again from the memfd its parent handed over. The layout follows from
    /// the scenario and the process limit alone, as in [`Shm::create`];
    /// nothing is initialized again.
    pub fn attach(scenario: &Scenario, max_procs: u32, fd: OwnedFd) -> Result<Shm, RunError> {
        Shm::map(scenario, max_procs, fd, false)
    }

    /// The memfd's number, to hand to a `spawn`ed child.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn map(scenario: &Scenario, max_procs: u32, fd: OwnedFd, fresh: bool) -> Result<Shm, RunError> {
        let mut lay = Layout { len: 0 };
        let counter_offset = lay.take(8, 8);
        let procs_cap = max_procs as usize + 1;
        let procs_offset = lay.take(procs_cap * std::mem::size_of::<ProcEntry>(), 8);
        let mut slots = BTreeMap::new();
        for (name, v) in &scenario.values {
            let slot = match v {
                Value::Int(_) => Slot::Int(lay.take(8, 8)),
                Value::Float(_) => Slot::Float(lay.take(8, 8)),
                Value::Bool(_) => Slot::Bool(lay.take(8, 8)),
                _ => Slot::Str(lay.take(8 + STR_CAPACITY, 8)),
            };
            slots.insert(name.clone(), slot);
        }
        for (name, a) in &scenario.arrays {
            let slot = match (a.kind, &a.init) {
                (ElemKind::Char, _) => Slot::Str(lay.take(8 + STR_CAPACITY, 8)),
                (kind, Value::List(items)) => {
                    let words = items.len() * if kind == ElemKind::Point { 2 } else { 1 };
                    Slot::Array {
                        kind,
                        offset: lay.take(words * 8, 8),
                        len: items.len(),
                    }
                }
                _ => continue,
            };
            slots.insert(name.clone(), slot);
        }
        let sem_size = std::mem::size_of::<libc::sem_t>();
        let mut sems = BTreeMap::new();
        for l in &scenario.locks {
            sems.insert(l.clone(), lay.take(sem_size, 16));
        }
        let mut depth = BTreeMap::new();
        for (q, maxsize) in &scenario.queues {
            if *maxsize > 0 {
                sems.insert(format!("queue:{q}"), lay.take(sem_size, 16));
            }
            depth.insert(q.clone(), lay.take(8, 8));
        }
        let len = lay.len.max(8);
        if fresh {
            nix::unistd::ftruncate(&fd, len as i64)
                .map_err(|e| RunError(format!("cannot size shared memory: {e}")))?;
        } else {
            let size = nix::sys::stat::fstat(&fd)
                .map_err(|e| RunError(format!("cannot see the shared memory: {e}")))?
                .st_size;
            if size < len as i64 {
                return Err(RunError(format!(
                    "the shared memory handed over holds {size} bytes, not {len}"
                )));
            }
        }
        // SAFETY: a new mapping of our own memfd, at an address the kernel
        // picks; no existing memory is touched. The file is at least `len`
        // bytes (sized above or checked), so every access is backed.
        let base = unsafe {
            mmap(
                None,
                NonZeroUsize::new(len).unwrap_or(NonZeroUsize::MIN),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| RunError(format!("cannot map shared memory: {e}")))?;
        Ok(Shm {
            base: base.cast(),
            fd,
            len,
            slots,
            sems,
            depth,
            procs_offset,
            procs_cap,
            counter_offset,
        })
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: offset is inside the mapping (laid out above), 8-aligned,
        // and the mapping lives as long as the process; shared words are
        // only ever accessed atomically.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicU64) }
    }

    fn byte(&self, offset: usize) -> &AtomicU8 {
        debug_assert!(offset < self.len);
        // SAFETY: as in `word`; bytes need no alignment.
        unsafe { &*(self.base.as_ptr().add(offset) as *const AtomicU8) }
    }

    fn sem_ptr(&self, offset: usize) -> *mut libc::sem_t {
        // SAFETY: offset is inside the mapping and aligned for sem_t.
        unsafe { self.base.as_ptr().add(offset) as *mut libc::sem_t }
    }

    pub fn is_shared(&self, name: &str) -> bool {
        self.slots.contains_key(name)
    }

    /// A real read of shared memory.
    pub fn load(&self, name: &str) -> Option<Value> {
        let slot = *self.slots.get(name)?;
        Some(match slot {
            Slot::Int(o) => Value::Int(self.word(o).load(Ordering::SeqCst) as i64),
            Slot::Float(o) => Value::Float(f64::from_bits(self.word(o).load(Ordering::SeqCst))),
            Slot::Bool(o) => Value::Bool(self.word(o).load(Ordering::SeqCst) != 0),
            Slot::Str(o) => {
                let n = (self.word(o).load(Ordering::SeqCst) as usize).min(STR_CAPACITY);
                let bytes: Vec<u8> = (0..n)
                    .map(|i| self.byte(o + 8 + i).load(Ordering::SeqCst))
                    .collect();
                Value::Str(String::from_utf8_lossy(&bytes).into_owned())
            }
            Slot::Array { kind, offset, len } => {
                Value::List((0..len).map(|i| self.load_elem(kind, offset, i)).collect())
            }
        })
    }

    fn load_elem(&self, kind: ElemKind, offset: usize, i: usize) -> Value {
        let w = |k: usize| self.word(offset + k * 8).load(Ordering::SeqCst);
        match kind {
            ElemKind::Int => Value::Int(w(i) as i64),
            ElemKind::Point => Value::List(vec![
                Value::Float(f64::from_bits(w(2 * i))),
                Value::Float(f64::from_bits(w(2 * i + 1))),
            ]),
            _ => Value::Float(f64::from_bits(w(i))),
        }
    }

    /// A real write of shared memory: the whole value, or one element.
    pub fn store(&self, name: &str, index: Option<i64>, v: &Value) -> Result<(), RunError> {
        let slot = *self
            .slots
            .get(name)
            .ok_or_else(|| RunError(format!("{name} is not a shared value")))?;
        let mismatch = || {
            RunError(format!(
                "cannot store a {} ({v}) in shared {name}",
                v.type_name()
            ))
        };
        match (slot, index) {
            (Slot::Int(o), None) => {
                let i = v.as_i64().ok_or_else(mismatch)?;
                self.word(o).store(i as u64, Ordering::SeqCst);
            }
            (Slot::Float(o), None) => {
                let f = v.as_f64().ok_or_else(mismatch)?;
                self.word(o).store(f.to_bits(), Ordering::SeqCst);
            }
            (Slot::Bool(o), None) => {
                self.word(o).store(u64::from(v.truthy()), Ordering::SeqCst);
            }
            (Slot::Str(o), None) => {
                let Value::Str(s) = v else {
                    return Err(mismatch());
                };
                let bytes = s.as_bytes();
                if bytes.len() > STR_CAPACITY {
                    return Err(RunError(format!(
                        "shared {name} holds at most {STR_CAPACITY} bytes"
                    )));
                }
                for (i, b) in bytes.iter().enumerate() {
                    self.byte(o + 8 + i).store(*b, Ordering::SeqCst);
                }
                self.word(o).store(bytes.len() as u64, Ordering::SeqCst);
            }
            (Slot::Array { kind, offset, len }, None) => {
                let Value::List(items) = v else {
                    return Err(mismatch());
                };
                if items.len() != len {
                    return Err(RunError(format!(
                        "shared array {name} has {len} elements, not {}",
                        items.len()
                    )));
                }
                for (i, item) in items.iter().enumerate() {
                    self.store_elem(name, kind, offset, i, item)?;
                }
            }
            (Slot::Array { kind, offset, len }, Some(i)) => {
                let j = if i < 0 { i + len as i64 } else { i };
                if j < 0 || j >= len as i64 {
                    return Err(RunError(format!(
                        "index {i} is outside shared array {name} (length {len})"
                    )));
                }
                self.store_elem(name, kind, offset, j as usize, v)?;
            }
            (_, Some(_)) => return Err(RunError(format!("{name} is not an array"))),
        }
        Ok(())
    }

    /// Writes a one-word value (int, float, bool) as one atomic exchange and
    /// returns the value it replaced: what was really there the instant
    /// this write landed. `None` for values that are not one word (strings,
    /// arrays), which are stored as by [`Shm::store`].
    pub fn exchange(&self, name: &str, v: &Value) -> Result<Option<Value>, RunError> {
        let slot = *self
            .slots
            .get(name)
            .ok_or_else(|| RunError(format!("{name} is not a shared value")))?;
        let mismatch = || {
            RunError(format!(
                "cannot store a {} ({v}) in shared {name}",
                v.type_name()
            ))
        };
        Ok(Some(match slot {
            Slot::Int(o) => {
                let i = v.as_i64().ok_or_else(mismatch)?;
                Value::Int(self.word(o).swap(i as u64, Ordering::SeqCst) as i64)
            }
            Slot::Float(o) => {
                let f = v.as_f64().ok_or_else(mismatch)?;
                Value::Float(f64::from_bits(
                    self.word(o).swap(f.to_bits(), Ordering::SeqCst),
                ))
            }
            Slot::Bool(o) => {
                Value::Bool(self.word(o).swap(u64::from(v.truthy()), Ordering::SeqCst) != 0)
            }
            Slot::Str(_) | Slot::Array { .. } => {
                self.store(name, None, v)?;
                return Ok(None);
            }
        }))
    }

    fn store_elem(
        &self,
        name: &str,
        kind: ElemKind,
        offset: usize,
        i: usize,
        v: &Value,
    ) -> Result<(), RunError> {
        let bad = || RunError(format!("cannot store {v} in an element of {name}"));
        let put = |k: usize, bits: u64| self.word(offset + k * 8).store(bits, Ordering::SeqCst);
        match kind {
            ElemKind::Int => put(i, v.as_i64().ok_or_else(bad)? as u64),
            ElemKind::Point => {
                let Value::List(p) = v else { return Err(bad()) };
                let (Some(x), Some(y)) = (
                    p.first().and_then(Value::as_f64),
                    p.get(1).and_then(Value::as_f64),
                ) else {
                    return Err(bad());
                };
                put(2 * i, x.to_bits());
                put(2 * i + 1, y.to_bits());
            }
            _ => put(i, v.as_f64().ok_or_else(bad)?.to_bits()),
        }
        Ok(())
    }

    fn sem(&self, name: &str) -> Result<*mut libc::sem_t, RunError> {
        self.sems
            .get(name)
            .map(|&o| self.sem_ptr(o))
            .ok_or_else(|| RunError(format!("no semaphore {name}")))
    }

    /// Takes the semaphore if it is free right now.
    pub fn sem_try(&self, name: &str) -> Result<bool, RunError> {
        let s = self.sem(name)?;
        // SAFETY: `s` points at a sem_t initialized in `create`.
        Ok(unsafe { libc::sem_trywait(s) } == 0)
    }

    /// Blocks until the semaphore can be taken (really: the kernel parks us).
    pub fn sem_wait(&self, name: &str) -> Result<(), RunError> {
        let s = self.sem(name)?;
        loop {
            // SAFETY: as in `sem_try`.
            if unsafe { libc::sem_wait(s) } == 0 {
                return Ok(());
            }
            if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
                return Err(RunError(format!("waiting for {name} failed")));
            }
        }
    }

    pub fn sem_post(&self, name: &str) -> Result<(), RunError> {
        let s = self.sem(name)?;
        // SAFETY: as in `sem_try`.
        if unsafe { libc::sem_post(s) } != 0 {
            return Err(RunError(format!("releasing {name} failed")));
        }
        Ok(())
    }

    pub fn has_sem(&self, name: &str) -> bool {
        self.sems.contains_key(name)
    }

    /// Adds to a queue's item count; returns the new count.
    pub fn queue_depth_add(&self, queue: &str, delta: i64) -> i64 {
        match self.depth.get(queue) {
            Some(&o) => {
                // SAFETY: an 8-aligned word inside the mapping, only used atomically.
                let a = unsafe { &*(self.base.as_ptr().add(o) as *const AtomicI64) };
                a.fetch_add(delta, Ordering::SeqCst) + delta
            }
            None => 0,
        }
    }

    /// Counts one more process; false when that would pass the limit.
    pub fn claim_process(&self, max_procs: u32) -> Option<usize> {
        let c = self.word(self.counter_offset);
        let n = c.fetch_add(1, Ordering::SeqCst) as usize;
        if n >= max_procs as usize || n >= self.procs_cap {
            c.fetch_sub(1, Ordering::SeqCst);
            None
        } else {
            Some(n)
        }
    }

    fn entry(&self, slot: usize) -> &ProcEntry {
        let offset = self.procs_offset + slot * std::mem::size_of::<ProcEntry>();
        // SAFETY: slot < procs_cap (checked by callers), so the entry lies
        // inside the mapping; ProcEntry is all atomics, 4-aligned.
        unsafe { &*(self.base.as_ptr().add(offset) as *const ProcEntry) }
    }

    /// Records who a process is, so the runner can name it when it reaps it.
    pub fn register(&self, slot: usize, ns_pid: i32, pid: i32, id: &str) {
        if slot >= self.procs_cap {
            return;
        }
        let e = self.entry(slot);
        let bytes = id.as_bytes();
        for (i, b) in e.id.iter().enumerate() {
            b.store(bytes.get(i).copied().unwrap_or(0), Ordering::SeqCst);
        }
        e.pid.store(pid, Ordering::SeqCst);
        e.exiting.store(0, Ordering::SeqCst);
        e.ns_pid.store(ns_pid, Ordering::SeqCst);
    }

    /// Says that the process in `slot` is about to exit.
    pub fn mark_exiting(&self, slot: usize) {
        if slot < self.procs_cap {
            self.entry(slot).exiting.store(1, Ordering::SeqCst);
        }
    }

    /// Has the process with this namespace pid said it is about to exit?
    pub fn is_exiting(&self, ns_pid: i32) -> bool {
        let used =
            (self.word(self.counter_offset).load(Ordering::SeqCst) as usize).min(self.procs_cap);
        (0..used)
            .rev()
            .map(|slot| self.entry(slot))
            .find(|e| e.ns_pid.load(Ordering::SeqCst) == ns_pid)
            .is_some_and(|e| e.exiting.load(Ordering::SeqCst) != 0)
    }

    /// The logical id and host pid of a process by its pid in our namespace
    /// (newest entry first: pids can be reused).
    pub fn lookup(&self, ns_pid: i32) -> Option<(String, i32)> {
        let used =
            (self.word(self.counter_offset).load(Ordering::SeqCst) as usize).min(self.procs_cap);
        (0..used).rev().find_map(|slot| {
            let e = self.entry(slot);
            (e.ns_pid.load(Ordering::SeqCst) == ns_pid).then(|| {
                let bytes: Vec<u8> =
                    e.id.iter()
                        .map(|b| b.load(Ordering::SeqCst))
                        .take_while(|&b| b != 0)
                        .collect();
                (
                    String::from_utf8_lossy(&bytes).into_owned(),
                    e.pid.load(Ordering::SeqCst),
                )
            })
        })
    }
}
