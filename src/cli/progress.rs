//! Progress of `stats` and `explore` on a terminal: runs done, outcomes
//! so far and time left (stats) or branches left to try (explore).
//!
//! Shown only when both stdout and stderr are terminals and the format is
//! text: piped output, redirected errors and `--format jsonl` get nothing
//! extra. The bar is drawn on stderr, at most about 10 times a second,
//! and cleared before the summary is printed. No thread is started (the
//! bar is redrawn from the loop that does the runs).

use super::Format;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress line, or nothing (not a terminal, or JSON lines).
pub struct Progress {
    bar: Option<ProgressBar>,
}

/// Should progress be drawn for this format on these streams?
pub fn wanted(format: Format, stdout_tty: bool, stderr_tty: bool) -> bool {
    format == Format::Text && stdout_tty && stderr_tty
}

impl Progress {
    fn new(format: Format, make: impl FnOnce() -> ProgressBar) -> Progress {
        let on = wanted(
            format,
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        );
        let bar = on.then(|| {
            let bar = make();
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            bar
        });
        Progress { bar }
    }

    /// `stats`: `total` runs, with time left.
    pub fn runs(format: Format, total: u64) -> Progress {
        Progress::new(format, || {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {msg}, {eta} left")
            {
                bar.set_style(style);
            }
            bar
        })
    }

    /// `explore`: the total is not known in advance; the branches still
    /// to try say how much is left.
    pub fn schedules(format: Format) -> Progress {
        Progress::new(format, || {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} {pos} schedules, {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar
        })
    }

    /// One more run done; `msg` says what was found so far.
    pub fn step(&self, done: u64, msg: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg());
            bar.set_position(done);
        }
    }

    /// Clears the line (before the summary is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "3 outcomes", "1 outcome".
pub fn outcomes(n: usize) -> String {
    if n == 1 {
        "1 outcome".into()
    } else {
        format!("{n} outcomes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_on_a_terminal_gets_progress() {
        assert!(wanted(Format::Text, true, true));
        assert!(!wanted(Format::Jsonl, true, true));
        assert!(!wanted(Format::Text, false, true));
        assert!(!wanted(Format::Text, true, false));
    }
}
