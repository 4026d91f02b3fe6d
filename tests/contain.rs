//! `--contain`: whatever the command started is gone when ferrinit exits, at every level, as root
//! and not, nested, in a container, and where nothing may be created (the fallback). Each case
//! starts a marker (setsid, double-forked, ignoring TERM) and checks by pidfd that it is gone.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use ferrinit_testkit::containers::{Bundle, Runtime};
use ferrinit_testkit::{
    OnTerminal, Running, as_process, children_of, clean_command, eventually, ferrinit,
    interactive_shell, pidfd_open, probe, process_state, require, require_root, stall_timeout,
    status_field, tool,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

fn ferrinit_arg() -> &'static str {
    ferrinit().to_str().expect("utf-8 path")
}

/// `setpriv` to uid and gid 65534, no groups: an unprivileged user.
fn unprivileged(args: &[&str]) -> Command {
    let setpriv = tool("setpriv");
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        ferrinit_arg(),
    ];
    all.extend_from_slice(args);
    clean_command(setpriv, all)
}

/// The "no room" fixture: no user namespace, no PID namespace, no cgroup may be created.
fn no_room(args: &[&str]) -> Command {
    let mut all = vec!["no-room", ferrinit_arg()];
    all.extend_from_slice(args);
    clean_command(probe(), all)
}

/// The marker the probe started, pinned by a pidfd.
struct Marker {
    pid: i32,
    pidfd: OwnedFd,
    uid: u32,
}

impl Marker {
    /// Reads the probe's `marker PID uid UID` line and finds that process among the descendants
    /// of `root` (PID is as the marker's own namespace numbers it: the last of its NSpid).
    fn find(running: &Running, root: i32) -> Marker {
        let line = running.expect_stdout("marker ");
        let words: Vec<&str> = line.split_whitespace().collect();
        let (inside, uid): (i32, u32) = (words[1].parse().unwrap(), words[3].parse().unwrap());
        // A walk of /proc is no snapshot: a process re-parented while it runs (the marker, when
        // the middle of its double fork exits) can be missed. Walk again until it is found.
        let mut found = None;
        eventually(&format!("a marker with pid {inside} below {root}"), || {
            found = Self::walk(root, inside);
            found.is_some()
        });
        let (pid, pidfd) = found.expect("found");
        Marker { pid, pidfd, uid }
    }

    fn walk(root: i32, inside: i32) -> Option<(i32, OwnedFd)> {
        let mut queue = vec![root];
        while let Some(pid) = queue.pop() {
            let nspid = status_field(pid, "NSpid").unwrap_or_default();
            if nspid.split_whitespace().last() == Some(inside.to_string().as_str()) && pid != root {
                let pidfd = pidfd_open(pid).expect("pidfd of the marker");
                // Still the same process once pinned.
                let again = status_field(pid, "NSpid").unwrap_or_default();
                assert_eq!(again, nspid, "marker {pid} changed under us");
                return Some((pid, pidfd));
            }
            queue.extend(children_of(pid));
        }
        None
    }

    fn is_gone(&self) -> bool {
        self.exits_within(0)
    }

    fn exits_within(&self, ms: i32) -> bool {
        let mut poll = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, ms) == 1 }
    }
}

/// Runs `command` (a ferrinit --contain with `probe marker CODE`), lets the command exit, and
/// checks the status and that the marker is gone. Returns stderr.
fn marker_is_gone_and_status_comes_back(command: Command, code: i32) -> (Marker, Vec<String>) {
    let mut running = Running::start(command);
    let marker = Marker::find(&running, running.pid());
    assert!(!marker.is_gone(), "the marker died too early");
    running.close_stdin();
    let finished = running.finish();
    assert_eq!(finished.code(), code, "stderr: {:?}", finished.stderr);
    assert!(
        marker.is_gone(),
        "marker {} survived; stderr: {:?}",
        marker.pid,
        finished.stderr
    );
    (marker, finished.stderr)
}

fn reached(stderr: &[String], level: &str) -> bool {
    stderr
        .iter()
        .any(|line| line.starts_with(&format!("ferrinit: contained: {level}")))
}

#[test]
fn pidns_as_root_stops_everything_and_exits_with_the_status() {
    if !require_root("this test runs as root") {
        return;
    }
    let command = as_process(["-v", "--contain=pidns", "--", probe_arg(), "marker", "7"]);
    let (marker, stderr) = marker_is_gone_and_status_comes_back(command, 7);
    assert!(reached(&stderr, "pidns"), "{stderr:?}");
    assert_eq!(marker.uid, 0);
}

