//! The end of `--contain=subreaper`: SIGKILL every child, reap, and repeat, until ferrinit has no
//! child left. As a subreaper, each killed process's orphans become ferrinit's children in turn,
//! so the sweep works down the whole tree, whatever double forks or `setsid` did to it.
//!
//! Only ferrinit's own children are ever signalled, and only while unreaped: a child's pid cannot
//! be reused before its parent reaps it, so the number is safe to `kill`.

use std::time::{Duration, Instant};

use crate::log::{info, warning};
use crate::reap::Reaper;
use crate::signals::SignalState;

/// How long the sweep waits for SIGKILLed children to go (one in uninterruptible sleep may not).
const SWEEP_WAIT: Duration = Duration::from_secs(5);

/// Returns how many processes it reaped after its first SIGKILL (for the exit report's `killed`).
pub fn kill_every_descendant(signals: &SignalState, reaper: &mut Reaper) -> usize {
    let give_up = Instant::now() + SWEEP_WAIT;
    let mut announced = false;
    let mut killed = 0;
    loop {
        let reaped = reaper.reap_ready();
        if announced {
            killed += reaped.others;
        }
        if reaped.none_left {
            return killed;
        }
        let children = own_children();
        if !announced && !children.is_empty() {
            info!("killing the {} processes left", children.len());
            announced = true;
        }
        for pid in children {
            // SAFETY: kill has no memory-safety preconditions; `pid` is an unreaped child of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() >= give_up {
            warning!(
                "processes are still left {SWEEP_WAIT:?} after SIGKILL (uninterruptible?); leaving them"
            );
            return killed;
        }
        // Woken by SIGCHLD (or any signal: nothing is forwarded any more).
        signals.next(Some(give_up));
    }
}

/// Our unreaped children, from /proc, each one confirmed as ours by `waitid` (which answers
/// ECHILD for anyone else's): /proc may even describe another PID namespace.
fn own_children() -> Vec<libc::pid_t> {
    let own = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|at| stat[at + 1..].split_whitespace().nth(1));
            ppid == Some(own.as_str())
        })
        .filter(|&pid| is_own_child(pid))
        .collect()
}

pub fn is_own_child(pid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is valid writable storage; WNOWAIT leaves the child as it was.
    unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 }
}
