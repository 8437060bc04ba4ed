//! Knowing when and how a process ended without being its parent: a pidfd
//! turns readable the moment the process dies, and while it is a zombie
//! `/proc/PID/stat` still holds its wait status.

use crate::protocol::signal_name;
use std::os::fd::{FromRawFd, OwnedFd};

/// A pidfd for `pid` (Linux 5.3+), or `None` if it is already gone.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `/proc/PID/stat`, in one `read` (a stat line is a few hundred bytes):
/// `read_to_string` would ask the size and read in growing pieces, and
/// this is done for every connection, its ancestors and every death.
pub fn read_stat(pid: i32) -> Option<String> {
    use std::io::Read;
    if pid <= 0 {
        return None;
    }
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let n = file.read(&mut buf).ok()?;
    if n == buf.len() {
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        file.read_to_string(&mut text).ok()?;
        return Some(text);
    }
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Is `pid` still running (not gone, not a zombie, not being reaped)?
pub fn is_alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|stat| running(&stat))
}

/// Does this stat line show a process still running?
fn running(stat: &str) -> bool {
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        // `X`: being reaped as we read (its line can still be read).
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Exit code or signal of a zombie, from field 52 of `/proc/PID/stat`.
/// `None` if the process is not (or no longer) a zombie.
pub fn zombie_status(pid: i32) -> Option<(Option<i32>, Option<String>)> {
    parse_stat(&read_stat(pid)?)
}

fn parse_stat(stat: &str) -> Option<(Option<i32>, Option<String>)> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 3 is the state; field 52 the exit status.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let status: i32 = fields.get(52 - 3)?.parse().ok()?;
    let signal = status & 0x7f;
    Some(if signal == 0 {
        (Some((status >> 8) & 0xff), None)
    } else {
        (None, Some(signal_name(signal)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_with(state: &str, status: i32) -> String {
        let mut fields = vec!["0"; 50];
        fields[0] = state;
        let status = status.to_string();
        fields[49] = &status;
        format!("123 (a (weird) name) {}", fields.join(" "))
    }

    #[test]
    fn reads_exit_codes_and_signals_of_zombies() {
        assert_eq!(parse_stat(&stat_with("Z", 3 << 8)), Some((Some(3), None)));
        assert_eq!(
            parse_stat(&stat_with("Z", 15)),
            Some((None, Some("SIGTERM".into())))
        );
        assert_eq!(parse_stat(&stat_with("S", 0)), None);
    }

    #[test]
    fn a_zombie_or_a_process_being_reaped_is_not_running() {
        assert!(running(&stat_with("S", 0)));
        assert!(running(&stat_with("R", 0)));
        assert!(!running(&stat_with("Z", 0)));
        assert!(!running(&stat_with("X", 0)));
    }
}
