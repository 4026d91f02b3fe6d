//! `--contain[=LEVEL]`: everything the command starts stays inside, and is gone when it exits.
//!
//! - `pidns`: a new PID namespace (with a mount namespace and a fresh /proc, and a user namespace
//!   when ferrinit lacks the privilege). Inside, a fork of ferrinit is PID 1 and does all it does
//!   today; when it exits, the kernel kills everything left in the namespace.
//! - `cgroup`: a leaf cgroup v2 below ferrinit's own; at the end `cgroup.kill` empties it (and
//!   a janitor process does the same should ferrinit be SIGKILLed).
//! - `subreaper`: ferrinit is a child subreaper and sweeps its descendants at the end.
//! - `auto`: the first of those that can be had.
//!
//! For `pidns` and `cgroup`, the process the user started (the *outer* ferrinit) stays outside:
//! it relays every signal to the *inner* one, a fork of itself that never execs, waits for it and
//! exits with its status. Running Rust code in that fork is sound because ferrinit is
//! single-threaded: no lock (malloc's, stdio's) can be held by a thread that does not exist in
//! the child. The command itself is started by the inner ferrinit through spawn.rs, with only
//! async-signal-safe calls between its fork and exec, and with the signal state ferrinit was
//! started with.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

use crate::cgroup::{CgroupError, Janitor, Leaf};
use crate::cli::Config;
use crate::environ::Environ;
use crate::exit_status::{ChildStatus, code};
use crate::fds;
use crate::log::{debug, error, info, warning};
use crate::reap::Reaper;
use crate::signals::{Queued, Sig, SignalState, Target};
use crate::supervise::{self, JobControl};
use crate::sweep;
use crate::tty::{Stop, Terminal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Auto,
    Pidns,
    Cgroup,
    Subreaper,
}

impl FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Level, String> {
        match text {
            "auto" => Ok(Level::Auto),
            "pidns" => Ok(Level::Pidns),
            "cgroup" => Ok(Level::Cgroup),
            "subreaper" => Ok(Level::Subreaper),
            _ => Err("expected auto, pidns, cgroup or subreaper".into()),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Auto => "auto",
            Level::Pidns => "pidns",
            Level::Cgroup => "cgroup",
            Level::Subreaper => "subreaper",
        })
    }
}

/// Why a level cannot be had here.
#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error("user namespaces are disabled: user.max_user_namespaces=0")]
    UserNamespacesDisabled,
    #[error("no user namespace left to create: user.max_user_namespaces={0} (or 32 levels deep)")]
    UserNamespaceLimit(String),
    #[error(
        "unprivileged user namespaces are restricted: kernel.apparmor_restrict_unprivileged_userns=1"
    )]
    AppArmorRestricted,
    #[error("unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone=0")]
    UnprivilegedUsernsDisabled,
    #[error(
        "cannot create a user and PID namespace: {0} (a seccomp filter, such as a container runtime's, may forbid it)"
    )]
    NamespacesForbidden(Errno),
    #[error("{0} needs Linux {1} or later")]
    KernelTooOld(&'static str, &'static str),
    #[error("cannot create the namespaces: {0}")]
    Clone(Errno),
    #[error("cannot write the uid and gid maps of the user namespace: {0}")]
    IdMap(#[source] std::io::Error),
    #[error(
        "root without CAP_SYS_ADMIN needs a user namespace, and mapping root into one needs CAP_SETFCAP"
    )]
    RootMapNeedsSetfcap,
    #[error("cannot {0} inside the new namespaces: {1}")]
    Inside(&'static str, Errno),
    /// How it ended: "exited with N", "killed by SIG".
    #[error("the inner ferrinit died while starting: it {0}")]
    InnerDied(String),
    #[error("cannot make the pipes to the inner ferrinit: {0}")]
    Pipe(Errno),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot start a process in cgroup {0}: {1}")]
    IntoCgroup(String, Errno),
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(Errno),
}

/// `parent`: ferrinit's parent when it started, for `-p` (see lib.rs).
pub fn run(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    level: Level,
    parent: Pid,
) -> u8 {
    if std::process::id() == 1 {
        info!("--contain: already PID 1 of a PID namespace, which holds all the command starts");
        return supervise::run(config, environ, signals, parent);
    }
    // `-p`: the outer ferrinit is the one whose parent matters.
    if let Err(message) = supervise::set_parent_death_signal(config, parent) {
        error!("{message}");
        return code::INTERNAL;
    }
    let ladder: &[Level] = match level {
        Level::Auto => &[Level::Pidns, Level::Cgroup, Level::Subreaper],
        Level::Pidns => &[Level::Pidns],
        Level::Cgroup => &[Level::Cgroup],
        Level::Subreaper => &[Level::Subreaper],
    };
    let mut missed = Vec::new();
    for &rung in ladder {
        let result = match rung {
            Level::Pidns => Outer::pidns(config, environ, signals),
            Level::Cgroup => Outer::cgroup(config, environ, signals),
            _ => return subreaper(config, environ, signals, &missed, parent),
        };
        match result {
            Ok(outer) => {
                reached(&outer.how, &missed);
                return outer.supervise(config, signals);
            }
            Err(e) if level == Level::Auto => {
                debug!("--contain: no {rung}: {e}");
                missed.push(format!("no {rung}: {e}"));
            }
            Err(e) => {
                error!("--contain={rung}: {e}");
                return code::INTERNAL;
            }
        }
    }
    code::INTERNAL
}

