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
/// watch descriptors too (`poll`). The signal itself is still taken with [`SignalState::next`],
/// and one already taken is not pending: ask [`SignalState::holds_one`] first.
/// Close-on-exec and non-blocking; `None` if the kernel gives none (no descriptor left).
pub fn pending_signal_fd() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = open_signalfd(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)?;
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
    order: Cell<Order>,
    /// The second signal of a read that returned two: taken, not yet handed out.
    held: Cell<Option<Received>>,
    /// The signalfd the waits without a deadline read: [`UNOPENED`], [`WANTED`], [`NO_FD`] or
    /// the descriptor.
    fd: Cell<i32>,
    inherited_mask: KernelSet,
    /// Set when ferrinit started with SIGCHLD ignored: the kernel would then
    /// reap children behind our back and lose their exit status, so ferrinit resets it for itself.
    inherited_sigchld: Option<libc::sigaction>,
}

/// The first wait goes without a signalfd: a child that exits at once never needs one.
const UNOPENED: i32 = -1;
/// Opened at the next wait without a deadline: after the child has its descriptors, and again
/// after the drain.
const WANTED: i32 = -3;
/// No signalfd to be had: the waits use `sigtimedwait` instead.
const NO_FD: i32 = -2;

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
            order: Cell::new(Order::default()),
            held: Cell::new(None),
            fd: Cell::new(UNOPENED),
            inherited_mask,
            inherited_sigchld,
        })
    }

    /// Whether a signal has been taken from the kernel and not yet handed out by [`next`]: a
    /// wait on [`pending_signal_fd`] would not see it.
    ///
    /// [`next`]: SignalState::next
    pub fn holds_one(&self) -> bool {
        let held = self.held.take();
        self.held.set(held);
        held.is_some()
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
            order: Cell::new(Order::default()),
            held: Cell::new(None),
            fd: Cell::new(UNOPENED),
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
            if !received.raised_by(self.own_pid()) {
                return Some(received);
            }
            // Not a word about it: a log line to such a stderr would raise the next one.
        }
    }

    /// One system call per signal while they come one at a time: a blocking read of up to two
    /// from the signalfd. A read that returns two means a backlog: then the signals pending are
    /// taken in [`Order`] until none is left, and the next wait blocks again.
    fn take_next(&self, deadline: Option<Instant>) -> Option<Received> {
        let mut order = self.order.get();
        if let Some(received) = self.held.take() {
            order.note(received.sig.0);
            self.order.set(order);
            return Some(received);
        }
        if order.backlog {
            let received = order.take_pending();
            self.order.set(order);
            if received.is_some() {
                return received;
            }
        }
        let fd = if deadline.is_none() { self.fd() } else { None };
        let read = fd.and_then(|fd| {
            let read = read_two(fd);
            if read.is_none() {
                // The descriptor failed us: wait without it from now on.
                self.release_descriptor();
                self.fd.set(NO_FD);
            }
            read
        });
        let (received, backlog) = match read {
            Some((first, second)) => {
                self.held.set(second);
                (first, second.is_some())
            }
            // With a deadline, or without a signalfd: one at a time, and then look again.
            None => (wait(collected(), deadline).ok()?, true),
        };
        order.note(received.sig.0);
        order.backlog = backlog;
        self.order.set(order);
        Some(received)
    }

    /// Closes the signalfd, for the drain, which wants every descriptor it can get (its waits
    /// have deadlines). A later wait without one opens it again.
    pub fn release_descriptor(&self) {
        let fd = self.fd.replace(WANTED);
        if fd >= 0 {
            // SAFETY: our own signalfd, forgotten above.
            unsafe { libc::close(fd) };
        }
    }

    fn fd(&self) -> Option<i32> {
        match self.fd.get() {
            UNOPENED => self.fd.set(WANTED),
            WANTED => self
                .fd
                .set(open_signalfd(libc::SFD_CLOEXEC).unwrap_or(NO_FD)),
            _ => {}
        }
        Some(self.fd.get()).filter(|&fd| fd >= 0)
    }
}

