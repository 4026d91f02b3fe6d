//! Every signal sent to ferrinit reaches the child: from outside, from inside the namespace, as PID
//! 1 and as a plain process, to the child alone or its whole group; failures are not fatal.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use ferrinit_testkit::{Running, as_pid1, as_process, children_of, probe, rtmin, scratch_dir};

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
    let dir = scratch_dir("eperm");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
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
