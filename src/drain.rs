//! Graceful shutdown of everything left once the main child is gone (`--grace-period`): send the
//! drain signal, keep reaping while they exit, SIGKILL what is left when the time is up.
//!
//! "Everything left" is the namespace when ferrinit is its PID 1, and otherwise ferrinit's own
//! descendants (`-t` makes ferrinit a subreaper, so that they all end up as its children).
//!
//! - As PID 1, `kill(-1)` reaches exactly the namespace, and `kill(-1, 0)` tells whether anyone
//!   is left in it. Processes that joined it from outside (nsenter, `docker exec`) are not
//!   ferrinit's children, and their exit sends it no SIGCHLD. So once no child is left but the
//!   namespace is not empty, ferrinit pins one process of it with a pidfd and sleeps until a
//!   signal is pending (a signalfd tells) or that process exits, then looks again: two
//!   descriptors however many they are, and no timer.
//! - As a subreaper, descendants are found in /proc and taken one at a time: pinned with a pidfd,
//!   confirmed to be ours, signalled through the pidfd, released. So every one of them gets the
//!   signal whatever RLIMIT_NOFILE allows, and none outside ever does. The confirmation asks the
//!   kernel for the pinned process's parent (Linux 6.13), which nothing in /proc can fake;
//!   older kernels check /proc again instead.
//! - As a subreaper without pidfds (before Linux 5.3, or a seccomp profile without pidfd_open),
//!   or without a descriptor to read /proc with: only ferrinit's own children are signalled, by
//!   pid, each confirmed unreaped by `waitid` first (an unreaped child's pid cannot be reused).
//!   The others are orphaned to ferrinit as their parents exit, and are signalled then.

mod pidfd;
mod procfs;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::forward::{Forwarding, Phase};
use crate::log::{debug, info, warning};
use crate::reap::Reaper;
use crate::signals::{Received, Sig, SignalState, pending_signal_fd};
use crate::sweep::is_own_child;
use pidfd::Pidfd;
use procfs::{ProcEntry, Procfs};

/// How often the final SIGKILL pass looks again for processes forked in the meantime.
const KILL_RESCAN: Duration = Duration::from_millis(250);

