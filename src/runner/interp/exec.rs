//! `exec`: a child that `execvp`s a real program, as `subprocess.Popen`
//! does. A program that cannot be run fails the step in the parent (the
//! child reports its errno on a close-on-exec pipe).

use super::*;

/// Replaces the process image; returns only on failure, with the errno.
pub(super) fn exec_program(argv: &[String]) -> i32 {
    use std::ffi::CString;
    let Ok(args) = argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return nix::errno::Errno::EINVAL as i32;
    };
    let Some(prog) = args.first() else {
        return nix::errno::Errno::ENOENT as i32;
    };
    // Programs expect the default SIGPIPE behaviour (Rust ignores it).
    // SAFETY: setting a signal to its default disposition has no handler.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    match nix::unistd::execvp(prog, &args) {
        Ok(never) => match never {},
        Err(e) => e as i32,
    }
}

/// Waits until the exec'ing child either runs its program (the pipe
/// closes, `None`) or says why it could not (its errno).
pub(super) fn exec_error(err_r: &OwnedFd) -> Result<Option<i32>, RunError> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(err_r, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RunError(format!("cannot learn if exec worked: {e}"))),
        }
    }
    Ok((got == buf.len()).then(|| i32::from_le_bytes(buf)))
}

/// The exception Python's `Popen` raises for a failed exec, as the last
/// line of its traceback: `FileNotFoundError: [Errno 2] No such file or
/// directory: 'nosuchprog'`.
pub(super) fn os_error(errno: i32, program: &str) -> String {
    use nix::errno::Errno;
    let e = Errno::from_raw(errno);
    let class = match e {
        Errno::ENOENT => "FileNotFoundError",
        Errno::EACCES | Errno::EPERM => "PermissionError",
        Errno::ENOTDIR => "NotADirectoryError",
        Errno::EISDIR => "IsADirectoryError",
        _ => "OSError",
    };
    let quoted = Value::Str(program.to_string()).repr();
    format!("{class}: [Errno {errno}] {}: {quoted}", e.desc())
}

impl Proc<'_> {
    /// `subprocess.Popen(argv, stdin=PIPE, stdout=PIPE).communicate(input)`.
    pub(super) fn exec(
        &mut self,
        argv: Vec<String>,
        input: Option<String>,
        capture: bool,
        handle: Option<&str>,
    ) -> Result<Option<String>, RunError> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| RunError(format!("cannot create a pipe: {e}")))
        };
        let stdin = match input {
            Some(_) => Some(pipe()?),
            None => None,
        };
        let stdout = if capture { Some(pipe()?) } else { None };
        // As Popen does: a close-on-exec pipe on which the child reports a
        // failed exec (a successful one closes it: end of file).
        let (err_r, err_w) = pipe()?;
        self.n_children += 1;
        let id = format!("{}.{}", self.probe.id, self.n_children);
        let program = argv.first().cloned().unwrap_or_default();
        match self.fork_child(id.clone(), "exec".into(), false, true)? {
            Forked::Child => {
                if let Some((r, _)) = &stdin {
                    let _ = nix::unistd::dup2_stdin(r);
                }
                if let Some((_, w)) = &stdout {
                    let _ = nix::unistd::dup2_stdout(w);
                }
                self.probe.emit(Body::Exec {
                    program: program.clone(),
                    args: argv[1..].to_vec(),
                });
                drop(err_r);
                let errno = exec_program(&argv);
                let _ = os::write_all(&err_w, &errno.to_le_bytes());
                // What CPython's child does when exec fails.
                os::exit_now(255)
            }
            Forked::Parent(i) => {
                drop(err_w);
                if let Some(errno) = exec_error(&err_r)? {
                    // Popen raises in the parent, after reaping the child.
                    self.join_child(i, false);
                    return Err(RunError(os_error(errno, &program)));
                }
                drop(err_r);
                if let Some(h) = handle {
                    self.handles.insert(h.to_string(), i);
                }
                if let (Some((r, w)), Some(text)) = (stdin, input) {
                    drop(r);
                    let msg = self.probe.msg_id();
                    self.probe.emit(Body::Send {
                        channel: format!("{id}.stdin"),
                        end: "stdin".into(),
                        msg,
                        value: Value::Str(text.clone()),
                    });
                    // A program that exits without reading is not an error.
                    let _ = os::write_all(&w, text.as_bytes());
                }
                let out = match stdout {
                    Some((r, w)) => {
                        drop(w);
                        let on = format!("reading the output of {program}");
                        self.probe.emit(Body::Block { on: on.clone() });
                        let bytes = os::read_to_end(r.as_fd())?;
                        self.probe.emit(Body::Unblock { on });
                        Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    None => None,
                };
                self.join_child(i, false);
                Ok(out)
            }
        }
    }
}
