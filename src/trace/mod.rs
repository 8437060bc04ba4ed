//! `forkscope trace SCRIPT.py`: a real Python program, watched.
//!
//! The program runs unchanged under the user's own `python3`, as `main` of
//! an ordinary run: the runner core forks `main`, whose probe says hello
//! (handing the collector its stdout/stderr pipes), and `main` then
//! `exec`s Python on the script. A probe written in Python (the files in
//! `src/trace/python/`, embedded in the binary) is put first on
//! `PYTHONPATH` for this run only, in a private directory the outer runner
//! makes and removes: its `sitecustomize` connects each Python process
//! again under its logical id and patches what makes processes and threads
//! (and, with the ops modules, locks, queues, pipes, shared values, pools).
//! Programs a Python process starts (subprocess, multiprocessing's spawn
//! and forkserver) go through a tiny shim, `forkscope __trace-exec`, that
//! says hello for the child and then execs the real program
//! ([`shim::trace_exec_main`]). See docs/TRACE.md.

pub mod shim;

use crate::scenario::{self, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The probe's files, as written into the run's private directory.
pub const PROBE_FILES: &[(&str, &str)] = &[
    ("sitecustomize.py", include_str!("python/sitecustomize.py")),
    (
        "forkscope_probe/__init__.py",
        include_str!("python/forkscope_probe/__init__.py"),
    ),
    (
        "forkscope_probe/_wire.py",
        include_str!("python/forkscope_probe/_wire.py"),
    ),
    (
        "forkscope_probe/_procs.py",
        include_str!("python/forkscope_probe/_procs.py"),
    ),
    // The ops modules (locks, queues and pipes, shared values, pools).
    (
        "forkscope_probe/_ops.py",
        include_str!("python/forkscope_probe/_ops.py"),
    ),
    (
        "forkscope_probe/_sync.py",
        include_str!("python/forkscope_probe/_sync.py"),
    ),
    (
        "forkscope_probe/_chan.py",
        include_str!("python/forkscope_probe/_chan.py"),
    ),
    (
        "forkscope_probe/_shared.py",
        include_str!("python/forkscope_probe/_shared.py"),
    ),
    (
        "forkscope_probe/_pool.py",
        include_str!("python/forkscope_probe/_pool.py"),
    ),
    (
        "forkscope_probe/_gates.py",
        include_str!("python/forkscope_probe/_gates.py"),
    ),
];

/// Environment variables the probe reads (set on `main` before it execs
/// Python; passed on to every process the program starts).
pub const PROC_ENV: &str = "FORKSCOPE_TRACE_PROC";
pub const SCRIPT_ENV: &str = "FORKSCOPE_TRACE_SCRIPT";
pub const EXE_ENV: &str = "FORKSCOPE_TRACE_EXE";
pub const STDOUT_ENV: &str = "FORKSCOPE_TRACE_STDOUT";
pub const GATED_ENV: &str = "FORKSCOPE_TRACE_GATED";
pub const OUT_ENV: &str = "FORKSCOPE_TRACE_OUT";
pub const DIR_ENV: &str = "FORKSCOPE_TRACE_DIR";
pub const ROLE_ENV: &str = "FORKSCOPE_TRACE_ROLE";

/// A Python program to trace: what `main` execs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonProgram {
    /// The interpreter (found on `PATH` unless `--python` named one).
    pub python: PathBuf,
    /// The script as the user named it (Python gets it as is, so
    /// `sys.argv[0]` is what it would be; the run has the user's working
    /// directory).
    pub script: PathBuf,
    pub args: Vec<String>,
    /// The probe's private directory: made by the outer runner for the run
    /// (and removed after it), so the app never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_dir: Option<PathBuf>,
}

/// Why a program cannot be traced, as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NoPython(String),
    #[error("{0}")]
    Scenario(#[from] scenario::ScenarioError),
}

/// Everything a run of a Python program needs, checked before anything
/// forks: the program and the scenario that stands for it (no steps; its
/// `source` is the script's text, so the source panel and `line` fields
/// work as for a scenario).
#[derive(Debug, Clone)]
pub struct TraceTarget {
    pub program: PythonProgram,
    /// The scenario's TOML text, as `Session::start` takes it.
    pub scenario_text: String,
    /// Where it came from: the script's path as given.
    pub origin: String,
    pub scenario: Scenario,
}

