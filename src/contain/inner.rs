//! The inner ferrinit: a fork of the outer one that never execs, inside the namespaces or the
//! cgroup, and the command's init.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

use crate::cli::Config;
use crate::environ::Environ;
use crate::exit_status::code;
use crate::signals::SignalState;
use crate::supervise::{self, JobControl};

/// What the inner ferrinit does before it supervises the command.
#[derive(Clone, Copy)]
pub(super) enum Setup {
    /// Private mount propagation, then a fresh /proc for the new PID namespace.
    MountProc,
    Nothing,
}

/// What the inner ferrinit reports before it goes on: `[0, 0]`, or the step that failed and
/// its errno. When a job-control shell runs the outer ferrinit, the same pipe then carries the
/// inner one's word that the command stopped (see `Outer::hear_stop`).
pub(super) type Report = [i32; 2];
pub(super) const STEPS: [&str; 3] = ["", "make mount propagation private", "mount a fresh /proc"];

/// The inner ferrinit's ends of its pipes with the outer one.
pub(super) struct InnerEnds {
    /// Readable at the outer ferrinit's go; hangs up should the outer ferrinit die first.
    pub(super) lifeline: OwnedFd,
    /// For the report, and then, with `job_control`, the word that the command stopped.
    pub(super) report: OwnedFd,
    /// A job-control shell runs the outer ferrinit.
    pub(super) job_control: bool,
}

/// The inner ferrinit: waits for the outer one's go, arranges to die with it, sets up the
/// namespaces, reports, and runs as the command's init. Never returns.
pub(super) fn inner_main(
    outer: u32,
    InnerEnds {
        lifeline,
        report,
        job_control,
    }: InnerEnds,
    setup: Setup,
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
) -> ! {
    let mut byte = [0u8];
    loop {
        // SAFETY: reads one byte into valid memory.
        match unsafe { libc::read(lifeline.as_raw_fd(), byte.as_mut_ptr().cast(), 1) } {
            1 => break,
            -1 if Errno::last() == Errno::EINTR => continue,
            // The outer ferrinit is gone, or gave up on us.
            // SAFETY: _exit has no preconditions.
            _ => unsafe { libc::_exit(code::INTERNAL.into()) },
        }
    }
    // getppid() is 0 across a PID namespace boundary, so the usual check after PR_SET_PDEATHSIG
    // cannot tell whether the parent already died: the lifeline's hang-up can.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a plain signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    let mut hangup = libc::pollfd {
        fd: lifeline.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut hangup, 1, 0) } != 0 && hangup.revents & libc::POLLHUP != 0 {
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(code::INTERNAL.into()) };
    }
    drop(lifeline);
    let result = match setup {
        Setup::Nothing => Ok(()),
        Setup::MountProc => mount_fresh_proc(),
    };
    let message: Report = match result {
        Ok(()) => [0, 0],
        Err((step, errno)) => [step, errno as i32],
    };
    let bytes: Vec<u8> = message.iter().flat_map(|n| n.to_ne_bytes()).collect();
    // SAFETY: writes from valid memory of the given length.
    unsafe { libc::write(report.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if result.is_err() {
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(code::INTERNAL.into()) };
    }
    let job = JobControl::Outer(job_control.then_some(report));
    let signals = signals.in_fork();
    // Socket activation: descriptors meant for the outer ferrinit are the command's.
    let moved = environ.moved_listen_pid(outer, std::process::id());
    let environ = moved.as_ref().unwrap_or(environ);
    // No `-p` here (the outer ferrinit has it), so the parent given is never looked at.
    let status = supervise::run_as(config, environ, &signals, None, job);
    std::process::exit(status.into())
}

/// `/` private (nothing propagates back to the host), then /proc for our PID namespace.
fn mount_fresh_proc() -> Result<(), (i32, Errno)> {
    let mount = |source: &CStr, target: &CStr, fstype: Option<&CStr>, flags: libc::c_ulong| {
        // SAFETY: every pointer is a valid C string or null.
        let result = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.map_or(std::ptr::null(), CStr::as_ptr),
                flags,
                std::ptr::null(),
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    };
    mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE).map_err(|e| (1, e))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(c"proc", c"/proc", Some(c"proc"), flags).map_err(|e| (2, e))
}
