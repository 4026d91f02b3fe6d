//! Signals: their names, the mask that makes them deliverable to PID 1, and the wait for them.
//!
//! ferrinit installs no signal handler. It blocks every signal but SIGKILL and SIGSTOP before the
//! child exists and takes them synchronously, from a signalfd or with `sigtimedwait` (see
//! [`picker`]). A blocked signal is never dropped by the kernel, not even for a namespace's
//! PID 1, and an idle wait makes no wake-ups.

mod picker;

use std::cell::Cell;
use std::fmt;
use std::mem::MaybeUninit;
use std::str::FromStr;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use picker::Picker;

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
/// watch descriptors too (`poll`). The signal itself is still taken with [`SignalState::next`],
/// and one already taken is not pending: ask [`SignalState::holds_one`] first.
/// Close-on-exec and non-blocking; `None` if the kernel gives none (no descriptor left).
pub fn pending_signal_fd() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = picker::open_signalfd(collected(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
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
    /// Read at first use, 0 until then: a process forked before it (`--contain`'s inner
    /// ferrinit) reads its own.
    own_pid: Cell<libc::pid_t>,
    picker: Cell<Picker>,
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
            own_pid: Cell::new(0),
            picker: Cell::default(),
            inherited_mask,
            inherited_sigchld,
        })
    }

    /// Whether a signal has been taken from the kernel and not yet handed out by [`next`]: a
    /// wait on [`pending_signal_fd`] would not see it.
    ///
    /// [`next`]: SignalState::next
    pub fn holds_one(&self) -> bool {
        self.with_picker(|picker| picker.holds_one())
    }

    /// ferrinit's own pid, read once.
    pub fn own_pid(&self) -> libc::pid_t {
        if self.own_pid.get() == 0 {
            self.own_pid.set(std::process::id() as libc::pid_t);
        }
        self.own_pid.get()
    }

    /// The same state in a fork that goes on as ferrinit (`--contain`'s inner one): a signal is
    /// its own when it raised it itself, so it reads its own pid (one sent by its parent, the
    /// outer ferrinit relaying, is the child's business like any other). It holds no signal the
    /// parent took, and opens a signalfd of its own when it needs one.
    pub fn in_fork(&self) -> SignalState {
        SignalState {
            own_pid: Cell::new(0),
            picker: Cell::default(),
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
    /// Returns `None` once the deadline has passed. How signals are taken: see [`picker`].
    pub fn next(&self, deadline: Option<Instant>) -> Option<Received> {
        let own_pid = self.own_pid();
        self.with_picker(|picker| {
            loop {
                let received = picker.next(deadline)?;
                if !received.raised_by(own_pid) {
                    return Some(received);
                }
                // Not a word about it: a log line to such a stderr would raise the next one.
            }
        })
    }

    /// Closes the signalfds, once the loop that waited without deadlines is over: what follows
    /// (the OOM counter, the drain, a sweep) wants every descriptor it can get, and its waits
    /// have deadlines. A later wait without one opens the wait's again.
    pub fn release_descriptor(&self) {
        self.with_picker(Picker::release_descriptors)
    }

    fn with_picker<T>(&self, f: impl FnOnce(&mut Picker) -> T) -> T {
        let mut picker = self.picker.take();
        let result = f(&mut picker);
        self.picker.set(picker);
        result
    }
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

    fn from_signalfd(info: &libc::signalfd_siginfo) -> Received {
        Received {
            sig: Sig(info.ssi_signo as i32),
            sender: info.ssi_pid as libc::pid_t,
            code: info.ssi_code,
            queued: (info.ssi_code == libc::SI_QUEUE).then_some(Queued {
                pid: info.ssi_pid as libc::pid_t,
                uid: info.ssi_uid,
                value: info.ssi_ptr,
            }),
        }
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

/// What a signal sent with `sigqueue` carries besides its sender's pid.
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pid: libc::pid_t,
    uid: libc::uid_t,
    /// The `sigval` union, pointer or integer, as the kernel holds it.
    value: u64,
}

/// The start of a `siginfo_t` as the kernel lays it out for SI_QUEUE on 64-bit Linux, padded
/// to the full 128 bytes: libc offers no way to fill in a siginfo's union.
#[repr(C)]
struct QueueInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: u64,
    _rest: [u64; 12],
}

const _: () = assert!(size_of::<QueueInfo>() == size_of::<libc::siginfo_t>());

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
            (Target::Process(pid), Some(queued)) => {
                let info = QueueInfo {
                    signo: sig.0,
                    errno: 0,
                    code: libc::SI_QUEUE,
                    _pad: 0,
                    pid: queued.pid,
                    uid: queued.uid,
                    value: queued.value,
                    _rest: [0; 12],
                };
                // SAFETY: `info` is a siginfo_t's 128 bytes with si_code SI_QUEUE, which the
                // kernel accepts for another process. `pid` is our child's, never 0 or -1.
                unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigqueueinfo,
                        pid.as_raw(),
                        sig.0,
                        &info as *const QueueInfo,
                    )
                }
            }
            (Target::Process(pid), None) => {
                // SAFETY: kill has no memory-safety preconditions; `pid` is a child's, > 1.
                unsafe { libc::kill(pid.as_raw(), sig.0) }.into()
            }
            // 0 would name ferrinit's own group and -1 everyone it may signal; 1 (a PID-1
            // session leader's group) may hold processes outside ferrinit's care.
            (Target::Group(pgid), _) if pgid.as_raw() <= 1 => return Err(Errno::EINVAL),
            (Target::Group(pgid), _) => {
                // SAFETY: as above; `pgid` > 1, so `-pgid` names that one group, never 0 or -1.
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

    #[test]
    fn a_group_target_never_names_every_process_or_our_own_group() {
        // Signal 0 only checks: unrefused, kill(-1, 0) and kill(0, 0) would succeed.
        for pgid in [1, 0, -1] {
            let refused = Target::Group(Pid::from_raw(pgid)).send(Sig(0));
            assert_eq!(refused, Err(Errno::EINVAL), "group {pgid}");
        }
    }

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
