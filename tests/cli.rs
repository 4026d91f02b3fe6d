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
        ("FERRINIT_SUBREAPER", "2"),
        ("FERRINIT_GRACE_PERIOD", "-1"),
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
        "'no-such-command-here': not found in PATH",
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

#[test]
fn path_search_goes_on_past_a_candidate_that_sh_cannot_run_as_execvp_does() {
    require_tool("bwrap", "bubblewrap");
    let dir = scratch_dir("no-sh");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    // Executable, in no known format: execve says ENOEXEC, and then /bin/sh is missing too.
    std::fs::write(first.join("tool"), "not a program\n").unwrap();
    std::fs::set_permissions(first.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(probe(), second.join("tool")).unwrap();
    // /bin is a link to /usr/bin: an empty /usr/bin leaves no /bin/sh.
    let mut command = ferrinit_testkit::clean_command(
        ferrinit_testkit::tool("bwrap"),
        ["--dev-bind", "/", "/", "--tmpfs", "/usr/bin", "--"],
    );
    command
        .arg(ferrinit_testkit::ferrinit())
        .args(["-s", "--", "tool", "exit", "7"])
        .env("PATH", format!("{}:{}", first.display(), second.display()));
    let out = run(command);
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}

#[test]
fn a_script_whose_interpreter_is_missing_is_reported_by_its_interpreter() {
    let dir = scratch_dir("interpreter");
    let script = dir.join("script");
    std::fs::write(&script, "#!/no/such/interpreter -x\necho nope\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    exec_failure(&[script.to_str().unwrap()], 127, "'/no/such/interpreter'");
    // Found in PATH: the file is named, and it is not "not found in PATH".
    let mut command = as_pid1(["--", "script"]);
    command.env("PATH", dir.display().to_string());
    let out = run(command);
    assert_eq!(out.code(), 127, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("'/no/such/interpreter'")
            && out.stderr[0].contains(script.to_str().unwrap()),
        "{:?}",
        out.stderr
    );
}

#[test]
fn a_missing_interpreter_is_named_under_a_tight_descriptor_limit() {
    // RLIMIT_NOFILE 5: the child opens the script to read its `#!` line, in slots that
    // ferrinit's own descriptors (the OOM baseline's, left open until the spawn) must not hold.
    let dir = scratch_dir("interpreter-nofile");
    let script = dir.join("script");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for limit in [4, 5] {
        let mut command = as_process(["-s", "--", script.to_str().unwrap()]);
        ferrinit_testkit::limit_descriptors(&mut command, limit);
        let out = run(command);
        assert_eq!(out.code(), 127, "{limit}: {:?}", out.stderr);
        assert!(
            out.stderr
                .iter()
                .any(|l| l.contains("'/no/such/interpreter'")),
            "{limit}: {:?}",
            out.stderr
        );
    }
}

#[test]
fn a_relative_command_is_diagnosed_where_the_user_named_it() {
    // ferrinit moves to / once the child exists; the diagnosis must not look there.
    let dir = scratch_dir("relative");
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    std::fs::write(dir.join("tmp"), "plain file\n").unwrap();
    for (command, needle) in [("./dir", "is a directory"), ("./tmp", "Permission denied")] {
        let mut ferrinit = as_pid1(["--", command]);
        ferrinit.current_dir(&dir);
        let out = run(ferrinit);
        assert_eq!(out.code(), 126, "{command}: {:?}", out.stderr);
        assert_eq!(out.stderr.len(), 1, "{command}: {:?}", out.stderr);
        assert!(
            out.stderr[0].contains(needle),
            "{command}: {:?}",
            out.stderr
        );
    }
}

#[test]
fn a_missing_command_is_named_without_the_whole_path() {
    let mut command = as_pid1(["--", "no-such-command-here"]);
    command.env("PATH", "/nowhere/a:/nowhere/b:/nowhere/c");
    let out = run(command);
    assert_eq!(out.code(), 127);
    assert_eq!(
        out.stderr,
        [
            "ferrinit: error: cannot run 'no-such-command-here': not found in PATH (3 directories searched)"
        ]
    );
}

#[test]
fn tini_verbosity_values_that_tini_accepts_start_ferrinit() {
    for value in ["", "abc", "-1", " 1", "2x", "+0"] {
        let mut command = as_process(["-s", "--", probe().to_str().unwrap(), "exit", "4"]);
        command.env("TINI_VERBOSITY", value);
        let out = run(command);
        assert_eq!(out.code(), 4, "TINI_VERBOSITY={value:?}: {:?}", out.stderr);
    }
    // atoi reads " 1" as 1 and "abc" as 0: warnings on, then off.
    for (value, warns) in [(" 1", true), ("abc", false), ("-1", true)] {
        let mut command = as_process(["--", probe().to_str().unwrap(), "exit", "0"]);
        command.env("TINI_VERBOSITY", value);
        let out = run(command);
        let warned = out
            .stderr
            .iter()
            .any(|l| l.contains("not running as PID 1"));
        assert_eq!(warned, warns, "TINI_VERBOSITY={value:?}: {:?}", out.stderr);
    }
}

#[test]
fn a_print_flag_followed_by_a_bad_option_is_a_usage_error() {
    for args in [["--version", "--bogus"], ["-h", "-x"], ["-l", "--nope"]] {
        let out = run(as_process(args));
        assert_eq!(out.code(), 2, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
    }
}

#[test]
fn help_into_a_closed_pipe_is_one_line_and_exit_125() {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let mut command = as_process(["--help"]);
    command.stdout(writer);
    let out = command
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ferrinit: error: cannot write"),
        "{stderr}"
    );
}

#[test]
fn pause_outside_pid_1_warns_without_speaking_of_a_child() {
    let mut running = ferrinit_testkit::Running::start(as_process(["--pause"]));
    let warning = running.expect_stderr("not running as PID 1");
    assert!(!warning.contains("child"), "{warning}");
    running.signal_init(libc::SIGTERM);
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn a_failed_exec_is_never_logged_as_a_started_child() {
    let out = run(as_pid1(["-vv", "--", "/no/such/command"]));
    assert_eq!(out.code(), 127);
    assert!(
        !out.stderr.iter().any(|l| l.contains("started")),
        "{:?}",
        out.stderr
    );
}

#[test]
fn a_parent_that_dies_before_ferrinit_reads_its_pid_still_sends_the_parent_death_signal() {
    use ferrinit_testkit::{children_of, eventually, is_alive, status_field};
    require_tool("strace", "strace");
    // In a PID namespace of its own, whose init (sh) adopts ferrinit and takes everything down
    // at the end: PARENT (a shell) runs ferrinit under strace, which stops ferrinit (SIGSTOP) at
    // its first rt_sigprocmask, the signals' take-over, before the old code read its parent.
    // (`; true`: or the shell would exec strace, and ferrinit's parent would be the init. The
    // init waits for stdin to close, not for PARENT: the namespace outlives PARENT. Fd 3: the
    // shell would give a background job /dev/null as stdin, and the probe would exit at once.)
    let script = format!(
        "exec 3<&0; sh -c 'strace -D -e trace=rt_sigprocmask \
         -e inject=rt_sigprocmask:signal=SIGSTOP:when=1 {} -s -p KILL -- {} signals; true' <&3 & read line",
        ferrinit_testkit::ferrinit().display(),
        probe().display()
    );
    let mut command = ferrinit_testkit::clean_command(
        ferrinit_testkit::tool("unshare"),
        [
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ],
    );
    command.arg(script);
    let running = ferrinit_testkit::Running::start(command);
    let find = || {
        let mut queue = vec![running.pid()];
        while let Some(pid) = queue.pop() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "ferrinit" {
                return Some(pid);
            }
            queue.extend(children_of(pid));
        }
        None
    };
    // strace says so once ferrinit is in the group stop (its own stops, at each traced system
    // call, are fleeting).
    running.expect_stderr("stopped by SIGSTOP");
    let ferrinit = find().expect("ferrinit under strace");
    let parent: i32 = status_field(ferrinit, "PPid").unwrap().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions; the pid is our own descendant.
    assert_eq!(unsafe { libc::kill(parent, libc::SIGKILL) }, 0);
    eventually("ferrinit adopted", || {
        status_field(ferrinit, "PPid").is_some_and(|p| p != parent.to_string())
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(ferrinit, libc::SIGCONT) }, 0);
    // The parent it started with is gone: -p KILL takes ferrinit down at once.
    eventually("ferrinit killed by its parent-death signal", || {
        !is_alive(ferrinit)
    });
}

/// A test that needs a tool fails when it is missing, naming the Debian package.
fn require_tool(program: &str, package: &str) {
    assert!(
        ferrinit_testkit::have(program),
        "{program} is missing: apt-get install {package}"
    );
}

#[test]
fn an_option_without_a_name_is_shown_as_given() {
    let out = run(as_process(["--=x", "true"]));
    assert_eq!(out.code(), 2, "{:?}", out.stderr);
    assert_eq!(
        out.stderr,
        ["ferrinit: error: unknown option '--=x'; see 'ferrinit --help'"]
    );
}

/// A pipe that holds exactly `PAGE` bytes and holds them already: the next write would wait.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const PAGE: usize = 4096;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`; close-on-exec, so that no other test's
    // child holds them.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ has no memory-safety preconditions.
    let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PAGE as libc::c_int) };
    assert_eq!(size, PAGE as libc::c_int);
    let mut writer = std::fs::File::from(write.try_clone().unwrap());
    writer.write_all(&[b'x'; PAGE]).unwrap();
    (read, write)
}

