//! What /proc says about processes. Only ever a hint: a pid read here may belong to another
//! process by the time it is used, and a process that may mount can make /proc say anything.

use nix::errno::Errno;

/// Whether /proc describes ferrinit's own PID namespace.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Procfs {
    Ours,
    /// Mounted, but for an ancestor PID namespace: its pids are not ours.
    Foreign,
    NotMounted,
    /// It could not be read, for another reason than not being there: no descriptor left
    /// (EMFILE, ENFILE) above all.
    Unreadable(Errno),
}

impl Procfs {
    /// `NSpid` lists our pid in every namespace from the one /proc belongs to down to ours: a
    /// single entry, equal to our pid, means they are the same. (Comparing /proc/self with our
    /// pid alone could be fooled when our pid happens to be the same number in an ancestor.)
    pub fn check() -> Procfs {
        let status = match std::fs::read_to_string("/proc/self/status") {
            Ok(status) => status,
            Err(e) => {
                return match errno_of(&e) {
                    Errno::ENOENT => Procfs::NotMounted,
                    errno => Procfs::Unreadable(errno),
                };
            }
        };
        let own_pid = std::process::id().to_string();
        let ours = status
            .lines()
            .find_map(|line| line.strip_prefix("NSpid:"))
            .is_some_and(|pids| pids.split_whitespace().eq([own_pid.as_str()]));
        if ours { Procfs::Ours } else { Procfs::Foreign }
    }
}

/// Every pid /proc lists. The directory is closed before this returns, so that the caller can
/// work with a single descriptor whatever RLIMIT_NOFILE allows.
pub fn pids() -> Result<Vec<i32>, Errno> {
    let dir = std::fs::read_dir("/proc").map_err(|e| errno_of(&e))?;
    Ok(dir
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect())
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    pub start: u64,
}

pub fn read_stat(pid: i32) -> Option<ProcEntry> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// `pid (comm) state ppid ... starttime ...`; comm may itself hold spaces and parentheses.
fn parse_stat(pid: i32, text: &str) -> Option<ProcEntry> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    // After comm: state(0) ppid(1) ... starttime is field 22 of the line, index 19 here.
    Some(ProcEntry {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_even_with_parentheses_and_spaces_in_the_name() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        let entry = parse_stat(42, line).unwrap();
        assert_eq!((entry.pid, entry.ppid, entry.start), (42, 7, 123456));
        assert!(parse_stat(1, "1 (init) S").is_none());
    }
}
