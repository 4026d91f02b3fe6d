//! ferrinit is transparent: the child starts with the signal mask and dispositions ferrinit was
//! started with, the same environment, argv and working directory, and exactly the descriptors
//! ferrinit inherited; ferrinit itself keeps none of them and moves to /.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

use ferrinit_testkit::{
    Running, as_pid1, as_process, children_of, fds_of, probe, rtmin, run, scratch_dir,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

fn field<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no '{name}' in {lines:?}"))
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

fn mask(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).expect("hex mask")
}

#[test]
fn a_clean_start_gives_the_child_an_empty_mask_and_default_dispositions() {
    for command in [
        as_pid1(["--", probe_arg(), "state"]),
        as_process(["-s", "--", probe_arg(), "state"]),
    ] {
        let out = run(command);
        assert_eq!(out.code(), 0);
        assert_eq!(mask(field(&out.stdout, "blocked")), 0);
        assert_eq!(
            mask(field(&out.stdout, "ignored")),
            0,
            "SIGPIPE above all must not be ignored"
        );
        assert_eq!(mask(field(&out.stdout, "caught")), 0);
    }
}

/// Starts ferrinit with some signals blocked and some ignored, SIGCHLD and SIGPIPE among them.
fn with_inherited_signal_state(
    command: &mut std::process::Command,
    blocked: &[i32],
    ignored: &[i32],
) {
    let (blocked, ignored) = (blocked.to_vec(), ignored.to_vec());
    // SAFETY: only async-signal-safe calls (sigemptyset/sigaddset/sigprocmask/signal) run in the
    // forked child before exec.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in &blocked {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            for &sig in &ignored {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
}

#[test]
fn the_child_gets_back_the_mask_and_ignored_signals_ferrinit_started_with() {
    let blocked = [libc::SIGUSR1, libc::SIGTERM, rtmin(2)];
    // unshare resets SIGCHLD before it starts ferrinit, so SIGCHLD only counts outside it.
    let ignored = [libc::SIGHUP, libc::SIGPIPE, libc::SIGTTOU];
    let ignored_with_chld = [libc::SIGHUP, libc::SIGPIPE, libc::SIGTTOU, libc::SIGCHLD];
    for (mut command, ignored) in [
        (as_pid1(["--", probe_arg(), "state"]), &ignored[..]),
        (
            as_process(["-s", "--", probe_arg(), "state"]),
            &ignored_with_chld[..],
        ),
    ] {
        with_inherited_signal_state(&mut command, &blocked, ignored);
        let out = run(command);
        assert_eq!(out.code(), 0, "{:?}", out.stderr);
        let sum = |signals: &[i32]| signals.iter().map(|&s| bit(s)).sum::<u64>();
        assert_eq!(mask(field(&out.stdout, "blocked")), sum(&blocked));
        assert_eq!(mask(field(&out.stdout, "ignored")), sum(ignored));
        assert_eq!(mask(field(&out.stdout, "caught")), 0);
    }
}

#[test]
fn an_inherited_ignored_sigchld_does_not_lose_the_exit_status() {
    // With SIGCHLD ignored the kernel would reap the child itself; ferrinit must still see 7.
    let mut command = as_process(["-s", "--", probe_arg(), "exit", "7"]);
    with_inherited_signal_state(&mut command, &[], &[libc::SIGCHLD]);
    assert_eq!(run(command).code(), 7);
}

#[test]
fn nohup_still_ignores_sighup_in_the_child() {
    let mut command = std::process::Command::new("nohup");
    ferrinit_testkit::clean_start(&mut command);
    command.args([
        ferrinit_testkit::ferrinit().to_str().unwrap(),
        "-s",
        "--",
        probe_arg(),
        "state",
    ]);
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert_eq!(mask(field(&out.stdout, "ignored")), bit(libc::SIGHUP));
}

