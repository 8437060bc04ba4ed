//! Shared values and arrays: reads, and writes that learn what they
//! replaced. A read-modify-write stores with an atomic exchange, so the
//! writer itself knows when another process wrote in between (a lost
//! update, reported as a `race` event).

use super::*;
use crate::probe::Access;

/// What a write erased: `replaced - read` for numbers, else what it replaced.
pub(super) fn lost_between(read: &Value, replaced: &Value) -> Value {
    match (read, replaced) {
        (Value::Int(r), Value::Int(x)) => Value::Int(x.wrapping_sub(*r)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            Value::Float(replaced.as_f64().unwrap_or(0.0) - read.as_f64().unwrap_or(0.0))
        }
        _ => replaced.clone(),
    }
}

/// Whether a value found in memory differs from the one this process saw
/// (an int written to a float value reads back as the same float).
pub(super) fn differs(read: &Value, replaced: &Value) -> bool {
    match (read, replaced) {
        (Value::Int(a), Value::Int(b)) => a != b,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            read.as_f64() != replaced.as_f64()
        }
        (a, Value::Bool(b)) => a.truthy() != *b,
        (a, b) => a != b,
    }
}

impl Proc<'_> {
    /// Notes what this process last saw in shared value `name` (its key
    /// made once, not per access).
    fn note_seen(&mut self, name: &str, v: &Value) {
        match self.seen.get_mut(name) {
            Some(slot) => slot.clone_from(v),
            None => {
                self.seen.insert(name.to_string(), v.clone());
            }
        }
    }

    pub(super) fn read_shared(&mut self, name: &str) -> Result<Value, RunError> {
        self.read_shared_sent(name, false)
    }

    /// [`Self::read_shared`] whose `read` event is held for the next
    /// event ([`crate::probe::Probe::hold`]): only when the caller does
    /// nothing but compute until it sends that event.
    pub(super) fn read_shared_held(&mut self, name: &str) -> Result<Value, RunError> {
        self.read_shared_sent(name, true)
    }

    fn read_shared_sent(&mut self, name: &str, hold: bool) -> Result<Value, RunError> {
        let v = self
            .run
            .shm
            .load(name)
            .ok_or_else(|| RunError(format!("{name} is not a shared value")))?;
        if hold {
            self.probe.hold(Body::Read {
                name: name.to_string(),
                value: v.clone(),
                private: false,
            });
        } else {
            self.probe.emit_access(Access::Read, name, &v, false);
        }
        self.note_seen(name, &v);
        Ok(v)
    }

    /// Writes a shared value (or a private global). A write `based` on a
    /// read of the same value (an `add`, or a `write` computed from it) is
    /// one atomic exchange: if the value it replaced is not the one this
    /// process last saw there, others wrote in between and this write
    /// erased their work, and the process says so with a `race` event.
    pub(super) fn write_value(
        &mut self,
        name: &str,
        index: Option<i64>,
        v: Value,
        based: bool,
    ) -> Result<(), RunError> {
        if !self.run.shm.is_shared(name) {
            if self.run.scenario.globals.contains_key(name)
                && !self.vars.contains_key(name)
                && self.write_global(name, v.clone(), based)
            {
                self.derived.remove(name);
                return Ok(());
            }
            if self.run.scenario.globals.contains_key(name) {
                self.set_var(name, v);
                return Ok(());
            }
            return Err(RunError(format!("{name} is not a shared value")));
        }
        match index {
            Some(i) => {
                let shown = format!("{name}[{i}]");
                self.probe.emit_access(Access::Write, &shown, &v, false);
            }
            None => self.probe.emit_access(Access::Write, name, &v, false),
        }
        if index.is_some() {
            return self.run.shm.store(name, index, &v);
        }
        if !based {
            self.run.shm.store(name, None, &v)?;
            self.note_seen(name, &v);
            return Ok(());
        }
        let replaced = self.run.shm.exchange(name, &v)?;
        let read = match self.seen.get_mut(name) {
            Some(slot) => Some(std::mem::replace(slot, v.clone())),
            None => self.seen.insert(name.to_string(), v.clone()),
        };
        if let (Some(replaced), Some(read)) = (replaced, read)
            && differs(&read, &replaced)
        {
            let lost = lost_between(&read, &replaced);
            self.probe.emit(Body::Race {
                name: name.to_string(),
                read,
                replaced,
                written: v,
                lost,
            });
        }
        Ok(())
    }
}
