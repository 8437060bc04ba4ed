//! The small, Python-flavoured expression language of scenario files:
//! `num * 2`, `upper(s)`, `random() * 2000`, `res == 0`, `A[i] ** 2`, and
//! templates like `"hello {name}, v = {v:.2f}"`.
//!
//! Expressions are parsed once when the scenario loads (so a typo is a load
//! error with a position) and evaluated in a scenario process against an
//! [`Scope`] that knows private variables, parameters and shared values.

use crate::protocol::Value;
use std::fmt;

/// A parse or evaluation error; `offset` is a byte offset into the text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Var(String),
    Index(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    List(Vec<Expr>),
}

/// What an expression can look up while it is evaluated.
pub trait Scope {
    /// The value of a name: a private variable, a parameter, a shared value
    /// (a real read of shared memory) or a built-in like `pid`.
    fn lookup(&mut self, name: &str) -> Result<Value, String>;
    /// A call of a function that needs the process (`random`, `env`, ...).
    /// Return `Ok(None)` when the name is not one of them.
    fn call(&mut self, name: &str, args: &[Value]) -> Result<Option<Value>, String>;
}

impl Expr {
    /// Every variable name the expression mentions (for validation).
    pub fn names(&self, out: &mut Vec<String>) {
        match self {
            Expr::Lit(_) => {}
            Expr::Var(n) => out.push(n.clone()),
            Expr::Index(a, b) | Expr::Bin(_, a, b) => {
                a.names(out);
                b.names(out);
            }
            Expr::Neg(a) | Expr::Not(a) => a.names(out),
            Expr::Call(_, args) | Expr::List(args) => args.iter().for_each(|a| a.names(out)),
        }
    }

    /// Whether `f` holds for a variable name the expression mentions (in
    /// the order [`Expr::names`] lists them), without collecting them.
    pub fn any_name(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            Expr::Lit(_) => false,
            Expr::Var(n) => f(n),
            Expr::Index(a, b) | Expr::Bin(_, a, b) => a.any_name(f) || b.any_name(f),
            Expr::Neg(a) | Expr::Not(a) => a.any_name(f),
            Expr::Call(_, args) | Expr::List(args) => args.iter().any(|a| a.any_name(f)),
        }
    }

    pub fn eval(&self, scope: &mut dyn Scope) -> Result<Value, String> {
        match self {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Var(name) => scope.lookup(name),
            Expr::Index(base, idx) => {
                let base = base.eval(scope)?;
                let idx = idx.eval(scope)?;
                index(&base, &idx)
            }
            Expr::Neg(a) => match a.eval(scope)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| overflow(format!("-({i})"))),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(format!("cannot negate a {}", other.type_name())),
            },
            Expr::Not(a) => Ok(Value::Bool(!a.eval(scope)?.truthy())),
            Expr::Bin(BinOp::And, a, b) => {
                let a = a.eval(scope)?;
                if a.truthy() { b.eval(scope) } else { Ok(a) }
            }
            Expr::Bin(BinOp::Or, a, b) => {
                let a = a.eval(scope)?;
                if a.truthy() { Ok(a) } else { b.eval(scope) }
            }
            Expr::Bin(op, a, b) => {
                let a = a.eval(scope)?;
                let b = b.eval(scope)?;
                binary(*op, &a, &b)
            }
            Expr::List(items) => bounded(Value::List(
                items
                    .iter()
                    .map(|e| e.eval(scope))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::Call(name, args) => {
                let args: Vec<Value> = args
                    .iter()
                    .map(|e| e.eval(scope))
                    .collect::<Result<_, _>>()?;
                if let Some(v) = scope.call(name, &args)? {
                    return Ok(v);
                }
                builtin(name, &args)
            }
        }
    }
}

/// Functions every process can call without side effects.
pub const PURE_FUNCTIONS: &[&str] = &[
    "upper", "lower", "len", "str", "int", "float", "abs", "min", "max", "round", "range", "repr",
    "sum",
];

/// Functions the process provides (see [`Scope::call`]).
pub const PROCESS_FUNCTIONS: &[&str] =
    &["random", "randint", "uniform", "env", "cpu_count", "time"];

