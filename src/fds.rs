//! Descriptors: the ones ferrinit inherited go to the child and then leave ferrinit; the ones
//! ferrinit opens itself are close-on-exec, so they never reach the child.

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// If ferrinit starts with 0, 1 or 2 closed, the first descriptor it opens would land there and
/// be handed to the child as stdin, stdout or stderr. Fill each gap with a close-on-exec
/// placeholder: ferrinit keeps it, `exec` drops it, and the child finds its stdio exactly as
/// closed as ferrinit did.
pub fn reserve_closed_stdio() {
    // One system call for the three: poll marks a closed descriptor POLLNVAL, and asks for no
    // event, so it returns at once.
    let mut stdio = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `stdio` is a valid array of three pollfds; a zero timeout never waits.
    if unsafe { libc::poll(stdio.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pollfd in stdio {
        if pollfd.revents & libc::POLLNVAL != 0 {
            // The lowest free descriptor is this one, since the lower ones are now all open.
            // An O_PATH handle on "/" cannot fail for lack of a file and is useless if written to.
            // Should it fail all the same, the gap stays open; nothing better can be done.
            // SAFETY: the path is a valid C string; the result is deliberately not checked.
            unsafe {
                libc::open(
                    c"/".as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
        }
    }
}

/// Opens `path` read-only and close-on-exec as the first descriptor ferrinit opens itself, and
/// fills any closed 0, 1 or 2 as [`reserve_closed_stdio`] does, at no cost when there is none:
/// the kernel hands out the lowest free descriptor, so one of 3 or more says that 0, 1 and 2 are
/// all open. Only a lower one (or a failure, which says nothing) costs the poll; a lower one then
/// stays where it is as that gap's placeholder, and the caller gets a copy above 2.
///
/// Must come before ferrinit opens anything else it keeps: lib.rs sees to it.
pub fn open_first(path: &CStr) -> Option<RawFd> {
    // SAFETY: a valid C string; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd > 2 {
        return Some(fd);
    }
    reserve_closed_stdio();
    if fd < 0 {
        return None;
    }
    // SAFETY: F_DUPFD_CLOEXEC on the descriptor just opened; the result is checked.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    (copy > 2).then_some(copy)
}

/// Descriptors of ferrinit's own (close-on-exec) that it no longer needs and leaves for
/// [`close_all_except`] to close, instead of a close each: the OOM baseline's (exit_report.rs).
/// Until then they hold slots that a tight RLIMIT_NOFILE may leave nothing else: whoever opens a
/// descriptor in between, and would otherwise fail or do less, closes them first
/// ([`close_left_open`]) where it costs nothing at an ordinary start.
static LEFT_OPEN: [AtomicI32; 2] = [const { AtomicI32::new(-1) }; 2];

/// Leaves `fd` open for the sweep, or closes it now if no slot is free.
pub fn leave_open(fd: RawFd) {
    let free = LEFT_OPEN.iter().find(|slot| {
        slot.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    });
    if free.is_none() {
        // SAFETY: the caller hands over a descriptor it no longer uses.
        unsafe { libc::close(fd) };
    }
}

/// Closes the descriptors left open for the sweep; whether there was any. Async-signal-safe
/// (the forked child calls it before opening anything of its own).
pub fn close_left_open() -> bool {
    let mut closed = false;
    for slot in &LEFT_OPEN {
        let fd = slot.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: a descriptor ferrinit opened and left for the sweep, which has not run.
            unsafe { libc::close(fd) };
            closed = true;
        }
    }
    closed
}

/// `open()`, and once more should it fail for want of a descriptor (EMFILE) while some are left
/// open for the sweep: those are closed first. Costs nothing while descriptors are to spare.
pub fn open_or_make_room<T>(open: impl Fn() -> Option<T>) -> Option<T> {
    open().or_else(|| {
        let emfile = nix::errno::Errno::last() == nix::errno::Errno::EMFILE;
        (emfile && close_left_open()).then(open).flatten()
    })
}

/// Closes every descriptor from 3 up except those in `keep` (the ones of ferrinit's own that it
/// still needs). Called once the child exists: it has its copies of what ferrinit inherited
/// (socket activation, a runtime's pipes), and ferrinit must not hold them open (a pipe's reader
/// would never see end-of-file). The log's own descriptor of stderr goes too, and is opened
/// again at the next line.
pub fn close_all_except(keep: &[RawFd]) {
    // The sweep closes them: their numbers may be given out again from now on.
    for slot in &LEFT_OPEN {
        slot.store(-1, Ordering::Relaxed);
    }
    // Usually nothing is kept: no list to build.
    if keep.iter().all(|&fd| fd < 3) {
        close_range(3, u32::MAX);
        return;
    }
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.into_iter().filter(|&fd| fd >= 3) {
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range has no memory-safety preconditions; the caller keeps what it needs.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) } == 0;
    if !closed {
        // Kernels before 5.9: close what /proc lists.
        let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| (first..=last).contains(fd))
            .collect();
        for fd in open {
            // SAFETY: closing a descriptor we do not use any more; EBADF (the listing's own
            // descriptor, already closed) is harmless.
            unsafe { libc::close(fd as RawFd) };
        }
    }
}
