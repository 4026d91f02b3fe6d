//! Running a workload as PID 1 of a fresh PID namespace, and reading what it cost from the
//! kernel: rusage from wait4, CPU time from /proc/PID/schedstat, context switches and memory
//! from /proc/PID/status, system calls from perf's tracepoint counters, the order of an init's
//! forwarding calls from strace, instructions from callgrind.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferrinit_testkit::stall_timeout;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The uids that storms and the fairness burst may run as: RLIMIT_SIGPENDING counts the signals
/// queued for all processes of one real uid, so under root any other root process could fill
/// the queue and make real-time sends fail. No process on this machine uses these uids.
const SIGNAL_UIDS: std::ops::Range<u32> = 3_141_592..3_141_608;

/// This run's uid from [`SIGNAL_UIDS`], claimed by [`claim_signal_uid`].
static SIGNAL_UID: OnceLock<(u32, std::fs::File)> = OnceLock::new();

/// Claims the first uid of [`SIGNAL_UIDS`] that no process runs as and no other run holds (an
/// exclusive lock on a file named after it, held until this process ends): benchmarks run at
/// the same time on a shared machine, or the leftovers of a killed one, never share a queue.
pub fn claim_signal_uid() -> Result<u32, String> {
    for uid in SIGNAL_UIDS {
        let path = std::env::temp_dir().join(format!("ferrinit-bench-uid-{uid}.lock"));
        let Ok(lock) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: flock has no memory-safety preconditions; the descriptor is open.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked && users_of(uid).is_empty() {
            let _ = SIGNAL_UID.set((uid, lock));
            return Ok(uid);
        }
    }
    Err(format!(
        "every uid from {} to {} is in use by another benchmark or its leftovers",
        SIGNAL_UIDS.start,
        SIGNAL_UIDS.end - 1
    ))
}

/// The uid [`claim_signal_uid`] claimed.
fn signal_uid() -> u32 {
    SIGNAL_UID.get().expect("claim_signal_uid first").0
}

/// `unshare --pid --fork --mount-proc ARGV` with an empty environment (`env -i`): ARGV[0] is
/// PID 1 of a new namespace. Without root, a user namespace maps us to root inside it.
pub fn as_pid1(argv: &[OsString]) -> Command {
    as_pid1_with_env(argv, &[])
}

/// [`as_pid1`] with exactly these environment variables.
pub fn as_pid1_with_env(argv: &[OsString], env: &[(String, String)]) -> Command {
    let mut command = Command::new("/usr/bin/unshare");
    if !nix::unistd::geteuid().is_root() {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(argv);
    command.env_clear().envs(env.iter().cloned());
    ferrinit_testkit::clean_start(&mut command);
    command
}

/// [`as_pid1`], with PID 1 (and so everything under it) running as [`signal_uid`]: `setpriv`
/// is the namespace's first process and execs ARGV as that uid. Needs root; otherwise the
/// command runs as the caller's uid, and [`signal_uid_note`] says so.
pub fn as_pid1_as_signal_uid(argv: &[OsString]) -> Command {
    if !nix::unistd::geteuid().is_root() {
        return as_pid1(argv);
    }
    let uid = signal_uid();
    let mut wrapped: Vec<OsString> = vec![
        "/usr/bin/setpriv".into(),
        format!("--reuid={uid}").into(),
        format!("--regid={uid}").into(),
        "--clear-groups".into(),
    ];
    wrapped.extend(argv.iter().cloned());
    as_pid1(&wrapped)
}

/// What the storms ran as, for the report.
pub fn signal_uid_note() -> String {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max pending signals"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into());
    if nix::unistd::geteuid().is_root() {
        let uid = signal_uid();
        format!(
            "uid {uid} (`setpriv --reuid={uid} --regid={uid} --clear-groups`, a uid no other process uses; RLIMIT_SIGPENDING {limit})"
        )
    } else {
        format!("the caller's own uid (not root: setpriv cannot switch; RLIMIT_SIGPENDING {limit})")
    }
}

/// Waits until no process runs as [`signal_uid`] any more: a namespace torn down with SIGKILL
/// takes a moment to go, and the next workload must start with the uid's signal queue empty.
/// Returns the processes still there after a [stall timeout](stall_timeout).
pub fn wait_signal_uid_unused() -> Vec<i32> {
    let since = Instant::now();
    loop {
        let users = users_of(signal_uid());
        if users.is_empty() || since.elapsed() > stall_timeout() {
            return users;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Processes running as `uid` (real, effective, saved or file system), which share its queue.
fn users_of(uid: u32) -> Vec<i32> {
    let uid = uid.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            ferrinit_testkit::status_field(pid, "Uid")
                .is_some_and(|uids| uids.split_whitespace().any(|u| u == uid))
        })
        .collect()
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
    let children = || ferrinit_testkit::children_of(unshare);
    wait_until(&format!("unshare {unshare} to fork PID 1"), || {
        !children().is_empty()
    });
    children()[0]
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

/// Instructions executed by `argv[0]` alone (children not traced), as PID 1, under callgrind,
/// with exactly the environment `env` (valgrind adds nothing the init would copy).
pub fn instructions(argv: &[OsString], env: &[(String, String)]) -> Option<u64> {
    let mut valgrind = vec![
        OsString::from("/usr/bin/valgrind"),
        "--tool=callgrind".into(),
        "--callgrind-out-file=/dev/null".into(),
        "--trace-children=no".into(),
    ];
    valgrind.extend(argv.iter().cloned());
    let output = as_pid1_with_env(&valgrind, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.split("Collected :").nth(1)?.trim().parse().ok())
}

/// The system calls that forward a signal to another process.
const FORWARD_CALLS: [&str; 6] = [
    "kill",
    "tgkill",
    "tkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_send_signal",
];

/// What `perf stat` counted: every system call, and the forwarding ones among them.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallCounts {
    pub all: u64,
    pub forwards: u64,
}

fn perf_events() -> String {
    let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
    events.extend(
        FORWARD_CALLS
            .iter()
            .map(|call| format!("syscalls:sys_enter_{call}")),
    );
    events.join(",")
}

fn parse_perf(path: &Path) -> SyscallCounts {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = SyscallCounts::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        if *event == "raw_syscalls:sys_enter" {
            counts.all += value;
        } else if event.starts_with("syscalls:sys_enter_") {
            counts.forwards += value;
        }
    }
    counts
}

/// The system calls of a whole process tree (`command` and all it forks), by `perf stat`.
pub fn syscalls_of_tree(command: &Command, scratch: &Path) -> SyscallCounts {
    let out = scratch.join("perf-tree.csv");
    let mut perf = Command::new("perf");
    perf.args(["stat", "-x,", "-e", &perf_events(), "-o"])
        .arg(&out)
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        );
    ferrinit_testkit::clean_start(&mut perf);
    let status = perf
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run perf");
    assert!(status.success(), "perf stat failed: {status}");
    parse_perf(&out)
}

