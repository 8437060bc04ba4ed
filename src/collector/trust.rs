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

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

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
/// Parents remembered as ours (each holds a descriptor in the app, so
/// few: a tree has far fewer parents than processes, and one forgotten is
/// only walked again).
const MAX_PARENTS: usize = 256;

/// Classifies peers; remembers foreign ones, and the parents it found ours.
#[derive(Default)]
pub struct Judge {
    foreign: HashSet<(i32, u64)>,
    /// Processes found to descend from the root, each by a pidfd of the
    /// very process checked (pid → pidfd). While a pidfd is not readable,
    /// its process has not ended, so its pid is still its own: a peer
    /// whose `PPid` is that pid is ours without reading `/proc` for its
    /// ancestors again (a parent starting 1,000 children: one `/proc` read
    /// per child instead of three).
    parents: HashMap<i32, OwnedFd>,
}

impl Judge {
    /// Is `pid` the run's `root` or one of its descendants? `root` 0 means
    /// the app has not said yet: nobody is ours then.
    #[cfg(test)]
    pub fn classify(&mut self, pid: i32, root: i32) -> Peer {
        self.classify_peer(pid, None, root)
    }

    /// [`Judge::classify`], given a pidfd of the very peer
    /// ([`peer_pidfd`]) if there is one: its parent's pid then comes from
    /// the pidfd ([`pidfd_ppid`]) instead of `/proc/PID/stat`, and when
    /// that parent is one we remember, running, that is the answer (no
    /// file opened). Otherwise, as without it.
    pub fn classify_peer(&mut self, pid: i32, pidfd: Option<&OwnedFd>, root: i32) -> Peer {
        if root <= 0 {
            return Peer::Foreign;
        }
        // The peer's parent had that pid when the pidfd was asked; its
        // pidfd not readable after that: it is still that process, ours.
        if pid != root
            && let Some(ppid) = pidfd.and_then(pidfd_ppid)
            && let Some(fd) = self.parents.get(&ppid)
        {
            if !has_ended(fd) {
                return Peer::Ours;
            }
            self.parents.remove(&ppid);
        }
        let Some(first) = stat(pid) else {
            return Peer::Gone;
        };
        let key = (pid, first.start);
        if self.foreign.contains(&key) {
            return Peer::Foreign;
        }
        // Its parent is one we know, still running: it had that pid when
        // `first` was read, so the peer descends from it.
        if let Some(fd) = self.parents.get(&first.ppid) {
            if !has_ended(fd) {
                return Peer::Ours;
            }
            self.parents.remove(&first.ppid);
        }
        let mut parent = None;
        let verdict = walk(pid, first, root, &mut parent, stat);
        if verdict == Peer::Ours
            && let Some((ppid, start)) = parent
            && ppid != root
        {
            self.remember_parent(ppid, start);
        }
        if verdict == Peer::Foreign {
            if self.foreign.len() >= MAX_REMEMBERED {
                self.foreign.clear();
            }
            self.foreign.insert(key);
        }
        verdict
    }

    /// Remembers `pid` (found ours by a walk that read its start time
    /// `start`) by a pidfd, if that pidfd is of the very process walked:
    /// opened, then the start time read again and the process seen still
    /// running (so it held the pid, and that start time, all along).
    fn remember_parent(&mut self, pid: i32, start: u64) {
        if self.parents.len() >= MAX_PARENTS {
            self.parents.retain(|_, fd| !has_ended(fd));
            if self.parents.len() >= MAX_PARENTS {
                return;
            }
        }
        let Some(fd) = super::exits::pidfd_open(pid) else {
            return;
        };
        if stat(pid).is_some_and(|s| s.start == start) && !has_ended(&fd) {
            self.parents.insert(pid, fd);
        }
    }
}

/// A pidfd of the process at the other end of a Unix socket, as it was
/// when it connected (`SO_PEERPIDFD`, Linux 6.5+: no pid to reuse in
/// between); `None` on older kernels or if it is reaped already.
pub fn peer_pidfd(sock: &impl AsRawFd) -> Option<OwnedFd> {
    /// `SO_PEERPIDFD` (asm-generic/socket.h; not in the libc crate yet).
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (one int) to `fd`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &mut len,
        )
    };
    if r < 0 || fd < 0 {
        return None;
    }
    // SAFETY: the kernel just made this fd for us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct pidfd_info` of `PIDFD_GET_INFO` (linux/pidfd.h, Linux 6.13+),
