//! "Predict, then run": the questions a scenario asks before a run
//! (`[[quiz]]` tables), and how each answer is computed from the run's
//! events afterwards. The answers come from a small closed set of kinds
//! ([`AnswerKind`]); each one also names the event that decides it
//! ([`Decider`]), so the app can point at it and the CLI can print it.
//!
//! The format is described for authors in `docs/SCENARIO_FORMAT.md`
//! ("Questions").

use super::Scenario;
use crate::model::World;
use crate::protocol::{Body, Event, RUNNER_ID, Stream, Value};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// Most questions one scenario may carry.
pub const MAX_QUESTIONS: usize = 8;
/// Fewest and most choices of a question.
pub const MIN_CHOICES: usize = 2;
pub const MAX_CHOICES: usize = 6;
/// Longest question, choice or explanation, in characters.
pub const MAX_TEXT_CHARS: usize = 300;

/// One `[[quiz]]` table exactly as TOML spells it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    pub ask: Spanned<String>,
    #[serde(default)]
    pub choices: Option<Spanned<Vec<Spanned<String>>>>,
    pub answer: Spanned<String>,
    #[serde(default)]
    pub proc: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
    #[serde(default)]
    pub text: Option<Spanned<String>>,
    /// The answer changes from run to run (a race): shown with the answer.
    #[serde(default)]
    pub varies: bool,
    /// Shown after the run, under the answer: why it is so.
    #[serde(default)]
    pub explain: Option<Spanned<String>>,
}

/// How an answer is computed from a run.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerKind {
    /// The last non-blank line a process (or, without `proc`, anyone)
    /// wrote to stdout.
    LastLine { proc: Option<String> },
    /// How many stdout lines contain `text` (of one process, or of all).
    LineCount { text: String, proc: Option<String> },
    /// The value a shared value (or array) holds at the end.
    FinalValue { value: String },
    /// The most scenario processes alive at the same moment.
    PeakProcesses,
    /// How many scenario processes the run created in all (main included).
    ProcessCount,
    /// The process that exits first.
    FirstExit,
    /// The process that exits last.
    LastExit,
    /// `p.exitcode` of a process: its exit code, or minus the signal number.
    ExitCode { proc: String },
    /// How many lost updates (of one shared value, or of any).
    LostUpdates { value: Option<String> },
    /// Did the run end in a deadlock?
    Deadlock,
    /// Was this process adopted by another parent (an orphan)?
    Adopted { proc: String },
    /// The first message taken out of a queue or pipe.
    FirstReceived { channel: String },
}

/// What an answer looks like: it decides how the audience answers (a
/// number typed in, or a choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Number,
    Text,
    YesNo,
}

/// The answer kinds, as they are spelled in files, with what they need.
pub const KINDS: &[(&str, &str)] = &[
    (
        "last_line",
        "the last line a process prints (`proc`, optional)",
    ),
    (
        "line_count",
        "how many output lines contain `text` (`proc`, optional)",
    ),
    ("final_value", "the final value of shared value `value`"),
    ("peak_processes", "the most processes alive at once"),
    ("process_count", "how many processes the run creates"),
    ("first_exit", "which process exits first"),
    ("last_exit", "which process exits last"),
    ("exit_code", "the exitcode of process `proc`"),
    (
        "lost_updates",
        "how many updates are lost (`value`, optional)",
    ),
    ("deadlock", "does the run end in a deadlock (yes/no)"),
    ("adopted", "is process `proc` adopted (yes/no)"),
    (
        "first_received",
        "the first message taken from queue or pipe `channel`",
    ),
];

/// A checked question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub ask: String,
    /// Empty: the audience types a number.
    pub choices: Vec<String>,
    pub kind: AnswerKind,
    pub shape: Shape,
    pub varies: bool,
    pub explain: String,
}

/// Checks the `[[quiz]]` tables of a file against its scenario; every
/// mistake goes to `err` with its span.
pub fn check(
    raw: &[Spanned<RawQuestion>],
    sc: &Scenario,
    err: &mut dyn FnMut(Range<usize>, String),
) -> Vec<Question> {
    if raw.len() > MAX_QUESTIONS
        && let Some(q) = raw.get(MAX_QUESTIONS)
    {
        err(
            q.span(),
            format!("a scenario carries at most {MAX_QUESTIONS} questions"),
        );
    }
    raw.iter()
        .filter_map(|q| check_one(q.get_ref(), sc, err))
        .collect()
}

fn text_ok(s: &Spanned<String>, what: &str, err: &mut dyn FnMut(Range<usize>, String)) -> bool {
    let t = s.get_ref().trim();
    if t.is_empty() {
        err(s.span(), format!("{what} is empty"));
        false
    } else if t.chars().count() > MAX_TEXT_CHARS {
        err(
            s.span(),
            format!("{what} is longer than {MAX_TEXT_CHARS} characters"),
        );
        false
    } else {
        true
    }
}