#[test]
fn pidns_without_root_runs_as_the_caller_in_a_user_namespace() {
    let command = unprivileged(&["-v", "--contain=pidns", "--", probe_arg(), "marker", "8"]);
    let (marker, stderr) = marker_is_gone_and_status_comes_back(command, 8);
    assert!(
        reached(&stderr, "pidns, in a user namespace of its own"),
        "{stderr:?}"
    );
    assert_eq!(marker.uid, 65534, "the command runs as the caller");
}

#[test]
fn auto_reaches_pidns_here_and_is_quiet_by_default() {
    let command = unprivileged(&["--contain", "--", probe_arg(), "marker", "0"]);
    let (_, stderr) = marker_is_gone_and_status_comes_back(command, 0);
    assert_eq!(stderr, Vec::<String>::new(), "quiet by default");
    let mut command = unprivileged(&["--", probe_arg(), "marker", "0"]);
    command
        .env("FERRINIT_CONTAIN", "auto")
        .env("FERRINIT_VERBOSITY", "2");
    let (_, stderr) = marker_is_gone_and_status_comes_back(command, 0);
    assert!(reached(&stderr, "pidns"), "{stderr:?}");
}

#[test]
fn a_signal_death_of_the_command_gives_128_plus_n() {
    let finished = ferrinit_testkit::run(unprivileged(&[
        "--contain",
        "--",
        probe_arg(),
        "die",
        &libc::SIGUSR2.to_string(),
    ]));
    assert_eq!(finished.code(), 128 + libc::SIGUSR2);
}

#[test]
fn outer_sigkill_leaves_nothing_alive_inside() {
    for command in [
        as_process(["--contain=pidns", "--", probe_arg(), "marker", "0"]),
        unprivileged(&["--contain=pidns", "--", probe_arg(), "marker", "0"]),
    ] {
        let running = Running::start(command);
        let outer = running.init_pid();
        let marker = Marker::find(&running, running.pid());
        let command = children_of(outer)[0];
        let command_pidfd = pidfd_open(command).expect("pidfd of the inner ferrinit");
        // SAFETY: kill has no memory-safety preconditions; `outer` is our descendant.
        assert_eq!(unsafe { libc::kill(outer, libc::SIGKILL) }, 0);
        let ms = stall_timeout().as_millis() as i32;
        assert!(marker.exits_within(ms), "marker {} survived", marker.pid);
        let mut poll = libc::pollfd {
            fd: command_pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, ms) }, 1, "inner survived");
        assert_eq!(running.finish().code(), 128 + libc::SIGKILL);
    }
}

#[test]
fn term_and_usr1_sent_to_ferrinit_reach_the_command() {
    // A marker first (its stdin at EOF, so that its starter exits at once), then the command.
    let script = r#""$0" marker 0 </dev/null; exec "$0" signals"#;
    for command in [
        as_process(["--contain", "--", "sh", "-c", script, probe_arg()]),
        unprivileged(&["--contain", "--", "sh", "-c", script, probe_arg()]),
        // The inner ferrinit is not PID 1 here: a signal relayed by its parent, the outer one,
        // is still the command's.
        as_process(["--contain=cgroup", "--", "sh", "-c", script, probe_arg()]),
    ] {
        let mut running = Running::start(command);
        let marker = Marker::find(&running, running.pid());
        running.expect_stdout("probe ready");
        running.signal_init(libc::SIGUSR1);
        running.expect_stdout("probe got SIGUSR1");
        running.signal_init(libc::SIGTERM);
        running.expect_stdout("probe got SIGTERM");
        running.close_stdin();
        assert_eq!(running.finish().code(), 0);
        assert!(marker.is_gone(), "marker {} survived", marker.pid);
    }
}

#[test]
fn parent_death_signal_reaches_the_command_inside() {
    for level in ["pidns", "cgroup"] {
        // sh is the outer ferrinit's parent: when it dies, the kernel sends ferrinit SIGUSR1.
        let script = r#""$0" -p SIGUSR1 --contain="$1" -- "$2" signals; exit"#;
        let args = ["-c", script, ferrinit_arg(), level, probe_arg()];
        let mut running = Running::start(clean_command("sh", args));
        running.expect_stdout("probe ready");
        // SAFETY: kill has no memory-safety preconditions; the pid is sh, our child.
        assert_eq!(unsafe { libc::kill(running.pid(), libc::SIGKILL) }, 0);
        running.expect_stdout("probe got SIGUSR1");
        running.close_stdin();
    }
}

#[test]
fn grace_period_inside_the_namespace_lets_a_straggler_finish_its_term_handler() {
    let command = unprivileged(&[
        "--contain=pidns",
        "-t",
        "30s",
        "--",
        probe_arg(),
        "straggler",
        "term",
        "3",
    ]);
    let running = Running::start(command);
    running.expect_stdout("straggler");
    running.expect_stdout("straggler got SIGTERM");
    assert_eq!(running.finish().code(), 3);
}

