//! ferrinit's life after parsing, in run order: become a reaper, spawn the child, forward signals
//! and reap until the child exits, drain what is left, exit with the child's status.

use std::cell::Cell;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::cli::{Config, Mode};
use crate::drain::{Drained, drain};
use crate::environ::Environ;
use crate::exit_report::Watch;
use crate::exit_status::{ChildStatus, code};
use crate::fds;
use crate::forward::{Forwarding, Outgoing, Phase};
use crate::log::{debug, error, info, warning};
use crate::reap::Reaper;
use crate::signals::{Received, Sig, SignalState, Target};
use crate::spawn;
use crate::tty::{Stop, Terminal};

/// `parent`: ferrinit's parent when it started (for `-p`; read only when `-p` may be given).
pub fn run(config: &Config, environ: &Environ, signals: &SignalState, parent: Option<Pid>) -> u8 {
    run_as(config, environ, signals, parent, JobControl::Detect)
}

/// Who tells whether ferrinit runs as a job of a job-control shell.
pub enum JobControl {
    /// ferrinit itself ([`Terminal::under_job_control`]); it then stops itself.
    Detect,
    /// `--contain`'s outer ferrinit, which is the shell's job: `Some` when a job-control shell
    /// runs it, with the pipe that asks it to stop in our place.
    Outer(Option<OwnedFd>),
}

impl JobControl {
    /// How ferrinit stops for the shell; `None` when no shell would continue it.
    fn stop(self, terminal: Option<&Terminal>) -> Option<Stop> {
        match self {
            JobControl::Detect => terminal
                .filter(|t| t.under_job_control())
                .map(|_| Stop::Raise),
            JobControl::Outer(pipe) => pipe.map(Stop::AskOuter),
        }
    }
}

/// As [`run`], with job control as `job` says (see contain.rs).
pub fn run_as(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    parent: Option<Pid>,
    job: JobControl,
) -> u8 {
    run_then(config, environ, signals, parent, job, || 0)
}

/// As [`run`], then `sweep` (the end of `--contain=subreaper`) before the exit report, which
/// counts the processes it returns as SIGKILLed among `killed`.
pub fn run_and_sweep(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    parent: Option<Pid>,
    sweep: impl FnOnce() -> usize,
) -> u8 {
    run_then(config, environ, signals, parent, JobControl::Detect, sweep)
}

fn run_then(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    parent: Option<Pid>,
    job: JobControl,
    sweep: impl FnOnce() -> usize,
) -> u8 {
    // Borrowed where it lies, never moved (a copy of it all).
    let mut started = Watch::start(config.exit_report.as_deref());
    let watch = match &mut started {
        Ok(watch) => watch,
        Err(e) => {
            error!("{e}");
            sweep();
            return code::INTERNAL;
        }
    };
    let mut drained = Drained::default();
    let code = supervise(config, environ, signals, parent, job, watch, &mut drained);
    drained.killed += sweep();
    watch.finish(code, drained);
    code
}

fn supervise(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    parent: Option<Pid>,
    job: JobControl,
    watch: &mut Watch,
    drained: &mut Drained,
) -> u8 {
    if let Err(message) = become_reaper(config, parent, signals.own_pid()) {
        error!("{message}");
        return code::INTERNAL;
    }
    let Mode::Run(command) = config.mode else {
        return pause(config, signals, drained, watch.kept_fd());
    };
    // /dev/tty may need a slot that the OOM baseline's descriptors hold (a tight RLIMIT_NOFILE).
    let terminal = fds::open_or_make_room(Terminal::controlling);
    let give_terminal = terminal.as_ref().filter(|t| t.foreground_at_start());
    let child = match spawn::spawn(
        command,
        environ,
        signals,
        give_terminal,
        config.process_group,
    ) {
        Ok(child) => child,
        Err(e) => {
            error!("{e}");
            return e.exit_code();
        }
    };
    let stop = job.stop(terminal.as_ref());
    let keep: Vec<_> = stop
        .as_ref()
        .and_then(Stop::pipe)
        .into_iter()
        .chain(watch.kept_fd())
        .collect();
    fds::close_all_except(&keep);
    // Hold no mount busy; the child already has its own working directory.
    let _ = nix::unistd::chdir("/");
    // "Forked", not "started": ferrinit never learns whether the exec worked (a child whose
    // exec failed says so itself).
    info!("forked child {child} to run {}", command.name());

    let mut supervisor = Supervisor::new(config, child, terminal, stop, signals);
    let status = supervisor.wait_for_child();
    // What comes after the main loop (the OOM counter, the drain, --contain=subreaper's sweep)
    // opens descriptors of its own, which a tight RLIMIT_NOFILE leaves only once the signalfds
    // are closed; its waits have deadlines and take signals without one.
    signals.release_descriptor();
    // Had its exec failed, the child said why and exited 126 or 127: passed on like any code,
    // as tini does (`-e` applies).
    let core_dumped = supervisor.reaper.main_core_dumped;
    watch.child_ended(status, core_dumped, supervisor.last_forwarded.get());
    if let Some(grace) = config.grace_period {
        *drained = drain(
            signals,
            &mut supervisor.reaper,
            &mut supervisor.forwarding,
            grace,
            config.drain_signal,
        );
    }
    let code = config.remap_exit.exit_code(status);
    if let Some(terminal) = &supervisor.terminal {
        terminal.take_back(child);
    }
    code
}