fn check_one(
    q: &RawQuestion,
    sc: &Scenario,
    err: &mut dyn FnMut(Range<usize>, String),
) -> Option<Question> {
    let mut ok = text_ok(&q.ask, "the question (`ask`)", err);
    let kind_name = q.answer.get_ref().as_str();
    // Which options each kind takes: (proc, value, channel, text), with
    // `true` = required, `false` = optional, None = not allowed.
    let takes: [Option<bool>; 4] = match kind_name {
        "last_line" => [Some(false), None, None, None],
        "line_count" => [Some(false), None, None, Some(true)],
        "final_value" => [None, Some(true), None, None],
        "exit_code" | "adopted" => [Some(true), None, None, None],
        "lost_updates" => [None, Some(false), None, None],
        "first_received" => [None, None, Some(true), None],
        "peak_processes" | "process_count" | "first_exit" | "last_exit" | "deadlock" => [None; 4],
        other => {
            let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            err(
                q.answer.span(),
                format!(
                    "unknown answer {other:?}: it is one of {}",
                    names.join(", ")
                ),
            );
            return None;
        }
    };
    let options = [
        ("proc", &q.proc, "a process id such as \"main.1\""),
        ("value", &q.value, "a shared value"),
        ("channel", &q.channel, "a queue or pipe"),
        ("text", &q.text, "the text to count"),
    ];
    for ((name, given, what), take) in options.iter().zip(takes) {
        match (given, take) {
            (Some(v), None) => {
                err(
                    v.span(),
                    format!("`{name}` does not go with answer {kind_name:?}"),
                );
                ok = false;
            }
            (None, Some(true)) => {
                err(
                    q.answer.span(),
                    format!("answer {kind_name:?} needs `{name} = ...` ({what})"),
                );
                ok = false;
            }
            _ => {}
        }
    }
    if let Some(p) = &q.proc {
        let id = p.get_ref();
        let good = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !good {
            err(
                p.span(),
                "proc must be a process id as the stage shows it (\"main\", \"main.1\", \"pool.w2\")"
                    .into(),
            );
            ok = false;
        } else if id == RUNNER_ID {
            err(
                p.span(),
                "the runner is not a process of the scenario: ask about main or its children"
                    .into(),
            );
            ok = false;
        }
    }
    if let Some(v) = &q.value {
        let name = v.get_ref();
        if !sc.values.contains_key(name) && !sc.arrays.contains_key(name) {
            let known: Vec<&str> = sc
                .values
                .keys()
                .chain(sc.arrays.keys())
                .map(|s| s.as_str())
                .collect();
            let hint = if known.is_empty() {
                "this scenario declares none in [values] or [arrays]".to_string()
            } else {
                format!("declared: {}", known.join(", "))
            };
            err(v.span(), format!("unknown shared value {name:?} ({hint})"));
            ok = false;
        }
    }
    if let Some(c) = &q.channel {
        let name = c.get_ref();
        if !sc.queues.contains_key(name) && !sc.pipes.contains_key(name) {
            err(
                c.span(),
                format!("unknown queue or pipe {name:?} (declared in [queues] or [pipes])"),
            );
            ok = false;
        }
    }
    if let Some(t) = &q.text {
        ok &= text_ok(t, "`text`", err);
    }
    let explain = match &q.explain {
        Some(e) => {
            ok &= text_ok(e, "`explain`", err);
            e.get_ref().trim().to_string()
        }
        None => String::new(),
    };
    if !ok {
        return None;
    }
    let s = |o: &Option<Spanned<String>>| o.as_ref().map(|v| v.get_ref().clone());
    let kind = match kind_name {
        "last_line" => AnswerKind::LastLine { proc: s(&q.proc) },
        "line_count" => AnswerKind::LineCount {
            text: s(&q.text).unwrap_or_default(),
            proc: s(&q.proc),
        },
        "final_value" => AnswerKind::FinalValue {
            value: s(&q.value).unwrap_or_default(),
        },
        "peak_processes" => AnswerKind::PeakProcesses,
        "process_count" => AnswerKind::ProcessCount,
        "first_exit" => AnswerKind::FirstExit,
        "last_exit" => AnswerKind::LastExit,
        "exit_code" => AnswerKind::ExitCode {
            proc: s(&q.proc).unwrap_or_default(),
        },
        "lost_updates" => AnswerKind::LostUpdates { value: s(&q.value) },
        "deadlock" => AnswerKind::Deadlock,
        "adopted" => AnswerKind::Adopted {
            proc: s(&q.proc).unwrap_or_default(),
        },
        _ => AnswerKind::FirstReceived {
            channel: s(&q.channel).unwrap_or_default(),
        },
    };
    let shape = kind.shape(sc);
    let choices = check_choices(q, kind_name, shape, err)?;
    Some(Question {
        ask: q.ask.get_ref().trim().to_string(),
        choices,
        kind,
        shape,
        varies: q.varies,
        explain,
    })
}

