//! The controlling terminal: the child's process group gets the foreground, so that Ctrl-C and
//! Ctrl-Z reach it, and ferrinit takes the foreground back when it needs the user's shell to.
//!
//! Every `tcsetpgrp` here runs with SIGTTOU blocked, so it can never stop ferrinit.

use std::os::fd::BorrowedFd;

use nix::unistd::{Pid, getpgid, getpgrp, getpid, getppid, getsid, tcgetpgrp, tcsetpgrp};

/// Present only when stdin is a terminal whose foreground group is ferrinit's own: a ferrinit
/// started in the background must not steal the terminal from the shell.
pub struct Terminal {
    own_group: Pid,
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: ferrinit never closes descriptor 0. It is stdin or, if ferrinit started without
    // one, the placeholder of fds::reserve_closed_stdio; should even that have failed, every
    // call on it fails with EBADF, which callers take as "no terminal".
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl Terminal {
    pub fn foreground_at_start() -> Option<Terminal> {
        let own_group = getpgrp();
        (tcgetpgrp(stdin()).ok()? == own_group).then_some(Terminal { own_group })
    }

    /// In the forked child, before `exec`: make the child's new group the foreground.
    /// Async-signal-safe.
    pub fn give_to_self_in_child() {
        // SAFETY: getpid and tcsetpgrp are async-signal-safe; errors leave the terminal as it was.
        unsafe { libc::tcsetpgrp(0, libc::getpid()) };
    }

    /// Whether a job-control shell runs ferrinit as a job: ferrinit leads a process group of
    /// its own, is not the session leader, and its parent sits in another group of the same
    /// session. Only then does stopping ferrinit hand the terminal back to someone who will
    /// continue it (`fg`); under `ssh -t host ferrinit ...` or `docker exec -it` ferrinit leads
    /// the session, and a stopped ferrinit would stay stopped.
    pub fn under_job_control(&self) -> bool {
        let (own, parent) = (getpid(), getppid());
        let (Ok(session), Ok(parent_session), Ok(parent_group)) =
            (getsid(None), getsid(Some(parent)), getpgid(Some(parent)))
        else {
            return false;
        };
        self.own_group == own && session != own && parent_group != own && parent_session == session
    }

    pub fn in_foreground(&self) -> bool {
        tcgetpgrp(stdin()).is_ok_and(|group| group == self.own_group)
    }

    pub fn give_to(&self, group: Pid) {
        let _ = tcsetpgrp(stdin(), group);
    }

    /// Gives the foreground back to ferrinit's own group, unless somebody else than the child's
    /// group holds it by now.
    pub fn take_back(&self, child_group: Pid) {
        if tcgetpgrp(stdin()).is_ok_and(|group| group == child_group) {
            let _ = tcsetpgrp(stdin(), self.own_group);
        }
    }
}
