//! From TOML text to a checked [`Scenario`]: syntax and type errors come from
//! `toml` with their span; everything else (which key makes the step, names
//! of roles, locks, queues, handles and variables, parameter ranges) is
//! checked here, also with a position.

use super::expr::{self, Expr, Template};
use super::raw::{self, S};
use super::*;
use std::collections::BTreeSet;
use std::ops::Range;

/// Names every process can use in expressions.
pub const BUILTIN_NAMES: &[&str] = &["pid", "ppid", "name", "role"];

/// Reads and checks a scenario. `origin` names the file in error messages.
pub fn load(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let at = |span: Option<Range<usize>>, message: String| -> ScenarioError {
        error_at(text, origin, span.map_or(0, |s| s.start), message)
    };
    let file: raw::File = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim();
        // serde lists every allowed key; the docs are a better place for that.
        let msg = match msg.split_once(", expected one of") {
            Some((head, _)) => format!("{head} (the allowed keys are in docs/SCENARIO_FORMAT.md)"),
            None => msg.to_string(),
        };
        at(e.span(), msg)
    })?;
    let mut cx = Cx {
        text,
        origin,
        errors: Vec::new(),
        names: BTreeSet::new(),
        handles: BTreeSet::new(),
    };
    let scenario = cx.build(file);
    match cx.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(scenario),
    }
}

/// The parameter values of one run: the defaults, overridden by `--set`
/// pairs, each checked against its type and range.
pub fn resolve_params(
    scenario: &Scenario,
    sets: &[(String, String)],
) -> Result<BTreeMap<String, Value>, ScenarioError> {
    let err = |message: String| ScenarioError {
        origin: scenario.name.clone(),
        line: 0,
        column: 0,
        message,
    };
    let mut values: BTreeMap<String, Value> = scenario
        .params
        .iter()
        .map(|(k, p)| (k.clone(), p.default.clone()))
        .collect();
    for (key, text) in sets {
        let Some(param) = scenario.params.get(key) else {
            let known: Vec<&str> = scenario.params.keys().map(String::as_str).collect();
            return Err(err(format!(
                "no parameter named {key:?} (this scenario has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let value = parse_like(&param.default, text).ok_or_else(|| {
            err(format!(
                "parameter {key} needs {}, got {text:?}",
                param.default.kind_in_words()
            ))
        })?;
        check_range(key, param, &value).map_err(err)?;
        values.insert(key.clone(), value);
    }
    Ok(values)
}

fn parse_like(example: &Value, text: &str) -> Option<Value> {
    let t = text.trim();
    match example {
        Value::Bool(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Some(Value::Bool(false)),
            _ => None,
        },
        Value::Int(_) => t.parse().ok().map(Value::Int),
        Value::Float(_) => t.parse().ok().map(Value::Float),
        _ => Some(Value::Str(text.to_string())),
    }
}

fn check_range(key: &str, p: &Param, v: &Value) -> Result<(), String> {
    let Some(x) = v.as_f64() else { return Ok(()) };
    if matches!(v, Value::Bool(_)) {
        return Ok(());
    }
    let show = |f: f64| {
        Value::Float(f)
            .to_string()
            .trim_end_matches(".0")
            .to_string()
    };
    if let Some(min) = p.min
        && x < min
    {
        return Err(format!(
            "parameter {key} = {v} is below its minimum {}",
            show(min)
        ));
    }
    if let Some(max) = p.max
        && x > max
    {
        return Err(format!(
            "parameter {key} = {v} is above its maximum {}",
            show(max)
        ));
    }
    Ok(())
}

/// 1-based line and column of a byte offset.
pub fn error_at(text: &str, origin: &str, offset: usize, message: String) -> ScenarioError {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ScenarioError {
        origin: origin.to_string(),
        line,
        column,
        message,
    }
}

struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
    errors: Vec<ScenarioError>,
    /// Names visible to every role: params, globals, shared values.
    names: BTreeSet<String>,
    /// Every `as` handle and pool name in the file.
    handles: BTreeSet<String>,
}

/// What a role's steps may refer to.
struct RoleCx<'r> {
    role: &'r str,
    known: BTreeSet<String>,
}

