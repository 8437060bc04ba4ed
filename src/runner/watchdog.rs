//! The watchdog: the outer runner, after it has forked the runner core.
//!
//! It waits for one of two things: the core ends (the run is over), or its
//! stdin, a pipe whose write end only the app holds, reaches end of file
//! (the app stopped the run, dropped the session, or died in any way: the
//! kernel closes a dead process's fds). Then it kills what is left of the
//! run and reaps it:
//!
//! - the core's process group in one `kill` (SIGKILL also ends stopped
//!   processes), which is every scenario process that did not move to a
//!   group of its own;
//! - then, over and over until it has no child left, every child of its
//!   own. We are a child subreaper above the core, so once the core is gone
//!   every orphan of the run comes to us, including a program that called
//!   `setsid` or `setpgid` to leave the group: killing a child makes its
//!   children ours, and so on down the tree.
//!
//! No process of the run can get out from under the core and us (only a
//! subreaper can catch orphans, and it would itself be a descendant), so
//! this leaves nothing behind without needing a PID namespace. The
//! watchdog is not a scenario process: it never connects to the collector
//! and is not shown.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd};

/// Exit code of a stopped run (as if the runner had been killed by SIGKILL).
pub const STOPPED_CODE: i32 = 128 + 9;

/// Watches the core (our child, leader of the run's process group) until
/// the run ends or the app lets go; kills and reaps everything; returns the
/// exit code (the core's, or [`STOPPED_CODE`]).
pub fn watch(core: Pid) -> i32 {
    watch_with(core, app_let_go)
}

/// [`watch`], asking `app_says_stop` what the app sent when our stdin has
/// something (or ended): true stops the run. (A lone runner's stdin only
/// ever ends; a server's also carries `stop` lines.)
pub fn watch_with(core: Pid, mut app_says_stop: impl FnMut(BorrowedFd<'_>) -> bool) -> i32 {
    let pidfd = crate::collector::pidfd_open(core.as_raw());
    // SAFETY: fd 0 stays open for as long as this process runs (we never
    // close it), so the borrow cannot outlive it.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let code = loop {
        if let Some(code) = core_ended(core) {
            break code;
        }
        // Without a pidfd (Linux < 5.3), look again every 50 ms.
        let timeout = if pidfd.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::from(50u8)
        };
        let mut fds = vec![PollFd::new(stdin, PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break STOPPED_CODE, // cannot watch: do not leave a run unwatched
        }
        let app_side = fds[0].revents().unwrap_or(PollFlags::empty());
        if app_side.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && app_says_stop(stdin)
        {
            break STOPPED_CODE;
        }
    };
    kill_everything(core);
    code
}

/// The core's exit code if it has ended, without reaping it: as long as it
/// is a zombie its pid (the process group's id) cannot be reused, so
/// killing the group cannot hit anybody else.
fn core_ended(core: Pid) -> Option<i32> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(core), flags) {
        Ok(WaitStatus::Exited(_, c)) => Some(c),
        Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
        Ok(_) | Err(Errno::EINTR) => None,
        Err(_) => Some(70), // not our child any more: nothing to wait for
    }
}

/// Reads what the app sent (nothing is expected); true at end of file.
fn app_let_go(stdin: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 512];
    match nix::unistd::read(stdin, &mut buf) {
        Ok(0) => true,
        Ok(_) | Err(Errno::EINTR) | Err(Errno::EAGAIN) => false,
        Err(_) => true,
    }
}

/// Kills the run's process group, then every child we have until none is
/// left (orphans of the run keep coming to us as their parents die).
pub fn kill_everything(group: Pid) {
    let _ = killpg(group, Signal::SIGKILL);
    kill_children();
}

/// Kills and reaps every child we have, until none is left (orphans keep
/// coming to a subreaper as their parents die).
pub fn kill_children() {
    let me = nix::unistd::getpid();
    loop {
        // A child's pid cannot be reused before we reap it, so `kill` can
        // only hit the process we saw.
        for child in children_of(me) {
            let _ = kill(child, Signal::SIGKILL);
        }
        match waitpid(None::<Pid>, None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return, // ECHILD: nobody left
        }
        // Reap whatever else is already dead before looking again.
        while let Ok(s) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Our children: `/proc/PID/task/PID/children` where the kernel has it
/// (we are single-threaded), else a scan of every `/proc/N/stat`.
fn children_of(me: Pid) -> Vec<Pid> {
    let me = me.as_raw();
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(Pid::from_raw)
            .collect();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent_of(pid) == Some(me))
        .map(Pid::from_raw)
        .collect()
}

/// The parent pid in `/proc/PID/stat` (field 4, after the command name).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
