//! Signals: their names, the mask that makes them deliverable to PID 1, and the wait for them.
//!
//! ferrinit installs no signal handler. It blocks every signal but SIGKILL and SIGSTOP before the
//! child exists and takes them one at a time with `sigtimedwait`. A blocked signal is never
//! dropped by the kernel, not even for a namespace's PID 1, and an idle wait makes no wake-ups.

use std::cell::Cell;
use std::fmt;
use std::mem::MaybeUninit;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A signal number, standard or real-time (nix's `Signal` cannot hold real-time ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(i32);

impl Sig {
    pub const HUP: Sig = Sig(libc::SIGHUP);
    pub const INT: Sig = Sig(libc::SIGINT);
    pub const KILL: Sig = Sig(libc::SIGKILL);
    pub const TERM: Sig = Sig(libc::SIGTERM);
    pub const CHLD: Sig = Sig(libc::SIGCHLD);
    pub const CONT: Sig = Sig(libc::SIGCONT);
    pub const TTIN: Sig = Sig(libc::SIGTTIN);
    pub const TTOU: Sig = Sig(libc::SIGTTOU);

    /// The highest signal number the kernel knows (64 on Linux).
    pub fn max() -> i32 {
        libc::SIGRTMAX()
    }

    pub fn from_number(number: i32) -> Option<Sig> {
        (1..=Self::max()).contains(&number).then_some(Sig(number))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// Whether instances of this signal queue up (each one counts) rather than merge: the
    /// kernel's real-time signals, 32 to 64, glibc's internal 32 and 33 included.
    pub fn is_real_time(self) -> bool {
        self.0 >= 32
    }

    /// Whether ferrinit can receive this signal at all (see [`collected`]).
    pub fn is_collected(self) -> bool {
        collected() & bit(self.0) != 0
    }
}

/// Names without the `SIG` prefix that the kernel headers spell differently from nix.
const ALIASES: &[(&str, i32)] = &[
    ("IOT", libc::SIGIOT),
    ("CLD", libc::SIGCHLD),
    ("POLL", libc::SIGPOLL),
];

fn standard_name(number: i32) -> Option<&'static str> {
    Signal::try_from(number).ok().map(Signal::as_str)
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        match self.0 {
            n if n == min => f.write_str("SIGRTMIN"),
            n if n == max => f.write_str("SIGRTMAX"),
            n if n > min && n < max => write!(f, "SIGRTMIN+{}", n - min),
            n => match standard_name(n) {
                Some(name) => f.write_str(name),
                None => write!(f, "SIG{n}"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal '{0}' (use a name such as TERM or SIGRTMIN+3, or a number from 1 to 64)")]
pub struct UnknownSignal(pub String);

/// Accepts `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN`, `RTMIN+3`, `SIGRTMAX-2`.
impl FromStr for Sig {
    type Err = UnknownSignal;

    fn from_str(input: &str) -> Result<Sig, UnknownSignal> {
        let unknown = || UnknownSignal(input.to_owned());
        let upper = input.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        let number = if let Some(offset) = name.strip_prefix("RTMIN") {
            rt_offset(offset, '+').and_then(|k| libc::SIGRTMIN().checked_add(k))
        } else if let Some(offset) = name.strip_prefix("RTMAX") {
            rt_offset(offset, '-').and_then(|k| libc::SIGRTMAX().checked_sub(k))
        } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            name.parse::<i32>().ok()
        } else {
            let standard = Signal::iterator()
                .find(|s| &s.as_str()[3..] == name)
                .map(|s| s as i32);
            standard.or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|&(_, n)| n))
        };
        let number = number.ok_or_else(unknown)?;
        let in_rt_range = (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&number);
        if (name.starts_with("RTMIN") || name.starts_with("RTMAX")) && !in_rt_range {
            return Err(unknown());
        }
        Sig::from_number(number).ok_or_else(unknown)
    }
}

/// `""` is 0; `"+3"` (or `"-3"` for RTMAX) is 3; anything else is not an offset.
fn rt_offset(text: &str, sign: char) -> Option<i32> {
    if text.is_empty() {
        return Some(0);
    }
    let digits = text.strip_prefix(sign)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i32>().ok()
}

/// A set of signals as the kernel holds it: signal N is bit N-1. ferrinit hands these to the
/// system calls itself, because glibc's `sigset_t` functions quietly leave out signals 32 and 33
/// (NPTL keeps them for itself), and a process that does not block those dies of them.
type KernelSet = u64;

/// What the kernel takes as the size of a [`KernelSet`].
const KERNEL_SET_SIZE: usize = std::mem::size_of::<KernelSet>();

fn bit(sig: i32) -> KernelSet {
    1 << (sig - 1)
}

/// Every signal ferrinit collects: all 64 but SIGKILL and SIGSTOP, which cannot be blocked.
///
/// The faults (SEGV, BUS, ILL, FPE, ABRT, TRAP, SYS) are blocked too, so that one sent by a
/// process (`docker kill -s ABRT` for a thread dump) is forwarded rather than lost or fatal.
/// Blocking them costs nothing: the kernel still delivers a real fault in ferrinit (it unblocks
/// the signal to force it through), and `abort()` unblocks SIGABRT itself.
fn collected() -> KernelSet {
    !(bit(libc::SIGKILL) | bit(libc::SIGSTOP))
}

/// `rt_sigprocmask` without glibc, which would drop signals 32 and 33 from `set`.
fn set_mask(how: libc::c_int, set: &KernelSet, old: Option<&mut KernelSet>) -> Result<(), Errno> {
    let old = old.map_or(std::ptr::null_mut(), |old| old as *mut KernelSet);
    // SAFETY: `set` is readable and `old` null or writable, each a kernel sigset of the size
    // passed. A raw system call is async-signal-safe, so this may run between fork and exec.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            set as *const KernelSet,
            old,
            KERNEL_SET_SIZE,
        )
    };
    Errno::result(result).map(drop)
}

