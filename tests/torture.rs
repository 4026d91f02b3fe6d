//! Torture: load, races, hostile children and hostile start-up. ferrinit never loses or confuses
//! the main child's exit status, never leaks a zombie, never signals a process outside its care.
//!
//! The soak variants (100,000 orphans, 100,000 signals) are `#[ignore]`d for a quick `cargo test`
//! and run by the README's full test command (`-- --include-ignored`), as CI does.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrinit_testkit::{
    Running, as_pid1, as_process, children_of, clean_command, cpu_ticks_of_tree, eventually,
    eventually_progressing, ferrinit, probe, require_root, rtmin, run, run_with_closed_stdio,
    scratch_dir, status_field, zombies_of,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

/// Every signal ferrinit forwards and the probe can handle.
fn storm_signals() -> Vec<i32> {
    let standard = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        // After the stop signals: generating one of them discards a pending SIGCONT (and SIGCONT a
        // pending stop signal), so a CONT sent before them may rightly never arrive.
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
    ];
    standard
        .into_iter()
        .chain(rtmin(0)..=libc::SIGRTMAX())
        .collect()
}

/// Anonymous resident memory (heap, stack, data): what a leak grows. Not VmRSS, which also counts
/// pages of the executable mapped the first time a path of its code runs (reaping's, here).
fn anon_rss_kib(pid: i32) -> u64 {
    let rss = status_field(pid, "RssAnon").expect("RssAnon");
    rss.trim_end_matches(" kB").trim().parse().expect("kB")
}

// --- orphan waves --------------------------------------------------------------------------

/// The main child makes `total` orphans in bursts; afterwards ferrinit has no child but the main
/// one, no zombie, and its anonymous memory has not grown with the number reaped. However long that takes: the
/// run fails only when it stops making progress (see [`wait_for_the_wave`]).
fn orphan_waves(mut running: Running, burst: usize, bursts: usize) {
    running.expect_stdout("ready");
    let init = running.init_pid();
    let main_child = children_of(init);
    assert_eq!(main_child.len(), 1, "{main_child:?}");
    let rss_before = anon_rss_kib(init);
    running.write_stdin(&format!("{burst} {bursts}\n"));
    wait_for_the_wave(&running, init, burst);
    assert_eq!(children_of(init), main_child);
    let rss_after = anon_rss_kib(init);
    assert!(
        rss_after <= rss_before + 16,
        "anonymous RSS grew from {rss_before} kB to {rss_after} kB over {} orphans",
        burst * bursts
    );
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
}

/// Waits until the probe has made its wave of orphans (it reports every thousandth) and ferrinit
/// has reaped every one (its CPU time grows while it does).
fn wait_for_the_wave(running: &Running, init: i32, burst: usize) {
    running.expect_stdout_progressing(&format!("wave-done {burst}"), "wave-progress");
    eventually_progressing(
        "every orphan reaped",
        || children_of(init).len() == 1 && zombies_of(init).is_empty(),
        || cpu_ticks_of_tree(init),
    );
}

fn wave_command(args: &[&str]) -> std::process::Command {
    // The probe waits for the burst sizes on stdin, so that RSS is read before the first orphan.
    let script = r#"echo ready; read burst bursts; exec "$0" wave "$burst" "$bursts""#;
    let mut command = if args.first() == Some(&"-s") {
        as_process(args)
    } else {
        as_pid1(args)
    };
    command.args(["--", "/bin/sh", "-c", script, probe_arg()]);
    command
}

#[test]
fn orphan_waves_leave_no_zombie_and_no_growth_as_pid1() {
    orphan_waves(Running::start(wave_command(&[])), 1_000, 5);
}

#[test]
fn orphan_waves_leave_no_zombie_and_no_growth_as_subreaper() {
    orphan_waves(Running::start(wave_command(&["-s"])), 1_000, 5);
}

#[test]
#[ignore = "soak: 100,000 orphans; run with --include-ignored"]
fn soak_100k_orphans_as_pid1() {
    orphan_waves(Running::start(wave_command(&[])), 10_000, 10);
}

