//! Every signal sent to ferrinit reaches the child: from outside, from inside the namespace, as PID
//! 1 and as a plain process, to the child alone or its whole group; failures are not fatal.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use ferrinit_testkit::{
    Running, as_pid1, as_process, children_of, probe, rtmin, scratch_dir, sigqueue,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

/// What a shell's `kill -l` calls each signal we send.
fn forwarded() -> Vec<(i32, String)> {
    let mut list: Vec<(i32, String)> = [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
    ]
    .iter()
    .map(|&(n, s)| (n, s.to_owned()))
    .collect();
    list.push((rtmin(0), "SIGRTMIN".into()));
    list.push((rtmin(3), "SIGRTMIN+3".into()));
    list.push((libc::SIGRTMAX(), "SIGRTMAX".into()));
    list
}

fn forwards_every_signal(mut running: Running) {
    running.expect_stdout("probe ready");
    for (sig, name) in forwarded() {
        running.signal_init(sig);
        running.expect_stdout(&format!("probe got {name}"));
    }
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "nothing unexpected arrived: {:?}",
        out.stdout
    );
}

#[test]
fn forwards_every_catchable_signal_to_the_child_as_pid1() {
    forwards_every_signal(Running::start(as_pid1(["--", probe_arg(), "signals"])));
}

#[test]
fn forwards_every_catchable_signal_to_the_child_as_a_plain_process() {
    forwards_every_signal(Running::start(as_process([
        "-s",
        "--",
        probe_arg(),
        "signals",
    ])));
}

#[test]
fn forwards_signals_sent_to_pid1_from_inside_the_namespace() {
    for (sig, name) in [
        (libc::SIGUSR1, "SIGUSR1"),
        (rtmin(3), "SIGRTMIN+3"),
        (libc::SIGTERM, "SIGTERM"),
    ] {
        let mut running =
            Running::start(as_pid1(["--", probe_arg(), "kill-init", &sig.to_string()]));
        running.close_stdin();
        running.expect_stdout(&format!("got {name}"));
        assert_eq!(running.finish().code(), 0);
    }
}

/// The probe child and its grandchild share a process group; both report what they receive.
/// Returns whether the grandchild got SIGUSR1 through ferrinit.
fn grandchild_gets_forwarded_usr1(mut command: std::process::Command) -> bool {
    let mut running = Running::start({
        command.args(["--", probe_arg(), "group"]);
        command
    });
    running.expect_stdout("leader ready");
    running.expect_stdout("member ready");
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("leader got SIGUSR1");
    // Then SIGUSR2 straight to the whole group. A forwarded SIGUSR1 was sent before it, so the
    // grandchild reports that one first if it got it at all.
    let child = children_of(running.init_pid())[0];
    // SAFETY: kill has no memory-safety preconditions; the group is our probe's.
    assert_eq!(unsafe { libc::kill(-child, libc::SIGUSR2) }, 0);
    let mut got_usr1 = false;
    loop {
        let line = running.expect_stdout("member got");
        if line.ends_with("SIGUSR2") {
            break;
        }
        got_usr1 |= line.ends_with("SIGUSR1");
    }
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0);
    // Shown only if the calling test fails.
    eprintln!(
        "member got SIGUSR1 first: {got_usr1}; rest of stdout {:?}",
        out.stdout
    );
    got_usr1
}

#[test]
fn forwards_to_the_child_alone_by_default() {
    assert!(!grandchild_gets_forwarded_usr1(as_pid1(Vec::<&str>::new())));
}

#[test]
fn forwards_to_the_whole_process_group_with_g() {
    assert!(grandchild_gets_forwarded_usr1(as_pid1(["-g"])));
    assert!(grandchild_gets_forwarded_usr1(as_pid1(["--process-group"])));
}

#[test]
fn tini_kill_process_group_variable_works_like_g() {
    let mut command = as_pid1(Vec::<&str>::new());
    command.env("TINI_KILL_PROCESS_GROUP", "1");
    assert!(grandchild_gets_forwarded_usr1(command));
}

#[test]
fn a_forwarding_error_is_logged_and_not_fatal() {
    if !ferrinit_testkit::require_root("to make a setuid-root child") {
        return;
    }
    // ferrinit runs as nobody; its child makes itself root for real: ferrinit may no longer
    // signal it (EPERM), and must carry on.
    let dir = ferrinit_testkit::scratch_dir_for_anyone("ferrinit-eperm");
    let setuid_probe = dir.join("probe");
    std::fs::copy(probe(), &setuid_probe).unwrap();
    std::fs::set_permissions(&setuid_probe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut command = as_process([
        "-s",
        "--",
        setuid_probe.to_str().unwrap(),
        "setuid-root",
        "probe",
    ]);
    command.uid(65534).gid(65534);
    let mut running = Running::start(command);
    running.expect_stdout("probe ready");
    running.signal_init(libc::SIGUSR1);
    let warning = running.expect_stderr("could not forward SIGUSR1");
    assert!(warning.contains("EPERM"), "{warning}");
    // Still alive and still forwarding what it can: closing stdin ends the child normally.
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
}

/// `ferrinit OPTIONS -- probe siginfo`, which reports each signal it takes, in order.
fn siginfo_probe(mut command: std::process::Command) -> Running {
    command.args(["--", probe_arg(), "siginfo"]);
    let running = Running::start(command);
    running.expect_stdout("probe ready");
    running
}

fn finish_cleanly(mut running: Running) {
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing else: {:?}", out.stdout);
}

const FAULTS: [(i32, &str); 7] = [
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGSYS, "SIGSYS"),
];

