//! `--rewrite FROM:TO` forwards FROM as TO (TO=0 drops it); `--delay SIG:TIME` holds SIG, and a
//! second SIG goes through at once.

use ferrinit_testkit::{
    Running, as_pid1, eventually, probe, rtmin, sigqueue, waits_for_signals_with_timeout,
    waits_for_signals_without_timeout,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

/// Starts `ferrinit OPTIONS -- probe signals` as PID 1 and waits for the probe.
fn signals_probe(options: &[&str]) -> Running {
    let mut args = options.to_vec();
    args.extend(["--", probe_arg(), "signals"]);
    let running = Running::start(as_pid1(args));
    running.expect_stdout("probe ready");
    running
}

fn finish(mut running: Running) {
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "nothing else arrived: {:?}",
        out.stdout
    );
}

#[test]
fn rewrites_by_name_and_by_number() {
    let running = signals_probe(&[
        "-r",
        "TERM:QUIT",
        "--rewrite",
        "10:12",
        "-r",
        "sigrtmin+1:RTMIN+2",
    ]);
    running.signal_init(libc::SIGTERM);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGQUIT");
    running.signal_init(libc::SIGUSR1);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGUSR2");
    running.signal_init(rtmin(1));
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGRTMIN+2");
    // Signals without a rule pass unchanged.
    running.signal_init(libc::SIGHUP);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGHUP");
    finish(running);
}

#[test]
fn rewriting_to_zero_drops_the_signal() {
    let running = signals_probe(&["-r", "USR1:0"]);
    running.signal_init(libc::SIGUSR1);
    running.signal_init(libc::SIGUSR2);
    // USR1 was received first: had it been forwarded, it would have been reported first.
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGUSR2");
    finish(running);
}

#[test]
fn a_delayed_signal_is_held_and_a_second_one_goes_through_at_once() {
    let running = signals_probe(&["--delay", "USR1:1h"]);
    running.signal_init(libc::SIGUSR1);
    // Held: the next signal overtakes it.
    running.signal_init(libc::SIGUSR2);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGUSR2");
    // While something is held ferrinit waits with a timeout.
    let init = running.init_pid();
    eventually("ferrinit waits with a timeout", || {
        waits_for_signals_with_timeout(init)
    });
    // The impatient operator's second USR1 is forwarded now, not in an hour.
    running.signal_init(libc::SIGUSR1);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGUSR1");
    // Nothing held any more: back to a wait without any timeout.
    eventually("ferrinit waits without a timeout", || {
        waits_for_signals_without_timeout(init)
    });
    finish(running);
}

#[test]
fn a_delayed_signal_is_forwarded_when_its_time_comes() {
    let running = signals_probe(&["--delay", "TERM:100ms", "-r", "TERM:USR2"]);
    running.signal_init(libc::SIGTERM);
    // Rewritten too, once due.
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGUSR2");
    let init = running.init_pid();
    eventually("ferrinit waits without a timeout", || {
        waits_for_signals_without_timeout(init)
    });
    finish(running);
}

#[test]
fn an_idle_ferrinit_waits_without_any_timeout() {
    let running = signals_probe(&[]);
    let init = running.init_pid();
    eventually("ferrinit waits without a timeout", || {
        waits_for_signals_without_timeout(init)
    });
    finish(running);
}

#[test]
fn rewrites_fault_signals_too() {
    let running = signals_probe(&["-r", "31:1"]);
    running.signal_init(libc::SIGSYS);
    assert_eq!(running.expect_stdout("probe got"), "probe got SIGHUP");
    finish(running);
}

#[test]
fn a_delayed_real_time_signal_loses_no_instance_and_keeps_its_order() {
    let args = ["--delay", "RTMIN:1h", "--", probe_arg(), "siginfo"];
    let mut running = Running::start(as_pid1(args));
    running.expect_stdout("probe ready");
    let init = running.init_pid();
    for value in 1..=4 {
        sigqueue(init, rtmin(0), value);
    }
    let values: Vec<String> = (0..4)
        .map(|_| {
            let line = running.expect_stdout("probe got SIGRTMIN ");
            line.split_whitespace()
                .nth(6)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(values, ["1", "2", "3", "4"]);
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing else: {:?}", out.stdout);
}
