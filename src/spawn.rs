//! Starting the main child: fork, give it its own process group (and the terminal), hand back the
//! signal state ferrinit inherited, exec. Everything the child needs is prepared before `fork`, so
//! that between `fork` and `exec` it makes only async-signal-safe calls.
//!
//! A child whose exec fails says why itself, in one line on stderr, and exits 127 (not found) or
//! 126 (found, but it cannot run), as tini's does: ferrinit then passes that code on like any
//! other (`-e` applies), and needs no memory shared with the child nor any descriptor to learn
//! what happened.
//!
//! The command's arguments and the environment are handed to execve where the C runtime put
//! them, never copied (see cli.rs).

use std::ffi::{CStr, OsStr};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::cli::Command;
use crate::environ::Environ;
use crate::exit_status::code;
use crate::signals::SignalState;
use crate::tty::Terminal;

/// glibc's search path when PATH is unset (confstr(_CS_PATH)), as execvp uses.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot fork the child: {0}")]
    Fork(#[source] Errno),
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::Fork(_) => code::INTERNAL,
        }
    }
}

fn plural(dirs: usize) -> &'static str {
    if dirs == 1 {
        "directory searched"
    } else {
        "directories searched"
    }
}

/// Everything `exec` needs, built before `fork`.
struct Exec {
    command: Command,
    /// Where to search the program, unless its name holds a '/'.
    path: Option<&'static [u8]>,
    envp: *const *const libc::c_char,
    /// Only for socket activation: the rewritten environment that `envp` points into, and the
    /// `LISTEN_PID=` slot the child fills in with its pid.
    listen: Option<(Vec<*const libc::c_char>, Box<[u8; 32]>)>,
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

/// The longest path the kernel takes, NUL included.
const PATH_MAX: usize = libc::PATH_MAX as usize;
/// Longest program name searched in PATH (glibc's execvp: ENAMETOOLONG from NAME_MAX on).
const NAME_MAX: usize = 255;

impl Exec {
    fn new(command: Command, environ: &Environ) -> Exec {
        let name = command.program().to_bytes();
        let path = (!name.contains(&b'/'))
            .then(|| environ.get("PATH").map_or(DEFAULT_PATH, |p| p.as_bytes()));
        let mut exec = Exec {
            command,
            path,
            envp: environ.block(),
            listen: listen_environment(environ),
        };
        if let Some((envp, _)) = &exec.listen {
            exec.envp = envp.as_ptr();
        }
        exec
    }

    /// In the child: runs the command, or says why it cannot and exits (126 or 127).
    /// Async-signal-safe only.
    fn exec_in_child(&mut self) -> ! {
        let mut finding = Finding::default();
        self.search_and_exec(&mut finding);
        self.report_in_child(&finding)
    }

    /// Runs the program as glibc's execvp does: directly if it names a path, else from each
    /// PATH entry in turn, building each full path on the stack, going on past the errors that
    /// say "not here" and remembering EACCES. Leaves why nothing could run in `finding`.
    /// Runs in the child: async-signal-safe only.
    fn search_and_exec(&mut self, finding: &mut Finding) {
        let name = self.command.program().to_bytes();
        // execvp's answer for an empty name, which no PATH entry can supply.
        if name.is_empty() {
            finding.errno = Errno::ENOENT as i32;
            return;
        }
        let Some(path) = self.path else {
            let errno = self.exec_one(self.command.program().as_ptr(), finding);
            finding.errno = errno as i32;
            return;
        };
        if name.len() >= NAME_MAX {
            finding.errno = Errno::ENAMETOOLONG as i32;
            return;
        }
        // As glibc: an entry of PATH_MAX bytes or more is skipped; a shorter one is tried even
        // when, with the name, it is too long (execve's ENAMETOOLONG then ends the search).
        let mut full = [0u8; PATH_MAX + NAME_MAX + 1];
        let mut denied = false;
        let mut last = Errno::ENOENT;
        for dir in path.split(|&b| b == b':') {
            if dir.len() >= PATH_MAX {
                continue;
            }
            // An empty PATH entry means the current directory: the name alone.
            let prefix = if dir.is_empty() { 0 } else { dir.len() + 1 };
            let len = prefix + name.len();
            if prefix > 0 {
                full[..dir.len()].copy_from_slice(dir);
                full[dir.len()] = b'/';
            }
            full[prefix..len].copy_from_slice(name);
            full[len] = 0;
            last = self.exec_one(full.as_ptr().cast(), finding);
            match last {
                Errno::EACCES => denied = true,
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                other => {
                    finding.errno = other as i32;
                    return;
                }
            }
        }
        finding.errno = if denied { Errno::EACCES } else { last } as i32;
    }

