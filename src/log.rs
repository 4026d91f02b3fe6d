//! Diagnostics: one line per message, on stderr only, never on the child's stdout.
//!
//! Verbosity: 0 errors only, 1 also warnings (default), 2 also info, 3 also debug.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

pub const DEFAULT_VERBOSITY: u8 = 1;
pub const MAX_VERBOSITY: u8 = 3;

static VERBOSITY: AtomicU8 = AtomicU8::new(DEFAULT_VERBOSITY);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

pub fn set_verbosity(verbosity: u8) {
    VERBOSITY.store(verbosity.min(MAX_VERBOSITY), Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= VERBOSITY.load(Ordering::Relaxed)
}

/// Formats the whole line first and hands it to the kernel in one `write`, so that lines from
/// ferrinit and from the child sharing stderr never interleave mid-line.
pub fn emit(level: Level, args: fmt::Arguments) {
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info | Level::Debug => "",
    };
    let mut line = String::with_capacity(128);
    let _ = writeln!(line, "ferrinit: {tag}{args}");
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, format_args!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Warn) {
            $crate::log::emit($crate::log::Level::Warn, format_args!($($arg)*))
        }
    };
}
macro_rules! info {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Info) {
            $crate::log::emit($crate::log::Level::Info, format_args!($($arg)*))
        }
    };
}
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            $crate::log::emit($crate::log::Level::Debug, format_args!($($arg)*))
        }
    };
}
pub(crate) use {debug, error, info, warning};
