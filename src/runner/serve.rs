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
//! Each run is a lone runner's run with the server as its watchdog
//! ([`super::run_watched_with`]): the server forks the run's core (in a
//! fresh PID namespace when allowed, leading the run's own process group)
//! and watches it as a lone runner's watchdog does, its stdin being the
//! lifeline: a `stop` line or the end of that pipe kills the run's group
//! and every child the server has, and reaps them, before `exit` is
//! reported. The kernel closes the pipe when the app dies (even by
//! `kill -9`), so nothing outlives the app. (Before, a run had a watchdog
//! of its own between the server and the core: one fork more per run.)
//!
//! The server is a child subreaper: orphans of a run come here, to be
//! killed and reaped. It is single-threaded, so forking is safe.

use super::{RunSpec, os, watchdog};
use nix::errno::Errno;
use std::os::fd::BorrowedFd;

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
                run_one(spec, &mut lines)
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

/// Runs one run, the server being its watchdog: forks the core (in a
/// fresh PID namespace when it can) and waits for its end, or for a `stop`
/// (or the end of our stdin), then kills and reaps everything of the run.
fn run_one(spec: RunSpec, lines: &mut Lines) -> i32 {
    // Checked here once, not in every run's core (`explore` runs the same
    // scenario a hundred times): the core inherits it with the fork.
    super::parse_ahead(&spec);
    super::run_watched_with(spec, true, |core| {
        watchdog::watch_with(core, |stdin| {
            lines.fill(stdin);
            let mut stop = lines.ended;
            while let Some(line) = lines.next() {
                stop |= line == b"stop";
            }
            stop
        })
    })
}