    /// One execve, with execvp's fallback to `/bin/sh FILE ARG...` for a file of no known
    /// format (ENOEXEC): then the shell's errno is the answer, as with execvp. On failure, looks
    /// at the file from where the user named it (this process has not left the user's working
    /// directory) and notes what explains the failure. Async-signal-safe.
    fn exec_one(&mut self, file: *const libc::c_char, finding: &mut Finding) -> Errno {
        let argv = self.command.argv();
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the
        // call, and `file` is a NUL-terminated path; execve only returns on failure.
        unsafe { libc::execve(file, argv.cast_const(), self.envp) };
        let mut errno = Errno::last();
        if errno == Errno::ENOEXEC {
            // SAFETY: `argv[-1]` is part of argv (Command's contract) and this is the child's own
            // copy of it: the shell's arguments are built in place and put back afterwards.
            unsafe {
                let sh_argv = argv.sub(1);
                let saved = (*sh_argv, *argv);
                *sh_argv = c"/bin/sh".as_ptr();
                *argv = file;
                libc::execve(c"/bin/sh".as_ptr(), sh_argv.cast_const(), self.envp);
                errno = Errno::last();
                (*sh_argv, *argv) = saved;
            }
            finding.note(file, Kind::NoShell, &[]);
        } else {
            finding.examine(file, errno);
        }
        errno
    }

    /// In the child, once every exec has failed: says why on stderr and exits 127 when the
    /// command does not exist, 126 when it exists but cannot run (as shells do).
    /// Async-signal-safe: the line is formatted on the stack and written as every log line is,
    /// never waiting on a full pipe.
    fn report_in_child(&self, finding: &Finding) -> ! {
        // The inherited signal state is back in place: a write to a pipe nobody reads, or past
        // RLIMIT_FSIZE, must not kill the child with a signal that would hide its exit code;
        // nor must a write to the terminal from the background under `stty tostop` stop it
        // (SIGTTOU blocked lets the write through): the line is ferrinit's, not the command's.
        let own_writes: u64 =
            1 << (libc::SIGPIPE - 1) | 1 << (libc::SIGXFSZ - 1) | 1 << (libc::SIGTTOU - 1);
        // SAFETY: a raw rt_sigprocmask with a readable 8-byte kernel set: async-signal-safe.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                &own_writes as *const u64,
                std::ptr::null_mut::<u64>(),
                size_of::<u64>(),
            )
        };
        let failure = ExecFailure {
            exec: self,
            finding,
        };
        crate::log::error!("{failure}");
        // SAFETY: _exit is async-signal-safe and does not return.
        unsafe { libc::_exit(finding.exit_code().into()) }
    }
}

/// Why the command could not be run, as the child tells it. Formats without allocating.
struct ExecFailure<'a> {
    exec: &'a Exec,
    finding: &'a Finding,
}

