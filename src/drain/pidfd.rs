//! A process pinned by a pidfd: signals sent through it reach that process or nobody, never one
//! that was given its pid number later.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::signals::Sig;

pub struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: i32) -> Result<Pidfd, Errno> {
        // SAFETY: pidfd_open has no memory-safety preconditions; the kernel makes the new
        // descriptor close-on-exec.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: on success the syscall returned a fresh descriptor that nothing else owns.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    pub fn send(&self, sig: Sig) -> Result<(), Errno> {
        // SAFETY: the pidfd is open; a null siginfo means "as kill() would send it".
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig.number(),
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Errno::result(sent).map(drop)
    }

    /// Whether the process has exited (a zombie has: only its exit status is left).
    pub fn has_exited(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only looks.
        unsafe { libc::poll(&mut poll, 1, 0) == 1 }
    }

    /// The parent's pid in our namespace, as the kernel itself reports it for the pinned process
    /// (PIDFD_GET_INFO, Linux 6.13): unlike /proc, nothing a descendant mounts can change it.
    /// `ENOTTY` or `EINVAL` when the kernel cannot tell; `ESRCH` once the process is gone, or
    /// when its parent is outside our PID namespace.
    pub fn parent(&self) -> Result<i32, Errno> {
        // SAFETY: pidfd_info is plain data, for which all zeroes is valid (mask 0: ask nothing
        // beyond the pids, which the kernel always fills in).
        let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
        // SAFETY: PIDFD_GET_INFO writes at most size_of::<pidfd_info>() bytes, the size encoded in
        // the request number, into `info`, which is valid and writable.
        let result = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::PIDFD_GET_INFO, &mut info) };
        Errno::result(result)?;
        Ok(info.ppid as i32)
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_the_parent_of_a_pinned_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pidfd = Pidfd::open(child.id() as i32).unwrap();
        let parent = pidfd.parent();
        assert!(!pidfd.has_exited());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(pidfd.has_exited());
        match parent {
            Ok(ppid) => assert_eq!(ppid, std::process::id() as i32),
            // Kernels before 6.13 cannot tell; the drain then reads /proc.
            Err(e) => assert!(matches!(e, Errno::ENOTTY | Errno::EINVAL), "{e}"),
        }
    }
}
