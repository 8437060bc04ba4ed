//! Threads: `threading.Thread` as a real thread (a pthread, listed in
//! `/proc/PID/task`) of the scenario process. A thread runs its role's
//! steps with its own locals; the process's globals live in one block of
//! the process's memory that all its threads read and write (a `Mutex`
//! makes each single read or write whole, as CPython's GIL does for one
//! bytecode, and nothing more: an `add` is a read, then a write, and
//! another thread can write in between). A write based on a read learns
//! what it replaced, so a lost update is reported exactly (`race`), as for
//! shared memory between processes.
//!
//! A process that has started a thread never forks again (the scenario
//! check refuses it), so the runner's "fork only while single-threaded"
//! rule still holds for every fork.

use super::*;
use crate::probe::gettid;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The globals of a process with threads, shared by all of them.
pub(super) type Globals = Arc<Mutex<BTreeMap<String, Value>>>;

/// What the threads of a process share besides its globals.
#[derive(Default)]
pub(super) struct ProcShared {
    /// The thread locks (`threading.Lock`) held now, by name: a lock in
    /// this process's memory; `acquire` really waits on a condition
    /// variable while another thread holds it.
    held: Mutex<BTreeSet<String>>,
    released: Condvar,
    /// Threads started in this process so far (`Thread-N`).
    started: AtomicU32,
    /// Threads of this process running now (all of them: a thread's
    /// threads count too, so a role that starts itself cannot run away).
    live: AtomicU32,
}

/// Most threads one process may run at once (its main thread aside).
pub const MAX_THREADS: u32 = 256;

/// A thread this process (or thread) started.
pub(super) struct ThreadChild {
    name: String,
    handle: Option<JoinHandle<()>>,
    daemon: bool,
    /// Set by the thread just before it says `thread_end`: a gated join
    /// that comes after that event always finds it set (the kernel's end
    /// of the thread comes a few microseconds later, and `join` waits for
    /// that).
    ended: Arc<AtomicBool>,
}

/// The run, handed to a new thread.
///
/// `Run` is not `Sync` (a pipe end keeps its fd in a `RefCell`), so it may
/// not cross to another thread by itself. It is sound here because:
/// - it outlives every thread: it lives in the runner core's frame, which a
///   scenario process never returns to (its main thread ends in `finish` or
///   `exit_at_once`, which `_exit`, ending every thread at once; a panic in
///   a step is caught in `steps_guarded`);
/// - a thread uses only the parts that are safe to share: the spec, the
///   scenario and the params (never written after the fork that made the
///   process), and `Shm`, whose values and semaphores are atomics and
///   futexes in shared memory, made for several processes at once and so
///   for several threads. The scenario check refuses, in a thread's role,
///   every step that touches a pipe end (`send`, `recv`, `poll`, `close`)
///   or a queue, pool or child process.
struct RunRef(*const Run);

// SAFETY: see `RunRef`: the pointee outlives the thread and the thread
// touches only its immutable and atomic parts.
unsafe impl Send for RunRef {}

impl RunRef {
    /// A method, so the closure captures the whole `RunRef` (which is
    /// `Send`), not its raw-pointer field.
    fn get(self) -> &'static Run {
        // SAFETY: see `RunRef`: the run lives until the process `_exit`s.
        unsafe { &*self.0 }
    }
}