/// The cgroup v2 mount and ferrinit's (the test's) own cgroup in it.
fn own_cgroup_dir() -> std::path::PathBuf {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("in a cgroup v2");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mountpoint = mountinfo
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("a cgroup2 mount");
    std::path::Path::new(mountpoint).join(own.trim_start_matches('/'))
}

/// The cgroups that the outer ferrinit `outer` made in our own cgroup: `ferrinit-contain-OUTER`
/// and `ferrinit-contain-OUTER-*`.
fn leaves_of(outer: i32) -> Vec<std::path::PathBuf> {
    let name = format!("ferrinit-contain-{outer}");
    std::fs::read_dir(own_cgroup_dir())
        .unwrap()
        .flatten()
        .filter(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            file == name || file.starts_with(&format!("{name}-"))
        })
        .map(|entry| entry.path())
        .collect()
}

/// The one cgroup that the outer ferrinit `outer` made.
fn leaf_of(outer: i32) -> std::path::PathBuf {
    let leaves = leaves_of(outer);
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    leaves.into_iter().next().unwrap()
}

#[test]
fn cgroup_level_empties_and_removes_its_cgroup() {
    if !require_root("this test runs as root") {
        return;
    }
    let command = as_process(["-v", "--contain=cgroup", "--", probe_arg(), "marker", "9"]);
    let mut running = Running::start(command);
    let marker = Marker::find(&running, running.pid());
    let dir = leaf_of(running.pid());
    let leaf = dir.file_name().unwrap().to_str().unwrap();
    let in_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", marker.pid)).unwrap();
    assert!(in_cgroup.contains(leaf), "{in_cgroup}");
    running.close_stdin();
    let finished = running.finish();
    assert_eq!(finished.code(), 9, "{:?}", finished.stderr);
    assert!(marker.is_gone(), "marker survived");
    assert!(!dir.exists(), "{dir:?} was left behind");
    assert!(reached(&finished.stderr, "cgroup"), "{:?}", finished.stderr);
}

#[test]
fn cgroup_level_with_a_grace_period_drains_first() {
    if !require_root("this test runs as root") {
        return;
    }
    // The child waits for the test to have found the leaf: a child that exited at once could
    // have its straggler drained and the leaf removed before the test looked.
    let command = as_process([
        "--contain=cgroup",
        "-t",
        "30s",
        "--",
        "sh",
        "-c",
        r#""$0" straggler term 0; read -r line; exit 4"#,
        probe_arg(),
    ]);
    let mut running = Running::start(command);
    running.expect_stdout("straggler");
    let leaf = leaf_of(running.pid());
    running.close_stdin();
    running.expect_stdout("straggler got SIGTERM");
    assert_eq!(running.finish().code(), 4);
    assert!(!leaf.exists(), "{leaf:?} was left behind");
}

#[test]
fn subreaper_level_sweeps_every_descendant() {
    let command = unprivileged(&[
        "-v",
        "--contain=subreaper",
        "--",
        probe_arg(),
        "marker",
        "11",
    ]);
    let (_, stderr) = marker_is_gone_and_status_comes_back(command, 11);
    assert!(reached(&stderr, "subreaper"), "{stderr:?}");
}

#[test]
fn where_nothing_may_be_created_auto_falls_back_to_subreaper_and_says_why() {
    if !require_root("the fixture maps a user namespace from outside, as root") {
        return;
    }
    // Without -v: the fallback guarantees less, and says so at the default verbosity.
    let command = no_room(&["--contain", "--", probe_arg(), "marker", "12"]);
    let (marker, stderr) = marker_is_gone_and_status_comes_back(command, 12);
    assert_eq!(marker.uid, 65534);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    let line = stderr
        .iter()
        .find(|l| l.starts_with("ferrinit: warning: contained: subreaper"))
        .unwrap_or_else(|| panic!("{stderr:?}"));
    assert!(
        line.contains("user.max_user_namespaces=0") && line.contains("Permission denied"),
        "{line}"
    );
}

#[test]
fn a_named_level_that_cannot_be_had_says_why_and_exits_125() {
    if !require_root("the fixture maps a user namespace from outside, as root") {
        return;
    }
    for (level, why) in [
        (
            "pidns",
            "user namespaces are disabled: user.max_user_namespaces=0",
        ),
        ("cgroup", "Permission denied"),
    ] {
        let finished = ferrinit_testkit::run(no_room(&[
            &format!("--contain={level}"),
            "--",
            probe_arg(),
            "exit",
            "0",
        ]));
        assert_eq!(finished.code(), 125, "{level}: {:?}", finished.stderr);
        assert_eq!(finished.stderr.len(), 1, "{:?}", finished.stderr);
        assert!(finished.stderr[0].contains(why), "{:?}", finished.stderr);
    }
}

