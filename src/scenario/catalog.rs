//! The built-in scenarios, compiled into the binary from
//! `assets/scenarios/*.toml`.

use super::{Scenario, ScenarioError, load};

/// A built-in scenario's id and its TOML text.
pub struct Builtin {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! builtins {
    ($($name:literal),* $(,)?) => {
        &[$(Builtin {
            name: $name,
            text: include_str!(concat!("../../assets/scenarios/", $name, ".toml")),
        }),*]
    };
}

/// In teaching order: the order of the catalog in `SCENARIOS.md`.
pub const BUILTINS: &[Builtin] = builtins![
    "fork-print",
    "fork-return",
    "process-join",
    "no-join",
    "orphan",
    "zombie",
    "parallel-join",
    "daemon",
    "globals-not-shared",
    "locked-counter",
    "unlocked-counter",
    "pool-map",
    "pool-async",
    "pool-callback",
    "pipe-pingpong",
    "pipe-shared-3",
    "pipe-shared-readers",
    "queue-producer-consumer",
    "queue-bounded",
    "manager-queue",
    "start-methods",
    "shared-ctypes",
    "subprocess-pipe",
    "signals",
    "deadlock-two-locks",
    "lock-chain-round-robin",
    "fork-tree",
    "fork-stdio-buffer",
    "fan-out-stress",
    "pool-close-in-loop",
    "callback-return-in-loop",
    "threads-sing-dance",
    "thread-subclass",
    "thread-counter",
    "thread-local",
    "thread-lock-chain",
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

impl Builtin {
    pub fn load(&self) -> Result<Scenario, ScenarioError> {
        load(self.text, &format!("assets/scenarios/{}.toml", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_loads_and_is_named_after_its_file() {
        for b in BUILTINS {
            let s = b.load().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name, b.name);
            assert!(!s.explain.is_empty() && !s.source.is_empty(), "{}", b.name);
        }
    }
}