struct Supervisor<'a> {
    signals: &'a SignalState,
    child: Pid,
    target: Target,
    reaper: Reaper,
    forwarding: Forwarding,
    terminal: Option<Terminal>,
    /// Set when a job-control shell runs ferrinit (or the outer ferrinit) as a job, on its
    /// controlling terminal: how ferrinit then stops.
    stop: Option<Stop>,
    /// The signal that stopped the main child, while ferrinit has yet to act on the stop.
    child_stopped: Option<Sig>,
    /// For the exit report: a death by this signal is one ferrinit passed on.
    last_forwarded: Cell<Option<Sig>>,
}

impl<'a> Supervisor<'a> {
    fn new(
        config: &'a Config,
        child: Pid,
        terminal: Option<Terminal>,
        stop: Option<Stop>,
        signals: &'a SignalState,
    ) -> Self {
        Supervisor {
            signals,
            child,
            target: if config.process_group {
                Target::Group(child)
            } else {
                Target::Process(child)
            },
            // On a terminal, the child's stops matter: Ctrl-Z, and SIGTTIN or SIGTTOU when it
            // needs the terminal.
            reaper: Reaper::new(Some(child), config.warn_on_reap, terminal.is_some()),
            forwarding: Forwarding::new(&config.rewrites, &config.delays),
            terminal,
            stop,
            child_stopped: None,
            last_forwarded: Cell::new(None),
        }
    }

    /// The main loop: one signal at a time, no timeout unless a delayed signal is held.
    fn wait_for_child(&mut self) -> ChildStatus {
        loop {
            let received = self.signals.next(self.forwarding.next_due());
            for due in self.forwarding.take_due(Instant::now(), Phase::Running) {
                self.send(due);
            }
            match received {
                None => {}
                Some(Received { sig: Sig::CHLD, .. }) => {
                    let reaped = self.reaper.reap_ready();
                    if let Some(status) = reaped.main_exited {
                        return status;
                    }
                    if let Some(by) = reaped.main_stopped {
                        self.child_was_stopped(by);
                    }
                }
                Some(received) => {
                    debug!("received {} from pid {}", received.sig, received.sender);
                    if received.sig == Sig::CONT && self.child_stopped.is_some() {
                        self.resume_child();
                        continue;
                    }
                    let now = Instant::now();
                    for out in self.forwarding.admit(received, Phase::Running, now) {
                        self.send(out);
                    }
                }
            }
        }
    }

    fn send(&self, out: Outgoing) {
        let sig = out.sig;
        let mut target = self.target;
        let mut result = target.send_queued(sig, out.queued.as_ref());
        // With -g: the child moved to another process group (setpgid), leaving its own empty.
        // The signal is still the child's.
        if let (Err(Errno::ESRCH), Target::Group(child)) = (result, target) {
            target = Target::Process(child);
            result = target.send_queued(sig, out.queued.as_ref());
            if result.is_ok() {
                warning!(
                    "process group {child} is gone (the child left it): {sig} sent to the child alone"
                );
            }
        }
        match result {
            Ok(()) => {
                self.last_forwarded.set(Some(sig));
                info!("forwarded {sig} to {target}")
            }
            // The child is exiting; its SIGCHLD is on its way.
            Err(Errno::ESRCH) => debug!("{target} is gone; {sig} not forwarded"),
            Err(e) => warning!("could not forward {sig} to {target}: {e}"),
        }
    }

