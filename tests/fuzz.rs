//! Fuzzing (issue 9): the loader, the checker and the expression language
//! get arbitrary text, mutations of the built-in scenarios and generated
//! expressions and step trees. Whatever they get, they answer (a value or
//! an error) without a panic, a stack overflow or a hang.
//!
//! Bounded for `cargo test` (a few seconds); run longer with
//! `FORKSCOPE_FUZZ_CASES=20000 cargo test --release --test fuzz`.

use forkscope::protocol::Value;
use forkscope::scenario::expr::{self, Scope};
use forkscope::scenario::{self, Op, Scenario, Template, catalog, limits};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::{Duration, Instant};

/// The bound of one case: `check` must answer a hostile file in under 2 s
/// (release); a debug build on a busy 2-core machine gets a margin.
const CASE_LIMIT: Duration = Duration::from_secs(5);

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("FORKSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // No regression files written into the checkout.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Variables and process functions for evaluating any expression.
struct Anything;

impl Scope for Anything {
    fn lookup(&mut self, name: &str) -> Result<Value, String> {
        Ok(match name {
            "s" => Value::Str("héllo wörld".into()),
            "l" => Value::List(vec![Value::Int(1), Value::Float(2.5), Value::Int(-3)]),
            "big" => Value::Int(i64::MAX),
            "min" => Value::Int(i64::MIN),
            "f" => Value::Float(1e300),
            "none" => Value::None,
            "b" => Value::Bool(true),
            _ => Value::Int(3),
        })
    }
    fn call(&mut self, name: &str, _: &[Value]) -> Result<Option<Value>, String> {
        Ok(match name {
            "random" | "uniform" | "time" => Some(Value::Float(0.5)),
            "randint" | "cpu_count" => Some(Value::Int(2)),
            "env" => Some(Value::Str("é".into())),
            _ => None,
        })
    }
}

/// Evaluates every expression and renders every text of a loaded scenario,
/// the way a process would (results and errors are both fine).
fn exercise(s: &Scenario) {
    let mut scope = Anything;
    let mut eval = |e: &scenario::Expr| {
        let _ = e.eval(&mut scope);
    };
    let mut texts: Vec<&Template> = Vec::new();
    for step in s.all_steps() {
        match &step.op {
            Op::Print { text, .. } | Op::Narrate(text, _) => texts.push(text),
            Op::Spawn { args, .. } | Op::ApplyAsync { args, .. } => {
                args.iter().for_each(|(_, e)| eval(e))
            }
            Op::Sleep(e)
            | Op::Exit(e)
            | Op::Return(e)
            | Op::If { cond: e, .. }
            | Op::Repeat { count: e, .. }
            | Op::For { items: e, .. }
            | Op::Set { value: e, .. }
            | Op::Send { value: e, .. }
            | Op::Put { value: e, .. }
            | Op::Pool { workers: e, .. }
            | Op::Map { inputs: e, .. } => eval(e),
            Op::Poll {
                timeout_ms: Some(e),
                ..
            } => eval(e),
            Op::Write { index, value, .. } => {
                index.iter().for_each(&mut eval);
                eval(value);
            }
            Op::Add { by, gap_ms, .. } => {
                eval(by);
                gap_ms.iter().for_each(&mut eval);
            }
            Op::Exec { argv, input, .. } => {
                texts.extend(argv.iter());
                input.iter().for_each(&mut eval);
            }
            _ => {}
        }
    }
    for t in texts {
        let _ = t.render(&mut Anything);
    }
}

/// Loads, checks and exercises `text` like `forkscope check` and a run
/// would; fails the case if that takes too long.
fn load_and_check(text: &str) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    if let Ok(s) = scenario::load(text, "fuzz.toml")
        && let Ok(params) = scenario::resolve_params(&s, &[])
    {
        let _ = limits::check(&s, &params, &limits::Limits::default());
        exercise(&s);
    }
    let took = t0.elapsed();
    prop_assert!(took < CASE_LIMIT, "took {took:?}");
    Ok(())
}

