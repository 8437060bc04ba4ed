//! The processes of a [`World`](super::World) by logical id.
//!
//! Read like the `BTreeMap<String, Process>` it replaces (`get`, `values`,
//! `keys`, `len`, `world.processes["main"]`, always in id order), but found
//! by a hash: every event looks its sender up, and in a flood of 200
//! processes the B-tree's string comparisons (and a key allocated per
//! lookup) were a good part of what `forkscope run` spent per event. The
//! process found last is tried first: a busy process's events come in a
//! row (its `sleep`, `wake` and `write` leave it in one write).

use super::Process;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

#[derive(Clone, Default)]
pub struct Processes {
    /// In the order they were first seen.
    procs: Vec<Process>,
    /// Logical id → position in `procs`.
    index: HashMap<String, usize>,
    /// Positions in `procs`, in id order.
    order: Vec<usize>,
    /// Where the last lookup through `&mut` found its process.
    last: usize,
}

impl Processes {
    // Generic like a map's `get`, so that every caller of the map reads the
    // same (`get(id)` with `id: &String`, `&str` or `&&str`'s target).
    pub fn get<Q: Hash + Eq + ?Sized>(&self, id: &Q) -> Option<&Process>
    where
        String: Borrow<Q>,
    {
        self.position(id).map(|i| &self.procs[i])
    }

    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, id: &Q) -> Option<&mut Process>
    where
        String: Borrow<Q>,
    {
        let i = self.position(id)?;
        self.last = i;
        Some(&mut self.procs[i])
    }

    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, id: &Q) -> bool
    where
        String: Borrow<Q>,
    {
        self.position(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The processes in id order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Process> + ExactSizeIterator + Clone {
        self.order.iter().map(|&i| &self.procs[i])
    }

    /// Every process (in no particular order).
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.procs.iter_mut()
    }

    /// The ids in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator + Clone {
        self.values().map(|p| &p.id)
    }

    /// (id, process) in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &Process)> + Clone {
        self.values().map(|p| (&p.id, p))
    }

    /// The process `id`, made by `new` if it is not there yet.
    pub(super) fn get_or_insert_with(
        &mut self,
        id: &str,
        new: impl FnOnce() -> Process,
    ) -> &mut Process {
        let i = match self.position(id) {
            Some(i) => i,
            None => {
                let i = self.procs.len();
                let p = new();
                debug_assert_eq!(p.id, id);
                let at = self
                    .order
                    .partition_point(|&k| self.procs[k].id.as_str() < id);
                self.order.insert(at, i);
                self.index.insert(id.to_string(), i);
                self.procs.push(p);
                i
            }
        };
        self.last = i;
        &mut self.procs[i]
    }

    fn position<Q: Hash + Eq + ?Sized>(&self, id: &Q) -> Option<usize>
    where
        String: Borrow<Q>,
    {
        match self.procs.get(self.last) {
            Some(p) if p.id.borrow() == id => Some(self.last),
            _ => self.index.get(id).copied(),
        }
    }
}

impl std::ops::Index<&str> for Processes {
    type Output = Process;

    /// Like a map's index: there must be such a process.
    fn index(&self, id: &str) -> &Process {
        match self.get(id) {
            Some(p) => p,
            None => panic!("no process {id:?}"),
        }
    }
}

/// Equal when they hold equal processes under the same ids, whatever
/// order they were seen in (as maps compare).
impl PartialEq for Processes {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.values().eq(other.values())
    }
}

impl fmt::Debug for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Processes {
    type Item = (&'a String, &'a Process);
    type IntoIter = Box<dyn Iterator<Item = (&'a String, &'a Process)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_in_order_whatever_order_they_were_seen_in() {
        let mut ps = Processes::default();
        let ids = ["main.10", "main", "main.2", "runner", "main.1", "pool.w1"];
        for (n, id) in ids.iter().enumerate() {
            ps.get_or_insert_with(id, || Process::new(id, 5, n as u64))
                .pid = n as i32;
            // Found again, not made twice.
            ps.get_or_insert_with(id, || unreachable!()).pid += 100;
        }
        let mut sorted = ids.to_vec();
        sorted.sort();
        assert_eq!(ps.keys().collect::<Vec<_>>(), sorted);
        assert_eq!(ps.len(), 6);
        assert_eq!(ps["main.2"].pid, 102);
        assert_eq!(ps.get("main.1").map(|p| p.pid), Some(104));
        assert!(ps.get("main.3").is_none());
        assert!(ps.contains_key("runner"));
        assert_eq!(ps.get_mut("main").map(|p| p.pid), Some(101));
        assert_eq!(ps.get("main.10").map(|p| p.pid), Some(100));

        // Equal to the same processes seen in another order.
        let mut other = Processes::default();
        for id in sorted.iter().rev() {
            let n = ids.iter().position(|i| i == id).unwrap_or(0);
            other
                .get_or_insert_with(id, || Process::new(id, 5, n as u64))
                .pid = n as i32 + 100;
        }
        assert_eq!(ps, other);
        if let Some(p) = other.get_mut("main") {
            p.pid = 0;
        }
        assert_ne!(ps, other);
    }
}