impl fmt::Display for ExecFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = Lossy(self.exec.command.program().to_bytes());
        let file = Lossy(self.finding.file());
        // In a PATH search, name the file the finding is about.
        let subject = Subject {
            file: self.exec.path.is_some().then_some(file),
        };
        let errno = self.finding.errno();
        write!(f, "cannot run '{command}': ")?;
        match (errno, self.finding.kind) {
            (Errno::EACCES, Kind::Directory) => write!(f, "{subject} is a directory"),
            (Errno::ENOENT | Errno::ENOTDIR, Kind::MissingInterpreter) => {
                let interpreter = Lossy(self.finding.interpreter());
                write!(
                    f,
                    "{subject} is a script for '{interpreter}', which does not exist"
                )
            }
            (Errno::ENOENT | Errno::ENOTDIR, Kind::MissingLoader) => write!(
                f,
                "{subject} exists, but its program interpreter (dynamic loader) does not"
            ),
            // (An EACCES met elsewhere in PATH is the answer then, as with execvp.)
            (errno, Kind::NoShell) if errno != Errno::EACCES => write!(
                f,
                "{subject} is in no executable format, and /bin/sh could not run it: {}",
                errno.desc()
            ),
            (Errno::ENOENT | Errno::ENOTDIR, _) if self.exec.path.is_some() => {
                let searched = self
                    .exec
                    .path
                    .map_or(0, |p| p.split(|&b| b == b':').count());
                write!(f, "not found in PATH ({searched} {})", plural(searched))
            }
            _ => f.write_str(errno.desc()),
        }
    }
}

/// The file a message is about: `'FILE'` in a PATH search, else `it` (the command named it).
struct Subject<'a> {
    file: Option<Lossy<'a>>,
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "'{file}'"),
            None => f.write_str("it"),
        }
    }
}

/// Bytes shown as `String::from_utf8_lossy` would, without allocating.
struct Lossy<'a>(&'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

/// What the child found out about a failed exec.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Nothing,
    /// EACCES from a directory.
    Directory,
    /// ENOENT from a script whose `#!` interpreter is missing.
    MissingInterpreter,
    /// ENOENT from a file that exists and is no script: its ELF interpreter is missing.
    MissingLoader,
    /// ENOEXEC, and /bin/sh could not be run in its place.
    NoShell,
}

/// The longest `#!` line the kernel reads (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

struct Finding {
    /// errno of the exec that failed, 0 if none did.
    errno: i32,
    /// The first explanation found, and the file (and interpreter) it is about.
    kind: Kind,
    file_len: u16,
    file: [u8; PATH_MAX],
    interpreter_len: u16,
    interpreter: [u8; SHEBANG_MAX],
}

impl Default for Finding {
    fn default() -> Finding {
        Finding {
            errno: 0,
            kind: Kind::Nothing,
            file_len: 0,
            file: [0; PATH_MAX],
            interpreter_len: 0,
            interpreter: [0; SHEBANG_MAX],
        }
    }
}