/// A descriptor that becomes readable while a collected signal is pending: for a wait that must
/// watch descriptors too (`poll`). The signal itself is still taken with [`SignalState::next`].
/// Close-on-exec and non-blocking; `None` if the kernel gives none (no descriptor left).
pub fn pending_signal_fd() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let set = collected();
    // SAFETY: `set` is a readable kernel sigset of the size passed; signalfd4 with -1 makes a
    // new descriptor. Raw, so that signals 32 and 33 are watched too.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &set as *const KernelSet,
            KERNEL_SET_SIZE,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        )
    };
    // SAFETY: on success, a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot block signals: {0}")]
    Block(#[source] Errno),
    #[error("cannot reset the inherited SIGCHLD disposition: {0}")]
    Sigchld(#[source] Errno),
}

/// What ferrinit changed about signals, and what the child must get back.
pub struct SignalState {
    own_pid: libc::pid_t,
    order: Cell<Order>,
    inherited_mask: KernelSet,
    /// Set when ferrinit started with SIGCHLD ignored: the kernel would then
    /// reap children behind our back and lose their exit status, so ferrinit resets it for itself.
    inherited_sigchld: Option<libc::sigaction>,
}

impl SignalState {
    /// Blocks every collected signal. Must run before anything else, above all before the child
    /// exists: a signal that arrives from here on waits for the main loop instead of being lost.
    pub fn take_over() -> Result<SignalState, SignalError> {
        let mut inherited_mask = 0;
        set_mask(libc::SIG_BLOCK, &collected(), Some(&mut inherited_mask))
            .map_err(SignalError::Block)?;
        let inherited_sigchld = reset_sigchld_if_ignored()?;
        Ok(SignalState {
            own_pid: std::process::id() as libc::pid_t,
            order: Cell::new(Order {
                last: 0,
                run: 0,
                stay: false,
                backlog: false,
            }),
            inherited_mask,
            inherited_sigchld,
        })
    }

    /// The same state in a fork that goes on as ferrinit (`--contain`'s inner one): a signal is
    /// its own when it raised it itself. One sent by its parent, the outer ferrinit relaying,
    /// is the child's business like any other.
    pub fn in_fork(&self) -> SignalState {
        SignalState {
            own_pid: std::process::id() as libc::pid_t,
            order: Cell::new(self.order.get()),
            inherited_mask: self.inherited_mask,
            inherited_sigchld: self.inherited_sigchld,
        }
    }

    /// Restores the signal state ferrinit was started with, signals 32 and 33 included. Only
    /// async-signal-safe calls: this runs in the forked child before `exec`.
    pub fn restore_inherited_in_child(&self) {
        if let Some(action) = &self.inherited_sigchld {
            // SAFETY: `action` is the valid sigaction that the kernel gave us at start-up.
            unsafe { libc::sigaction(libc::SIGCHLD, action, std::ptr::null_mut()) };
        }
        let _ = set_mask(libc::SIG_SETMASK, &self.inherited_mask, None);
    }

    /// Waits for the next collected signal, without a timeout when `deadline` is `None`.
    /// Returns `None` once the deadline has passed.
    pub fn next(&self, deadline: Option<Instant>) -> Option<Received> {
        loop {
            let received = self.take_next(deadline)?;
            if !received.raised_by(self.own_pid) {
                return Some(received);
            }
            // Not a word about it: a log line to such a stderr would raise the next one.
        }
    }

    fn take_next(&self, deadline: Option<Instant>) -> Option<Received> {
        if self.order.get().backlog {
            if let Some(received) = self.take_pending() {
                return Some(received);
            }
            self.order.set(Order {
                backlog: false,
                ..self.order.get()
            });
        }
        loop {
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match dequeue(collected(), timeout) {
                Ok(received) => {
                    // After SIGCHLD the next wait can go straight to sleep: reaping takes every
                    // exit there is. After any other signal more may be waiting (real-time ones
                    // queue, standard ones come again), so the next pick is ferrinit's: the
                    // kernel's lowest-first could starve SIGCHLD behind a stream of SIGUSR1.
                    let sig = received.sig.0;
                    let order = self.order.get();
                    self.order.set(Order {
                        last: sig,
                        run: order.run_after(sig),
                        stay: true,
                        backlog: sig != libc::SIGCHLD,
                    });
                    return Some(received);
                }
                Err(Errno::EAGAIN) => return None,
                // EINTR: woken by a stop/continue. Wait again.
                Err(_) => continue,
            }
        }
    }

    /// Takes one already pending signal, choosing which one itself rather than leaving it to
    /// the kernel: see [`Order`].
    fn take_pending(&self) -> Option<Received> {
        let mut pending: KernelSet = 0;
        // SAFETY: `pending` is writable storage for a kernel sigset of the size passed.
        let result = unsafe {
            libc::syscall(
                libc::SYS_rt_sigpending,
                &mut pending as *mut KernelSet,
                KERNEL_SET_SIZE,
            )
        };
        if result != 0 {
            return None;
        }
        let order = self.order.get();
        let pick = order.choose(pending & collected())?;
        let started = Instant::now();
        let received = dequeue(bit(pick), Some(Duration::ZERO)).ok()?;
        self.order.set(Order {
            last: pick,
            run: order.run_after(pick),
            stay: started.elapsed() < CHEAP_DEQUEUE,
            backlog: true,
        });
        Some(received)
    }
}

/// How many of one signal [`Order`] takes in a row at most while others are pending: a sender
/// that never stops sending one signal must not starve the others (SIGCHLD above all).
const MAX_RUN: u32 = 4096;

/// How long taking one signal may take before [`Order`] stops staying on that signal.
const CHEAP_DEQUEUE: Duration = Duration::from_micros(20);

/// Which pending signal to take next.
///
/// The kernel hands out the lowest-numbered pending signal first, and finding a queued
/// real-time signal walks the queue, which is in arrival order. With thousands queued from a
/// sender that cycles through signals (RTMIN, RTMIN+1, ... RTMIN, ...), each lowest-first
/// dequeue walks further: quadratic, seconds of kernel time for every init alike. Taking
/// signals round-robin follows the arrival order of such a queue instead; staying on the same
/// signal while that stays cheap follows a sender that repeats one signal. Either way each
/// signal number keeps its own first-in, first-out order, and none starves: a run of one signal
/// ends after [`MAX_RUN`].
#[derive(Clone, Copy)]
struct Order {
    last: i32,
    /// How many of `last` were taken in a row.
    run: u32,
    stay: bool,
    /// Whether signals may be waiting: then pick among the pending ones ourselves, else go
    /// straight to a blocking wait (one system call per wake-up, not two).
    backlog: bool,
}

impl Order {
    /// The length of the run once `sig` is taken.
    fn run_after(self, sig: i32) -> u32 {
        if sig == self.last {
            self.run.saturating_add(1)
        } else {
            1
        }
    }

    /// From the pending signals (bit N-1 for signal N), the one to take next.
    fn choose(self, pending: u64) -> Option<i32> {
        if pending == 0 {
            return None;
        }
        // Reaping never waits for a storm to end: SIGCHLD gets every other turn while pending
        // (not every turn, so that a stream of exits cannot hold up forwarding either).
        let bit = |sig: i32| 1u64 << (sig - 1);
        let after_chld = self.last == libc::SIGCHLD;
        if pending & bit(libc::SIGCHLD) != 0 && !after_chld {
            return Some(libc::SIGCHLD);
        }
        let last_pending = (1..=64).contains(&self.last) && pending & bit(self.last) != 0;
        if self.stay && !after_chld && self.run < MAX_RUN && last_pending {
            return Some(self.last);
        }
        // Rotated so that the signal after `last` sits in bit 0: the first set bit is then the
        // next pending signal round-robin.
        let after = self.last.rem_euclid(64) as u32;
        let offset = pending.rotate_right(after).trailing_zeros();
        Some(((after + offset) % 64) as i32 + 1)
    }
}

/// Takes one signal of `set`, waiting up to `timeout` (forever if `None`). The system call
/// itself, as with the mask: see [`KernelSet`].
fn dequeue(set: KernelSet, timeout: Option<Duration>) -> Result<Received, Errno> {
    let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
    let timeout = timeout.map(|left| libc::timespec {
        tv_sec: left.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: left.subsec_nanos().into(),
    });
    let timeout = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `set` is a kernel sigset of the size passed, `info` writable storage for one
    // siginfo_t, and `timeout` null (no timeout) or a valid timespec.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const KernelSet,
            info.as_mut_ptr(),
            timeout,
            KERNEL_SET_SIZE,
        )
    };
    if result <= 0 {
        return Err(Errno::last());
    }
    // SAFETY: on success the kernel filled in `info`.
    let info = unsafe { info.assume_init() };
    // SAFETY: si_pid is meaningful for the signals we log it for; for the others the field holds
    // zero or garbage that is only ever printed.
    let sender = unsafe { info.si_pid() };
    Ok(Received {
        sig: Sig(result as i32),
        sender,
        code: info.si_code,
        queued: (info.si_code == libc::SI_QUEUE).then_some(Queued(info)),
    })
}