fn builtin(name: &str, args: &[Value]) -> Result<Value, String> {
    let one = || -> Result<&Value, String> {
        match args {
            [a] => Ok(a),
            _ => Err(format!("{name}() takes one argument, got {}", args.len())),
        }
    };
    match name {
        "upper" => match one()? {
            Value::Str(s) => bounded(Value::Str(s.to_uppercase())),
            v => Err(format!("upper() needs a str, got {}", v.type_name())),
        },
        "lower" => match one()? {
            Value::Str(s) => Ok(Value::Str(s.to_lowercase())),
            v => Err(format!("lower() needs a str, got {}", v.type_name())),
        },
        "len" => match one()? {
            Value::Str(s) => Ok(Value::Int(s.chars().count() as i64)),
            Value::List(l) => Ok(Value::Int(l.len() as i64)),
            v => Err(format!("a {} has no len()", v.type_name())),
        },
        "str" => bounded(Value::Str(one()?.to_string())),
        "repr" => bounded(Value::Str(one()?.repr())),
        "int" => match one()? {
            Value::Str(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("int() cannot read {s:?}")),
            v => {
                let f = v
                    .as_f64()
                    .ok_or_else(|| format!("int() of a {}", v.type_name()))?;
                Ok(Value::Int(float_to_int(f.trunc(), "int()")?))
            }
        },
        "float" => match one()? {
            Value::Str(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| format!("float() cannot read {s:?}")),
            v => v
                .as_f64()
                .map(Value::Float)
                .ok_or_else(|| format!("float() of a {}", v.type_name())),
        },
        "abs" => match one()? {
            Value::Int(i) => i
                .checked_abs()
                .map(Value::Int)
                .ok_or_else(|| overflow(format!("abs({i})"))),
            Value::Float(f) => Ok(Value::Float(f.abs())),
            v => Err(format!("abs() of a {}", v.type_name())),
        },
        "round" => {
            let (x, digits) = match args {
                [x] => (x, 0),
                [x, Value::Int(d)] => (x, *d),
                _ => return Err("round() takes a number and optional digits".into()),
            };
            let x = x.as_f64().ok_or("round() needs a number")?;
            if args.len() == 1 {
                Ok(Value::Int(float_to_int(x.round(), "round()")?))
            } else {
                let scale = 10f64.powi(digits.clamp(-15, 15) as i32);
                Ok(Value::Float((x * scale).round() / scale))
            }
        }
        "min" | "max" | "sum" => {
            let items: Vec<Value> = match args {
                [Value::List(l)] => l.clone(),
                _ => args.to_vec(),
            };
            if name == "sum" {
                return items
                    .iter()
                    .try_fold(Value::Int(0), |acc, v| binary(BinOp::Add, &acc, v));
            }
            let mut best: Option<Value> = None;
            for v in items {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let less = binary(BinOp::Lt, &v, &b)?.truthy();
                        if less == (name == "min") { v } else { b }
                    }
                });
            }
            best.ok_or_else(|| format!("{name}() of nothing"))
        }
        "range" => {
            let (lo, hi) = match args {
                [Value::Int(n)] => (0, *n),
                [Value::Int(a), Value::Int(b)] => (*a, *b),
                _ => return Err("range() takes one or two ints".into()),
            };
            if hi.saturating_sub(lo) > 100_000 {
                return Err("range() longer than 100000".into());
            }
            Ok(Value::List((lo..hi).map(Value::Int).collect()))
        }
        _ => Err(format!("unknown function {name}()")),
    }
}

/// The largest string a step may build (or print at once), in bytes.
pub const MAX_STR_BYTES: usize = 1 << 20;
/// The largest value a step may build: items of its lists, counted through
/// every level, plus its strings' bytes / 32 (about 32 bytes each).
pub const MAX_VALUE_CELLS: usize = 1 << 20;
/// How deeply lists may nest inside lists.
pub const MAX_VALUE_DEPTH: usize = 32;

/// The error for an integer result that does not fit in 64 bits.
fn overflow(what: String) -> String {
    format!("integer overflow: {what} does not fit in 64 bits")
}

/// A float as an int, like Python's `int()`: an error for inf and NaN, and
/// for what is too big for 64 bits (instead of a silently saturated value).
pub fn float_to_int(f: f64, what: &str) -> Result<i64, String> {
    if f.is_nan() {
        return Err(format!("{what} cannot convert NaN to an integer"));
    }
    // 2^63 is exactly representable; every float below it converts exactly.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if !(-TWO_63..TWO_63).contains(&f) {
        return Err(overflow(format!("{what} of {f}")));
    }
    Ok(f as i64)
}

fn too_big() -> String {
    format!("a value this large (over {MAX_VALUE_CELLS} items) is over the limit")
}

/// `v` if it is small enough to build, else a clear error: a step that
/// doubles a list or a string in a loop must fail, not exhaust memory.
pub fn bounded(v: Value) -> Result<Value, String> {
    fn measure(v: &Value, depth: usize, cells: &mut usize) -> Result<(), String> {
        match v {
            Value::Str(s) => {
                if s.len() > MAX_STR_BYTES {
                    return Err(format!(
                        "a string of {} bytes is over the limit of {MAX_STR_BYTES}",
                        s.len()
                    ));
                }
                *cells += 1 + s.len() / 32;
            }
            Value::List(items) => {
                if depth >= MAX_VALUE_DEPTH {
                    return Err(format!(
                        "lists nest more than {MAX_VALUE_DEPTH} levels deep"
                    ));
                }
                *cells += 1;
                if *cells + items.len() > MAX_VALUE_CELLS {
                    return Err(too_big());
                }
                for item in items {
                    measure(item, depth + 1, cells)?;
                }
            }
            _ => *cells += 1,
        }
        if *cells > MAX_VALUE_CELLS {
            return Err(too_big());
        }
        Ok(())
    }
    measure(&v, 0, &mut 0)?;
    Ok(v)
}