impl Finding {
    fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }

    /// 127 when the command does not exist, 126 when it exists but cannot run (as shells do).
    fn exit_code(&self) -> u8 {
        match self.errno() {
            Errno::ENOENT | Errno::ENOTDIR => code::NOT_FOUND,
            _ => code::NOT_EXECUTABLE,
        }
    }

    fn file(&self) -> &[u8] {
        &self.file[..usize::from(self.file_len).min(PATH_MAX)]
    }

    fn interpreter(&self) -> &[u8] {
        &self.interpreter[..usize::from(self.interpreter_len).min(SHEBANG_MAX)]
    }

    /// Notes what explains `errno` for `file`, unless something was noted already. Uses only
    /// stat, open, read and close: async-signal-safe.
    fn examine(&mut self, file: *const libc::c_char, errno: Errno) {
        if self.kind != Kind::Nothing {
            return;
        }
        // The file must be opened, and the line written, under a tight RLIMIT_NOFILE too.
        crate::fds::close_left_open();
        match errno {
            Errno::EACCES => {
                // SAFETY: `stat` is plain storage, filled in by the call before it is read.
                let mut stat: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `file` is a NUL-terminated path.
                let is_dir = unsafe { libc::stat(file, &mut stat) } == 0
                    && stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir {
                    self.note(file, Kind::Directory, &[]);
                }
            }
            Errno::ENOENT => {
                let mut head = [0u8; SHEBANG_MAX];
                // SAFETY: `file` is a NUL-terminated path; `head` is writable for its length.
                let read = unsafe {
                    let fd = libc::open(file, libc::O_RDONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return;
                    }
                    let read = libc::read(fd, head.as_mut_ptr().cast(), head.len());
                    libc::close(fd);
                    usize::try_from(read).unwrap_or(0)
                };
                match interpreter_of(&head[..read]) {
                    Some(interpreter) => self.note(file, Kind::MissingInterpreter, interpreter),
                    None => self.note(file, Kind::MissingLoader, &[]),
                }
            }
            _ => {}
        }
    }

    /// Records the first explanation found. Async-signal-safe.
    fn note(&mut self, file: *const libc::c_char, kind: Kind, interpreter: &[u8]) {
        if self.kind != Kind::Nothing {
            return;
        }
        // SAFETY: `file` is a NUL-terminated path (of which PATH_MAX bytes are kept: a longer
        // one could not have been found).
        let path = unsafe { CStr::from_ptr(file) }.to_bytes();
        let len = path.len().min(PATH_MAX);
        self.file[..len].copy_from_slice(&path[..len]);
        self.file_len = len as u16;
        let len = interpreter.len().min(SHEBANG_MAX);
        self.interpreter[..len].copy_from_slice(&interpreter[..len]);
        self.interpreter_len = len as u16;
        self.kind = kind;
    }
}

/// The interpreter a `#!` line names: after `#!` and blanks, up to a blank or the line's end.
fn interpreter_of(head: &[u8]) -> Option<&[u8]> {
    let line = head.strip_prefix(b"#!")?;
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let line = &line[start..];
    let end = line
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0))
        .unwrap_or(line.len());
    (end > 0).then_some(&line[..end])
}

/// ferrinit's own environment is the child's, untouched, except for socket activation: when
/// LISTEN_PID names ferrinit, the descriptors are meant for the child, so LISTEN_PID must name the
/// child (filled in after fork) and LISTEN_PIDFDID, which would name ferrinit too, is dropped.
/// Only then is the block of pointers copied.
fn listen_environment(environ: &Environ) -> Option<(Vec<*const libc::c_char>, Box<[u8; 32]>)> {
    let names_us = |pid: &OsStr| pid.as_bytes() == std::process::id().to_string().as_bytes();
    if !environ.get("LISTEN_PID").is_some_and(names_us) {
        return None;
    }
    let slot = Box::new([0u8; 32]);
    let starts_with = |entry: *const libc::c_char, prefix: &[u8]| {
        // SAFETY: every entry is a valid C string from `environ`.
        unsafe { CStr::from_ptr(entry) }
            .to_bytes()
            .starts_with(prefix)
    };
    let envp = environ
        .entries()
        .filter(|&entry| !starts_with(entry, b"LISTEN_PIDFDID="))
        .map(|entry| {
            if starts_with(entry, LISTEN_PID) {
                slot.as_ptr().cast()
            } else {
                entry
            }
        })
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    Some((envp, slot))
}

/// Writes `LISTEN_PID=<pid>\0` into the slot. Async-signal-safe (no allocation, no locale).
fn write_listen_pid(slot: &mut [u8; 32], pid: libc::pid_t) {
    slot[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        slot[LISTEN_PID.len() + i] = *digit;
    }
    slot[LISTEN_PID.len() + len] = 0;
}