#[test]
#[ignore = "soak: 100,000 orphans; run with --include-ignored"]
fn soak_100k_orphans_as_subreaper() {
    orphan_waves(Running::start(wave_command(&["-s"])), 10_000, 10);
}

// --- signal storms -------------------------------------------------------------------------

/// Sends `rounds` × every storm signal to `pid` as fast as the kernel takes them. Through a
/// pidfd: once ferrinit is gone the sends fail, and can never hit a process that reuses its pid.
fn storm(pid: i32, rounds: usize) -> usize {
    let Some(pidfd) = ferrinit_testkit::pidfd_open(pid) else {
        return 0;
    };
    let signals = storm_signals();
    let mut sent = 0;
    for _ in 0..rounds {
        for &sig in &signals {
            // SAFETY: the pidfd is open; a null siginfo means "as kill() sends it".
            let result = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if result == 0 {
                sent += 1;
            }
        }
    }
    sent
}

/// A storm of every signal while the child forks children and orphans: everything forwarded
/// arrives (standard signals may coalesce), no churned process is ever hit, ferrinit stays
/// responsive, and the exit status is still exactly the child's.
fn signal_storm(command: std::process::Command, rounds: usize) {
    let mut running = Running::start(command);
    running.expect_stdout("storm-target ready");
    let init = running.init_pid();
    let sent = storm(init, rounds);
    assert_eq!(sent, rounds * storm_signals().len());
    // Responsive: ferrinit drains the storm and sleeps again. Asleep in sigwaitinfo it has
    // nothing pending: everything has been forwarded. Draining takes as long as the machine
    // needs; while it lasts, ferrinit and the child use CPU.
    eventually_progressing(
        "ferrinit is idle again",
        || ferrinit_testkit::waits_for_signals_without_timeout(init),
        || cpu_ticks_of_tree(init),
    );
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 42, "the child's exact status: {:?}", out.stderr);
    let counts: BTreeMap<String, usize> = out
        .stdout
        .iter()
        .filter_map(|l| {
            let mut words = l.strip_prefix("received ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect();
    // A pending SIGCONT and a pending stop signal cancel each other in the kernel, at ferrinit
    // and at the child alike; CONT is sent last of them, so it at least must come through.
    let stop_signals = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
    for sig in storm_signals()
        .into_iter()
        .filter(|s| !stop_signals.contains(s))
    {
        let name = signal_name(sig);
        assert!(
            counts.get(&name).is_some_and(|&n| n >= 1),
            "{name} never arrived: {counts:?}"
        );
    }
    let churn = out
        .stdout
        .iter()
        .find(|l| l.starts_with("churn "))
        .expect("churn line");
    assert!(
        churn.ends_with(" bad 0"),
        "a churned process was hit by a signal: {churn}"
    );
    // Forwarding errors (a full real-time queue) may be logged; nothing else may be.
    for line in &out.stderr {
        assert!(line.contains("could not forward"), "unexpected: {line}");
    }
}

fn signal_name(sig: i32) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match sig {
        s if s == min => "SIGRTMIN".into(),
        s if s == max => "SIGRTMAX".into(),
        s if s > min && s < max => format!("SIGRTMIN+{}", s - min),
        s => nix::sys::signal::Signal::try_from(s)
            .expect("standard")
            .as_str()
            .into(),
    }
}

#[test]
fn signal_storm_as_pid1() {
    signal_storm(as_pid1(["--", probe_arg(), "storm-target"]), 200);
}

#[test]
fn signal_storm_as_subreaper() {
    signal_storm(as_process(["-s", "--", probe_arg(), "storm-target"]), 200);
}

#[test]
#[ignore = "soak: 100,000 signals; run with --include-ignored"]
fn soak_100k_signal_storm_as_pid1() {
    let rounds = 100_000usize.div_ceil(storm_signals().len());
    signal_storm(as_pid1(["--", probe_arg(), "storm-target"]), rounds);
}

// --- races ---------------------------------------------------------------------------------

#[test]
fn the_main_child_exiting_in_the_middle_of_a_storm_keeps_its_exact_status() {
    for code in [0, 1, 77, 255] {
        let running = Running::start(as_pid1([
            "--",
            probe_arg(),
            "exit-after",
            "50",
            &code.to_string(),
        ]));
        running.expect_stdout("ready");
        let init = running.init_pid();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Until ferrinit is gone: sends through its pidfd then fail.
                while !stop.load(Ordering::Relaxed) {
                    if storm(init, 1) == 0 {
                        break;
                    }
                }
            });
            let out = Running::finish(running);
            stop.store(true, Ordering::Relaxed);
            assert_eq!(out.code(), code, "{:?}", out.stderr);
        });
    }
}