fn check_choices(
    q: &RawQuestion,
    kind_name: &str,
    shape: Shape,
    err: &mut dyn FnMut(Range<usize>, String),
) -> Option<Vec<String>> {
    let Some(list) = &q.choices else {
        return match shape {
            Shape::Number => Some(Vec::new()),
            Shape::YesNo => Some(vec!["yes".into(), "no".into()]),
            Shape::Text => {
                err(
                    q.answer.span(),
                    format!(
                        "answer {kind_name:?} is a text, not a number: give `choices = [\"...\", \"...\"]` to pick from"
                    ),
                );
                None
            }
        };
    };
    let items = list.get_ref();
    if items.len() < MIN_CHOICES || items.len() > MAX_CHOICES {
        err(
            list.span(),
            format!("give between {MIN_CHOICES} and {MAX_CHOICES} choices"),
        );
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for c in items {
        if !text_ok(c, "a choice", err) {
            return None;
        }
        let t = c.get_ref().trim().to_string();
        if out.iter().any(|o| normalize(o) == normalize(&t)) {
            err(c.span(), format!("the choice {t:?} is there twice"));
            return None;
        }
        match shape {
            Shape::Number if parse_number(&t).is_none() => {
                err(
                    c.span(),
                    format!("answer {kind_name:?} is a number: {t:?} is not one"),
                );
                return None;
            }
            Shape::YesNo if parse_yes_no(&t).is_none() => {
                err(
                    c.span(),
                    format!("answer {kind_name:?} is yes or no: {t:?} is neither"),
                );
                return None;
            }
            _ => {}
        }
        out.push(t);
    }
    Some(out)
}

impl AnswerKind {
    /// What the answer looks like, for this scenario.
    pub fn shape(&self, sc: &Scenario) -> Shape {
        match self {
            AnswerKind::LineCount { .. }
            | AnswerKind::PeakProcesses
            | AnswerKind::ProcessCount
            | AnswerKind::ExitCode { .. }
            | AnswerKind::LostUpdates { .. } => Shape::Number,
            AnswerKind::FinalValue { value } => match sc.values.get(value) {
                Some(Value::Int(_) | Value::Float(_)) => Shape::Number,
                Some(Value::Bool(_)) => Shape::YesNo,
                _ => Shape::Text,
            },
            AnswerKind::Deadlock | AnswerKind::Adopted { .. } => Shape::YesNo,
            AnswerKind::LastLine { .. }
            | AnswerKind::FirstExit
            | AnswerKind::LastExit
            | AnswerKind::FirstReceived { .. } => Shape::Text,
        }
    }
}

fn normalize(s: &str) -> String {
    s.trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_lowercase()
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_yes_no(s: &str) -> Option<bool> {
    match normalize(s).as_str() {
        "yes" | "y" | "true" => Some(true),
        "no" | "n" | "false" => Some(false),
        _ => None,
    }
}

/// What a run answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Number(f64),
    Text(String),
    YesNo(bool),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => write!(f, "{}", *x as i64),
            Answer::Number(x) => write!(f, "{x}"),
            Answer::Text(t) => write!(f, "{t}"),
            Answer::YesNo(true) => write!(f, "yes"),
            Answer::YesNo(false) => write!(f, "no"),
        }
    }
}

impl Answer {
    fn of_value(v: &Value) -> Answer {
        match v {
            Value::Int(i) => Answer::Number(*i as f64),
            Value::Float(x) => Answer::Number(*x),
            Value::Bool(b) => Answer::YesNo(*b),
            other => Answer::Text(other.to_string()),
        }
    }
}

/// What on the stage an answer is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Process(String),
    Value(String),
    Channel(String),
    /// The run as a whole (a deadlock).
    Run,
}

/// The event that decides an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decider {
    /// Its index in the events evaluated.
    pub index: usize,
    pub t_ns: u64,
    /// Seconds since the run's first event.
    pub since_start_s: f64,
    pub proc_id: String,
    /// The line of the listing it belongs to.
    pub line: Option<u32>,
    /// In words: "main.1 exits with code 0".
    pub what: String,
    pub target: Target,
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {:.3} s", self.what, self.since_start_s)?;
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        write!(f, ")")
    }
}

/// An answer and the event that decided it; `answer` is None when the run
/// never said (e.g. main printed nothing), and `note` says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub answer: Option<Answer>,
    pub decider: Option<Decider>,
    pub note: Option<String>,
}

/// What the audience said.
#[derive(Debug, Clone, PartialEq)]
pub enum Guess {
    Choice(usize),
    Number(f64),
}

impl Question {
    /// Reads what someone typed: a choice's number or text, or a number.
    pub fn parse_guess(&self, typed: &str) -> Result<Guess, String> {
        let t = typed.trim();
        if self.choices.is_empty() {
            return parse_number(t)
                .map(Guess::Number)
                .ok_or_else(|| format!("{t:?} is not a number: type a number"));
        }
        if let Ok(n) = t.parse::<usize>()
            && (1..=self.choices.len()).contains(&n)
            && !self.choices.iter().any(|c| normalize(c) == normalize(t))
        {
            return Ok(Guess::Choice(n - 1));
        }
        if let Some(i) = self
            .choices
            .iter()
            .position(|c| normalize(c) == normalize(t))
        {
            return Ok(Guess::Choice(i));
        }
        if self.shape == Shape::YesNo
            && let Some(b) = parse_yes_no(t)
            && let Some(i) = self.choices.iter().position(|c| parse_yes_no(c) == Some(b))
        {
            return Ok(Guess::Choice(i));
        }
        Err(format!(
            "{t:?} is none of the choices: type 1 to {}",
            self.choices.len()
        ))
    }