#[test]
fn the_child_gets_argv_environment_and_working_directory_byte_for_byte() {
    let dir = scratch_dir("cwd with space");
    let odd_arg = OsStr::from_bytes(b"caf\xe9 \xff\x01");
    let odd_value = OsStr::from_bytes(b"\xfe\xfdvalue with = sign");
    let mut command = as_pid1([
        "--".as_ref(),
        probe().as_os_str(),
        "state".as_ref(),
        odd_arg,
        "".as_ref(),
    ]);
    command
        .current_dir(&dir)
        .env_clear()
        .env("ODD", odd_value)
        .env("EMPTY", "")
        .env("PATH", "/usr/bin:/bin");
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let args: Vec<&str> = out
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("arg "))
        .collect();
    assert_eq!(
        args,
        [
            hex(probe().as_os_str().as_bytes()),
            hex(b"state"),
            hex(odd_arg.as_bytes()),
            String::new()
        ]
    );
    let mut env: Vec<&str> = out
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("env "))
        .collect();
    env.sort();
    let mut expected = vec![
        hex(b"EMPTY="),
        hex(&[b"ODD=".as_slice(), odd_value.as_bytes()].concat()),
        hex(b"PATH=/usr/bin:/bin"),
    ];
    expected.sort();
    assert_eq!(env, expected, "nothing added, nothing lost");
    assert_eq!(
        field(&out.stdout, "cwd"),
        dir.canonicalize().unwrap().to_str().unwrap()
    );
}

