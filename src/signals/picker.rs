//! Taking collected signals from the kernel: the wait, and fair rounds once signals are found
//! waiting.
//!
//! One at a time, a signal costs one system call: a blocking read of up to two from a signalfd.
//! A read that returns two means a backlog. Then one look (`rt_sigpending`) snapshots what is
//! pending, and a round takes each of those signals in turn ([`Order`]), a queued one many at a
//! time with one read of a second signalfd narrowed to it. The round's signals are handed out
//! before the next wait, whose read of two pays for the next look.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{KERNEL_SET_SIZE, KernelSet, Queued, Received, Sig, bit, collected};

/// How many signals may be taken ahead of one that is pending: a sender that never stops
/// sending one signal must not starve the others (SIGCHLD above all).
const FAIR_WAIT: u32 = 64;

/// The most signals a round gives one turn, and so the most one read takes.
///
/// Half of [`FAIR_WAIT`]: a signal that arrives just after its turn waits for the rest of this
/// round and its place in the next.
const ROUND: u32 = FAIR_WAIT / 2;

/// Signals taken from the kernel and not yet handed out, and how the next ones are taken.
#[derive(Default)]
pub(super) struct Picker {
    /// In the order they are to be handed out.
    held: VecDeque<Received>,
    order: Order,
    /// Whether signals may be waiting: then a round takes them before the next wait.
    backlog: bool,
    /// The signalfd the waits without a deadline read: every collected signal.
    wait_fd: Descriptor,
    /// A second signalfd, for many of one queued signal in one read: the signal its mask holds,
    /// and the descriptor. Only while the wait's is open.
    batch: Option<(i32, i32)>,
    /// The batch signalfd could not be had (no room for it): not tried again until the
    /// descriptors are released, so that a run does not pay for a failing open every round.
    batch_refused: bool,
}

/// The wait's signalfd.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Descriptor {
    /// The first wait goes without: a child that exits at once never needs one.
    #[default]
    Unopened,
    /// Opened at the next wait without a deadline: after the child has its descriptors, and
    /// again after the drain.
    Wanted,
    /// None to be had: the waits use `sigtimedwait` instead.
    Unavailable,
    Open(i32),
}

impl Picker {
    /// The next signal taken, waiting until `deadline` (forever if `None`) when none is held or
    /// pending; `None` once the deadline has passed.
    pub(super) fn next(&mut self, deadline: Option<Instant>) -> Option<Received> {
        if self.held.is_empty() && std::mem::take(&mut self.backlog) {
            self.take_round();
        }
        match self.held.pop_front() {
            Some(received) => Some(received),
            None => self.wait(deadline),
        }
    }

    pub(super) fn holds_one(&self) -> bool {
        !self.held.is_empty()
    }

    /// Closes the signalfds, once the loop that waited without deadlines is over: what follows
    /// (the drain, a sweep) wants every descriptor it can get, and its waits have deadlines. A
    /// later wait without one opens the wait's again.
    pub(super) fn release_descriptors(&mut self) {
        if let Descriptor::Open(fd) = std::mem::replace(&mut self.wait_fd, Descriptor::Wanted) {
            close(fd);
        }
        if let Some((fd, _)) = self.batch.take() {
            close(fd);
        }
        self.batch_refused = false;
    }

    /// Takes at least one signal, returning the first and holding the other one a read may
    /// bring; `None` once `deadline` has passed. Called with nothing held.
    fn wait(&mut self, deadline: Option<Instant>) -> Option<Received> {
        // Only a wait without a deadline reads the signalfd: the drain's waits, which have
        // deadlines, must not open it (the drain wants every descriptor it can get).
        let fd = if deadline.is_none() {
            self.wait_fd()
        } else {
            None
        };
        if let Some(fd) = fd {
            match read_into(fd, 2, &mut self.held) {
                Ok(read @ 1..) => {
                    self.backlog = read > 1;
                    for received in &self.held {
                        self.order.note(received.sig.0, 1);
                    }
                    return self.held.pop_front();
                }
                // The descriptor failed us: wait without it from now on.
                _ => {
                    self.release_descriptors();
                    self.wait_fd = Descriptor::Unavailable;
                }
            }
        }
        // With a deadline, or without a signalfd: one at a time, and then look again.
        // Handed out at once, not held: a child that exits at once costs no allocation.
        let received = wait(collected(), deadline).ok()?;
        self.order.note(received.sig.0, 1);
        self.backlog = true;
        Some(received)
    }