/// The signals the kernel raises at a process for what that process itself did: a fault, a
/// write to a pipe nobody reads (SIGPIPE) or past RLIMIT_FSIZE (SIGXFSZ), RLIMIT_CPU (SIGXCPU).
const ABOUT_THE_RECEIVER: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGPIPE,
    libc::SIGXFSZ,
    libc::SIGXCPU,
];

#[derive(Clone, Copy)]
pub struct Received {
    pub sig: Sig,
    pub sender: libc::pid_t,
    /// `si_code`: > 0 when the kernel raised the signal, <= 0 when a process sent it.
    pub code: i32,
    /// Set when the signal was sent with `sigqueue`: its value and sender go with it.
    pub queued: Option<Queued>,
}

impl Received {
    /// Whether ferrinit (`own_pid`) raised this signal at itself: then it is not the child's
    /// business. Forwarded, it would kill a healthy child, and each forward logged to such a
    /// stderr would raise the next one. The kernel reports SIGPIPE and SIGXFSZ as sent by us
    /// (SI_USER from our own pid: ferrinit itself never sends one that way; `raise` says
    /// SI_TKILL), SIGXCPU and a fault as its own (si_code > 0). The same signals sent by another
    /// process are forwarded like any other.
    fn raised_by(&self, own_pid: libc::pid_t) -> bool {
        let by_our_own_hand = self.code == libc::SI_USER && self.sender == own_pid;
        let by_the_kernel_about_us = self.code > 0 && ABOUT_THE_RECEIVER.contains(&self.sig.0);
        by_our_own_hand || by_the_kernel_about_us
    }

