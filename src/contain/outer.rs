//! The outer ferrinit: starts the inner one contained, relays signals to it, and cleans up after
//! it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

use super::inner::{InnerEnds, Report, STEPS, Setup, inner_main};
use super::userns::{explain_user_namespace, write_id_maps};
use super::{ContainError, inner_config};
use crate::cgroup::{Janitor, Leaf};
use crate::cli::Config;
use crate::environ::Environ;
use crate::exit_status::{ChildStatus, code};
use crate::fds;
use crate::log::{debug, info, warning};
use crate::reap::Reaper;
use crate::signals::{Queued, Sig, SignalState, Target};
use crate::sweep;
use crate::tty::{Stop, Terminal};

// clone3(2), spelled out: the libc crate has no wrapper.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The outer ferrinit, once the inner one is running and contained.
pub(super) struct Outer {
    pub(super) how: String,
    inner: Pid,
    /// Held open for the whole run; the inner ferrinit learns of our death by its hang-up if it
    /// comes before PR_SET_PDEATHSIG is in place.
    lifeline: OwnedFd,
    terminal: Option<Terminal>,
    /// When a job-control shell runs us as a job: the inner ferrinit's word that the command
    /// stopped, which comes with a SIGCHLD (see `hear_stops`).
    stops: Option<OwnedFd>,
    leaf: Option<Leaf>,
    janitor: Option<Janitor>,
}

impl Outer {
    pub(super) fn pidns(
        config: &Config,
        environ: &Environ,
        signals: &SignalState,
    ) -> Result<Outer, ContainError> {
        let namespaces = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;
        let inner = inner_config(config, false);
        match Outer::start(namespaces, None, Setup::MountProc, &inner, environ, signals) {
            Err(ContainError::Clone(Errno::EPERM)) => {
                let with_user = namespaces | libc::CLONE_NEWUSER as u64;
                Outer::start(with_user, None, Setup::MountProc, &inner, environ, signals)
                    .map_err(explain_user_namespace)
            }
            other => other,
        }
    }

    pub(super) fn cgroup(
        config: &Config,
        environ: &Environ,
        signals: &SignalState,
    ) -> Result<Outer, ContainError> {
        let path = Leaf::unique_path()?;
        // Before the cgroup exists, so that no moment is left in which our death would leave it
        // behind.
        let janitor = Janitor::start(&path)?;
        let leaf = Leaf::create(path)?;
        // Orphans of the cgroup come to the outer ferrinit once the inner one is gone, so that
        // it can reap them before removing the cgroup.
        nix::sys::prctl::set_child_subreaper(true).map_err(ContainError::Subreaper)?;
        let inner = inner_config(config, true);
        let mut outer = Outer::start(0, Some(&leaf), Setup::Nothing, &inner, environ, signals)
            .map_err(|e| match e {
                ContainError::Clone(errno @ (Errno::E2BIG | Errno::EINVAL)) => {
                    debug!("clone3 into a cgroup: {errno}");
                    ContainError::KernelTooOld("clone3 with CLONE_INTO_CGROUP", "5.7")
                }
                ContainError::Clone(errno) => {
                    ContainError::IntoCgroup(leaf.path().display().to_string(), errno)
                }
                other => other,
            })?;
        outer.how = format!("cgroup {}", leaf.path().display());
        outer.leaf = Some(leaf);
        outer.janitor = Some(janitor);
        Ok(outer)
    }