/// `perf stat` attached to one running process, counting only between `attach` and `stop`
/// (its control fifo acknowledges each switch, so nothing is missed or counted early).
pub struct SyscallCounter {
    perf: Child,
    control: std::fs::File,
    ack: BufReader<std::fs::File>,
    out: PathBuf,
}

impl SyscallCounter {
    pub fn attach(pid: i32, scratch: &Path) -> SyscallCounter {
        let (control_path, ack_path, out) = (
            scratch.join("perf-control"),
            scratch.join("perf-ack"),
            scratch.join("perf-attached.csv"),
        );
        for fifo in [&control_path, &ack_path] {
            let _ = std::fs::remove_file(fifo);
            nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        }
        // Read-write on our side: neither open waits for perf to open its end.
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .expect("open fifo")
        };
        let (control, ack) = (open(&control_path), open(&ack_path));
        let mut control_arg = OsString::from("fifo:");
        control_arg.push(&control_path);
        control_arg.push(",");
        control_arg.push(&ack_path);
        let perf = Command::new("perf")
            .args([
                "stat",
                "-x,",
                "--no-inherit",
                "--delay=-1",
                "-e",
                &perf_events(),
            ])
            .args(["-p", &pid.to_string(), "-o"])
            .arg(&out)
            .arg("--control")
            .arg(control_arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("run perf");
        let mut counter = SyscallCounter {
            perf,
            control,
            ack: BufReader::new(ack),
            out,
        };
        counter.switch("enable");
        counter
    }

    fn switch(&mut self, command: &str) {
        writeln!(self.control, "{command}").expect("perf control");
        // A perf that died or hangs never answers: fail at a stall instead of waiting forever.
        let mut ack = [PollFd::new(self.ack.get_ref().as_fd(), PollFlags::POLLIN)];
        let stall = PollTimeout::try_from(stall_timeout()).unwrap_or(PollTimeout::MAX);
        assert!(
            matches!(poll(&mut ack, stall), Ok(n) if n > 0),
            "perf did not answer '{command}' within {:?}",
            stall_timeout()
        );
        let mut line = String::new();
        self.ack.read_line(&mut line).expect("perf ack");
        // perf ends each answer with a NUL after the newline.
        let answer = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        assert_eq!(answer, "ack", "perf answered '{line}'");
    }

    pub fn stop(mut self) -> SyscallCounts {
        self.switch("disable");
        // SAFETY: kill has no memory-safety preconditions; perf is our own child.
        unsafe { libc::kill(self.perf.id() as i32, libc::SIGINT) };
        let _ = self.perf.wait();
        parse_perf(&self.out)
    }
}