/// A signalfd for every collected signal; raw, so that signals 32 and 33 are in it too.
fn open_signalfd(flags: libc::c_int) -> Option<i32> {
    let set = collected();
    // SAFETY: `set` is a readable kernel sigset of the size passed; -1 makes a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &set as *const KernelSet,
            KERNEL_SET_SIZE,
            flags,
        )
    };
    (fd >= 0).then_some(fd as i32)
}

/// How many signals may be taken ahead of one that is pending: a sender that never stops
/// sending one signal must not starve the others (SIGCHLD above all).
const FAIR_WAIT: u32 = 64;

/// How many of one queued signal may be taken in a row when a round holds `signals`.
///
/// Half of [`FAIR_WAIT`] a round: a signal that arrives just after its turn waits for the rest of
/// this round and its place in the next. The rotation goes on across rounds, and a run counts
/// across them too.
fn quantum(signals: u32) -> u32 {
    (FAIR_WAIT / 2 / signals.max(1)).max(1)
}

/// Which pending signal to take next, once signals are found waiting.
///
/// The kernel hands out the lowest-numbered pending signal first, and finding a queued
/// real-time signal walks the queue, which is in arrival order. With thousands queued from a
/// sender that cycles through signals (RTMIN, RTMIN+1, ... RTMIN, ...), each lowest-first
/// dequeue walks further: quadratic, seconds of kernel time for every init alike. So ferrinit
/// takes them in rounds: the wait's read (lowest first, two at most), one look at what is
/// pending (`rt_sigpending`), then each of those round-robin, SIGCHLD first, a queued one up to
/// [`quantum`] times in a row. A sender that repeats one signal is followed cheaply, no pending
/// signal waits behind more than [`FAIR_WAIT`] others, and each signal number keeps its own
/// first-in, first-out order. Every system call takes a signal but the look, and the read's
/// second signal pays for that: a storm costs two system calls per signal forwarded.
#[derive(Clone, Copy, Default)]
struct Order {
    /// Pending at the round's start and not yet done with.
    round: KernelSet,
    quantum: u32,
    last: i32,
    /// How many of `last` were taken in a row.
    run: u32,
    /// Whether signals may be waiting: then take them here before waiting.
    backlog: bool,
}

impl Order {
    fn note(&mut self, sig: i32) {
        self.run = if sig == self.last {
            self.run.saturating_add(1)
        } else {
            1
        };
        self.last = sig;
    }

    /// From the round, the signal to take next.
    fn choose(&self) -> Option<i32> {
        let round = self.round;
        if round == 0 {
            return None;
        }
        if round & bit(libc::SIGCHLD) != 0 {
            return Some(libc::SIGCHLD);
        }
        if round & bit_of(self.last) != 0 && self.run < self.quantum {
            return Some(self.last);
        }
        // Rotated so that the signal after `last` sits in bit 0: the first set bit is then the
        // next one round-robin.
        let after = self.last.rem_euclid(64) as u32;
        let offset = round.rotate_right(after).trailing_zeros();
        Some(((after + offset) % 64) as i32 + 1)
    }

    /// Takes one pending signal, starting a round if none is under way; `None` (and no more
    /// backlog) once the round is done. The next round begins with the wait's read, as the
    /// backlog did: it takes what is pending, or waits, without a look that would find nothing
    /// or a take that would fail.
    fn take_pending(&mut self) -> Option<Received> {
        if self.round == 0 {
            self.round = pending() & collected();
            self.quantum = quantum(self.round.count_ones());
        }
        loop {
            let Some(sig) = self.choose() else {
                self.backlog = false;
                return None;
            };
            let next = if sig == self.last {
                // Staying on a queued signal, which may have run out: offer the next one too,
                // so that the call takes one either way (the kernel gives the lower number).
                // With no next one, the wait's read takes it, or waits if it ran out.
                let next = Order {
                    round: self.round & !bit(sig),
                    ..*self
                }
                .choose();
                if next.is_none() {
                    self.round = 0;
                    self.backlog = false;
                    return None;
                }
                next
            } else {
                // Moving on: done with the last one for this round.
                self.round &= !bit_of(self.last);
                None
            };
            let offered = bit(sig) | next.map_or(0, bit);
            let Some(received) = take(offered) else {
                // Not pending any more: a queued one ran out.
                self.round &= !offered;
                continue;
            };
            let taken = received.sig.0;
            if taken != sig {
                self.round &= !bit(sig);
            }
            // A standard signal is pending once at most.
            if !Sig(taken).is_real_time() {
                self.round &= !bit(taken);
            }
            // The round is done: the next one begins with the wait's read.
            self.backlog = self.round != 0;
            self.note(taken);
            return Some(received);
        }
    }
}