#[test]
fn contain_inside_contain_nests() {
    for command in [
        as_process([
            "-v",
            "--contain",
            "--",
            ferrinit_arg(),
            "-v",
            "--contain",
            "--",
            probe_arg(),
            "marker",
            "13",
        ]),
        unprivileged(&[
            "-v",
            "--contain",
            "--",
            ferrinit_arg(),
            "-v",
            "--contain",
            "--",
            probe_arg(),
            "marker",
            "13",
        ]),
    ] {
        let (_, stderr) = marker_is_gone_and_status_comes_back(command, 13);
        let levels = stderr
            .iter()
            .filter(|l| l.starts_with("ferrinit: contained: pidns"))
            .count();
        assert_eq!(levels, 2, "{stderr:?}");
    }
}

#[test]
fn contain_as_pid1_has_nothing_to_add_and_says_so() {
    let command = ferrinit_testkit::as_pid1(["-v", "--contain", "--", probe_arg(), "marker", "14"]);
    let (_, stderr) = marker_is_gone_and_status_comes_back(command, 14);
    assert!(
        stderr.iter().any(|l| l.contains("already PID 1")),
        "{stderr:?}"
    );
}

/// In a default runc container (no CAP_SYS_ADMIN, no CAP_SETFCAP, no cgroup v2 mounted inside),
/// no namespace and no cgroup can be had: the fallback is reached, and each reason named.
#[test]
fn contain_inside_a_default_runc_container_falls_back_to_subreaper() {
    if !(require_root("container runtimes run as root here") && require("runc")) {
        return;
    }
    let bundle = Bundle::new(
        "contain",
        &[
            "/ferrinit",
            "-v",
            "--contain",
            "--",
            "/probe",
            "marker",
            "15",
        ],
    );
    let (_, stderr) = marker_is_gone_and_status_comes_back(bundle.run(Runtime::Runc), 15);
    let line = stderr
        .iter()
        .find(|l| l.starts_with("ferrinit: warning: contained: subreaper"))
        .unwrap_or_else(|| panic!("{stderr:?}"));
    assert!(
        line.contains("CAP_SETFCAP") && line.contains("no cgroup v2 mount"),
        "{line}"
    );
}