fn index(base: &Value, idx: &Value) -> Result<Value, String> {
    let i = idx
        .as_i64()
        .ok_or_else(|| format!("index must be an int, not {}", idx.type_name()))?;
    let get = |len: usize| -> Result<usize, String> {
        let j = if i < 0 {
            i.saturating_add(len as i64)
        } else {
            i
        };
        if j < 0 || j >= len as i64 {
            Err(format!("index {i} out of range (length {len})"))
        } else {
            Ok(j as usize)
        }
    };
    match base {
        Value::List(l) => Ok(l[get(l.len())?].clone()),
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            Ok(Value::Str(chars[get(chars.len())?].to_string()))
        }
        v => Err(format!("a {} cannot be indexed", v.type_name())),
    }
}

/// Python semantics for the operators we support; lists combine elementwise
/// with a number or a list of the same length (points: `A[i] ** 2`).
pub fn binary(op: BinOp, a: &Value, b: &Value) -> Result<Value, String> {
    use Value::*;
    match op {
        BinOp::Eq => return Ok(Bool(equal(a, b))),
        BinOp::Ne => return Ok(Bool(!equal(a, b))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (a, b) {
                (Str(x), Str(y)) => x.cmp(y),
                _ => {
                    let (x, y) = (a.as_f64(), b.as_f64());
                    match (x, y) {
                        (Some(x), Some(y)) => x.partial_cmp(&y).ok_or("cannot compare NaN")?,
                        _ => {
                            return Err(format!(
                                "cannot compare {} with {}",
                                a.type_name(),
                                b.type_name()
                            ));
                        }
                    }
                }
            };
            use std::cmp::Ordering::*;
            let r = match op {
                BinOp::Lt => ord == Less,
                BinOp::Le => ord != Greater,
                BinOp::Gt => ord == Greater,
                _ => ord != Less,
            };
            return Ok(Bool(r));
        }
        _ => {}
    }
    match (a, b) {
        (List(x), List(y)) if op != BinOp::Add => {
            if x.len() != y.len() {
                return Err("lists of different lengths".into());
            }
            let items = x
                .iter()
                .zip(y)
                .map(|(p, q)| binary(op, p, q))
                .collect::<Result<_, _>>()?;
            Ok(List(items))
        }
        (List(x), List(y)) => {
            if x.len() + y.len() > MAX_VALUE_CELLS {
                return Err(too_big());
            }
            bounded(List(x.iter().chain(y).cloned().collect()))
        }
        (List(x), n) if n.as_f64().is_some() && op != BinOp::Mul => Ok(List(
            x.iter()
                .map(|p| binary(op, p, n))
                .collect::<Result<_, _>>()?,
        )),
        (Str(x), Str(y)) if op == BinOp::Add => {
            if x.len() + y.len() > MAX_STR_BYTES {
                return Err(format!(
                    "a string of {} bytes is over the limit of {MAX_STR_BYTES}",
                    x.len() + y.len()
                ));
            }
            Ok(Str(format!("{x}{y}")))
        }
        (Str(x), Int(n)) | (Int(n), Str(x)) if op == BinOp::Mul => {
            let n = (*n).clamp(0, 1_000_000) as usize;
            if x.len().saturating_mul(n) > MAX_STR_BYTES {
                return Err(format!(
                    "a string of {} bytes is over the limit of {MAX_STR_BYTES}",
                    x.len().saturating_mul(n)
                ));
            }
            Ok(Str(x.repeat(n)))
        }
        (List(x), Int(n)) if op == BinOp::Mul => Ok(List(
            x.iter()
                .map(|p| binary(op, p, &Int(*n)))
                .collect::<Result<_, _>>()?,
        )),
        (Int(x), Int(y)) => int_op(op, *x, *y),
        (Bool(_), _) | (_, Bool(_)) | (Int(_), Float(_)) | (Float(_), _)
            if a.as_f64().is_some() && b.as_f64().is_some() =>
        {
            match (a, b) {
                (Float(_), _) | (_, Float(_)) => float_op(op, a.as_f64(), b.as_f64()),
                _ => int_op(op, a.as_i64().unwrap_or(0), b.as_i64().unwrap_or(0)),
            }
        }
        _ => Err(format!(
            "cannot apply {op:?} to {} and {}",
            a.type_name(),
            b.type_name()
        )),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if !matches!((a, b), (Value::List(_), _) | (_, Value::List(_))) => {
            x == y
        }
        _ => a == b,
    }
}

