//! The command line as a user meets it: help, usage errors, exec failures, PATH lookup.

use std::os::unix::fs::PermissionsExt;

use ferrinit_testkit::{as_pid1, as_process, probe, run, scratch_dir};

#[test]
fn help_version_and_license_go_to_stdout_and_exit_0() {
    for (flag, needle) in [
        ("-h", "Usage: ferrinit"),
        ("--help", "--grace-period"),
        ("--version", "ferrinit 0."),
        ("-V", "ferrinit 0."),
        ("-l", "MIT License"),
        ("--license", "Permission is hereby granted"),
    ] {
        let out = run(as_process([flag]));
        assert_eq!(out.code(), 0, "{flag}");
        assert!(
            out.stdout.join("\n").contains(needle),
            "{flag}: {:?}",
            out.stdout
        );
        assert!(out.stderr.is_empty(), "{flag}: {:?}", out.stderr);
    }
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_input_and_nothing_on_stdout() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no command"),
        (&["--"], "no command"),
        (&["-x", "true"], "'-x'"),
        (&["--frobnicate", "true"], "'--frobnicate'"),
        (&["-e"], "'-e' needs a value"),
        (&["-e", "256", "true"], "'256'"),
        (&["-e", "-1", "true"], "'-1'"),
        (&["-e", "abc", "true"], "'abc'"),
        (&["--remap-exit=", "true"], "''"),
        (&["-p", "NOPE", "true"], "'NOPE'"),
        (&["--pdeathsig", "65", "true"], "'65'"),
        (&["-t", "soon", "true"], "'soon'"),
        (&["-r", "TERM", "true"], "'TERM'"),
        (&["-r", "TERM:NOPE", "true"], "'TERM:NOPE'"),
        (&["--delay", "TERM", "true"], "'TERM'"),
        (&["--subreaper=1", "true"], "'--subreaper'"),
        (&["--pause", "true"], "'true'"),
        // Overflowing, negative, empty and garbage values of every option that takes one.
        (
            &["-e", "99999999999999999999", "true"],
            "'99999999999999999999'",
        ),
        (&["-p", "", "true"], "''"),
        (&["-p", "-15", "true"], "'-15'"),
        (&["-p", "99999999999", "true"], "'99999999999'"),
        (&["-p", "STOP", "true"], "would not reach the child"),
        (&["-p", "RTMIN+99", "true"], "'RTMIN+99'"),
        (&["-t", "", "true"], "''"),
        (&["-t", "-1s", "true"], "'-1s'"),
        (&["-t", "99999999999999999999s", "true"], "too long"),
        (&["-t", "1.5.5s", "true"], "'1.5.5s'"),
        (&["--grace-period"], "'--grace-period' needs a value"),
        (&["--drain-signal", "", "true"], "''"),
        (&["--drain-signal", "TERMINATE", "true"], "'TERMINATE'"),
        (&["-r", "", "true"], "''"),
        (&["-r", ":", "true"], "':'"),
        (&["-r", "TERM:", "true"], "'TERM:'"),
        (&["-r", ":TERM", "true"], "':TERM'"),
        (&["-r", "99:1", "true"], "'99:1'"),
        (&["-r", "STOP:TERM", "true"], "never receives SIGSTOP"),
        (
            &["--rewrite", "STOP:TERM", "true"],
            "never receives SIGSTOP",
        ),
        (&["--delay", "TERM:-5s", "true"], "'TERM:-5s'"),
        (&["--delay", "CHLD:1s", "true"], "SIGCHLD"),
        (&["--delay", ":1s", "true"], "':1s'"),
        (&["--verbose=3", "true"], "'--verbose'"),
        (&["-sx", "true"], "'-x'"),
    ];
    for (args, needle) in cases {
        let out = run(as_process(*args));
        assert_eq!(out.code(), 2, "{args:?}: {:?}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
        let line = &out.stderr[0];
        assert!(line.starts_with("ferrinit: error: "), "{line}");
        assert!(line.contains(needle), "{args:?}: {line}");
        assert!(line.contains("--help"), "{line}");
    }
}

#[test]
fn a_lone_dash_is_a_command_name_not_an_option() {
    let out = run(as_pid1(["-"]));
    assert_eq!(out.code(), 127, "{:?}", out.stderr);
    assert!(out.stderr[0].contains("cannot run '-'"), "{:?}", out.stderr);
}

