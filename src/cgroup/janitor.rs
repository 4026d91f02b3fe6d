//! The janitor of a `--contain=cgroup` leaf: empties and removes it should ferrinit die first.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::{CgroupError, Leaf};

/// A process of its own that removes the leaf should ferrinit be SIGKILLed: it sleeps on a pipe
/// whose write end only ferrinit holds (and the inner ferrinit, which dies with it), and a
/// hang-up means ferrinit died. It is started before the leaf is made, and then removes the leaf
/// if there is one: no moment is left in which ferrinit's death would leave the leaf behind.
/// Once ferrinit is done with the leaf, it SIGKILLs the janitor before the pipe closes.
/// The janitor is in a process group of its own, so that a signal to ferrinit's group spares it.
pub struct Janitor {
    pid: libc::pid_t,
    /// Held open for as long as the janitor lives.
    lifeline: OwnedFd,
}

/// The janitor's name in `ps` (at most 15 bytes).
const JANITOR_NAME: &CStr = c"ferrinit-watch";

impl Janitor {
    /// The descriptor ferrinit must keep open.
    pub fn raw_fd(&self) -> RawFd {
        self.lifeline.as_raw_fd()
    }

    /// Forks the janitor for the leaf to be made at `path`. ferrinit is single-threaded, so the
    /// fork may go on running Rust code (it never execs).
    pub fn start(path: &Path) -> Result<Janitor, CgroupError> {
        let (watch, lifeline) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(CgroupError::Janitor)?;
        // SAFETY: single-threaded; see above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(CgroupError::Janitor(Errno::last()));
        }
        if pid == 0 {
            drop(lifeline);
            janitor_main(path, watch);
        }
        Ok(Janitor { pid, lifeline })
    }
}

impl Drop for Janitor {
    /// ferrinit is done with the leaf: the janitor goes without touching it, even if stopped
    /// (SIGKILL ends a stopped process too), so the wait cannot hang.
    fn drop(&mut self) {
        // Only while it is our unreaped child: should someone have killed it and our reaper
        // reaped it, its pid could belong to another process by now.
        if crate::sweep::is_own_child(self.pid) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child's.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            // SAFETY: waits for our own child; a null status pointer is allowed.
            unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// The janitor's life: out of ferrinit's group, cwd and descriptors, it waits for the hang-up,
/// then empties and removes the leaf at `path` if it was made. Never returns.
fn janitor_main(path: &Path, watch: OwnedFd) -> ! {
    // SAFETY: setpgid and open/dup2 on our own descriptors have no memory preconditions.
    unsafe {
        libc::setpgid(0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for fd in 0..=2 {
            libc::dup2(null, fd);
        }
    }
    // Not keeping the user's working directory busy (a mount point that could not be unmounted).
    let _ = nix::unistd::chdir("/");
    let _ = nix::sys::prctl::set_name(JANITOR_NAME);
    crate::fds::close_all_except(&[watch.as_raw_fd()]);
    let mut byte = [0u8];
    // SAFETY: reads one byte into valid memory; nothing is ever written, so only the hang-up
    // (or an error) ends the wait.
    while unsafe { libc::read(watch.as_raw_fd(), byte.as_mut_ptr().cast(), 1) } < 0
        && Errno::last() == Errno::EINTR
    {}
    match Leaf::open(path.to_path_buf()) {
        Ok(mut leaf) => {
            let _ = leaf.kill();
            leaf.wait_empty(Instant::now() + std::time::Duration::from_secs(5));
            let _ = leaf.remove();
        }
        // Not made, or made and then found unusable (no cgroup.kill): nothing ran in it.
        Err(_) => {
            let _ = std::fs::remove_dir(path);
        }
    }
    // SAFETY: _exit has no preconditions; nothing of ours needs flushing.
    unsafe { libc::_exit(0) }
}