/// Integer arithmetic like Python's, where the result fits in 64 bits;
/// an overflow is an error (Python's ints would just grow), never a panic
/// or a silently wrapped number.
fn int_op(op: BinOp, x: i64, y: i64) -> Result<Value, String> {
    let sym = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
        _ => "?",
    };
    let over = || overflow(format!("{x} {sym} {y}"));
    let v = match op {
        BinOp::Add => x.checked_add(y).ok_or_else(over)?,
        BinOp::Sub => x.checked_sub(y).ok_or_else(over)?,
        BinOp::Mul => x.checked_mul(y).ok_or_else(over)?,
        BinOp::Div => {
            if y == 0 {
                return Err("division by zero".into());
            }
            return Ok(Value::Float(x as f64 / y as f64));
        }
        BinOp::FloorDiv => {
            if y == 0 {
                return Err("division by zero".into());
            }
            // Rounds toward minus infinity: -7 // 2 == -4.
            let q = x.checked_div(y).ok_or_else(over)?;
            if x % y != 0 && ((x < 0) != (y < 0)) {
                q - 1
            } else {
                q
            }
        }
        BinOp::Mod => {
            if y == 0 {
                return Err("modulo by zero".into());
            }
            // Takes the sign of the divisor: -7 % 3 == 2. i64::MIN % -1
            // overflows in Rust; its value is 0.
            match x.checked_rem(y) {
                None => 0,
                Some(r) if r != 0 && ((r < 0) != (y < 0)) => r + y,
                Some(r) => r,
            }
        }
        BinOp::Pow => {
            if y < 0 {
                return float_op(op, Some(x as f64), Some(y as f64));
            }
            match (x, u32::try_from(y)) {
                (_, Ok(e)) => x.checked_pow(e).ok_or_else(over)?,
                (0 | 1, Err(_)) => x,
                (-1, Err(_)) => {
                    if y % 2 == 0 {
                        1
                    } else {
                        -1
                    }
                }
                _ => return Err(over()),
            }
        }
        _ => return Err(format!("{op:?} is not arithmetic")),
    };
    Ok(Value::Int(v))
}

fn float_op(op: BinOp, x: Option<f64>, y: Option<f64>) -> Result<Value, String> {
    let (x, y) = (x.unwrap_or(0.0), y.unwrap_or(0.0));
    let v = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div | BinOp::FloorDiv | BinOp::Mod if y == 0.0 => {
            return Err("division by zero".into());
        }
        BinOp::Div => x / y,
        BinOp::FloorDiv => (x / y).floor(),
        BinOp::Mod => x - y * (x / y).floor(),
        BinOp::Pow if x == 0.0 && y < 0.0 => {
            return Err("division by zero: 0 cannot be raised to a negative power".into());
        }
        BinOp::Pow => x.powf(y),
        _ => return Err(format!("{op:?} is not arithmetic")),
    };
    Ok(Value::Float(v))
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Op(&'static str),
}

/// Splits an expression into tokens. It walks the text a character at a
/// time (never a byte), so any letter of any script is safe: names may be
/// non-ASCII like Python's, and anything else is a clear error.
fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    const OPS: &[&str] = &[
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]",
        ",",
    ];
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // `i` is always on a character boundary: it only moves by whole
    // characters, or over ASCII bytes.
    while let Some(c) = src[i..].chars().next() {
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'_')
            {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                i += 1;
                if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
                    i += 1;
                }
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
            let v = if text.contains(['.', 'e', 'E']) {
                text.parse::<f64>().map(Value::Float).ok()
            } else {
                text.parse::<i64>().map(Value::Int).ok()
            };
            let v = v.ok_or(ExprError {
                offset: start,
                message: if text.contains(['.', 'e', 'E']) {
                    format!("bad number {text:?}")
                } else {
                    format!(
                        "bad number {text:?} (whole numbers are 64-bit: at most {})",
                        i64::MAX
                    )
                },
            })?;
            out.push((Tok::Num(v), start));
        } else if c.is_alphabetic() || c == '_' {
            let len: usize = src[i..]
                .chars()
                .take_while(|&c| c.is_alphanumeric() || c == '_' || c == '.')
                .map(char::len_utf8)
                .sum();
            i += len;
            out.push((Tok::Ident(src[start..i].to_string()), start));
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut s = String::new();
            let mut closed = false;
            let mut chars = src[i..].char_indices();
            while let Some((k, ch)) = chars.next() {
                if ch == c {
                    i += k + 1;
                    closed = true;
                    break;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, 'n')) => s.push('\n'),
                        Some((_, 't')) => s.push('\t'),
                        Some((_, other)) => s.push(other),
                        None => break,
                    }
                } else {
                    s.push(ch);
                }
            }
            if !closed {
                return Err(ExprError {
                    offset: start,
                    message: "string is not closed".into(),
                });
            }
            out.push((Tok::Str(s), start));
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            i += op.len();
            out.push((Tok::Op(op), start));
        } else {
            return Err(ExprError {
                offset: start,
                message: format!("unexpected character {c:?}"),
            });
        }
    }
    Ok(out)
}

