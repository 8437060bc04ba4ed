//! Scenarios are data: TOML files (built in, or loaded from a path) that say
//! which shared resources exist and what each role's process does, step by
//! step. This module reads and checks them; `runner` executes them.
//!
//! The format is described for authors in `docs/SCENARIO_FORMAT.md`.

pub mod catalog;
pub mod expr;
pub mod limits;
mod load;
pub mod quiz;
mod raw;

pub use expr::{Expr, Template};
pub use load::{MAX_DURATION_MS, check_duration_ms, load, resolve_params};

use crate::protocol::Value;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A problem with a scenario file, with its position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ScenarioError {
    pub origin: String,
    /// 1-based; 0 when the problem has no place in the file (e.g. `--set`).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub title: String,
    pub explain: String,
    pub source: String,
    pub tier: u8,
    /// The process limit this scenario asks for (`max_procs = 256`), if any.
    pub max_procs: Option<u32>,
    pub params: BTreeMap<String, Param>,
    pub globals: BTreeMap<String, Value>,
    pub values: BTreeMap<String, Value>,
    pub arrays: BTreeMap<String, ArrayDecl>,
    pub locks: Vec<String>,
    /// The locks of `kind = "thread"` (`threading.Lock`): in the memory of
    /// each process, shared by its threads, not by processes.
    pub thread_locks: BTreeSet<String>,
    /// `threading.local()` attributes and their initial values: each
    /// thread (and each process's main thread) has its own copy.
    pub thread_locals: BTreeMap<String, Value>,
    pub pipes: BTreeMap<String, PipeDecl>,
    pub queues: BTreeMap<String, u32>,
    /// Queues that live in a manager's server process: queue -> manager.
    pub manager_queues: BTreeMap<String, String>,
    /// Every manager named by a queue: manager -> its queues.
    pub managers: BTreeMap<String, Vec<String>>,
    pub roles: BTreeMap<String, Role>,
    /// The programs `exec` steps may run, for the consent prompt.
    pub exec_programs: Vec<String>,
    /// How `print` buffers each process's stdout (`stdout = "block"`).
    pub stdout: StdoutMode,
    /// Questions to ask before a run (`[[quiz]]`).
    pub quiz: Vec<quiz::Question>,
}

/// How Python buffers `sys.stdout`: by line on a terminal, in 8 KiB blocks
/// when stdout is a pipe or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutMode {
    /// Written at every newline (and when 8 KiB fill up).
    #[default]
    Line,
    /// Written when 8 KiB fill up, on `flush`, and at a normal exit.
    Block,
}

