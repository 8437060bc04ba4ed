//! From TOML text to a checked [`Scenario`]: syntax and type errors come from
//! `toml` with their span; everything else (which key makes the step, names
//! of roles, locks, queues, handles and variables, parameter ranges) is
//! checked here, also with a position.

use super::expr::{self, Expr, Template};
use super::raw::{self, S};
use super::*;
use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;

/// Names every process can use in expressions.
pub const BUILTIN_NAMES: &[&str] = &["pid", "ppid", "name", "role", "start_ms", "thread_name"];

/// Reads and checks a scenario. `origin` names the file in error messages.
pub fn load(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let at = |span: Option<Range<usize>>, message: String| -> ScenarioError {
        error_at(text, origin, span.map_or(0, |s| s.start), message)
    };
    if let Some(offset) = too_deep(text) {
        return Err(at(
            Some(offset..offset),
            format!(
                "brackets and braces nest more than {MAX_NESTING} levels deep here (steps inside steps: at most {MAX_STEP_DEPTH})"
            ),
        ));
    }
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
        handles: Rc::new(BTreeSet::new()),
        depth: 0,
    };
    let scenario = cx.build(file);
    match cx.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(scenario),
    }
}

/// How deeply `[` and `{` may nest in a scenario file. Reading a step
/// takes about 100 KB of stack per level in a debug build (serde's code
/// for a step with all its keys), so this is checked first, on the text;
/// the built-in scenarios nest at most 6 deep.
pub const MAX_NESTING: usize = 24;

/// How deeply steps may nest inside steps (`repeat`, `if`, `for`, `loop`):
/// as deep as [`MAX_NESTING`] lets inline tables go.
pub const MAX_STEP_DEPTH: usize = MAX_NESTING / 2 - 1;