    /// Starts the inner ferrinit with clone3 and waits for its report.
    fn start(
        namespaces: u64,
        leaf: Option<&Leaf>,
        setup: Setup,
        inner_config: &Config,
        environ: &Environ,
        signals: &SignalState,
    ) -> Result<Outer, ContainError> {
        let (lifeline_read, lifeline) = pipe()?;
        let (report_read, report_write) = pipe()?;
        let terminal = Terminal::controlling();
        // The shell waits for us, not for the inner ferrinit: we are the job that stops.
        let job_control = terminal.as_ref().is_some_and(Terminal::under_job_control);
        let outer = std::process::id();
        let mut args = CloneArgs {
            flags: namespaces,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(leaf) = leaf {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = leaf.dir_fd() as u64;
        }
        // SAFETY: without CLONE_VM and with no stack given, clone3 works as fork does: the child
        // runs on a copy of our memory. ferrinit is single-threaded (see the module comment).
        // Called raw, clone3 skips glibc's fork bookkeeping (atfork handlers, the cached tid):
        // harmless for single-threaded ferrinit, which holds no lock across the call.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            return Err(match Errno::last() {
                Errno::ENOSYS => ContainError::KernelTooOld("clone3", "5.3"),
                errno => ContainError::Clone(errno),
            });
        }
        if pid == 0 {
            drop(lifeline);
            drop(report_read);
            let ends = InnerEnds {
                lifeline: lifeline_read,
                report: report_write,
                job_control,
            };
            inner_main(outer, ends, setup, inner_config, environ, signals);
        }
        drop(lifeline_read);
        drop(report_write);
        let inner = Pid::from_raw(pid as libc::pid_t);
        // Kills the inner ferrinit, reaps it and says how it ended (on its own, should it have
        // died first).
        let abandon = || {
            relay(inner, Sig::KILL, None);
            let mut status = 0;
            // SAFETY: `status` is valid writable storage; the inner ferrinit is our child.
            let reaped = unsafe { libc::waitpid(inner.as_raw(), &mut status, 0) } == inner.as_raw();
            if let Some(terminal) = &terminal {
                terminal.take_back(inner);
            }
            reaped
                .then(|| ChildStatus::from_wait_status(status))
                .flatten()
                .map_or_else(|| "is gone".to_owned(), |status| status.to_string())
        };
        if namespaces & libc::CLONE_NEWUSER as u64 != 0 {
            write_id_maps(inner).map_err(|e| {
                let root = nix::unistd::geteuid().is_root();
                abandon();
                match e.raw_os_error() {
                    Some(libc::EPERM) if root => ContainError::RootMapNeedsSetfcap,
                    _ => ContainError::IdMap(e),
                }
            })?;
        }
        // Its own process group, so that a signal to our group does not reach it twice (once
        // from the sender, once relayed); and the terminal, if we had it.
        // SAFETY: setpgid has no memory-safety preconditions.
        unsafe { libc::setpgid(pid as libc::pid_t, pid as libc::pid_t) };
        // Only a terminal whose foreground we hold is handed on: the inner ferrinit then finds its
        // group in the foreground, and gives the command the terminal as it does today.
        if let Some(terminal) = terminal.as_ref().filter(|t| t.foreground_at_start()) {
            terminal.give_to(inner);
        }
        // SAFETY: writes one byte from valid memory.
        if unsafe { libc::write(lifeline.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return Err(ContainError::InnerDied(abandon()));
        }
        match read_report(&report_read) {
            Some([0, _]) => {}
            Some([step, errno]) => {
                let step = STEPS.get(step as usize).copied().unwrap_or("start");
                abandon();
                return Err(ContainError::Inside(step, Errno::from_raw(errno)));
            }
            None => return Err(ContainError::InnerDied(abandon())),
        }
        let stops = job_control.then_some(report_read).and_then(|stops| {
            hear_stops(&stops)
                .inspect_err(|e| warning!("Ctrl-Z will not give the shell its prompt back: {e}"))
                .ok()
                .map(|()| stops)
        });
        let user = namespaces & libc::CLONE_NEWUSER as u64 != 0;
        Ok(Outer {
            how: if user {
                "pidns, in a user namespace of its own".into()
            } else {
                "pidns".into()
            },
            inner,
            lifeline,
            terminal,
            stops,
            leaf: None,
            janitor: None,
        })
    }

    /// Relays signals until the inner ferrinit exits, cleans up, and returns its status.
    pub(super) fn supervise(mut self, config: &Config, signals: &SignalState) -> u8 {
        let mut keep = vec![self.lifeline.as_raw_fd()];
        keep.extend(self.stops.as_ref().map(AsRawFd::as_raw_fd));
        if let Some(leaf) = &self.leaf {
            keep.extend(leaf.raw_fds());
        }
        keep.extend(self.janitor.as_ref().map(Janitor::raw_fd));
        // The inner ferrinit and the command have their copies of what we inherited.
        fds::close_all_except(&keep);
        let _ = nix::unistd::chdir("/");
        // For the cgroup's orphans, which come to us once the inner ferrinit is gone.
        let mut reaper = Reaper::new(None, config.warn_on_reap, false);
        // A word that came before it could raise a SIGCHLD.
        self.hear_stop();
        let status = loop {
            let Some(received) = signals.next(None) else {
                continue;
            };
            if received.sig == Sig::CHLD {
                if let Some(status) = self.inner_exit() {
                    match status {
                        // It exits with the command's status, never by a signal of its own.
                        ChildStatus::Killed(sig) => {
                            warning!("the inner ferrinit was killed by {sig}")
                        }
                        ChildStatus::Exited(_) => debug!("the inner ferrinit {status}"),
                    }
                    break status;
                }
                self.hear_stop();
                continue;
            }
            if received.sig == Sig::CONT {
                // `fg` gave us the terminal: it is the inner ferrinit's, to give to the command.
                if let Some(terminal) = &self.terminal {
                    terminal.hand_on(self.inner);
                }
            }
            debug!("relaying {} to the inner ferrinit", received.sig);
            relay(self.inner, received.sig, received.queued.as_ref());
        };
        // As after ferrinit's own main loop (supervise.rs): the sweep needs the descriptors.
        signals.release_descriptor();
        if let Some(leaf) = &mut self.leaf {
            empty_and_remove(leaf, signals, &mut reaper);
            drop(self.janitor.take());
            // A process that moved itself out of the cgroup (root may) escaped cgroup.kill; as a
            // subreaper, we have it among our descendants still.
            sweep::kill_every_descendant(signals, &mut reaper);
        }
        if let Some(terminal) = &self.terminal {
            terminal.take_back(self.inner);
        }
        status.shell_code()
    }
}