/// Granted CAP_SYS_ADMIN, the container's root makes a PID namespace and mounts its /proc.
#[test]
fn contain_inside_a_runc_container_with_cap_sys_admin_gets_a_pid_namespace() {
    if !(require_root("container runtimes run as root here") && require("runc")) {
        return;
    }
    let bundle = Bundle::new(
        "contain-admin",
        &[
            "/ferrinit",
            "-v",
            "--contain",
            "--",
            "/probe",
            "marker",
            "16",
        ],
    );
    let config = bundle.dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(r#""CAP_KILL""#), "{text}");
    let granted = text.replace(r#""CAP_KILL""#, r#""CAP_KILL","CAP_SYS_ADMIN""#);
    std::fs::write(&config, granted).unwrap();
    let (_, stderr) = marker_is_gone_and_status_comes_back(bundle.run(Runtime::Runc), 16);
    assert!(reached(&stderr, "pidns"), "{stderr:?}");
}

#[test]
fn ctrl_c_under_contain_on_a_terminal_gives_130() {
    let mut shell = interactive_shell();
    for (prefix, level) in [
        ("", "pidns"),
        (
            "setpriv --reuid=65534 --regid=65534 --clear-groups ",
            "pidns",
        ),
        ("", "cgroup"),
        ("", "subreaper"),
    ] {
        shell.type_text(&format!(
            "{prefix}\"$F\" --contain={level} -- \"$P\" tty-read\n"
        ));
        shell.expect("ready\n");
        shell.type_text("\x03");
        shell.expect("PROMPT> ");
        shell.type_text("echo status=$?\n");
        shell.expect("status=130");
        // The shell reads the terminal again: the foreground came back to it.
        shell.type_text("read -r line; echo got=$line\n");
        shell.type_text("still mine\n");
        shell.expect("got=still mine");
    }
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn ctrl_z_under_contain_gives_the_shell_its_prompt_back_and_fg_resumes_the_command() {
    let mut shell = interactive_shell();
    for (prefix, level) in [
        ("", "pidns"),
        (
            "setpriv --reuid=65534 --regid=65534 --clear-groups ",
            "pidns",
        ),
        ("", "cgroup"),
        ("", "subreaper"),
    ] {
        // One process that reads the terminal line after line. (Were the reader a child of the
        // command, the shell could get its prompt back before the reader stopped, and the
        // reader take the next line typed.)
        shell.type_text(&format!(
            "{prefix}\"$F\" --contain={level} -- sed -u 's/^/read /'\n"
        ));
        shell.type_text("before\n");
        shell.expect("read before");
        shell.type_text("\x1a");
        shell.expect("Stopped");
        shell.expect("PROMPT> ");
        shell.type_text("jobs; echo jobs-$((1 + 1))\n");
        shell.expect("Stopped");
        shell.expect("jobs-2");
        shell.type_text("fg\n");
        // Resumed in the foreground: the command reads the terminal again.
        shell.type_text("after fg\n");
        shell.expect("read after fg");
        shell.type_text("\x03");
        shell.expect("PROMPT> ");
        shell.type_text("echo status=$?\n");
        shell.expect("status=130");
        shell.type_text("jobs; echo jobs-$((2 + 1))\n");
        let jobs = shell.expect("jobs-3");
        assert!(!jobs.contains("Stopped"), "--contain={level}: {jobs:?}");
    }
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn fg_gives_the_terminal_to_the_command_of_a_contained_ferrinit_started_in_the_background() {
    let mut shell = interactive_shell();
    for level in ["pidns", "cgroup"] {
        // The command reads the terminal from the background: SIGTTIN stops it, and the outer
        // ferrinit stops too, so that the shell sees the job stopped, and `wait` returns.
        shell.type_text(&format!(
            "\"$F\" --contain={level} -- \"$P\" tty-read & wait %1; echo waited=$?\n"
        ));
        shell.expect("ready\n");
        shell.expect("waited=147");
        shell.expect("PROMPT> ");
        shell.type_text("fg\n");
        shell.type_text("typed\n");
        shell.expect("read typed");
        shell.type_text("echo status=$?\n");
        shell.expect("status=0");
    }
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn ctrl_z_under_contain_without_a_job_control_shell_stops_only_the_command() {
    // ferrinit leads the session (`ssh -t host ferrinit ...`): nobody would continue a stopped
    // ferrinit, so neither the outer nor the inner one stops, and a SIGCONT to ferrinit resumes
    // the command.
    for level in ["pidns", "cgroup"] {
        let contain = format!("--contain={level}");
        let mut terminal = OnTerminal::start(as_process([
            contain.as_str(),
            "--",
            probe_arg(),
            "tty-read",
        ]));
        terminal.expect("ready");
        let outer = terminal.pid();
        // Beside the cgroup level's watcher, the one child with a child of its own.
        let (inner, command) = children_of(outer)
            .into_iter()
            .find_map(|inner| Some((inner, *children_of(inner).first()?)))
            .expect("the inner ferrinit and the command");
        terminal.type_text("\x1a");
        eventually("the command is stopped", || {
            process_state(command).as_deref() == Some("T")
        });
        for ferrinit in [outer, inner] {
            assert_ne!(
                process_state(ferrinit).as_deref(),
                Some("T"),
                "{contain}: ferrinit {ferrinit} is stopped"
            );
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our ferrinit.
        assert_eq!(unsafe { libc::kill(outer, libc::SIGCONT) }, 0);
        terminal.type_text("resumed\n");
        terminal.expect("read resumed");
        assert!(terminal.finish().success(), "{contain}");
    }
}

/// `probe state` under `ARGS`, started with USR1 and TERM blocked, HUP and PIPE ignored, and
/// descriptor 5 inherited: everything but the pid line.
fn state_under(args: &[&str]) -> Vec<String> {
    let mut command = as_process(args.iter().copied().chain([probe_arg(), "state"]));
    // SAFETY: only async-signal-safe calls run in the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::dup2(2, 5);
            Ok(())
        });
    }
    let finished = ferrinit_testkit::run(command);
    assert_eq!(finished.code(), 0, "{:?}", finished.stderr);
    finished
        .stdout
        .into_iter()
        .filter(|line| !line.starts_with("pid "))
        .collect()
}

#[test]
fn the_command_gets_the_signal_state_and_descriptors_ferrinit_was_started_with() {
    if !require_root("the cgroup level needs root here") {
        return;
    }
    let plain = state_under(&["-s", "--"]);
    assert!(plain.contains(&"fds 0 1 2 5".to_owned()), "{plain:?}");
    for level in ["pidns", "cgroup", "subreaper"] {
        let contained = state_under(&[&format!("--contain={level}"), "--"]);
        assert_eq!(contained, plain, "--contain={level}");
    }
}

#[test]
fn both_ferrinits_wait_without_wake_ups_and_hold_no_descriptor_of_the_command() {
    let running = Running::start(unprivileged(&["--contain", "--", probe_arg(), "wait"]));
    running.expect_stdout("ready");
    let outer = running.init_pid();
    let inner = children_of(outer)[0];
    for pid in [outer, inner] {
        ferrinit_testkit::eventually("an idle wait without timeout", || {
            ferrinit_testkit::waits_for_signals_without_timeout(pid)
        });
    }
    let outer_fds = ferrinit_testkit::fds_of(outer);
    assert_eq!(outer_fds.len(), 4, "stdio and the lifeline: {outer_fds:?}");
    assert_eq!(ferrinit_testkit::fds_of(inner), [0, 1, 2]);
    drop(running);
}

#[test]
fn ps_inside_sees_only_the_commands_own_processes() {
    tool("ps");
    let finished = ferrinit_testkit::run(unprivileged(&[
        "--contain",
        "--",
        "ps",
        "-e",
        "-o",
        "pid=,comm=",
    ]));
    assert_eq!(finished.code(), 0, "{:?}", finished.stderr);
    let seen: Vec<Vec<String>> = finished
        .stdout
        .iter()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(seen, [["1", "ferrinit"], ["2", "ps"]]);
}

#[test]
fn socket_activation_for_ferrinit_reaches_the_command_inside() {
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the outer ferrinit.
    let script = r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --contain -- "$1" state"#;
    let command = clean_command("sh", ["-c", script, ferrinit_arg(), probe_arg()]);
    let finished = ferrinit_testkit::run(command);
    assert_eq!(finished.code(), 0, "{:?}", finished.stderr);
    let pid = finished
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|l| l.split(' ').next())
        .expect("a pid line")
        .to_owned();
    assert_eq!(pid, "2", "the command is PID 2 of the namespace");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let expected = format!("env {}", hex(&format!("LISTEN_PID={pid}")));
    assert!(finished.stdout.contains(&expected), "{:?}", finished.stdout);
}

#[test]
fn cgroup_level_outer_sigkill_leaves_nothing_alive_and_no_cgroup() {
    if !require_root("this test runs as root") {
        return;
    }
    let running = Running::start(as_process([
        "--contain=cgroup",
        "--",
        probe_arg(),
        "marker",
        "0",
    ]));
    let outer = running.pid();
    let marker = Marker::find(&running, outer);
    let dir = leaf_of(outer);
    let leaf = dir.file_name().unwrap().to_str().unwrap();
    // The janitor: the outer ferrinit's child that is not in the leaf.
    let janitor = children_of(outer)
        .into_iter()
        .find(|pid| {
            !std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .contains(leaf)
        })
        .expect("a janitor outside the leaf");
    let janitor_pidfd = pidfd_open(janitor).expect("pidfd of the janitor");
    // SAFETY: kill has no memory-safety preconditions; `outer` is our child.
    assert_eq!(unsafe { libc::kill(outer, libc::SIGKILL) }, 0);
    let ms = stall_timeout().as_millis() as i32;
    assert!(marker.exits_within(ms), "marker {} survived", marker.pid);
    let mut poll = libc::pollfd {
        fd: janitor_pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut poll, 1, ms) }, 1, "janitor stayed");
    assert!(!dir.exists(), "{dir:?} was left behind");
    assert_eq!(running.finish().code(), 128 + libc::SIGKILL);
}

