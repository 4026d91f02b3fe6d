//! Reaping: collect every child that has ended, the main one and the orphans re-parented to us.
//! One SIGCHLD may stand for many exits, so each call drains `waitpid` until nothing is ready.

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::exit_status::ChildStatus;
use crate::log::{debug, info, warning};

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
    pub main_stopped: bool,
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
                }
                (None, true) => reaped.main_stopped = libc::WIFSTOPPED(status),
                (Some(status), false) if self.warn_on_reap => {
                    warning!("reaped zombie process {pid} ({status})")
                }
                (Some(status), false) => debug!("reaped process {pid} ({status})"),
                (None, false) => {}
            }
        }
    }
}
