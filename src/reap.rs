//! Reaping: collect every child that has ended, the main one and the orphans re-parented to us.
//! One SIGCHLD may stand for many exits, so each call drains `waitpid` until nothing is ready.
//! A child that made ferrinit its tracer is let go at its first stop.

use std::mem::MaybeUninit;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::exit_status::ChildStatus;
use crate::log::{debug, info, warning};
use crate::signals::Sig;

pub struct Reaper {
    main: Option<Pid>,
    warn_on_reap: bool,
    /// Also report the main child stopping (job control on a terminal).
    report_stops: bool,
    /// The main child dumped core (WCOREDUMP) when it died.
    pub main_core_dumped: bool,
}

#[derive(Default)]
pub struct Reaped {
    pub main_exited: Option<ChildStatus>,
    /// The main child stopped, and the signal that stopped it.
    pub main_stopped: Option<Sig>,
    /// `waitpid` said ECHILD: ferrinit has no child left at all, and so no descendant either when
    /// it is PID 1 or a subreaper.
    pub none_left: bool,
    /// How many processes other than the main child were reaped.
    pub others: usize,
}

impl Reaper {
    pub fn new(main: Option<Pid>, warn_on_reap: bool, report_stops: bool) -> Reaper {
        Reaper {
            main,
            warn_on_reap,
            report_stops,
            main_core_dumped: false,
        }
    }

    pub fn reap_ready(&mut self) -> Reaped {
        let mut reaped = Reaped::default();
        let flags = libc::WNOHANG
            | if self.report_stops {
                libc::WUNTRACED
            } else {
                0
            };
        loop {
            let mut status = 0;
            // SAFETY: `status` is valid writable storage for the call.
            let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
            if pid == 0 {
                return reaped;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    _ => {
                        reaped.none_left = true;
                        return reaped;
                    }
                }
            }
            let pid = Pid::from_raw(pid);
            if libc::WIFSTOPPED(status) && detach_if_traced(pid) {
                continue;
            }
            let ended = ChildStatus::from_wait_status(status);
            let core_dumped = libc::WIFSIGNALED(status) && libc::WCOREDUMP(status);
            if ended.is_some() && self.main != Some(pid) {
                reaped.others += 1;
            }
            match (ended, self.main == Some(pid)) {
                (Some(status), true) => {
                    info!("main child {pid} {status}");
                    self.main = None;
                    self.main_core_dumped = core_dumped;
                    reaped.main_exited = Some(status);
                    // At once: ferrinit's next steps (the drain, or exit) reap the rest or
                    // leave it to the kernel, and one more waitpid would only say ECHILD.
                    return reaped;
                }
                (None, true) if libc::WIFSTOPPED(status) => {
                    reaped.main_stopped = Sig::from_number(libc::WSTOPSIG(status))
                }
                (Some(status), false) if self.warn_on_reap => {
                    warning!("reaped zombie process {pid} ({status})")
                }
                (Some(status), false) => debug!("reaped process {pid} ({status})"),
                (None, _) => {}
            }
        }
    }
}

/// A child that calls `PTRACE_TRACEME` (or an orphan of ours that does) makes ferrinit its tracer,
/// and then stays stopped at every signal until its tracer lets it go. ferrinit is nobody's
/// debugger: it detaches at the first such stop and passes the signal on, except the SIGTRAP
/// the kernel raises at a tracee's `exec`, which only a tracer wants. Returns whether `pid` was
/// traced by us; if not, its stop is a job-control stop.
fn detach_if_traced(pid: Pid) -> bool {
    let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
    // SAFETY: `info` is writable storage for one siginfo_t. The call fails (ESRCH) unless we
    // trace `pid` and it is in a trace stop.
    let traced = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGINFO,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            info.as_mut_ptr(),
        )
    };
    let pass_on = if traced == 0 {
        // SAFETY: PTRACE_GETSIGINFO succeeded, so the kernel filled in `info`.
        let info = unsafe { info.assume_init() };
        // What exec raises for a tracee: SIGTRAP "sent" by the tracee itself.
        // SAFETY: si_pid is the sender's pid for SI_USER, which is checked first.
        let exec_trap = info.si_signo == libc::SIGTRAP
            && info.si_code == libc::SI_USER
            && unsafe { info.si_pid() } == pid.as_raw();
        if exec_trap { 0 } else { info.si_signo }
    } else if Errno::last() == Errno::EINVAL {
        // Traced, but in a group stop (SIGSTOP and the like): it stays stopped once detached, as
        // it would have without a tracer.
        0
    } else {
        return false;
    };
    // SAFETY: PTRACE_DETACH takes the signal to deliver as its data argument.
    let detached = unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            pass_on as usize as *mut libc::c_void,
        )
    };
    if detached == 0 {
        info!("process {pid} had made ferrinit its tracer (PTRACE_TRACEME): detached");
    }
    detached == 0
}