#[test]
fn out_of_memory_with_a_full_stderr_pipe_still_exits_125() {
    // As in exit_codes.rs: an unknown option of 120 kB, and the first address-space limit under
    // which ferrinit starts but runs out of memory reporting it. Then the same run with stderr a
    // full pipe that nobody reads: the line is dropped, and ferrinit exits all the same.
    use std::os::unix::process::CommandExt;
    let option = format!("--{}", "x".repeat(120_000));
    let command = |limit: u64| {
        let mut command = std::process::Command::new(ferrinit_testkit::ferrinit());
        command.args([option.as_str(), "true"]);
        ferrinit_testkit::clean_start(&mut command);
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                libc::setrlimit(libc::RLIMIT_AS, &rlimit);
                Ok(())
            });
        }
        command.stdin(std::process::Stdio::null());
        command
    };
    let limit = (1_000_000..4_000_000)
        .step_by(20_000)
        .find(|&limit| {
            command(limit).output().is_ok_and(|out| {
                out.stderr == b"ferrinit: error: out of memory\n" && out.status.code() == Some(125)
            })
        })
        .expect("ferrinit never ran out of memory");
    let (_read, write) = full_pipe();
    let mut child = command(limit)
        .stdout(std::process::Stdio::null())
        .stderr(write)
        .spawn()
        .unwrap();
    let status = ferrinit_testkit::wait_timeout(&mut child, ferrinit_testkit::stall_timeout());
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("ferrinit waits on its full stderr pipe");
    assert_eq!(status.code(), Some(125), "limit {limit}");
}