/// How deeply an expression may nest: brackets, calls, `not`, signs and
/// each operator of a chain like `a + b + c` count one level. Parsing,
/// evaluating and dropping a tree are recursive, so this bounds the stack
/// they need (thousands of `(` would otherwise overflow it).
pub const MAX_EXPR_DEPTH: u32 = 100;

/// A parsed subtree and its depth.
type Parsed = (Expr, u32);

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    /// How many recursive descents are open now.
    nest: u32,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, o)| *o)
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError {
            offset: self.offset(),
            message: message.into(),
        })
    }
    fn too_deep<T>(&self) -> Result<T, ExprError> {
        self.err(format!(
            "the expression nests more than {MAX_EXPR_DEPTH} levels deep"
        ))
    }
    /// Runs `f` one level deeper, refusing to go past the limit.
    fn deeper(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Parsed, ExprError>,
    ) -> Result<Parsed, ExprError> {
        if self.nest >= MAX_EXPR_DEPTH {
            return self.too_deep();
        }
        self.nest += 1;
        let r = f(self);
        self.nest -= 1;
        r
    }
    /// A node over `kids`, if the tree stays within the depth limit.
    fn node(&self, e: Expr, kids_depth: u32) -> Result<Parsed, ExprError> {
        let depth = kids_depth + 1;
        if depth > MAX_EXPR_DEPTH {
            return self.too_deep();
        }
        Ok((e, depth))
    }
    fn bin(&self, op: BinOp, a: Parsed, b: Parsed) -> Result<Parsed, ExprError> {
        let d = a.1.max(b.1);
        self.node(Expr::Bin(op, Box::new(a.0), Box::new(b.0)), d)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek() == Some(&Tok::Op(op_static(op))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Parsed, ExprError> {
        self.deeper(Self::or)
    }
    fn or(&mut self) -> Result<Parsed, ExprError> {
        let mut a = self.and()?;
        while self.eat_word("or") {
            let b = self.and()?;
            a = self.bin(BinOp::Or, a, b)?;
        }
        Ok(a)
    }
    fn and(&mut self) -> Result<Parsed, ExprError> {
        let mut a = self.not()?;
        while self.eat_word("and") {
            let b = self.not()?;
            a = self.bin(BinOp::And, a, b)?;
        }
        Ok(a)
    }
    fn not(&mut self) -> Result<Parsed, ExprError> {
        if self.eat_word("not") {
            let (a, d) = self.deeper(Self::not)?;
            return self.node(Expr::Not(Box::new(a)), d);
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Parsed, ExprError> {
        let a = self.sum()?;
        for (s, op) in [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
        ] {
            if self.eat_op(s) {
                let b = self.sum()?;
                return self.bin(op, a, b);
            }
        }
        Ok(a)
    }
    fn sum(&mut self) -> Result<Parsed, ExprError> {
        let mut a = self.term()?;
        loop {
            let op = if self.eat_op("+") {
                BinOp::Add
            } else if self.eat_op("-") {
                BinOp::Sub
            } else {
                return Ok(a);
            };
            let b = self.term()?;
            a = self.bin(op, a, b)?;
        }
    }
    fn term(&mut self) -> Result<Parsed, ExprError> {
        let mut a = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                BinOp::Mul
            } else if self.eat_op("//") {
                BinOp::FloorDiv
            } else if self.eat_op("/") {
                BinOp::Div
            } else if self.eat_op("%") {
                BinOp::Mod
            } else {
                return Ok(a);
            };
            let b = self.unary()?;
            a = self.bin(op, a, b)?;
        }
    }
    fn unary(&mut self) -> Result<Parsed, ExprError> {
        if self.eat_op("-") {
            let (a, d) = self.deeper(Self::unary)?;
            return self.node(Expr::Neg(Box::new(a)), d);
        }
        if self.eat_op("+") {
            return self.deeper(Self::unary);
        }
        self.power()
    }
    fn power(&mut self) -> Result<Parsed, ExprError> {
        let base = self.postfix()?;
        if self.eat_op("**") {
            let exp = self.deeper(Self::unary)?;
            return self.bin(BinOp::Pow, base, exp);
        }
        Ok(base)
    }
    fn postfix(&mut self) -> Result<Parsed, ExprError> {
        let mut e = self.atom()?;
        while self.eat_op("[") {
            let idx = self.expr()?;
            if !self.eat_op("]") {
                return self.err("expected ']'");
            }
            let d = e.1.max(idx.1);
            e = self.node(Expr::Index(Box::new(e.0), Box::new(idx.0)), d)?;
        }
        Ok(e)
    }
    fn atom(&mut self) -> Result<Parsed, ExprError> {
        let Some((tok, _)) = self.toks.get(self.pos).cloned() else {
            return self.err("expression ends too early");
        };
        self.pos += 1;
        match tok {
            Tok::Num(v) => Ok((Expr::Lit(v), 1)),
            Tok::Str(s) => Ok((Expr::Lit(Value::Str(s)), 1)),
            Tok::Ident(name) => match name.as_str() {
                "True" | "true" => Ok((Expr::Lit(Value::Bool(true)), 1)),
                "False" | "false" => Ok((Expr::Lit(Value::Bool(false)), 1)),
                "None" => Ok((Expr::Lit(Value::None), 1)),
                _ if self.eat_op("(") => {
                    let (args, d) = self.items(")")?;
                    if !PURE_FUNCTIONS.contains(&name.as_str())
                        && !PROCESS_FUNCTIONS.contains(&name.as_str())
                    {
                        self.pos -= 1;
                        return self.err(format!("unknown function {name}()"));
                    }
                    self.node(Expr::Call(name, args), d)
                }
                _ => Ok((Expr::Var(name), 1)),
            },
            Tok::Op("(") => {
                let (items, d) = self.items(")")?;
                match <[Expr; 1]>::try_from(items) {
                    Ok([e]) => Ok((e, d)),
                    Err(items) => self.node(Expr::List(items), d),
                }
            }
            Tok::Op("[") => {
                let (items, d) = self.items("]")?;
                self.node(Expr::List(items), d)
            }
            Tok::Op(op) => {
                self.pos -= 1;
                self.err(format!("unexpected '{op}'"))
            }
        }
    }
    /// Comma-separated expressions up to `close`; with the deepest one's depth.
    fn items(&mut self, close: &str) -> Result<(Vec<Expr>, u32), ExprError> {
        let mut items = Vec::new();
        let mut depth = 0;
        if self.eat_op(close) {
            return Ok((items, depth));
        }
        loop {
            let (e, d) = self.expr()?;
            items.push(e);
            depth = depth.max(d);
            if self.eat_op(close) {
                return Ok((items, depth));
            }
            if !self.eat_op(",") {
                return self.err(format!("expected ',' or '{close}'"));
            }
            if self.eat_op(close) {
                return Ok((items, depth));
            }
        }
    }
}

fn op_static(op: &str) -> &'static str {
    const ALL: &[&str] = &[
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]",
        ",",
    ];
    ALL.iter().find(|o| **o == op).copied().unwrap_or("")
}