impl TraceTarget {
    /// Reads the script, finds Python (`python` or `python3` on `PATH`).
    pub fn new(
        script: &Path,
        python: Option<&Path>,
        args: Vec<String>,
    ) -> Result<TraceTarget, TraceError> {
        let bytes = std::fs::read(script).map_err(|e| TraceError::Read {
            path: script.display().to_string(),
            source: e,
        })?;
        // Python reads other encodings too (a coding cookie): the listing
        // shows what it can.
        let source = String::from_utf8_lossy(&bytes);
        let python = find_python(python)?;
        let origin = script.display().to_string();
        let (scenario_text, scenario) = scenario_for(script, &source, &origin)?;
        Ok(TraceTarget {
            program: PythonProgram {
                python,
                script: script.to_path_buf(),
                args,
                probe_dir: None,
            },
            scenario_text,
            origin,
            scenario,
        })
    }

    /// Run options that run this program (the rest as given).
    pub fn options(&self, mut opts: crate::session::RunOptions) -> crate::session::RunOptions {
        opts.python = Some(self.program.clone());
        opts
    }

    /// Starts a run of the program: the same [`crate::session::Session`]
    /// as a scenario's, events and all.
    pub fn start(
        &self,
        opts: &crate::session::RunOptions,
    ) -> anyhow::Result<crate::session::Session> {
        crate::session::Session::start(
            &self.scenario_text,
            &self.origin,
            BTreeMap::new(),
            &self.options(opts.clone()),
            crate::session::Reading::Thread,
        )
    }
}

/// The scenario standing for a script (its TOML text, and loaded), with
/// the script's text exactly as its `source`: the loader trims blank lines
/// at both ends of a scenario's listing, which would shift the lines of a
/// script that starts with one.
pub fn scenario_for(
    script: &Path,
    source: &str,
    origin: &str,
) -> Result<(String, Scenario), scenario::ScenarioError> {
    let text = scenario_text(script, source);
    let mut scenario = scenario::load(&text, origin)?;
    scenario.source = source.to_string();
    Ok((text, scenario))
}

/// The scenario standing for a script: its name from the file name, its
/// `source` the script itself, and a `main` with no steps (the program
/// does everything).
pub fn scenario_text(script: &Path, source: &str) -> String {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if name.trim_matches('-').is_empty() {
        name = "script".into();
    }
    let file = script
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    #[derive(Serialize)]
    struct Role {
        steps: Vec<u8>,
    }
    #[derive(Serialize)]
    struct Text<'a> {
        name: String,
        title: String,
        explain: String,
        tier: u8,
        source: &'a str,
        roles: BTreeMap<&'a str, Role>,
    }
    let text = Text {
        name,
        title: format!("python3 {file}"),
        explain: format!(
            "Your own program, {file}, run by Python as it is and watched by forkscope."
        ),
        tier: 1,
        source,
        roles: BTreeMap::from([("main", Role { steps: vec![] })]),
    };
    toml::to_string(&text).unwrap_or_default()
}

