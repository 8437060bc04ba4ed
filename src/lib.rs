//! forkscope: run small concurrency scenarios as real Linux processes and
//! watch, event by event, what they do.
//!
//! Data flows one way: [`runner`] (forks the scenario) → [`probe`] (inside
//! every scenario process) → [`collector`] (socket + output pipes → channel)
//! → [`model`] (event log and `World` projection) → views ([`cli`], [`app`]).

pub mod app;
pub mod cli;
pub mod collector;
pub mod jsonl;
pub mod lab;
pub mod limits;
pub mod model;
pub mod probe;
pub mod protocol;
pub mod rng;
pub mod runner;
pub mod safe_fs;
pub mod scenario;
pub mod sched;
pub mod session;
pub mod trace;
pub mod trace_file;
