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
    let mut f = BufWriter::new(std::fs::File::create(path)?);
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
        let back = crate::cli::run::read_schedule(&path).unwrap();
        assert_eq!(back, ids);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
