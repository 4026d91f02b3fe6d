//! ferrinit: a tiny init for containers and PID namespaces.
//!
//! Read in run order: [`main`] → cli → signals → supervise (spawn, reap, drain) → exit_status.

mod cli;
mod delay;
mod drain;
mod environ;
mod exit_report;
mod exit_status;
mod fds;
mod log;
mod reap;
mod signals;
mod spawn;
mod supervise;
mod tty;

use exit_status::code;

/// ferrinit's whole life; returns its exit code.
///
/// # Safety
/// `argv` must hold `argc` valid C strings, as the C runtime passes them to `main`.
pub unsafe fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // First of all, so that no signal is lost before the loop, and none kills us meanwhile.
    let signals = match signals::SignalState::take_over() {
        Ok(signals) => signals,
        Err(e) => return exit(code::INTERNAL, format_args!("{e}")),
    };
    fds::reserve_closed_stdio();
    // SAFETY: the caller passes the C runtime's argc and argv.
    let args = unsafe { cli::args_from_c(argc, argv) };
    let environ = environ::Environ::capture();
    let config = match cli::parse(args, |name| environ.get(name).map(ToOwned::to_owned)) {
        Ok(cli::Action::Run(config)) => config,
        Ok(cli::Action::Print(text)) => return print(&text),
        Err(e) => return exit(code::USAGE, format_args!("{e}; see 'ferrinit --help'")),
    };
    log::set_verbosity(config.verbosity);
    let code = supervise::run(&config, &environ, &signals);
    // Straight out: nothing left to clean up is worth the instructions.
    std::process::exit(code.into())
}

fn exit(status: u8, message: std::fmt::Arguments) -> libc::c_int {
    log::emit(log::Level::Error, message);
    status.into()
}

fn print(text: &str) -> libc::c_int {
    use std::io::Write;
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(_) => code::INTERNAL.into(),
    }
}