#[test]
fn cgroup_level_outer_sigkill_just_after_making_the_cgroup_leaves_no_cgroup() {
    if !require_root("this test runs as root") {
        return;
    }
    // strace holds the outer ferrinit just after its mkdir of the cgroup, and says so.
    let command = clean_command(
        tool("strace"),
        [
            "-e",
            "trace=mkdir",
            "-e",
            "inject=mkdir:delay_exit=1000s",
            ferrinit_arg(),
            "--contain=cgroup",
            "--",
            probe_arg(),
            "wait",
        ],
    );
    let running = Running::start(command);
    running.expect_stderr("(DELAYED)");
    let outer = children_of(running.pid())[0];
    assert_eq!(leaves_of(outer).len(), 1, "the cgroup is made");
    // Whatever the outer ferrinit started by now (a janitor) is given its time to clean up.
    let started: Vec<(i32, OwnedFd)> = children_of(outer)
        .into_iter()
        .filter_map(|pid| Some((pid, pidfd_open(pid)?)))
        .collect();
    // strace would hold the dying outer ferrinit at its exit: killed, it lets go. (SIGKILL: the
    // pids are our descendants; kill has no memory-safety preconditions.)
    for pid in [outer, running.pid()] {
        // SAFETY: see above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    }
    let ms = stall_timeout().as_millis() as i32;
    for (pid, pidfd) in &started {
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let exited = unsafe { libc::poll(&mut poll, 1, ms) } == 1;
        let state = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
        assert!(exited, "{pid} stayed: {:?} {state}", process_state(*pid));
    }
    let left = leaves_of(outer);
    for dir in &left {
        let _ = std::fs::remove_dir(dir);
    }
    assert_eq!(left, Vec::<std::path::PathBuf>::new(), "left behind");
    drop(running);
}

#[test]
fn cgroup_level_works_where_a_cgroup_named_after_its_pid_exists() {
    if !require_root("this test runs as root") {
        return;
    }
    // Left by an earlier ferrinit of the same pid, or made by one in another PID namespace.
    let script = r#"mkdir "$1/ferrinit-contain-$$" && exec "$0" --contain=cgroup -- "$2" exit 3"#;
    let cgroup = own_cgroup_dir();
    let command = clean_command(
        "sh",
        [
            "-c",
            script,
            ferrinit_arg(),
            cgroup.to_str().unwrap(),
            probe_arg(),
        ],
    );
    let running = Running::start(command);
    let outer = running.pid();
    let finished = running.finish();
    let _ = std::fs::remove_dir(cgroup.join(format!("ferrinit-contain-{outer}")));
    assert_eq!(finished.code(), 3, "{:?}", finished.stderr);
    assert_eq!(leaves_of(outer), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_sigqueue_value_sent_to_ferrinit_reaches_the_command() {
    if !require_root("the cgroup level needs root here") {
        return;
    }
    for command in [
        unprivileged(&["--contain=pidns", "--", probe_arg(), "siginfo"]),
        as_process(["--contain=cgroup", "--", probe_arg(), "siginfo"]),
    ] {
        let mut running = Running::start(command);
        running.expect_stdout("probe ready");
        let value = libc::sigval {
            sival_ptr: 4242 as *mut libc::c_void,
        };
        // SAFETY: sigqueue has no memory-safety preconditions; the pid is our child's.
        assert_eq!(
            unsafe { libc::sigqueue(running.pid(), libc::SIGUSR1, value) },
            0
        );
        let line = running.expect_stdout("probe got SIGUSR1");
        assert!(
            line.contains(&format!("code {} value 4242 ", libc::SI_QUEUE)),
            "{line}"
        );
        running.close_stdin();
        assert_eq!(running.finish().code(), 0);
    }
}

#[test]
fn the_inner_ferrinit_killed_from_outside_is_named_in_a_warning() {
    let running = Running::start(unprivileged(&[
        "--contain=pidns",
        "--",
        probe_arg(),
        "wait",
    ]));
    running.expect_stdout("ready");
    let inner = children_of(running.pid())[0];
    // SAFETY: kill has no memory-safety preconditions; `inner` is our descendant.
    assert_eq!(unsafe { libc::kill(inner, libc::SIGKILL) }, 0);
    let finished = running.finish();
    assert_eq!(finished.code(), 128 + libc::SIGKILL);
    assert_eq!(
        finished.stderr,
        ["ferrinit: warning: the inner ferrinit was killed by SIGKILL"]
    );
}

#[test]
fn cgroup_level_stops_a_process_moved_out_of_the_cgroup() {
    if !require_root("this test runs as root") {
        return;
    }
    let mut running = Running::start(as_process([
        "--contain=cgroup",
        "--",
        probe_arg(),
        "marker",
        "5",
    ]));
    let marker = Marker::find(&running, running.pid());
    // As root (the process itself, or anyone) may: into the cgroup ferrinit itself is in, out
    // of reach of cgroup.kill.
    std::fs::write(
        own_cgroup_dir().join("cgroup.procs"),
        marker.pid.to_string(),
    )
    .unwrap();
    let in_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", marker.pid)).unwrap();
    assert!(!in_cgroup.contains("ferrinit-contain"), "{in_cgroup}");
    running.close_stdin();
    let finished = running.finish();
    assert_eq!(finished.code(), 5, "{:?}", finished.stderr);
    let gone = marker.is_gone();
    if !gone {
        // SAFETY: kill has no memory-safety preconditions; the pid is pinned by our pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                marker.pidfd.as_raw_fd(),
                9,
                0,
                0,
            )
        };
    }
    assert!(
        gone,
        "marker {} survived; {:?}",
        marker.pid, finished.stderr
    );
}

#[test]
fn cgroup_level_janitor_is_named_leaves_the_cwd_and_cannot_hold_ferrinit_up_when_stopped() {
    if !require_root("this test runs as root") {
        return;
    }
    let dir = ferrinit_testkit::scratch_dir("contain-janitor");
    let mut command = as_process(["--contain=cgroup", "--", probe_arg(), "wait"]);
    command.current_dir(&dir);
    let mut running = Running::start(command);
    running.expect_stdout("ready");
    // The watcher names itself once it runs, which a loaded machine may not have let it do yet.
    let mut found = None;
    eventually("a child named ferrinit-watch", || {
        found = children_of(running.pid()).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
                == "ferrinit-watch\n"
        });
        found.is_some()
    });
    let janitor = found.expect("found");
    let cwd = std::fs::read_link(format!("/proc/{janitor}/cwd")).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"), "the user's cwd stays free");
    // SAFETY: kill has no memory-safety preconditions; `janitor` is our descendant.
    assert_eq!(unsafe { libc::kill(janitor, libc::SIGSTOP) }, 0);
    eventually("the janitor is stopped", || {
        process_state(janitor).as_deref() == Some("T")
    });
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn the_subreaper_sweep_finds_what_is_left_under_rlimit_nofile_6_after_a_stream_of_queued_signals() {
    // The sweep lists /proc and opens each stat file: two descriptors, the two that RLIMIT_NOFILE 6
    // leaves beyond stdio and ferrinit's wait. A stream of one queued signal, taken many at a
    // time, must not have left ferrinit holding a descriptor for it once the child is gone.
    // `-r RTMIN:0`: the stream is ferrinit's alone.
    let rtmin = ferrinit_testkit::rtmin(0);
    let drop_rtmin = format!("{rtmin}:0");
    let script = r#""$0" straggler stubborn 0; read -r line; exit 7"#;
    let mut command = as_process([
        "--contain=subreaper",
        "-r",
        &drop_rtmin,
        "--",
        "sh",
        "-c",
        script,
        probe_arg(),
    ]);
    ferrinit_testkit::limit_descriptors(&mut command, 6);
    let mut running = Running::start(command);
    let line = running.expect_stdout("straggler ");
    let straggler: i32 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("straggler PID ready");
    let init = running.pid();
    queue_a_stream_while_stopped(init, rtmin);
    running.close_stdin();
    let exited = ferrinit_testkit::wait_for_exit_of(init, stall_timeout());
    let left = ferrinit_testkit::is_alive(straggler);
    if left {
        // SAFETY: kill has no memory-safety preconditions; the straggler is the probe's.
        unsafe { libc::kill(straggler, libc::SIGKILL) };
    }
    let out = running.finish();
    assert!(exited && !left, "the straggler was left: {:?}", out.stderr);
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}

