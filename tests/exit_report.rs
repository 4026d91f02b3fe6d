//! Why the child died, said on stderr and written by `--exit-report` as JSON: the OOM killer
//! (for real, in a memory cgroup with a small limit), a core dump, a signal ferrinit forwarded,
//! and the drain's counts.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrinit_testkit::{
    Finished, Running, as_pid1, as_process, probe, require_host, require_root, run, scratch_dir,
    tool,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the report was written");
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn report_path(name: &str) -> PathBuf {
    scratch_dir(&format!("exit-report-{name}")).join("report.json")
}

fn stderr_has(out: &Finished, needle: &str) -> bool {
    out.stderr.iter().any(|l| l.contains(needle))
}

// --- the OOM killer --------------------------------------------------------------------------

/// A memory cgroup made for one test, with a small limit; removed when dropped.
struct MemoryCgroup {
    dir: PathBuf,
}

const LIMIT: &str = "64M";

impl MemoryCgroup {
    /// Under this process's own cgroup v1 memory hierarchy, if the host has one.
    fn v1(name: &str) -> Option<MemoryCgroup> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let path = cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        let parent = mount_of(path, |fstype, options| {
            fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        })?;
        let dir = parent.join(format!("ferrinit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create a v1 memory cgroup");
        std::fs::write(dir.join("memory.limit_in_bytes"), LIMIT).expect("set the limit");
        Some(MemoryCgroup { dir })
    }

    /// Under the cgroup v2 root, if the memory controller is on v2 here. The root may hold
    /// processes and enable controllers at once; other cgroups may not.
    fn v2(name: &str) -> Option<MemoryCgroup> {
        let root = mount_of("/", |fstype, _| fstype == "cgroup2")?;
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return None;
        }
        std::fs::write(root.join("cgroup.subtree_control"), "+memory").expect("enable memory");
        let dir = root.join(format!("ferrinit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create a v2 cgroup");
        std::fs::write(dir.join("memory.max"), LIMIT).expect("set the limit");
        // No swap to escape to.
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        Some(MemoryCgroup { dir })
    }