/// Parses a whole expression.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        nest: 0,
    };
    let (e, _) = p.expr()?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the expression");
    }
    Ok(e)
}

// ---------------------------------------------------------------- templates

/// A `print` text with `{expr}` and `{expr:.2f}` holes; `{{` and `}}` are
/// literal braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
    /// The text as written (to show what a step will print).
    pub src: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Hole { expr: Expr, spec: Option<String> },
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|x| x.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|x| x.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let close = rest.find('}').ok_or(ExprError {
                        offset: i,
                        message: "'{' is not closed (write '{{' for a brace)".into(),
                    })?;
                    let inner = &rest[..close];
                    let (e, spec) = match inner.rfind(':') {
                        Some(k) if !inner[k..].contains(['\'', '"', ')', ']']) => {
                            (&inner[..k], Some(inner[k + 1..].to_string()))
                        }
                        _ => (inner, None),
                    };
                    let expr = parse(e).map_err(|mut err| {
                        err.offset += i + 1;
                        err
                    })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Hole { expr, spec });
                    for _ in 0..inner.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(ExprError {
                        offset: i,
                        message: "single '}' (write '}}' for a brace)".into(),
                    });
                }
                _ => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template {
            parts,
            src: src.to_string(),
        })
    }

    pub fn names(&self, out: &mut Vec<String>) {
        for p in &self.parts {
            if let Part::Hole { expr, .. } = p {
                expr.names(out);
            }
        }
    }

    pub fn render(&self, scope: &mut dyn Scope) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Hole { expr, spec } => {
                    let v = expr.eval(scope)?;
                    out.push_str(&format_spec(&v, spec.as_deref())?);
                }
            }
            if out.len() > MAX_STR_BYTES {
                return Err(format!(
                    "the text is longer than the limit of {MAX_STR_BYTES} bytes"
                ));
            }
        }
        Ok(out)
    }
}

/// The widest field a format spec may ask for (`{x:>20}`).
pub const MAX_FORMAT_WIDTH: usize = 10_000;
/// The most digits after the point a format spec may ask for (`{x:.2f}`).
pub const MAX_FORMAT_PRECISION: usize = 100;

