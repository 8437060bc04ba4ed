//! Recordings in the app: `forkscope --open FILE.jsonl` (or a `.jsonl`
//! path in "Open") shows a recorded run on the stage, with the timeline to
//! scrub, without running anything: its events go into the same
//! [`Recording`] a live run fills. "Save recording" writes the current
//! run's events as `forkscope run --record` does.

use super::{App, RunState};
use crate::lab::deadlock;
use crate::model::ExitStatus;
use crate::protocol::{Body, Event};
use crate::trace_file;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a screenshot of a recording waits for the window to settle.
const SETTLE: Duration = Duration::from_millis(300);

/// Does this path name a recording (rather than a scenario file)?
pub fn is_recording_path(target: &str) -> bool {
    let t = target.trim().to_ascii_lowercase();
    t.ends_with(".jsonl") || t.ends_with(".ndjson")
}

/// Where "Save recording" writes: `forkscope/recordings` next to the
/// schedules' folder (in the user's data directory).
pub fn default_dir() -> PathBuf {
    let schedules = crate::lab::schedule::default_dir();
    match schedules.parent() {
        Some(p) if schedules.ends_with("schedules") => p.join("recordings"),
        _ => {
            let uid = nix::unistd::geteuid().as_raw();
            std::env::temp_dir().join(format!("forkscope-recordings-{uid}"))
        }
    }
}

impl App {
    /// Shows the recording in `path` instead of a run (stopping one that
    /// runs). An error is one sentence naming the file and line.
    pub fn open_recording(&mut self, path: &Path) -> Result<(), String> {
        if self.run.is_running() {
            return Err("a run is going on: stop it first, then open the recording".into());
        }
        let events = trace_file::read(path).map_err(|e| e.to_string())?;
        self.show_recording(events);
        self.opened = Some(path.to_path_buf());
        self.status = None;
        Ok(())
    }

    /// Feeds recorded events into a fresh [`crate::app::recording::Recording`]
    /// as a run would, and shows its end (or its deadlock).
    pub fn show_recording(&mut self, events: Vec<Event>) {
        self.stop_now();
        let (log_budget, checkpoint_budget) = self.rec_budgets_bytes;
        self.rec = super::Recording::with_budgets(log_budget, checkpoint_budget);
        self.time.reset();
        self.selected = None;
        self.collector_problems.clear();
        self.view_count = None;
        self.deadlock_cycle.clear();
        self.deadlock_world = None;
        self.gated = None;
        self.run_on_first_frame = false;
        let mut deadlock_at = None;
        for e in events {
            let circle = matches!(e.body, Body::Deadlock { .. }) && deadlock_at.is_none();
            let t = e.t_ns;
            if circle {
                // As a live run does: the circle as it closed, the tree as
                // it was then.
                self.deadlock_cycle = deadlock::cycle_in_world(&self.rec.live);
            }
            self.rec.push(e);
            if circle {
                self.deadlock_world = Some(self.rec.live.clone());
                deadlock_at = Some(t);
            }
        }
        let (t0, t1) = self.rec.t_range().unwrap_or((0, 0));
        let code = self
            .rec
            .live
            .processes
            .get("main")
            .and_then(|p| match &p.exit {
                Some(ExitStatus::Code(c)) => Some(*c),
                _ => None,
            });
        self.run = RunState::Finished {
            code,
            stopped: false,
            duration: Duration::from_nanos(t1.saturating_sub(t0)),
        };
        self.run_started = Some(Instant::now());
        if let Some(t) = deadlock_at {
            self.time.follow = false;
            self.time.playing = false;
            self.time.cursor_t_ns = t;
        }
    }

    /// `--screenshot` of a recording: the picture at `after` since its
    /// first event (its end if that is later), taken once the window has
    /// settled.
    pub(super) fn screenshot_recording_at(&mut self, after: Duration) {
        let Some((t0, t1)) = self.rec.t_range() else {
            return;
        };
        let t = t0.saturating_add(after.as_nanos() as u64);
        if t < t1 && self.deadlock_world.is_none() {
            self.time.follow = false;
            self.time.playing = false;
            self.time.cursor_t_ns = t;
        }
        if let Some(plan) = self.screenshot.as_mut() {
            // The picture stands still: wait only for the panels to settle
            // (they size themselves over the first frames).
            plan.after = SETTLE;
        }
    }

    /// A replay that went from `from_t_ns` to the cursor: if it passed a
    /// marked moment (a lost update, a deadlock, an error, a zombie, a
    /// caption marked `pause = true`: `marks.rs`), pause there and say
    /// what it is.
    pub(super) fn pause_at_marked_moment(&mut self, from_t_ns: u64) {
        let to = self.time.cursor_t_ns;
        let (a, b) = (self.rec.count_at(from_t_ns), self.rec.count_at(to));
        let marked = super::marks::first_mark(&self.rec.log, a, b);
        if let Some((t, what)) = marked {
            self.time.cursor_t_ns = t.max(from_t_ns);
            self.time.playing = false;
            self.status = Some(format!("paused at {what}"));
        }
    }

    /// Writes the current run's events (those still kept) to `path`.
    pub fn save_recording(&mut self, path: &Path) {
        if self.rec.is_empty() {
            self.status = Some("nothing to save: run a scenario first".into());
            return;
        }
        if path.parent() == Some(default_dir().as_path())
            && let Err(e) = crate::safe_fs::own_dir(&default_dir())
        {
            self.status = Some(format!("cannot use {}: {e}", default_dir().display()));
            return;
        }
        let log = &self.rec.log;
        let gone = log.first_kept();
        match trace_file::write(path, log.kept()) {
            Ok(()) => {
                let note = if gone > 0 {
                    format!(" (the oldest {gone} were let go during the run)")
                } else {
                    String::new()
                };
                self.status = Some(format!(
                    "saved {} events to {}{note}",
                    log.kept().len(),
                    path.display()
                ));
            }
            Err(e) => self.status = Some(format!("cannot write {}: {e}", path.display())),
        }
    }

    /// Where "Save recording" proposes to write this run.
    pub fn default_recording_path(&self) -> PathBuf {
        default_recording_path(self.opened.as_deref(), self.picked.as_ref())
    }
}

/// Where "Save recording" proposes to write the run shown: named after the
/// recording shown or the scenario picked, and the time.
pub fn default_recording_path(
    opened: Option<&std::path::Path>,
    picked: Option<&super::Picked>,
) -> PathBuf {
    let name = match (opened, picked) {
        (Some(p), _) => p
            .file_stem()
            .map_or("recording".into(), |s| s.to_string_lossy().into_owned()),
        (None, Some(p)) => p.loaded.scenario.name.clone(),
        (None, None) => "recording".into(),
    };
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    default_dir().join(format!("{name}-{secs}.jsonl"))
}
