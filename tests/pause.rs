//! `--pause`: no child; ferrinit sleeps as a pod's PID 1, reaps what is re-parented to it, and
//! exits 0 on TERM, INT or HUP.

use ferrinit_testkit::{
    Running, as_pid1, eventually, probe, run, waits_for_signals_without_timeout, zombies_of,
};

#[test]
fn pause_mode_sleeps_without_wake_ups_and_exits_0_on_term_int_or_hup() {
    for (flag, sig) in [
        ("--pause", libc::SIGTERM),
        ("-P", libc::SIGINT),
        ("--pause", libc::SIGHUP),
    ] {
        let running = Running::start(as_pid1(["-v", flag]));
        running.expect_stderr("pause mode");
        let init = running.init_pid();
        eventually("pause waits without a timeout", || {
            waits_for_signals_without_timeout(init)
        });
        // Other signals do not end it.
        running.signal_init(libc::SIGUSR1);
        running.expect_stderr("ignoring SIGUSR1");
        running.signal_init(sig);
        let out = running.finish();
        assert_eq!(out.code(), 0, "{:?}", out.stderr);
    }
}

#[test]
fn pause_mode_reaps_processes_that_join_its_namespace() {
    let running = Running::start(as_pid1(["-v", "-w", "--pause"]));
    running.expect_stderr("pause mode");
    let init = running.init_pid();
    // A pod's other containers join the namespace; their orphans come to PID 1.
    let mut joined = std::process::Command::new(ferrinit_testkit::tool("nsenter"));
    joined
        .args(["--target", &init.to_string(), "--pid", "--mount", "--"])
        .arg(probe())
        .args(["orphans", "30"]);
    ferrinit_testkit::clean_start(&mut joined);
    let mut orphans = Running::start(joined);
    orphans.expect_stdout("orphans-exited 30");
    for _ in 0..30 {
        running.expect_stderr("reaped zombie process");
    }
    assert_eq!(zombies_of(init), Vec::<i32>::new());
    orphans.close_stdin();
    assert_eq!(orphans.finish().code(), 0);
    running.signal_init(libc::SIGTERM);
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn pause_mode_with_a_command_is_a_usage_error() {
    let out = run(as_pid1(["--pause", "--", "sleep", "1"]));
    assert_eq!(out.code(), 2);
}