/// Starts the command and returns its pid once it has been forked. Should its exec fail, the
/// child says why and exits 126 or 127 (see [`Exec::report_in_child`]).
pub fn spawn(
    command: Command,
    environ: &Environ,
    signals: &SignalState,
    terminal: Option<&Terminal>,
    to_group: bool,
) -> Result<Pid, SpawnError> {
    let mut exec = Exec::new(command, environ);
    // The clone system call itself, as fork(2) without glibc's wrapper: the wrapper's extra work
    // (at-fork handlers, resetting its locks, registering the child's robust futex list, the
    // thread id cached in the TCB) serves threads and the C library's own state, none of which
    // the child uses before it execs.
    // SAFETY: ferrinit is single-threaded, so no lock or allocation can be half-done in another
    // thread at the fork. The child, a copy of this process with the same thread pointer (its
    // errno is its own copy), makes only raw system calls through the C library (setpgid,
    // getpid, open, tcsetpgrp, close, sigaction, rt_sigprocmask, execve, stat, read, fstat,
    // fcntl, poll, write, send, _exit), on memory prepared above: none of them reads the thread
    // id glibc cached for the parent (as raise, pthread_kill or the robust list would), and it
    // never returns from this function.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(SpawnError::Fork(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: see above; exec_in_child does not return.
        unsafe {
            libc::setpgid(0, 0);
            if terminal.is_some() {
                // /dev/tty may need a slot they hold (a tight RLIMIT_NOFILE).
                crate::fds::close_left_open();
                Terminal::give_to_self_in_child();
            }
            if let Some((_, slot)) = exec.listen.as_mut() {
                write_listen_pid(slot, libc::getpid());
            }
        }
        signals.restore_inherited_in_child();
        exec.exec_in_child();
    }
    // A pid always fits: the kernel's are at most 2^22.
    let pid = pid as libc::pid_t;
    if to_group {
        // With -g, signals go to the child's group: the child makes it too, but whichever comes
        // first, the group exists before any forward. (A signal to the child alone needs none.)
        // SAFETY: setpgid has no memory-safety preconditions; EACCES once the child has exec'd.
        unsafe { libc::setpgid(pid, pid) };
    }
    Ok(Pid::from_raw(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_pid_slot_holds_the_decimal_pid() {
        let mut slot = [0xffu8; 32];
        write_listen_pid(&mut slot, 4_194_304);
        assert_eq!(
            CStr::from_bytes_until_nul(&slot).unwrap().to_bytes(),
            b"LISTEN_PID=4194304"
        );
        write_listen_pid(&mut slot, 7);
        assert_eq!(
            CStr::from_bytes_until_nul(&slot).unwrap().to_bytes(),
            b"LISTEN_PID=7"
        );
    }

    #[test]
    fn the_shebang_line_names_the_interpreter() {
        assert_eq!(interpreter_of(b"#!/bin/sh\n"), Some(&b"/bin/sh"[..]));
        assert_eq!(
            interpreter_of(b"#! /usr/bin/env python3\n"),
            Some(&b"/usr/bin/env"[..])
        );
        assert_eq!(interpreter_of(b"#!\t/x"), Some(&b"/x"[..]));
        assert_eq!(interpreter_of(b"#!\n"), None);
        assert_eq!(interpreter_of(b"\x7fELF"), None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let finding = |errno: Errno| Finding {
            errno: errno as i32,
            ..Finding::default()
        };
        let code = |errno| finding(errno).exit_code();
        assert_eq!(code(Errno::ENOENT), 127);
        assert_eq!(code(Errno::ENOTDIR), 127);
        assert_eq!(code(Errno::EACCES), 126);
        assert_eq!(code(Errno::ENOEXEC), 126);
        assert_eq!(SpawnError::Fork(Errno::EAGAIN).exit_code(), 125);
    }

    #[test]
    fn invalid_utf8_is_shown_as_the_replacement_character() {
        assert_eq!(Lossy(b"a\xffb").to_string(), "a\u{FFFD}b");
        assert_eq!(Lossy("é".as_bytes()).to_string(), "é");
    }
}