/// Locks the globals; a thread that panicked while holding them left a
/// whole map (every write is one `insert`), so it is used as it is.
pub(super) fn globals(g: &Globals) -> MutexGuard<'_, BTreeMap<String, Value>> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'r> Proc<'r> {
    /// The globals as memory shared by this process's threads: created
    /// from this thread's own copy when the first thread starts.
    fn share_globals(&mut self) -> Globals {
        if let Some(g) = &self.globals {
            return Arc::clone(g);
        }
        let mut shared = BTreeMap::new();
        for name in self.run.scenario.globals.keys() {
            if let Some(v) = self.vars.remove(name) {
                shared.insert(name.clone(), v);
            }
        }
        let g = Arc::new(Mutex::new(shared));
        self.globals = Some(Arc::clone(&g));
        g
    }

    /// `threading.Thread(target=role, args=..., daemon=...).start()`.
    pub(super) fn start_thread(
        &mut self,
        role: &str,
        handle: Option<&str>,
        py_name: Option<&str>,
        args: Vec<(String, Value)>,
        daemon: bool,
    ) -> Result<(), RunError> {
        // Counted before the thread exists, given back when it ends.
        if self.shared.live.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
            self.shared.live.fetch_sub(1, Ordering::AcqRel);
            return Err(RunError(format!(
                "a process may run at most {MAX_THREADS} threads at once"
            )));
        }
        let globals = self.share_globals();
        let base = self
            .probe
            .thread_name()
            .unwrap_or(&self.probe.id)
            .to_string();
        let name = format!("{base}.t{}", self.threads.len() + 1);
        let template = self.probe.for_thread(&name, 0);
        // CPython numbers every Thread it makes, named or not.
        let n = self.shared.started.fetch_add(1, Ordering::Relaxed) + 1;
        let py_name = py_name.map_or_else(|| format!("Thread-{n} ({role})"), str::to_string);
        let shared = Arc::clone(&self.shared);
        let ended = Arc::new(AtomicBool::new(false));
        let ended_in_thread = Arc::clone(&ended);
        let stdout = self.stdout.share();
        let slot = self.slot();
        let run = RunRef(self.run as *const Run);
        let role_name = role.to_string();
        let thread_name = name.clone();
        // The new thread tells its tid, then waits until this one has said
        // `thread_start` for it: that comes before anything the thread says.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel::<i32>();
        let (start_tx, start_rx) = std::sync::mpsc::channel::<()>();
        let joiner = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let run = run.get();
                let probe = template.for_thread(&thread_name, gettid());
                let _ = tid_tx.send(gettid());
                if start_rx.recv().is_ok() {
                    let mut p = Proc::new(run, probe, &role_name);
                    p.stdout = stdout;
                    p.globals = Some(globals);
                    p.shared = Arc::clone(&shared);
                    p.thread_name = py_name;
                    p.set_slot(slot);
                    p.reseed_for(&thread_name);
                    p.run_thread(&role_name, args, &ended_in_thread);
                }
                shared.live.fetch_sub(1, Ordering::AcqRel);
            })
            .map_err(|e| {
                self.shared.live.fetch_sub(1, Ordering::AcqRel);
                RunError(format!("cannot start a thread: {e}"))
            })?;
        let tid = tid_rx.recv().unwrap_or(0);
        self.probe.for_thread(&name, tid).emit(Body::ThreadStart {
            role: role.to_string(),
            daemon,
        });
        let _ = start_tx.send(());
        self.threads.push(ThreadChild {
            name,
            handle: Some(joiner),
            daemon,
            ended,
        });
        if let Some(h) = handle {
            self.thread_handles
                .insert(h.to_string(), self.threads.len() - 1);
        }
        Ok(())
    }

    /// A thread's whole life: its role's steps, then the join of the
    /// threads it started and did not join, then `thread_end`.
    fn run_thread(&mut self, role: &str, args: Vec<(String, Value)>, ended: &AtomicBool) {
        // Its own copy of every thread local, then its args.
        self.vars = self.run.scenario.thread_locals.clone();
        self.vars.extend(args);
        let r = match self.run.scenario.roles.get(role) {
            Some(r) => self.steps_guarded(&r.steps),
            None => Err(RunError(format!("no role {role}"))),
        };
        self.join_threads_at_exit();
        let error = r.err().map(|e| e.0);
        if let Some(m) = &error {
            // As CPython's threading.excepthook: said on stderr, and the
            // process goes on.
            let at = self
                .probe
                .line
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            let msg = format!("Exception in thread {}{at}:\n{m}\n", self.thread_name);
            let _ = os::write_all(std::io::stderr(), msg.as_bytes());
            self.probe.emit(Body::Error {
                message: format!("in thread {}: {m}", self.thread_name),
            });
        }
        ended.store(true, Ordering::Release);
        self.probe.emit(Body::ThreadEnd { error });
    }

    /// Whether a name is a global that this process's threads share (a
    /// read or write of it is then seen by the other threads).
    pub(super) fn is_thread_shared(&self, name: &str) -> bool {
        self.globals
            .as_ref()
            .is_some_and(|g| globals(g).contains_key(name))
            && !self.vars.contains_key(name)
    }

    /// Whether a handle names a thread this process (or thread) started.
    pub(super) fn is_thread_handle(&self, handle: &str) -> bool {
        self.thread_handles.contains_key(handle)
    }

    /// `t.join()`: waits, really (`pthread_join`), for the thread's end.
    pub(super) fn join_thread(&mut self, handle: &str) -> Result<(), RunError> {
        let i = *self
            .thread_handles
            .get(handle)
            .ok_or_else(|| RunError(format!("{handle} was never started by this thread")))?;
        self.join_thread_at(i);
        Ok(())
    }

    fn join_thread_at(&mut self, i: usize) {
        let Some(joiner) = self.threads[i].handle.take() else {
            // Joined before: Python's join returns at once.
            return;
        };
        let name = self.threads[i].name.clone();
        if self.gated() {
            // Tried without blocking until it has ended (as a child's join).
            let ended = Arc::clone(&self.threads[i].ended);
            let _ = self.gated_retry(
                &format!("join thread {name}"),
                &format!("join:{name}"),
                |_| Ok(ended.load(Ordering::Acquire).then_some(())),
            );
        }
        let on = format!("waits for thread {name} to end");
        let waits = !joiner.is_finished();
        if waits {
            self.probe.emit(Body::Block { on: on.clone() });
        }
        // A thread's panics are caught in `steps_guarded`: join returns Ok.
        let _ = joiner.join();
        if waits {
            self.probe.emit(Body::Unblock { on });
        }
        self.probe.emit(Body::ThreadJoin { joined: name });
    }

    /// Python's interpreter shutdown (`threading._shutdown`): every
    /// non-daemon thread is joined before anything else; daemon threads
    /// die with the process.
    pub(super) fn join_threads_at_exit(&mut self) {
        for i in 0..self.threads.len() {
            if !self.threads[i].daemon {
                self.join_thread_at(i);
            }
        }
    }

    /// A global's value in the memory the threads share (`None` when this
    /// process has no threads, or it is no global): a real read, reported,
    /// and remembered as what this thread saw.
    pub(super) fn read_global(&mut self, name: &str) -> Option<Value> {
        let v = globals(self.globals.as_ref()?).get(name).cloned()?;
        self.probe.emit(Body::Read {
            name: name.to_string(),
            value: v.clone(),
            // Not private: the other threads see it (the stage and the
            // race lab treat it as shared memory, which it is).
            private: false,
        });
        self.seen.insert(name.to_string(), v.clone());
        Some(v)
    }

    /// Writes a global in the shared memory. A write `based` on a read (an
    /// `add`) learns what it replaced: if another thread wrote in between,
    /// its update is lost, and this thread says so (`race`).
    pub(super) fn write_global(&mut self, name: &str, v: Value, based: bool) -> bool {
        let Some(g) = self.globals.clone() else {
            return false;
        };
        self.probe.emit(Body::Write {
            name: name.to_string(),
            value: v.clone(),
            private: false,
        });
        let replaced = globals(&g).insert(name.to_string(), v.clone());
        let read = self.seen.insert(name.to_string(), v.clone());
        if based
            && let (Some(replaced), Some(read)) = (replaced, read)
            && values::differs(&read, &replaced)
        {
            let lost = values::lost_between(&read, &replaced);
            self.probe.emit(Body::Race {
                name: name.to_string(),
                read,
                replaced,
                written: v,
                lost,
            });
        }
        true
    }

    /// `l.acquire()` of a thread lock: blocks (a condition variable in
    /// this process's memory) while another thread holds it; gated, tried
    /// without blocking until it is free.
    pub(super) fn thread_lock(&mut self, l: &str) -> Result<(), RunError> {
        let shared = Arc::clone(&self.shared);
        let try_take = |s: &ProcShared| lock_set(&s.held).insert(l.to_string());
        if self.gated() {
            let mut waiting = false;
            self.gated_retry(&format!("acquire lock {l}"), &format!("lock:{l}"), |p| {
                if try_take(&shared) {
                    return Ok(Some(()));
                }
                if !waiting {
                    waiting = true;
                    p.probe.emit(Body::LockWait {
                        lock: l.to_string(),
                    });
                }
                Ok(None)
            })?;
        } else if !try_take(&shared) {
            self.probe.emit(Body::LockWait {
                lock: l.to_string(),
            });
            let mut held = lock_set(&shared.held);
            while held.contains(l) {
                held = shared
                    .released
                    .wait(held)
                    .unwrap_or_else(|p| p.into_inner());
            }
            held.insert(l.to_string());
        }
        self.probe.emit(Body::LockAcquire {
            lock: l.to_string(),
        });
        Ok(())
    }

    /// `l.release()` of a thread lock (any thread may release it, as
    /// `threading.Lock`); releasing an unlocked lock is CPython's error.
    pub(super) fn thread_unlock(&mut self, l: &str) -> Result<(), RunError> {
        if !lock_set(&self.shared.held).remove(l) {
            return Err(RunError(format!(
                "RuntimeError: release unlocked lock ({l})"
            )));
        }
        self.shared.released.notify_all();
        Ok(())
    }
}

fn lock_set(m: &Mutex<BTreeSet<String>>) -> MutexGuard<'_, BTreeSet<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
