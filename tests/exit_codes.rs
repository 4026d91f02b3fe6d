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