    /// As `kill(2)` would deliver `sig` from another process.
    #[cfg(test)]
    pub fn sent(sig: Sig) -> Received {
        Received {
            sig,
            sender: 1234,
            code: libc::SI_USER,
            queued: None,
        }
    }
}

/// The siginfo of a signal sent with `sigqueue`.
#[derive(Clone, Copy)]
pub struct Queued(libc::siginfo_t);

fn reset_sigchld_if_ignored() -> Result<Option<libc::sigaction>, SignalError> {
    let mut current = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only queries; `current` is writable storage.
    if unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), current.as_mut_ptr()) } != 0 {
        return Err(SignalError::Sigchld(Errno::last()));
    }
    // SAFETY: sigaction succeeded, so it filled `current`.
    let current = unsafe { current.assume_init() };
    // Only SIG_IGN can come through exec: it resets every other handler to SIG_DFL and clears
    // every flag, SA_NOCLDWAIT included.
    if current.sa_sigaction != libc::SIG_IGN {
        return Ok(None);
    }
    // SAFETY: an all-zero sigaction is SIG_DFL with no flags and an empty mask.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `default` is a valid sigaction.
    if unsafe { libc::sigaction(libc::SIGCHLD, &default, std::ptr::null_mut()) } != 0 {
        return Err(SignalError::Sigchld(Errno::last()));
    }
    Ok(Some(current))
}