fn reached(how: &str, missed: &[String]) {
    if missed.is_empty() {
        info!("contained: {how}");
    } else if how == "subreaper" {
        // The fallback guarantees less (README, "Containment"): said even when not asked.
        warning!("contained: {how} ({})", missed.join("; "));
    } else {
        info!("contained: {how} ({})", missed.join("; "));
    }
}

/// The inner ferrinit's configuration: the outer one keeps `-p` and the containment.
fn inner_config(config: &Config, subreaper: bool) -> Config {
    let mut inner = config.clone();
    inner.pdeathsig = None;
    inner.contain = None;
    inner.subreaper |= subreaper;
    inner
}

/// `--contain=subreaper`: no inner process. ferrinit itself reaps and drains as with `-s`, then
/// sweeps until no descendant is left.
fn subreaper(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    missed: &[String],
    parent: Pid,
) -> u8 {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        error!("--contain=subreaper: {}", ContainError::Subreaper(e));
        return code::INTERNAL;
    }
    reached("subreaper", missed);
    // `-p` is already in place: the parent-death signal set, and raised if the parent is gone.
    let status = supervise::run(&inner_config(config, true), environ, signals, parent);
    let mut reaper = Reaper::new(None, config.warn_on_reap, false);
    sweep::kill_every_descendant(signals, &mut reaper);
    status
}

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

/// What the inner ferrinit does before it supervises the command.
#[derive(Clone, Copy)]
enum Setup {
    /// Private mount propagation, then a fresh /proc for the new PID namespace.
    MountProc,
    Nothing,
}

/// What the inner ferrinit reports before it goes on: `[0, 0]`, or the step that failed and
/// its errno. When a job-control shell runs the outer ferrinit, the same pipe then carries the
/// inner one's word that the command stopped (see `Outer::hear_stop`).
type Report = [i32; 2];
const STEPS: [&str; 3] = ["", "make mount propagation private", "mount a fresh /proc"];

/// The outer ferrinit, once the inner one is running and contained.
struct Outer {
    how: String,
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
    fn pidns(
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

    fn cgroup(
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
    fn supervise(mut self, config: &Config, signals: &SignalState) -> u8 {
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

/// The inner ferrinit's ends of its pipes with the outer one.
struct InnerEnds {
    /// Readable at the outer ferrinit's go; hangs up should the outer ferrinit die first.
    lifeline: OwnedFd,
    /// For the report, and then, with `job_control`, the word that the command stopped.
    report: OwnedFd,
    /// A job-control shell runs the outer ferrinit.
    job_control: bool,
}

/// The inner ferrinit: waits for the outer one's go, arranges to die with it, sets up the
/// namespaces, reports, and runs as the command's init. Never returns.
fn inner_main(
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
    let status = supervise::run_as(config, environ, &signals, Pid::from_raw(0), job);
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

/// Our own uid and gid, mapped to themselves: the command runs as the caller, and its files
/// keep their owner. `setgroups` must be denied before an unprivileged `gid_map`.
fn write_id_maps(inner: Pid) -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let proc = format!("/proc/{inner}");
    std::fs::write(format!("{proc}/uid_map"), format!("{uid} {uid} 1\n"))?;
    match std::fs::write(format!("{proc}/setgroups"), "deny") {
        // Kernels before 3.19 have no setgroups file, and need none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => other?,
    }
    std::fs::write(format!("{proc}/gid_map"), format!("{gid} {gid} 1\n"))
}

/// Names the reason an unprivileged user namespace was refused.
fn explain_user_namespace(e: ContainError) -> ContainError {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .map(|v| v.trim().to_owned())
            .ok()
    };
    match e {
        ContainError::Clone(Errno::ENOSPC) => match sysctl("user/max_user_namespaces") {
            Some(max) if max == "0" => ContainError::UserNamespacesDisabled,
            Some(max) => ContainError::UserNamespaceLimit(max),
            None => ContainError::UserNamespaceLimit("?".into()),
        },
        ContainError::Clone(errno @ (Errno::EPERM | Errno::EACCES)) => {
            if sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
                ContainError::AppArmorRestricted
            } else if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
                ContainError::UnprivilegedUsernsDisabled
            } else {
                ContainError::NamespacesForbidden(errno)
            }
        }
        other => other,
    }
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
    fn levels_parse_and_print_alike() {
        for level in [Level::Auto, Level::Pidns, Level::Cgroup, Level::Subreaper] {
            assert_eq!(level.to_string().parse::<Level>(), Ok(level));
        }
        assert!("namespace".parse::<Level>().is_err());
        assert!("".parse::<Level>().is_err());
    }

    #[test]
    fn clone_args_are_the_kernels_version_2_struct() {
        assert_eq!(size_of::<CloneArgs>(), 88);
    }
}