impl std::str::FromStr for StdoutMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" => Ok(StdoutMode::Line),
            "block" => Ok(StdoutMode::Block),
            other => Err(format!(
                "stdout must be \"line\" or \"block\", not {other:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub default: Value,
    /// The value step mode proposes (small: a run a learner steps
    /// through by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub help: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElemKind {
    Int,
    Float,
    Char,
    Point,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArrayDecl {
    pub kind: ElemKind,
    pub init: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PipeDecl {
    pub ends: [String; 2],
    pub duplex: bool,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub args: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub line: Option<u32>,
    pub op: Op,
}

/// How a `spawn` starts its child (`multiprocessing.get_context(...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMethod {
    /// A fork of the parent: the child has a copy of its memory.
    #[default]
    Fork,
    /// A fresh start of our binary (`exec`): only the role and its args.
    Spawn,
    /// A fork of the forkserver, a server process started fresh once.
    Forkserver,
}

impl StartMethod {
    pub fn parse(s: &str) -> Option<StartMethod> {
        Some(match s {
            "fork" => StartMethod::Fork,
            "spawn" => StartMethod::Spawn,
            "forkserver" => StartMethod::Forkserver,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }
}

/// Which signal a `signal` step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
    Stop,
    Cont,
    Int,
    Usr1,
}

impl Sig {
    pub fn parse(s: &str) -> Option<Sig> {
        let s = s.trim_start_matches("SIG").to_ascii_uppercase();
        Some(match s.as_str() {
            "TERM" => Sig::Term,
            "KILL" => Sig::Kill,
            "STOP" => Sig::Stop,
            "CONT" => Sig::Cont,
            "INT" => Sig::Int,
            "USR1" => Sig::Usr1,
            _ => return None,
        })
    }
}

/// What a step does. Shared resources are referred to by name; processes
/// by the handle an earlier `spawn`/`exec`/`pool` step gave them (`as`).
#[derive(Debug, Clone)]
pub enum Op {
    Print {
        text: Template,
        end: String,
    },
    /// A caption; `true`: a replay with auto-pause stops at it.
    Narrate(Template, bool),
    Sleep(Expr),
    Spawn {
        role: String,
        handle: Option<String>,
        args: Vec<(String, Expr)>,
        daemon: bool,
        /// `None`: the default, fork (not said in the file).
        method: Option<StartMethod>,
    },
    /// `threading.Thread(target=role, args=...).start()`: a real thread of
    /// this process runs the role's steps; its locals are its own, the
    /// process's globals are shared with it.
    Thread {
        role: String,
        handle: Option<String>,
        /// `Thread(name=...)` (a text); default `Thread-N (role)` as CPython's.
        name: Option<Template>,
        args: Vec<(String, Expr)>,
        daemon: bool,
    },
    /// `os.fork()`: both processes go on with the next step.
    Fork {
        into: Option<String>,
    },
    /// Wait for a handle's process (or pool), or `*` for every child;
    /// `into` gets its exit code (minus the signal number if killed).
    Join {
        target: String,
        into: Option<String>,
    },
    /// `os.wait()`: wait for any child.
    Wait {
        into: Option<String>,
    },
    Exit(Expr),
    Return(Expr),
    /// `sys.stdout.flush()`: write what this process's buffer holds.
    Flush,
    /// `os._exit(code)`: ends the process at once, without the normal end
    /// (no joins of its children, no flush: what is buffered is lost).
    OsExit(Expr),
    If {
        cond: Expr,
        then: Vec<Step>,
        els: Vec<Step>,
    },
    Repeat {
        count: Expr,
        var: Option<String>,
        body: Vec<Step>,
    },
    For {
        var: String,
        items: Expr,
        body: Vec<Step>,
    },
    Loop(Vec<Step>),
    Set {
        var: String,
        value: Expr,
    },
    Send {
        end: String,
        value: Expr,
    },
    Recv {
        end: String,
        into: Option<String>,
    },
    Poll {
        end: String,
        timeout_ms: Option<Expr>,
        into: Option<String>,
    },
    Put {
        queue: String,
        value: Expr,
    },
    Get {
        queue: String,
        into: Option<String>,
    },
    Qsize {
        queue: String,
        into: Option<String>,
    },
    Lock(String),
    Unlock(String),
    Read {
        name: String,
        into: Option<String>,
    },
    Write {
        name: String,
        index: Option<Expr>,
        value: Expr,
    },
    /// A real read-modify-write: read, optional gap, write.
    Add {
        name: String,
        by: Expr,
        gap_ms: Option<Expr>,
    },
    Pool {
        name: String,
        workers: Expr,
    },
    ApplyAsync {
        pool: String,
        role: String,
        args: Vec<(String, Expr)>,
        callback: Option<String>,
    },
    Map {
        pool: String,
        role: String,
        inputs: Expr,
        into: Option<String>,
    },
    Close(String),
    /// `pool.apply(f, args)`: run one task in the pool and wait for its result.
    Apply {
        pool: String,
        role: String,
        args: Vec<(String, Expr)>,
        into: Option<String>,
    },
    /// `Manager()`: start the manager's server process.
    Manager(String),
    Exec {
        argv: Vec<Template>,
        input: Option<Expr>,
        into: Option<String>,
        capture: bool,
        handle: Option<String>,
    },
    Signal {
        handle: String,
        sig: Sig,
    },
}

impl Scenario {
    /// Why a gated run (step mode, `--schedule`, `stats`/`explore` with a
    /// schedule) cannot run this scenario, if it cannot.
    pub fn gated_unsupported(&self) -> Option<String> {
        let steps = self.all_steps();
        let forkserver = steps.iter().any(|s| {
            matches!(
                s.op,
                Op::Spawn {
                    method: Some(StartMethod::Forkserver),
                    ..
                }
            )
        });
        if forkserver {
            return Some(format!(
                "{} starts a forkserver, a server process that forks children on request \
                 and never waits for a `go`: gated runs (step mode, --schedule, --schedule-file) \
                 cannot drive it yet; run it free",
                self.name
            ));
        }
        let uses_manager = steps.iter().any(|s| matches!(s.op, Op::Manager(_)));
        uses_manager.then(|| {
            format!(
                "{} starts a Manager, a server process that answers requests as they come \
                 and never waits for a `go`: gated runs (step mode, --schedule, --schedule-file) \
                 cannot drive it yet; run it free",
                self.name
            )
        })
    }

    /// Every step of every role, depth first (for checks and estimates).
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                for body in s.op.bodies() {
                    walk(body, out);
                }
            }
        }
        let mut out = Vec::new();
        for role in self.roles.values() {
            walk(&role.steps, &mut out);
        }
        out
    }
}

impl Op {
    /// The nested step lists of control-flow steps.
    pub fn bodies(&self) -> Vec<&Vec<Step>> {
        match self {
            Op::If { then, els, .. } => vec![then, els],
            Op::Repeat { body, .. } | Op::For { body, .. } | Op::Loop(body) => vec![body],
            _ => vec![],
        }
    }
}