/// Hostile pieces to splice into scenario files.
const SNIPPETS: &[&str] = &[
    "é",
    "€",
    "日本",
    "\u{a0}",
    "\u{85}",
    "\\u00e9",
    "{é}",
    "{1 + €}",
    "(2**63) // -1",
    "(2**63) % -1",
    "-9223372036854775807 - 1",
    "2 ** 99999999999",
    "1e300",
    "inf",
    "-inf",
    "nan",
    "-1",
    "0",
    "99999999999999999999",
    "100000",
    "((((((((((((((((((((((((((((((((",
    "))))))))",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "]]]]",
    "{{{{{{{{",
    "}}}}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "#",
    "\n",
    ",",
    "=",
    "{ repeat = 100000, steps = [ { repeat = 100000, steps = [ { spawn = \"main\" } ] } ] },",
    "{ repeat = 100000, steps = [ { fork = \"\" } ] },",
    "{ sleep_ms = 1e300 },",
    "{ sleep_ms = \"é\" },",
    "{ print = \"{é}\" },",
    "{ print = \"{x:>70000}\" },",
    "{ loop = [ { spawn = \"main\" } ] },",
    "{ set = \"x\", value = \"[x, x]\" },",
    "\n[roles.x]\nsteps = [ { spawn = \"x\" } ]\n",
    "\n[params.p]\ndefault = 1e300\n",
];

