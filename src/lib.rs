//! ferrinit: a tiny init for containers and PID namespaces.
//!
//! Read in run order, as [`main`] has it: note the parent (for `-p`) → signals (block them all)
//! → environ → cli → fds (fill closed stdio) → supervise (become a reaper, spawn, forward and
//! reap, drain) → exit with the code from exit_status.

mod cgroup;
mod cli;
mod contain;
mod delay;
mod drain;
mod environ;
mod exit_report;
mod exit_status;
mod fds;
mod forward;
mod log;
mod mounts;
mod reap;
mod signals;
mod spawn;
mod supervise;
mod sweep;
mod tty;

use exit_status::code;
/// For main.rs's out-of-memory line.
pub use log::write_without_blocking;

/// ferrinit's whole life; returns its exit code.
///
/// # Safety
/// `argv` must hold `argc` valid C strings, as the C runtime passes them to `main`.
pub unsafe fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the caller passes the C runtime's argc and argv, which nothing changes.
    let argv = unsafe { cli::Argv::from_c(argc, argv) };
    // Before anything that takes time: `-p` must notice a parent that died since our exec, and
    // once it has died getppid names whoever adopted us instead. Only `-p` needs it.
    let parent = argv
        .may_ask_for_parent_death_signal()
        .then(nix::unistd::getppid);
    // Then at once, so that no signal is lost before the loop, and none kills us meanwhile.
    let taken = signals::SignalState::take_over();
    let signals = match &taken {
        Ok(signals) => signals,
        Err(e) => return exit(code::INTERNAL, format_args!("{e}")),
    };
    let environ = environ::Environ::capture();
    // Borrowed where it lies, never moved: a move copies the whole configuration.
    let parsed = cli::parse(argv, |name| environ.get(name).map(ToOwned::to_owned));
    let config = match &parsed {
        Ok(cli::Action::Run(config)) => config,
        Ok(cli::Action::Print(text)) => return print(text),
        Err(e) => return exit(code::USAGE, format_args!("{e}; see 'ferrinit --help'")),
    };
    log::set_verbosity(config.verbosity);
    // Closed stdio is filled before ferrinit opens a descriptor it keeps (fds.rs). Without
    // --contain, the first is the exit report's look at the memory cgroup, through
    // fds::open_first, which fills it at no cost when nothing is closed; --contain opens its own
    // before that.
    let code = match config.contain {
        Some(level) => {
            fds::reserve_closed_stdio();
            contain::run(config, &environ, signals, level, parent)
        }
        None => supervise::run(config, &environ, signals, parent),
    };
    // Straight out: every log line has gone to stderr with its own write, and nothing else is
    // buffered, so the C library's exit handlers have nothing to do worth their instructions.
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code.into()) }
}

fn exit(status: u8, message: std::fmt::Arguments) -> libc::c_int {
    log::emit(log::Level::Error, message);
    status.into()
}

/// Help, version, licence. Failing to write them is a failure like any other: one line on
/// stderr and 125, a closed pipe included (`ferrinit --help | true`), so that a script never
/// takes a help text nobody received for a success.
fn print(text: &str) -> libc::c_int {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => 0,
        Err(e) => exit(code::INTERNAL, format_args!("cannot write to stdout: {e}")),
    }
}
