//! Running a workload as PID 1 of a fresh PID namespace, and reading what it cost from the
//! kernel: rusage from wait4, CPU time from /proc/PID/schedstat, context switches and memory
//! from /proc/PID/status, instructions from callgrind.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `unshare --pid --fork --mount-proc ARGV`: ARGV[0] is PID 1 of a new namespace. Without root,
/// a user namespace maps us to root inside it.
pub fn as_pid1(argv: &[OsString]) -> Command {
    let mut command = Command::new("unshare");
    if !nix::unistd::geteuid().is_root() {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(argv);
    ferrinit_testkit::clean_start(&mut command);
    command
}

/// Resource use of a finished process and every descendant it waited for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub minor_faults: i64,
    pub voluntary_switches: i64,
    pub status: i32,
}

/// Runs `command` to completion with stdio closed, and returns its wait4 rusage.
pub fn run_for_usage(mut command: Command) -> Usage {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_usage(child)
}

pub fn wait_usage(child: Child) -> Usage {
    let pid = child.id() as i32;
    // SAFETY: rusage is plain data; wait4 fills it in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    // SAFETY: valid pointers to our storage; the child is ours and not yet waited for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child); // reaped already; this only closes our ends of its pipes
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        minor_faults: usage.ru_minflt,
        voluntary_switches: usage.ru_nvcsw,
        status,
    }
}

/// CPU time a process has used so far, in nanoseconds (/proc/PID/schedstat, first field).
pub fn cpu_ns(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A `/proc/PID/status` field as a number (`VmRSS` in kB, `voluntary_ctxt_switches`, ...).
pub fn status_number(pid: i32, field: &str) -> u64 {
    ferrinit_testkit::status_field(pid, field)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The host pid of PID 1 of the namespace that `unshare` (pid `unshare`) created.
pub fn pid1_of(unshare: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(&pid) = ferrinit_testkit::children_of(unshare).first() {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "unshare {unshare} forked nothing"
        );
        std::thread::yield_now();
    }
}

/// Waits for a process to exit (not necessarily our child), up to `timeout`.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    ferrinit_testkit::wait_for_exit_of(pid, timeout)
}

/// Sends `sig` through a pidfd, so that a recycled pid can never get it.
pub struct Target {
    pidfd: OwnedFd,
}

impl Target {
    pub fn new(pid: i32) -> Target {
        Target {
            pidfd: ferrinit_testkit::pidfd_open(pid).expect("pidfd_open"),
        }
    }

    pub fn send(&self, sig: i32) -> bool {
        // SAFETY: the pidfd is open; a null siginfo means "as kill() sends it".
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) == 0
        }
    }
}

/// Instructions executed by `argv[0]` alone (children not traced), as PID 1, under callgrind.
pub fn instructions(argv: &[OsString]) -> Option<u64> {
    let mut valgrind = vec![
        OsString::from("valgrind"),
        "--tool=callgrind".into(),
        "--callgrind-out-file=/dev/null".into(),
        "--trace-children=no".into(),
    ];
    valgrind.extend(argv.iter().cloned());
    let output = as_pid1(&valgrind)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.split("Collected :").nth(1)?.trim().parse().ok())
}

pub fn have(program: &str) -> bool {
    ferrinit_testkit::have(program)
}
