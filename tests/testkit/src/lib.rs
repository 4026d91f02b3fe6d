//! Test support for ferrinit: the static binaries under test, a way to run them as PID 1 of a new
//! PID namespace, and line-based handshakes with the `probe` child. No pass or fail depends on the
//! machine's speed: every wait ends only when progress has stopped for the [`stall_timeout`], so
//! that a broken build fails instead of hanging. And no test passes without running: a missing
//! tool fails it ([`require`]) unless `FERRINIT_TEST_SKIP` opts out, and every opted-out skip is
//! recorded for the run's summary.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub mod containers;
mod tools;

pub use tools::{debian_package, require, require_host, require_root, skip_log, tool};

/// How long a wait may see no progress (no awaited line, no change in what is polled) before the
/// test calls the run stuck: 120 s, or `FERRINIT_TEST_STALL_SECS`. Generous on purpose: a loaded
/// machine is slow, never stalled this long, so only a broken build ever reaches it. How long a
/// run takes is the benchmark's business, never a test's.
pub fn stall_timeout() -> Duration {
    static STALL: OnceLock<Duration> = OnceLock::new();
    *STALL.get_or_init(|| {
        let secs = std::env::var("FERRINIT_TEST_STALL_SECS").ok().map(|text| {
            text.trim().parse::<u64>().unwrap_or_else(|_| {
                panic!("FERRINIT_TEST_STALL_SECS={text:?}: want a whole number of seconds")
            })
        });
        Duration::from_secs(secs.unwrap_or(120))
    })
}

/// The binaries under test, built static (as shipped) by `cargo build --release`.
pub struct Artifacts {
    pub ferrinit: PathBuf,
    pub probe: PathBuf,
}

pub fn workspace_root() -> PathBuf {
    // tests/testkit → the workspace
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .ancestors()
        .nth(2)
        .expect("tests/testkit sits two levels down")
        .to_path_buf()
}

/// Builds (once per test binary; cargo makes later calls no-ops) the static release ferrinit
/// and the probe. `FERRINIT_BIN` / `FERRINIT_PROBE` point the tests at prebuilt ones instead.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let from_env = |name| std::env::var_os(name).map(PathBuf::from);
        if let (Some(ferrinit), Some(probe)) =
            (from_env("FERRINIT_BIN"), from_env("FERRINIT_PROBE"))
        {
            return Artifacts { ferrinit, probe };
        }
        let built = build_static(&["ferrinit", "ferrinit-testkit"]);
        let find = |name: &str| {
            built
                .iter()
                .find(|p| p.file_name() == Some(OsStr::new(name)))
                .cloned()
                .unwrap_or_else(|| panic!("cargo built no '{name}': {built:?}"))
        };
        reachable_by_anyone(Artifacts {
            ferrinit: find("ferrinit"),
            probe: find("probe"),
        })
    })
}

/// Copies of the binaries in a directory every user may enter. Tests run them as uid 65534 too
/// (`--contain` rootless, RLIMIT_NPROC as nobody), and a checkout may sit in a directory only its
/// owner may enter (a `mktemp -d` clone is mode 0700): there, nobody could not even exec them.
fn reachable_by_anyone(built: Artifacts) -> Artifacts {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir_for_anyone("ferrinit-test-bin");
    let copy = |from: &Path| {
        let to = dir.join(from.file_name().expect("a file name"));
        std::fs::copy(from, &to).expect("copy a binary under test");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .expect("make a binary under test executable by anyone");
        to
    };
    Artifacts {
        ferrinit: copy(&built.ferrinit),
        probe: copy(&built.probe),
    }
}

/// The README's and the Dockerfile's plain `cargo build --release`, static by the repository's
/// `.cargo/config.toml`, returning the executables cargo reports. RUSTFLAGS in the environment
/// would replace the configured flags, so it is not passed on: the tests run the shipped build.
pub fn build_static(packages: &[&str]) -> Vec<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--release"])
        .args(["--bins", "--message-format=json-render-diagnostics"]);
    for package in packages {
        command.args(["-p", package]);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo");
    assert!(output.status.success(), "static build failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + line[start..].find('"')?;
            Some(PathBuf::from(&line[start..end]))
        })
        .collect()
}