/// As [`bit`], and the empty set for what is no signal (0 before the first).
fn bit_of(sig: i32) -> KernelSet {
    if (1..=64).contains(&sig) { bit(sig) } else { 0 }
}

/// The collected signals pending now (empty if the kernel will not say).
fn pending() -> KernelSet {
    let mut pending: KernelSet = 0;
    // SAFETY: `pending` is writable storage for a kernel sigset of the size passed.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigpending,
            &mut pending as *mut KernelSet,
            KERNEL_SET_SIZE,
        )
    };
    if result == 0 { pending } else { 0 }
}

/// Takes one pending signal of `set` without waiting, if there is one.
fn take(set: KernelSet) -> Option<Received> {
    wait_once(set, Some(Duration::ZERO)).ok()
}

/// Blocks until at least one signal can be read from the signalfd `fd`, then takes a second
/// one too if it is already pending. The system call returns as many as are ready, up to two.
/// `None` if the read fails for another reason than a stop.
fn read_two(fd: i32) -> Option<(Received, Option<Received>)> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut infos: [libc::signalfd_siginfo; 2] = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `infos` is writable for its whole size; `fd` is our signalfd.
        let read = unsafe { libc::read(fd, infos.as_mut_ptr().cast(), size_of_val(&infos)) };
        let count = usize::try_from(read).unwrap_or(0) / size_of::<libc::signalfd_siginfo>();
        if count > 0 {
            let second = (count > 1).then(|| Received::from_signalfd(&infos[1]));
            return Some((Received::from_signalfd(&infos[0]), second));
        }
        // EINTR (woken by a stop/continue) reads again; anything else gives up on the fd.
        if read >= 0 || Errno::last() != Errno::EINTR {
            return None;
        }
    }
}

/// Takes one signal of `set`, waiting until `deadline` (forever if `None`); `Err(EAGAIN)` once
/// it has passed. The system call itself, as with the mask: see [`KernelSet`].
fn wait(set: KernelSet, deadline: Option<Instant>) -> Result<Received, Errno> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match wait_once(set, left) {
            // EINTR: woken by a stop/continue. Wait again.
            Err(Errno::EINTR) => continue,
            result => return result,
        }
    }
}

