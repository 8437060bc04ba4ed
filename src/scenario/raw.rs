//! The scenario file exactly as TOML spells it. `serde` with
//! `deny_unknown_fields` and `Spanned` values gives every mistake a position;
//! [`super::load`] turns this into the checked [`super::Scenario`].

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub name: S<String>,
    pub title: String,
    pub explain: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub tier: Option<u8>,
    /// Most processes a run may create, when the scenario needs more than
    /// the default (`--max-procs` still decides when given).
    #[serde(default)]
    pub max_procs: Option<S<u32>>,
    /// `"line"` (the default, as on a terminal) or `"block"` (a pipe).
    #[serde(default)]
    pub stdout: Option<S<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, S<Param>>,
    /// Private globals: every process has its own copy (`num = 100`).
    #[serde(default)]
    pub globals: BTreeMap<String, S<toml::Value>>,
    /// Shared values in shared memory (`v = 0`, `x = 0.333`, `s = "hello"`).
    #[serde(default)]
    pub values: BTreeMap<String, S<toml::Value>>,
    /// Shared arrays: a list of numbers, or of `[x, y]` points.
    #[serde(default)]
    pub arrays: BTreeMap<String, S<toml::Value>>,
    /// `threading.local()` attributes: every thread has its own copy.
    #[serde(default)]
    pub thread_locals: BTreeMap<String, S<toml::Value>>,
    /// Process locks (`"l"`, `multiprocessing.Lock`) or thread locks
    /// (`{ name = "l", kind = "thread" }`, `threading.Lock`).
    #[serde(default)]
    pub locks: Vec<S<LockDecl>>,
    #[serde(default)]
    pub pipes: BTreeMap<String, S<Pipe>>,
    #[serde(default)]
    pub queues: BTreeMap<String, S<Queue>>,
    pub roles: BTreeMap<String, S<Role>>,
    /// Questions asked before a run (`[[quiz]]`, see `super::quiz`).
    #[serde(default)]
    pub quiz: Vec<S<super::quiz::RawQuestion>>,
}

/// A lock: its name, or a table with its name and kind.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LockDecl {
    Name(String),
    Table(LockTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockTable {
    pub name: String,
    /// `"process"` (the default) or `"thread"`.
    #[serde(default)]
    pub kind: Option<String>,
}

impl LockDecl {
    pub fn name(&self) -> &str {
        match self {
            LockDecl::Name(n) => n,
            LockDecl::Table(t) => &t.name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub default: S<toml::Value>,
    #[serde(default)]
    pub min: Option<S<toml::Value>>,
    #[serde(default)]
    pub max: Option<S<toml::Value>>,
    #[serde(default)]
    pub help: String,
    /// The value step mode proposes: small, for stepping by hand.
    #[serde(default)]
    pub step: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipe {
    pub ends: [String; 2],
    #[serde(default = "yes")]
    pub duplex: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    #[serde(default)]
    pub maxsize: u32,
    /// The queue lives in this manager's server process (`Manager().Queue()`).
    #[serde(default)]
    pub manager: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub args: Vec<String>,
    pub steps: Vec<S<Step>>,
}

/// One step: exactly one operation key plus the options that go with it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub line: Option<u32>,

    pub print: Option<S<String>>,
    pub end: Option<String>,
    pub narrate: Option<S<String>>,
    /// On a `narrate`: a replay with auto-pause stops at this caption.
    pub pause: Option<S<bool>>,
    pub flush: Option<S<String>>,
    pub sleep_ms: Option<S<toml::Value>>,

    pub spawn: Option<S<String>>,
    /// Starts a real thread in this process running that role (`threading.Thread`).
    pub thread: Option<S<String>>,
    /// A thread's name (`Thread(name=...)`).
    pub name: Option<S<String>>,
    #[serde(rename = "as")]
    pub handle: Option<S<String>>,
    pub args: Option<BTreeMap<String, S<toml::Value>>>,
    pub daemon: Option<bool>,
    /// `fork` (default), `spawn` or `forkserver`: how a `spawn` starts its child.
    pub start_method: Option<S<String>>,
    pub fork: Option<S<String>>,
    pub join: Option<S<String>>,
    pub wait: Option<S<String>>,
    pub exit: Option<S<toml::Value>>,
    pub os_exit: Option<S<toml::Value>>,
    #[serde(rename = "return")]
    pub return_: Option<S<toml::Value>>,

    #[serde(rename = "if")]
    pub if_: Option<S<toml::Value>>,
    pub then: Option<Vec<S<Step>>>,
    #[serde(rename = "else")]
    pub else_: Option<Vec<S<Step>>>,
    pub repeat: Option<S<toml::Value>>,
    pub var: Option<S<String>>,
    #[serde(rename = "for")]
    pub for_: Option<S<String>>,
    #[serde(rename = "in")]
    pub in_: Option<S<toml::Value>>,
    pub steps: Option<Vec<S<Step>>>,
    #[serde(rename = "loop")]
    pub loop_: Option<Vec<S<Step>>>,
    pub set: Option<S<String>>,
    pub value: Option<S<toml::Value>>,
    pub into: Option<S<String>>,

    pub send: Option<S<String>>,
    pub recv: Option<S<String>>,
    pub poll: Option<S<String>>,
    pub timeout_ms: Option<S<toml::Value>>,
    pub put: Option<S<String>>,
    pub get: Option<S<String>>,
    pub qsize: Option<S<String>>,

    pub lock: Option<S<String>>,
    pub unlock: Option<S<String>>,
    pub read: Option<S<String>>,
    pub write: Option<S<String>>,
    pub index: Option<S<toml::Value>>,
    pub add: Option<S<String>>,
    pub by: Option<S<toml::Value>>,
    pub gap_ms: Option<S<toml::Value>>,

    pub pool: Option<S<String>>,
    pub workers: Option<S<toml::Value>>,
    pub apply_async: Option<S<String>>,
    pub apply: Option<S<String>>,
    pub map: Option<S<String>>,
    pub role: Option<S<String>>,
    pub callback: Option<S<String>>,
    pub inputs: Option<S<toml::Value>>,
    pub close: Option<S<String>>,
    /// Starts a manager server process (`Manager()`).
    pub manager: Option<S<String>>,

    pub exec: Option<S<Vec<S<String>>>>,
    pub input: Option<S<toml::Value>>,
    pub capture: Option<bool>,

    pub signal: Option<S<String>>,
    pub sig: Option<S<String>>,
    pub terminate: Option<S<String>>,
}