#[test]
fn the_main_child_exiting_with_thousands_of_orphans_keeps_its_exact_status() {
    for (count, code) in [(2_000, 3), (2_000, 0), (500, 200)] {
        for command in [
            as_pid1([
                "--",
                probe_arg(),
                "orphans-then-exit",
                &count.to_string(),
                &code.to_string(),
            ]),
            as_process([
                "-s",
                "--",
                probe_arg(),
                "orphans-then-exit",
                &count.to_string(),
                &code.to_string(),
            ]),
        ] {
            let out = run(command);
            assert_eq!(out.code(), code, "{count} orphans: {:?}", out.stderr);
        }
    }
}

#[test]
fn a_term_that_arrives_before_the_child_execs_is_not_lost() {
    // TERM is sent the moment ferrinit has blocked signals, often while it parses, forks and
    // execs.
    // It must be forwarded once the child exists: the child (SIGTERM's default action) dies of it.
    for _ in 0..50 {
        let running = Running::start(as_pid1(["--", probe_arg(), "wait"]));
        let unshare = running.pid();
        let mut init = None;
        eventually("ferrinit has blocked its signals", || {
            init = children_of(unshare).first().copied();
            init.is_some_and(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let blocked =
                    status_field(pid, "SigBlk").is_some_and(|mask| mask != "0000000000000000");
                // Asleep in sigwaitinfo the kernel shows the waited-for signals as unblocked.
                let waiting = ferrinit_testkit::waits_for_signals_without_timeout(pid);
                comm.trim() == "ferrinit" && (blocked || waiting)
            })
        });
        // SAFETY: kill has no memory-safety preconditions; the pid is our ferrinit.
        assert_eq!(
            unsafe { libc::kill(init.expect("found"), libc::SIGTERM) },
            0
        );
        // stdin stays open: only the forwarded TERM can end the child.
        let out = running.finish();
        assert_eq!(out.code(), 143, "{:?} {:?}", out.stdout, out.stderr);
    }
}

// --- hostile children ----------------------------------------------------------------------

#[test]
fn a_child_that_ignores_every_signal_does_not_upset_ferrinit() {
    let mut running = Running::start(as_pid1(["--", probe_arg(), "ignore-all"]));
    running.expect_stdout("ready");
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        rtmin(5),
    ] {
        running.signal_init(sig);
    }
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
    // The one way past it: rewrite TERM into KILL.
    let running = Running::start(as_pid1([
        "-r",
        "TERM:KILL",
        "--",
        probe_arg(),
        "ignore-all",
    ]));
    running.expect_stdout("ready");
    running.signal_init(libc::SIGTERM);
    assert_eq!(running.finish().code(), 137);
}

#[test]
fn a_grandchild_that_escapes_with_setsid_is_out_of_reach_of_g_but_not_of_the_drain() {
    let mut running = Running::start(as_pid1([
        "-g",
        "-t",
        "1h",
        "--",
        probe_arg(),
        "group",
        "setsid",
    ]));
    running.expect_stdout("leader ready");
    running.expect_stdout("member ready");
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("leader got SIGUSR1");
    // The leader exits at EOF; the member (same stdin) too, or the drain's TERM ends it.
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(
        !out.stdout.iter().any(|l| l == "member got SIGUSR1"),
        "{:?}",
        out.stdout
    );
}

