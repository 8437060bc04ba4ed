//! How a run ended, as `stats` and `explore` count it: the final value of
//! every shared value, and whether it deadlocked.

use crate::protocol::Value;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Outcome {
    /// Every shared value's name and its final value, as JSON text (so
    /// outcomes can be sorted and compared exactly).
    pub outcome: BTreeMap<String, String>,
    pub deadlock: bool,
}

impl Outcome {
    pub fn new(values: &BTreeMap<String, Value>, deadlock: bool) -> Outcome {
        Outcome {
            outcome: values
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap_or_default()))
                .collect(),
            deadlock,
        }
    }

    /// `{"counter":3}` — the values as a JSON object.
    pub fn values_json(&self) -> String {
        let parts: Vec<String> = self
            .outcome
            .iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap_or_default()))
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// `counter = 3` for people.
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = self
            .outcome
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        if self.deadlock {
            parts.push("DEADLOCK".into());
        }
        if parts.is_empty() {
            "(no shared values)".into()
        } else {
            parts.join(", ")
        }
    }
}