/// Stops `pid`, queues a stream of `sig` at it, continues it and waits until it has taken the
/// stream and waits again: found pending all at once, the stream is taken many at a time.
fn queue_a_stream_while_stopped(pid: i32, sig: i32) {
    let signal = |sig| {
        // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    eventually("stopped", || process_state(pid).as_deref() == Some("T"));
    for n in 0..200 {
        ferrinit_testkit::sigqueue(pid, sig, n);
    }
    signal(libc::SIGCONT);
    eventually("the stream taken, and waiting again", || {
        status_field(pid, "ShdPnd").as_deref() == Some("0000000000000000")
            && ferrinit_testkit::waits_for_signals_without_timeout(pid)
    });
}

#[test]
fn cgroup_level_stops_a_process_moved_out_of_the_cgroup_under_rlimit_nofile_10_after_a_stream_of_queued_signals()
 {
    if !require_root("this test runs as root") {
        return;
    }
    // The outer ferrinit holds 8 descriptors (stdio, the cgroup's, its pipes) besides its
    // signalfds, and closes one (the janitor's) before the sweep for what left the cgroup,
    // which lists /proc and opens each stat file.
    // `-r RTMIN:0`: the inner ferrinit drops the stream the outer one relays.
    let rtmin = ferrinit_testkit::rtmin(0);
    let drop_rtmin = format!("{rtmin}:0");
    let command = as_process([
        "--contain=cgroup",
        "-r",
        &drop_rtmin,
        "--",
        probe_arg(),
        "marker",
        "5",
    ]);
    let mut running = Running::start(command);
    let marker = Marker::find(&running, running.pid());
    queue_a_stream_while_stopped(running.pid(), rtmin);
    // Lowered once it runs: its start-up needs more.
    ferrinit_testkit::limit_descriptors_of(running.pid(), 10);
    std::fs::write(
        own_cgroup_dir().join("cgroup.procs"),
        marker.pid.to_string(),
    )
    .unwrap();
    running.close_stdin();
    let finished = running.finish();
    let gone = marker.is_gone();
    if !gone {
        // SAFETY: kill has no memory-safety preconditions; the pid is pinned by our pidfd.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                marker.pidfd.as_raw_fd(),
                9,
                0,
                0,
            )
        };
    }
    assert!(
        gone,
        "marker {} survived; {:?}",
        marker.pid, finished.stderr
    );
    assert_eq!(finished.code(), 5, "{:?}", finished.stderr);
}