    fn wait_fd(&mut self) -> Option<i32> {
        match self.wait_fd {
            Descriptor::Unopened => self.wait_fd = Descriptor::Wanted,
            Descriptor::Wanted => {
                self.wait_fd = open_leaving_room(collected(), libc::SFD_CLOEXEC)
                    .map_or(Descriptor::Unavailable, Descriptor::Open)
            }
            _ => {}
        }
        match self.wait_fd {
            Descriptor::Open(fd) => Some(fd),
            _ => None,
        }
    }

    /// Takes every signal pending now into `held`, each its turn in [`Order`].
    fn take_round(&mut self) {
        let mut round = pending() & collected();
        let quantum = quantum(round);
        while let Some(sig) = self.order.choose(round, quantum) {
            round &= !bit(sig);
            let share = self.order.share(sig, quantum);
            let taken = self.take_up_to(sig, share);
            self.order.note(sig, taken);
        }
    }

    /// Takes up to `share` of the pending signal `sig`; how many it took (0 only if a SIGCONT or
    /// a stop signal discarded it since the look). Many come in one read of the batch signalfd
    /// when `sig` is in a run (the last signal taken) or that descriptor holds it already: a read
    /// that narrows the descriptor first costs two system calls, which only a run pays for.
    fn take_up_to(&mut self, sig: i32, share: u32) -> u32 {
        let in_a_run = sig == self.order.last || self.batch.is_some_and(|(_, held)| held == sig);
        if share > 1
            && in_a_run
            && let Some(taken) = self.read_batch(sig, share)
        {
            return taken;
        }
        match wait_once(bit(sig), Some(Duration::ZERO)) {
            Ok(received) => {
                self.held.push_back(received);
                1
            }
            Err(_) => 0,
        }
    }

    /// Up to `share` of `sig` in one read of the batch signalfd, narrowed to `sig` first if it
    /// holds another; `None` without a batch signalfd.
    fn read_batch(&mut self, sig: i32, share: u32) -> Option<u32> {
        let Descriptor::Open(_) = self.wait_fd else {
            return None;
        };
        if self.batch_refused {
            return None;
        }
        let fd = match self.batch.take() {
            Some((fd, narrowed)) if narrowed == sig => Some(fd),
            // signalfd4 on a signalfd sets its mask anew.
            Some((fd, _)) => open_or_narrow(fd, sig),
            None => open_or_narrow(-1, sig),
        };
        let Some(fd) = fd else {
            self.batch_refused = true;
            return None;
        };
        self.batch = Some((fd, sig));
        match read_into(fd, share as usize, &mut self.held) {
            Ok(read) => Some(read as u32),
            Err(Errno::EAGAIN) => Some(0),
            Err(_) => {
                self.batch = None;
                close(fd);
                None
            }
        }
    }
}

/// A round's turn for each queued signal: a standard signal is pending once at most and takes one
/// turn; the queued ones share the rest of [`ROUND`].
fn quantum(round: KernelSet) -> u32 {
    let queued = (round >> 31).count_ones();
    let standard = round.count_ones() - queued;
    (ROUND.saturating_sub(standard) / queued.max(1)).max(1)
}

/// Which pending signal a round takes next, and how many of it.
///
/// The kernel hands out the lowest-numbered pending signal first, and finding a queued signal
/// walks the queue, which is in arrival order. With thousands queued from a sender that cycles
/// through signals (RTMIN, RTMIN+1, ... RTMIN, ...), each lowest-first dequeue walks further:
/// quadratic, seconds of kernel time for every init alike. So a round goes round-robin through
/// what was pending at its look, SIGCHLD first, each queued signal up to [`quantum`] of it in a
/// row. A sender that repeats one signal is followed cheaply, no pending signal waits behind more
/// than [`FAIR_WAIT`] others, and each signal number keeps its own first-in, first-out order. A
/// run counts across rounds (and the wait's reads), so that the signal taken last goes on with
/// the rest of its turn before the others, not with a new one.
#[derive(Clone, Copy, Default)]
struct Order {
    last: i32,
    /// How many of `last` were taken in a row.
    run: u32,
}