#[test]
fn a_child_that_forks_as_fast_as_it_can_is_kept_up_with() {
    let out = {
        let mut running = Running::start(as_pid1(["--", probe_arg(), "wave", "20000"]));
        running.expect_stdout("wave-progress");
        let init = running.init_pid();
        wait_for_the_wave(&running, init, 20000);
        running.close_stdin();
        running.finish()
    };
    assert_eq!(out.code(), 0);
}

#[test]
fn a_child_that_drops_the_terminal_still_gets_its_status_through() {
    let mut shell = ferrinit_testkit::interactive_shell();
    shell.type_text("\"$F\" -s -- \"$P\" drop-tty 6; echo status=$?\n");
    shell.expect("status=6");
    // And the shell has its terminal back.
    shell.type_text("read -r line; echo got=$line\n");
    shell.type_text("mine\n");
    shell.expect("got=mine");
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn a_stream_of_one_standard_signal_does_not_starve_reaping() {
    // SIGUSR1 (10) sorts before SIGCHLD (17): the kernel's lowest-first would hand out SIGUSR1
    // for as long as the stream lasts, and the stream lasts until ferrinit exits.
    let running = Running::start(as_pid1(["--", probe_arg(), "exit-after", "200", "33"]));
    running.expect_stdout("ready");
    let target = ferrinit_testkit::pidfd_open(running.init_pid()).expect("pidfd");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the pidfd is open; a null siginfo means "as kill() sends it".
                let sent = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        std::os::fd::AsRawFd::as_raw_fd(&target),
                        libc::SIGUSR1,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                if sent != 0 {
                    break;
                }
            }
        });
        let out = running.finish();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(out.code(), 33, "{:?}", out.stderr);
    });
}

// --- hostile start-up ----------------------------------------------------------------------

/// Stderr whose reader is gone: every write to it fails with EPIPE and raises SIGPIPE.
fn broken_stderr() -> std::process::Stdio {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    std::process::Stdio::from(write)
}

#[test]
fn a_dead_stderr_neither_kills_the_child_nor_spins() {
    // Not PID 1 and no -s: ferrinit's first act is a warning, to a stderr nobody reads. The
    // SIGPIPE that raises at ferrinit is not the child's.
    let mut running = Running::start_with_stderr(
        as_process(["--", probe_arg(), "exit", "7"]),
        broken_stderr(),
    );
    running.close_stdin();
    assert_eq!(running.finish().code(), 7);
    // With -v every forward is logged, and every log line fails again.
    let mut running = Running::start_with_stderr(
        as_process(["-v", "-s", "--", probe_arg(), "signals"]),
        broken_stderr(),
    );
    running.expect_stdout("probe ready");
    for sig in [libc::SIGUSR1, libc::SIGHUP, libc::SIGUSR2] {
        running.signal_init(sig);
    }
    running.expect_stdout("probe got SIGUSR2");
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0);
    assert!(
        !out.stdout.iter().any(|l| l.contains("SIGPIPE")),
        "{:?}",
        out.stdout
    );
}

#[test]
fn closed_stdio_stays_closed_in_the_child_and_ferrinit_puts_nothing_there() {
    let dir = scratch_dir("closed-stdio");
    for closed in [&[0][..], &[1], &[2], &[0, 1, 2]] {
        let state = dir.join(format!("state-{closed:?}"));
        // Not under unshare, which would open something of its own in the gap.
        let command = as_process([
            "-s",
            "--",
            probe_arg(),
            "state-file",
            state.to_str().unwrap(),
        ]);
        run_with_closed_stdio(command, closed, &state);
    }
}