pub fn ferrinit() -> &'static Path {
    &artifacts().ferrinit
}

pub fn probe() -> &'static Path {
    &artifacts().probe
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ferrinit ARGS` as PID 1 of a new PID namespace with its own /proc. Without root, a user
/// namespace maps us to root inside it. `--kill-child` takes the namespace down with unshare
/// should the test die.
pub fn as_pid1<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    init_as_pid1(ferrinit(), args)
}

/// `INIT ARGS` as PID 1 of a new PID namespace, for any init (tini, to compare).
pub fn init_as_pid1<I, S>(init: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    // By full path: a test may give the command another PATH.
    let mut command = Command::new(tool("unshare"));
    if !is_root() {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(init)
        .args(args);
    clean_start(&mut command);
    command
}

/// `ferrinit ARGS` as a plain process (not PID 1).
pub fn as_process<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(ferrinit());
    command.args(args);
    clean_start(&mut command);
    command
}

/// Runs `command` with the descriptors `closed` (of 0, 1 and 2) closed; its command writes a
/// probe `state-file` to `state`. Checks that it exits 0 and that the command found exactly the
/// others of 0, 1 and 2 open: as closed as ferrinit was started, nothing of ferrinit's there.
pub fn run_with_closed_stdio(mut command: Command, closed: &[i32], state: &Path) {
    let to_close = closed.to_vec();
    // SAFETY: close is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            for &fd in &to_close {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let status = command.status().expect("run");
    assert_eq!(status.code(), Some(0), "closed {closed:?}");
    let text = std::fs::read_to_string(state).expect("the probe's state file");
    let fds = text
        .lines()
        .find_map(|l| l.strip_prefix("fds "))
        .unwrap_or("")
        .to_owned();
    let expected: Vec<String> = (0..=2)
        .filter(|fd| !closed.contains(fd))
        .map(|fd| fd.to_string())
        .collect();
    assert_eq!(fds, expected.join(" "), "closed {closed:?}");
}

/// `program ARGS` from a clean start (see [`clean_start`]), not under ferrinit.
pub fn clean_command<I, S>(program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    clean_start(&mut command);
    command
}

/// Starts `command` in a known state, whatever state the test runner was started in: an empty
/// signal mask, SIG_DFL for every signal, and no descriptor above 2. A test that wants some other
/// state adds its own `pre_exec` after this one.
pub fn clean_start(command: &mut Command) {
    // SAFETY: only async-signal-safe syscalls run in the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // The kernel's struct sigaction, all zero: SIG_DFL, no flags, empty mask. Raw, since
            // glibc refuses to touch its internal signals 32 and 33.
            let default = [0u64; 8];
            for sig in 1..=libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        default.as_ptr(),
                        std::ptr::null::<u8>(),
                        8,
                    );
                }
            }
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// A `Command` whose stdout and stderr come back as lines; every wait ends at a stall.
pub struct Running {
    child: Child,
    /// Set once `finish` has reaped the child: its pid, and so its group's id, may then already
    /// name another test's processes.
    reaped: bool,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// The exit code, or 128+N for a death by signal N (as a shell reports it).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .or(self.status.signal().map(|s| 128 + s))
            .expect("exited or killed")
    }
}

impl Running {
    pub fn start(command: Command) -> Running {
        Running::start_with_stderr(command, Stdio::piped())
    }

    /// As `start`, with stderr going to `stderr` instead of back to the test.
    pub fn start_with_stderr(mut command: Command, stderr: Stdio) -> Running {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        let mut child = command.spawn().expect("cannot spawn");
        let stdout = Lines::read(child.stdout.take().expect("piped"));
        let stderr = match child.stderr.take() {
            Some(pipe) => Lines::read(pipe),
            None => Lines::read(std::io::empty()),
        };
        Running {
            stdin: child.stdin.take(),
            child,
            reaped: false,
            stdout,
            stderr,
        }
    }

    /// The pid of the process started (unshare, when run as PID 1).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Host pid of the init under test: the started process, or, when a launcher (unshare,
    /// bwrap) runs it, the first descendant that is not a launcher. Call after a handshake, so
    /// that the init exists.
    pub fn init_pid(&self) -> i32 {
        let mut queue = vec![self.pid()];
        while let Some(pid) = queue.pop() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !matches!(comm.trim(), "unshare" | "bwrap") {
                return pid;
            }
            queue.extend(children_of(pid));
        }
        panic!("no init under pid {}", self.pid())
    }

    /// Sends `sig` to ferrinit itself.
    pub fn signal_init(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own descendant.
        let result = unsafe { libc::kill(self.init_pid(), sig) };
        assert_eq!(result, 0, "kill({}, {sig}) failed", self.init_pid());
    }

    /// Waits for a stdout line that contains `needle`, and returns it.
    pub fn expect_stdout(&self, needle: &str) -> String {
        let stderr = || self.stderr.summary();
        self.stdout.expect_or(needle, "stdout", None, stderr)
    }

    /// As `expect_stdout`, for a long run that reports its progress: every stdout line holding
    /// `progress` restarts the stall timeout, so the run may take as long as it needs.
    pub fn expect_stdout_progressing(&self, needle: &str, progress: &str) -> String {
        let stderr = || self.stderr.summary();
        self.stdout
            .expect_or(needle, "stdout", Some(progress), stderr)
    }

    /// Waits for a stderr line that contains `needle`, and returns it.
    pub fn expect_stderr(&self, needle: &str) -> String {
        self.stderr.expect(needle, "stderr")
    }

    /// Waits for `count` stderr lines that contain `needle`.
    pub fn stderr_count(&self, needle: &str, count: usize) {
        self.stderr.expect_count(needle, count, "stderr");
    }

    /// Every stderr line seen so far, taken or not, in order.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.all()
    }

    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit (failing at a [`stall_timeout`]), then for the output to end.
    pub fn finish(mut self) -> Finished {
        let stall = stall_timeout();
        let status = wait_timeout(&mut self.child, stall).unwrap_or_else(|| {
            panic!(
                "no exit within {stall:?}; stdout {}; stderr {}",
                self.stdout.summary(),
                self.stderr.summary()
            )
        });
        self.reaped = true;
        self.stdin = None;
        Finished {
            status,
            stdout: self.stdout.rest(),
            stderr: self.stderr.rest(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Leave nothing behind when a test fails half-way: the whole group goes. Only while the
        // child is unreaped: its pid holds the group's id for us until then.
        if !self.reaped {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// Runs to completion with stdin closed.
pub fn run(command: Command) -> Finished {
    let mut running = Running::start(command);
    running.close_stdin();
    running.finish()
}

/// Lines of a pipe, read by a thread. `expect` takes the first line that matches, wherever it is:
/// lines from several processes sharing a pipe interleave in any order, and the ones skipped stay
/// available to later calls.
pub struct Lines {
    receiver: Receiver<String>,
    pending: Mutex<VecDeque<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    pub fn read(pipe: impl std::io::Read + Send + 'static) -> Lines {
        let (sender, receiver) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                kept.lock().expect("lock").push(line.clone());
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            receiver,
            pending: Mutex::new(VecDeque::new()),
            seen,
        }
    }

    pub fn expect(&self, needle: &str, what: &str) -> String {
        self.expect_or(needle, what, None, String::new)
    }

    /// As `expect`, with `context()` added to the failure message. A line holding `progress`
    /// (when given) restarts the stall timeout.
    pub fn expect_or(
        &self,
        needle: &str,
        what: &str,
        progress: Option<&str>,
        context: impl Fn() -> String,
    ) -> String {
        let mut pending = self.pending.lock().expect("lock");
        if let Some(i) = pending.iter().position(|line| line.contains(needle)) {
            return pending.remove(i).expect("in range");
        }
        let stall = stall_timeout();
        let mut deadline = Instant::now() + stall;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) if progress.is_some_and(|marker| line.contains(marker)) => {
                    deadline = Instant::now() + stall;
                }
                Ok(line) => pending.push_back(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {what} line with {needle:?} and no progress for {stall:?}; saw {}; {}",
                    self.summary(),
                    context()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{what} ended without a line with {needle:?}; saw {}; {}",
                    self.summary(),
                    context()
                ),
            }
        }
    }

    /// Every line not taken by `expect`, up to end-of-file; a stall fails.
    pub fn rest(&self) -> Vec<String> {
        let mut rest: Vec<String> = self.pending.lock().expect("lock").drain(..).collect();
        loop {
            match self.receiver.recv_timeout(stall_timeout()) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("output never ended; saw {}", self.summary())
                }
            }
        }
    }

    /// Counts lines containing `needle` until `count` have come, taking them.
    pub fn expect_count(&self, needle: &str, count: usize, what: &str) {
        for _ in 0..count {
            self.expect(needle, what);
        }
    }

    pub fn all(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    /// The last lines seen, for failure messages that stay readable.
    pub fn summary(&self) -> String {
        let all = self.all();
        let skipped = all.len().saturating_sub(20);
        format!("{} lines, last ones {:?}", all.len(), &all[skipped..])
    }
}

/// The end of a long text, for failure messages.
fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// Waits for a child with a deadline, using a pidfd: no polling loop.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    if let Some(pidfd) = pidfd_open(child.id() as i32) {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, ms) {
                Ok(0) => return None,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll on pidfd: {e}"),
            }
        }
    }
    Some(child.wait().expect("wait"))
}

pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open has no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: on success the kernel returned a fresh descriptor that we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until a process (not necessarily our child) has exited, through its pidfd.
pub fn wait_for_exit_of(pid: i32, timeout: Duration) -> bool {
    let Some(pidfd) = pidfd_open(pid) else {
        return true; // already gone
    };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

/// `/proc/<pid>/status` field, e.g. `status_field(pid, "SigBlk")`.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
}

/// Processes whose state is `Z` and whose parent is `parent`, from /proc.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str())
        })
        .collect()
}

/// Runs `command` with RLIMIT_NOFILE (soft and hard) at `limit`: room for stdio and
/// `limit - 3` more. Set last thing before exec, after any earlier `pre_exec` that opens files.
pub fn limit_descriptors(command: &mut Command, limit: u64) {
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lowers the soft RLIMIT_NOFILE of the running process `pid` to `limit` (its descriptors open
/// stay open; later opens need room under the limit).
pub fn limit_descriptors_of(pid: i32, limit: u64) {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes valid rlimit structs.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut rlimit),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        rlimit.rlim_cur = limit;
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, &rlimit, std::ptr::null_mut()),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// A signal number by name, glibc's SIGRTMIN included, for building command lines.
pub fn rtmin(offset: i32) -> i32 {
    libc::SIGRTMIN() + offset
}

/// Where `program` is on our PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether `program` is on PATH (for the benchmark, which leaves out what is missing; a test
/// uses [`require`]).
pub fn have(program: &str) -> bool {
    which(program).is_some()
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The descriptors `pid` holds open, sorted.
pub fn fds_of(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// Removes `parent/NAME-PID` left by test processes that are gone.
pub fn remove_stale(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(name)?.strip_prefix('-')?.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh directory that every user may enter, under the system's temporary directory (the
/// workspace may sit where only its owner may): for what tests run as another user. Removed by a
/// later run once the test process that made it is gone.
pub fn scratch_dir_for_anyone(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let parent = std::env::temp_dir();
    remove_stale(&parent, name);
    let dir = parent.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("make a scratch directory enterable by anyone");
    dir
}

/// A fresh scratch directory under the target directory. It stays after the test for
/// post-mortems, until a later run of the tests (or `cargo clean`) removes it.
pub fn scratch_dir(name: &str) -> PathBuf {
    remove_stale(&workspace_root().join("target/test-scratch"), name);
    let dir = workspace_root()
        .join("target/test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A command on a new pseudo-terminal, as its session leader with the terminal as its
/// controlling terminal: what a user at a terminal, or `docker run -it`, gives it. Its output is
/// matched as a stream, like expect(1) does, since prompts end without a newline.
pub struct OnTerminal {
    child: Child,
    /// As in [`Running`]: once reaped, the child's pid may name someone else's group.
    reaped: bool,
    master: std::fs::File,
    screen: Arc<(Mutex<Screen>, std::sync::Condvar)>,
}

#[derive(Default)]
struct Screen {
    text: String,
    /// Where the next `expect` starts looking: output already matched is not matched again.
    cursor: usize,
    closed: bool,
}

impl OnTerminal {
    pub fn start(mut command: Command) -> OnTerminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        command
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn on a terminal");
        drop(command); // our copies of the slave side close with it
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new((Mutex::new(Screen::default()), std::sync::Condvar::new()));
        let (writer, mut reader) = (Arc::clone(&screen), master.try_clone().expect("dup master"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once nothing holds the terminal's other side any more: end of output.
                let n = std::io::Read::read(&mut reader, &mut buf).unwrap_or(0);
                let (lock, changed) = &*writer;
                let mut screen = lock.lock().expect("lock");
                if n == 0 {
                    screen.closed = true;
                    changed.notify_all();
                    return;
                }
                // The terminal writes "\r\n"; compare without the "\r".
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                screen.text.push_str(&text);
                changed.notify_all();
            }
        });
        OnTerminal {
            child,
            reaped: false,
            master,
            screen,
        }
    }

    /// The process started (unshare, when run as PID 1).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Types `text` at the terminal (control characters included: "\x03" is Ctrl-C).
    pub fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("write to terminal");
    }

    /// Waits for `needle` to appear after what was matched last; returns the text up to it.
    pub fn expect(&self, needle: &str) -> String {
        let (lock, changed) = &*self.screen;
        let deadline = Instant::now() + stall_timeout();
        let mut screen = lock.lock().expect("lock");
        loop {
            if let Some(at) = screen.text[screen.cursor..].find(needle) {
                let end = screen.cursor + at + needle.len();
                let seen = screen.text[screen.cursor..end].to_owned();
                screen.cursor = end;
                return seen;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !screen.closed && !left.is_zero(),
                "terminal never showed {needle:?}; it shows {:?}",
                tail(&screen.text[screen.cursor..])
            );
            screen = changed.wait_timeout(screen, left).expect("lock").0;
        }
    }

    pub fn finish(mut self) -> ExitStatus {
        let stall = stall_timeout();
        let status = wait_timeout(&mut self.child, stall).unwrap_or_else(|| {
            let screen = self.screen.0.lock().expect("lock");
            panic!(
                "no exit within {stall:?}; terminal shows {:?}",
                tail(&screen.text)
            )
        });
        self.reaped = true;
        status
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill has no memory-safety preconditions; the session leader leads its group.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// Polls `condition` until it holds; fails at a [`stall_timeout`]. Only for states that no event
/// announces (a process asleep in a system call, /proc catching up); never instead of a handshake.
pub fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_progressing(what, condition, || ());
}

/// As [`eventually`], for a state that takes long work to reach: it fails only once `progress()`
/// (CPU used, a count going down) has not changed for a [`stall_timeout`].
pub fn eventually_progressing<P: PartialEq>(
    what: &str,
    mut condition: impl FnMut() -> bool,
    mut progress: impl FnMut() -> P,
) {
    let stall = stall_timeout();
    let (mut last, mut since) = (progress(), Instant::now());
    while !condition() {
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < stall,
            "never happened, and no progress for {stall:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU time (clock ticks, all threads) used so far by `pid` and its live descendants: the
/// progress of a busy process tree, for [`eventually_progressing`].
pub fn cpu_ticks_of_tree(pid: i32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // After the command name: state is field 3, utime and stime are fields 14 and 15.
            let fields: Vec<u64> = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|field| field.parse().ok())
                .collect();
            Some(fields.iter().sum::<u64>())
        })
        .unwrap_or(0);
    own + children_of(pid)
        .into_iter()
        .map(cpu_ticks_of_tree)
        .sum::<u64>()
}

/// Whether `pid` sleeps in `rt_sigtimedwait` with no timeout (glibc's sigwaitinfo), or in a
/// `read` of a signalfd: an idle wait that makes no wake-ups, with nothing pending. From
/// /proc/PID/syscall: number, then the arguments.
pub fn waits_for_signals_without_timeout(pid: i32) -> bool {
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    let reads_signalfd = || {
        let fd = fields
            .get(1)
            .and_then(|fd| i64::from_str_radix(fd.trim_start_matches("0x"), 16).ok());
        fd.and_then(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
            .is_some_and(|file| file.as_os_str() == "anon_inode:[signalfd]")
    };
    match fields.first().and_then(|n| n.parse::<i64>().ok()) {
        Some(libc::SYS_rt_sigtimedwait) => fields.get(3) == Some(&"0x0"),
        Some(libc::SYS_read) => reads_signalfd(),
        _ => false,
    }
}

/// Whether `pid` sleeps in `rt_sigtimedwait` with a timeout.
pub fn waits_for_signals_with_timeout(pid: i32) -> bool {
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    fields.first() == Some(&libc::SYS_rt_sigtimedwait.to_string().as_str())
        && fields.get(3).is_some_and(|timeout| *timeout != "0x0")
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, `Z`, ...), if the process exists.
pub fn process_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next().map(str::to_owned)
}

pub fn is_alive(pid: i32) -> bool {
    // A zombie still has /proc/PID; it is dead for our purposes.
    process_state(pid).is_some_and(|state| state != "Z")
}

/// An interactive bash with job control on a new terminal, its prompt `PROMPT> ` (already shown),
/// with `$F` the ferrinit and `$P` the probe under test.
pub fn interactive_shell() -> OnTerminal {
    let mut command = Command::new(tool("bash"));
    command
        .args(["--norc", "--noprofile", "-i"])
        .env("PS1", "PROMPT> ")
        .env("TERM", "dumb")
        .env("F", ferrinit())
        .env("P", probe());
    clean_start(&mut command);
    let terminal = OnTerminal::start(command);
    terminal.expect("PROMPT> ");
    terminal
}

/// A process beside the tests, not under any ferrinit: it reports every signal it gets, so that
/// a test can prove none reached it.
pub struct Sibling(Running);

impl Sibling {
    pub fn start() -> Sibling {
        let sibling = Running::start(clean_command(probe(), ["signals", "sibling"]));
        sibling.expect_stdout("sibling ready");
        Sibling(sibling)
    }

    /// Alive, and the USR1 sent now is the first signal it ever got.
    pub fn assert_untouched(mut self) {
        // SAFETY: kill has no memory-safety preconditions; the sibling is our child.
        assert_eq!(
            unsafe { libc::kill(self.0.pid(), libc::SIGUSR1) },
            0,
            "the sibling is gone"
        );
        assert_eq!(self.0.expect_stdout("sibling got"), "sibling got SIGUSR1");
        self.0.close_stdin();
        assert_eq!(self.0.finish().code(), 0);
    }
}

/// `sigqueue(pid, sig, value)` from this process, as the raw system call (which, unlike glibc's
/// wrapper, also takes signals 32 and 33).
pub fn sigqueue(pid: i32, sig: i32, value: usize) {
    // The SI_QUEUE layout of a siginfo_t on 64-bit Linux: three ints and padding, then the
    // sender's pid and uid and the value; 128 bytes in all.
    #[repr(C)]
    struct QueueInfo {
        signo: i32,
        errno: i32,
        code: i32,
        pad: i32,
        pid: libc::pid_t,
        uid: libc::uid_t,
        value: usize,
        rest: [u64; 12],
    }
    const _: () = assert!(size_of::<QueueInfo>() == size_of::<libc::siginfo_t>());
    let info = QueueInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        pad: 0,
        pid: std::process::id() as libc::pid_t,
        uid: nix::unistd::getuid().as_raw(),
        value,
        rest: [0; 12],
    };
    // SAFETY: a siginfo_t's 128 bytes with si_code SI_QUEUE, which the kernel accepts.
    let sent = unsafe { libc::syscall(libc::SYS_rt_sigqueueinfo, pid, sig, &raw const info) };
    assert_eq!(
        sent,
        0,
        "rt_sigqueueinfo: {}",
        std::io::Error::last_os_error()
    );
}