/// One edit of a text; positions are fractions of its length.
#[derive(Debug, Clone)]
enum Edit {
    Insert(f64, String),
    Delete(f64, usize),
    Duplicate(f64, usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let snippet = prop_oneof![
        3 => prop::sample::select(SNIPPETS).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[ -~é€]{1,8}",
    ];
    prop_oneof![
        3 => (0.0..1.0f64, snippet).prop_map(|(p, s)| Edit::Insert(p, s)),
        1 => (0.0..1.0f64, 1..20usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (0.0..1.0f64, 1..200usize).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

/// The byte offset at fraction `p` of `text`, on a character boundary.
fn at(text: &str, p: f64) -> usize {
    let mut i = ((text.len() as f64) * p) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut text: String, edits: &[Edit]) -> String {
    for e in edits {
        match e {
            Edit::Insert(p, s) => {
                let i = at(&text, *p);
                text.insert_str(i, s);
            }
            Edit::Delete(p, n) => {
                let i = at(&text, *p);
                let j = at(&text, ((i + n) as f64 / text.len().max(1) as f64).min(1.0));
                text.replace_range(i..j.max(i), "");
            }
            Edit::Duplicate(p, n) => {
                let i = at(&text, *p);
                let j = at(&text, ((i + n) as f64 / text.len().max(1) as f64).min(1.0));
                let piece = text[i..j.max(i)].to_string();
                text.insert_str(i, &piece);
            }
        }
    }
    text
}

#[test]
fn mutated_builtin_scenarios_never_panic_or_hang() {
    let mut runner = TestRunner::new(config(400));
    let strategy = (
        0..catalog::BUILTINS.len(),
        prop::collection::vec(edit_strategy(), 1..5),
    );
    runner
        .run(&strategy, |(which, edits)| {
            let text = apply(catalog::BUILTINS[which].text.to_string(), &edits);
            load_and_check(&text)
        })
        .unwrap();
}

#[test]
fn arbitrary_text_never_panics_the_loader() {
    let mut runner = TestRunner::new(config(300));
    let header = "name = \"f\"\ntitle = \"T\"\nexplain = \"x\"\n[roles.main]\nsteps = [ ";
    let strategy = (
        any::<bool>(),
        any::<String>(),
        "[\\[\\]{}\"'=,#a-z0-9 \n.é-]{0,200}",
    );
    runner
        .run(&strategy, |(with_header, noise, tomlish)| {
            load_and_check(&noise)?;
            let text = if with_header {
                format!("{header}{tomlish} ]\n")
            } else {
                tomlish
            };
            load_and_check(&text)
        })
        .unwrap();
}

/// Expression text from the grammar, with hostile leaves.
fn expr_strategy() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(
            &[
                "0",
                "1",
                "-1",
                "2",
                "63",
                "9223372036854775807",
                "(-9223372036854775807 - 1)",
                "1e300",
                "1e-300",
                "0.0",
                "float('inf')",
                "float('nan')",
                "'é'",
                "''",
                "'x'",
                "s",
                "l",
                "big",
                "min",
                "f",
                "none",
                "b",
                "True",
                "range(100000)",
                "random()",
                "randint(1, 6)",
            ][..]
        )
        .prop_map(str::to_string),
        any::<i64>().prop_map(|i| format!("({i})")),
        any::<f64>().prop_map(|x| format!("float('{x}')")),
    ];
    leaf.prop_recursive(6, 64, 3, |inner| {
        let op = prop::sample::select(
            &[
                "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or",
            ][..],
        );
        let f1 = prop::sample::select(
            &[
                "upper", "lower", "len", "str", "int", "float", "abs", "round", "range", "repr",
                "sum", "min", "max",
            ][..],
        );
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("not {a}")),
            (f1, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("round({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("max({a}, {b})")),
        ]
    })
}

fn eval_bounded(src: &str) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    if let Ok(e) = expr::parse(src) {
        let _ = e.eval(&mut Anything);
    }
    let hole = format!("a {{{src}}} b {{{src}:>5.2f}} c");
    if let Ok(t) = Template::parse(&hole) {
        let _ = t.render(&mut Anything);
    }
    let took = t0.elapsed();
    prop_assert!(took < CASE_LIMIT, "took {took:?}");
    Ok(())
}

#[test]
fn generated_expressions_never_panic() {
    let mut runner = TestRunner::new(config(2000));
    runner
        .run(&expr_strategy(), |src| eval_bounded(&src))
        .unwrap();
}

#[test]
fn arbitrary_expression_text_never_panics() {
    let mut runner = TestRunner::new(config(2000));
    let strategy = prop_oneof![
        any::<String>(),
        "[-+*/%()\\[\\]<>=!,.'\"0-9a-z_ éÅ€\u{85}\u{a0}{}:]{0,60}",
    ];
    runner.run(&strategy, |src| eval_bounded(&src)).unwrap();
    // Deep nesting of every kind, straight.
    for (open, close) in [
        ("(", ")"),
        ("[", "]"),
        ("-", ""),
        ("not ", ""),
        ("abs(", ")"),
    ] {
        let src = format!("{}1{}", open.repeat(50_000), close.repeat(50_000));
        eval_bounded(&src).unwrap();
    }
}

/// A tree of steps: repeats, forks, spawns and ifs in any nesting.
fn steps_strategy() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "{ spawn = \"child\" }",
            "{ fork = \"\" }",
            "{ print = \"x\" }",
            "{ pool = \"p\", workers = 4 }",
            "{ sleep_ms = 1 }",
        ][..],
    )
    .prop_map(str::to_string);
    leaf.prop_recursive(6, 40, 3, |inner| {
        let count = prop::sample::select(&["0", "1", "2", "3", "99999", "100000", "\"n\""][..]);
        prop_oneof![
            (count, prop::collection::vec(inner.clone(), 1..3))
                .prop_map(|(c, b)| format!("{{ repeat = {c}, steps = [ {} ] }}", b.join(", "))),
            (
                prop::collection::vec(inner.clone(), 1..3),
                prop::collection::vec(inner, 0..2)
            )
                .prop_map(|(a, b)| format!(
                    "{{ if = \"n > 1\", then = [ {} ], else = [ {} ] }}",
                    a.join(", "),
                    b.join(", ")
                )),
        ]
    })
}

#[test]
fn generated_step_trees_are_estimated_at_once() {
    let mut runner = TestRunner::new(config(300));
    let strategy = (
        prop::collection::vec(steps_strategy(), 1..4),
        prop::collection::vec(steps_strategy(), 0..3),
    );
    runner
        .run(&strategy, |(main, child)| {
            let text = format!(
                "name = \"g\"\ntitle = \"T\"\nexplain = \"x\"\n[params.n]\ndefault = 100000\n[roles.main]\nsteps = [ {} ]\n[roles.child]\nsteps = [ {} ]\n",
                main.join(", "),
                child.join(", ")
            );
            let t0 = Instant::now();
            let s = scenario::load(&text, "g.toml")
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let params = scenario::resolve_params(&s, &[]).unwrap();
            let _ = limits::check(&s, &params, &limits::Limits::default());
            let took = t0.elapsed();
            prop_assert!(took < Duration::from_secs(1), "took {took:?}:\n{text}");
            Ok(())
        })
        .unwrap();
}