/// The interpreter: `--python PATH` (a path, or a name looked up on
/// `PATH`), else `python3` on `PATH`.
pub fn find_python(given: Option<&Path>) -> Result<PathBuf, TraceError> {
    let name = given.unwrap_or(Path::new("python3"));
    if name.as_os_str().is_empty() {
        return Err(TraceError::NoPython("--python needs a path".into()));
    }
    if name.components().count() > 1 || name.is_absolute() {
        return if is_executable(name) {
            Ok(std::path::absolute(name).unwrap_or_else(|_| name.to_path_buf()))
        } else {
            Err(TraceError::NoPython(format!(
                "{} is not an executable file",
                name.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(name);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    Err(TraceError::NoPython(format!(
        "there is no {} on PATH: install Python 3 (3.9 or newer) or name one with --python PATH",
        name.display()
    )))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Writes the probe into a new private directory under the temp directory
/// (0700, a random name); the outer runner removes it after the run.
pub fn write_probe() -> std::io::Result<PathBuf> {
    let dir = crate::safe_fs::private_dir(&std::env::temp_dir(), "forkscope-py")?;
    let written = (|| {
        std::fs::create_dir(dir.join("forkscope_probe"))?;
        for (name, text) in PROBE_FILES {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// `dev:ino` of fds 1 and 2: the pipes the collector reads for this
/// process (a fork's child gets its own pipes only in place of these).
pub fn out_idents() -> String {
    let one = |fd: i32| {
        // SAFETY: fds 1 and 2 stay open for the borrow (we never close them).
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::sys::stat::fstat(b)
            .map(|st| format!("{}:{}", st.st_dev, st.st_ino))
            .unwrap_or_else(|_| "-".into())
    };
    format!("{},{}", one(1), one(2))
}

/// The environment `main` execs Python with: ours, plus the probe's
/// variables and its directory first on `PYTHONPATH`.
pub fn python_env(
    prog: &PythonProgram,
    stdout_block: bool,
    gated: bool,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use std::ffi::OsString;
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    let dir = prog.probe_dir.clone().unwrap_or_default();
    let mut pp = dir.clone().into_os_string();
    if let Some(old) = env.get(std::ffi::OsStr::new("PYTHONPATH"))
        && !old.is_empty()
    {
        pp.push(":");
        pp.push(old);
    }
    env.insert("PYTHONPATH".into(), pp);
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    for (k, v) in [
        (PROC_ENV, OsString::from("main")),
        (ROLE_ENV, OsString::from("main")),
        (
            SCRIPT_ENV,
            std::path::absolute(&prog.script)
                .unwrap_or_else(|_| prog.script.clone())
                .into_os_string(),
        ),
        (EXE_ENV, exe.into_os_string()),
        (
            STDOUT_ENV,
            OsString::from(if stdout_block { "block" } else { "line" }),
        ),
        (GATED_ENV, OsString::from(if gated { "1" } else { "0" })),
        (OUT_ENV, OsString::from(out_idents())),
        (DIR_ENV, dir.into_os_string()),
    ] {
        env.insert(k.into(), v);
    }
    env.into_iter().collect()
}

/// The program reads what forkscope was given on stdin (a pipe, a file),
/// as under plain python3: `main` opens the app's fd 0 again through
/// `/proc` (the runner's own stdin is the app's lifeline, and the core's is
/// `/dev/null`). Not a terminal: the run is not the terminal's foreground
/// process group, so a read would stop the program (SIGTTIN); it keeps
/// `/dev/null` then.
pub fn stdin_from_app(app_pid: i32) {
    let Ok(f) = std::fs::File::open(format!("/proc/{app_pid}/fd/0")) else {
        return;
    };
    if nix::unistd::isatty(&f).unwrap_or(true) {
        return;
    }
    let _ = nix::unistd::dup2_stdin(&f);
}

/// Replaces this process (`main`, connected, its output already piped) by
/// Python running the script. Returns only if the exec failed: why.
pub fn exec_python(prog: &PythonProgram, stdout_block: bool, gated: bool) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let env = python_env(prog, stdout_block, gated);
    let cstr = |b: &[u8]| CString::new(b).ok();
    let mut argv = vec![cstr(prog.python.as_os_str().as_bytes())];
    argv.push(cstr(prog.script.as_os_str().as_bytes()));
    argv.extend(prog.args.iter().map(|a| cstr(a.as_bytes())));
    let Some(argv) = argv.into_iter().collect::<Option<Vec<_>>>() else {
        return "an argument holds a NUL byte".into();
    };
    let envp: Vec<CString> = env
        .iter()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    shim::default_signals();
    match nix::unistd::execve(&argv[0], &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => format!("cannot run {}: {}", prog.python.display(), e.desc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_standing_for_a_script_holds_its_text_exactly() {
        let source = "\n\ns = \"\"\"a\\b\"\"\" + '''c'''\n\tprint(s)  # é \u{1}\n\n";
        for name in ["my prog.py", "x.py", "..py", "über-fork.py", "noext"] {
            let (_, s) = scenario_for(Path::new(name), source, name).expect("loads");
            assert_eq!(s.source, source, "{name}");
            assert!(!s.name.is_empty());
            assert!(
                s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{}",
                s.name
            );
            assert_eq!(s.roles.len(), 1);
        }
    }

    #[test]
    fn no_python_is_one_sentence() {
        let e = find_python(Some(Path::new("no-such-python-here"))).unwrap_err();
        assert!(e.to_string().contains("no-such-python-here"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let e = find_python(Some(Path::new("/nonexistent/python3"))).unwrap_err();
        assert!(e.to_string().contains("not an executable file"), "{e}");
    }
}
