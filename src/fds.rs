//! Descriptors: the ones ferrinit inherited go to the child and then leave ferrinit; the ones
//! ferrinit opens itself are close-on-exec, so they never reach the child.

use std::ffi::CStr;
use std::os::fd::RawFd;

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

/// Closes every descriptor from 3 up except those in `keep` (the ones of ferrinit's own that it
/// still needs). Called once the child exists: it has its copies of what ferrinit inherited
/// (socket activation, a runtime's pipes), and ferrinit must not hold them open (a pipe's reader
/// would never see end-of-file). The log's own descriptor of stderr goes too, and is opened
/// again at the next line.
pub fn close_all_except(keep: &[RawFd]) {
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