    /// The guess in words.
    pub fn guess_text(&self, g: &Guess) -> String {
        match g {
            Guess::Choice(i) => self.choices.get(*i).cloned().unwrap_or_default(),
            Guess::Number(x) => Answer::Number(*x).to_string(),
        }
    }

    /// Does this choice say the answer?
    pub fn choice_matches(choice: &str, answer: &Answer) -> bool {
        match answer {
            Answer::Number(y) => parse_number(choice).is_some_and(|x| (x - y).abs() < 1e-9),
            Answer::YesNo(b) => parse_yes_no(choice) == Some(*b),
            Answer::Text(t) => normalize(choice) == normalize(t),
        }
    }

    /// The index of the choice that is right, if one is.
    pub fn right_choice(&self, answer: &Answer) -> Option<usize> {
        self.choices
            .iter()
            .position(|c| Self::choice_matches(c, answer))
    }

    pub fn is_right(&self, guess: &Guess, answer: &Answer) -> bool {
        match (guess, answer) {
            (Guess::Choice(i), a) => self
                .choices
                .get(*i)
                .is_some_and(|c| Self::choice_matches(c, a)),
            (Guess::Number(x), Answer::Number(y)) => (x - y).abs() < 1e-9,
            (Guess::Number(_), _) => false,
        }
    }

    /// The answer this run gave, and the event that decided it.
    pub fn evaluate(&self, events: &[Event]) -> Outcome {
        evaluate(&self.kind, events)
    }
}

/// A stdout line and the event that completed it.
struct Line {
    proc_id: String,
    text: String,
    index: usize,
}

/// Every non-blank stdout line, in the order the terminal shows them.
fn stdout_lines(events: &[Event]) -> Vec<Line> {
    let mut partial: std::collections::BTreeMap<&str, String> = Default::default();
    let mut last_index: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Body::Output {
            stream: Stream::Stdout,
            text,
        } = &e.body
        else {
            continue;
        };
        let buf = partial.entry(e.proc_id.as_str()).or_default();
        buf.push_str(text);
        last_index.insert(e.proc_id.as_str(), i);
        while let Some(nl) = buf.find('\n') {
            let line: String = buf.drain(..=nl).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            if !line.trim().is_empty() {
                out.push(Line {
                    proc_id: e.proc_id.clone(),
                    text: line,
                    index: i,
                });
            }
        }
    }
    // What is left without a newline came out too (`end = "|"`).
    for (proc_id, rest) in partial {
        if !rest.trim().is_empty() {
            let index = last_index.get(proc_id).copied().unwrap_or(0);
            out.push(Line {
                proc_id: proc_id.to_string(),
                text: rest,
                index,
            });
        }
    }
    out.sort_by_key(|l| l.index);
    out
}