impl Order {
    fn note(&mut self, sig: i32, taken: u32) {
        if taken == 0 {
            return;
        }
        self.run = if sig == self.last {
            self.run.saturating_add(taken)
        } else {
            taken
        };
        self.last = sig;
    }

    /// From `round`, the signal to take next.
    fn choose(&self, round: KernelSet, quantum: u32) -> Option<i32> {
        if round == 0 {
            return None;
        }
        if round & bit(libc::SIGCHLD) != 0 {
            return Some(libc::SIGCHLD);
        }
        if round & bit_of(self.last) != 0 && self.run < quantum {
            return Some(self.last);
        }
        // Rotated so that the signal after `last` sits in bit 0: the first set bit is then the
        // next one round-robin (and `last` itself if it is all there is).
        let after = self.last.rem_euclid(64) as u32;
        let offset = round.rotate_right(after).trailing_zeros();
        Some(((after + offset) % 64) as i32 + 1)
    }

    /// How many of `sig` its turn takes: the rest of the run if it goes on with one.
    fn share(&mut self, sig: i32, quantum: u32) -> u32 {
        if !Sig(sig).is_real_time() {
            return 1;
        }
        if sig == self.last {
            if self.run < quantum {
                return quantum - self.run;
            }
            // Its turn comes round again.
            self.run = 0;
        }
        quantum
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

/// A signalfd for `set` (signalfd4 with -1); raw, so that signals 32 and 33 may be in it.
pub(super) fn open_signalfd(set: KernelSet, flags: libc::c_int) -> Option<i32> {
    signalfd4(-1, set, flags)
}

/// The batch signalfd: `fd` narrowed to `sig`, or a new one for it if `fd` is -1.
fn open_or_narrow(fd: i32, sig: i32) -> Option<i32> {
    let flags = libc::SFD_CLOEXEC | libc::SFD_NONBLOCK;
    if fd < 0 {
        return open_leaving_room(bit(sig), flags);
    }
    let narrowed = signalfd4(fd, bit(sig), flags);
    if narrowed.is_none() {
        close(fd);
    }
    narrowed
}

/// A signalfd for `set`, unless it would take the last descriptor RLIMIT_NOFILE leaves: while
/// ferrinit waits, /dev/tty (job control), stderr (the log) and the OOM counter are each opened
/// for a moment, and without that slot job control stops working. The signalfds only save
/// system calls; the waits go on without them. Checked as each is opened, with a copy closed
/// at once.
fn open_leaving_room(set: KernelSet, flags: libc::c_int) -> Option<i32> {
    let fd = signalfd4(-1, set, flags)?;
    // SAFETY: F_DUPFD_CLOEXEC on our own signalfd; the copy, if any, is closed below.
    let spare = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if spare < 0 {
        close(fd);
        return None;
    }
    close(spare);
    Some(fd)
}

fn signalfd4(fd: i32, set: KernelSet, flags: libc::c_int) -> Option<i32> {
    // SAFETY: `set` is a readable kernel sigset of the size passed; `fd` is -1 (a new
    // descriptor) or one of our signalfds, whose mask this sets.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            fd,
            &set as *const KernelSet,
            KERNEL_SET_SIZE,
            flags,
        )
    };
    (fd >= 0).then_some(fd as i32)
}

fn close(fd: i32) {
    // SAFETY: one of our own signalfds (or a copy), which its owner forgets.
    unsafe { libc::close(fd) };
}