/// A subset of Python's format mini-language: `.Nf`, `d`, width, `>`/`<`.
fn format_spec(v: &Value, spec: Option<&str>) -> Result<String, String> {
    let Some(spec) = spec else {
        return Ok(v.to_string());
    };
    let (align, rest) = match spec.chars().next() {
        Some(c @ ('<' | '>')) => (Some(c), &spec[1..]),
        _ => (None, spec),
    };
    let (width, rest) = {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let width = match digits.parse::<usize>() {
            _ if digits.is_empty() => None,
            Ok(w) if w <= MAX_FORMAT_WIDTH => Some(w),
            _ => {
                return Err(format!(
                    "format spec {spec:?}: a width is at most {MAX_FORMAT_WIDTH}"
                ));
            }
        };
        (width, &rest[digits.len()..])
    };
    let body = if let Some(prec) = rest.strip_prefix('.').and_then(|r| r.strip_suffix('f')) {
        let p: usize = prec
            .parse()
            .map_err(|_| format!("bad format spec {spec:?}"))?;
        if p > MAX_FORMAT_PRECISION {
            return Err(format!(
                "format spec {spec:?}: a precision is at most {MAX_FORMAT_PRECISION}"
            ));
        }
        let x = v.as_f64().ok_or("the f format needs a number")?;
        format!("{x:.p$}")
    } else if rest == "d" || rest.is_empty() {
        v.to_string()
    } else {
        return Err(format!("format spec {spec:?} is not supported"));
    };
    let w = width.unwrap_or(0);
    Ok(match align {
        Some('<') => format!("{body:<w$}"),
        Some('>') => format!("{body:>w$}"),
        _ if v.as_f64().is_some() => format!("{body:>w$}"),
        _ => format!("{body:<w$}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Vars(BTreeMap<String, Value>);
    impl Scope for Vars {
        fn lookup(&mut self, name: &str) -> Result<Value, String> {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| format!("name {name} is not defined"))
        }
        fn call(&mut self, _: &str, _: &[Value]) -> Result<Option<Value>, String> {
            Ok(None)
        }
    }

    fn eval(src: &str) -> Value {
        let mut vars = Vars(BTreeMap::from([
            ("n".to_string(), Value::Int(7)),
            ("s".to_string(), Value::Str("hello world".into())),
            (
                "p".to_string(),
                Value::List(vec![Value::Float(1.5), Value::Float(-2.0)]),
            ),
        ]));
        parse(src).unwrap().eval(&mut vars).unwrap()
    }

    #[test]
    fn arithmetic_is_pythonic() {
        assert_eq!(eval("n ** 2"), Value::Int(49));
        assert_eq!(eval("1 / 3 * 3"), Value::Float(1.0));
        assert_eq!(eval("-7 // 2"), Value::Int(-4));
        assert_eq!(eval("n % 3 == 1 and not False"), Value::Bool(true));
        assert_eq!(eval("upper(s)"), Value::Str("HELLO WORLD".into()));
        assert_eq!(
            eval("p ** 2"),
            Value::List(vec![Value::Float(2.25), Value::Float(4.0)])
        );
        assert_eq!(eval("['A', 'B'][1]"), Value::Str("B".into()));
        assert_eq!(eval("len(range(3))"), Value::Int(3));
    }

    #[test]
    fn parse_errors_have_offsets() {
        let e = parse("n + * 2").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(parse("frobnicate(1)").is_err());
        assert!(parse("'open").is_err());
    }

    #[test]
    fn templates_format() {
        let t = Template::parse("v={n:.2f}|{s} {{x}}").unwrap();
        let mut vars = Vars(BTreeMap::from([
            ("n".to_string(), Value::Int(3)),
            ("s".to_string(), Value::Str("ok".into())),
        ]));
        assert_eq!(t.render(&mut vars).unwrap(), "v=3.00|ok {x}");
        assert_eq!(Template::parse("a {b").unwrap_err().offset, 2);
    }

    /// Evaluates `src` with the test variables; the error text if any.
    fn eval_err(src: &str) -> String {
        let mut vars = Vars(BTreeMap::from([("n".to_string(), Value::Int(7))]));
        match parse(src) {
            Ok(e) => e.eval(&mut vars).expect_err(src),
            Err(e) => panic!("{src:?} does not parse: {}", e.message),
        }
    }

    #[test]
    fn non_ascii_text_is_an_error_or_a_name_never_a_panic() {
        // Issue 9.5: `sleep_ms = "é"` and `print = "{é}"` sliced a
        // character in two.
        assert_eq!(parse("é"), Ok(Expr::Var("é".into())));
        assert_eq!(parse("naïve + 1").map(|_| ()), Ok(()));
        let e = parse("1 + €").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (4, "unexpected character '€'")
        );
        // A byte of a character that, alone, would be whitespace (U+0085).
        assert!(parse("Å").is_ok());
        assert!(parse("1 \u{a0}+ 2").is_ok(), "a no-break space is a space");
        assert!(parse("'é' + \"ü\"").is_ok());
        assert!(parse("'é").is_err());
        for text in ["{é}", "{1 + €}", "é {x:é}", "{'}'}", "{ü:>3}ä"] {
            let _ = Template::parse(text);
        }
        let t = Template::parse("→ {é} ←").unwrap();
        let mut vars = Vars(BTreeMap::from([("é".to_string(), Value::Int(1))]));
        assert_eq!(t.render(&mut vars).unwrap(), "→ 1 ←");
        assert_eq!(Template::parse("ü {€}").unwrap_err().offset, 4);
    }

    #[test]
    fn integer_overflow_is_an_error_not_a_panic() {
        // Issue 9.6.
        for src in [
            "(2**63) // -1",
            "(2**63) % -1",
            "(-2**62 * 2) // -1",
            "9223372036854775807 + 1",
            "-9223372036854775807 - 2",
            "3037000500 * 3037000500",
            "2 ** 64",
            "3 ** 9999999999",
            "-(-9223372036854775807 - 1)",
            "abs(-9223372036854775807 - 1)",
            "int(1e300)",
            "int(float('inf'))",
            "round(1e19)",
            "sum([9223372036854775807, 1])",
        ] {
            let e = eval_err(src);
            assert!(e.contains("overflow"), "{src}: {e}");
        }
        assert!(eval_err("int(float('nan'))").contains("NaN"));
        assert!(eval_err("0 ** -1").contains("division by zero"));
        assert!(eval_err("0.0 ** -0.5").contains("division by zero"));
        let min = "(-9223372036854775807 - 1)";
        let v = |s: &str| eval(s);
        assert_eq!(v(&format!("{min} % -1")), Value::Int(0));
        assert_eq!(v(&format!("{min} // 1")), Value::Int(i64::MIN));
        assert_eq!(v(&format!("{min} % 3")), Value::Int(1));
        assert_eq!(v(&format!("-3 % {min}")), Value::Int(-3));
        assert_eq!(v("-7 // 2"), Value::Int(-4));
        assert_eq!(v("7 // -2"), Value::Int(-4));
        assert_eq!(v("-7 % 3"), Value::Int(2));
        assert_eq!(v("7 % -3"), Value::Int(-2));
        assert_eq!(v("1 ** 99999999999"), Value::Int(1));
        assert_eq!(v("(-1) ** 99999999999"), Value::Int(-1));
        assert_eq!(v("2 ** 62"), Value::Int(1 << 62));
        assert_eq!(v("2 ** -1"), Value::Float(0.5));
        assert!(
            parse("99999999999999999999")
                .unwrap_err()
                .message
                .contains("64-bit")
        );
    }

    #[test]
    fn deep_nesting_is_a_parse_error_with_a_position() {
        // Issue 9.7: ~6,000 parentheses overflowed the stack.
        let deep = format!("{}1{}", "(".repeat(6000), ")".repeat(6000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nests more than"), "{}", e.message);
        assert_eq!(e.offset, MAX_EXPR_DEPTH as usize);
        for src in [
            "[".repeat(100_000),
            "-".repeat(100_000) + "1",
            "not ".repeat(100_000) + "1",
            "1".to_string() + &" + 1".repeat(100_000),
            "2".to_string() + &" ** 2".repeat(100_000),
            "x".to_string() + &"[0]".repeat(100_000),
            "abs(".repeat(100_000),
        ] {
            let e = parse(&src).unwrap_err();
            assert!(
                e.message.contains("nests more than") || e.message.contains("ends too early"),
                "{}",
                e.message
            );
        }
        let ok = format!("{}1{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(eval(&ok), Value::Int(1));
        let template = format!("{{{}}}", "(".repeat(6000));
        assert!(Template::parse(&template).is_err());
    }

    #[test]
    fn huge_values_and_formats_are_errors() {
        assert!(eval_err("'ab' * 10000 * 10000").contains("limit"));
        // A list doubled again and again.
        let mut vars = Vars(BTreeMap::from([("x".to_string(), Value::List(vec![]))]));
        let grow = parse("x + [x, x, 1]").unwrap();
        let mut failed = None;
        for i in 0..64 {
            match grow.eval(&mut vars) {
                Ok(v) => {
                    vars.0.insert("x".into(), v);
                }
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let (_, e) = failed.expect("the list stops growing");
        assert!(e.contains("limit") || e.contains("deep"), "{e}");
        // Nesting: x = [x] in a loop.
        let mut vars = Vars(BTreeMap::from([("x".to_string(), Value::Int(0))]));
        let wrap = parse("[x]").unwrap();
        let e = (0..100)
            .find_map(|_| match wrap.eval(&mut vars) {
                Ok(v) => {
                    vars.0.insert("x".into(), v);
                    None
                }
                Err(e) => Some(e),
            })
            .expect("nesting stops");
        assert!(e.contains("levels deep"), "{e}");
        // Widths past u16::MAX panicked inside `format!`.
        let mut none = Vars(BTreeMap::from([("v".to_string(), Value::Float(1.5))]));
        for spec in [
            "{v:>70000}",
            "{v:.70000f}",
            "{v:99999999999999999999999}",
            "{v:>10001}",
        ] {
            let t = Template::parse(spec).unwrap();
            let e = t.render(&mut none).unwrap_err();
            assert!(e.contains("at most"), "{spec}: {e}");
        }
        let t = Template::parse("{v:>8.2f}|").unwrap();
        assert_eq!(t.render(&mut none).unwrap(), "    1.50|");
    }
}
