//! Orphans re-parented to ferrinit are reaped, as PID 1 and as a subreaper; outside PID 1 without
//! -s ferrinit says it cannot; a parent-death signal is forwarded.

use ferrinit_testkit::{Running, as_pid1, as_process, probe, run, zombies_of};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

/// The probe makes `count` orphans and reports once they are all dead; ferrinit (with -w) reports
/// each reap. Then no zombie may be left under ferrinit.
fn reaps_every_orphan(mut running: Running, count: usize) {
    running.expect_stdout(&format!("orphans {count}"));
    running.expect_stdout(&format!("orphans-exited {count}"));
    for _ in 0..count {
        running.expect_stderr("reaped zombie process");
    }
    let init = running.init_pid();
    assert_eq!(
        zombies_of(init),
        Vec::<i32>::new(),
        "zombies left under ferrinit"
    );
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(
        out.stderr.is_empty(),
        "no more reaps than orphans: {:?}",
        out.stderr
    );
}

#[test]
fn reaps_orphans_as_pid1() {
    let running = Running::start(as_pid1(["-w", "--", probe_arg(), "orphans", "100"]));
    reaps_every_orphan(running, 100);
}

#[test]
fn reaps_orphans_as_a_subreaper() {
    let running = Running::start(as_process([
        "-s",
        "-w",
        "--",
        probe_arg(),
        "orphans",
        "100",
    ]));
    reaps_every_orphan(running, 100);
}

#[test]
fn reaps_orphans_as_a_subreaper_set_by_tini_or_ferrinit_variables() {
    for var in ["TINI_SUBREAPER", "FERRINIT_SUBREAPER"] {
        let mut command = as_process(["--warn-on-reap", "--", probe_arg(), "orphans", "20"]);
        command.env(var, "1");
        reaps_every_orphan(Running::start(command), 20);
    }
}

#[test]
fn warns_once_when_neither_pid1_nor_subreaper() {
    let out = run(as_process(["--", probe_arg(), "exit", "0"]));
    assert_eq!(out.code(), 0);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    let warning = &out.stderr[0];
    assert!(
        warning.starts_with("ferrinit: warning: not running as PID 1"),
        "{warning}"
    );
    assert!(warning.contains("-s"), "says how to fix it: {warning}");
    for quiet in [
        as_process(["-s", "--", probe_arg(), "exit", "0"]),
        as_pid1(["--", probe_arg(), "exit", "0"]),
    ] {
        let out = run(quiet);
        assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    }
}

#[test]
fn verbosity_0_silences_the_warning() {
    let mut command = as_process(["--", probe_arg(), "exit", "0"]);
    command.env("TINI_VERBOSITY", "0");
    assert!(run(command).stderr.is_empty());
}

#[test]
fn parent_death_signal_is_forwarded_to_the_child() {
    // unshare is ferrinit's parent; when it dies, the kernel sends ferrinit SIGUSR1.
    let mut running = Running::start(as_pid1(["-p", "SIGUSR1", "--", probe_arg(), "signals"]));
    running.expect_stdout("probe ready");
    // SAFETY: kill has no memory-safety preconditions; the pid is unshare, our child.
    assert_eq!(unsafe { libc::kill(running.pid(), libc::SIGKILL) }, 0);
    running.expect_stdout("probe got SIGUSR1");
    running.close_stdin();
}
