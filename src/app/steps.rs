//! Step mode's own sense of time: the steps of a gated run (who was told
//! to go, to do what), a timeline axis indexed by step instead of by the
//! wall clock (a learner thinking for ten seconds is not ten seconds of
//! grey), and the step list a learner clicks to return to a step.

use crate::model::EventLog;
use crate::protocol::Body;
use std::collections::BTreeMap;

/// Steps listed and drawn at most (gated runs are short; a longer one
/// keeps the wall-clock axis).
pub const MAX_STEPS: usize = 2000;

/// One step of a gated run.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based, as the step bar counts.
    pub n: usize,
    /// The process or thread that went.
    pub who: String,
    /// What it announced it would do ("read counter").
    pub action: String,
    /// When it was told to go.
    pub t_ns: u64,
}

/// Every step of the run so far, in order (`None` if there are more than
/// [`MAX_STEPS`] or none).
pub fn steps(log: &EventLog) -> Option<Vec<Step>> {
    let gos = log.counts_by_kind().get("go").copied().unwrap_or(0);
    if gos == 0 || gos > MAX_STEPS as u64 {
        return None;
    }
    let mut announced: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for e in log.kept() {
        let who = e.thread.as_deref().unwrap_or(&e.proc_id);
        match &e.body {
            Body::Pending { action, .. } => {
                announced.insert(who.to_string(), action.clone());
            }
            Body::Go {} => out.push(Step {
                n: out.len() + 1,
                who: who.to_string(),
                action: announced.remove(who).unwrap_or_default(),
                t_ns: e.t_ns,
            }),
            _ => {}
        }
    }
    Some(out)
}

/// A timeline axis where every step gets the same width: the time
/// between two `go`s is one step, however long the learner thought.
#[derive(Clone, Debug, PartialEq)]
pub struct StepAxis {
    /// The start, each step's time, the end: strictly sorted.
    marks: Vec<u64>,
}

impl StepAxis {
    /// The axis from `t0` to `t_end` with a step at each of `go_t_ns`
    /// (`None` without steps).
    pub fn new(go_t_ns: &[u64], t0: u64, t_end: u64) -> Option<StepAxis> {
        if go_t_ns.is_empty() {
            return None;
        }
        let mut marks = vec![t0];
        for &t in go_t_ns {
            if t > *marks.last()? && t < t_end {
                marks.push(t);
            }
        }
        if t_end > *marks.last()? {
            marks.push(t_end);
        }
        (marks.len() >= 2).then_some(StepAxis { marks })
    }

    fn segments(&self) -> f64 {
        (self.marks.len() - 1) as f64
    }

    /// Where `t` lies, 0 (start) to 1 (end).
    pub fn frac(&self, t: u64) -> f64 {
        let i = self.marks.partition_point(|m| *m <= t);
        if i == 0 {
            return 0.0;
        }
        if i >= self.marks.len() {
            return 1.0;
        }
        let (a, b) = (self.marks[i - 1], self.marks[i]);
        let within = (t - a) as f64 / (b - a).max(1) as f64;
        ((i - 1) as f64 + within) / self.segments()
    }

    /// The time at `f` (0 to 1).
    pub fn t_at(&self, f: f64) -> u64 {
        let x = f.clamp(0.0, 1.0) * self.segments();
        let i = (x.floor() as usize).min(self.marks.len() - 2);
        let (a, b) = (self.marks[i], self.marks[i + 1]);
        a + ((x - i as f64).clamp(0.0, 1.0) * (b - a) as f64) as u64
    }

    /// The steps' times, for the axis labels: (step number, time).
    pub fn ticks(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.marks[1..]
            .iter()
            .copied()
            .enumerate()
            .map(|(i, t)| (i + 1, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;

    use crate::protocol::test_event as ev;

    fn pending(t: u64, who: &str, action: &str) -> Event {
        ev(
            t,
            who,
            Body::Pending {
                action: action.into(),
                local: false,
                waits_for: None,
                retry: false,
                touches: Vec::new(),
            },
        )
    }

    #[test]
    fn every_step_is_as_wide_as_the_others_however_long_the_wait() {
        let s = 1_000_000_000;
        // Steps at 1 s and 1.001 s, then the learner thinks for 60 s.
        let axis = StepAxis::new(&[s, s + 1_000_000, 61 * s], 0, 62 * s).unwrap_or_else(|| {
            unreachable!("steps given");
        });
        assert!((axis.frac(s) - 0.25).abs() < 1e-9);
        assert!((axis.frac(s + 1_000_000) - 0.5).abs() < 1e-9);
        assert!((axis.frac(61 * s) - 0.75).abs() < 1e-9);
        assert_eq!(axis.frac(0), 0.0);
        assert_eq!(axis.frac(99 * s), 1.0);
        for f in [0.0, 0.1, 0.25, 0.6, 0.99, 1.0] {
            assert!((axis.frac(axis.t_at(f)) - f).abs() < 1e-6, "{f}");
        }
        assert_eq!(axis.ticks().count(), 4);
        assert_eq!(StepAxis::new(&[], 0, 10), None);
    }

    #[test]
    fn the_step_list_says_who_went_to_do_what() {
        let mut log = EventLog::new();
        for e in [
            pending(1, "main.1", "read counter"),
            pending(2, "main.2", "read counter"),
            ev(3, "main.2", Body::Go {}),
            ev(4, "main.1", Body::Go {}),
            pending(5, "main.1", "write counter"),
            ev(6, "main.1", Body::Go {}),
        ] {
            log.push(e);
        }
        let list = steps(&log).unwrap_or_default();
        let words: Vec<String> = list
            .iter()
            .map(|s| format!("{} {}: {}", s.n, s.who, s.action))
            .collect();
        assert_eq!(
            words,
            [
                "1 main.2: read counter",
                "2 main.1: read counter",
                "3 main.1: write counter"
            ]
        );
    }
}