#[test]
fn argv_and_environment_near_arg_max_pass_through_byte_for_byte() {
    // ~1.5 MB of arguments and environment (ARG_MAX is 2 MB here), odd bytes included.
    let arg = |i: usize| -> Vec<u8> {
        let mut bytes = format!("arg-{i}-").into_bytes();
        bytes.extend((0..1000).map(|j| (1 + (i + j) % 255) as u8));
        bytes
    };
    let args: Vec<Vec<u8>> = (0..700).map(arg).collect();
    let env: BTreeMap<String, Vec<u8>> = (0..300)
        .map(|i| (format!("VAR_{i:03}"), arg(i + 1000)))
        .collect();
    let mut command = as_pid1(["--", probe_arg(), "digest"]);
    command.env_clear();
    for a in &args {
        command.arg(std::ffi::OsStr::from_bytes(a));
    }
    for (k, v) in &env {
        command.env(k, std::ffi::OsStr::from_bytes(v));
    }
    let out = run(command);
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let fnv = |items: Vec<Vec<u8>>| {
        items.iter().fold(0xcbf2_9ce4_8422_2325u64, |mut h, item| {
            for &b in item.iter().chain(&[0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h
        })
    };
    let mut expected_args = vec![b"digest".to_vec()];
    expected_args.extend(args);
    let expected_env: Vec<Vec<u8>> = env
        .iter()
        .map(|(k, v)| [k.as_bytes(), b"=", v].concat())
        .collect();
    assert_eq!(
        out.stdout[0],
        format!("args {} {:016x}", expected_args.len(), fnv(expected_args))
    );
    assert_eq!(
        out.stdout[1],
        format!("env {} {:016x}", expected_env.len(), fnv(expected_env))
    );
}

#[test]
fn fork_failing_under_rlimit_nproc_is_a_clear_error_not_a_hang() {
    if !require_root("to run ferrinit as another user") {
        return;
    }
    // As nobody with RLIMIT_NPROC 1: ferrinit itself is that one process, so fork fails.
    let mut command = as_process(["-s", "--", probe_arg(), "exit", "0"]);
    command.uid(65534).gid(65534);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let one = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            libc::setrlimit(libc::RLIMIT_NPROC, &one);
            Ok(())
        });
    }
    let out = run(command);
    assert_eq!(out.code(), 125, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].starts_with("ferrinit: error: cannot fork the child: EAGAIN"),
        "{:?}",
        out.stderr
    );
}

// --- safety --------------------------------------------------------------------------------

#[test]
fn a_sibling_outside_the_subtree_survives_every_mode_untouched() {
    let sibling = ferrinit_testkit::Sibling::start();
    let modes: [&[&str]; 4] = [
        &["-s", "--", probe_arg(), "signals"],
        &["-s", "-g", "--", probe_arg(), "signals"],
        &[
            "-s",
            "-t",
            "100ms",
            "--",
            probe_arg(),
            "straggler",
            "stubborn",
        ],
        &[
            "-s",
            "-t",
            "1h",
            "--drain-signal",
            "USR1",
            "--",
            probe_arg(),
            "straggler",
            "term",
        ],
    ];
    for args in modes {
        let mut running = Running::start(as_process(args));
        running.expect_stdout("ready");
        for sig in [libc::SIGUSR1, libc::SIGHUP, libc::SIGTERM] {
            running.signal_init(sig);
        }
        running.close_stdin();
        running.finish();
    }
    sibling.assert_untouched();
}

#[test]
fn works_unprivileged_in_a_user_namespace() {
    if !require_root("to switch to an unprivileged user first") {
        return;
    }
    let userns = |args: &[&str]| {
        let mut command = clean_command(
            "unshare",
            [
                "--user",
                "--map-root-user",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
            ],
        );
        command.arg(ferrinit()).args(args).uid(65534).gid(65534);
        command
    };
    assert_eq!(run(userns(&["--", probe_arg(), "exit", "12"])).code(), 12);
    let mut running = Running::start(userns(&["-w", "--", probe_arg(), "orphans", "10"]));
    running.expect_stdout("orphans-exited 10");
    running.stderr_count("reaped zombie process", 10);
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
    let mut running = Running::start(userns(&["--", probe_arg(), "signals"]));
    running.expect_stdout("probe ready");
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("probe got SIGUSR1");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}