/// Where a forwarded signal goes.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Process(Pid),
    Group(Pid),
}

impl Target {
    pub fn send(self, sig: Sig) -> Result<(), Errno> {
        self.send_queued(sig, None)
    }

    /// Sends `sig`; with `queued`, to a process as `sigqueue` delivered it to us: the same value
    /// and sender. A group gets it without: the kernel queues a siginfo to one process only.
    pub fn send_queued(self, sig: Sig, queued: Option<&Queued>) -> Result<(), Errno> {
        let result = match (self, queued) {
            (Target::Process(pid), Some(Queued(info))) => {
                let mut info = *info;
                info.si_signo = sig.0;
                // SAFETY: `info` is a valid siginfo_t with si_code SI_QUEUE, which the kernel
                // accepts for another process. `pid` is our child's, never 0 or -1.
                unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigqueueinfo,
                        pid.as_raw(),
                        sig.0,
                        &info as *const libc::siginfo_t,
                    )
                }
            }
            (Target::Process(pid), None) => {
                // SAFETY: kill has no memory-safety preconditions; `pid` is a child's, > 1.
                unsafe { libc::kill(pid.as_raw(), sig.0) }.into()
            }
            (Target::Group(pgid), _) => {
                // SAFETY: as above; `-pgid` names the child's group, never 0 or -1.
                unsafe { libc::kill(-pgid.as_raw(), sig.0) }.into()
            }
        };
        Errno::result(result).map(drop)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Process(pid) => write!(f, "child {pid}"),
            Target::Group(pgid) => write!(f, "process group {pgid}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i32, UnknownSignal> {
        s.parse::<Sig>().map(Sig::number)
    }

    #[test]
    fn parses_names_with_or_without_sig_in_any_case() {
        for s in ["TERM", "SIGTERM", "sigterm", "Term", "15"] {
            assert_eq!(parse(s), Ok(libc::SIGTERM), "{s}");
        }
        assert_eq!(parse("usr1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("SIGWINCH"), Ok(libc::SIGWINCH));
        assert_eq!(parse("iot"), Ok(libc::SIGABRT));
        assert_eq!(parse("CLD"), Ok(libc::SIGCHLD));
    }

    #[test]
    fn parses_real_time_signals_relative_to_glibc_sigrtmin() {
        assert_eq!(parse("RTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse("RTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse("sigrtmax-1"), Ok(libc::SIGRTMAX() - 1));
        assert_eq!(parse("SIGRTMAX"), Ok(64));
        assert_eq!(parse("64"), Ok(64));
    }

    #[test]
    fn rejects_what_is_not_a_signal() {
        for s in [
            "",
            "SIG",
            "NOPE",
            "0",
            "65",
            "-1",
            "+15",
            "15 ",
            " 15",
            "RTMIN+",
            "RTMIN-1",
            "RTMAX+1",
            "RTMIN+31",
            "RTMAX-31",
            "RTMIN+99999999999",
            "TERM2",
            "99999999999",
        ] {
            assert!(parse(s).is_err(), "{s:?} was accepted");
        }
    }

    #[test]
    fn names_signals_the_way_kill_l_does() {
        assert_eq!(Sig::TERM.to_string(), "SIGTERM");
        assert_eq!(Sig(libc::SIGRTMIN() + 3).to_string(), "SIGRTMIN+3");
        assert_eq!(Sig(libc::SIGRTMAX()).to_string(), "SIGRTMAX");
        assert_eq!(Sig(32).to_string(), "SIG32");
    }

    #[test]
    fn every_signal_number_round_trips_through_its_name() {
        for n in 1..=Sig::max() {
            let name = Sig(n).to_string();
            assert_eq!(parse(&name), Ok(n), "{name}");
        }
    }

    #[test]
    fn takes_pending_signals_round_robin_unless_staying_is_cheap() {
        let pending = |set: &[i32]| set.iter().fold(0u64, |mask, &sig| mask | 1 << (sig - 1));
        let rotate = |last| Order {
            last,
            run: 1,
            stay: false,
            backlog: true,
        };
        assert_eq!(rotate(34).choose(pending(&[34, 35, 40])), Some(35));
        assert_eq!(
            rotate(40).choose(pending(&[34, 35, 40])),
            Some(34),
            "wraps around"
        );
        assert_eq!(rotate(0).choose(pending(&[17])), Some(17));
        assert_eq!(
            rotate(17).choose(pending(&[17])),
            Some(17),
            "the only one pending"
        );
        assert_eq!(rotate(17).choose(pending(&[])), None);
        let stay = Order {
            last: 35,
            run: 1,
            stay: true,
            backlog: true,
        };
        assert_eq!(stay.choose(pending(&[34, 35, 40])), Some(35));
        assert_eq!(
            stay.choose(pending(&[34, 40])),
            Some(40),
            "moves on once it is gone"
        );
    }

    #[test]
    fn sigchld_gets_every_other_turn_while_pending() {
        let pending = |set: &[i32]| set.iter().fold(0u64, |mask, &sig| mask | 1 << (sig - 1));
        let chld = libc::SIGCHLD;
        let staying = |last| Order {
            last,
            run: 1,
            stay: true,
            backlog: true,
        };
        assert_eq!(staying(40).choose(pending(&[chld, 40])), Some(chld));
        assert_eq!(staying(chld).choose(pending(&[chld, 40])), Some(40));
        assert_eq!(
            staying(chld).choose(pending(&[chld])),
            Some(chld),
            "alone, again"
        );
    }

    #[test]
    fn a_run_of_one_signal_ends_so_that_no_other_starves() {
        let pending = (1u64 << (libc::SIGUSR1 - 1)) | (1 << 34);
        let staying = |run| Order {
            last: 35,
            run,
            stay: true,
            backlog: true,
        };
        assert_eq!(staying(MAX_RUN - 1).choose(pending), Some(35));
        assert_eq!(staying(MAX_RUN).choose(pending), Some(libc::SIGUSR1));
        assert_eq!(staying(7).run_after(35), 8);
        assert_eq!(staying(7).run_after(36), 1);
    }

    #[test]
    fn collects_every_signal_but_kill_and_stop() {
        let uncollected: Vec<i32> = (1..=64).filter(|&n| !Sig(n).is_collected()).collect();
        assert_eq!(uncollected, [libc::SIGKILL, libc::SIGSTOP]);
    }

    #[test]
    fn what_ferrinit_raised_at_itself_is_not_received_but_the_same_from_others_is() {
        let own = std::process::id() as i32;
        let got = |sig: i32, code: i32, sender: i32| Received {
            sig: Sig(sig),
            sender,
            code,
            queued: None,
        };
        // As measured: SIGPIPE and SIGXFSZ come as SI_USER from our own pid, SIGXCPU as
        // SI_KERNEL from pid 0, a fault with its own si_code > 0.
        for ours in [
            got(libc::SIGPIPE, libc::SI_USER, own),
            got(libc::SIGXFSZ, libc::SI_USER, own),
            got(libc::SIGXCPU, libc::SI_KERNEL, 0),
            got(libc::SIGSEGV, 1, 0),
            got(libc::SIGBUS, libc::SI_KERNEL, 0),
        ] {
            assert!(ours.raised_by(own), "{}", ours.sig);
        }
        for theirs in [
            got(libc::SIGPIPE, libc::SI_USER, own + 1),
            got(libc::SIGXFSZ, libc::SI_QUEUE, 0),
            got(libc::SIGSEGV, libc::SI_USER, 0),
            got(libc::SIGABRT, libc::SI_TKILL, own + 1),
            // -p: the parent-death signal ferrinit raises itself when the parent died early.
            got(libc::SIGTERM, libc::SI_TKILL, own),
            // The terminal's SIGWINCH and SIGHUP come from the kernel too.
            got(libc::SIGWINCH, libc::SI_KERNEL, 0),
            got(libc::SIGHUP, libc::SI_KERNEL, 0),
        ] {
            assert!(!theirs.raised_by(own), "{}", theirs.sig);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_any_text_never_panics(text in ".*") {
                let _ = text.parse::<Sig>();
            }

            #[test]
            fn parsing_signal_like_text_never_panics(
                prefix in "(SIG|sig|)",
                name in "(RTMIN|RTMAX|rtmin|TERM|[A-Z]{1,6}|[0-9]{1,12})",
                offset in "([+-][0-9]{0,12})?",
            ) {
                let _ = format!("{prefix}{name}{offset}").parse::<Sig>();
            }

            #[test]
            fn what_parses_round_trips_through_its_name(text in "(SIG)?(RTMIN|RTMAX)?[+-]?[0-9]{0,3}|[A-Za-z]{2,7}") {
                if let Ok(sig) = text.parse::<Sig>() {
                    prop_assert_eq!(sig.to_string().parse::<Sig>(), Ok(sig));
                    prop_assert!((1..=Sig::max()).contains(&sig.number()));
                }
            }
        }
    }
}
