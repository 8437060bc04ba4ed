//! Who may speak on the socket. The socket checks the peer's uid, but any
//! process of the same user could connect; this is how the collector tells
//! the run's own processes from everyone else's, by the kernel's word
//! (`SO_PEERCRED` pid, `/proc/PID/stat`) rather than by what a peer says.
//!
//! The root of trust is the process the app started itself (the outer
//! runner): every scenario process descends from it. A connection from a
//! live process outside that tree is closed at once, before it costs more
//! than an `accept`. Which logical id a process may take is decided later,
//! by its parent's `spawn` (see `State::vouch` in `mod.rs`).

use std::collections::HashSet;

/// What the kernel says about a peer when its connection is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A descendant of the run's root (or the root itself).
    Ours,
    /// Gone already (it connected, maybe said hello, and was reaped before
    /// we looked): it may still be one of ours; its hello must match a
    /// parent's `spawn` exactly.
    Gone,
    /// A live process outside the run: refused.
    Foreign,
}

/// Parents deeper than this are not followed (a scenario tree is limited
/// to a few thousand processes, and `/proc` chains end at pid 1 long
/// before).
const MAX_DEPTH: usize = 8192;
/// Foreign processes remembered (by pid and start time) so that a peer
/// that opens thousands of connections costs one `/proc` read each.
const MAX_REMEMBERED: usize = 4096;

/// Classifies peers; remembers foreign ones.
#[derive(Default)]
pub struct Judge {
    foreign: HashSet<(i32, u64)>,
}

impl Judge {
    /// Is `pid` the run's `root` or one of its descendants? `root` 0 means
    /// the app has not said yet: nobody is ours then.
    pub fn classify(&mut self, pid: i32, root: i32) -> Peer {
        if root <= 0 {
            return Peer::Foreign;
        }
        let Some(first) = stat(pid) else {
            return Peer::Gone;
        };
        let key = (pid, first.start);
        if self.foreign.contains(&key) {
            return Peer::Foreign;
        }
        let verdict = walk(pid, first, root);
        if verdict == Peer::Foreign {
            if self.foreign.len() >= MAX_REMEMBERED {
                self.foreign.clear();
            }
            self.foreign.insert(key);
        }
        verdict
    }
}

fn walk(pid: i32, first: Stat, root: i32) -> Peer {
    if pid == root {
        return Peer::Ours;
    }
    let mut parent = first.ppid;
    for _ in 0..MAX_DEPTH {
        if parent == root {
            return Peer::Ours;
        }
        if parent <= 1 {
            return Peer::Foreign;
        }
        match stat(parent) {
            Some(s) => parent = s.ppid,
            // An ancestor ended while we looked: the peer has been handed
            // to a subreaper. Look again from the peer itself.
            None => {
                return match stat(pid) {
                    Some(again) if again.ppid != first.ppid => walk(pid, again, root),
                    Some(_) => Peer::Foreign,
                    None => Peer::Gone,
                };
            }
        }
    }
    Peer::Foreign
}

#[derive(Clone, Copy)]
struct Stat {
    ppid: i32,
    /// Start time in clock ticks after boot: with the pid, names one
    /// process for good (pids are reused, this pair is not).
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    // One read (a stat line is a few hundred bytes): `read_to_string`
    // would ask the size and read in growing pieces, and this is done for
    // every connection and each of its ancestors.
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let n = file.read(&mut buf).ok()?;
    if n == buf.len() {
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        file.read_to_string(&mut text).ok()?;
        return parse_stat(&text);
    }
    parse_stat(&String::from_utf8_lossy(&buf[..n]))
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 4 is the ppid, field 22 the start time.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: fields.get(4 - 3)?.parse().ok()?,
        start: fields.get(22 - 3)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ppid_and_start_time_past_odd_names() {
        let mut fields = vec!["0"; 50];
        fields[0] = "S";
        fields[1] = "77";
        fields[19] = "12345";
        let text = format!("123 (a (weird) ) name) {}", fields.join(" "));
        let s = parse_stat(&text).unwrap();
        assert_eq!((s.ppid, s.start), (77, 12345));
    }

    #[test]
    fn our_own_children_are_ours_and_we_are_not_theirs() {
        let me = std::process::id() as i32;
        let mut judge = Judge::default();
        // We descend from our parent (the test harness's tree)...
        let parent = stat(me).unwrap().ppid;
        if parent > 1 {
            assert_eq!(judge.classify(me, parent), Peer::Ours);
        }
        assert_eq!(judge.classify(me, me), Peer::Ours);
        // ...but pid 1 is no descendant of ours, and no root means no trust.
        assert_eq!(judge.classify(1, me), Peer::Foreign);
        assert_eq!(judge.classify(me, 0), Peer::Foreign);
        // A pid that does not exist is gone.
        assert_eq!(judge.classify(i32::MAX, me), Peer::Gone);
    }
}