impl Cx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(error_at(self.text, self.origin, span.start, message.into()));
    }

    fn build(&mut self, f: raw::File) -> Scenario {
        let name = f.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            self.err(
                f.name.span(),
                "name must be letters, digits and '-' (it is typed on the command line)",
            );
        }
        let mut params = BTreeMap::new();
        for (key, p) in &f.params {
            let span = p.span();
            let p = p.get_ref();
            let default = match toml_to_value(p.default.get_ref()) {
                Some(v) => v,
                None => {
                    self.err(
                        p.default.span(),
                        "a default must be a number, bool or string",
                    );
                    continue;
                }
            };
            let bound = |b: &Option<S<toml::Value>>, cx: &mut Self| -> Option<f64> {
                let b = b.as_ref()?;
                let v = toml_to_value(b.get_ref()).and_then(|v| v.as_f64());
                if v.is_none() {
                    cx.err(b.span(), "min and max must be numbers");
                }
                v
            };
            let param = Param {
                min: bound(&p.min, self),
                max: bound(&p.max, self),
                default: default.clone(),
                help: p.help.clone(),
            };
            if let Err(m) = check_range(key, &param, &default) {
                self.err(p.default.span(), format!("default out of range: {m}"));
            }
            let _ = span;
            params.insert(key.clone(), param);
        }
        let mut globals = BTreeMap::new();
        for (k, v) in &f.globals {
            match toml_to_value(v.get_ref()) {
                Some(val) => {
                    globals.insert(k.clone(), val);
                }
                None => self.err(
                    v.span(),
                    format!("global {k} needs a number, bool or string"),
                ),
            }
        }
        let mut values = BTreeMap::new();
        for (k, v) in &f.values {
            match toml_to_value(v.get_ref()) {
                Some(val @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_))) => {
                    values.insert(k.clone(), val);
                }
                _ if k == "locks" => self.err(
                    v.span(),
                    "`locks = [...]` landed inside [values]: put it above the first [table]",
                ),
                _ => self.err(
                    v.span(),
                    format!("shared value {k} must be an int, float, bool or string"),
                ),
            }
        }
        let mut arrays = BTreeMap::new();
        for (k, v) in &f.arrays {
            match array_decl(v.get_ref()) {
                Some(decl) => {
                    arrays.insert(k.clone(), decl);
                }
                None => self.err(
                    v.span(),
                    format!(
                        "array {k} must be a non-empty list of ints, of floats, or of [x, y] points, or a string"
                    ),
                ),
            }
        }
        let locks: Vec<String> = f.locks.iter().map(|l| l.get_ref().clone()).collect();
        let mut pipes = BTreeMap::new();
        let mut ends = BTreeSet::new();
        for (k, p) in &f.pipes {
            let pr = p.get_ref();
            for e in &pr.ends {
                if !ends.insert(e.clone()) {
                    self.err(p.span(), format!("pipe end {e} is declared twice"));
                }
            }
            pipes.insert(
                k.clone(),
                PipeDecl {
                    ends: pr.ends.clone(),
                    duplex: pr.duplex,
                },
            );
        }
        let queues: BTreeMap<String, u32> = f
            .queues
            .iter()
            .map(|(k, q)| (k.clone(), q.get_ref().maxsize))
            .collect();

        // One namespace for everything a step can name.
        let mut seen = BTreeSet::new();
        let declared = params
            .keys()
            .chain(globals.keys())
            .chain(values.keys())
            .chain(arrays.keys())
            .chain(locks.iter())
            .chain(pipes.keys())
            .chain(ends.iter())
            .chain(queues.keys());
        for n in declared {
            if !seen.insert(n.clone()) {
                self.errors.push(ScenarioError {
                    origin: self.origin.to_string(),
                    line: 0,
                    column: 0,
                    message: format!("the name {n} is declared twice"),
                });
            }
        }
        self.names = params
            .keys()
            .chain(globals.keys())
            .chain(values.keys())
            .chain(arrays.keys())
            .cloned()
            .collect();

        if !f.roles.contains_key("main") {
            self.errors.push(ScenarioError {
                origin: self.origin.to_string(),
                line: 1,
                column: 1,
                message: "there is no [roles.main]: the scenario needs a main role".into(),
            });
        }
        for r in f.roles.values() {
            collect_handles(&r.get_ref().steps, &mut self.handles);
        }
        let max_procs = f.max_procs.as_ref().map(|m| {
            let n = *m.get_ref();
            if n == 0 || n > super::limits::MAX_MAX_PROCS {
                self.err(
                    m.span(),
                    format!(
                        "max_procs must be between 1 and {}",
                        super::limits::MAX_MAX_PROCS
                    ),
                );
            }
            n
        });
        let mut scenario = Scenario {
            name,
            max_procs,
            title: f.title.clone(),
            explain: f.explain.trim().to_string(),
            source: f.source.trim_matches('\n').to_string(),
            tier: f.tier.unwrap_or(1),
            params,
            globals,
            values,
            arrays,
            locks,
            pipes,
            queues,
            roles: BTreeMap::new(),
            exec_programs: Vec::new(),
        };
        let role_names: BTreeMap<String, Vec<String>> = f
            .roles
            .iter()
            .map(|(k, r)| (k.clone(), r.get_ref().args.clone()))
            .collect();
        for (rname, r) in &f.roles {
            let r = r.get_ref();
            let mut known: BTreeSet<String> = self.names.clone();
            known.extend(r.args.iter().cloned());
            known.extend(BUILTIN_NAMES.iter().map(|s| s.to_string()));
            collect_assigned(&r.steps, &mut known);
            let mut rc = RoleCx { role: rname, known };
            let steps = self.steps(&r.steps, &mut rc, &scenario, &role_names);
            scenario.roles.insert(
                rname.clone(),
                Role {
                    args: r.args.clone(),
                    steps,
                },
            );
        }
        let mut programs = Vec::new();
        for r in f.roles.values() {
            collect_programs(&r.get_ref().steps, &mut programs);
        }
        scenario.exec_programs = programs;
        scenario
    }

    fn steps(
        &mut self,
        steps: &[S<raw::Step>],
        rc: &mut RoleCx,
        sc: &Scenario,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Vec<Step> {
        steps
            .iter()
            .filter_map(|s| self.step(s, rc, sc, roles))
            .collect()
    }

    fn expr(&mut self, v: &S<toml::Value>, rc: &RoleCx) -> Expr {
        let e = match v.get_ref() {
            toml::Value::String(s) => match expr::parse(s) {
                Ok(e) => e,
                Err(e) => {
                    self.err(
                        v.span().start + 1 + e.offset..v.span().end,
                        format!("in expression {s:?}: {}", e.message),
                    );
                    return Expr::Lit(Value::None);
                }
            },
            other => match toml_expr(other) {
                Some(e) => e,
                None => {
                    self.err(
                        v.span(),
                        "expected a number, bool, list or expression string",
                    );
                    return Expr::Lit(Value::None);
                }
            },
        };
        let mut names = Vec::new();
        e.names(&mut names);
        self.check_names(&names, v.span(), rc);
        e
    }

    fn template(&mut self, v: &S<String>, rc: &RoleCx) -> Template {
        match Template::parse(v.get_ref()) {
            Ok(t) => {
                let mut names = Vec::new();
                t.names(&mut names);
                self.check_names(&names, v.span(), rc);
                t
            }
            Err(e) => {
                self.err(
                    v.span().start + 1 + e.offset..v.span().end,
                    format!("in text {:?}: {}", v.get_ref(), e.message),
                );
                Template {
                    parts: vec![],
                    src: String::new(),
                }
            }
        }
    }

    fn check_names(&mut self, names: &[String], span: Range<usize>, rc: &RoleCx) {
        for n in names {
            if !rc.known.contains(n) {
                self.err(
                    span.clone(),
                    format!(
                        "role {} uses {n:?}, which is not a parameter, global, shared value, argument or variable it sets",
                        rc.role
                    ),
                );
            }
        }
    }

    fn name_in(&mut self, v: &S<String>, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let name = v.get_ref().clone();
        if !ok(&name) {
            self.err(v.span(), format!("unknown {what} {name:?}"));
        }
        name
    }

    fn step(
        &mut self,
        s: &S<raw::Step>,
        rc: &mut RoleCx,
        sc: &Scenario,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Option<Step> {
        let span = s.span();
        let st = s.get_ref();
        let ops: Vec<&str> = [
            ("print", st.print.is_some()),
            ("narrate", st.narrate.is_some()),
            ("sleep_ms", st.sleep_ms.is_some()),
            ("spawn", st.spawn.is_some()),
            ("fork", st.fork.is_some()),
            ("join", st.join.is_some()),
            ("wait", st.wait.is_some()),
            ("exit", st.exit.is_some()),
            ("return", st.return_.is_some()),
            ("if", st.if_.is_some()),
            ("repeat", st.repeat.is_some()),
            ("for", st.for_.is_some()),
            ("loop", st.loop_.is_some()),
            ("set", st.set.is_some()),
            ("send", st.send.is_some()),
            ("recv", st.recv.is_some()),
            ("poll", st.poll.is_some()),
            ("put", st.put.is_some()),
            ("get", st.get.is_some()),
            ("qsize", st.qsize.is_some()),
            ("lock", st.lock.is_some()),
            ("unlock", st.unlock.is_some()),
            ("read", st.read.is_some()),
            ("write", st.write.is_some()),
            ("add", st.add.is_some()),
            ("pool", st.pool.is_some()),
            ("apply_async", st.apply_async.is_some()),
            ("map", st.map.is_some()),
            ("close", st.close.is_some()),
            ("exec", st.exec.is_some()),
            ("signal", st.signal.is_some()),
            ("terminate", st.terminate.is_some()),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| k)
        .collect();
        let op_name = match ops.as_slice() {
            [one] => *one,
            [] => {
                self.err(
                    span,
                    "a step needs one operation (print, sleep_ms, spawn, lock, ...)",
                );
                return None;
            }
            many => {
                self.err(
                    span,
                    format!("a step does one thing, this one has {}", many.join(" and ")),
                );
                return None;
            }
        };
        let is_value = |n: &str| sc.values.contains_key(n) || sc.arrays.contains_key(n);
        let is_end = |n: &str| sc.pipes.values().any(|p| p.ends.iter().any(|e| e == n));
        let into = st.into.as_ref().map(|v| v.get_ref().clone());
        let handles = self.handles.clone();
        let is_handle = |n: &str| n == "*" || handles.contains(n);
        let args = |cx: &mut Self, rc: &mut RoleCx, role: &str| -> Vec<(String, Expr)> {
            let empty = BTreeMap::new();
            let given = st.args.as_ref().unwrap_or(&empty);
            if let Some(wanted) = roles.get(role) {
                let given_names: Vec<&String> = given.keys().collect();
                let mut wanted_sorted: Vec<&String> = wanted.iter().collect();
                wanted_sorted.sort();
                if given_names != wanted_sorted {
                    cx.err(
                        span.clone(),
                        format!(
                            "role {role} takes args [{}], this step gives [{}]",
                            wanted.join(", "),
                            given.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
            given
                .iter()
                .map(|(k, v)| (k.clone(), cx.expr(v, rc)))
                .collect()
        };
        let body = |cx: &mut Self, rc: &mut RoleCx, b: &Option<Vec<S<raw::Step>>>| {
            b.as_ref()
                .map(|b| cx.steps(b, rc, sc, roles))
                .unwrap_or_default()
        };
        let role_ref = |cx: &mut Self, v: &S<String>| -> String {
            let r = v.get_ref().clone();
            if !roles.contains_key(&r) {
                cx.err(v.span(), format!("unknown role {r:?}"));
            }
            r
        };
        let opt_expr = |cx: &mut Self, rc: &RoleCx, v: &Option<S<toml::Value>>| {
            v.as_ref().map(|v| cx.expr(v, rc))
        };
        let need_expr = |cx: &mut Self, rc: &RoleCx, v: &Option<S<toml::Value>>, what: &str| match v
        {
            Some(v) => cx.expr(v, rc),
            None => {
                cx.err(span.clone(), format!("this {op_name} step needs {what}"));
                Expr::Lit(Value::None)
            }
        };
        let op = match op_name {
            "print" => Op::Print {
                text: self.template(st.print.as_ref()?, rc),
                end: st.end.clone().unwrap_or_else(|| "\n".into()),
            },
            "narrate" => Op::Narrate(self.template(st.narrate.as_ref()?, rc)),
            "sleep_ms" => Op::Sleep(self.expr(st.sleep_ms.as_ref()?, rc)),
            "spawn" => {
                let role = role_ref(self, st.spawn.as_ref()?);
                Op::Spawn {
                    args: args(self, rc, &role),
                    role,
                    handle: st.handle.as_ref().map(|h| h.get_ref().clone()),
                    daemon: st.daemon.unwrap_or(false),
                }
            }
            "fork" => {
                let v = st.fork.as_ref()?.get_ref().clone();
                Op::Fork {
                    into: (!v.is_empty()).then_some(v),
                }
            }
            "join" => Op::Join {
                target: self.name_in(st.join.as_ref()?, "process handle or pool", is_handle),
                into,
            },
            "wait" => {
                let v = st.wait.as_ref()?.get_ref().clone();
                Op::Wait {
                    into: (!v.is_empty()).then_some(v),
                }
            }
            "exit" => Op::Exit(self.expr(st.exit.as_ref()?, rc)),
            "return" => Op::Return(self.expr(st.return_.as_ref()?, rc)),
            "if" => Op::If {
                cond: self.expr(st.if_.as_ref()?, rc),
                then: body(self, rc, &st.then),
                els: body(self, rc, &st.else_),
            },
            "repeat" => Op::Repeat {
                count: self.expr(st.repeat.as_ref()?, rc),
                var: st.var.as_ref().map(|v| v.get_ref().clone()),
                body: body(self, rc, &st.steps),
            },
            "for" => Op::For {
                var: st.for_.as_ref()?.get_ref().clone(),
                items: need_expr(self, rc, &st.in_, "`in = [...]`"),
                body: body(self, rc, &st.steps),
            },
            "loop" => Op::Loop(body(self, rc, &st.loop_)),
            "set" => Op::Set {
                var: st.set.as_ref()?.get_ref().clone(),
                value: need_expr(self, rc, &st.value, "a `value`"),
            },
            "send" => Op::Send {
                end: self.name_in(st.send.as_ref()?, "pipe end", is_end),
                value: need_expr(self, rc, &st.value, "a `value`"),
            },
            "recv" => Op::Recv {
                end: self.name_in(st.recv.as_ref()?, "pipe end", is_end),
                into,
            },
            "poll" => Op::Poll {
                end: self.name_in(st.poll.as_ref()?, "pipe end", is_end),
                timeout_ms: opt_expr(self, rc, &st.timeout_ms),
                into,
            },
            "put" => Op::Put {
                queue: self.name_in(st.put.as_ref()?, "queue", |n| sc.queues.contains_key(n)),
                value: need_expr(self, rc, &st.value, "a `value`"),
            },
            "get" => Op::Get {
                queue: self.name_in(st.get.as_ref()?, "queue", |n| sc.queues.contains_key(n)),
                into,
            },
            "qsize" => Op::Qsize {
                queue: self.name_in(st.qsize.as_ref()?, "queue", |n| sc.queues.contains_key(n)),
                into,
            },
            "lock" => Op::Lock(self.name_in(st.lock.as_ref()?, "lock", |n| {
                sc.locks.iter().any(|l| l == n)
            })),
            "unlock" => Op::Unlock(self.name_in(st.unlock.as_ref()?, "lock", |n| {
                sc.locks.iter().any(|l| l == n)
            })),
            "read" => Op::Read {
                name: self.name_in(st.read.as_ref()?, "shared value", is_value),
                into,
            },
            "write" => {
                let w = st.write.as_ref()?;
                let name = w.get_ref().clone();
                let private = sc.globals.contains_key(&name);
                if !is_value(&name) && !private {
                    self.err(w.span(), format!("unknown shared value or global {name:?}"));
                }
                Op::Write {
                    name,
                    index: opt_expr(self, rc, &st.index),
                    value: need_expr(self, rc, &st.value, "a `value`"),
                }
            }
            "add" => {
                let a = st.add.as_ref()?;
                let name = a.get_ref().clone();
                if !sc.values.contains_key(&name) && !sc.globals.contains_key(&name) {
                    self.err(a.span(), format!("unknown shared value or global {name:?}"));
                }
                Op::Add {
                    name,
                    by: need_expr(self, rc, &st.by, "`by = N`"),
                    gap_ms: opt_expr(self, rc, &st.gap_ms),
                }
            }
            "pool" => Op::Pool {
                name: st.pool.as_ref()?.get_ref().clone(),
                workers: need_expr(self, rc, &st.workers, "`workers = N`"),
            },
            "apply_async" => {
                let role = match &st.role {
                    Some(r) => role_ref(self, r),
                    None => {
                        self.err(span.clone(), "apply_async needs `role = \"...\"`");
                        String::new()
                    }
                };
                Op::ApplyAsync {
                    pool: self.name_in(st.apply_async.as_ref()?, "pool", is_handle),
                    args: args(self, rc, &role),
                    role,
                    callback: st.callback.as_ref().map(|c| role_ref(self, c)),
                }
            }
            "map" => {
                let role = match &st.role {
                    Some(r) => role_ref(self, r),
                    None => {
                        self.err(span.clone(), "map needs `role = \"...\"`");
                        String::new()
                    }
                };
                Op::Map {
                    pool: self.name_in(st.map.as_ref()?, "pool", is_handle),
                    role,
                    inputs: need_expr(self, rc, &st.inputs, "`inputs = [...]`"),
                    into,
                }
            }
            "close" => Op::Close(self.name_in(st.close.as_ref()?, "pool or pipe end", |n| {
                is_handle(n) || is_end(n)
            })),
            "exec" => {
                let argv_raw = st.exec.as_ref()?;
                if argv_raw.get_ref().is_empty() {
                    self.err(argv_raw.span(), "exec needs a program: exec = [\"sort\"]");
                }
                let argv = argv_raw
                    .get_ref()
                    .iter()
                    .map(|a| self.template(a, rc))
                    .collect();
                Op::Exec {
                    argv,
                    input: opt_expr(self, rc, &st.input),
                    into,
                    capture: st.capture.unwrap_or(true),
                    handle: st.handle.as_ref().map(|h| h.get_ref().clone()),
                }
            }
            "signal" | "terminate" => {
                let (h, sig) = if op_name == "terminate" {
                    (st.terminate.as_ref()?, Sig::Term)
                } else {
                    let sig = match &st.sig {
                        Some(s) => Sig::parse(s.get_ref()).unwrap_or_else(|| {
                            self.err(
                                s.span(),
                                format!(
                                    "unknown signal {:?} (TERM, KILL, STOP, CONT, INT, USR1)",
                                    s.get_ref()
                                ),
                            );
                            Sig::Term
                        }),
                        None => Sig::Term,
                    };
                    (st.signal.as_ref()?, sig)
                };
                Op::Signal {
                    handle: self.name_in(h, "process handle", |n| n != "*" && is_handle(n)),
                    sig,
                }
            }
            other => {
                self.err(span, format!("operation {other} is not supported"));
                return None;
            }
        };
        let _ = &rc.role;
        Some(Step { line: st.line, op })
    }
}

/// Every name a role's steps assign (loop variables, `set`, `into`, ...):
/// they are the role's private variables.
fn collect_assigned(steps: &[S<raw::Step>], out: &mut BTreeSet<String>) {
    for s in steps {
        let st = s.get_ref();
        for v in [&st.set, &st.into, &st.var, &st.for_, &st.fork, &st.wait]
            .into_iter()
            .flatten()
        {
            out.insert(v.get_ref().clone());
        }
        for b in [&st.then, &st.else_, &st.steps, &st.loop_]
            .into_iter()
            .flatten()
        {
            collect_assigned(b, out);
        }
    }
}

/// The command lines of every `exec` step, as written.
fn collect_programs(steps: &[S<raw::Step>], out: &mut Vec<String>) {
    for s in steps {
        let st = s.get_ref();
        if let Some(argv) = &st.exec {
            let words: Vec<&str> = argv
                .get_ref()
                .iter()
                .map(|a| a.get_ref().as_str())
                .collect();
            out.push(words.join(" "));
        }
        for b in [&st.then, &st.else_, &st.steps, &st.loop_]
            .into_iter()
            .flatten()
        {
            collect_programs(b, out);
        }
    }
}

fn collect_handles(steps: &[S<raw::Step>], out: &mut BTreeSet<String>) {
    for s in steps {
        let st = s.get_ref();
        if let Some(h) = &st.handle {
            out.insert(h.get_ref().clone());
        }
        if let Some(p) = &st.pool {
            out.insert(p.get_ref().clone());
        }
        for b in [&st.then, &st.else_, &st.steps, &st.loop_]
            .into_iter()
            .flatten()
        {
            collect_handles(b, out);
        }
    }
}

fn toml_to_value(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::Str(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(items) => {
            Value::List(items.iter().map(toml_to_value).collect::<Option<_>>()?)
        }
        _ => return None,
    })
}

/// A TOML literal used where an expression is expected: numbers and bools
/// as themselves, arrays element by element (strings inside arrays are
/// expressions too).
fn toml_expr(v: &toml::Value) -> Option<Expr> {
    Some(match v {
        toml::Value::String(s) => expr::parse(s).ok()?,
        toml::Value::Array(items) => {
            Expr::List(items.iter().map(toml_expr).collect::<Option<_>>()?)
        }
        other => Expr::Lit(toml_to_value(other)?),
    })
}

fn array_decl(v: &toml::Value) -> Option<ArrayDecl> {
    let init = toml_to_value(v)?;
    let kind = match &init {
        Value::Str(_) => ElemKind::Char,
        Value::List(items) if !items.is_empty() => {
            if items.iter().all(|i| matches!(i, Value::Int(_))) {
                ElemKind::Int
            } else if items.iter().all(|i| i.as_f64().is_some() && !matches!(i, Value::Bool(_))) {
                ElemKind::Float
            } else if items.iter().all(|i| {
                matches!(i, Value::List(p) if p.len() == 2 && p.iter().all(|x| x.as_f64().is_some()))
            }) {
                ElemKind::Point
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(ArrayDecl { kind, init })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "t"
title = "T"
explain = "x"
locks = []
[params.n]
default = 2
min = 1
max = 5
[values]
v = 0
[roles.main]
steps = [
  { print = "n={n}", line = 1 },
  { repeat = "n", var = "i", steps = [ { add = "v", by = 1 } ] },
  { spawn = "child", as = "c", args = { k = 3 } },
  { join = "c" },
]
[roles.child]
args = ["k"]
steps = [ { print = "k={k} v={v}" } ]
"#;

    #[test]
    fn a_good_file_loads() {
        let s = load(OK, "t.toml").unwrap();
        assert_eq!(s.roles["main"].steps.len(), 4);
        let p = resolve_params(&s, &[("n".into(), "4".into())]).unwrap();
        assert_eq!(p["n"], Value::Int(4));
        let e = resolve_params(&s, &[("n".into(), "9".into())]).unwrap_err();
        assert!(e.to_string().contains("above its maximum 5"), "{e}");
    }

    fn err_of(text: &str) -> String {
        load(text, "bad.toml").unwrap_err().to_string()
    }

    /// `bad.toml:L:` for the line of `text` that holds `needle`.
    fn at_line(text: &str, needle: &str) -> String {
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        format!("bad.toml:{line}:")
    }

    #[test]
    fn mistakes_have_positions() {
        let e = err_of("name = \"t\"\ntitle = \n");
        assert!(e.starts_with("bad.toml:2:"), "{e}");
        let text = OK.replace("{ join = \"c\" }", "{ jion = \"c\" }");
        let e = err_of(&text);
        assert!(
            e.starts_with(&at_line(&text, "jion")) && e.contains("jion"),
            "{e}"
        );
        let e = err_of(&OK.replace("spawn = \"child\"", "spawn = \"kid\""));
        assert!(e.contains("unknown role \"kid\""), "{e}");
        let text = OK.replace("{ print = \"n={n}\", line = 1 }", "{ print = 5 }");
        let e = err_of(&text);
        assert!(e.starts_with(&at_line(&text, "print = 5")), "{e}");
        let text = OK.replace("default = 2", "default = 9");
        let e = err_of(&text);
        assert!(e.starts_with(&at_line(&text, "default = 9")), "{e}");
        assert!(e.contains("out of range"), "{e}");
        let e = err_of(&OK.replace("n={n}", "n={nn}"));
        assert!(e.contains("\"nn\""), "{e}");
    }
}