#[test]
fn descriptors_ferrinit_inherited_reach_the_child_and_then_leave_ferrinit() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let inherited = file.as_raw_fd();
    let mut command = as_process(["-s", "-v", "--", probe_arg(), "wait"]);
    // SAFETY: dup2 and fcntl are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // Descriptor 5 is inherited (no close-on-exec); 7 is close-on-exec, so not inherited.
            libc::dup2(inherited, 5);
            libc::dup2(inherited, 7);
            libc::fcntl(7, libc::F_SETFD, libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut running = Running::start(command);
    running.expect_stdout("ready");
    // Logged once ferrinit has closed what it inherited.
    running.expect_stderr("forked child");
    let ferrinit = running.init_pid();
    let child = children_of(ferrinit)[0];
    assert_eq!(
        fds_of(child),
        [0, 1, 2, 5],
        "the child has exactly what ferrinit inherited"
    );
    // Beyond 0, 1 and 2, only the log's own description of stderr (see log.rs), open for the
    // time of one line, and the signalfd ferrinit waits on may be open. A descriptor closed
    // between the listing and its look-up is not kept either.
    let link = |fd: i32| std::fs::read_link(format!("/proc/{ferrinit}/fd/{fd}")).ok();
    let stderr = link(2);
    let kept: Vec<i32> = fds_of(ferrinit)
        .into_iter()
        .filter(|&fd| fd > 2)
        .filter(|&fd| {
            link(fd).is_some_and(|to| {
                Some(&to) != stderr.as_ref() && to.as_os_str() != "anon_inode:[signalfd]"
            })
        })
        .collect();
    assert_eq!(kept, [0; 0], "ferrinit keeps none of it");
    let cwd = std::fs::read_link(format!("/proc/{ferrinit}/cwd")).unwrap();
    assert_eq!(cwd.to_str(), Some("/"), "ferrinit holds no mount busy");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn no_descriptor_of_ferrinits_own_reaches_the_child_as_pid1() {
    let out = run(as_pid1(["--", probe_arg(), "state"]));
    assert_eq!(field(&out.stdout, "fds"), "0 1 2");
}

#[test]
fn listen_pid_naming_ferrinit_is_rewritten_to_name_the_child() {
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names ferrinit itself.
    let script = r#"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_PIDFDID=1234 exec "$0" -s -- "$1" state"#;
    let mut command = std::process::Command::new("sh");
    ferrinit_testkit::clean_start(&mut command);
    command.args([
        "-c",
        script,
        ferrinit_testkit::ferrinit().to_str().unwrap(),
        probe_arg(),
    ]);
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let env = |name: &str| {
        out.stdout
            .iter()
            .filter_map(|l| l.strip_prefix("env "))
            .find_map(|hex| {
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                String::from_utf8(bytes)
                    .ok()?
                    .strip_prefix(&format!("{name}="))
                    .map(str::to_owned)
            })
    };
    let child_pid = field(&out.stdout, "pid")
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(env("LISTEN_PID"), Some(child_pid));
    assert_eq!(env("LISTEN_FDS").as_deref(), Some("1"));
    assert_eq!(
        env("LISTEN_PIDFDID"),
        None,
        "it named ferrinit's pidfd: dropped"
    );

    // LISTEN_PID naming some other process is none of ferrinit's business.
    let mut command = as_process(["-s", "--", probe_arg(), "state"]);
    command.env("LISTEN_PID", "1").env("LISTEN_PIDFDID", "99");
    let out = run(command);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(out.stdout.contains(&format!("env {}", hex("LISTEN_PID=1"))));
    assert!(
        out.stdout
            .contains(&format!("env {}", hex("LISTEN_PIDFDID=99")))
    );
}

fn pipe_fd(file: &std::fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

#[test]
fn a_full_stderr_nobody_reads_never_stops_reaping_and_dropped_lines_are_counted() {
    use ferrinit_testkit::{Lines, eventually, waits_for_signals_without_timeout, zombies_of};
    // A pipe whose reader does not read (yet): after some 64 KiB of warnings it is full.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    // -w: one warning per orphan reaped, thousands of lines.
    let command = as_pid1(["-v", "-w", "--", probe_arg(), "wave", "3000"]);
    let mut running = Running::start_with_stderr(command, writer.into());
    running.expect_stdout("wave-done 3000");
    let ferrinit = running.init_pid();
    // Still reaping, and back waiting for signals: not stuck writing to stderr.
    eventually("every orphan reaped, ferrinit idle in sigwaitinfo", || {
        zombies_of(ferrinit).is_empty() && waits_for_signals_without_timeout(ferrinit)
    });
    // Now empty the pipe, all of it, before ferrinit writes again: a line it writes while the
    // pipe is still full is dropped too (which is the point), and the test would wait for it.
    let mut pipe = std::fs::File::from(reader);
    let full = {
        use std::io::Read;
        let mut pending = 0 as libc::c_int;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(
            unsafe { libc::ioctl(pipe_fd(&pipe), libc::FIONREAD, &mut pending) },
            0
        );
        let mut bytes = vec![0; usize::try_from(pending).expect("a count")];
        pipe.read_exact(&mut bytes)
            .expect("read what the pipe holds");
        bytes
    };
    assert!(
        full.len() >= 4096,
        "the pipe was never full: {} bytes",
        full.len()
    );
    // The next line ferrinit writes is preceded by the count of lost ones.
    let stderr = Lines::read(pipe);
    running.signal_init(libc::SIGUSR1);
    let note = stderr.expect("earlier log lines were dropped", "stderr");
    let dropped: usize = note
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {note:?}"));
    assert!(dropped > 0 && dropped < 3000, "{note}");
    stderr.expect("forwarded SIGUSR1", "stderr");
    running.close_stdin();
    running.finish();
    let again = stderr.rest().into_iter().filter(|l| l.contains("dropped"));
    assert_eq!(again.count(), 0, "one note, once writing works again");
}

#[test]
fn a_read_only_stderr_gets_no_log_line_and_the_child_its_end_of_input() {
    // `echo data | ferrinit -v -- cat 2<&0`: descriptor 2 is the read end of cat's input.
    // Reopened for writing, it would make ferrinit a writer of that pipe: cat would read its log
    // line, and never see the end of its input.
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`; close-on-exec, so that no other test's
    // child holds the write end open.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut command = as_process(["-s", "-v", "--", "cat"]);
    command
        .stdin(read.try_clone().unwrap())
        .stderr(read)
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(command);
    let mut write = std::fs::File::from(write);
    write.write_all(b"data\n").unwrap();
    drop(write);
    let status = ferrinit_testkit::wait_timeout(&mut child, ferrinit_testkit::stall_timeout());
    if status.is_none() {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    }
    let status = status.expect("cat never saw the end of its input");
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    assert_eq!(output, "data\n");
    assert_eq!(status.code(), Some(0));
}