impl Outer {
    /// The inner ferrinit's word that the command stopped: the terminal goes back to our group
    /// and we stop, as ferrinit does without `--contain` (tty.rs); the shell's `fg` continues us,
    /// and its SIGCONT is relayed.
    fn hear_stop(&self) {
        let (Some(stops), Some(terminal)) = (&self.stops, &self.terminal) else {
            return;
        };
        let mut bytes = [0u8; 16];
        // SAFETY: reads into valid memory of the given length; the descriptor is non-blocking.
        let n = unsafe { libc::read(stops.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
        let word = usize::try_from(n)
            .ok()
            .and_then(|n| bytes[..n].last().copied());
        let Some(by) = word.and_then(|byte| Sig::from_number(byte.into())) else {
            return;
        };
        info!("the command stopped by {by}: stopping too, so that the shell can take over");
        terminal.hand_back_and_stop(self.inner, by, &Stop::Raise);
    }

    fn inner_exit(&self) -> Option<ChildStatus> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is valid writable storage; the inner ferrinit is our child.
            let pid = unsafe { libc::waitpid(self.inner.as_raw(), &mut status, libc::WNOHANG) };
            match pid {
                -1 if Errno::last() == Errno::EINTR => continue,
                // Nothing else reaps it; should it be gone all the same, its status is lost.
                -1 => return Some(ChildStatus::Exited(code::INTERNAL)),
                p if p == self.inner.as_raw() => return ChildStatus::from_wait_status(status),
                _ => return None,
            }
        }
    }
}

/// The command has exited and the inner ferrinit with it: kill what is left in the cgroup, reap
/// what comes to us, remove the cgroup.
fn empty_and_remove(leaf: &mut Leaf, signals: &SignalState, reaper: &mut Reaper) {
    const EMPTY_WAIT: Duration = Duration::from_secs(5);
    let give_up = Instant::now() + EMPTY_WAIT;
    if let Err(e) = leaf.kill() {
        warning!("{e}");
    }
    if !leaf.wait_empty(give_up) {
        warning!(
            "cgroup {} is not empty {EMPTY_WAIT:?} after cgroup.kill",
            leaf.path().display()
        );
    }
    loop {
        reaper.reap_ready();
        match leaf.remove() {
            Ok(()) => return,
            // On some kernels busy until the last zombie is reaped: ours come with a SIGCHLD.
            Err(_) if Instant::now() < give_up => {
                signals.next(Some(give_up));
            }
            Err(e) => {
                warning!("{e}");
                return;
            }
        }
    }
}

fn read_report(from: &OwnedFd) -> Option<Report> {
    let mut bytes = [0u8; 8];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: reads into the unfilled rest of `bytes`.
        let n = unsafe {
            libc::read(
                from.as_raw_fd(),
                bytes[got..].as_mut_ptr().cast(),
                bytes.len() - got,
            )
        };
        match n {
            n if n > 0 => got += n as usize,
            -1 if Errno::last() == Errno::EINTR => {}
            _ => return None,
        }
    }
    let number =
        |at: usize| i32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some([number(0), number(4)])
}

/// Has the kernel raise SIGCHLD at us whenever the inner ferrinit writes to `stops` (O_ASYNC,
/// with F_SETSIG): SIGCHLD already sends the loop to look at the inner ferrinit, so its wait
/// stays one sigtimedwait without timeout, and a user's signal is never mistaken for the word.
fn hear_stops(stops: &OwnedFd) -> Result<(), Errno> {
    // F_SETSIG from <fcntl.h>, which the libc crate lacks.
    const F_SETSIG: libc::c_int = 10;
    let fd = stops.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let set =
        |command, value: libc::c_int| Errno::result(unsafe { libc::fcntl(fd, command, value) });
    set(libc::F_SETOWN, std::process::id() as libc::c_int)?;
    set(F_SETSIG, libc::SIGCHLD)?;
    set(libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK)?;
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ContainError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(ContainError::Pipe)
}

/// Relays a signal to the inner ferrinit, with the value and sender of a `sigqueue`; errors are
/// never fatal (the inner ferrinit may be exiting). Its pid is safe to use: it is our child, and
/// reaped only once nothing is relayed any more.
fn relay(inner: Pid, sig: Sig, queued: Option<&Queued>) {
    match Target::Process(inner).send_queued(sig, queued) {
        Ok(()) => {}
        Err(Errno::ESRCH) => debug!("the inner ferrinit is gone; {sig} not relayed"),
        Err(e) => warning!("could not relay {sig} to the inner ferrinit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_are_the_kernels_version_2_struct() {
        assert_eq!(size_of::<CloneArgs>(), 88);
    }
}
