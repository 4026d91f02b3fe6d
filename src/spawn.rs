//! Starting the main child: fork, give it its own process group (and the terminal), hand back the
//! signal state ferrinit inherited, exec. Everything the child needs is prepared before `fork`, so
//! that between `fork` and `exec` it makes only async-signal-safe calls.

use std::ffi::{CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;

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
    #[error("cannot create a pipe to watch the child's exec: {0}")]
    Pipe(#[source] Errno),
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
            SpawnError::Pipe(_) | SpawnError::Fork(_) => code::INTERNAL,
        }
    }
}

/// Everything `exec` needs, built before `fork`.
struct Exec {
    command: String,
    /// Full paths to try in order: one, or one per PATH entry as execvp does.
    candidates: Vec<CString>,
    searched_path: Option<String>,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// `/bin/sh CANDIDATE ARG...`, for a file that is executable but not a binary (ENOEXEC), as
    /// execvp does. Slot 1 is filled in the child.
    sh_argv_ptrs: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` plus room for the child's pid, written in the child (socket activation).
    listen_pid: Option<Box<[u8; 32]>>,
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

impl Exec {
    fn new(command: &[OsString]) -> Result<Exec, SpawnError> {
        let program = &command[0];
        let name = program.to_string_lossy().into_owned();
        let argv = command
            .iter()
            .map(|arg| CString::new(arg.clone().into_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| SpawnError::NulByte(name.clone()))?;
        let (candidates, searched_path) = if program.as_bytes().contains(&b'/') {
            (vec![argv[0].clone()], None)
        } else {
            let path = std::env::var_os("PATH").map(OsString::into_vec);
            let path = path.unwrap_or_else(|| DEFAULT_PATH.to_vec());
            let candidates = path
                .split(|&b| b == b':')
                .map(|dir| {
                    // An empty PATH entry means the current directory.
                    let mut full = if dir.is_empty() {
                        b".".to_vec()
                    } else {
                        dir.to_vec()
                    };
                    full.push(b'/');
                    full.extend_from_slice(program.as_bytes());
                    CString::new(full)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| SpawnError::NulByte(name.clone()))?;
            (
                candidates,
                Some(String::from_utf8_lossy(&path).into_owned()),
            )
        };
        let argv_ptrs = pointers(&argv);
        let mut sh_argv_ptrs = vec![c"/bin/sh".as_ptr(), std::ptr::null()];
        sh_argv_ptrs.extend_from_slice(&argv_ptrs[1..]);
        let (envp, listen_pid) = environment();
        Ok(Exec {
            command: name,
            candidates,
            searched_path,
            argv,
            argv_ptrs,
            sh_argv_ptrs,
            envp,
            listen_pid,
        })
    }

    /// Tries each candidate as execvp does and returns why none could run. Runs in the child:
    /// async-signal-safe only.
    fn exec_in_child(&mut self) -> Errno {
        let mut denied = false;
        let mut last = Errno::ENOENT;
        for candidate in &self.candidates {
            // SAFETY: all three arrays are NUL-terminated arrays of valid C strings that outlive
            // the call; execve only returns on failure.
            unsafe {
                libc::execve(
                    candidate.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp.as_ptr(),
                )
            };
            last = Errno::last();
            match last {
                Errno::ENOEXEC => {
                    self.sh_argv_ptrs[1] = candidate.as_ptr();
                    // SAFETY: as above.
                    unsafe {
                        libc::execve(
                            c"/bin/sh".as_ptr(),
                            self.sh_argv_ptrs.as_ptr(),
                            self.envp.as_ptr(),
                        )
                    };
                    return Errno::ENOEXEC;
                }
                Errno::EACCES => denied = true,
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                _ => return last,
            }
        }
        if denied { Errno::EACCES } else { last }
    }

    fn error(&self, errno: Errno) -> SpawnError {
        if let (Some(path), Errno::ENOENT | Errno::ENOTDIR) = (&self.searched_path, errno) {
            return SpawnError::NotInPath {
                command: self.command.clone(),
                path: path.clone(),
            };
        }
        let single = self.candidates.len() == 1;
        let is_dir = single
            && std::fs::metadata(OsString::from_vec(self.argv[0].as_bytes().to_vec()))
                .is_ok_and(|m| m.is_dir());
        let reason = if errno == Errno::EACCES && is_dir {
            "it is a directory".to_owned()
        } else {
            io::Error::from(errno).to_string()
        };
        SpawnError::Exec {
            command: self.command.clone(),
            errno,
            reason,
        }
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
fn environment() -> (Vec<*const libc::c_char>, Option<Box<[u8; 32]>>) {
    let ours = std::process::id().to_string();
    let for_child = std::env::var_os("LISTEN_PID").is_some_and(|v| v.as_bytes() == ours.as_bytes());
    let mut listen_pid = None;
    let mut envp = Vec::new();
    // SAFETY: `environ` is the process's NULL-terminated array of C strings; ferrinit never
    // modifies its environment, so the strings outlive the child's exec.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if for_child && bytes.starts_with(LISTEN_PID) {
                let slot = Box::new([0u8; 32]);
                envp.push(slot.as_ptr().cast());
                listen_pid = Some(slot);
            } else if !(for_child && bytes.starts_with(b"LISTEN_PIDFDID=")) {
                envp.push(*entry);
            }
            entry = entry.add(1);
        }
    }
    envp.push(std::ptr::null());
    (envp, listen_pid)
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
    signals: &SignalState,
    terminal: Option<&Terminal>,
) -> Result<Pid, SpawnError> {
    let mut exec = Exec::new(command)?;
    // Closed by exec on success; on failure the child writes its errno here first.
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    // SAFETY: ferrinit is single-threaded, and the child only makes async-signal-safe calls
    // (setpgid, tcsetpgrp, sigaction, sigprocmask, execve, write, _exit) on memory prepared above.
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
            let errno = exec.exec_in_child() as i32;
            libc::write(
                report_write.as_raw_fd(),
                (&raw const errno).cast(),
                size_of::<i32>(),
            );
            libc::_exit(code::NOT_FOUND.into());
        }
    }
    drop(report_write);
    let child = Pid::from_raw(pid);
    match read_exec_report(report_read) {
        None => Ok(child),
        Some(errno) => {
            // The child has exited (or is about to): collect it so it leaves no zombie.
            let _ = nix::sys::wait::waitpid(child, None);
            Err(exec.error(errno))
        }
    }
}

/// End-of-file means exec succeeded (or the child died before it could tell).
fn read_exec_report(pipe: OwnedFd) -> Option<Errno> {
    let mut buf = [0u8; 4];
    loop {
        match nix::unistd::read(&pipe, &mut buf) {
            Ok(4) => return Some(Errno::from_raw(i32::from_ne_bytes(buf))),
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
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