/// Reads up to `most` signals (no more than a round's turn) from the signalfd `fd` into `held`;
/// how many. The system call returns as many as are pending, up to `most`; a blocking `fd`
/// waits for the first.
fn read_into(fd: i32, most: usize, held: &mut VecDeque<Received>) -> Result<usize, Errno> {
    const SIZE: usize = size_of::<libc::signalfd_siginfo>();
    let mut infos = MaybeUninit::<[libc::signalfd_siginfo; ROUND as usize]>::uninit();
    let most = most.min(ROUND as usize);
    loop {
        // SAFETY: `infos` is writable for `most` entries; `fd` is our signalfd.
        let read = unsafe { libc::read(fd, infos.as_mut_ptr().cast(), most * SIZE) };
        let Ok(read) = usize::try_from(read) else {
            // EINTR: woken by a stop/continue. Read again.
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        };
        let count = read / SIZE;
        let first: *const libc::signalfd_siginfo = infos.as_ptr().cast();
        // SAFETY: the kernel filled in the first `count` entries, whole ones only.
        let infos = unsafe { std::slice::from_raw_parts(first, count) };
        held.extend(infos.iter().map(Received::from_signalfd));
        return Ok(count);
    }
}

/// Takes one signal of `set`, waiting until `deadline` (forever if `None`); `Err(EAGAIN)` once
/// it has passed. The system call itself, as with the mask: see [`KernelSet`].
pub(super) fn wait(set: KernelSet, deadline: Option<Instant>) -> Result<Received, Errno> {
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

#[cfg(test)]
mod tests {
    use super::super::{QueueInfo, set_mask};
    use super::*;

    fn set(sigs: &[i32]) -> KernelSet {
        sigs.iter().fold(0, |mask, &sig| mask | bit(sig))
    }

    fn after(last: i32, run: u32) -> Order {
        Order { last, run }
    }

    #[test]
    fn takes_the_round_round_robin() {
        let round = set(&[34, 35, 40]);
        assert_eq!(after(35, 99).choose(round, 1), Some(40));
        assert_eq!(after(40, 99).choose(round, 1), Some(34), "wraps around");
        assert_eq!(
            after(0, 0).choose(set(&[17]), 1),
            Some(17),
            "the first of all"
        );
        assert_eq!(after(17, 1).choose(0, 1), None);
    }

    #[test]
    fn a_queued_signal_takes_its_share_of_the_round_and_goes_on_with_it_in_the_next() {
        // A standard signal takes one turn of the 32 a round has; the queued ones share the rest.
        assert_eq!(quantum(set(&[10, 35])), 31);
        assert_eq!(quantum(set(&[35, 36])), 16);
        assert_eq!(quantum(set(&[35])), 32);
        let many: Vec<i32> = (1..=10).chain(34..=64).collect();
        assert_eq!(quantum(set(&many)), 1);
        let mut order = after(35, 10);
        assert_eq!(order.choose(set(&[10, 35]), 16), Some(35), "goes on");
        assert_eq!(order.share(35, 16), 6);
        order.note(35, 6);
        assert_eq!((order.last, order.run), (35, 16));
        assert_eq!(order.choose(set(&[10, 35]), 16), Some(10), "moves on");
        assert_eq!(order.share(10, 16), 1);
        // Alone in a round, its turn comes round again.
        assert_eq!(order.choose(set(&[35]), 32), Some(35));
        assert_eq!(order.share(35, 32), 16, "the rest of its run");
        order.note(35, 16);
        assert_eq!(order.share(35, 32), 32);
        order.note(35, 32);
        assert_eq!((order.last, order.run), (35, 32));
        order.note(36, 1);
        assert_eq!((order.last, order.run), (36, 1));
    }

    #[test]
    fn sigchld_goes_first_in_every_round_it_is_in() {
        let chld = libc::SIGCHLD;
        assert_eq!(after(40, 1).choose(set(&[chld, 40]), 16), Some(chld));
        assert_eq!(after(34, 1).choose(set(&[chld, 34, 40]), 16), Some(chld));
    }

    /// To the calling thread alone (blocked in it), with `value`.
    fn queue(sig: i32, value: u64) {
        // SAFETY: a zeroed QueueInfo is valid; then filled in as sigqueue would.
        let mut info: QueueInfo = unsafe { std::mem::zeroed() };
        // SAFETY: getpid and gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        (info.signo, info.code, info.pid, info.value) = (sig, libc::SI_QUEUE, pid, value);
        // SAFETY: `info` is a whole siginfo_t; the signal goes to this thread.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                sig,
                &info as *const QueueInfo,
            )
        };
        assert_eq!(sent, 0, "{}", Errno::last());
    }

    /// A picker that reads a signalfd from its first wait on (where ferrinit's first waits
    /// without one).
    fn with_signalfd() -> Picker {
        Picker {
            wait_fd: Descriptor::Wanted,
            ..Picker::default()
        }
    }

    /// The bound itself, against the kernel: a real-time signal and a standard one behind a
    /// thousand of another are taken after at most FAIR_WAIT of them, in each one's arrival order.
    #[test]
    fn no_pending_signal_waits_behind_more_than_fair_wait_others() {
        let (rtmin, late) = (libc::SIGRTMIN(), libc::SIGRTMIN() + 1);
        std::thread::spawn(move || {
            set_mask(libc::SIG_BLOCK, &collected(), None).unwrap();
            for n in 0..1000 {
                queue(rtmin, n);
            }
            queue(late, 1000);
            queue(libc::SIGUSR1, 1001);
            let mut picker = with_signalfd();
            let taken: Vec<(i32, u64)> = (0..1002)
                .map(|_| picker.next(None).unwrap())
                .map(|received| (received.sig.0, received.queued.unwrap().value))
                .collect();
            for sig in [late, libc::SIGUSR1] {
                let position = taken.iter().position(|&(s, _)| s == sig).unwrap();
                assert!(position <= FAIR_WAIT as usize, "{sig} taken at {position}");
            }
            let firsts: Vec<u64> = taken
                .iter()
                .filter_map(|&(s, v)| (s == rtmin).then_some(v))
                .collect();
            assert_eq!(firsts, (0..1000).collect::<Vec<u64>>(), "in arrival order");
            assert_eq!(pending() & collected(), 0);
            picker.release_descriptors();
        })
        .join()
        .unwrap();
    }

    /// A run of one queued signal is taken with one read for the rest of its turn, not one
    /// system call each; in arrival order, values intact.
    #[test]
    fn one_read_takes_the_rest_of_a_queued_signals_turn() {
        let rtmin = libc::SIGRTMIN();
        std::thread::spawn(move || {
            set_mask(libc::SIG_BLOCK, &collected(), None).unwrap();
            for n in 0..100 {
                queue(rtmin, n);
            }
            let mut picker = with_signalfd();
            let mut values = Vec::new();
            let mut take = |picker: &mut Picker| {
                values.push(picker.next(None).unwrap().queued.unwrap().value);
            };
            // The wait's read of two, then a round: one read of the other 30 of the turn.
            for _ in 0..3 {
                take(&mut picker);
            }
            assert_eq!(picker.held.len(), 29);
            for _ in 3..100 {
                take(&mut picker);
            }
            assert_eq!(values, (0..100).collect::<Vec<u64>>());
            assert_eq!(pending() & collected(), 0);
            picker.release_descriptors();
        })
        .join()
        .unwrap();
    }

    /// A round takes everything its look found; the next one begins with the wait's read, which
    /// takes what is pending or waits: no look first, which might find nothing.
    #[test]
    fn a_round_takes_what_it_found_and_hands_over_to_the_wait() {
        std::thread::spawn(|| {
            set_mask(libc::SIG_BLOCK, &collected(), None).unwrap();
            for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGRTMIN()] {
                queue(sig, 0);
            }
            let mut picker = Picker {
                backlog: true,
                ..Picker::default()
            };
            assert!(picker.next(Some(Instant::now())).is_some());
            assert_eq!(picker.held.len(), 2, "the rest of the round, held");
            assert!(!picker.backlog, "the round is done");
            assert_eq!(pending() & collected(), 0);
        })
        .join()
        .unwrap();
    }
}
