//! Short scheduler slices for the app's threads that wait for events.
//!
//! Since Linux 6.6 the fair scheduler is EEVDF: a task that wakes up is
//! placed by its lag and runs when its *virtual deadline* (its vruntime
//! plus its slice scaled by its weight) is the earliest; since 6.12 a task
//! may ask for its own slice (`sched_setattr`, `sched_runtime` for
//! `SCHED_OTHER`, 0.1–100 ms; no privilege needed) and a waking task with
//! a shorter slice than the running one preempts it (`PREEMPT_SHORT`),
//! also across task groups (the shortest slice of a group is its own).
//!
//! The collector thread and the consumer of its events do a few
//! microseconds of work per wake-up, many times a second. With the
//! default slice (0.7–3 ms, by the number of CPUs) a burst of scenario
//! processes waking together keeps them waiting behind each running one
//! until its slice is over, hundreds of µs at the p99. With a short slice
//! they run as soon as an event comes. Their *share* of the CPU does not
//! change (that is the weight, i.e. nice). The scenario's processes keep
//! their slices and weights, so how they are scheduled among themselves
//! (what a race lab run shows) does not change either: they only give way
//! sooner to these two threads of the app. No privilege is needed, no
//! autogroup or cgroup is assumed, and nothing about the run's processes,
//! sessions or process groups changes. Older kernels ignore
//! `sched_runtime` for these policies or refuse it: then nothing changes
//! at all.

use std::sync::atomic::{AtomicU64, Ordering};

/// The slice asked for: the kernel's smallest.
pub const EVENT_THREAD_SLICE_NS: u64 = 100_000;

/// What [`event_thread`] asks for; 0: the kernel's default slice.
static EVENT_SLICE_NS: AtomicU64 = AtomicU64::new(EVENT_THREAD_SLICE_NS);

/// Sets what the event threads started from now on ask for (0: the
/// kernel's default slice). Only for comparisons: the latency bench
/// measures both, side by side, in one process.
pub fn set_event_thread_slice_ns(slice_ns: u64) {
    EVENT_SLICE_NS.store(slice_ns, Ordering::Relaxed);
}

/// The calling thread waits for events and handles each in microseconds
/// (the collector thread, the consumer of its events): asks for a short
/// slice, keeping its policy and nice value. False if the kernel refused
/// or the thread's policy is not the normal or batch one (a kernel older
/// than 6.12 may take the request and ignore it).
pub fn event_thread() -> bool {
    set_slice(EVENT_SLICE_NS.load(Ordering::Relaxed))
}

/// Asks for a slice of `slice_ns` (0: back to the kernel's default).
fn set_slice(slice_ns: u64) -> bool {
    const SIZE: u32 = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: sched_attr is plain integers; all zeros is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is a live sched_attr of SIZE bytes the kernel writes
    // into; tid 0 is the calling thread.
    let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, SIZE, 0) };
    if got != 0 {
        return false;
    }
    let policy = attr.sched_policy as i32;
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return false; // a real-time or idle thread: not ours to change
    }
    // Policy and nice as they are (giving the same nice back needs no
    // privilege; a smaller one would).
    attr.size = SIZE;
    attr.sched_flags = 0;
    attr.sched_runtime = slice_ns;
    attr.sched_deadline = 0;
    attr.sched_period = 0;
    // SAFETY: `attr` is a valid sched_attr of SIZE bytes; tid 0 is the
    // calling thread.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    set == 0
}

/// The calling thread's slice as the kernel shows it (tests).
#[cfg(test)]
pub(crate) fn slice_ns_of_this_thread() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request keeps the thread's nice value (a slice is not a share);
    /// where the kernel takes it (6.12 and later) the slice is ours, and 0
    /// gives the default back.
    #[test]
    fn a_short_slice_keeps_the_nice_value() {
        std::thread::spawn(|| {
            // A nice of 3 on this thread only (Linux: a tid is a pid here).
            // SAFETY: setpriority/getpriority have no preconditions.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) };
            // SAFETY: as above.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let default_slice = slice_ns_of_this_thread();
            let ok = set_slice(EVENT_THREAD_SLICE_NS);
            let slice = slice_ns_of_this_thread();
            assert!(
                !ok || slice == Some(EVENT_THREAD_SLICE_NS) || slice == default_slice,
                "slice {slice:?}, before {default_slice:?}"
            );
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, nice);
            assert_eq!(set_slice(0), ok);
            assert_eq!(slice_ns_of_this_thread(), default_slice);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, nice);
        })
        .join()
        .expect("the thread ends");
    }
}
