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
        roles: BTreeMap::new(),
        height: 0,
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

/// Estimates are counted, never walked iteration by iteration, and
/// saturate here: far above any limit, and small enough that products of
/// two of them stay finite (no inf, so no NaN from `0 * inf`).
const CAP: f64 = 1e15;

fn sat(x: f64) -> f64 {
    if x.is_nan() { CAP } else { x.clamp(0.0, CAP) }
}

struct Estimator<'a> {
    scenario: &'a Scenario,
    scope: Statics<'a>,
    depth: u32,
    /// Per role, once known: the processes one process of it creates, and
    /// how many levels of processes it starts below itself (1 + the
    /// deepest role it starts). A role spawned from many places is walked
    /// once, not once per place.
    roles: BTreeMap<String, (f64, u32)>,
    /// The levels below the role being walked, so far.
    height: u32,
}

impl Estimator<'_> {
    /// Processes created by one process running `role` (itself excluded).
    fn role(&mut self, role: &str) -> Result<f64, LimitError> {
        let too_deep = || {
            Err(LimitError(format!(
                "processes would nest more than {MAX_DEPTH} levels deep (role {role} starts itself?)"
            )))
        };
        if let Some(&(added, height)) = self.roles.get(role) {
            // Walked again, its deepest role would be entered this deep.
            if self.depth + height - 1 > MAX_DEPTH {
                return too_deep();
            }
            self.height = self.height.max(height);
            return Ok(added);
        }
        if self.depth > MAX_DEPTH {
            return too_deep();
        }
        let Some(r) = self.scenario.roles.get(role) else {
            return Ok(0.0);
        };
        let outer = std::mem::replace(&mut self.height, 0);
        self.depth += 1;
        let (added, _) = self.steps(&r.steps, 1.0)?;
        self.depth -= 1;
        let height = self.height + 1;
        self.height = outer.max(height);
        self.roles.insert(role.to_string(), (added, height));
        Ok(added)
    }

    fn count(&mut self, e: &super::Expr, what: &str) -> Result<Option<f64>, LimitError> {
        match e.eval(&mut self.scope) {
            Ok(v) => {
                let n = match &v {
                    Value::List(l) => l.len() as i64,
                    // `for c in "abc"` runs once per character.
                    Value::Str(s) => s.chars().count() as i64,
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

    /// A sleep whose value the parameters decide (`sleep_ms = "ms"` with
    /// `--set ms=1e300`): refused before the run, like a written one.
    fn duration(&mut self, e: &super::Expr, key: &str) -> Result<(), LimitError> {
        if let Ok(v) = e.eval(&mut self.scope)
            && let Err(m) = super::check_duration_ms(&v)
        {
            return Err(LimitError(format!("{key} {m}")));
        }
        Ok(())
    }

    /// Steps run by `m` processes at once; returns the processes they
    /// create and how many processes run the next step (fork doubles it).
    /// Both are linear in `m`, which is what lets a repeat be counted: a
    /// body that creates `a` and multiplies the processes by `f`, repeated
    /// `n` times, creates a * (1 + f + ... + f^(n-1)).
    fn steps(&mut self, steps: &[Step], mut m: f64) -> Result<(f64, f64), LimitError> {
        let mut added = 0.0;
        for s in steps {
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
                    let n = self.count(count, "repeat")?.unwrap_or(1.0);
                    if n >= 1.0 {
                        let (a, m1) = self.steps(body, m)?;
                        let f = if m > 0.0 { m1 / m } else { 1.0 };
                        // n <= MAX_REPEAT fits an i32.
                        let fn_ = sat(f.powi(n as i32));
                        let series = if f > 1.0 {
                            sat((fn_ - 1.0) / (f - 1.0))
                        } else {
                            n
                        };
                        added += if a > 0.0 { sat(a * series) } else { 0.0 };
                        m = sat(m * fn_);
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
                Op::Sleep(e) => self.duration(e, "sleep_ms")?,
                Op::Add {
                    gap_ms: Some(e), ..
                } => self.duration(e, "gap_ms")?,
                Op::Poll {
                    timeout_ms: Some(e),
                    ..
                } => self.duration(e, "timeout_ms")?,
                _ => {}
            }
            added = sat(added);
            m = sat(m);
        }
        Ok((added, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn file(params: &str, main: &str, more: &str) -> String {
        format!(
            "name = \"t\"\ntitle = \"T\"\nexplain = \"x\"\n{params}\n[roles.main]\nsteps = [ {main} ]\n[roles.child]\nsteps = [ {{ print = \"hi\" }} ]\n{more}"
        )
    }

    /// The estimate for `text` and how long it took.
    fn estimate(text: &str, max_procs: u32) -> (Result<u64, LimitError>, Duration) {
        let s = crate::scenario::load(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let params = crate::scenario::resolve_params(&s, &[]).unwrap();
        let limits = Limits {
            max_procs,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let r = check(&s, &params, &limits);
        (r, t0.elapsed())
    }

    #[test]
    fn repeats_are_counted_not_walked() {
        // Issue 9.8: two levels of 100,000 around a spawn took 475 s.
        let nested = file(
            "",
            r#"{ repeat = 100000, steps = [ { repeat = 100000, steps = [ { spawn = "child" } ] } ] }"#,
            "",
        );
        let (r, took) = estimate(&nested, MAX_MAX_PROCS);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("more than a billion processes"), "{e}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        let three = "{ repeat = 100000, steps = [ { repeat = 100000, steps = [ { repeat = 100000, steps = [ { fork = \"\" } ] } ] } ] }";
        let (r, took) = estimate(&file("", three, ""), MAX_MAX_PROCS);
        assert!(r.unwrap_err().to_string().contains("more than a billion"));
        assert!(took < Duration::from_secs(1), "{took:?}");
        // Exact where it is small: 3 spawns, and 2^3 processes from 3 forks.
        let spawns = r#"{ repeat = 3, steps = [ { spawn = "child" } ] }"#;
        assert_eq!(estimate(&file("", spawns, ""), 64).0, Ok(4));
        let forks = r#"{ repeat = 3, steps = [ { fork = "" } ] }"#;
        assert_eq!(estimate(&file("", forks, ""), 64).0, Ok(8));
        let both = r#"{ repeat = 2, steps = [ { fork = "" }, { spawn = "child" } ] }"#;
        // main forks (+1), both spawn (+2), both fork (+2), all four
        // spawn (+4).
        assert_eq!(estimate(&file("", both, ""), 64).0, Ok(1 + 1 + 2 + 2 + 4));
        let chars = r#"{ for = "c", in = "'abc'", steps = [ { spawn = "child" } ] }"#;
        assert_eq!(estimate(&file("", chars, ""), 64).0, Ok(4));
        let zero = r#"{ repeat = 0, steps = [ { fork = "" } ] }"#;
        assert_eq!(estimate(&file("", zero, ""), 64).0, Ok(1));
    }

    #[test]
    fn a_role_started_from_many_places_is_walked_once() {
        // 20 roles, each starting the next from 10 steps: 10^20 walks
        // without memory of what a role creates.
        let mut more = String::new();
        for i in 0..20 {
            let next = if i == 19 {
                "child".to_string()
            } else {
                format!("r{}", i + 1)
            };
            let steps = vec![format!("{{ spawn = \"{next}\" }}"); 10].join(", ");
            more.push_str(&format!("[roles.r{i}]\nsteps = [ {steps} ]\n"));
        }
        let (r, took) = estimate(&file("", r#"{ spawn = "r0" }"#, &more), MAX_MAX_PROCS);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("nest more than 16"), "{e}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // Memory of a role must not hide how deep it nests when it is
        // reached again from deeper down.
        let mut chain = String::new();
        for i in 0..20 {
            let next = if i == 19 {
                "child".to_string()
            } else {
                format!("r{}", i + 1)
            };
            chain.push_str(&format!(
                "[roles.r{i}]\nsteps = [ {{ spawn = \"{next}\" }} ]\n"
            ));
        }
        let main = r#"{ spawn = "r10" }, { spawn = "r0" }"#;
        let e = estimate(&file("", main, &chain), MAX_MAX_PROCS)
            .0
            .unwrap_err();
        assert!(e.to_string().contains("nest more than 16"), "{e}");
        let fan = r#"{ spawn = "r0" }"#;
        let mut two = String::new();
        two.push_str("[roles.r0]\nsteps = [ { spawn = \"r1\" }, { spawn = \"r1\" } ]\n");
        two.push_str("[roles.r1]\nsteps = [ { spawn = \"child\" }, { spawn = \"child\" } ]\n");
        // main + r0 + 2 r1 + 4 children.
        assert_eq!(estimate(&file("", fan, &two), 64).0, Ok(8));
    }

    #[test]
    fn a_sleep_the_parameters_make_impossible_is_refused() {
        // Issue 9.9, for a sleep a parameter decides.
        for bad in ["1e300", "-5.0"] {
            let params = format!("[params.ms]\ndefault = {bad}");
            let text = file(&params, r#"{ sleep_ms = "ms" }"#, "");
            let e = estimate(&text, 64).0.unwrap_err().to_string();
            assert!(e.starts_with("sleep_ms "), "{e}");
        }
        let params = "[params.ms]\ndefault = 5.0";
        let text = file(params, r#"{ sleep_ms = "ms * 2" }"#, "");
        assert_eq!(estimate(&text, 64).0, Ok(1));
    }
}
