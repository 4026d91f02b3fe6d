//! Starting the main child: fork, give it its own process group (and the terminal), hand back the
//! signal state ferrinit inherited, exec. Everything the child needs is prepared before `fork`, so
//! that between `fork` and `exec` it makes only async-signal-safe calls.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::environ::Environ;
use crate::exit_status::code;
use crate::signals::SignalState;
use crate::tty::Terminal;

/// glibc's search path when PATH is unset (confstr(_CS_PATH)), as execvp uses.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run '{command}': not found in PATH={path}")]
    NotInPath { command: String, path: String },
    #[error("cannot run '{command}': {reason}")]
    Exec {
        command: String,
        errno: Errno,
        reason: String,
    },
    #[error("cannot run '{0}': an argument contains a NUL byte")]
    NulByte(String),
    #[error("cannot map memory to watch the child's exec: {0}")]
    Memory(#[source] Errno),
    #[error("cannot fork the child: {0}")]
    Fork(#[source] Errno),
}

impl SpawnError {
    /// 127 when the command does not exist, 126 when it exists but cannot run (as shells do).
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotInPath { .. } => code::NOT_FOUND,
            SpawnError::Exec {
                errno: Errno::ENOENT | Errno::ENOTDIR,
                ..
            } => code::NOT_FOUND,
            SpawnError::Exec { .. } | SpawnError::NulByte(_) => code::NOT_EXECUTABLE,
            SpawnError::Memory(_) | SpawnError::Fork(_) => code::INTERNAL,
        }
    }
}