#[test]
fn bad_environment_values_are_usage_errors_naming_the_variable() {
    for (name, value) in [
        ("FERRINIT_VERBOSITY", "abc"),
        ("FERRINIT_VERBOSITY", ""),
        ("FERRINIT_VERBOSITY", "99999999999"),
        ("TINI_VERBOSITY", "1.5"),
        ("FERRINIT_SUBREAPER", "2"),
        ("FERRINIT_GRACE_PERIOD", "-1"),
        ("TINI_VERBOSITY", "-2"),
        ("FERRINIT_SUBREAPER", "perhaps"),
        ("FERRINIT_KILL_PROCESS_GROUP", "2"),
        ("FERRINIT_GRACE_PERIOD", "later"),
    ] {
        let mut command = as_process(["true"]);
        command.env(name, value);
        let out = run(command);
        assert_eq!(out.code(), 2, "{name}={value}");
        assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
        assert!(
            out.stderr[0].contains(&format!("{name}='{value}'")),
            "{:?}",
            out.stderr
        );
    }
}

#[test]
fn empty_tini_switches_are_on_as_tini_has_it() {
    for name in ["TINI_SUBREAPER", "TINI_KILL_PROCESS_GROUP"] {
        let mut command = as_process(["-v", "--", probe().to_str().unwrap(), "exit", "0"]);
        command.env(name, "");
        let out = run(command);
        assert_eq!(out.code(), 0, "{name}: {:?}", out.stderr);
        if name == "TINI_SUBREAPER" {
            assert!(
                !out.stderr
                    .iter()
                    .any(|l| l.contains("not running as PID 1")),
                "{:?}",
                out.stderr
            );
        }
    }
}

#[test]
fn tini_environment_variables_keep_working() {
    // TINI_SUBREAPER set (even empty) makes ferrinit a subreaper: no warning about orphans.
    let mut command = as_process(["true"]);
    command.env("TINI_SUBREAPER", "").env("TINI_VERBOSITY", "1");
    let out = run(command);
    assert_eq!(out.code(), 0);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
}

#[test]
fn options_stop_at_the_command_and_the_rest_is_the_commands() {
    // No `--`: "-s" after the command is the probe's, and ferrinit (not a subreaper) warns.
    let out = run(as_process([
        probe().to_str().unwrap(),
        "state",
        "-s",
        "--",
        "-v",
    ]));
    assert_eq!(out.code(), 0);
    let args: Vec<&String> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with("arg "))
        .collect();
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let expected: Vec<String> = ["state", "-s", "--", "-v"]
        .iter()
        .map(|a| format!("arg {}", hex(a)))
        .collect();
    assert_eq!(args[1..], expected.iter().collect::<Vec<_>>()[..]);
    assert_eq!(
        out.stderr.len(),
        1,
        "only the not-PID-1 warning: {:?}",
        out.stderr
    );
    assert!(out.stderr[0].contains("not running as PID 1"));
}

fn exec_failure(command: &[&str], code: i32, needle: &str) {
    let out = run(as_pid1(command));
    assert_eq!(out.code(), code, "{command:?}: {:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{command:?}: {:?}", out.stderr);
    assert!(
        out.stderr[0].starts_with("ferrinit: error: cannot run"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr[0].contains(needle),
        "{command:?}: {:?}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_command_that_does_not_exist_exits_127() {
    exec_failure(
        &["--", "no-such-command-here"],
        127,
        "'no-such-command-here': not found in PATH=",
    );
    exec_failure(&["/no/such/file"], 127, "No such file or directory");
    exec_failure(&["--", "name with spaces"], 127, "'name with spaces'");
    exec_failure(&["--", ""], 127, "cannot run ''");
    let dir = scratch_dir("dangling");
    let link = dir.join("dangling");
    std::os::unix::fs::symlink("/no/such/target", &link).unwrap();
    exec_failure(&[link.to_str().unwrap()], 127, "No such file or directory");
}

#[test]
fn a_command_that_cannot_be_executed_exits_126() {
    let dir = scratch_dir("noexec");
    exec_failure(&[dir.to_str().unwrap()], 126, "is a directory");
    let file = dir.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho nope\n").unwrap();
    exec_failure(&[file.to_str().unwrap()], 126, "Permission denied");
}

#[test]
fn path_lookup_skips_what_cannot_run_and_scripts_without_shebang_run_in_sh_as_execvp_does() {
    let dir = scratch_dir("path");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(first.join("tool"), "echo wrong\n").unwrap(); // not executable: skipped
    std::fs::write(second.join("tool"), "echo \"right $1\"\n").unwrap(); // no shebang: /bin/sh
    std::fs::set_permissions(second.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = as_pid1(["--", "tool", "arg"]);
    command.env("PATH", format!("{}:{}", first.display(), second.display()));
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert_eq!(out.stdout, ["right arg"]);
    // Found only where it cannot run: 126, as execvp reports EACCES.
    let mut command = as_pid1(["--", "tool"]);
    command.env("PATH", first.display().to_string());
    let out = run(command);
    assert_eq!(out.code(), 126, "{:?}", out.stderr);
}
