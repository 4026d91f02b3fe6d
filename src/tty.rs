//! The controlling terminal: the child's process group gets the foreground, so that Ctrl-C and
//! Ctrl-Z reach it, and ferrinit takes the foreground back when it needs the user's shell to.
//!
//! The terminal is the controlling one, /dev/tty, whatever descriptors 0 to 2 are: a program run
//! with `</dev/null` still prompts on /dev/tty (ssh, sudo, git), and outside the foreground
//! SIGTTIN would stop it. ferrinit opens it for each use and closes it again (close-on-exec
//! meanwhile): it holds no descriptor of its own, and the child inherits none.
//!
//! Every `tcsetpgrp` here runs with SIGTTOU blocked, so it can never stop ferrinit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::{Pid, getpgid, getpgrp, getpid, getppid, getsid, tcgetpgrp, tcsetpgrp};

use crate::signals::Sig;

/// O_NONBLOCK: never wait for a modem's carrier; nothing is read or written through it.
const OPEN_FLAGS: libc::c_int = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK;

/// How ferrinit stops when it hands the terminal back to a job-control shell.
pub enum Stop {
    /// SIGSTOP to itself.
    Raise,
    /// `--contain`'s inner ferrinit: the shell waits for the outer one, and PID 1 of a namespace
    /// cannot stop itself anyway. One byte down this pipe, the signal that stopped the child,
    /// asks the outer ferrinit to hand the terminal back and stop in our place (contain.rs).
    AskOuter(OwnedFd),
}

impl Stop {
    /// The descriptor ferrinit must keep open for it.
    pub fn pipe(&self) -> Option<RawFd> {
        match self {
            Stop::Raise => None,
            Stop::AskOuter(pipe) => Some(pipe.as_raw_fd()),
        }
    }
}

/// Present only when ferrinit has a controlling terminal.
pub struct Terminal {
    own_group: Pid,
    /// ferrinit's group held the foreground when it started. Only then does the child get the
    /// terminal at once: a ferrinit started in the background must not steal it from the shell.
    foreground_at_start: bool,
}

fn open_tty() -> Option<OwnedFd> {
    // SAFETY: the path is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c"/dev/tty".as_ptr(), OPEN_FLAGS) };
    // SAFETY: on success, a fresh descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Terminal {
    pub fn controlling() -> Option<Terminal> {
        let tty = open_tty()?;
        let own_group = getpgrp();
        Some(Terminal {
            own_group,
            foreground_at_start: tcgetpgrp(&tty).is_ok_and(|group| group == own_group),
        })
    }

    pub fn foreground_at_start(&self) -> bool {
        self.foreground_at_start
    }

    /// In the forked child, before `exec`: make the child's new group the foreground.
    /// Async-signal-safe.
    pub fn give_to_self_in_child() {
        // SAFETY: open, getpid, tcsetpgrp and close are async-signal-safe; the descriptor is
        // closed again before exec. Errors leave the terminal as it was (and a child stopped for
        // want of it is then given it by the parent: see supervise).
        unsafe {
            let tty = libc::open(c"/dev/tty".as_ptr(), OPEN_FLAGS);
            if tty >= 0 {
                libc::tcsetpgrp(tty, libc::getpid());
                libc::close(tty);
            }
        }
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
        open_tty().is_some_and(|tty| tcgetpgrp(&tty).is_ok_and(|group| group == self.own_group))
    }

    /// Makes `group` the foreground one; whether that worked.
    pub fn give_to(&self, group: Pid) -> bool {
        open_tty().is_some_and(|tty| tcsetpgrp(&tty, group).is_ok())
    }

    /// Gives the foreground back to ferrinit's own group, unless somebody else than the child's
    /// group holds it by now.
    pub fn take_back(&self, child_group: Pid) {
        if let Some(tty) = open_tty() {
            if tcgetpgrp(&tty).is_ok_and(|group| group == child_group) {
                let _ = tcsetpgrp(&tty, self.own_group);
            }
        }
    }

    /// What ferrinit runs as a job (`job`: the child's group, or the inner ferrinit's) has
    /// stopped, by `by`: the terminal goes back to ferrinit's group, and ferrinit stops too, so
    /// that the shell, which waits for ferrinit and not for the child, prints its prompt. Its
    /// `fg` continues ferrinit: then [`Terminal::hand_on`].
    pub fn hand_back_and_stop(&self, job: Pid, by: Sig, stop: &Stop) {
        self.take_back(job);
        match stop {
            Stop::Raise => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
            }
            Stop::AskOuter(pipe) => {
                let byte = [u8::try_from(by.number()).unwrap_or(0)];
                // SAFETY: writes one byte from valid memory. Should the outer ferrinit be gone,
                // it is killing us already (PR_SET_PDEATHSIG): nothing to do about an error.
                while unsafe { libc::write(pipe.as_raw_fd(), byte.as_ptr().cast(), 1) } == -1
                    && Errno::last() == Errno::EINTR
                {}
            }
        }
    }

    /// ferrinit was continued after [`Terminal::hand_back_and_stop`]: `job` gets the terminal if
    /// the shell gave it to ferrinit's group (`fg`), not if it kept it (`bg`).
    pub fn hand_on(&self, job: Pid) {
        if self.in_foreground() {
            self.give_to(job);
        }
    }
}