/// How long the final SIGKILL pass waits for its victims to be gone. Some never go: a process
/// in uninterruptible sleep, or one ferrinit may not signal (EPERM); ferrinit must still exit.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// As PID 1, how often to look again for processes that can be neither waited for nor watched:
/// when /proc is not the namespace's own, or no descriptor is left to watch them with.
const UNWATCHED_RECHECK: Duration = Duration::from_millis(100);

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
    forwarding: &mut Forwarding,
    grace: Duration,
    drain_sig: Sig,
) -> Drained {
    let mut count = Drained::default();
    let mut care = Care::new();
    if !care.anyone_left(reaper, &mut count.exited) {
        return count;
    }
    if let Care::Blind(procfs) = care {
        match procfs {
            Procfs::NotMounted => warning!(
                "/proc is not mounted: cannot find descendants to signal, only waiting for them (mount a fresh /proc)"
            ),
            Procfs::Unreadable(e) => warning!(
                "cannot read /proc ({e}): cannot find descendants to signal, only waiting for them"
            ),
            _ => warning!(
                "/proc belongs to another PID namespace: cannot find descendants to signal, only waiting for them (mount a fresh /proc)"
            ),
        }
    }
    let deadline = Instant::now() + grace;
    info!("sending {drain_sig} to the processes left; waiting up to {grace:?}");
    care.signal(drain_sig, Resend::No);
    // A stopped process cannot act on the drain signal until it is continued.
    care.signal(Sig::CONT, Resend::No);
    // The deadline is checked on every turn: a stream of signals (SIGCHLD from a process that
    // keeps forking) would otherwise keep the wait from ever timing out.
    while Instant::now() < deadline {
        if !care.anyone_left(reaper, &mut count.exited) {
            info!("all processes have exited");
            return count;
        }
        // Held by --delay: due within the grace period, they are sent then.
        let wake = forwarding
            .next_due()
            .map_or(deadline, |due| due.min(deadline));
        let woken = care.wait(signals, wake);
        for due in forwarding.take_due(Instant::now(), Phase::Draining) {
            care.signal(due.sig, Resend::Yes);
        }
        match woken {
            Woken::LookAgain => {}
            // Something exited. As a subreaper, anything forked since the last look gets the
            // signal too; as PID 1, kill(-1) reached everyone at once, and latecomers are left
            // to the SIGKILL below.
            Woken::Signal(received) if received.sig == Sig::CHLD => {
                care.signal(drain_sig, Resend::No)
            }
            Woken::Signal(received) => {
                for out in forwarding.admit(received, Phase::Draining, Instant::now()) {
                    care.signal(out.sig, Resend::Yes);
                }
            }
        }
    }
    if !care.anyone_left(reaper, &mut count.exited) {
        return count;
    }
    if let Care::Blind(_) = care {
        warning!(
            "grace period of {grace:?} is over; descendants are left, and ferrinit cannot find them to kill them"
        );
        return count;
    }
    warning!("grace period of {grace:?} is over: killing the processes left");
    let give_up = Instant::now() + KILL_WAIT;
    while Instant::now() < give_up {
        care.signal(Sig::KILL, Resend::Yes);
        if !care.anyone_left(reaper, &mut count.killed) {
            return count;
        }
        care.wait(signals, give_up.min(Instant::now() + KILL_RESCAN));
    }
    match &care {
        Care::Subtree(Subtree {
            limit: Some(limit), ..
        }) => warning!(
            "processes are still left {KILL_WAIT:?} after SIGKILL; leaving them (uninterruptible, or not ours to signal; or never signalled, their parent still alive: {limit})"
        ),
        _ => warning!(
            "processes are still left {KILL_WAIT:?} after SIGKILL (uninterruptible, or not ours to signal); leaving them"
        ),
    }
    count
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resend {
    Yes,
    /// Only processes that have not had this signal from the drain yet.
    No,
}

enum Woken {
    Signal(Received),
    /// Time is up, or something may have exited: check again.
    LookAgain,
}

impl From<Option<Received>> for Woken {
    fn from(received: Option<Received>) -> Woken {
        received.map_or(Woken::LookAgain, Woken::Signal)
    }
}

enum Care {
    Namespace(Namespace),
    Subtree(Subtree),
    /// Not PID 1, and /proc is not our namespace's (or cannot be read for another reason than a
    /// lack of descriptors): descendants cannot be found safely, so nothing is signalled; the
    /// drain only waits out the grace period for them.
    Blind(Procfs),
}

impl Care {
    fn new() -> Care {
        let procfs = Procfs::check();
        let own_pid = std::process::id() as i32;
        if own_pid == 1 {
            return Care::Namespace(Namespace {
                sent: HashSet::new(),
                procfs,
                waiting: Waiting::ForChildren,
                signal_ready: SignalReady::NotYet,
            });
        }
        let finding = match procfs {
            Procfs::Ours => Finding::InProc,
            Procfs::Unreadable(e) if out_of_descriptors(e) => Finding::ChildrenByPid(e),
            _ => return Care::Blind(procfs),
        };
        Care::Subtree(Subtree {
            own_pid,
            finding,
            sent: HashSet::new(),
            limit: None,
        })
    }

    /// Reaps what has exited and tells whether anyone is left, deciding how to wait for them.
    /// Reaps what has exited, adding how many to `reaped`, and tells whether anyone is left.
    fn anyone_left(&mut self, reaper: &mut Reaper, reaped: &mut usize) -> bool {
        let ready = reaper.reap_ready();
        *reaped += ready.others;
        let children_left = !ready.none_left;
        match self {
            Care::Namespace(namespace) => namespace.anyone_left(children_left),
            // A subreaper's descendants all end up as its children: ECHILD means none is left.
            Care::Subtree(_) | Care::Blind(_) => children_left,
        }
    }

    fn signal(&mut self, sig: Sig, resend: Resend) {
        match self {
            Care::Namespace(namespace) => {
                if namespace.sent.insert(sig) || resend == Resend::Yes {
                    // SAFETY: kill has no memory-safety preconditions. As PID 1, -1 means every
                    // process of our namespace but ourselves.
                    unsafe { libc::kill(-1, sig.number()) };
                }
            }
            Care::Subtree(subtree) => subtree.signal(sig, resend),
            Care::Blind(_) => {}
        }
    }

    fn wait(&mut self, signals: &SignalState, until: Instant) -> Woken {
        match self {
            Care::Namespace(namespace) => namespace.wait(signals, until),
            Care::Subtree(_) | Care::Blind(_) => signals.next(Some(until)).into(),
        }
    }
}

struct Namespace {
    sent: HashSet<Sig>,
    procfs: Procfs,
    waiting: Waiting,
    signal_ready: SignalReady,
}

/// What the PID-1 drain waits for, besides signals.
enum Waiting {
    /// Children of ours are left: SIGCHLD tells when one exits.
    ForChildren,
    /// Only processes that are not our children are left; this one is watched.
    ForWatched(Pidfd),
    /// Only processes that are not our children are left, and none can be watched.
    Unwatched,
}

/// A signalfd for the signals ferrinit collects: readable while one is pending. It is never
/// read; the signal itself is taken by `SignalState`, as everywhere else.
enum SignalReady {
    NotYet,
    Open(OwnedFd),
    Unavailable,
}

impl Namespace {
    fn anyone_left(&mut self, children_left: bool) -> bool {
        self.waiting = Waiting::ForChildren;
        // SAFETY: kill has no memory-safety preconditions; signal 0 only checks that someone
        // other than ourselves is left in the namespace (zombies included, but ours are reaped).
        if unsafe { libc::kill(-1, 0) } != 0 {
            return false;
        }
        if children_left {
            return true;
        }
        if self.procfs != Procfs::Ours {
            self.waiting = Waiting::Unwatched;
            return true;
        }
        match live_process_other_than_us() {
            Some(Ok(pidfd)) => self.waiting = Waiting::ForWatched(pidfd),
            Some(Err(_)) => self.waiting = Waiting::Unwatched,
            // Only zombies whose parents live outside the namespace: gone, for our purposes.
            None => return false,
        }
        true
    }

    fn wait(&mut self, signals: &SignalState, until: Instant) -> Woken {
        let watched = match &self.waiting {
            Waiting::ForChildren => return signals.next(Some(until)).into(),
            Waiting::ForWatched(pidfd) => pidfd,
            Waiting::Unwatched => {
                let until = until.min(Instant::now() + UNWATCHED_RECHECK);
                return signals.next(Some(until)).into();
            }
        };
        if signals.holds_one() {
            return signals.next(Some(Instant::now())).into();
        }
        if let SignalReady::NotYet = self.signal_ready {
            self.signal_ready =
                pending_signal_fd().map_or(SignalReady::Unavailable, SignalReady::Open);
        }
        let SignalReady::Open(signal_ready) = &self.signal_ready else {
            let until = until.min(Instant::now() + UNWATCHED_RECHECK);
            return signals.next(Some(until)).into();
        };
        let mut fds = [
            libc::pollfd {
                fd: signal_ready.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: watched.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let left = until.saturating_duration_since(Instant::now());
        // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if ready > 0 && fds[0].revents != 0 {
            // Pending: taken at once, without waiting.
            return signals.next(Some(Instant::now())).into();
        }
        Woken::LookAgain
    }
}

/// Some process of the namespace other than ferrinit that has not exited, pinned; `None` if
/// there is none, an error if one could not be pinned.
fn live_process_other_than_us() -> Option<Result<Pidfd, Errno>> {
    let own_pid = std::process::id() as i32;
    let pids = match procfs::pids() {
        Ok(pids) => pids,
        Err(e) => return Some(Err(e)),
    };
    for pid in pids.into_iter().filter(|&pid| pid != own_pid) {
        match Pidfd::open(pid) {
            Ok(pidfd) if !pidfd.has_exited() => return Some(Ok(pidfd)),
            Ok(_) | Err(Errno::ESRCH) => {}
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// The highest pid a 64-bit kernel ever hands out (PID_MAX_LIMIT): without /proc, the range in
/// which ferrinit's children are looked for.
const PID_MAX_LIMIT: i32 = 1 << 22;

fn out_of_descriptors(e: Errno) -> bool {
    matches!(e, Errno::EMFILE | Errno::ENFILE)
}

struct Subtree {
    own_pid: i32,
    finding: Finding,
    /// `(pid, start time, signal)` already sent; start time 0 for a child signalled by pid.
    sent: HashSet<(i32, u64, Sig)>,
    /// Why only ferrinit's own children could be signalled, once it is known (and reported).
    limit: Option<Limit>,
}

#[derive(Clone, Copy)]
enum Finding {
    /// Descendants are listed in /proc, which is our namespace's.
    InProc,
    /// /proc could not even be checked for want of a descriptor (this error): never trusted,
    /// never read.
    ChildrenByPid(Errno),
}

/// What keeps the drain from reaching descendants that are not ferrinit's children.
enum Limit {
    NoPidfd(Errno),
    /// No descriptor left (EMFILE, ENFILE) above all.
    NoListing(Errno),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::NoPidfd(e) => write!(f, "cannot open pidfds ({e})"),
            Limit::NoListing(e) => write!(f, "cannot list /proc ({e})"),
        }
    }
}

impl Subtree {
    fn signal(&mut self, sig: Sig, resend: Resend) {
        let listed = match self.finding {
            Finding::InProc => procfs::pids(),
            Finding::ChildrenByPid(e) => Err(e),
        };
        match listed {
            Ok(pids) => self.signal_listed(pids, sig, resend),
            Err(e) => {
                self.limited_by(Limit::NoListing(e));
                // Without a listing: every pid there can be, asked whether it is our child.
                let own_pid = self.own_pid;
                for pid in (2..=PID_MAX_LIMIT).filter(|&pid| pid != own_pid) {
                    if is_own_child(pid) {
                        self.send_by_pid(pid, sig, resend);
                    }
                }
            }
        }
    }

    /// Our descendants, parents before children, each pinned, confirmed, signalled and released
    /// before the next is pinned: one descriptor at a time.
    fn signal_listed(&mut self, pids: Vec<i32>, sig: Sig, resend: Resend) {
        let mut children: HashMap<i32, Vec<ProcEntry>> = HashMap::new();
        for process in pids.into_iter().filter_map(procfs::read_stat) {
            children.entry(process.ppid).or_default().push(process);
        }
        let mut confirmed: HashSet<i32> = HashSet::from([self.own_pid]);
        let mut queue: Vec<ProcEntry> = children.remove(&self.own_pid).unwrap_or_default();
        while let Some(candidate) = queue.pop() {
            let pidfd = match Pidfd::open(candidate.pid) {
                Ok(pidfd) => pidfd,
                Err(Errno::ESRCH) => continue,
                Err(e) => {
                    // Its own descendants are left until they are orphaned to us.
                    self.limited_by(Limit::NoPidfd(e));
                    if candidate.ppid == self.own_pid && is_own_child(candidate.pid) {
                        self.send_by_pid(candidate.pid, sig, resend);
                    }
                    continue;
                }
            };
            if !parent_of(&pidfd, &candidate).is_some_and(|ppid| confirmed.contains(&ppid)) {
                continue;
            }
            confirmed.insert(candidate.pid);
            queue.extend(children.remove(&candidate.pid).unwrap_or_default());
            if resend == Resend::Yes || self.sent.insert((candidate.pid, candidate.start, sig)) {
                debug!("sending {sig} to descendant {}", candidate.pid);
                let _ = pidfd.send(sig);
            }
        }
    }

    /// `pid` must be an unreaped child of ours: until we reap it, nobody else can have its pid.
    fn send_by_pid(&mut self, pid: i32, sig: Sig, resend: Resend) {
        if resend == Resend::Yes || self.sent.insert((pid, 0, sig)) {
            debug!("sending {sig} to child {pid}");
            // SAFETY: kill has no memory-safety preconditions; `pid` is an unreaped child, > 1.
            unsafe { libc::kill(pid, sig.number()) };
        }
    }

    fn limited_by(&mut self, limit: Limit) {
        if self.limit.is_none() {
            warning!(
                "{limit}: signalling ferrinit's own children by pid; their descendants get the drain's signals once orphaned to ferrinit"
            );
            self.limit = Some(limit);
        }
    }
}

/// The parent of the pinned process: from the kernel where it can tell; elsewhere from /proc,
/// read again now that the process is pinned (the same start time as listed means that the
/// pinned process is the one listed, not a later one with its pid).
fn parent_of(pidfd: &Pidfd, listed: &ProcEntry) -> Option<i32> {
    match pidfd.parent() {
        Ok(ppid) => Some(ppid),
        Err(Errno::ENOTTY | Errno::EINVAL) => procfs::read_stat(listed.pid)
            .filter(|now| now.start == listed.start)
            .map(|now| now.ppid),
        Err(_) => None,
    }
}
