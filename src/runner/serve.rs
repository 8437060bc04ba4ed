//! One runner for many runs (`stats`, `explore`, the app's Many runs):
//! `forkscope __runner --serve`, started once, runs one scenario after
//! another, so that a run costs a `fork` here instead of starting our
//! (large) binary again.
//!
//! The app talks to it in lines. On its stdin (a pipe only the app holds,
//! the lifeline of the whole server):
//!
//! - `run JSON` starts a run of that [`RunSpec`] (only when no run goes on);
//! - `stop` stops the run going on (as closing a lone runner's stdin does);
//! - end of file: the app let go (or died, even by `kill -9`): the run
//!   going on is stopped and the server exits.
//!
//! On its stdout, one line per run when everything it made is gone:
//! `exit CODE` (main's exit code, 137 when stopped).
//!
//! Each run is exactly a lone runner's run: the server forks the run's own
//! watchdog, whose stdin is a fresh pipe whose write end only the server
//! holds (the run's lifeline), and which then does what the outer runner
//! does ([`super::run_watched`]: subreaper, PID namespace when allowed,
//! the core, the watchdog). Closing that pipe stops the run; the kernel
//! closes it when the server dies, so nothing outlives the app: the app's
//! end closes the server's stdin, the server closes the run's lifeline,
//! the run's watchdog kills and reaps the run.
//!
//! The server is a child subreaper too: if a run's watchdog ever died
//! before its run, the orphans would come here, and are killed and reaped
//! before `exit` is reported. It is single-threaded, so forking is safe.

use super::{RunSpec, os, watchdog};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The exit code reported for a run that could not start.
const FAILED: i32 = 70;

/// What the app's stdin said, a line at a time.
struct Lines {
    buf: Vec<u8>,
    /// End of file (or an error) seen.
    ended: bool,
}

impl Lines {
    /// Reads what is there (blocking when nothing is), once.
    fn fill(&mut self, stdin: BorrowedFd<'_>) {
        let mut chunk = [0u8; 65536];
        loop {
            match nix::unistd::read(stdin, &mut chunk) {
                Ok(0) => self.ended = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EINTR) => continue,
                Err(_) => self.ended = true,
            }
            return;
        }
    }

    /// The next whole line, without its newline.
    fn next(&mut self) -> Option<Vec<u8>> {
        let at = self.buf.iter().position(|&b| b == b'\n')?;
        let mut line: Vec<u8> = self.buf.drain(..=at).collect();
        line.pop();
        Some(line)
    }
}

/// Entry point of `forkscope __runner --serve`. Returns the exit code.
pub fn serve_main() -> i32 {
    // SAFETY: fd 0 stays open for as long as this process runs (we never
    // close it), so the borrow cannot outlive it.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    // Orphans of a run whose watchdog died come to us, to be killed.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut lines = Lines {
        buf: Vec::new(),
        ended: false,
    };
    loop {
        let line = loop {
            if let Some(l) = lines.next() {
                break l;
            }
            if lines.ended {
                return 0;
            }
            lines.fill(stdin);
        };
        let Some(json) = line.strip_prefix(b"run ") else {
            continue; // `stop` with no run going on: nothing to stop
        };
        let code = match serde_json::from_slice::<RunSpec>(json) {
            Ok(spec) if spec.parent_pid == nix::unistd::getppid().as_raw() => {
                run_one(spec, stdin, &mut lines)
            }
            // The app that sent it is not our parent: it died already.
            Ok(_) => return FAILED,
            Err(e) => {
                eprintln!("forkscope runner: bad run spec: {e}");
                FAILED
            }
        };
        // Whatever the run's watchdog left (only if it died early).
        watchdog::kill_children();
        if os::write_all(std::io::stdout(), format!("exit {code}\n").as_bytes()).is_err() {
            return 0; // the app is gone
        }
        if lines.ended {
            return 0;
        }
    }
}

/// Forks the run's watchdog and waits for its end, passing on a `stop`
/// (or the end of our stdin) by closing the run's lifeline.
fn run_one(spec: RunSpec, stdin: BorrowedFd<'_>, lines: &mut Lines) -> i32 {
    let (life_r, life_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(_) => return FAILED,
    };
    let child = match os::fork_process() {
        Ok(ForkResult::Child) => {
            drop(life_w);
            // The run's lifeline becomes its watchdog's stdin, as a lone
            // runner's is; our own stdin and stdout (the app's pipes) are
            // not the run's business.
            if nix::unistd::dup2_stdin(&life_r).is_err() {
                os::exit_now(FAILED);
            }
            drop(life_r);
            stdout_to_dev_null();
            // Programs the scenario runs find the run's collector here,
            // as in a lone runner's environment.
            // SAFETY: this process is single-threaded (the server never
            // starts a thread), so nobody reads the environment meanwhile.
            unsafe { std::env::set_var(crate::protocol::SOCKET_ENV, &spec.socket) };
            os::exit_now(super::run_watched(spec))
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            eprintln!("forkscope runner: {e}");
            return FAILED;
        }
    };
    drop(life_r);
    let mut lifeline: Option<OwnedFd> = Some(life_w);
    let pidfd = crate::collector::pidfd_open(child.as_raw());
    loop {
        if let Some(code) = ended(child) {
            return code;
        }
        if lifeline.is_some() {
            while let Some(line) = lines.next() {
                if line == b"stop" {
                    lifeline = None;
                }
            }
            if lines.ended {
                lifeline = None;
            }
        }
        // Without a pidfd (Linux < 5.3), look again every 5 ms.
        let timeout = if pidfd.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::from(5u8)
        };
        let mut fds = Vec::with_capacity(2);
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        if lifeline.is_some() {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Cannot wait for the app: stop the run rather than leave it.
            Err(_) => lifeline = None,
        }
        let app_said = fds
            .last()
            .filter(|_| lifeline.is_some())
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty());
        if app_said {
            lines.fill(stdin);
        }
    }
}

/// The run's watchdog's exit code once it has ended (reaped), else `None`.
fn ended(child: Pid) -> Option<i32> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, c)) => Some(c),
        Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
        Ok(_) | Err(Errno::EINTR) => None,
        Err(_) => Some(FAILED), // not our child any more
    }
}

/// Points fd 1 at `/dev/null` (or closes it), as a lone runner's stdout is.
fn stdout_to_dev_null() {
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => {
            let _ = nix::unistd::dup2_stdout(&null);
        }
        Err(_) => {
            // SAFETY: closing fd 1 in a freshly forked child that writes
            // nothing to it (the app's pipe must not stay open here).
            unsafe { libc::close(1) };
        }
    }
}