    /// Moves `command` into this cgroup just before it execs, so everything it starts is in it.
    fn put(&self, command: &mut Command) {
        let procs = CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .expect("no NUL in the path");
        // SAFETY: only open, write and close (async-signal-safe) run between fork and exec, on
        // memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" is the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The directory of cgroup `path` under the first mount of the hierarchy that `is_hierarchy`
/// picks (by fstype and super options) in our mount table.
fn mount_of(path: &str, is_hierarchy: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let after: Vec<&str> = after.split(' ').collect();
        if !is_hierarchy(after.first()?, after.get(2)?) {
            return None;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        let relative = path.strip_prefix(fields.get(3)?.trim_end_matches('/'))?;
        Some(Path::new(fields.get(4)?).join(relative.trim_start_matches('/')))
    })
}

/// `tail /dev/zero` never meets a newline, so it keeps every byte it reads: it grows until the
/// OOM killer stops it. A control child in the same cgroup dies of a SIGKILL that is not the
/// OOM killer's, and must not be blamed on it.
fn oom_kill_is_named_as_the_cause(cgroup: &MemoryCgroup) {
    let tail = tool("tail");
    let path = report_path("oom");
    let mut command = as_pid1([
        "--exit-report".as_ref(),
        path.as_os_str(),
        "--".as_ref(),
        tail.as_os_str(),
        "/dev/zero".as_ref(),
    ]);
    cgroup.put(&mut command);
    let out = run(command);
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(
        stderr_has(
            &out,
            "child killed by SIGKILL (9): the OOM killer acted in its memory cgroup meanwhile"
        ),
        "{:?}",
        out.stderr
    );
    let json = report(&path);
    assert_eq!(json["oom_killed"], true, "{json}");
    assert_eq!(json["signal"]["name"], "SIGKILL", "{json}");
    assert_eq!(json["signal"]["number"], 9, "{json}");
    assert_eq!(json["code"], 137, "{json}");

    let mut command = as_pid1([
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        probe_arg(),
        "die",
        "9",
    ]);
    cgroup.put(&mut command);
    let out = run(command);
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(stderr_has(&out, "not the OOM killer"), "{:?}", out.stderr);
    assert_eq!(report(&path)["oom_killed"], false);
}

/// The OOM killer kills a grandchild (`tail`, by far the largest) in the child's cgroup, then
/// the child SIGKILLs itself: ferrinit says what it knows (the OOM killer acted in the cgroup
/// meanwhile), and claims no more (that the OOM killer killed the child).
fn an_oom_kill_of_another_process_is_not_claimed_as_the_childs(cgroup: &MemoryCgroup) {
    let path = report_path("oom-elsewhere");
    let script = format!("{} /dev/zero; kill -9 $$", tool("tail").display());
    let mut command = as_pid1([
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    cgroup.put(&mut command);
    let out = run(command);
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(
        stderr_has(
            &out,
            "child killed by SIGKILL (9): the OOM killer acted in its memory cgroup meanwhile"
        ),
        "{:?}",
        out.stderr
    );
    assert!(
        !stderr_has(&out, "the kernel's OOM killer"),
        "{:?}",
        out.stderr
    );
    assert_eq!(report(&path)["oom_killed"], true);
}

/// A memory cgroup of cgroup `version` (1 or 2) for one test, or `None` when the test may not
/// run: without root, or on a host without that memory controller, each of which fails the test
/// unless FERRINIT_TEST_SKIP names it.
fn memory_cgroup(version: u8, name: &str) -> Option<MemoryCgroup> {
    if !require_root("the OOM tests make memory cgroups") {
        return None;
    }
    let (cgroup, feature, what) = match version {
        1 => (
            MemoryCgroup::v1(name),
            "cgroup-v1-memory",
            "cgroup v1 memory controller (a pure cgroup v2 host; see the v2 test)",
        ),
        _ => (
            MemoryCgroup::v2(name),
            "cgroup-v2-memory",
            "cgroup v2 memory controller (a hybrid host keeps memory on v1; see the v1 test)",
        ),
    };
    if !require_host(feature, cgroup.is_some(), what) {
        return None;
    }
    cgroup
}

#[test]
fn oom_kill_is_named_from_the_v1_memory_oom_control_on_hosts_with_a_v1_memory_controller() {
    let Some(cgroup) = memory_cgroup(1, "oom-v1") else {
        return;
    };
    oom_kill_is_named_as_the_cause(&cgroup);
}

#[test]
fn oom_kill_is_named_from_the_v2_memory_events_on_hosts_with_a_v2_memory_controller() {
    let Some(cgroup) = memory_cgroup(2, "oom-v2") else {
        return;
    };
    oom_kill_is_named_as_the_cause(&cgroup);
}

/// Under RLIMIT_NOFILE 4 (one descriptor beyond stdio), the baseline is still read (one file
/// after the other), and a SIGKILL is still told apart from the OOM killer.
fn a_sigkill_is_told_apart_from_the_oom_killer_under_a_tight_descriptor_limit(
    cgroup: &MemoryCgroup,
) {
    let mut command = as_process(["-s", "--", probe_arg(), "die", "9"]);
    cgroup.put(&mut command);
    ferrinit_testkit::limit_descriptors(&mut command, 4);
    let out = run(command);
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(stderr_has(&out, "not the OOM killer"), "{:?}", out.stderr);
}

#[test]
fn a_sigkill_is_told_apart_from_the_oom_killer_under_rlimit_nofile_4_with_v1_memory() {
    let Some(cgroup) = memory_cgroup(1, "nofile-v1") else {
        return;
    };
    a_sigkill_is_told_apart_from_the_oom_killer_under_a_tight_descriptor_limit(&cgroup);
}

#[test]
fn a_sigkill_is_told_apart_from_the_oom_killer_under_rlimit_nofile_4_with_v2_memory() {
    let Some(cgroup) = memory_cgroup(2, "nofile-v2") else {
        return;
    };
    a_sigkill_is_told_apart_from_the_oom_killer_under_a_tight_descriptor_limit(&cgroup);
}

#[test]
fn a_sigkill_is_told_apart_from_the_oom_killer_when_proc_self_cgroup_is_long() {
    // /proc/self/cgroup beyond the 2 KB read at start-up (a Kubernetes node on cgroup v1 has a
    // dozen hierarchies, with paths of 150 bytes and more): here one path of 9 × 241 bytes, in
    // the v1 memory hierarchy, nested below a cgroup of the test's own.
    let Some(cgroup) = memory_cgroup(1, "long-path") else {
        return;
    };
    let mut nested = vec![cgroup.dir.clone()];
    for level in 0..9 {
        let dir = nested[level].join(format!("{level}{}", "x".repeat(240)));
        std::fs::create_dir(&dir).expect("create a nested v1 memory cgroup");
        nested.push(dir);
    }
    let deepest = MemoryCgroup {
        dir: nested.pop().expect("nine levels"),
    };
    let mut command = as_process([
        "-s",
        "--",
        "sh",
        "-c",
        "wc -c </proc/self/cgroup && kill -KILL $$",
    ]);
    deepest.put(&mut command);
    let out = run(command);
    drop(deepest);
    for dir in nested.iter().skip(1).rev() {
        let _ = std::fs::remove_dir(dir);
    }
    let length: usize = out
        .stdout
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        length > 2048,
        "/proc/self/cgroup is {length} bytes: {:?}",
        out.stdout
    );
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(stderr_has(&out, "not the OOM killer"), "{:?}", out.stderr);
}

#[test]
fn an_oom_kill_of_another_process_in_the_v1_memory_cgroup_is_not_claimed_as_the_childs() {
    let Some(cgroup) = memory_cgroup(1, "oom-elsewhere-v1") else {
        return;
    };
    an_oom_kill_of_another_process_is_not_claimed_as_the_childs(&cgroup);
}

#[test]
fn an_oom_kill_of_another_process_in_the_v2_memory_cgroup_is_not_claimed_as_the_childs() {
    let Some(cgroup) = memory_cgroup(2, "oom-elsewhere-v2") else {
        return;
    };
    an_oom_kill_of_another_process_is_not_claimed_as_the_childs(&cgroup);
}

// --- core dumps, forwarded signals -----------------------------------------------------------

/// A shell that aborts itself, with core dumps allowed or not. The core file (if the host's
/// core_pattern writes one) lands in the scratch directory.
fn aborting_child(core_limit: &str, path: &Path) -> Finished {
    let script = format!("ulimit -c {core_limit}; kill -ABRT $$");
    let mut command = as_pid1([
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    command.current_dir(path.parent().expect("scratch dir"));
    run(command)
}

#[test]
fn a_core_dump_is_named_and_reported() {
    let path = report_path("core");
    let out = aborting_child("unlimited", &path);
    assert_eq!(out.code(), 134, "{:?}", out.stderr);
    assert!(
        stderr_has(&out, "child killed by SIGABRT (6): core dumped"),
        "{:?}",
        out.stderr
    );
    let json = report(&path);
    assert_eq!(json["core_dumped"], true, "{json}");
    assert_eq!(json["oom_killed"], false, "{json}");

    let out = aborting_child("0", &path);
    assert_eq!(out.code(), 134, "{:?}", out.stderr);
    assert!(!stderr_has(&out, "core dumped"), "{:?}", out.stderr);
    assert_eq!(report(&path)["core_dumped"], false);
}

#[test]
fn a_death_by_a_forwarded_signal_is_reported_as_forwarded_and_only_at_info_level() {
    let path = report_path("forwarded");
    let path_arg = path.to_str().expect("utf-8");
    for verbose in [false, true] {
        let mut args = vec!["--exit-report", path_arg];
        if verbose {
            args.push("-v");
        }
        args.extend(["--", probe_arg(), "wait"]);
        let running = Running::start(as_pid1(args));
        running.expect_stdout("ready");
        running.signal_init(libc::SIGTERM);
        let out = running.finish();
        assert_eq!(out.code(), 143, "{:?}", out.stderr);
        let line = "child killed by SIGTERM (15): forwarded by ferrinit";
        if verbose {
            assert!(stderr_has(&out, line), "{:?}", out.stderr);
        } else {
            // What was asked for (docker stop) is no warning.
            assert!(out.stderr.is_empty(), "{:?}", out.stderr);
        }
        let json = report(&path);
        assert_eq!(json["forwarded"], true, "{json}");
        assert_eq!(json["signal"]["name"], "SIGTERM", "{json}");
    }
}

#[test]
fn a_death_by_a_signal_nobody_forwarded_is_a_warning() {
    let path = report_path("not-forwarded");
    let out = run(as_pid1([
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        probe_arg(),
        "die",
        "10",
    ]));
    assert_eq!(out.code(), 138, "{:?}", out.stderr);
    assert_eq!(
        out.stderr,
        ["ferrinit: warning: child killed by SIGUSR1 (10)"],
        "no cause ferrinit could tell"
    );
    let json = report(&path);
    assert_eq!(json["forwarded"], false, "{json}");
    assert_eq!(json["core_dumped"], false, "{json}");
}

/// Ctrl-C at a terminal reaches the child's group straight from the kernel, not through
/// ferrinit: the child stopped as asked, which is no warning.
#[test]
fn a_death_by_a_request_to_stop_is_quiet_even_when_not_forwarded() {
    for sig in ["2", "15", "1", "13"] {
        let out = run(as_pid1(["--", probe_arg(), "die", sig]));
        assert_eq!(out.code(), 128 + sig.parse::<i32>().expect("number"));
        assert!(out.stderr.is_empty(), "signal {sig}: {:?}", out.stderr);
    }
}

// --- the report ------------------------------------------------------------------------------

/// Two stragglers outlive the child (which exits 3): one exits on the drain's TERM, the other
/// ignores it and is SIGKILLed when the grace period is over.
#[test]
fn the_report_counts_the_drained_and_the_killed_and_the_run_time() {
    let path = report_path("drain");
    let script = format!(
        "{p} straggler term 0 & {p} straggler stubborn 0 & wait; exit 3",
        p = probe_arg()
    );
    let mut running = Running::start(as_pid1([
        "-t",
        "2s",
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]));
    running.close_stdin();
    running.expect_stdout("straggler got SIGTERM");
    let out = running.finish();
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
    let json = report(&path);
    assert_eq!(json["code"], 3, "{json}");
    assert_eq!(json["signal"], serde_json::Value::Null, "{json}");
    assert_eq!(json["drained"], 1, "{json}");
    assert_eq!(json["killed"], 1, "{json}");
    let ms = json["run_time_ms"].as_u64().expect("a number");
    assert!(
        ms >= 2000,
        "the stubborn one took the whole grace period: {json}"
    );
    let keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "code",
        "signal",
        "core_dumped",
        "oom_killed",
        "forwarded",
        "drained",
        "killed",
        "run_time_ms",
    ] {
        assert!(keys.contains(&key), "{key} missing: {json}");
    }
}

#[test]
fn the_environment_names_the_report_too_and_exec_failures_are_reported() {
    let path = report_path("env");
    let mut command = as_pid1(["/no/such/program"]);
    command.env("FERRINIT_EXIT_REPORT", &path);
    let out = run(command);
    assert_eq!(out.code(), 127, "{:?}", out.stderr);
    let json = report(&path);
    assert_eq!(json["code"], 127, "{json}");
    assert_eq!(json["signal"], serde_json::Value::Null, "{json}");
}

#[test]
fn an_unwritable_report_path_fails_with_125_before_the_command_runs() {
    let marker = scratch_dir("exit-report-unwritable").join("ran");
    let script = format!("echo > {}", marker.display());
    let out = run(as_pid1([
        "--exit-report",
        "/no/such/dir/report.json",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]));
    assert_eq!(out.code(), 125, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("cannot write the exit report to /no/such/dir/report.json"),
        "{:?}",
        out.stderr
    );
    assert!(!marker.exists(), "the command must not have run");
}

#[test]
fn the_report_is_written_under_rlimit_nofile_4() {
    // One descriptor beyond stdio: the report's, which the OOM baseline's (left open until the
    // spawn) must leave free.
    let path = report_path("nofile-4");
    let mut command = as_process([
        "-s",
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        probe_arg(),
        "exit",
        "3",
    ]);
    ferrinit_testkit::limit_descriptors(&mut command, 4);
    let out = run(command);
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
    assert_eq!(report(&path)["code"], 3);
}

#[test]
fn an_empty_report_path_is_a_usage_error() {
    let out = run(as_pid1(["--exit-report", "", "true"]));
    assert_eq!(out.code(), 2, "{:?}", out.stderr);
    let mut command = as_pid1(["true"]);
    command.env("FERRINIT_EXIT_REPORT", "");
    let out = run(command);
    assert_eq!(out.code(), 2, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("FERRINIT_EXIT_REPORT"),
        "{:?}",
        out.stderr
    );
}

// --- where the report goes -------------------------------------------------------------------

/// ferrinit leaves its working directory once the child exists; the report still lands where the
/// relative path named it at the start.
#[test]
fn a_relative_report_path_is_relative_to_the_directory_ferrinit_started_in() {
    let dir = scratch_dir("exit-report-relative");
    let mut command = as_pid1(["--exit-report", "relative-report.json", "--", "/bin/true"]);
    command.current_dir(&dir);
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    assert_eq!(report(&dir.join("relative-report.json"))["code"], 0);
}

/// `--exit-report /dev/stdout` with stdout redirected to a file: the command's output stays, the
/// report follows it.
#[test]
fn a_report_to_stdout_redirected_to_a_file_keeps_the_commands_output() {
    let log = scratch_dir("exit-report-stdout").join("out.log");
    std::fs::write(&log, "earlier line\n").expect("write the log");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log");
    let mut command = as_pid1(["--exit-report", "/dev/stdout", "--", "/bin/echo", "line"]);
    command
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let status = ferrinit_testkit::wait_timeout(&mut child, ferrinit_testkit::stall_timeout())
        .expect("ferrinit exits");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).expect("read the log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert_eq!(lines[..2], ["earlier line", "line"], "{text:?}");
    let json: serde_json::Value = serde_json::from_str(lines[2]).expect("the report is JSON");
    assert_eq!(json["code"], 0, "{json}");
}

/// A FIFO nobody reads would block ferrinit in open(2) with every signal blocked, before the
/// command starts: it is one error line and 125 instead. With a reader, the report goes through.
#[test]
fn a_report_fifo_without_a_reader_fails_at_once_and_with_one_the_report_goes_through() {
    let dir = scratch_dir("exit-report-fifo");
    let fifo = dir.join("report.fifo");
    let marker = dir.join("ran");
    let c_fifo = CString::new(fifo.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let script = format!("echo > {}", marker.display());
    let args = || {
        as_pid1([
            "--exit-report",
            fifo.to_str().expect("utf-8"),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
    };
    let out = run(args());
    assert_eq!(out.code(), 125, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("no process has that FIFO open for reading"),
        "{:?}",
        out.stderr
    );
    assert!(!marker.exists(), "the command must not have run");

    // Opened before ferrinit, non-blocking: read once ferrinit is gone, the pipe holds the report.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    let out = run(args());
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut text).expect("read the FIFO");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(json["code"], 0, "{json}");
}

/// `--exit-report /dev/fd/3`: ferrinit closes what it inherited once the child exists, but keeps
/// the report it opened through fd 3; the command does not get that copy.
#[test]
fn a_report_to_an_inherited_descriptor_is_written_and_not_passed_on() {
    let path = report_path("fd3");
    let file = std::fs::File::create(&path).expect("create the report");
    let mut command = as_pid1(["--exit-report", "/dev/fd/3", "--", probe_arg(), "state"]);
    let raw = file.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; `raw` stays open until the spawn is done.
    unsafe {
        command.pre_exec(move || {
            // `raw` may be 3 itself, made close-on-exec by clean_start: dup2 then does nothing.
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(command);
    drop(file);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    // The command gets fd 3 (inherited), but not ferrinit's own copy of the report.
    assert!(
        out.stdout.iter().any(|l| l == "fds 0 1 2 3"),
        "{:?}",
        out.stdout
    );
    assert_eq!(report(&path)["code"], 0);
}

/// `--contain=subreaper` SIGKILLs what is left once the child is gone; the report comes after
/// that sweep and counts its victim among `killed`.
#[test]
fn the_subreaper_levels_sweep_is_counted_among_the_killed() {
    let path = report_path("subreaper-sweep");
    let command = as_process([
        "--contain=subreaper",
        "--exit-report",
        path.to_str().expect("utf-8"),
        "--",
        "/bin/sh",
        "-c",
        "/bin/sleep 100000 & exit 0",
    ]);
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let json = report(&path);
    assert_eq!(json["killed"], 1, "{json}");
    assert_eq!(json["drained"], 0, "{json}");
}

/// Once ferrinit has waited for signals, under RLIMIT_NOFILE 4: its second wait would open a
/// signalfd, in the one slot beyond stdio, which the OOM counter needs once the child is dead.
#[test]
fn an_oom_kill_after_ferrinit_has_waited_for_signals_is_named_under_rlimit_nofile_4() {
    let Some(cgroup) = memory_cgroup(1, "oom-nofile-waited") else {
        return;
    };
    let tail = tool("tail");
    let script = r#"echo ready; read -r line; exec "$0" /dev/zero"#;
    let mut command = as_process([
        "-s".as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
        tail.as_os_str(),
    ]);
    cgroup.put(&mut command);
    ferrinit_testkit::limit_descriptors(&mut command, 4);
    let mut running = Running::start(command);
    running.expect_stdout("ready");
    let init = running.pid();
    // SIGWINCH: forwarded to the shell, which ignores it. Taken by the first wait, after which
    // ferrinit waits again.
    // SAFETY: kill has no memory-safety preconditions; `init` is our child.
    assert_eq!(unsafe { libc::kill(init, libc::SIGWINCH) }, 0);
    ferrinit_testkit::eventually("ferrinit took SIGWINCH and waits again", || {
        ferrinit_testkit::status_field(init, "ShdPnd").as_deref() == Some("0000000000000000")
            && ferrinit_testkit::waits_for_signals_without_timeout(init)
    });
    running.write_stdin("go\n");
    let out = running.finish();
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    assert!(
        stderr_has(
            &out,
            "child killed by SIGKILL (9): the OOM killer acted in its memory cgroup meanwhile"
        ),
        "{:?}",
        out.stderr
    );
}

/// A SIGKILL of the child under `ferrinit -s -- probe wait`, with ferrinit's RLIMIT_NOFILE
/// lowered to `limit` once the child is ready; ferrinit's stderr.
fn sigkill_with_descriptors_lowered_to(limit: u64) -> Finished {
    let running = Running::start(as_process(["-s", "--", probe_arg(), "wait"]));
    running.expect_stdout("ready");
    let init = running.pid();
    ferrinit_testkit::limit_descriptors_of(init, limit);
    let child = ferrinit_testkit::children_of(init)[0];
    // SAFETY: kill has no memory-safety preconditions; the probe is ferrinit's child.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let out = running.finish();
    assert_eq!(out.code(), 137, "{:?}", out.stderr);
    out
}

#[test]
fn a_sigkill_is_never_said_not_to_be_the_oom_killer_when_the_counter_cannot_be_read_again() {
    // With room, this host's memory cgroup counter tells (else the test could not fail).
    let out = sigkill_with_descriptors_lowered_to(64);
    assert!(stderr_has(&out, "not the OOM killer"), "{:?}", out.stderr);
    // With 0, 1 and 2 alone, the counter cannot be opened at the child's death.
    let out = sigkill_with_descriptors_lowered_to(3);
    assert!(
        stderr_has(&out, "possibly the OOM killer"),
        "{:?}",
        out.stderr
    );
}