/// as far as its first version goes (64 bytes).
#[repr(C)]
#[derive(Default)]
// The kernel's layout: it writes every field; we read `mask` and `ppid`.
#[allow(dead_code)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// The parent pid (as our `/proc` shows it) of the process of `fd`, from
/// the pidfd itself (`PIDFD_GET_INFO`); also while it is a zombie. `None`
/// on older kernels or once it is reaped.
pub fn pidfd_ppid(fd: &OwnedFd) -> Option<i32> {
    const PIDFD_INFO_PID: u64 = 1;
    // _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info)
    const PIDFD_GET_INFO: libc::c_ulong =
        (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_PID,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl reads and writes one `struct pidfd_info` of the
    // size encoded in the request, which is `info`'s.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), PIDFD_GET_INFO, &raw mut info) };
    if r < 0 || info.mask & PIDFD_INFO_PID == 0 {
        return None;
    }
    i32::try_from(info.ppid).ok().filter(|&p| p > 0)
}

/// Has the process of this pidfd ended (its pidfd is readable)?
fn has_ended(fd: &OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        // Readable, or an error: do not rely on it.
        _ => true,
    }
}

/// Walks that start again from the peer because an ancestor ended while
/// we looked: each needs a process of the chain to have moved to another
/// parent in between, so a handful suffice.
const MAX_RESTARTS: usize = 16;

/// Follows `PPid` from `pid` (whose stat is `first`) up to `root`. The
/// peer's parent as the deciding climb read it (pid, start time) goes to
/// `parent`. `stat` reads a process's stat line (a parameter so that
/// tests can make processes end between two reads).
fn walk(
    pid: i32,
    first: Stat,
    root: i32,
    parent: &mut Option<(i32, u64)>,
    stat: impl Fn(i32) -> Option<Stat>,
) -> Peer {
    if pid == root {
        return Peer::Ours;
    }
    let mut line = Some(first);
    for _ in 0..MAX_RESTARTS {
        let first = match line.map(|s| (s, s.life(pid))) {
            // Gone, or read while it was being reaped: not a live stranger.
            None | Some((_, Life::Ended)) => return Peer::Gone,
            Some((s, Life::Live)) => s,
            // Parent 0 with a live state: its parent is outside our PID
            // namespace (`nsenter`, `docker exec`), or the state was read
            // just before a reap. A second read tells.
            Some((_, Life::Unsure)) => match stat(pid).map(|s| (s, s.life(pid))) {
                None | Some((_, Life::Ended)) => return Peer::Gone,
                Some((_, Life::Unsure)) => return Peer::Foreign,
                Some((s, Life::Live)) => s,
            },
        };
        *parent = None;
        if let Some(verdict) = climb(pid, first, root, parent, &stat) {
            return verdict;
        }
        // An ancestor ended while we looked, and the process below it has
        // been handed to a subreaper (a process's children are, before
        // its pid is free): the chain is read again from the peer itself.
        // The ancestor may be a grandparent: the peer's own parent is the
        // same then, but the chain above it is not.
        line = stat(pid);
    }
    Peer::Foreign
}

/// One climb of [`walk`]: its verdict, or `None` if a process of the
/// chain moved to another parent on the way (its parent ended).
fn climb(
    pid: i32,
    first: Stat,
    root: i32,
    parent_out: &mut Option<(i32, u64)>,
    stat: &impl Fn(i32) -> Option<Stat>,
) -> Option<Peer> {
    let (mut child, mut child_start, mut parent) = (pid, first.start, first.ppid);
    for depth in 0..MAX_DEPTH {
        if parent == root {
            return Some(Peer::Ours);
        }
        if parent <= 1 {
            return Some(Peer::Foreign);
        }
        // A parent starts before its child: one that started later holds
        // a reused pid, and the child's parent has ended.
        let followable = |s: &Stat| s.life(parent) == Life::Live && s.start <= child_start;
        let s = match stat(parent).filter(followable) {
            Some(s) => s,
            // Gone, being reaped, or not the child's parent any more: if
            // the child has moved (or ended), start again. If it still
            // names this parent, the parent is alive: read once more (a
            // line read in a passing moment, such as an exec that replaced
            // its main thread), else it is one we cannot follow (its own
            // parent outside our PID namespace, or hidden from us): the
            // chain does not reach the root.
            None => {
                let moved = stat(child).is_none_or(|c| c.ppid != parent);
                if moved {
                    return None;
                }
                match stat(parent).filter(followable) {
                    Some(s) => s,
                    None => return Some(Peer::Foreign),
                }
            }
        };
        if depth == 0 {
            *parent_out = Some((parent, s.start));
        }
        (child, child_start, parent) = (parent, s.start, s.ppid);
    }
    Some(Peer::Foreign)
}

