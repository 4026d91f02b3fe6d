//! ferrinit's life after parsing, in run order: become a reaper, spawn the child, forward signals
//! and reap until the child exits, drain what is left, exit with the child's status.

use std::cell::Cell;
use std::time::Instant;

use nix::unistd::Pid;

use crate::cli::{Config, Mode};
use crate::delay::Delays;
use crate::drain::{Drained, drain};
use crate::environ::Environ;
use crate::exit_report::Watch;
use crate::exit_status::{ChildStatus, code};
use crate::fds;
use crate::log::{debug, error, info, warning};
use crate::reap::Reaper;
use crate::signals::{Received, Sig, SignalState, Target};
use crate::spawn;
use crate::tty::Terminal;

pub fn run(config: &Config, environ: &Environ, signals: &SignalState) -> u8 {
    let mut watch = match Watch::start(config.exit_report.as_deref()) {
        Ok(watch) => watch,
        Err(e) => {
            error!("{e}");
            return code::INTERNAL;
        }
    };
    let mut drained = Drained::default();
    let code = supervise(config, environ, signals, &mut watch, &mut drained);
    watch.finish(code, drained);
    code
}

fn supervise(
    config: &Config,
    environ: &Environ,
    signals: &SignalState,
    watch: &mut Watch,
    drained: &mut Drained,
) -> u8 {
    if let Err(message) = become_reaper(config) {
        error!("{message}");
        return code::INTERNAL;
    }
    let Mode::Run(command) = &config.mode else {
        return pause(config, signals, drained);
    };
    let terminal = Terminal::foreground_at_start();
    let spawned = match spawn::spawn(command, environ, signals, terminal.as_ref()) {
        Ok(spawned) => spawned,
        Err(e) => {
            error!("{e}");
            return e.exit_code();
        }
    };
    let child = spawned.pid;
    fds::close_inherited();
    // Hold no mount busy; the child already has its own working directory.
    let _ = nix::unistd::chdir("/");
    info!("started child {child}: {}", command[0].to_string_lossy());

    let mut supervisor = Supervisor::new(config, child, terminal, signals);
    let status = supervisor.wait_for_child();
    // The child is reaped: had its exec failed, it said why before exiting.
    let code = match spawned.exec_error() {
        Some(e) => {
            error!("{e}");
            e.exit_code()
        }
        None => {
            let core_dumped = supervisor.reaper.main_core_dumped;
            watch.child_ended(status, core_dumped, supervisor.last_forwarded.get());
            if let Some(grace) = config.grace_period {
                *drained = drain(signals, &mut supervisor.reaper, grace, config.drain_signal);
            }
            config.remap_exit.exit_code(status)
        }
    };
    if let Some(terminal) = &supervisor.terminal {
        terminal.take_back(child);
    }
    code
}

struct Supervisor<'a> {
    config: &'a Config,
    signals: &'a SignalState,
    child: Pid,
    target: Target,
    reaper: Reaper,
    delays: Delays,
    terminal: Option<Terminal>,
    /// Started as a job in the terminal's foreground by a job-control shell.
    job_control: bool,
    child_stopped: bool,
    /// For the exit report: a death by this signal is one ferrinit passed on.
    last_forwarded: Cell<Option<Sig>>,
}

impl<'a> Supervisor<'a> {
    fn new(
        config: &'a Config,
        child: Pid,
        terminal: Option<Terminal>,
        signals: &'a SignalState,
    ) -> Self {
        let job_control = terminal.as_ref().is_some_and(Terminal::under_job_control);
        Supervisor {
            config,
            signals,
            child,
            target: if config.process_group {
                Target::Group(child)
            } else {
                Target::Process(child)
            },
            reaper: Reaper::new(Some(child), config.warn_on_reap, job_control),
            delays: Delays::new(&config.delays),
            terminal,
            job_control,
            child_stopped: false,
            last_forwarded: Cell::new(None),
        }
    }

