//! Schedule files for callers without a `cli::run::Prepared` (the app):
//! the same format `forkscope run --save-schedule` and `explore` write,
//! so each side replays the other's files.

use crate::protocol::Value;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `schedule` (one logical id per line) under `#` comments that
/// name the scenario, its parameters and the command that replays it.
/// `origin_arg` is how the scenario is named on the command line.
pub fn write(
    path: &Path,
    scenario_name: &str,
    origin_arg: &str,
    params: &BTreeMap<String, Value>,
    schedule: &[String],
) -> std::io::Result<()> {
    let mut f = BufWriter::new(crate::safe_fs::create_file(path)?);
    writeln!(f, "# forkscope schedule for {scenario_name}")?;
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(f, "# parameters: {}", params.join(" "))?;
    writeln!(
        f,
        "# replay: forkscope run {origin_arg} {}--schedule-file {}",
        params
            .iter()
            .map(|s| format!("--set {s} "))
            .collect::<String>(),
        path.display()
    )?;
    for id in schedule {
        writeln!(f, "{id}")?;
    }
    f.flush()
}

/// A schedule file as [`write`] makes it: the
/// scenario and parameters it was made for (from its `#` header), and the
/// logical ids in order.
#[derive(Debug, Default, PartialEq)]
pub struct ScheduleFile {
    pub scenario: Option<String>,
    pub sets: Vec<(String, String)>,
    pub ids: Vec<String>,
}

impl ScheduleFile {
    pub fn parse(text: &str) -> ScheduleFile {
        let mut f = ScheduleFile::default();
        for line in text.lines().map(str::trim) {
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim();
                if let Some(name) = comment.strip_prefix("forkscope schedule for ") {
                    f.scenario = Some(name.trim().to_string());
                } else if let Some(params) = comment.strip_prefix("parameters:") {
                    f.sets = params
                        .split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                }
            } else if !line.is_empty() {
                f.ids.push(line.to_string());
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let dir = std::env::temp_dir().join(format!("forkscope-sched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.schedule");
        let params: BTreeMap<String, Value> = [("workers".to_string(), Value::Int(2))].into();
        let ids: Vec<String> = ["main", "main.1", "main.2"].map(String::from).to_vec();
        write(&path, "unlocked-counter", "unlocked-counter", &params, &ids).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("--set workers=2 --schedule-file"), "{text}");
        let back = ScheduleFile::parse(&std::fs::read_to_string(&path).unwrap()).ids;
        assert_eq!(back, ids);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_schedule_file_names_its_scenario_and_parameters() {
        let text = "# forkscope schedule for unlocked-counter\n\
                    # parameters: adds=1 gap_ms=1.0 lock=False workers=2\n\
                    # replay: forkscope run unlocked-counter --schedule-file x\n\
                    main\nmain.1\n\n main.2 \n";
        let f = ScheduleFile::parse(text);
        assert_eq!(f.scenario.as_deref(), Some("unlocked-counter"));
        assert_eq!(f.sets.len(), 4);
        assert_eq!(f.sets[2], ("lock".to_string(), "False".to_string()));
        assert_eq!(f.ids, ["main", "main.1", "main.2"]);
    }
}
