//! `forkscope export FILE --perfetto OUT`: real recordings become Chrome
//! traces of the shape ui.perfetto.dev reads (the trace event format:
//! every event has ph/ts/pid/tid/name, slices nest per track, every flow
//! start has its end inside a slice, counters are numbers), with one
//! arrow per message, an instant per signal, lost update and deadlock;
//! bad input gets one line naming the line, and exit 2.

mod common;

use common::*;
use forkscope::protocol::{Body, Event};
use serde_json::Value as J;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

fn record(dir: &Path, scenario: &str, extra: &[&str]) -> (std::path::PathBuf, Vec<Event>) {
    let file = dir.join(format!("{scenario}.jsonl"));
    let file_arg = file.to_str().expect("utf-8 path");
    let mut args = vec!["run", scenario, "--format", "jsonl", "--record", file_arg];
    args.extend_from_slice(extra);
    let run = forkscope(&args);
    assert!(run.code == 0 || run.code == 3, "{scenario}: {}", run.stderr);
    let events = forkscope::trace_file::read(&file).expect("the recording reads back");
    assert_eq!(
        events, run.events,
        "the recording holds what the run printed"
    );
    (file, events)
}

fn export(file: &Path, out: &Path) -> Run {
    forkscope(&[
        "export",
        file.to_str().expect("utf-8"),
        "--perfetto",
        out.to_str().expect("utf-8"),
    ])
}

fn num(e: &J, key: &str) -> f64 {
    e[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {e}"))
}

/// Checks the structure Perfetto's JSON importer needs; returns the events.
fn check_shape(trace: &J) -> Vec<J> {
    let events = trace["traceEvents"]
        .as_array()
        .expect("a traceEvents array")
        .clone();
    let mut open: HashMap<(i64, i64), Vec<String>> = HashMap::new();
    let mut slices: HashMap<(i64, i64), Vec<(f64, f64)>> = HashMap::new();
    let mut named: HashSet<i64> = HashSet::new();
    let mut used: HashSet<i64> = HashSet::new();
    let mut by_ts: Vec<&J> = events.iter().collect();
    by_ts.sort_by(|a, b| num(a, "ts").total_cmp(&num(b, "ts")));
    for e in &by_ts {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        assert!(e["name"].is_string(), "no name: {e}");
        assert!(num(e, "ts") >= 0.0, "negative ts: {e}");
        let pid = e["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {e}"));
        let tid = e["tid"].as_i64().unwrap_or_else(|| panic!("no tid: {e}"));
        let track = (pid, tid);
        match ph {
            "M" => {
                assert!(e["args"]["name"].is_string() || e["args"]["sort_index"].is_number());
                if e["name"] == "process_name" {
                    named.insert(pid);
                }
            }
            "X" => {
                let dur = num(e, "dur");
                assert!(dur >= 0.0, "negative dur: {e}");
                slices
                    .entry(track)
                    .or_default()
                    .push((num(e, "ts"), num(e, "ts") + dur));
            }
            "B" => open
                .entry(track)
                .or_default()
                .push(e["name"].as_str().unwrap_or("").into()),
            "E" => {
                assert!(
                    open.entry(track).or_default().pop().is_some(),
                    "E without B: {e}"
                )
            }
            "i" => assert!(
                matches!(e["s"].as_str(), Some("t" | "p" | "g")),
                "instant scope: {e}"
            ),
            "C" => {
                let args = e["args"].as_object().expect("counter args");
                assert!(!args.is_empty(), "empty counter: {e}");
                for v in args.values() {
                    assert!(
                        v.as_f64().is_some_and(f64::is_finite),
                        "counter not numeric: {e}"
                    );
                }
            }
            "s" | "f" => assert!(e["id"].is_u64(), "flow without id: {e}"),
            other => panic!("unexpected phase {other}: {e}"),
        }
        if ph != "M" {
            used.insert(pid);
        }
    }
    for (track, names) in &open {
        assert!(names.is_empty(), "B without E on {track:?}: {names:?}");
    }
    for pid in &used {
        assert!(named.contains(pid), "process {pid} has no name");
    }
    // Slices of one track nest (Perfetto drops ones that overlap partly).
    const EPS: f64 = 1e-6;
    for (track, list) in &mut slices {
        list.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (start, end) in list.iter() {
            while stack.last().is_some_and(|top| *top <= start + EPS) {
                stack.pop();
            }
            if let Some(top) = stack.last() {
                assert!(*end <= top + EPS, "slices overlap on {track:?} at {start}");
            }
            stack.push(*end);
        }
    }
    // Every flow start has one end, later, and both sit inside a slice.
    let mut flows: BTreeMap<u64, (Vec<&J>, Vec<&J>)> = BTreeMap::new();
    for e in &events {
        match e["ph"].as_str() {
            Some("s") => flows
                .entry(e["id"].as_u64().unwrap())
                .or_default()
                .0
                .push(e),
            Some("f") => flows
                .entry(e["id"].as_u64().unwrap())
                .or_default()
                .1
                .push(e),
            _ => {}
        }
    }
    for (id, (starts, ends)) in &flows {
        assert_eq!((starts.len(), ends.len()), (1, 1), "flow {id}");
        let (s, f) = (starts[0], ends[0]);
        assert!(num(f, "ts") >= num(s, "ts"), "flow {id} goes back in time");
        assert_eq!(f["bp"], "e", "flow {id} binds to its enclosing slice");
        for end in [s, f] {
            let track = (end["pid"].as_i64().unwrap(), end["tid"].as_i64().unwrap());
            let ts = num(end, "ts");
            let inside = slices
                .get(&track)
                .is_some_and(|l| l.iter().any(|(a, b)| *a <= ts + EPS && ts <= b + EPS));
            assert!(inside, "flow {id} end at {ts} is in no slice of {track:?}");
        }
    }
    events
}