/// `strace` attached to one running process, logging the signals it forwards, in order.
pub struct ForwardTrace {
    strace: Child,
    out: PathBuf,
}

impl ForwardTrace {
    /// Returns once strace has attached.
    pub fn attach(pid: i32, scratch: &Path) -> ForwardTrace {
        let out = scratch.join("strace-forwards.txt");
        let _ = std::fs::remove_file(&out);
        let mut strace = Command::new("strace")
            .arg("-e")
            .arg(format!("trace={}", FORWARD_CALLS.join(",")))
            .args(["-e", "signal=none", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("run strace");
        let mut stderr = BufReader::new(strace.stderr.take().expect("piped"));
        let mut line = String::new();
        while !line.contains("attached") {
            line.clear();
            let n = stderr.read_line(&mut line).expect("strace stderr");
            assert!(n > 0, "strace ended without attaching");
        }
        // Keep draining its stderr, so that strace never blocks on it.
        std::thread::spawn(move || {
            let _ = stderr.read_to_end(&mut Vec::new());
        });
        ForwardTrace { strace, out }
    }

    /// The signals forwarded so far, by name as strace prints them (SIGUSR1, SIGRT_3, ...).
    pub fn signals(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                FORWARD_CALLS
                    .iter()
                    .any(|call| l.starts_with(&format!("{call}(")))
            })
            .filter_map(|l| {
                let from = l.find("SIG")?;
                let name: String = l[from..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                Some(name)
            })
            .collect()
    }

    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: kill has no memory-safety preconditions; strace is our own child.
        unsafe { libc::kill(self.strace.id() as i32, libc::SIGINT) };
        let _ = self.strace.wait();
        self.signals()
    }
}

/// A process's state letter from /proc/PID/stat (R, S, T, t, Z, ...).
pub fn state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ")?.1.chars().next())
        .unwrap_or('?')
}

/// Polls `condition` until it holds, for states that no event announces (a signal no longer
/// pending, a process stopped). Only a hang fails it: no success for a [`stall_timeout`].
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_progressing(what, condition, || ());
}

/// As [`wait_until`], for a state that takes long work to reach: it fails only once `progress()`
/// (CPU used, a count going down) has not changed for a [`stall_timeout`].
pub fn wait_until_progressing<P: PartialEq>(
    what: &str,
    condition: impl FnMut() -> bool,
    progress: impl FnMut() -> P,
) {
    assert!(
        until_stalled(Duration::from_micros(200), condition, progress),
        "gave up waiting for {what}: no progress for {:?}",
        stall_timeout()
    );
}

/// Polls `condition` every `interval` (short: some waits are measured) until it holds (true),
/// or until `progress()` has not changed for a [`stall_timeout`] (false). A loaded machine may
/// take as long as it needs; only a run that stopped moving ends early.
pub fn until_stalled<P: PartialEq>(
    interval: Duration,
    mut condition: impl FnMut() -> bool,
    mut progress: impl FnMut() -> P,
) -> bool {
    let (mut last, mut since) = (progress(), Instant::now());
    while !condition() {
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if since.elapsed() > stall_timeout() {
            return false;
        }
        std::thread::sleep(interval);
    }
    true
}

pub fn have(program: &str) -> bool {
    ferrinit_testkit::have(program)
}

/// A workload process: `unshare` with PID 1 inside, stdin and stdout piped.
pub struct Running {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl Running {
    pub fn start(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the workload");
        Running {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        }
    }

    pub fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read workload output");
            assert!(n > 0, "workload ended before '{prefix}'");
            if line.starts_with(prefix) {
                return line.trim_end().to_owned();
            }
        }
    }

    /// Host pid of the namespace's PID 1.
    pub fn pid1(&self) -> i32 {
        pid1_of(self.child.id() as i32)
    }

    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write");
        stdin.flush().expect("flush");
    }

    /// Closes stdin, then waits for the exit; returns the exit code and the rest of stdout.
    pub fn finish(mut self) -> (i32, String) {
        self.stdin = None;
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().expect("wait");
        (
            std::os::unix::process::ExitStatusExt::into_raw(status) >> 8 & 0xff,
            rest,
        )
    }

    pub fn kill(mut self) {
        // SAFETY: kill has no memory-safety preconditions; the group is our workload's.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Neither the process nor its thread group has a signal waiting.
pub fn nothing_pending(pid: i32) -> bool {
    ["SigPnd", "ShdPnd"].iter().all(|field| {
        ferrinit_testkit::status_field(pid, field)
            .is_none_or(|mask| u64::from_str_radix(&mask, 16) == Ok(0))
    })
}
