//! ferrinit exits with its child's code, or 128+N when signal N killed it, after `-e` remapping.

use ferrinit_testkit::{as_pid1, as_process, probe, rtmin, run};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

#[test]
fn every_exit_code_from_0_to_255_comes_back_as_pid1() {
    for code in 0..=255 {
        let out = run(as_pid1(["--", probe_arg(), "exit", &code.to_string()]));
        assert_eq!(out.code(), code, "{:?}", out.stderr);
        assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    }
}

#[test]
fn exit_codes_come_back_as_a_subreaper_too() {
    for code in [0, 1, 42, 255] {
        let out = run(as_process([
            "-s",
            "--",
            probe_arg(),
            "exit",
            &code.to_string(),
        ]));
        assert_eq!(out.code(), code);
    }
}

#[test]
fn death_by_signal_n_gives_128_plus_n() {
    let signals = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGABRT,
        libc::SIGKILL,
        libc::SIGUSR1,
        libc::SIGSEGV,
        libc::SIGPIPE,
        libc::SIGTERM,
        rtmin(3),
        libc::SIGRTMAX(),
    ];
    for sig in signals {
        let out = run(as_pid1(["--", probe_arg(), "die", &sig.to_string()]));
        assert_eq!(out.code(), 128 + sig, "signal {sig}: {:?}", out.stderr);
    }
}

#[test]
fn remap_exit_turns_the_listed_codes_into_0_and_only_those() {
    let die_term = libc::SIGTERM.to_string();
    let cases: &[(&[&str], i32)] = &[
        (&["-e", "143", "--", probe_arg(), "die", &die_term], 0),
        (&["-e", "143", "--", probe_arg(), "exit", "143"], 0),
        (
            &[
                "-e",
                "3",
                "--remap-exit",
                "4",
                "--",
                probe_arg(),
                "exit",
                "4",
            ],
            0,
        ),
        (&["-e", "3", "-e", "4", "--", probe_arg(), "exit", "5"], 5),
        (&["-e", "0", "--", probe_arg(), "exit", "0"], 0),
        (&["-e", "255", "--", probe_arg(), "exit", "254"], 254),
    ];
    for (args, code) in cases {
        let out = run(as_pid1(*args));
        assert_eq!(out.code(), *code, "{args:?}: {:?}", out.stderr);
    }
}

/// Limits the address space of the command to `bytes` before it starts.
fn with_address_space(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
}

#[test]
fn a_long_command_line_runs_under_a_tight_address_space_limit() {
    // 1.5 MB of arguments (an argument holds at most 128 KiB) in a 5 MB address space: room for
    // the command line once, not for copies of it.
    let long = "a".repeat(100_000);
    let mut args = vec!["-s", "--", probe_arg(), "exit", "3"];
    args.extend(std::iter::repeat_n(long.as_str(), 15));
    let mut command = as_process(args);
    with_address_space(&mut command, 5_000_000);
    let out = run(command);
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
}

#[test]
fn running_out_of_memory_is_one_line_and_exit_125() {
    // An unknown option of 120 kB: reporting it takes a few copies of it. From a limit too tight
    // for ferrinit to start at all (killed by the kernel at exec) up, the first limit it starts
    // under is too tight for those copies.
    let option = format!("--{}", "x".repeat(120_000));
    for limit in (1_000_000..4_000_000).step_by(20_000) {
        let mut command = std::process::Command::new(ferrinit_testkit::ferrinit());
        command.args([option.as_str(), "true"]);
        ferrinit_testkit::clean_start(&mut command);
        with_address_space(&mut command, limit);
        let Ok(out) = command.stdin(std::process::Stdio::null()).output() else {
            continue; // the exec itself failed
        };
        if out.status.code().is_none() {
            continue; // killed at exec: too tight to start
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.starts_with("Fatal glibc error") {
            continue; // the C runtime gave up before ferrinit's main
        }
        assert_eq!(out.status.code(), Some(125), "limit {limit}: {stderr}");
        assert_eq!(stderr, "ferrinit: error: out of memory\n", "limit {limit}");
        return;
    }
    panic!("ferrinit never started");
}

#[test]
fn remap_exit_applies_to_ferrinits_own_126_and_127_as_tinis_does() {
    let out = run(as_pid1(["-e", "127", "--", "/no/such/command"]));
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "the failure is still reported");
    let out = run(as_pid1(["-e", "126", "--", "/"]));
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let out = run(as_pid1(["-e", "126", "--", "/no/such/command"]));
    assert_eq!(out.code(), 127, "{:?}", out.stderr);
}