fn count(events: &[J], ph: &str, needle: &str) -> usize {
    events
        .iter()
        .filter(|e| e["ph"] == ph && e["name"].as_str().is_some_and(|n| n.contains(needle)))
        .count()
}

#[test]
fn real_recordings_export_as_traces_perfetto_reads() {
    let dir = TempDir::new("export");
    let cases: &[(&str, &[&str])] = &[
        ("queue-producer-consumer", &["--time-scale", "0.1"]),
        ("pipe-pingpong", &["--time-scale", "0.1"]),
        ("signals", &["--time-scale", "0.2"]),
        ("deadlock-two-locks", &["--time-scale", "0.1"]),
        ("locked-counter", &["--time-scale", "0.1"]),
        ("unlocked-counter", &[]),
        ("shared-ctypes", &[]),
        ("pool-map", &["--time-scale", "0.1"]),
    ];
    for (scenario, extra) in cases {
        let (file, recorded) = record(&dir, scenario, extra);
        let out = dir.join(format!("{scenario}.json"));
        let run = export(&file, &out);
        assert_eq!(run.code, 0, "{scenario}: {}", run.stderr);
        assert!(run.stdout.contains("ui.perfetto.dev"), "{}", run.stdout);
        let text = std::fs::read_to_string(&out).expect("the trace is written");
        let trace: J = serde_json::from_str(&text).expect("the trace is JSON");
        let events = check_shape(&trace);

        // One named process per logical id.
        let ids: HashSet<&str> = recorded.iter().map(|e| e.proc_id.as_str()).collect();
        for id in &ids {
            let named = events.iter().any(|e| {
                e["name"] == "process_name"
                    && e["args"]["name"]
                        .as_str()
                        .is_some_and(|n| n == *id || n.starts_with(&format!("{id} · ")))
            });
            assert!(named, "{scenario}: no process named {id}");
        }
        // An arrow per message that was received.
        let key = |e: &Event| match &e.body {
            Body::Send { channel, msg, .. } | Body::Put { channel, msg, .. } => {
                Some((true, channel.clone(), msg.clone()))
            }
            Body::Recv { channel, msg, .. } | Body::Get { channel, msg, .. } => {
                Some((false, channel.clone(), msg.clone()))
            }
            _ => None,
        };
        let sent: HashSet<(String, String)> = recorded
            .iter()
            .filter_map(key)
            .filter(|k| k.0)
            .map(|k| (k.1, k.2))
            .collect();
        let received: HashSet<(String, String)> = recorded
            .iter()
            .filter_map(key)
            .filter(|k| !k.0)
            .map(|k| (k.1, k.2))
            .collect();
        let delivered = sent.intersection(&received).count();
        let arrows = count(&events, "s", "message ");
        assert_eq!(arrows, delivered, "{scenario}: message arrows");
        let kinds = |k: &str| recorded.iter().filter(|e| e.body.kind() == k).count();
        let spawned = count(&events, "s", "spawn ");
        assert_eq!(spawned, kinds("spawn"), "{scenario}: an arrow per child");
        // A lost update per write that erased updates; a write that put
        // erased updates back is named as such, not as a lost update.
        let erasing = recorded
            .iter()
            .filter(|e| forkscope::model::race_body_updates(&e.body).is_some_and(|n| n > 0))
            .count();
        assert_eq!(count(&events, "i", "lost update"), erasing, "{scenario}");
        assert_eq!(
            count(&events, "i", "lost update") + count(&events, "i", "stale write overwritten"),
            kinds("race"),
            "{scenario}"
        );
        assert_eq!(
            count(&events, "i", "deadlock"),
            kinds("deadlock"),
            "{scenario}"
        );
        assert_eq!(count(&events, "i", " → "), kinds("signal"), "{scenario}");
        assert_eq!(
            count(&events, "X", "holding"),
            kinds("lock_acquire"),
            "{scenario}"
        );
        match *scenario {
            "queue-producer-consumer" => assert!(delivered >= 3, "A, B, C"),
            "signals" => {
                for sig in ["SIGSTOP", "SIGCONT", "SIGTERM"] {
                    assert_eq!(
                        count(&events, "i", &format!("{sig} → ")),
                        1,
                        "{sig} at the sender"
                    );
                    assert_eq!(
                        count(&events, "i", &format!("{sig} from ")),
                        1,
                        "{sig} at the target"
                    );
                }
                let stopped = count(&events, "X", "stopped (SIGSTOP)");
                assert_eq!(stopped, 1, "SIGSTOP … SIGCONT is one stopped span");
            }
            "deadlock-two-locks" => assert_eq!(count(&events, "i", "deadlock"), 1),
            "locked-counter" => {
                // The counter track ends on the value the run ended with.
                let last_write = recorded
                    .iter()
                    .rev()
                    .find_map(|e| match &e.body {
                        Body::Write { name, value, .. } if name == "v" => value.as_f64(),
                        _ => None,
                    })
                    .expect("writes of v");
                let last_counter = events
                    .iter()
                    .filter(|e| e["ph"] == "C" && e["name"] == "v")
                    .max_by(|a, b| num(a, "ts").total_cmp(&num(b, "ts")))
                    .expect("a counter track for v");
                assert_eq!(last_counter["args"]["value"].as_f64(), Some(last_write));
            }
            _ => {}
        }
    }
}