    /// The main loop: one signal at a time, no timeout unless a delayed signal is held.
    fn wait_for_child(&mut self) -> ChildStatus {
        loop {
            let received = self.signals.next(self.delays.next_due());
            // Due delayed signals go out even while a storm keeps the wait from timing out.
            if self.delays.next_due().is_some() {
                for sig in self.delays.take_due(Instant::now()) {
                    self.forward(sig);
                }
            }
            match received {
                None => {}
                Some(Received { sig: Sig::CHLD, .. }) => {
                    let reaped = self.reaper.reap_ready();
                    if let Some(status) = reaped.main_exited {
                        return status;
                    }
                    if reaped.main_stopped {
                        self.child_was_stopped();
                    }
                }
                Some(Received { sig, sender }) => {
                    debug!("received {sig} from pid {sender}");
                    if sig == Sig::CONT && self.child_stopped {
                        self.resume_child();
                    } else if let Some(sig) = self.delays.admit(sig, Instant::now()) {
                        self.forward(sig);
                    } else {
                        info!("holding {sig} (--delay)");
                    }
                }
            }
        }
    }

    fn forward(&self, received: Sig) {
        let rewritten = self
            .config
            .rewrites
            .iter()
            .rev()
            .find(|(from, _)| *from == received);
        let sig = match rewritten {
            None => received,
            Some((_, Some(to))) => *to,
            Some((_, None)) => {
                info!("dropping {received} (--rewrite)");
                return;
            }
        };
        match self.target.send(sig) {
            Ok(()) => {
                self.last_forwarded.set(Some(sig));
                info!("forwarded {sig} to {}", self.target)
            }
            // The child is exiting; its SIGCHLD is on its way.
            Err(nix::errno::Errno::ESRCH) => debug!("{} is gone; {sig} not forwarded", self.target),
            Err(e) => warning!("could not forward {sig} to {}: {e}", self.target),
        }
    }

    /// Ctrl-Z stopped the child. A shell waits for ferrinit, not for the child, so ferrinit gives
    /// the terminal back and stops too: the shell prints its prompt, and its `fg` continues us.
    fn child_was_stopped(&mut self) {
        if !self.job_control {
            return;
        }
        self.child_stopped = true;
        if let Some(terminal) = &self.terminal {
            terminal.take_back(self.child);
        }
        info!("child stopped: stopping ferrinit too, so that the shell can take over");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }

    /// `fg` (or `bg`) continued ferrinit: continue the child's whole group, and give it the
    /// terminal again if the shell gave it to us.
    fn resume_child(&mut self) {
        self.child_stopped = false;
        if let Some(terminal) = self.terminal.as_ref().filter(|t| t.in_foreground()) {
            terminal.give_to(self.child);
        }
        if let Err(e) = Target::Group(self.child).send(Sig::CONT) {
            warning!("could not continue process group {}: {e}", self.child);
        }
    }
}

/// `--pause`: no child. Reap whatever is re-parented to us until told to stop.
fn pause(config: &Config, signals: &SignalState, drained: &mut Drained) -> u8 {
    fds::close_inherited();
    let _ = nix::unistd::chdir("/");
    let mut reaper = Reaper::new(None, config.warn_on_reap, false);
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
    if let Some(grace) = config.grace_period {
        *drained = drain(signals, &mut reaper, grace, config.drain_signal);
    }
    0
}

/// Parent-death signal, subreaper, and the warning when orphans cannot be reaped here.
fn become_reaper(config: &Config) -> Result<(), String> {
    if let Some(sig) = config.pdeathsig {
        let parent = nix::unistd::getppid();
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a plain signal number.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig.number() as libc::c_ulong) } != 0 {
            return Err(format!(
                "cannot set the parent-death signal {sig}: {}",
                nix::errno::Errno::last()
            ));
        }
        // The parent may have died before the request: then the signal would never come.
        if nix::unistd::getppid() != parent {
            // SAFETY: raising a signal has no memory-safety preconditions.
            unsafe { libc::raise(sig.number()) };
        }
    }
    if config.subreaper {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    }
    let pid = std::process::id();
    if pid != 1 && !nix::sys::prctl::get_child_subreaper().unwrap_or(false) {
        warning!(
            "not running as PID 1 (pid {pid}) and not a subreaper: orphans of the child will not be reaped by ferrinit; use -s or FERRINIT_SUBREAPER=1, or run ferrinit as PID 1"
        );
    }
    Ok(())
}