fn fault_signals_sent_by_a_process_are_forwarded(command: std::process::Command) {
    let running = siginfo_probe(command);
    for (sig, name) in FAULTS {
        running.signal_init(sig);
        running.expect_stdout(&format!("probe got {name} "));
    }
    finish_cleanly(running);
}

#[test]
fn forwards_fault_signals_sent_by_a_process_as_pid1() {
    fault_signals_sent_by_a_process_are_forwarded(as_pid1(Vec::<&str>::new()));
}

#[test]
fn forwards_fault_signals_sent_by_a_process_as_a_plain_process() {
    fault_signals_sent_by_a_process_are_forwarded(as_process(["-s"]));
}

fn signals_32_and_33_are_forwarded(command: std::process::Command) {
    let running = siginfo_probe(command);
    for sig in [32, 33] {
        running.signal_init(sig);
        running.expect_stdout(&format!("probe got SIG{sig} "));
    }
    finish_cleanly(running);
}

#[test]
fn survives_and_forwards_signals_32_and_33_as_a_plain_process() {
    signals_32_and_33_are_forwarded(as_process(["-s"]));
}

#[test]
fn forwards_signals_32_and_33_as_pid1() {
    signals_32_and_33_are_forwarded(as_pid1(Vec::<&str>::new()));
}

#[test]
fn the_child_gets_back_an_inherited_mask_with_signals_32_and_33() {
    let inherited: u64 = (1 << 31) | (1 << 32) | (1 << (libc::SIGUSR1 - 1));
    let mut command = as_process(["-s", "--", probe_arg(), "state"]);
    // SAFETY: one raw system call, async-signal-safe, on a kernel sigset of the size passed.
    unsafe {
        command.pre_exec(move || {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &inherited as *const u64,
                std::ptr::null_mut::<u64>(),
                8,
            );
            Ok(())
        });
    }
    let out = ferrinit_testkit::run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let blocked = out
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("blocked "))
        .expect("blocked line");
    assert_eq!(
        u64::from_str_radix(blocked, 16),
        Ok(inherited),
        "blocked {blocked}"
    );
}

#[test]
fn a_signal_ferrinit_raised_at_itself_is_not_forwarded() {
    // Each log line of ferrinit's own to this stderr, already past RLIMIT_FSIZE, raises SIGXFSZ
    // at ferrinit.
    let dir = scratch_dir("xfsz");
    let log = dir.join("big.log");
    std::fs::write(&log, vec![0u8; 4096]).unwrap();
    let stderr = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut command = as_process(["-s", "-v", "-v"]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    command.args(["--", probe_arg(), "siginfo"]);
    let mut running = Running::start_with_stderr(command, stderr.into());
    running.expect_stdout("probe ready");
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("probe got SIGUSR1 ");
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "the child was not hit by SIGXFSZ");
    assert!(out.stdout.is_empty(), "nothing else: {:?}", out.stdout);
}

#[test]
fn with_g_a_child_that_left_its_process_group_still_gets_the_signal() {
    let mut running = Running::start(as_pid1(["-g", "--", probe_arg(), "leave-group"]));
    running.expect_stdout("probe ready");
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("probe got SIGUSR1 ");
    let warning = running.expect_stderr("sent to the child alone");
    assert!(warning.contains("SIGUSR1"), "{warning}");
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
}

#[test]
fn forwards_the_value_and_sender_of_a_sigqueued_signal() {
    let running = siginfo_probe(as_process(["-s"]));
    sigqueue(running.init_pid(), rtmin(1), 4242);
    let line = running.expect_stdout("probe got SIGRTMIN+1 ");
    let me = std::process::id();
    assert_eq!(
        line,
        format!(
            "probe got SIGRTMIN+1 code {} value 4242 from {me}",
            libc::SI_QUEUE
        )
    );
    finish_cleanly(running);
}

#[test]
fn a_child_that_makes_ferrinit_its_tracer_runs_and_its_status_comes_back() {
    let probe = probe_arg();
    let out = ferrinit_testkit::run(as_pid1(["--", probe, "traceme", probe, "exit", "7"]));
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
    // A signal that stops a tracee is passed on when ferrinit lets it go.
    let usr1 = libc::SIGUSR1.to_string();
    let out = ferrinit_testkit::run(as_pid1(["--", probe, "traceme", probe, "die", &usr1]));
    assert_eq!(out.code(), 128 + libc::SIGUSR1, "{:?}", out.stderr);
}

#[test]
fn an_orphan_that_makes_ferrinit_its_tracer_runs_on() {
    let mut running = Running::start(as_pid1(["--", probe_arg(), "orphan-traceme"]));
    running.expect_stdout("orphan ready");
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
}