#[test]
fn bad_recordings_get_one_line_and_exit_2() {
    let dir = TempDir::new("export-bad");
    let out = dir.join("out.json");
    let hello = r#"{"t_ns":5,"seq":1,"proc":"main","pid":9,"kind":"hello","ppid":1,"role":"main"}"#;
    let cases = [
        (
            "scenario.toml",
            "name = \"x\"\n".to_string(),
            "scenario.toml:1: not a JSON event",
        ),
        (
            "cut.jsonl",
            format!("{hello}\n{hello}\n{}", &hello[..40]),
            "cut.jsonl:3: the last line is cut short",
        ),
        (
            "kind.jsonl",
            format!("{hello}\n{}\n", hello.replace("hello", "dance")),
            "kind.jsonl:2: unknown event kind \"dance\"",
        ),
        (
            "field.jsonl",
            format!("{hello}\n{}\n", hello.replace("\"pid\":9", "\"pid\":\"x\"")),
            "field.jsonl:2: a bad \"hello\" event",
        ),
        (
            "binary.jsonl",
            "\u{0}\u{1}\n".to_string(),
            "binary.jsonl:1: not a JSON event",
        ),
    ];
    for (name, text, want) in cases {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let run = export(&file, &out);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{name}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("forkscope: {}/{want}", dir.display())),
            "{name}: {}",
            run.stderr
        );
    }
    let run = export(&dir.join("missing.jsonl"), &out);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);

    // An empty recording is an empty trace, not an error.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let run = export(&empty, &out);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let trace: J = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(trace["traceEvents"], serde_json::json!([]));
}

/// A recording cut anywhere, or with a byte changed anywhere, is either
/// read (and exports to a well-formed trace) or refused with the line of
/// the damage; never a panic.
#[test]
fn every_cut_or_damaged_recording_is_a_trace_or_an_error_naming_its_line() {
    let dir = TempDir::new("export-cut");
    let (file, _) = record(&dir, "queue-producer-consumer", &["--time-scale", "0.05"]);
    let bytes = std::fs::read(&file).expect("the recording");
    let line_of = |n: usize| bytes[..n].iter().filter(|b| **b == b'\n').count() + 1;
    let mut read = 0;
    for n in (0..=bytes.len()).step_by(5) {
        match forkscope::trace_file::parse(&bytes[..n], "r.jsonl") {
            Ok(events) => {
                read += 1;
                let trace = serde_json::to_value(forkscope::cli::export::chrome_trace(&events))
                    .expect("serializes");
                check_shape(&trace);
            }
            Err(e) => {
                let want = format!("r.jsonl:{}: ", line_of(n));
                assert!(e.to_string().starts_with(&want), "cut at {n}: {e}");
            }
        }
    }
    assert!(read > 0, "cuts at line ends are read");
    for (i, n) in (0..bytes.len()).step_by(11).enumerate() {
        let mut damaged = bytes.clone();
        damaged[n] = [b'"', b'}', b'x', 0xff, b'\n', b'9'][i % 6];
        if let Ok(events) = forkscope::trace_file::parse(&damaged, "r.jsonl") {
            let trace = serde_json::to_value(forkscope::cli::export::chrome_trace(&events))
                .expect("serializes");
            check_shape(&trace);
        }
    }
}
