//! The open-file limit. The collector holds about five descriptors for
//! each process of a run (its connection, its event pipe, two output
//! pipes and a pidfd), so a run of 1,024 processes needs more than the
//! soft limit of 1,024
//! that many desktops give. forkscope raises its own soft limit towards
//! the hard one when it starts, and the runner puts the user's soft limit
//! back before it forks anything: the scenario's processes see the limit
//! they would see without forkscope.

use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// How the runner learns the user's own soft limit.
const USER_SOFT_ENV: &str = "FORKSCOPE_NOFILE_SOFT";

/// Enough for the largest run (`--max-procs` is at most a few thousand)
/// without handing every descriptor the kernel allows to one process.
const WANTED_SOFT: u64 = 1 << 16;

/// The soft limit forkscope was started with, once [`raise`] ran.
static USER_SOFT: OnceLock<u64> = OnceLock::new();

/// How many descriptors the table is made for at start ([`grow_fd_table`]):
/// about five per process of the largest run (`--max-procs` 1,024).
const FD_TABLE: u64 = 8192;

/// Raises this process's soft open-file limit (at most to the hard one),
/// and makes its descriptor table large enough for a run. Call it while
/// the process has one thread.
/// Failing leaves the limit as it was: a run that needs more descriptors
/// than that then reports the collector's error as before.
pub fn raise() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let _ = USER_SOFT.set(soft);
    let wanted = WANTED_SOFT.min(hard);
    if soft < wanted {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard);
    }
    if let Ok((now, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        grow_fd_table(FD_TABLE.min(now));
    }
}

/// Grows this process's descriptor table to hold `fds` descriptors, once,
/// while it has a single thread. The kernel doubles the table whenever a
/// new descriptor does not fit, and in a process with more than one
/// thread every doubling first waits for an RCU grace period
/// (`expand_fdtable`): 12–25 ms each on the project's VM, taken by the
/// collector thread in the middle of a run as it took in a hello's
/// descriptors or a peer's pidfd, while every process of the run waited
/// on its full event pipe (PERFORMANCE.md, h-ingest4). A table never
/// shrinks; a child started with `Command` gets one sized to the
/// descriptors it has. Failing changes nothing but that wait.
fn grow_fd_table(fds: u64) {
    let Ok(top) = libc::c_int::try_from(fds.saturating_sub(1)) else {
        return;
    };
    if top < 64 {
        return;
    }
    let dup_high = |fd: libc::c_int| -> bool {
        // SAFETY: F_DUPFD_CLOEXEC only reads `fd` (any number: a closed one
        // is EBADF) and returns a new descriptor (or -1) that nothing else
        // knows of; it is closed at once.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
        if high < 0 {
            return false;
        }
        // SAFETY: `high` was just made here and is closed once.
        unsafe { libc::close(high) };
        true
    };
    if [0, 1, 2].into_iter().any(dup_high) {
        return;
    }
    // No standard descriptor is open: any descriptor does.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        dup_high(null.as_raw_fd());
    }
}

/// What the runner we start must be told, if [`raise`] changed anything:
/// the variable and the user's soft limit.
pub fn runner_env() -> Option<(&'static str, String)> {
    let user = *USER_SOFT.get()?;
    let (now, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (now != user).then(|| (USER_SOFT_ENV, user.to_string()))
}

/// In the runner, before it forks: puts the user's soft limit back and
/// forgets the variable, so that no scenario process sees either.
pub fn restore_in_runner() {
    let Some(value) = std::env::var_os(USER_SOFT_ENV) else {
        return;
    };
    // SAFETY: called first thing in the runner's `main`, while it has a
    // single thread: nothing reads the environment at the same time.
    unsafe { std::env::remove_var(USER_SOFT_ENV) };
    let Some(user) = value.to_str().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, user.min(hard), hard);
    }
}
