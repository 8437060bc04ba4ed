//! Safe limits, checked before anything forks: how many processes a
//! scenario can create, how deep spawns nest, how long loops and runs are.

use super::expr::Scope;
use super::{Op, Scenario, Step};
use crate::protocol::Value;
use std::collections::BTreeMap;

pub const DEFAULT_MAX_PROCS: u32 = 64;
pub const MAX_MAX_PROCS: u32 = 1024;
pub const MAX_DEPTH: u32 = 16;
pub const MAX_REPEAT: i64 = 100_000;
pub const DEFAULT_TIMEOUT_S: f64 = 60.0;

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_procs: u32,
    pub timeout_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_procs: DEFAULT_MAX_PROCS,
            timeout_s: DEFAULT_TIMEOUT_S,
        }
    }
}

impl Limits {
    /// The default limits, with the process limit the scenario asks for
    /// when that is more (`fan-out-stress` starts 200 children).
    pub fn for_scenario(scenario: &Scenario) -> Limits {
        let asked = scenario.max_procs.unwrap_or(0).min(MAX_MAX_PROCS);
        Limits {
            max_procs: DEFAULT_MAX_PROCS.max(asked),
            ..Limits::default()
        }
    }
}

/// Why a scenario is refused before it runs. The message names the limit
/// and the flag that raises it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

/// Upper bound of the processes the scenario creates (main included), from
/// its steps and this run's parameters.
pub fn check(
    scenario: &Scenario,
    params: &BTreeMap<String, Value>,
    limits: &Limits,
) -> Result<u64, LimitError> {
    let mut est = Estimator {
        scenario,
        scope: Statics {
            params,
            globals: &scenario.globals,
        },
        depth: 0,
    };
    let created = est.role("main")?;
    let total = 1.0 + created;
    if total > f64::from(limits.max_procs) {
        let shown = if total > 1e9 {
            "more than a billion".to_string()
        } else {
            format!("{total:.0}")
        };
        return Err(LimitError(format!(
            "this run would create {shown} processes, over the limit of {} (raise it with --max-procs, at most {MAX_MAX_PROCS})",
            limits.max_procs
        )));
    }
    Ok(total as u64)
}

struct Statics<'a> {
    params: &'a BTreeMap<String, Value>,
    globals: &'a BTreeMap<String, Value>,
}

impl Scope for Statics<'_> {
    fn lookup(&mut self, name: &str) -> Result<Value, String> {
        self.params
            .get(name)
            .or_else(|| self.globals.get(name))
            .cloned()
            .ok_or_else(|| format!("{name} is only known at run time"))
    }
    fn call(&mut self, name: &str, _: &[Value]) -> Result<Option<Value>, String> {
        Err(format!("{name}() is only known at run time"))
    }
}

struct Estimator<'a> {
    scenario: &'a Scenario,
    scope: Statics<'a>,
    depth: u32,
}

impl Estimator<'_> {
    /// Processes created by one process running `role` (itself excluded).
    fn role(&mut self, role: &str) -> Result<f64, LimitError> {
        if self.depth > MAX_DEPTH {
            return Err(LimitError(format!(
                "processes would nest more than {MAX_DEPTH} levels deep (role {role} starts itself?)"
            )));
        }
        let Some(r) = self.scenario.roles.get(role) else {
            return Ok(0.0);
        };
        self.depth += 1;
        let (added, _) = self.steps(&r.steps, 1.0)?;
        self.depth -= 1;
        Ok(added)
    }

    fn count(&mut self, e: &super::Expr, what: &str) -> Result<Option<f64>, LimitError> {
        match e.eval(&mut self.scope) {
            Ok(v) => {
                let n = match &v {
                    Value::List(l) => l.len() as i64,
                    v => v.as_i64().unwrap_or(0),
                };
                if n > MAX_REPEAT {
                    return Err(LimitError(format!(
                        "a {what} of {n} is over the limit of {MAX_REPEAT}"
                    )));
                }
                Ok(Some(n.max(0) as f64))
            }
            Err(_) => Ok(None),
        }
    }

    /// Walks steps run by `m` processes at once; returns the processes they
    /// create and how many processes run the next step (fork doubles it).
    fn steps(&mut self, steps: &[Step], mut m: f64) -> Result<(f64, f64), LimitError> {
        let mut added = 0.0;
        for s in steps {
            if added > 1e12 {
                break;
            }
            match &s.op {
                Op::Spawn { role, method, .. } => {
                    // A forkserver is one more process (at most one per owner).
                    let server = f64::from(u8::from(
                        *method == Some(crate::scenario::StartMethod::Forkserver),
                    ));
                    added += m * (1.0 + server + self.role(role)?);
                }
                Op::Fork { .. } => {
                    added += m;
                    m *= 2.0;
                }
                Op::Exec { .. } => added += m,
                Op::Pool { workers, .. } => {
                    added += m * self.count(workers, "pool")?.unwrap_or(1.0);
                }
                // A manager's server process.
                Op::Manager(_) => added += m,
                Op::ApplyAsync { role, .. } | Op::Map { role, .. } | Op::Apply { role, .. } => {
                    // Tasks run inside pool workers; they may spawn too.
                    added += m * self.role(role)?;
                }
                Op::If { then, els, .. } => {
                    let (a, m1) = self.steps(then, m)?;
                    let (b, m2) = self.steps(els, m)?;
                    added += a + b;
                    m = m1.max(m2);
                }
                Op::Repeat { count, body, .. }
                | Op::For {
                    items: count, body, ..
                } => {
                    let n = self.count(count, "repeat")?.unwrap_or(1.0) as u64;
                    for _ in 0..n {
                        let (a, m1) = self.steps(body, m)?;
                        if a == 0.0 && m1 == m {
                            break;
                        }
                        added += a;
                        m = m1;
                        if added > 1e12 {
                            break;
                        }
                    }
                }
                Op::Loop(body) => {
                    let (a, _) = self.steps(body, m)?;
                    if a > 0.0 {
                        return Err(LimitError(
                            "a `loop` that starts processes would never stop starting them".into(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok((added, m))
    }
}