fn wait_once(set: KernelSet, timeout: Option<Duration>) -> Result<Received, Errno> {
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
    // SAFETY: si_pid, si_uid and si_value sit where the kernel put a sender's; for signals
    // without one they hold zero or leftovers that are only printed, or ignored.
    let (sender, uid, value) = unsafe { (info.si_pid(), info.si_uid(), info.si_value()) };
    Ok(Received {
        sig: Sig(result as i32),
        sender,
        code: info.si_code,
        queued: (info.si_code == libc::SI_QUEUE).then_some(Queued {
            pid: sender,
            uid,
            value: value.sival_ptr as u64,
        }),
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

    fn set(sigs: &[i32]) -> KernelSet {
        sigs.iter().fold(0, |mask, &sig| mask | bit(sig))
    }

    fn round(sigs: &[i32], last: i32, run: u32) -> Order {
        Order {
            round: set(sigs),
            quantum: quantum(sigs.len() as u32),
            last,
            run,
            backlog: true,
        }
    }

    #[test]
    fn takes_the_round_round_robin() {
        assert_eq!(round(&[34, 35, 40], 35, 99).choose(), Some(40));
        assert_eq!(
            round(&[34, 35, 40], 40, 99).choose(),
            Some(34),
            "wraps around"
        );
        assert_eq!(round(&[17], 0, 0).choose(), Some(17), "the first of all");
        assert_eq!(round(&[], 17, 1).choose(), None);
    }

    #[test]
    fn stays_on_a_queued_signal_for_its_share_of_the_round_only() {
        // Two pending: each may be taken 16 times in a row, 32 a round.
        assert_eq!(round(&[10, 35], 35, 15).choose(), Some(35));
        assert_eq!(round(&[10, 35], 35, 16).choose(), Some(10));
        assert_eq!(quantum(41), 1);
        let mut order = round(&[10, 35], 35, 15);
        order.note(35);
        assert_eq!((order.last, order.run), (35, 16));
        order.note(36);
        assert_eq!((order.last, order.run), (36, 1));
    }

    #[test]
    fn sigchld_goes_first_in_every_round_it_is_in() {
        let chld = libc::SIGCHLD;
        assert_eq!(round(&[chld, 40], 40, 1).choose(), Some(chld));
        assert_eq!(round(&[chld, 34, 40], 34, 1).choose(), Some(chld));
    }

    /// The bound itself, against the kernel: a real-time signal behind a thousand of another
    /// is taken after at most FAIR_WAIT of them, in each one's arrival order.
    #[test]
    fn no_pending_signal_waits_behind_more_than_fair_wait_others() {
        let (rtmin, late) = (libc::SIGRTMIN(), libc::SIGRTMIN() + 1);
        std::thread::spawn(move || {
            let blocked = bit(rtmin) | bit(late);
            set_mask(libc::SIG_BLOCK, &blocked, None).unwrap();
            // SAFETY: signals to this thread alone, blocked in it; values count up.
            let queue = |sig: i32, value: usize| unsafe {
                let tid = libc::gettid();
                let mut info: QueueInfo = std::mem::zeroed();
                (info.signo, info.code, info.pid, info.value) =
                    (sig, libc::SI_QUEUE, libc::getpid(), value as u64);
                let sent = libc::syscall(
                    libc::SYS_rt_tgsigqueueinfo,
                    libc::getpid(),
                    tid,
                    sig,
                    &info as *const QueueInfo,
                );
                assert_eq!(sent, 0, "{}", Errno::last());
            };
            for n in 0..1000 {
                queue(rtmin, n);
            }
            queue(late, 1000);
            let mut order = Order::default();
            order.note(rtmin);
            let mut taken = Vec::new();
            // Rounds as take_next has them, with the wait's read (here: one, lowest first)
            // between them.
            let read = |order: &mut Order| {
                let received = wait_once(blocked, Some(Duration::ZERO)).ok()?;
                order.note(received.sig.0);
                order.backlog = true;
                Some(received)
            };
            while let Some(received) = order.take_pending().or_else(|| read(&mut order)) {
                let value = received.queued.map(|q| q.value);
                taken.push((received.sig.0, value));
                if taken.len() > 1001 {
                    break;
                }
            }
            let position = taken.iter().position(|&(sig, _)| sig == late).unwrap();
            assert!(position <= FAIR_WAIT as usize, "taken at {position}");
            let firsts: Vec<u64> = taken
                .iter()
                .filter_map(|&(s, v)| v.filter(|_| s == rtmin))
                .collect();
            assert_eq!(firsts, (0..1000).collect::<Vec<u64>>(), "in arrival order");
        })
        .join()
        .unwrap();
    }

    /// The round's last signal taken, the next round begins with the wait's read, which takes
    /// what is pending or waits: no look first, which might find nothing.
    #[test]
    fn a_round_that_took_its_last_signal_hands_over_to_the_wait() {
        std::thread::spawn(|| {
            let blocked = bit(libc::SIGUSR1) | bit(libc::SIGUSR2);
            set_mask(libc::SIG_BLOCK, &blocked, None).unwrap();
            // SAFETY: signals to this thread alone, blocked in it.
            unsafe {
                for sig in [libc::SIGUSR1, libc::SIGUSR2] {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), sig);
                }
            }
            let mut order = Order {
                backlog: true,
                ..Order::default()
            };
            assert!(order.take_pending().is_some());
            assert!(order.backlog, "one of the round is left");
            assert!(order.take_pending().is_some());
            assert!(!order.backlog, "the round is done");
            assert_eq!(pending() & blocked, 0);
        })
        .join()
        .unwrap();
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
