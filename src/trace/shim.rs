//! `forkscope __trace-exec`: how a program started by a traced Python
//! process (subprocess, multiprocessing's spawn and forkserver,
//! `os.posix_spawn`) is seen from its first instruction.
//!
//! The probe in the parent runs this shim in place of the program, with
//! the child's logical id and the program's own argument vector. The shim
//! is the child process itself (same pid): it gives the process its own
//! stdout/stderr pipes (only where it inherited the parent's pipes: a
//! stream the program redirected, `stdout=PIPE`, stays as it is), says
//! hello as the child, says `exec`, and execs the real program with the
//! same arguments. A Python program it runs connects again under the same
//! id (PROTOCOL.md §1, "after exec").
//!
//! It runs before anything else in `main` (like `__runner`): no threads.

use crate::probe::{Capture, Probe};
use crate::protocol::{Body, SOCKET_ENV};
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Exit code when no candidate could be exec'd (as `_posixsubprocess`'s
/// child).
const EXEC_FAILED: i32 = 255;

/// Programs expect SIGPIPE at its default (Rust ignores it at start-up;
/// Python's `subprocess` restores it before exec, as we do).
pub fn default_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: setting a signal to its default disposition installs no handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

/// `forkscope __trace-exec ID PARENT ROLE NAME DAEMON OUT N CAND... ARGV...`
pub fn trace_exec_main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(2).collect();
    let text = |i: usize| args.get(i).map(|a| a.to_string_lossy().into_owned());
    let (Some(id), Some(parent), Some(role), Some(name), Some(daemon), Some(out), Some(n)) = (
        text(0),
        text(1),
        text(2),
        text(3),
        text(4),
        text(5),
        text(6).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("forkscope __trace-exec: bad arguments");
        return EXEC_FAILED;
    };
    let cands: Vec<OsString> = args.iter().skip(7).take(n).cloned().collect();
    let argv: Vec<OsString> = args.iter().skip(7 + n).cloned().collect();
    if cands.len() != n || argv.is_empty() {
        eprintln!("forkscope __trace-exec: bad arguments");
        return EXEC_FAILED;
    }
    let own: Vec<&str> = out.split(',').collect();
    let capture = match own_pipes(&own) {
        Some((r_out, r_err)) => Capture::Fds(r_out, r_err),
        None => Capture::None,
    };
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != super::PROC_ENV && k != super::OUT_ENV && k != super::ROLE_ENV)
        .collect();
    if let Some(sock) = std::env::var_os(SOCKET_ENV) {
        let parent = (!parent.is_empty()).then_some(parent.as_str());
        let mut probe = Probe::connect_named(
            std::path::Path::new(&sock),
            &id,
            &role,
            parent,
            daemon == "1",
            capture,
            (!name.is_empty()).then_some(name.as_str()),
        );
        let program = cands.first().cloned().unwrap_or_default();
        probe.emit(Body::Exec {
            program: program.to_string_lossy().into_owned(),
            args: argv
                .iter()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        });
    }
    env.push((super::PROC_ENV.into(), id.into()));
    env.push((super::ROLE_ENV.into(), role.into()));
    env.push((super::OUT_ENV.into(), super::out_idents().into()));
    default_signals();
    let cs = |o: &OsString| CString::new(o.as_bytes()).ok();
    let Some(argv) = argv.iter().map(cs).collect::<Option<Vec<_>>>() else {
        return EXEC_FAILED;
    };
    let envp: Vec<CString> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    for c in &cands {
        if let Some(path) = cs(c) {
            let _ = nix::unistd::execve(&path, &argv, &envp);
        }
    }
    EXEC_FAILED
}

/// Fresh pipes in place of fds 1 and 2 where they are the pipes the
/// collector reads for the parent (`own`: `dev:ino` of each); the read
/// ends to hand over. A stream that stays gets a pipe that is already
/// closed for writing (the collector sees its end at once). `None`: neither
/// is the parent's.
fn own_pipes(own: &[&str]) -> Option<(OwnedFd, OwnedFd)> {
    use nix::fcntl::OFlag;
    let ident = |fd: i32| {
        // SAFETY: fds 1 and 2 stay open for the borrow (we never close them).
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::sys::stat::fstat(b)
            .ok()
            .map(|st| format!("{}:{}", st.st_dev, st.st_ino))
    };
    let inherited: Vec<bool> = [1, 2]
        .iter()
        .enumerate()
        .map(|(i, &fd)| ident(fd).is_some_and(|s| own.get(i) == Some(&s.as_str())))
        .collect();
    if !inherited.iter().any(|&b| b) {
        return None;
    }
    let mut reads = Vec::new();
    for (i, fd) in [1, 2].into_iter().enumerate() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
        if inherited[i] {
            let ok = if fd == 1 {
                nix::unistd::dup2_stdout(&w)
            } else {
                nix::unistd::dup2_stderr(&w)
            };
            ok.ok()?;
        }
        drop(w);
        let _ = r.as_raw_fd();
        reads.push(r);
    }
    let err = reads.pop()?;
    let out = reads.pop()?;
    Some((out, err))
}
