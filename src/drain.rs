//! Graceful shutdown of everything left once the main child is gone (`--grace-period`): send the
//! drain signal, keep reaping while they exit, SIGKILL what is left when the time is up.
//!
//! "Everything left" is the namespace when ferrinit is its PID 1 (`kill(-1)` reaches exactly
//! that), and otherwise ferrinit's own descendants as found in /proc. Nothing outside ever gets a
//! signal: each descendant is pinned with a pidfd and checked again before it is signalled.

use std::collections::{HashMap, HashSet};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::log::{debug, info, warning};
use crate::reap::Reaper;
use crate::signals::{Sig, SignalState};

/// How often the final SIGKILL pass looks again for processes forked in the meantime.
const KILL_RESCAN: Duration = Duration::from_millis(250);

/// How long the final SIGKILL pass waits for its victims to be gone. Some never go: a process
/// in uninterruptible sleep, or one ferrinit may not signal (EPERM); ferrinit must still exit.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What a drain did, for the exit report: the processes ferrinit reaped within the grace period,
/// and those it reaped after SIGKILLing them. (Descendants reaped by their own parents are not
/// seen by ferrinit and not counted.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub exited: usize,
    pub killed: usize,
}

pub fn drain(
    signals: &SignalState,
    reaper: &mut Reaper,
    grace: Duration,
    drain_sig: Sig,
) -> Drained {
    let mut count = Drained::default();
    let mut none_left = |count: &mut usize| {
        let reaped = reaper.reap_ready();
        *count += reaped.others;
        reaped.none_left
    };
    if none_left(&mut count.exited) {
        return count;
    }
    let mut care = Care::new();
    let deadline = Instant::now() + grace;
    info!("sending {drain_sig} to the processes left; waiting up to {grace:?}");
    care.signal(drain_sig, Resend::No);
    // A stopped process cannot act on the drain signal until it is continued.
    care.signal(Sig::CONT, Resend::No);
    // The deadline is checked on every turn: a stream of signals (SIGCHLD from a process that
    // keeps forking) would otherwise keep the wait from ever timing out.
    while Instant::now() < deadline {
        if none_left(&mut count.exited) {
            info!("all processes have exited");
            return count;
        }
        match signals.next(Some(deadline)) {
            None => break,
            // Something exited. As a subreaper, anything forked since the last look gets the
            // signal too; as PID 1, kill(-1) reached everyone at once, and latecomers are left
            // to the SIGKILL below.
            Some(received) if received.sig == Sig::CHLD => care.signal(drain_sig, Resend::No),
            Some(received) => care.signal(received.sig, Resend::Yes),
        }
    }
    if none_left(&mut count.exited) {
        return count;
    }
    if let Care::Blind = care {
        warning!(
            "grace period of {grace:?} is over; descendants are left, and ferrinit cannot find them to kill them"
        );
        return count;
    }
    warning!("grace period of {grace:?} is over: killing the processes left");
    let give_up = Instant::now() + KILL_WAIT;
    while Instant::now() < give_up {
        care.signal(Sig::KILL, Resend::Yes);
        if none_left(&mut count.killed) {
            return count;
        }
        signals.next(Some(give_up.min(Instant::now() + KILL_RESCAN)));
    }
    warning!(
        "processes are still left {KILL_WAIT:?} after SIGKILL (uninterruptible, or not ours to signal); leaving them"
    );
    count
}

#[derive(PartialEq, Eq)]
enum Resend {
    Yes,
    /// Only processes that have not had this signal from the drain yet.
    No,
}

enum Care {
    /// PID 1: `kill(-1, ...)` reaches every other process of the namespace, and only those.
    Namespace { sent: HashSet<Sig> },
    Subtree {
        own_pid: i32,
        /// `(pid, start time, signal)` already sent.
        sent: HashSet<(i32, u64, Sig)>,
    },
    /// Not PID 1, and /proc describes another PID namespace: descendants cannot be found safely,
    /// so nothing is signalled; the drain only waits out the grace period for them.
    Blind,
}

impl Care {
    fn new() -> Care {
        let own_pid = std::process::id() as i32;
        if own_pid == 1 {
            return Care::Namespace {
                sent: HashSet::new(),
            };
        }
        if proc_is_ours(own_pid) {
            Care::Subtree {
                own_pid,
                sent: HashSet::new(),
            }
        } else {
            warning!(
                "/proc belongs to another PID namespace: cannot find descendants to signal, only waiting for them (mount a fresh /proc)"
            );
            Care::Blind
        }
    }

    fn signal(&mut self, sig: Sig, resend: Resend) {
        match self {
            Care::Namespace { sent } => {
                if sent.insert(sig) || resend == Resend::Yes {
                    // SAFETY: kill has no memory-safety preconditions. As PID 1, -1 means every
                    // process of our namespace but ourselves.
                    unsafe { libc::kill(-1, sig.number()) };
                }
            }
            Care::Subtree { own_pid, sent } => {
                for process in descendants(*own_pid) {
                    if resend == Resend::Yes || sent.insert((process.pid, process.start, sig)) {
                        debug!("sending {sig} to descendant {}", process.pid);
                        process.send(sig);
                    }
                }
            }
            Care::Blind => {}
        }
    }
}

/// Whether /proc describes ferrinit's own PID namespace. `NSpid` lists our pid in every
/// namespace from the one /proc belongs to down to ours: a single entry, equal to our pid, means
/// they are the same. (Comparing /proc/self with our pid alone could be fooled when our pid
/// happens to be the same number in an ancestor namespace.)
fn proc_is_ours(own_pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .is_some_and(|pids| pids.split_whitespace().eq([own_pid.to_string().as_str()]))
}

struct ProcEntry {
    pid: i32,
    ppid: i32,
    start: u64,
}

fn read_stat(pid: i32) -> Option<ProcEntry> {
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

/// A descendant, pinned by a pidfd and confirmed to be in our subtree after pinning.
struct Descendant {
    pid: i32,
    start: u64,
    pidfd: OwnedFd,
}

impl Descendant {
    fn send(&self, sig: Sig) {
        // SAFETY: the pidfd is open; a null siginfo means "as kill() would send it".
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self_fd(&self.pidfd),
                sig.number(),
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

fn self_fd(fd: &OwnedFd) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// Our descendants, parents before children. A pid read from /proc may be reused by the time it
/// is signalled, so each one is pinned with a pidfd first and then checked again: same start time,
/// and a parent already confirmed as ours. A signal through that pidfd can reach no one else.
fn descendants(own_pid: i32) -> Vec<Descendant> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<ProcEntry>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(process) = read_stat(pid) {
            children.entry(process.ppid).or_default().push(process);
        }
    }
    let mut confirmed: HashSet<i32> = HashSet::from([own_pid]);
    let mut queue: Vec<ProcEntry> = children.remove(&own_pid).unwrap_or_default();
    let mut found = Vec::new();
    while let Some(candidate) = queue.pop() {
        let Some(pidfd) = pidfd_open(candidate.pid) else {
            continue;
        };
        let Some(now) = read_stat(candidate.pid) else {
            continue;
        };
        if now.start != candidate.start || !confirmed.contains(&now.ppid) {
            continue;
        }
        confirmed.insert(candidate.pid);
        queue.extend(children.remove(&candidate.pid).unwrap_or_default());
        found.push(Descendant {
            pid: candidate.pid,
            start: candidate.start,
            pidfd,
        });
    }
    found
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open has no memory-safety preconditions; the kernel makes the new descriptor
    // close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: on success the syscall returned a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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