#[derive(Clone, Copy)]
struct Stat {
    ppid: i32,
    /// Start time in clock ticks after boot: with the pid, names one
    /// process for good (pids are reused, this pair is not).
    start: u64,
    /// The state letter (field 3): `X` once the process is being reaped.
    state: u8,
}

/// What a stat line says of its process, for a walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Life {
    /// Running, stopped or a zombie, with its parent.
    Live,
    /// Being reaped as the line was read: state `X`, or a zombie whose
    /// parent reads as 0 (once it is no one's child any more, the kernel
    /// shows parent 0; the state was read a moment before).
    Ended,
    /// Parent 0 with a live state: the first process of a PID namespace
    /// seen from outside it (`nsenter`, `docker exec`: its parent is out
    /// of our sight), or a line whose state was read just before its reap.
    Unsure,
}

impl Stat {
    /// The life of process `pid` by this line (pid 1's parent is 0).
    fn life(&self, pid: i32) -> Life {
        match (self.state, self.ppid) {
            (b'X', _) => Life::Ended,
            (b'Z', 0) if pid > 1 => Life::Ended,
            (_, 0) if pid > 1 => Life::Unsure,
            _ => Life::Live,
        }
    }
}

fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&super::exits::read_stat(pid)?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 4 is the ppid, field 22 the start time.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        ppid: fields.get(4 - 3)?.parse().ok()?,
        start: fields.get(22 - 3)?.parse().ok()?,
        state: *fields.first()?.as_bytes().first()?,
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

    /// `SO_PEERPIDFD` names the process at the other end, and
    /// `PIDFD_GET_INFO` its parent, as `/proc` does (skipped on kernels
    /// without them: the collector then reads `/proc`).
    #[test]
    fn a_peers_pidfd_names_it_and_its_parent() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let Some(fd) = peer_pidfd(&a) else {
            return;
        };
        let Some(ppid) = pidfd_ppid(&fd) else {
            return;
        };
        assert_eq!(ppid, stat(std::process::id() as i32).unwrap().ppid);
    }

    /// A stat line of a live process, with its parent and start time.
    fn line(ppid: i32, start: u64) -> Stat {
        Stat {
            ppid,
            start,
            state: b'S',
        }
    }

    /// Read while the kernel reaped it: parent 0 (seen under load: the
    /// run's own `main` refused as a stranger, its hello lost).
    fn reaping() -> Stat {
        Stat {
            ppid: 0,
            start: 1,
            state: b'X',
        }
    }

    /// A fake `/proc`: stat lines by pid. Reading pid `trigger` first
    /// applies `change` (processes end and move), then answers from the
    /// lines as they are, or with `answer` if it is given. Counts reads.
    struct FakeProc {
        lines: std::cell::RefCell<HashMap<i32, Stat>>,
        reads: std::cell::Cell<usize>,
    }

    impl FakeProc {
        fn new(lines: &[(i32, Stat)]) -> FakeProc {
            FakeProc {
                lines: std::cell::RefCell::new(lines.iter().copied().collect()),
                reads: std::cell::Cell::new(0),
            }
        }

        fn stat(&self, pid: i32) -> Option<Stat> {
            self.reads.set(self.reads.get() + 1);
            self.lines.borrow().get(&pid).copied()
        }
    }

    #[test]
    fn a_peer_reaped_while_its_line_was_read_is_gone_not_a_stranger() {
        // Root 5; the peer 9 was started by 5 and is being reaped.
        for first in [
            reaping(),
            Stat {
                state: b'Z',
                ..reaping()
            },
        ] {
            assert_eq!(walk(9, first, 5, &mut None, |_| None), Peer::Gone);
        }
        // Its state read just before the reap, its parent just after; gone
        // by the second read.
        let first = Stat {
            state: b'S',
            ..reaping()
        };
        assert_eq!(walk(9, first, 5, &mut None, |_| None), Peer::Gone);
        // Its parent 8 reaped the same way while we climbed, and the peer
        // gone by the time we look again: gone too.
        let stat = |pid| (pid == 8).then(reaping);
        assert_eq!(walk(9, line(8, 30), 5, &mut None, stat), Peer::Gone);
    }

    /// A live process whose parent is outside our PID namespace (entered
    /// with `nsenter` or `docker exec`) reads with parent 0 too: a
    /// stranger, as peer or as an ancestor, in a few reads.
    #[test]
    fn a_live_process_with_parent_0_is_a_stranger() {
        let peer = line(0, 30);
        let procs = FakeProc::new(&[(9, peer)]);
        assert_eq!(
            walk(9, peer, 5, &mut None, |p| procs.stat(p)),
            Peer::Foreign
        );
        let procs = FakeProc::new(&[(7, line(0, 10)), (8, line(7, 20)), (9, line(8, 30))]);
        let verdict = walk(9, line(8, 30), 5, &mut None, |p| procs.stat(p));
        assert_eq!(verdict, Peer::Foreign);
        assert!(procs.reads.get() <= 4, "{} reads", procs.reads.get());
    }

    /// Root 5 → G 7 → A 8 → peer 9, and G ends while the chain is read:
    /// A is handed to the subreaper 5 (the runner), but the peer's own
    /// parent is still A. The chain is read again and the peer is ours.
    #[test]
    fn an_ancestor_ending_during_the_walk_does_not_make_the_peer_a_stranger() {
        // G read as gone, or as being reaped; above the root, or above init.
        for (g_parent, want) in [(5, Peer::Ours), (1, Peer::Foreign)] {
            for g_when_read in [None, Some(reaping())] {
                let procs =
                    FakeProc::new(&[(7, line(g_parent, 10)), (8, line(7, 20)), (9, line(8, 30))]);
                let stat = |pid| {
                    if pid == 7 {
                        let mut lines = procs.lines.borrow_mut();
                        lines.remove(&7);
                        lines.insert(8, line(g_parent, 20));
                        return g_when_read;
                    }
                    procs.stat(pid)
                };
                let mut parent = None;
                assert_eq!(walk(9, line(8, 30), 5, &mut parent, stat), want);
                if want == Peer::Ours {
                    assert_eq!(parent, Some((8, 20)), "A, read again");
                }
            }
        }
    }

    /// The peer's own parent A ends as we read it: the peer moves to the
    /// runner R (a child of the root) and is ours; R is the parent to
    /// remember, not A. So too when A's pid is taken by a newer process
    /// (started after the peer) before we read it.
    #[test]
    fn a_peer_whose_parent_ends_is_walked_from_its_new_parent() {
        for a_when_read in [None, Some(line(1, 99))] {
            let procs = FakeProc::new(&[(6, line(5, 10)), (8, line(6, 20)), (9, line(8, 30))]);
            let stat = |pid| {
                if pid == 8 {
                    let mut lines = procs.lines.borrow_mut();
                    lines.remove(&8);
                    lines.insert(9, line(6, 30));
                    return a_when_read;
                }
                procs.stat(pid)
            };
            let mut parent = None;
            assert_eq!(walk(9, line(8, 30), 5, &mut parent, stat), Peer::Ours);
            assert_eq!(parent, Some((6, 10)), "R");
        }
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

    /// A parent found ours is remembered (by pidfd) while it runs: its
    /// children are ours from their own stat line alone. Once it has
    /// ended, it is forgotten and the chain is followed again.
    #[test]
    fn a_parent_found_ours_vouches_for_its_children_only_while_it_runs() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let me = std::process::id() as i32;
        // A (sh) starts G (sleep) and says G's pid, then waits.
        let mut a = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(a.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let g: i32 = line.trim().parse().unwrap();
        let a_pid = a.id() as i32;
        let mut judge = Judge::default();
        assert_eq!(judge.classify(g, me), Peer::Ours);
        assert!(judge.parents.contains_key(&a_pid), "A is remembered");
        // Again: still ours, through the remembered parent; also from a
        // pidfd of G (its parent asked of the pidfd, not of `/proc`).
        assert_eq!(judge.classify(g, me), Peer::Ours);
        let g_fd = super::super::exits::pidfd_open(g);
        assert_eq!(judge.classify_peer(g, g_fd.as_ref(), me), Peer::Ours);
        assert!(!has_ended(&judge.parents[&a_pid]));
        // A ends (a zombie until we wait: its pid is not free yet, but its
        // pidfd is readable, so the entry is not trusted any more), and G
        // is handed to a reaper outside our tree.
        a.kill().unwrap();
        for _ in 0..400 {
            if has_ended(&judge.parents[&a_pid]) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(has_ended(&judge.parents[&a_pid]), "A's pidfd says it ended");
        let _ = a.wait();
        for _ in 0..400 {
            if stat(g).is_none_or(|s| s.ppid != a_pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let verdict = judge.classify(g, me);
        // Our test harness may be a subreaper; otherwise G is a stranger now
        // (also when asked with its pidfd: A is not remembered any more).
        if stat(g).is_some_and(|s| s.ppid != me) {
            assert_eq!(verdict, Peer::Foreign);
            assert_eq!(judge.classify_peer(g, g_fd.as_ref(), me), Peer::Foreign);
        }
        // SAFETY: plain `kill` of the sleep we started (by pid, still
        // ours: nothing reaped it yet unless it was adopted by init).
        unsafe { libc::kill(g, libc::SIGKILL) };
    }
}