fn exit_words(body: &Body) -> Option<(String, f64)> {
    match body {
        Body::Exit {
            code: Some(c),
            signal: None,
        } => Some((format!("exits with code {c}"), f64::from(*c))),
        Body::Exit {
            signal: Some(s), ..
        } => {
            let num = s
                .parse::<nix::sys::signal::Signal>()
                .map(|sig| sig as i32)
                .unwrap_or(0);
            Some((format!("is killed by {s}"), -f64::from(num)))
        }
        _ => None,
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Computes an answer from a run's events (in the order they were taken in).
pub fn evaluate(kind: &AnswerKind, events: &[Event]) -> Outcome {
    let t0 = events.first().map_or(0, |e| e.t_ns);
    let decider = |index: usize, what: String, target: Target| -> Option<Decider> {
        let e = events.get(index)?;
        Some(Decider {
            index,
            t_ns: e.t_ns,
            since_start_s: e.t_ns.saturating_sub(t0) as f64 / 1e9,
            proc_id: e.proc_id.clone(),
            line: e.line,
            what,
            target,
        })
    };
    let none = |note: String| Outcome {
        answer: None,
        decider: None,
        note: Some(note),
    };
    let scenario_proc = |e: &Event| e.proc_id != RUNNER_ID;
    match kind {
        AnswerKind::LastLine { proc } => {
            let lines = stdout_lines(events);
            let last = lines
                .iter()
                .rev()
                .find(|l| proc.as_ref().is_none_or(|p| *p == l.proc_id));
            match last {
                Some(l) => Outcome {
                    answer: Some(Answer::Text(l.text.clone())),
                    decider: decider(
                        l.index,
                        format!("{} prints {:?}", l.proc_id, l.text),
                        Target::Process(l.proc_id.clone()),
                    ),
                    note: None,
                },
                None => none(match proc {
                    Some(p) => format!("{p} printed nothing"),
                    None => "nothing was printed".into(),
                }),
            }
        }
        AnswerKind::LineCount { text, proc } => {
            let lines = stdout_lines(events);
            let hits: Vec<&Line> = lines
                .iter()
                .filter(|l| proc.as_ref().is_none_or(|p| *p == l.proc_id))
                .filter(|l| l.text.contains(text.as_str()))
                .collect();
            let n = hits.len();
            let decider = hits.last().and_then(|l| {
                decider(
                    l.index,
                    format!(
                        "{} prints {:?}, the {} line with {text:?}",
                        l.proc_id,
                        l.text,
                        ordinal(n)
                    ),
                    Target::Process(l.proc_id.clone()),
                )
            });
            Outcome {
                answer: Some(Answer::Number(n as f64)),
                note: decider
                    .is_none()
                    .then(|| format!("no line contains {text:?}")),
                decider,
            }
        }
        AnswerKind::FinalValue { value } => {
            let world = World::from_events(events);
            let Some(v) = world.values.get(value) else {
                return none(format!("the run never declared {value}"));
            };
            let answer = Answer::of_value(&v.current);
            let last_write = events.iter().rposition(
                |e| matches!(&e.body, Body::Write { name, private: false, .. } if name == value),
            );
            let (index, what) = match last_write {
                Some(i) => (
                    i,
                    format!(
                        "{} writes {value} = {}, the last write",
                        events[i].proc_id,
                        v.current.repr()
                    ),
                ),
                None => {
                    let declared = events.iter().position(
                        |e| matches!(&e.body, Body::Resource { name, .. } if name == value),
                    );
                    match declared {
                        Some(i) => (
                            i,
                            format!("nobody writes {value}: it keeps its first value"),
                        ),
                        None => {
                            return Outcome {
                                answer: Some(answer),
                                decider: None,
                                note: None,
                            };
                        }
                    }
                }
            };
            Outcome {
                answer: Some(answer),
                decider: decider(index, what, Target::Value(value.clone())),
                note: None,
            }
        }
        AnswerKind::PeakProcesses => {
            let mut alive: std::collections::BTreeSet<&str> = Default::default();
            let mut peak = 0usize;
            let mut at: Option<(usize, String)> = None;
            for (i, e) in events.iter().enumerate() {
                let who = match &e.body {
                    Body::Spawn { child, .. } if child != RUNNER_ID => {
                        alive.insert(child.as_str());
                        Some(child.as_str())
                    }
                    Body::Hello { .. } if scenario_proc(e) => {
                        alive.insert(e.proc_id.as_str());
                        Some(e.proc_id.as_str())
                    }
                    Body::Exit { .. } => {
                        alive.remove(e.proc_id.as_str());
                        None
                    }
                    _ => None,
                };
                if let Some(who) = who
                    && alive.len() > peak
                {
                    peak = alive.len();
                    at = Some((i, who.to_string()));
                }
            }
            match at {
                Some((i, who)) => Outcome {
                    answer: Some(Answer::Number(peak as f64)),
                    decider: decider(
                        i,
                        format!("{who} starts: {peak} processes are alive at once"),
                        Target::Process(who),
                    ),
                    note: None,
                },
                None => none("no process started".into()),
            }
        }
        AnswerKind::ProcessCount => {
            let mut seen: std::collections::BTreeSet<&str> = Default::default();
            let mut at: Option<(usize, String)> = None;
            for (i, e) in events.iter().enumerate() {
                let who = match &e.body {
                    Body::Spawn { child, .. } if child != RUNNER_ID => Some(child.as_str()),
                    Body::Hello { .. } if scenario_proc(e) => Some(e.proc_id.as_str()),
                    _ => None,
                };
                if let Some(who) = who
                    && seen.insert(who)
                {
                    at = Some((i, who.to_string()));
                }
            }
            let n = seen.len();
            match at {
                Some((i, who)) => Outcome {
                    answer: Some(Answer::Number(n as f64)),
                    decider: decider(
                        i,
                        format!("{who} starts: the {} process of the run", ordinal(n)),
                        Target::Process(who),
                    ),
                    note: None,
                },
                None => none("no process started".into()),
            }
        }
        AnswerKind::FirstExit | AnswerKind::LastExit => {
            let mut exits = events
                .iter()
                .enumerate()
                .filter(|(_, e)| scenario_proc(e) && matches!(e.body, Body::Exit { .. }));
            let found = if *kind == AnswerKind::FirstExit {
                exits.next()
            } else {
                exits.next_back()
            };
            match found {
                Some((i, e)) => {
                    let words = exit_words(&e.body).map_or("exits".into(), |(w, _)| w);
                    let order = if *kind == AnswerKind::FirstExit {
                        "first"
                    } else {
                        "last"
                    };
                    Outcome {
                        answer: Some(Answer::Text(e.proc_id.clone())),
                        decider: decider(
                            i,
                            format!("{} {words}, the {order} to end", e.proc_id),
                            Target::Process(e.proc_id.clone()),
                        ),
                        note: None,
                    }
                }
                None => none("no process ended".into()),
            }
        }
        AnswerKind::ExitCode { proc } => {
            let found = events
                .iter()
                .enumerate()
                .find(|(_, e)| e.proc_id == *proc && matches!(e.body, Body::Exit { .. }));
            match found.and_then(|(i, e)| exit_words(&e.body).map(|w| (i, w))) {
                Some((i, (words, code))) => Outcome {
                    answer: Some(Answer::Number(code)),
                    decider: decider(
                        i,
                        format!("{proc} {words}: exitcode {}", Answer::Number(code)),
                        Target::Process(proc.clone()),
                    ),
                    note: None,
                },
                None => none(format!("{proc} never ended (or never existed)")),
            }
        }
        AnswerKind::LostUpdates { value } => {
            // The updates lost, as the stage counts them: a write that
            // erased updates counts them, one that put erased updates back
            // (it found another's stale write) counts against them.
            let races: Vec<(usize, i64)> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    matches!(&e.body, Body::Race { name, .. }
                        if value.as_ref().is_none_or(|v| v == name))
                })
                .filter_map(|(i, e)| crate::model::race_body_updates(&e.body).map(|n| (i, n)))
                .collect();
            let n: i64 = races.iter().map(|r| r.1).sum::<i64>().max(0);
            let decider = races.iter().rev().find(|r| r.1 > 0).and_then(|&(i, k)| {
                let name = match &events[i].body {
                    Body::Race { name, .. } => name.clone(),
                    _ => String::new(),
                };
                let s = if k == 1 { "" } else { "s" };
                decider(
                    i,
                    format!(
                        "{}'s write of {name} throws away {k} update{s}: {n} lost in all",
                        events[i].proc_id,
                    ),
                    Target::Value(name),
                )
            });
            let decider = if n > 0 { decider } else { None };
            Outcome {
                answer: Some(Answer::Number(n as f64)),
                note: decider.is_none().then(|| "no update was lost".to_string()),
                decider,
            }
        }
        AnswerKind::Deadlock => {
            let found = events.iter().enumerate().find_map(|(i, e)| match &e.body {
                Body::Deadlock { cycle } => Some((i, cycle.clone())),
                _ => None,
            });
            match found {
                Some((i, cycle)) => Outcome {
                    answer: Some(Answer::YesNo(true)),
                    decider: decider(i, format!("deadlock: {cycle}"), Target::Run),
                    note: None,
                },
                None => {
                    let last = events
                        .iter()
                        .rposition(|e| scenario_proc(e) && matches!(e.body, Body::Exit { .. }));
                    Outcome {
                        answer: Some(Answer::YesNo(false)),
                        decider: last.and_then(|i| {
                            decider(
                                i,
                                format!("{} ends: no deadlock", events[i].proc_id),
                                Target::Process(events[i].proc_id.clone()),
                            )
                        }),
                        note: None,
                    }
                }
            }
        }
        AnswerKind::Adopted { proc } => {
            let adopted = events
                .iter()
                .position(|e| e.proc_id == *proc && matches!(e.body, Body::Adopted { .. }));
            if let Some(i) = adopted {
                let by = match &events[i].body {
                    Body::Adopted { by, .. } => by.clone(),
                    _ => String::new(),
                };
                return Outcome {
                    answer: Some(Answer::YesNo(true)),
                    decider: decider(
                        i,
                        format!("{proc} loses its parent and is adopted by {by}"),
                        Target::Process(proc.clone()),
                    ),
                    note: None,
                };
            }
            let reaped = events
                .iter()
                .position(|e| e.proc_id == *proc && matches!(e.body, Body::Reaped { .. }));
            match reaped {
                Some(i) => {
                    let by = match &events[i].body {
                        Body::Reaped { by, .. } => by.clone(),
                        _ => String::new(),
                    };
                    Outcome {
                        answer: Some(Answer::YesNo(false)),
                        decider: decider(
                            i,
                            format!("{proc} is reaped by its own parent, {by}"),
                            Target::Process(proc.clone()),
                        ),
                        note: None,
                    }
                }
                None if events.iter().any(|e| e.proc_id == *proc) => Outcome {
                    answer: Some(Answer::YesNo(false)),
                    decider: None,
                    note: Some(format!("{proc} was never adopted")),
                },
                None => none(format!("there was no process {proc}")),
            }
        }
        AnswerKind::FirstReceived { channel } => {
            let found = events.iter().enumerate().find_map(|(i, e)| match &e.body {
                Body::Get {
                    channel: c, value, ..
                }
                | Body::Recv {
                    channel: c, value, ..
                } if c == channel => Some((i, value.clone())),
                _ => None,
            });
            match found {
                Some((i, v)) => Outcome {
                    answer: Some(Answer::of_value(&v)),
                    decider: decider(
                        i,
                        format!(
                            "{} takes {} out of {channel}, the first message",
                            events[i].proc_id,
                            v.repr()
                        ),
                        Target::Channel(channel.clone()),
                    ),
                    note: None,
                },
                None => none(format!("nothing was taken out of {channel}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load;

    const BASE: &str = r#"
name = "q"
title = "t"
explain = "e"

[values]
v = 0

[queues.q]

[roles.main]
steps = [ { print = "hi" } ]
"#;

    fn with_quiz(quiz: &str) -> Result<Scenario, crate::scenario::ScenarioError> {
        load(&format!("{BASE}\n{quiz}"), "test.toml")
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i + 1)
    }

    #[test]
    fn a_good_question_loads() {
        let s = with_quiz(
            "[[quiz]]\nask = \"final v?\"\nanswer = \"final_value\"\nvalue = \"v\"\nvaries = true\n",
        )
        .unwrap();
        assert_eq!(s.quiz.len(), 1);
        assert_eq!(s.quiz[0].shape, Shape::Number);
        assert!(s.quiz[0].choices.is_empty());
        assert!(s.quiz[0].varies);
    }

    #[test]
    fn yes_no_questions_get_yes_and_no() {
        let s = with_quiz("[[quiz]]\nask = \"stuck?\"\nanswer = \"deadlock\"\n").unwrap();
        assert_eq!(s.quiz[0].choices, vec!["yes", "no"]);
    }

    #[test]
    fn errors_name_line_column_and_what_is_wrong() {
        let cases = [
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"colour\"\n",
                "answer = \"colour\"",
                "unknown answer \"colour\"",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"final_value\"\nvalue = \"w\"\n",
                "value = \"w\"",
                "unknown shared value \"w\"",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"final_value\"\n",
                "answer = \"final_value\"",
                "needs `value = ...`",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"last_line\"\nproc = \"main\"\n",
                "answer = \"last_line\"",
                "give `choices",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"line_count\"\ntext = \"hi\"\nchoices = [\"1\", \"two\"]\n",
                "choices = [",
                "\"two\" is not one",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"first_exit\"\nchoices = [\"main\"]\n",
                "choices = [",
                "between 2 and 6 choices",
            ),
            (
                "[[quiz]]\nask = \"   \"\nanswer = \"deadlock\"\n",
                "ask = ",
                "the question (`ask`) is empty",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"deadlock\"\nchannel = \"q\"\n",
                "channel = \"q\"",
                "`channel` does not go with answer \"deadlock\"",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"first_received\"\nchannel = \"nope\"\nchoices = [\"a\", \"b\"]\n",
                "channel = \"nope\"",
                "unknown queue or pipe \"nope\"",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"exit_code\"\nproc = \"main 1\"\n",
                "proc = \"main 1\"",
                "proc must be a process id",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"deadlock\"\ncolour = 3\n",
                "colour = 3",
                "unknown field `colour`",
            ),
            (
                "[[quiz]]\nask = \"x\"\nanswer = \"first_exit\"\nchoices = [\"main\", \"Main\"]\n",
                "choices = [",
                "\"Main\" is there twice",
            ),
        ];
        for (quiz, at, says) in cases {
            let text = format!("{BASE}\n{quiz}");
            let e = load(&text, "test.toml").expect_err(quiz);
            assert_eq!(e.origin, "test.toml");
            assert_eq!(e.line, line_of(&text, at), "{quiz}: {e}");
            assert!(e.column >= 1, "{e}");
            assert!(e.message.contains(says), "{quiz}: {e}");
        }
    }

    #[test]
    fn error_column_points_at_the_value() {
        let text =
            format!("{BASE}\n[[quiz]]\nask = \"x\"\nanswer = \"final_value\"\nvalue = \"w\"\n");
        let e = load(&text, "f.toml").unwrap_err();
        assert_eq!(e.column, "value = ".len() + 1, "{e}");
        assert!(
            e.to_string().starts_with(&format!("f.toml:{}:9: ", e.line)),
            "{e}"
        );
    }

    /// Every prefix of a file with questions, and every one-byte change of
    /// its quiz part, loads or gets an error: never a panic.
    #[test]
    fn cut_or_changed_quiz_tables_never_panic() {
        let quiz = "[[quiz]]\nask = \"who?\"\nanswer = \"first_received\"\nchannel = \"q\"\nchoices = [\"A\", \"B\"]\nvaries = true\nexplain = \"fifo\"\n[[quiz]]\nask = \"n\"\nanswer = \"line_count\"\ntext = \"hi\"\nproc = \"main\"\n";
        let text = format!("{BASE}\n{quiz}");
        let start = BASE.len();
        for cut in start..=text.len() {
            if text.is_char_boundary(cut) {
                let _ = load(&text[..cut], "cut.toml");
            }
        }
        let bytes = text.as_bytes();
        for i in start..bytes.len() {
            for b in [b'"', b'[', b']', b'=', b'\n', b'x', b'0', b'\\'] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                if let Ok(t) = std::str::from_utf8(&changed) {
                    let _ = load(t, "changed.toml");
                }
            }
        }
        assert!(load(&text, "whole.toml").is_ok());
    }

    #[test]
    fn every_kind_on_no_events_says_why_not() {
        let kinds = [
            AnswerKind::LastLine { proc: None },
            AnswerKind::LineCount {
                text: "x".into(),
                proc: None,
            },
            AnswerKind::FinalValue { value: "v".into() },
            AnswerKind::PeakProcesses,
            AnswerKind::ProcessCount,
            AnswerKind::FirstExit,
            AnswerKind::LastExit,
            AnswerKind::ExitCode {
                proc: "main".into(),
            },
            AnswerKind::LostUpdates { value: None },
            AnswerKind::Deadlock,
            AnswerKind::Adopted {
                proc: "main.1".into(),
            },
            AnswerKind::FirstReceived {
                channel: "q".into(),
            },
        ];
        for k in &kinds {
            let o = evaluate(k, &[]);
            assert!(o.decider.is_none(), "{k:?}");
            assert!(o.answer.is_some() || o.note.is_some(), "{k:?}: {o:?}");
        }
        // A cut-off log (an exit with neither code nor signal) is no panic.
        let odd = vec![ev(
            1,
            "main",
            Body::Exit {
                code: None,
                signal: None,
            },
        )];
        for k in &kinds {
            let _ = evaluate(k, &odd);
        }
    }

    fn ev(t: u64, proc: &str, body: Body) -> Event {
        Event {
            t_ns: t,
            seq: 0,
            proc_id: proc.into(),
            pid: 1,
            line: Some(3),
            thread: None,
            tid: None,
            body,
        }
    }

    fn out(t: u64, proc: &str, text: &str) -> Event {
        ev(
            t,
            proc,
            Body::Output {
                stream: Stream::Stdout,
                text: text.into(),
            },
        )
    }

    fn exit(t: u64, proc: &str, code: Option<i32>, signal: Option<&str>) -> Event {
        ev(
            t,
            proc,
            Body::Exit {
                code,
                signal: signal.map(str::to_string),
            },
        )
    }

    fn spawn(t: u64, parent: &str, child: &str) -> Event {
        ev(
            t,
            parent,
            Body::Spawn {
                child: child.into(),
                child_pid: 2,
                role: "r".into(),
                daemon: false,
            },
        )
    }

    fn run() -> Vec<Event> {
        vec![
            spawn(0, RUNNER_ID, "main"),
            spawn(1_000_000, "main", "main.1"),
            out(2_000_000, "main.1", "hello\n"),
            out(3_000_000, "main", "a|b"),
            exit(4_000_000, "main.1", None, Some("SIGTERM")),
            out(5_000_000, "main", "|\nlast\n\n"),
            exit(6_000_000, "main", Some(0), None),
            exit(7_000_000, RUNNER_ID, Some(0), None),
        ]
    }

    #[test]
    fn last_line_and_line_count() {
        let e = run();
        let o = evaluate(&AnswerKind::LastLine { proc: None }, &e);
        assert_eq!(o.answer, Some(Answer::Text("last".into())));
        let d = o.decider.unwrap();
        assert_eq!(d.index, 5);
        assert_eq!(d.target, Target::Process("main".into()));
        assert!((d.since_start_s - 0.005).abs() < 1e-9);
        let o = evaluate(
            &AnswerKind::LastLine {
                proc: Some("main.1".into()),
            },
            &e,
        );
        assert_eq!(o.answer, Some(Answer::Text("hello".into())));
        let o = evaluate(
            &AnswerKind::LineCount {
                text: "|".into(),
                proc: None,
            },
            &e,
        );
        assert_eq!(o.answer, Some(Answer::Number(1.0)), "a|b| is one line");
    }

    #[test]
    fn exits_and_processes() {
        let e = run();
        let first = evaluate(&AnswerKind::FirstExit, &e);
        assert_eq!(first.answer, Some(Answer::Text("main.1".into())));
        let last = evaluate(&AnswerKind::LastExit, &e);
        assert_eq!(
            last.answer,
            Some(Answer::Text("main".into())),
            "not the runner"
        );
        let code = evaluate(
            &AnswerKind::ExitCode {
                proc: "main.1".into(),
            },
            &e,
        );
        assert_eq!(code.answer, Some(Answer::Number(-15.0)));
        assert!(code.decider.unwrap().what.contains("SIGTERM"));
        assert_eq!(
            evaluate(&AnswerKind::PeakProcesses, &e).answer,
            Some(Answer::Number(2.0))
        );
        assert_eq!(
            evaluate(&AnswerKind::ProcessCount, &e).answer,
            Some(Answer::Number(2.0))
        );
        let no = evaluate(&AnswerKind::Deadlock, &e);
        assert_eq!(no.answer, Some(Answer::YesNo(false)));
    }

    #[test]
    fn guesses_are_read_and_judged() {
        let s = with_quiz(
            "[[quiz]]\nask = \"who?\"\nanswer = \"first_exit\"\nchoices = [\"main\", \"main.1\"]\n",
        )
        .unwrap();
        let q = &s.quiz[0];
        assert_eq!(q.parse_guess("2"), Ok(Guess::Choice(1)));
        assert_eq!(q.parse_guess(" MAIN "), Ok(Guess::Choice(0)));
        assert!(q.parse_guess("3").is_err());
        let a = Answer::Text("main.1".into());
        assert!(q.is_right(&Guess::Choice(1), &a));
        assert!(!q.is_right(&Guess::Choice(0), &a));
        assert_eq!(q.right_choice(&a), Some(1));
        let s =
            with_quiz("[[quiz]]\nask = \"v?\"\nanswer = \"final_value\"\nvalue = \"v\"\n").unwrap();
        let q = &s.quiz[0];
        assert_eq!(q.parse_guess("20"), Ok(Guess::Number(20.0)));
        assert!(q.parse_guess("twenty").is_err());
        assert!(q.is_right(&Guess::Number(20.0), &Answer::Number(20.0)));
        let s = with_quiz("[[quiz]]\nask = \"stuck?\"\nanswer = \"deadlock\"\n").unwrap();
        assert_eq!(s.quiz[0].parse_guess("y"), Ok(Guess::Choice(0)));
    }
}
