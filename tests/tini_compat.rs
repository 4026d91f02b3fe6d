//! Drop-in for tini: the same command lines, run side by side under tini-static and ferrinit as
//! PID 1, give the same exit codes and the same forwarding. Where ferrinit differs on purpose,
//! the test says so.

use std::path::Path;

use ferrinit_testkit::{Running, ferrinit, init_as_pid1, probe, require, run};

const TINI: &str = "/usr/bin/tini-static";

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

fn tini_present() -> bool {
    require("tini-static")
}

/// Exit codes of `INIT ARGS` under tini and under ferrinit.
fn both(args: &[&str]) -> (i32, i32) {
    let code = |init: &Path| run(init_as_pid1(init, args)).code();
    (code(Path::new(TINI)), code(ferrinit()))
}

#[test]
fn same_exit_codes_for_the_same_command_lines() {
    if !tini_present() {
        return;
    }
    let die = |sig: i32| sig.to_string();
    let (term, kill, usr1) = (die(libc::SIGTERM), die(libc::SIGKILL), die(libc::SIGUSR1));
    let cases: Vec<Vec<&str>> = vec![
        vec!["--", probe_arg(), "exit", "0"],
        vec!["--", probe_arg(), "exit", "3"],
        vec!["--", probe_arg(), "exit", "255"],
        vec!["--", probe_arg(), "die", &term],
        vec!["--", probe_arg(), "die", &kill],
        vec!["--", probe_arg(), "die", &usr1],
        vec!["-e", "143", "--", probe_arg(), "die", &term],
        vec!["-e", "3", "-e", "4", "--", probe_arg(), "exit", "4"],
        vec!["-e", "3", "--", probe_arg(), "exit", "5"],
        vec!["-s", "-g", "-w", "-v", "--", probe_arg(), "exit", "6"],
        vec!["-p", "SIGUSR1", "--", probe_arg(), "exit", "7"],
        // Options before the command without `--`.
        vec!["-s", probe_arg(), "exit", "8"],
        // Not found; found but not executable.
        vec!["--", "/no/such/program"],
        vec!["--", "/etc/hostname"],
    ];
    for args in cases {
        let (tini, ours) = both(&args);
        assert_eq!(ours, tini, "ferrinit {args:?} exits {ours}, tini {tini}");
    }
}

#[test]
fn same_forwarding_to_the_child_and_to_its_group() {
    if !tini_present() {
        return;
    }
    for init in [Path::new(TINI), ferrinit()] {
        for (flag, member_gets_it) in [(None, false), (Some("-g"), true)] {
            let mut args: Vec<&str> = flag.into_iter().collect();
            args.extend(["--", probe_arg(), "group"]);
            let mut running = Running::start(init_as_pid1(init, &args));
            running.expect_stdout("leader ready");
            running.expect_stdout("member ready");
            running.signal_init(libc::SIGUSR2);
            running.expect_stdout("leader got SIGUSR2");
            if member_gets_it {
                running.expect_stdout("member got SIGUSR2");
            }
            running.signal_init(libc::SIGTERM);
            running.expect_stdout("leader got SIGTERM");
            running.close_stdin();
            assert_eq!(running.finish().code(), 0, "{init:?} {flag:?}");
        }
    }
}

#[test]
fn the_same_tini_environment_variables_work() {
    if !tini_present() {
        return;
    }
    for init in [Path::new(TINI), ferrinit()] {
        // TINI_KILL_PROCESS_GROUP: the member of the child's group gets the forwarded signal.
        let mut command = init_as_pid1(init, ["--", probe_arg(), "group"]);
        command.env("TINI_KILL_PROCESS_GROUP", "1");
        let mut running = Running::start(command);
        running.expect_stdout("member ready");
        running.expect_stdout("leader ready");
        running.signal_init(libc::SIGHUP);
        running.expect_stdout("member got SIGHUP");
        running.close_stdin();
        assert_eq!(running.finish().code(), 0, "{init:?}");
    }
}

#[test]
fn where_ferrinit_differs_on_purpose() {
    if !tini_present() {
        return;
    }
    // A usage error: tini exits 1, the child's own most common code; ferrinit exits 2.
    assert_eq!(both(&["--frobnicate", "true"]), (1, 2));
    // tini's getopt permutes: `tini ls -l` takes -l for its own --license. ferrinit stops at
    // the command.
    let tini = run(init_as_pid1(
        Path::new(TINI),
        [probe_arg(), "exit", "0", "-l"],
    ));
    assert!(tini.stdout.join("\n").contains("MIT"), "{:?}", tini.stdout);
    let ours = run(init_as_pid1(ferrinit(), [probe_arg(), "exit", "9", "-l"]));
    assert_eq!(ours.code(), 9);
}
