//! Recordings: a run's events as JSON lines, one [`Event`] per line, as
//! `forkscope run --record FILE` (or `--format jsonl`) and the app's "Save
//! recording" write them. `forkscope export` and `forkscope --open` read
//! them back.

use crate::protocol::Event;
use std::io::{self, Write};
use std::path::Path;

/// Why a recording cannot be read: one sentence, with the line number.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Line {
        path: String,
        line: usize,
        what: String,
    },
}

/// Every event kind a recording may hold (the `kind` field).
const KINDS: &[&str] = &[
    "hello",
    "resource",
    "spawn",
    "thread_start",
    "thread_end",
    "thread_join",
    "exec",
    "exit",
    "reaped",
    "adopted",
    "output",
    "buffered",
    "flush",
    "send",
    "recv",
    "poll",
    "put",
    "get",
    "lock_wait",
    "lock_acquire",
    "lock_release",
    "read",
    "write",
    "task_start",
    "task_done",
    "callback",
    "named",
    "signal",
    "sleep",
    "wake",
    "block",
    "unblock",
    "narrate",
    "sample",
    "pending",
    "go",
    "free",
    "race",
    "deadlock",
    "error",
];

/// Reads a recording file. `path` names it in errors.
pub fn read(path: &Path) -> Result<Vec<Event>, RecordingError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| RecordingError::Io {
        path: name.clone(),
        source,
    })?;
    parse(&bytes, &name)
}

/// Parses a recording's bytes: blank lines are skipped; anything else that
/// is not an event is an error naming its line.
pub fn parse(bytes: &[u8], name: &str) -> Result<Vec<Event>, RecordingError> {
    let mut events = Vec::new();
    let ends_with_newline = bytes.last().is_none_or(|b| *b == b'\n');
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let last = lines.peek().is_none_or(|(_, rest)| rest.is_empty());
        let err = |what: String| RecordingError::Line {
            path: name.to_string(),
            line: i + 1,
            what,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(err(
                "not UTF-8 text: is this a recording (`forkscope run --record FILE`)?".into(),
            ));
        };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(e) => events.push(e),
            Err(e) => {
                if last && !ends_with_newline && e.is_eof() {
                    return Err(err(
                        "the last line is cut short (was the recording interrupted?)".into(),
                    ));
                }
                return Err(err(why_not_an_event(text, &e)));
            }
        }
    }
    Ok(events)
}

/// Says what is wrong with a line that is not an event.
fn why_not_an_event(text: &str, e: &serde_json::Error) -> String {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if !text.trim_start().starts_with('{') => {
            return "not a JSON event: is this a recording (`forkscope run --record FILE`)?".into();
        }
        Err(_) => return format!("not a JSON event ({e})"),
    };
    let Some(obj) = value.as_object() else {
        return "not a JSON object: every line of a recording is one event".into();
    };
    match obj.get("kind") {
        None => "an event without a \"kind\"".into(),
        Some(serde_json::Value::String(k)) if !KINDS.contains(&k.as_str()) => {
            format!("unknown event kind {k:?}")
        }
        Some(serde_json::Value::String(k)) => format!("a bad {k:?} event: {e}"),
        Some(_) => "\"kind\" is not a string".into(),
    }
}

/// Writes one event as a line.
pub fn write_event(out: &mut impl Write, e: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    out.write_all(b"\n")
}

/// Writes a whole recording to `path` (a plain file of ours; see
/// [`crate::safe_fs::create_file`]).
pub fn write(path: &Path, events: &[Event]) -> io::Result<()> {
    let mut out = io::BufWriter::new(crate::safe_fs::create_file(path)?);
    for e in events {
        write_event(&mut out, e)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str =
        r#"{"t_ns":5,"seq":1,"proc":"main","pid":9,"kind":"hello","ppid":1,"role":"main"}"#;

    #[test]
    fn reads_events_and_skips_blank_lines() {
        let text = format!("{HELLO}\n\n{HELLO}\n");
        let events = parse(text.as_bytes(), "r.jsonl").unwrap();
        assert_eq!(events.len(), 2);
        assert!(parse(b"", "r.jsonl").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let text = format!("{HELLO}\n{{\"t_ns\":1,\"proc\":\"x\",\"pid\":1,\"kind\":\"dance\"}}\n");
        let e = parse(text.as_bytes(), "r.jsonl").unwrap_err().to_string();
        assert_eq!(e, "r.jsonl:2: unknown event kind \"dance\"");
        let cut = format!("{HELLO}\n{}", &HELLO[..30]);
        let e = parse(cut.as_bytes(), "r.jsonl").unwrap_err().to_string();
        assert!(
            e.starts_with("r.jsonl:2: the last line is cut short"),
            "{e}"
        );
        let e = parse(b"name = \"x\"\n", "s.toml").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:1: not a JSON event"), "{e}");
        let e = parse(b"[1,2]\n", "a.json").unwrap_err().to_string();
        assert!(e.starts_with("a.json:1: not a JSON object"), "{e}");
    }

    #[test]
    fn write_then_read_gives_the_same_events() {
        let dir = crate::safe_fs::private_dir(&std::env::temp_dir(), "forkscope-test").unwrap();
        let path = dir.join("r.jsonl");
        let events = parse(format!("{HELLO}\n").as_bytes(), "x").unwrap();
        write(&path, &events).unwrap();
        assert_eq!(read(&path).unwrap(), events);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
