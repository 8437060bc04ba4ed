//! A Python program in the app (`forkscope --trace SCRIPT.py`, or a `.py`
//! in Open): ready to run, its source shown with a marker per process and
//! per thread at the line it is on.

use super::App;
use std::path::Path;

impl App {
    /// Opens a Python program, ready to run.
    pub fn open_python(&mut self, path: &Path) -> Result<(), String> {
        Err(format!(
            "{}: Python programs cannot be opened in this build yet",
            path.display()
        ))
    }
}