/// The offset of the first `[` or `{` nested more than [`MAX_NESTING`]
/// deep, outside strings and comments.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    let starts = |at: usize, pat: &str| text.get(at..).is_some_and(|t| t.starts_with(pat));
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => while chars.next_if(|&(_, c)| c != '\n').is_some() {},
            '"' | '\'' => {
                let triple = if c == '"' { "\"\"\"" } else { "'''" };
                let close = if starts(i, triple) {
                    chars.next();
                    chars.next();
                    triple
                } else if c == '"' {
                    "\""
                } else {
                    "'"
                };
                while let Some((k, d)) = chars.next() {
                    if d == '\\' && c == '"' {
                        chars.next();
                    } else if starts(k, close) {
                        for _ in 1..close.len() {
                            chars.next();
                        }
                        break;
                    } else if d == '\n' && close.len() == 1 {
                        break; // not closed on its line: toml will say where
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
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

/// The longest sleep, gap or poll timeout a step may ask for: a day.
pub const MAX_DURATION_MS: f64 = 86_400_000.0;

/// Why `v` is not a duration in milliseconds a step can wait for.
pub fn check_duration_ms(v: &Value) -> Result<f64, String> {
    let Some(ms) = v.as_f64() else {
        return Err(format!("needs a number of milliseconds, got {}", v.repr()));
    };
    // 1e300 as 1e300, not as its 301 digits (made only for an error).
    let shown = || {
        if ms.is_finite() && ms.abs() >= 1e16 {
            format!("{ms:e}")
        } else {
            v.to_string()
        }
    };
    if ms.is_nan() {
        Err("needs a number of milliseconds, got NaN".into())
    } else if ms < 0.0 {
        Err(format!("cannot be negative, got {}", shown()))
    } else if ms > MAX_DURATION_MS {
        Err(format!(
            "{} ms is longer than the limit of a day ({MAX_DURATION_MS:.0} ms)",
            shown()
        ))
    } else {
        Ok(ms)
    }
}

/// The value of an expression that depends on nothing (no variable, no
/// process function): `Some(Ok)` or `Some(Err)` when it always gives that,
/// `None` when it is only known at run time.
pub fn constant(e: &Expr) -> Option<Result<Value, String>> {
    struct Nothing {
        depends: bool,
    }
    impl expr::Scope for Nothing {
        fn lookup(&mut self, name: &str) -> Result<Value, String> {
            self.depends = true;
            Err(format!("{name} is only known at run time"))
        }
        fn call(&mut self, name: &str, _: &[Value]) -> Result<Option<Value>, String> {
            if expr::PROCESS_FUNCTIONS.contains(&name) {
                self.depends = true;
                return Err(format!("{name}() is only known at run time"));
            }
            Ok(None)
        }
    }
    let mut scope = Nothing { depends: false };
    let r = e.eval(&mut scope);
    (!scope.depends).then_some(r)
}

/// 1-based line and column of a byte offset.
pub fn error_at(text: &str, origin: &str, offset: usize, message: String) -> ScenarioError {
    let mut offset = offset.min(text.len());
    // The offset may come from inside a string with escapes, which is
    // shorter in the file: never cut a character in two.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
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
    handles: Rc<BTreeSet<String>>,
    /// How many step lists enclose the one being read.
    depth: usize,
}

/// What a role's steps may refer to.
struct RoleCx<'r> {
    role: &'r str,
    known: BTreeSet<String>,
}

impl Cx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        // Only the first error is shown, and finding a line and column
        // reads the text up to it: 30,000 bad steps took 12 s.
        if self.errors.is_empty() {
            self.errors
                .push(error_at(self.text, self.origin, span.start, message.into()));
        }
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
                step: p.step.as_ref().and_then(|s| toml_to_value(s.get_ref())),
                help: p.help.clone(),
            };
            if let Err(m) = check_range(key, &param, &default) {
                self.err(p.default.span(), format!("default out of range: {m}"));
            }
            if let Some(s) = &p.step {
                match &param.step {
                    Some(v) => {
                        if let Err(m) = check_range(key, &param, v) {
                            self.err(s.span(), format!("step value out of range: {m}"));
                        }
                    }
                    None => self.err(s.span(), "a step value must be a number, bool or string"),
                }
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
        let locks: Vec<String> = f
            .locks
            .iter()
            .map(|l| l.get_ref().name().to_string())
            .collect();
        let mut thread_locks = BTreeSet::new();
        for l in &f.locks {
            if let raw::LockDecl::Table(t) = l.get_ref() {
                match t.kind.as_deref() {
                    None | Some("process") => {}
                    Some("thread") => {
                        thread_locks.insert(t.name.clone());
                    }
                    Some(k) => self.err(
                        l.span(),
                        format!("unknown lock kind {k:?} (process, thread)"),
                    ),
                }
            }
        }
        let mut thread_locals = BTreeMap::new();
        for (k, v) in &f.thread_locals {
            match toml_to_value(v.get_ref()) {
                Some(val) => {
                    thread_locals.insert(k.clone(), val);
                }
                None => self.err(
                    v.span(),
                    format!("thread local {k} needs a number, bool or string"),
                ),
            }
        }
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
        let mut manager_queues = BTreeMap::new();
        let mut managers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, q) in &f.queues {
            if let Some(m) = &q.get_ref().manager {
                let m_name = m.get_ref().clone();
                if m_name.is_empty()
                    || !m_name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.err(
                        m.span(),
                        "a manager's name must be letters, digits and '_' (it names its process)",
                    );
                }
                manager_queues.insert(k.clone(), m_name.clone());
                managers.entry(m_name).or_default().push(k.clone());
            }
        }

        // One namespace for everything a step can name.
        let mut seen = BTreeSet::new();
        let declared = params
            .keys()
            .chain(globals.keys())
            .chain(thread_locals.keys())
            .chain(values.keys())
            .chain(arrays.keys())
            .chain(locks.iter())
            .chain(pipes.keys())
            .chain(ends.iter())
            .chain(queues.keys())
            .chain(managers.keys());
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
            .chain(thread_locals.keys())
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
        let mut handles = BTreeSet::new();
        for r in f.roles.values() {
            collect_handles(&r.get_ref().steps, &mut handles);
        }
        self.handles = Rc::new(handles);
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
        let stdout = match &f.stdout {
            None => super::StdoutMode::Line,
            Some(v) => v.get_ref().parse().unwrap_or_else(|m: String| {
                self.err(v.span(), m);
                super::StdoutMode::Line
            }),
        };
        let mut scenario = Scenario {
            name,
            max_procs,
            stdout,
            title: f.title.clone(),
            explain: f.explain.trim().to_string(),
            source: f.source.trim_matches('\n').to_string(),
            tier: f.tier.unwrap_or(1),
            params,
            globals,
            values,
            arrays,
            locks,
            thread_locks,
            thread_locals,
            pipes,
            queues,
            manager_queues,
            managers,
            roles: BTreeMap::new(),
            exec_programs: Vec::new(),
            quiz: Vec::new(),
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
        self.check_threads(&f);
        let mut programs = Vec::new();
        for r in f.roles.values() {
            collect_programs(&r.get_ref().steps, &mut programs);
        }
        scenario.exec_programs = programs;
        scenario.quiz = super::quiz::check(&f.quiz, &scenario, &mut |span, m| self.err(span, m));
        scenario
    }

    fn steps(
        &mut self,
        steps: &[S<raw::Step>],
        rc: &mut RoleCx,
        sc: &Scenario,
        roles: &BTreeMap<String, Vec<String>>,
    ) -> Vec<Step> {
        // Brackets are limited before reading; `[[roles.main.steps.steps]]`
        // headers nest steps without them.
        if self.depth > MAX_STEP_DEPTH {
            if let Some(first) = steps.first() {
                self.err(
                    first.span(),
                    format!("steps nest more than {MAX_STEP_DEPTH} levels deep"),
                );
            }
            return Vec::new();
        }
        self.depth += 1;
        let out = steps
            .iter()
            .filter_map(|s| self.step(s, rc, sc, roles))
            .collect();
        self.depth -= 1;
        out
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

    /// A duration in milliseconds: when its value is known now (it names
    /// no variable and calls nothing random), it must be a number from 0
    /// to [`MAX_DURATION_MS`]; a computed one is checked when it runs.
    fn duration_ms(&mut self, v: &S<toml::Value>, rc: &RoleCx, key: &str) -> Expr {
        let e = self.expr(v, rc);
        if let Some(known) = constant(&e)
            && let Err(m) = known.and_then(|v| check_duration_ms(&v))
        {
            self.err(v.span(), format!("{key}: {m}"));
        }
        e
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
            ("flush", st.flush.is_some()),
            ("sleep_ms", st.sleep_ms.is_some()),
            ("spawn", st.spawn.is_some()),
            ("thread", st.thread.is_some()),
            ("fork", st.fork.is_some()),
            ("join", st.join.is_some()),
            ("wait", st.wait.is_some()),
            ("exit", st.exit.is_some()),
            ("os_exit", st.os_exit.is_some()),
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
            ("apply", st.apply.is_some()),
            ("manager", st.manager.is_some()),
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
        if let Some(n) = &st.name
            && op_name != "thread"
        {
            self.err(
                n.span(),
                format!(
                    "`name` names a thread: it goes with `thread = \"role\"`, not with {op_name}"
                ),
            );
        }
        if let Some(p) = &st.pause
            && op_name != "narrate"
        {
            self.err(
                p.span(),
                format!(
                    "`pause` marks a caption a replay stops at: it goes with `narrate`, not with {op_name}"
                ),
            );
        }
        let is_value = |n: &str| sc.values.contains_key(n) || sc.arrays.contains_key(n);
        let is_end = |n: &str| sc.pipes.values().any(|p| p.ends.iter().any(|e| e == n));
        let into = st.into.as_ref().map(|v| v.get_ref().clone());
        // Shared, not copied: a file may have thousands of steps and handles.
        let handles = Rc::clone(&self.handles);
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
            "narrate" => Op::Narrate(
                self.template(st.narrate.as_ref()?, rc),
                st.pause.as_ref().is_some_and(|p| *p.get_ref()),
            ),
            "flush" => {
                let v = st.flush.as_ref()?;
                if v.get_ref() != "stdout" {
                    self.err(v.span(), "only stdout is flushed: flush = \"stdout\"");
                }
                Op::Flush
            }
            "sleep_ms" => {
                let v = st.sleep_ms.as_ref()?;
                Op::Sleep(self.duration_ms(v, rc, "sleep_ms"))
            }
            "spawn" => {
                let role = role_ref(self, st.spawn.as_ref()?);
                Op::Spawn {
                    args: args(self, rc, &role),
                    role,
                    handle: st.handle.as_ref().map(|h| h.get_ref().clone()),
                    daemon: st.daemon.unwrap_or(false),
                    method: st.start_method.as_ref().map(|m| {
                        StartMethod::parse(m.get_ref()).unwrap_or_else(|| {
                            self.err(
                                m.span(),
                                format!(
                                    "unknown start method {:?} (fork, spawn, forkserver)",
                                    m.get_ref()
                                ),
                            );
                            StartMethod::Fork
                        })
                    }),
                }
            }
            "thread" => {
                let role = role_ref(self, st.thread.as_ref()?);
                Op::Thread {
                    args: args(self, rc, &role),
                    role,
                    handle: st.handle.as_ref().map(|h| h.get_ref().clone()),
                    name: st.name.as_ref().map(|n| self.template(n, rc)),
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
            "os_exit" => Op::OsExit(self.expr(st.os_exit.as_ref()?, rc)),
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
                timeout_ms: st
                    .timeout_ms
                    .as_ref()
                    .map(|v| self.duration_ms(v, rc, "timeout_ms")),
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
                    gap_ms: st
                        .gap_ms
                        .as_ref()
                        .map(|v| self.duration_ms(v, rc, "gap_ms")),
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
            "apply" => {
                let role = match &st.role {
                    Some(r) => role_ref(self, r),
                    None => {
                        self.err(span.clone(), "apply needs `role = \"...\"`");
                        String::new()
                    }
                };
                Op::Apply {
                    pool: self.name_in(st.apply.as_ref()?, "pool", is_handle),
                    args: args(self, rc, &role),
                    role,
                    into,
                }
            }
            "manager" => Op::Manager(self.name_in(st.manager.as_ref()?, "manager", |n| {
                sc.managers.contains_key(n)
            })),
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

/// The steps that start a process: none may follow a thread in a process.
const FORKING_STEPS: &[&str] = &["spawn", "fork", "pool", "manager", "exec"];

/// The steps a thread cannot do yet (pipes, queues, pools, process life).
const NOT_IN_THREADS: &[&str] = &[
    "send",
    "recv",
    "poll",
    "put",
    "get",
    "qsize",
    "apply_async",
    "apply",
    "map",
    "close",
    "wait",
    "exit",
    "os_exit",
    "signal",
    "terminate",
];

/// The operation key of a raw step (for the thread checks; `None` if it
/// has none, which `step` reports).
fn op_key(st: &raw::Step) -> Option<&'static str> {
    [
        ("spawn", st.spawn.is_some()),
        ("fork", st.fork.is_some()),
        ("pool", st.pool.is_some() && st.workers.is_some()),
        ("manager", st.manager.is_some()),
        ("exec", st.exec.is_some()),
        ("thread", st.thread.is_some()),
        ("send", st.send.is_some()),
        ("recv", st.recv.is_some()),
        ("poll", st.poll.is_some()),
        ("put", st.put.is_some()),
        ("get", st.get.is_some()),
        ("qsize", st.qsize.is_some()),
        ("apply_async", st.apply_async.is_some()),
        ("apply", st.apply.is_some()),
        ("map", st.map.is_some()),
        ("close", st.close.is_some()),
        ("wait", st.wait.is_some()),
        ("exit", st.exit.is_some()),
        ("os_exit", st.os_exit.is_some()),
        ("signal", st.signal.is_some()),
        ("terminate", st.terminate.is_some()),
    ]
    .into_iter()
    .find(|(_, on)| *on)
    .map(|(k, _)| k)
}

fn has_thread_step(steps: &[S<raw::Step>]) -> bool {
    steps.iter().any(|s| {
        let st = s.get_ref();
        st.thread.is_some()
            || [&st.then, &st.else_, &st.steps, &st.loop_]
                .into_iter()
                .flatten()
                .any(|b| has_thread_step(b))
    })
}

impl Cx<'_> {
    /// A process with threads must not fork afterwards (CPython 3.12 warns:
    /// the child would get a copy of locks other threads held, forever
    /// held), and a thread's role does only what threads can do yet.
    fn check_threads(&mut self, f: &raw::File) {
        let thread_roles: BTreeSet<String> = f
            .roles
            .values()
            .flat_map(|r| {
                let mut out = Vec::new();
                collect_thread_roles(&r.get_ref().steps, &mut out);
                out
            })
            .collect();
        for (name, r) in &f.roles {
            let in_thread = thread_roles.contains(name);
            let started = in_thread.then(|| format!("role {name} runs as a thread"));
            self.thread_walk(&r.get_ref().steps, in_thread, started);
        }
    }

    /// Walks steps in order; `started` says why the process has threads
    /// by now (None: not yet). Returns it as it is after the steps.
    fn thread_walk(
        &mut self,
        steps: &[S<raw::Step>],
        in_thread: bool,
        mut started: Option<String>,
    ) -> Option<String> {
        for s in steps {
            let st = s.get_ref();
            let key = op_key(st);
            if let Some(k) = key {
                if in_thread && NOT_IN_THREADS.contains(&k) {
                    self.err(
                        s.span(),
                        format!(
                            "a thread cannot {k} yet (this role runs as a thread): \
                             threads may print, sleep, set, read, write, add, lock, \
                             unlock, start and join threads"
                        ),
                    );
                }
                if FORKING_STEPS.contains(&k)
                    && let Some(why) = &started
                {
                    self.err(
                        s.span(),
                        format!(
                            "this {k} starts a process from a process that has threads ({why}): \
                             a process with threads must not fork afterwards (CPython 3.12 warns \
                             \"This process is multi-threaded, use of fork() may lead to deadlocks \
                             in the child\"); start the processes before the threads"
                        ),
                    );
                }
                if k == "thread" && started.is_none() {
                    let (line, column) = line_col(self.text, s.span().start);
                    started = Some(format!("a thread starts at line {line}, column {column}"));
                }
            }
            let looped = st.repeat.is_some() || st.for_.is_some() || st.loop_.is_some();
            let mut after = started.clone();
            for b in [&st.then, &st.else_, &st.steps, &st.loop_]
                .into_iter()
                .flatten()
            {
                // A loop's next round comes after its thread steps too.
                let before = match (&started, looped && has_thread_step(b)) {
                    (None, true) => Some("a thread starts inside this loop".to_string()),
                    (s, _) => s.clone(),
                };
                if let Some(why) = self.thread_walk(b, in_thread, before) {
                    after.get_or_insert(why);
                }
            }
            started = after;
        }
        started
    }
}

fn collect_thread_roles(steps: &[S<raw::Step>], out: &mut Vec<String>) {
    for s in steps {
        let st = s.get_ref();
        if let Some(r) = &st.thread {
            out.push(r.get_ref().clone());
        }
        for b in [&st.then, &st.else_, &st.steps, &st.loop_]
            .into_iter()
            .flatten()
        {
            collect_thread_roles(b, out);
        }
    }
}

/// The 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let at = error_at(text, "", offset, String::new());
    (at.line, at.column)
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
    fn stdout_buffering_and_flush_are_checked() {
        assert_eq!(
            load(OK, "t.toml").unwrap().stdout,
            super::super::StdoutMode::Line
        );
        let text = OK.replace("locks = []", "locks = []\nstdout = \"block\"");
        let s = load(&text, "t.toml").unwrap();
        assert_eq!(s.stdout, super::super::StdoutMode::Block);
        let text = OK.replace("locks = []", "locks = []\nstdout = \"full\"");
        let e = err_of(&text);
        assert!(e.starts_with(&at_line(&text, "full")), "{e}");
        assert!(e.contains("\"line\" or \"block\""), "{e}");
        let text = OK.replace(
            "{ join = \"c\" }",
            "{ flush = \"stdout\" }, { os_exit = 3 }",
        );
        assert!(load(&text, "t.toml").is_ok());
        let text = OK.replace("{ join = \"c\" }", "{ flush = \"stderr\" }");
        let e = err_of(&text);
        assert!(e.starts_with(&at_line(&text, "stderr")), "{e}");
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

    #[test]
    fn impossible_sleeps_are_refused_with_a_position() {
        // Issue 9.9: these passed `check` and panicked in `Duration`.
        for (bad, says) in [
            ("1e300", "longer than the limit of a day"),
            ("inf", "longer than the limit of a day"),
            ("-inf", "cannot be negative"),
            ("nan", "NaN"),
            ("-1", "cannot be negative"),
            ("\"float('nan')\"", "NaN"),
            ("\"1e300 * 10\"", "longer than"),
            ("\"'x'\"", "needs a number"),
            ("\"(2**63) // -1\"", "overflow"),
        ] {
            let text = OK.replace(
                "{ print = \"n={n}\", line = 1 }",
                &format!("{{ sleep_ms = {bad} }}"),
            );
            let e = err_of(&text);
            assert!(e.starts_with(&at_line(&text, "sleep_ms")), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
        let gap = OK.replace("by = 1 }", "by = 1, gap_ms = -3 }");
        assert!(err_of(&gap).contains("gap_ms: cannot be negative"));
        // Computed ones are checked when they run.
        for fine in ["0", "2.5", "\"n * 10\"", "\"random() * 1e300\"", "true"] {
            let text = OK.replace(
                "{ print = \"n={n}\", line = 1 }",
                &format!("{{ sleep_ms = {fine} }}"),
            );
            assert!(load(&text, "t.toml").is_ok(), "{fine}");
        }
    }

    #[test]
    fn non_ascii_expressions_are_errors_with_a_position() {
        // Issue 9.5: a panic on `sleep_ms = "é"` and `print = "{é}"`.
        for step in [
            "{ sleep_ms = \"é\" }",
            "{ print = \"{é}\" }",
            "{ print = \"\\u00e9 {1 + €}\" }",
            "{ sleep_ms = \"\\u00e9\\u00e9 + €\" }",
            "{ print = 'ü {€}' }",
        ] {
            let text = OK.replace("{ print = \"n={n}\", line = 1 }", step);
            let e = err_of(&text);
            assert!(e.starts_with(&at_line(&text, step)), "{step}: {e}");
        }
    }

    #[test]
    fn deep_nesting_in_the_file_is_an_error_not_a_crash() {
        // Issue 9.7, in TOML: arrays in arrays, and repeats in repeats.
        let deep = |open: &str, close: &str, n: usize| {
            OK.replace(
                "v = 0\n",
                &format!("v = 0\nw = {}1{}\n", open.repeat(n), close.repeat(n)),
            )
        };
        for n in [100, 10_000] {
            let e = err_of(&deep("[", "]", n));
            assert!(e.starts_with("bad.toml:"), "{e}");
        }
        let e = err_of(&deep("{ a = ", " }", 10_000));
        assert!(e.starts_with("bad.toml:"), "{e}");
        let repeats = |n: usize| {
            let step = "{ print = \"n={n}\", line = 1 }";
            let nested = format!(
                "{}{step}{}",
                "{ repeat = 2, steps = [ ".repeat(n),
                " ] }".repeat(n)
            );
            OK.replace(step, &nested)
        };
        // The most the limit allows, on a test thread's 2 MB stack.
        let most = MAX_NESTING / 2 - 1;
        assert!(load(&repeats(most), "t.toml").is_ok());
        for n in [most + 1, 39, 1_000, 100_000] {
            let text = repeats(n);
            let e = err_of(&text);
            assert!(e.starts_with(&at_line(&text, "repeat")), "{e}");
            assert!(e.contains("nest more than"), "{e}");
        }
        // Brackets inside strings and comments are not nesting.
        let brackets = "[{".repeat(100);
        let quoted = OK.replace(
            "v = 0\n",
            &format!(
                "v = 0\n# {brackets}\ns1 = \"{brackets}\\\"{brackets}\"\ns2 = '{brackets}'\ns3 = \"\"\"\n{brackets}\"\"\"\ns4 = '''{brackets}\n'''\n"
            ),
        );
        assert!(load(&quoted, "t.toml").is_ok(), "{}", err_of(&quoted));
        // Steps nested by table headers, without brackets.
        let mut headers =
            String::from("name = \"d\"\ntitle = \"T\"\nexplain = \"x\"\n[roles.main]\n");
        for k in 1..=70 {
            headers.push_str(&format!(
                "[[roles.main{}]]\nrepeat = 1\n",
                ".steps".repeat(k)
            ));
        }
        let e = std::thread::Builder::new()
            .stack_size(16 << 20) // what toml's own limit lets serde need
            .spawn(move || err_of(&headers))
            .unwrap()
            .join()
            .unwrap();
        assert!(e.contains("steps nest more than 11 levels deep"), "{e}");
        // Dotted keys as deep as tables.
        let dotted = OK.replace(
            "v = 0\n",
            &format!("v = 0\n{} = 1\n", vec!["a"; 10_000].join(".")),
        );
        assert!(err_of(&dotted).starts_with("bad.toml:"));
    }

    #[test]
    fn many_steps_and_handles_load_quickly() {
        let n = 20_000;
        let steps: Vec<String> = (0..n)
            .map(|i| format!("{{ spawn = \"child\", as = \"c{i}\", args = {{ k = 1 }} }}, {{ join = \"c{i}\" }}"))
            .collect();
        let text = OK.replace(
            "{ join = \"c\" },",
            &format!("{{ join = \"c\" }}, {},", steps.join(",\n")),
        );
        let t0 = std::time::Instant::now();
        let s = load(&text, "t.toml").unwrap();
        assert_eq!(s.roles["main"].steps.len(), 4 + 2 * n);
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn thousands_of_mistakes_are_reported_quickly() {
        let steps = vec!["{ print = \"{zz}\" }"; 30_000].join(",\n");
        let text = OK.replace(
            "{ join = \"c\" },",
            &format!("{{ join = \"c\" }}, {steps},"),
        );
        let t0 = std::time::Instant::now();
        let e = err_of(&text);
        assert!(e.starts_with(&at_line(&text, "zz")), "{e}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn an_offset_inside_a_character_is_not_a_panic() {
        let e = error_at("é\nx", "f", 1, "m".into());
        assert_eq!((e.line, e.column), (1, 1));
    }
}
