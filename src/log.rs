//! Diagnostics: one line per message, on stderr only, never on the child's stdout.
//!
//! Verbosity: 0 errors only, 1 also warnings (default), 2 also info, 3 also debug.
//!
//! ferrinit never blocks on its own logging: a stderr pipe that nobody reads must not stop PID 1
//! from reaping and forwarding. A line that cannot be written at once is dropped and counted, and
//! the next line written says how many were lost. O_NONBLOCK cannot simply be set on descriptor 2:
//! the flag belongs to the open file description, which the child shares, and its own writes
//! would start failing with EAGAIN. So, chosen once by what stderr is:
//! - a pipe, FIFO or terminal is opened again through /proc/self/fd/2, with O_NONBLOCK: a
//!   description of ferrinit's own on the same pipe or terminal. A line of at most PIPE_BUF bytes
//!   then goes in whole or not at all (EAGAIN), whatever the child writes meanwhile. It is opened
//!   for each line and closed after it: a descriptor kept between lines would take the slot that
//!   a tight RLIMIT_NOFILE leaves the drain;
//! - a socket gets send(MSG_DONTWAIT), non-blocking for this one call only;
//! - anything else (a regular file, /dev/null) never keeps a writer waiting: plain write.
//!
//! A descriptor 2 open read-only (`2<&0`) is written to only as it is, which fails: reopening it
//! for writing would give ferrinit a write end of what is, for the child, its input.
//!
//! Without /proc, a pipe or terminal falls back to poll(POLLOUT, no timeout) and then a write of at
//! most PIPE_BUF bytes, which goes in whole when the pipe has room; the child could still fill
//! the pipe between the two calls, a window that only the reopened description closes.
//! Nothing here runs unless there is a line to write: no system call at start-up.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

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

/// Lines dropped since the last one written.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Formats the whole line first and hands it to the kernel in one `write`, so that lines from
/// ferrinit and from the child sharing stderr never interleave mid-line.
pub fn emit(level: Level, args: fmt::Arguments) {
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info | Level::Debug => "",
    };
    let mut line = Line::default();
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            line,
            "ferrinit: warning: {dropped} earlier log line{} dropped: stderr was not being read",
            if dropped == 1 { " was" } else { "s were" }
        );
    }
    let _ = writeln!(line, "ferrinit: {tag}{args}");
    if write_without_blocking(line.bytes()) {
        DROPPED.store(0, Ordering::Relaxed);
    } else {
        DROPPED.store(dropped + 1, Ordering::Relaxed);
    }
}

/// At most PIPE_BUF bytes, on the stack: what a pipe takes whole or not at all. A longer line
/// is cut, and still ends with a newline.
struct Line {
    buf: [u8; libc::PIPE_BUF],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line {
            buf: [0; libc::PIPE_BUF],
            len: 0,
        }
    }
}

impl Line {
    fn bytes(&mut self) -> &[u8] {
        if self.len == self.buf.len() {
            self.buf[self.len - 1] = b'\n';
        }
        &self.buf[..self.len]
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let take = text.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// What stderr is, found out at the first line.
const UNKNOWN: u8 = 0;
const REOPEN: u8 = 1;
const SOCKET: u8 = 2;
const PLAIN: u8 = 3;
static STDERR_KIND: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Whether the whole line was written. Never blocks, never allocates: the out-of-memory path
/// writes through it too.
pub fn write_without_blocking(line: &[u8]) -> bool {
    let written = match stderr_kind() {
        SOCKET => {
            // SAFETY: `line` is valid for its length; MSG_NOSIGNAL: no SIGPIPE either.
            unsafe {
                libc::send(
                    2,
                    line.as_ptr().cast(),
                    line.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            }
        }
        REOPEN => match private_descriptor() {
            Some(fd) => {
                // SAFETY: `line` is valid for its length; `fd` is ours and non-blocking, and
                // nothing uses it once it is closed here.
                unsafe {
                    let written = libc::write(fd, line.as_ptr().cast(), line.len());
                    libc::close(fd);
                    written
                }
            }
            None => {
                let mut pollfd = libc::pollfd {
                    fd: 2,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; a zero timeout never waits.
                let ready = unsafe { libc::poll(&mut pollfd, 1, 0) } == 1
                    && pollfd.revents & libc::POLLOUT != 0;
                if !ready {
                    return false;
                }
                // SAFETY: `line` is valid for its length.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) }
            }
        },
        // SAFETY: `line` is valid for its length.
        _ => unsafe { libc::write(2, line.as_ptr().cast(), line.len()) },
    };
    usize::try_from(written) == Ok(line.len())
}

fn stderr_kind() -> u8 {
    let known = STDERR_KIND.load(Ordering::Relaxed);
    if known != UNKNOWN {
        return known;
    }
    // SAFETY: `stat` is plain storage that fstat fills in before it is read.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes into `stat`.
    let kind = if unsafe { libc::fstat(2, &mut stat) } != 0 || !writable_stderr() {
        PLAIN
    } else {
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFIFO | libc::S_IFCHR if !is_dev_null(&stat) => REOPEN,
            libc::S_IFSOCK => SOCKET,
            _ => PLAIN,
        }
    };
    STDERR_KIND.store(kind, Ordering::Relaxed);
    kind
}

/// /dev/null (character device 1:3) never blocks: no need for a descriptor of our own.
fn is_dev_null(stat: &libc::stat) -> bool {
    stat.st_rdev == libc::makedev(1, 3)
}

/// Whether descriptor 2 was opened for writing. A read-only one (`2<&0`) is not reopened, which
/// would make ferrinit a writer of the child's input.
fn writable_stderr() -> bool {
    // SAFETY: F_GETFL has no memory-safety preconditions.
    let flags = unsafe { libc::fcntl(2, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// A non-blocking description of stderr of ferrinit's own, for one line: the caller closes it.
fn private_descriptor() -> Option<i32> {
    // O_NOCTTY: reopening a terminal must not make it ferrinit's controlling terminal.
    // SAFETY: the path is a valid C string.
    let fd = unsafe {
        libc::open(
            c"/proc/self/fd/2".as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    // No /proc, no descriptor left, or a FIFO without a reader (ENXIO): the caller polls.
    (fd >= 0).then_some(fd)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_to_pipe_buf_and_still_ends_with_a_newline() {
        let mut line = Line::default();
        let _ = writeln!(line, "ferrinit: {}", "x".repeat(10_000));
        let bytes = line.bytes();
        assert_eq!(bytes.len(), libc::PIPE_BUF);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let mut short = Line::default();
        let _ = writeln!(short, "ferrinit: {}", 42);
        assert_eq!(short.bytes(), b"ferrinit: 42\n");
    }
}
