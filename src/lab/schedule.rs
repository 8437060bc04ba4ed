//! Schedule files for callers without a `cli::run::Prepared` (the app):
//! the same format `forkscope run --save-schedule` and `explore` write,
//! so each side replays the other's files.

use crate::protocol::Value;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Where the app proposes to save schedules: `forkscope/schedules` in the
/// user's data directory (`$XDG_DATA_HOME`, else `~/.local/share`), a
/// directory nobody else can write to; only without either, the temp
/// directory (where [`crate::safe_fs`] refuses what is not ours).
pub fn default_dir() -> std::path::PathBuf {
    default_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

fn default_dir_from(
    xdg_data_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> std::path::PathBuf {
    let absolute = |v: std::ffi::OsString| {
        let p = std::path::PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(data) = xdg_data_home.and_then(absolute) {
        return data.join("forkscope/schedules");
    }
    if let Some(home) = home.and_then(absolute) {
        return home.join(".local/share/forkscope/schedules");
    }
    let uid = nix::unistd::geteuid().as_raw();
    std::env::temp_dir().join(format!("forkscope-schedules-{uid}"))
}

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
        let dir = crate::safe_fs::private_dir(&std::env::temp_dir(), "forkscope-sched").unwrap();
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
    fn schedules_are_saved_in_the_users_own_directory_by_default() {
        let home = Some("/home/ada".into());
        assert_eq!(
            default_dir_from(None, home.clone()),
            std::path::PathBuf::from("/home/ada/.local/share/forkscope/schedules")
        );
        assert_eq!(
            default_dir_from(Some("/data".into()), home.clone()),
            std::path::PathBuf::from("/data/forkscope/schedules")
        );
        // A relative XDG_DATA_HOME is ignored, as the spec says.
        assert_eq!(
            default_dir_from(Some("rel".into()), home),
            std::path::PathBuf::from("/home/ada/.local/share/forkscope/schedules")
        );
    }

    #[test]
    fn a_schedule_is_never_written_through_a_symlink() {
        let dir =
            crate::safe_fs::private_dir(&std::env::temp_dir(), "forkscope-sched-link").unwrap();
        let precious = dir.join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let path = dir.join("x.schedule");
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        let ids = vec!["main".to_string()];
        assert!(write(&path, "x", "x", &BTreeMap::new(), &ids).is_err());
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
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