/// Everything `exec` needs, built before `fork`.
struct Exec {
    command: String,
    /// The program, NUL-terminated; searched in `path` unless it holds a '/'.
    program: CString,
    path: Option<&'static [u8]>,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// `/bin/sh PROGRAM ARG...`, for a file that is executable but not a binary (ENOEXEC), as
    /// execvp does. Slot 1 is filled in the child.
    sh_argv_ptrs: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` plus room for the child's pid, written in the child (socket activation).
    listen_pid: Option<Box<[u8; 32]>>,
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

/// Longest full path tried, NUL included (PATH_MAX).
const PATH_MAX: usize = libc::PATH_MAX as usize;

impl Exec {
    fn new(command: &[OsString], environ: &Environ) -> Result<Exec, SpawnError> {
        let name = command[0].to_string_lossy().into_owned();
        let argv = command
            .iter()
            .map(|arg| CString::new(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| SpawnError::NulByte(name.clone()))?;
        let program = argv[0].clone();
        let path = (!program.as_bytes().contains(&b'/'))
            .then(|| environ.get("PATH").map_or(DEFAULT_PATH, |p| p.as_bytes()));
        let argv_ptrs = pointers(&argv);
        let mut sh_argv_ptrs = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
        sh_argv_ptrs.extend_from_slice(&argv_ptrs[1..]);
        let (envp, listen_pid) = child_environment(environ);
        Ok(Exec {
            command: name,
            program,
            path,
            argv,
            argv_ptrs,
            sh_argv_ptrs,
            envp,
            listen_pid,
        })
    }

    /// Runs the program as execvp does: directly if it names a path, else from each PATH
    /// entry in turn, building each full path on the stack. Returns why nothing could run.
    /// Runs in the child: async-signal-safe only.
    fn exec_in_child(&mut self) -> Errno {
        // execvp's answer for an empty name, which no PATH entry can supply.
        if self.program.is_empty() {
            return Errno::ENOENT;
        }
        let mut run = Run {
            argv: &self.argv_ptrs,
            sh_argv: &mut self.sh_argv_ptrs,
            envp: &self.envp,
        };
        let Some(path) = self.path else {
            return run.exec(self.program.as_ptr());
        };
        let name = self.program.as_bytes();
        let mut full = [0u8; PATH_MAX];
        let mut denied = false;
        let mut last = Errno::ENOENT;
        for dir in path.split(|&b| b == b':') {
            // An empty PATH entry means the current directory.
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let len = dir.len() + 1 + name.len();
            if len >= PATH_MAX {
                continue;
            }
            full[..dir.len()].copy_from_slice(dir);
            full[dir.len()] = b'/';
            full[dir.len() + 1..len].copy_from_slice(name);
            full[len] = 0;
            last = run.exec(full.as_ptr().cast());
            match last {
                Errno::EACCES => denied = true,
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                other => return other,
            }
        }
        if denied { Errno::EACCES } else { last }
    }

    fn error(&self, errno: Errno) -> SpawnError {
        if let (Some(path), Errno::ENOENT | Errno::ENOTDIR) = (self.path, errno) {
            return SpawnError::NotInPath {
                command: self.command.clone(),
                path: String::from_utf8_lossy(path).into_owned(),
            };
        }
        let is_dir = self.path.is_none()
            && std::fs::metadata(OsStr::from_bytes(self.argv[0].as_bytes()))
                .is_ok_and(|m| m.is_dir());
        let reason = if errno == Errno::EACCES && is_dir {
            "it is a directory".to_owned()
        } else {
            errno.desc().to_owned()
        };
        SpawnError::Exec {
            command: self.command.clone(),
            errno,
            reason,
        }
    }
}

/// The arrays one execve needs.
struct Run<'a> {
    argv: &'a [*const libc::c_char],
    sh_argv: &'a mut [*const libc::c_char],
    envp: &'a [*const libc::c_char],
}

impl Run<'_> {
    /// One execve, with execvp's fallback to /bin/sh for a file without a known format.
    /// Async-signal-safe.
    fn exec(&mut self, file: *const libc::c_char) -> Errno {
        // SAFETY: all arrays are NUL-terminated arrays of valid C strings that outlive the call,
        // and `file` is a NUL-terminated path; execve only returns on failure.
        unsafe { libc::execve(file, self.argv.as_ptr(), self.envp.as_ptr()) };
        let errno = Errno::last();
        if errno == Errno::ENOEXEC {
            self.sh_argv[1] = file;
            // SAFETY: as above.
            unsafe {
                libc::execve(
                    c"/bin/sh".as_ptr(),
                    self.sh_argv.as_ptr(),
                    self.envp.as_ptr(),
                )
            };
        }
        errno
    }
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// ferrinit's own environment, untouched, except for socket activation: when LISTEN_PID names
/// ferrinit, the descriptors are meant for the child, so LISTEN_PID must name the child (filled in
/// after fork) and LISTEN_PIDFDID, which would name ferrinit too, is dropped.
fn child_environment(environ: &Environ) -> (Vec<*const libc::c_char>, Option<Box<[u8; 32]>>) {
    let mut envp = environ.entries.clone();
    let names_us = |pid: &OsStr| pid.as_bytes() == std::process::id().to_string().as_bytes();
    if !environ.get("LISTEN_PID").is_some_and(names_us) {
        return (envp, None);
    }
    let slot = Box::new([0u8; 32]);
    let starts_with = |entry: *const libc::c_char, prefix: &[u8]| {
        // SAFETY: every non-null entry is a valid C string from `environ`.
        !entry.is_null()
            && unsafe { CStr::from_ptr(entry) }
                .to_bytes()
                .starts_with(prefix)
    };
    envp.retain(|&entry| !starts_with(entry, b"LISTEN_PIDFDID="));
    for entry in envp.iter_mut().filter(|e| starts_with(**e, LISTEN_PID)) {
        *entry = slot.as_ptr().cast();
    }
    (envp, Some(slot))
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

/// Starts the command and returns once it has been exec'd, or with the reason it could not be.
pub fn spawn(
    command: &[OsString],
    environ: &Environ,
    signals: &SignalState,
    terminal: Option<&Terminal>,
) -> Result<Child, SpawnError> {
    let mut exec = Exec::new(command, environ)?;
    let report = ExecReport::new()?;
    // SAFETY: ferrinit is single-threaded, and the child only makes async-signal-safe calls
    // (setpgid, open, tcsetpgrp, close, sigaction, sigprocmask, execve, _exit) on memory prepared
    // above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: see above; `_exit` does not return.
        unsafe {
            libc::setpgid(0, 0);
            if terminal.is_some() {
                Terminal::give_to_self_in_child();
            }
            if let Some(slot) = exec.listen_pid.as_deref_mut() {
                write_listen_pid(slot, libc::getpid());
            }
            signals.restore_inherited_in_child();
            report.set(exec.exec_in_child());
            libc::_exit(code::NOT_FOUND.into());
        }
    }
    // The child does this too; whichever comes first, the group exists before any forward.
    // SAFETY: setpgid has no memory-safety preconditions; EACCES once the child has exec'd.
    unsafe { libc::setpgid(pid, pid) };
    Ok(Child {
        pid: Pid::from_raw(pid),
        exec,
        report,
    })
}

/// The main child, and what is needed to tell, once it has ended, whether its exec failed.
pub struct Child {
    pub pid: Pid,
    exec: Exec,
    report: ExecReport,
}

impl Child {
    /// Why the command could not be started, if it could not. Only meaningful once the child
    /// has been reaped: the report is written before the child exits.
    pub fn exec_error(&self) -> Option<SpawnError> {
        self.report.get().map(|errno| self.exec.error(errno))
    }
}

/// One word of memory shared with the child until its exec: where it leaves errno if the exec
/// fails. ferrinit reads it only after reaping the child, so it never waits for the exec itself
/// (no pipe to block on, no descriptor to keep).
struct ExecReport(std::ptr::NonNull<i32>);

impl ExecReport {
    fn new() -> Result<ExecReport, SpawnError> {
        // SAFETY: a fresh anonymous mapping; fork shares it, exec drops it from the child.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<i32>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(SpawnError::Memory(Errno::last()));
        }
        // mmap never returns null on success; the page is zero-filled: "no error".
        std::ptr::NonNull::new(page.cast())
            .map(ExecReport)
            .ok_or(SpawnError::Memory(Errno::EINVAL))
    }

    /// In the child, after a failed exec. Async-signal-safe.
    fn set(&self, errno: Errno) {
        // SAFETY: the mapping is valid, aligned and shared; only the child writes it.
        unsafe { self.0.as_ptr().write_volatile(errno as i32) };
    }

    fn get(&self) -> Option<Errno> {
        // SAFETY: the mapping stays valid for ferrinit's whole life; the child that wrote it has
        // exited (and been reaped) before anyone asks.
        let errno = unsafe { self.0.as_ptr().read_volatile() };
        (errno != 0).then(|| Errno::from_raw(errno))
    }
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
    fn exit_codes_follow_the_shell() {
        let exec = |errno| SpawnError::Exec {
            command: "x".into(),
            errno,
            reason: String::new(),
        };
        assert_eq!(exec(Errno::ENOENT).exit_code(), 127);
        assert_eq!(exec(Errno::EACCES).exit_code(), 126);
        assert_eq!(exec(Errno::ENOEXEC).exit_code(), 126);
        assert_eq!(SpawnError::Fork(Errno::EAGAIN).exit_code(), 125);
    }
}
