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

mod inner;
mod outer;
mod userns;

use std::fmt;
use std::str::FromStr;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::cgroup::CgroupError;
use crate::cli::Config;
use crate::environ::Environ;
use crate::exit_status::code;
use crate::log::{debug, error, info, warning};
use crate::reap::Reaper;
use crate::signals::SignalState;
use crate::supervise;
use crate::sweep;
use outer::Outer;

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
    parent: Option<Pid>,
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
    parent: Option<Pid>,
) -> u8 {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        error!("--contain=subreaper: {}", ContainError::Subreaper(e));
        return code::INTERNAL;
    }
    reached("subreaper", missed);
    // `-p` is already in place: the parent-death signal set, and raised if the parent is gone.
    // The sweep comes before the exit report, which counts whom it killed.
    supervise::run_and_sweep(
        &inner_config(config, true),
        environ,
        signals,
        parent,
        || {
            let mut reaper = Reaper::new(None, config.warn_on_reap, false);
            sweep::kill_every_descendant(signals, &mut reaper)
        },
    )
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
}
