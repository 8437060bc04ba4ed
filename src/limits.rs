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

/// Raises this process's soft open-file limit (at most to the hard one).
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
