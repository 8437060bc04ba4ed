//! A Python program in the app (`forkscope --trace SCRIPT.py`, or a `.py`
//! in Open): ready to run, traced as `forkscope trace` does (the same
//! probe, the same collector, the same stage). The source panel shows the
//! real file, with a marker per process and per thread at the line it is
//! on (events' `line`, from the program's own frames).

use super::{App, Picked};
use crate::cli::Loaded;
use crate::trace::TraceTarget;
use std::collections::BTreeMap;
use std::path::Path;

impl App {
    /// Opens a Python program, ready to run (the stage is cleared). An
    /// error (no such file, no Python) is one sentence.
    pub fn open_python(&mut self, path: &Path) -> Result<(), String> {
        let target = TraceTarget::new(path, self.python_exe.as_deref(), Vec::new())
            .map_err(|e| e.to_string())?;
        self.clear_stage();
        self.pick_error = None;
        self.picked = Some(Picked {
            loaded: Loaded {
                scenario: target.scenario,
                text: target.scenario_text,
                origin: target.origin,
                builtin: false,
            },
            params: BTreeMap::new(),
            // The user's own program, opened by the user: it runs what it
            // runs (no `exec` steps to consent to).
            exec_confirmed: true,
            python: Some(target.program),
        });
        Ok(())
    }

    /// Is the picked thing a Python program?
    pub fn picked_python(&self) -> bool {
        self.picked.as_ref().is_some_and(|p| p.python.is_some())
    }
}