    /// The child stopped. Stopped by SIGTTIN or SIGTTOU, it wants the terminal: if ferrinit's
    /// group holds the foreground, the child gets it and goes on at once. Otherwise, under a
    /// job-control shell (which waits for ferrinit, not for the child), ferrinit gives the
    /// terminal back and stops too (or has the outer ferrinit of `--contain` stop): the shell
    /// prints its prompt, and its `fg` continues us (see `resume_child`). Without one, only the
    /// child stops, until a SIGCONT comes to ferrinit.
    fn child_was_stopped(&mut self, by: Sig) {
        let Some(terminal) = &self.terminal else {
            return;
        };
        let wants_terminal = by == Sig::TTIN || by == Sig::TTOU;
        if wants_terminal && terminal.in_foreground() {
            // Its current group: should the child have moved to another one, continuing it
            // without giving that group the terminal would only stop it again. But only the
            // child's own group is continued whole: one it joined may hold processes outside
            // ferrinit's care (as PID 1 and session leader, its group is 1).
            match nix::unistd::getpgid(Some(self.child)) {
                Ok(group) if terminal.give_to(group) => {
                    info!("child stopped by {by}: giving it the terminal and continuing it");
                    if group == self.child {
                        continue_group(group);
                    } else if let Err(e) = Target::Process(self.child).send(Sig::CONT) {
                        warning!("could not continue child {}: {e}", self.child);
                    }
                }
                _ => {}
            }
        } else if let Some(stop) = &self.stop {
            self.child_stopped = Some(by);
            match stop {
                Stop::Raise => info!(
                    "child stopped by {by}: stopping ferrinit too, so that the shell can take over"
                ),
                Stop::AskOuter(_) => info!(
                    "child stopped by {by}: asking the outer ferrinit to stop, so that the shell can take over"
                ),
            }
            terminal.hand_back_and_stop(self.child, by, stop);
        } else if wants_terminal {
            // Should ferrinit get the foreground later, its next SIGCONT hands it on.
            self.child_stopped = Some(by);
        }
    }

    /// `fg` (or `bg`) continued ferrinit: continue the child's whole group, and give it the
    /// terminal if the shell gave it to us.
    fn resume_child(&mut self) {
        self.child_stopped = None;
        if let Some(terminal) = &self.terminal {
            terminal.hand_on(self.child);
        }
        continue_group(self.child);
    }
}

fn continue_group(group: Pid) {
    if let Err(e) = Target::Group(group).send(Sig::CONT) {
        warning!("could not continue process group {group}: {e}");
    }
}

/// `--pause`: no child. Reap whatever is re-parented to us until told to stop.
fn pause(
    config: &Config,
    signals: &SignalState,
    drained: &mut Drained,
    report: Option<RawFd>,
) -> u8 {
    fds::close_all_except(report.as_slice());
    let _ = nix::unistd::chdir("/");
    let mut reaper = Reaper::new(None, config.warn_on_reap, false);
    let mut forwarding = Forwarding::new(&config.rewrites, &config.delays);
    info!("pause mode: reaping until SIGTERM, SIGINT or SIGHUP");
    loop {
        let received = signals.next(None);
        match received.map(|r| r.sig) {
            Some(Sig::CHLD) => {
                reaper.reap_ready();
            }
            Some(sig @ (Sig::TERM | Sig::INT | Sig::HUP)) => {
                info!("received {sig}: leaving pause mode");
                break;
            }
            Some(sig) => info!("pause mode: ignoring {sig}"),
            None => {}
        }
    }
    // As after the main loop.
    signals.release_descriptor();
    if let Some(grace) = config.grace_period {
        *drained = drain(
            signals,
            &mut reaper,
            &mut forwarding,
            grace,
            config.drain_signal,
        );
    }
    0
}

/// Parent-death signal, subreaper (`-s`, or `-t` outside PID 1), and the warning when orphans
/// cannot be reaped here.
fn become_reaper(config: &Config, parent: Option<Pid>, pid: libc::pid_t) -> Result<(), String> {
    set_parent_death_signal(config, parent)?;
    // The drain of `-t` waits for every descendant and signals them: outside PID 1 they must
    // come back to ferrinit when their parents exit, or orphans would escape it.
    let subreaper = config.subreaper || (config.grace_period.is_some() && pid != 1);
    if subreaper {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    }
    if pid != 1 && !subreaper && !nix::sys::prctl::get_child_subreaper().unwrap_or(false) {
        // In pause mode there is no child, and nothing can be reaped at all.
        let consequence = match config.mode {
            Mode::Run(_) => "orphans of the child will not be reaped by ferrinit",
            Mode::Pause => "no orphan will be re-parented to ferrinit, so --pause reaps nothing",
        };
        warning!(
            "not running as PID 1 (pid {pid}) and not a subreaper: {consequence}; use -s or FERRINIT_SUBREAPER=1, or run ferrinit as PID 1"
        );
    }
    Ok(())
}

/// `-p`: the signal ferrinit gets when `parent` (its parent when it started) dies; raised at
/// once should it have died already.
pub fn set_parent_death_signal(config: &Config, parent: Option<Pid>) -> Result<(), String> {
    let Some(sig) = config.pdeathsig else {
        return Ok(());
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a plain signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig.number() as libc::c_ulong) } != 0 {
        return Err(format!(
            "cannot set the parent-death signal {sig}: {}",
            Errno::last()
        ));
    }
    // The parent may have died before the request: then the signal would never come. (`parent`
    // is always known here: lib.rs reads it whenever the arguments may hold `-p`.)
    if parent.is_some_and(|parent| nix::unistd::getppid() != parent) {
        // SAFETY: raising a signal has no memory-safety preconditions.
        unsafe { libc::raise(sig.number()) };
    }
    Ok(())
}
