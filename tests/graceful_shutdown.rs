//! `--grace-period`: when the child exits, what is left gets the drain signal, time to exit,
//! then SIGKILL; ferrinit exits with the child's status, and nothing outside its care is touched.

use ferrinit_testkit::{
    Finished, Running, as_pid1, as_process, eventually, fds_of, is_alive, probe, stall_timeout,
    wait_for_exit_of, waits_for_signals_with_timeout,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

fn straggler_pid(running: &Running) -> i32 {
    let line = running.expect_stdout("straggler ");
    line.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("straggler PID ready")
}

/// The child leaves a straggler that exits on TERM after reporting it, and exits 7 itself.
/// `-t 1h`: the test would time out if ferrinit waited out the grace period instead of leaving
/// as soon as the tree is empty.
fn cooperating_straggler_gets_term_and_the_exit_status_is_the_childs(
    command: std::process::Command,
) {
    let mut running = Running::start(command);
    running.close_stdin();
    running.expect_stdout("straggler ");
    running.expect_stdout("straggler got SIGTERM");
    let out = running.finish();
    assert_eq!(
        out.code(),
        7,
        "the main child's status, not the straggler's: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.is_empty(),
        "no SIGKILL was needed: {:?}",
        out.stderr
    );
}

#[test]
fn drain_gives_a_cooperating_straggler_its_term_and_ends_early_as_pid1() {
    let args = ["-t", "1h", "--", probe_arg(), "straggler", "term", "7"];
    cooperating_straggler_gets_term_and_the_exit_status_is_the_childs(as_pid1(args));
}

#[test]
fn drain_gives_a_cooperating_straggler_its_term_and_ends_early_as_subreaper() {
    let args = [
        "-s",
        "--grace-period",
        "1h",
        "--",
        probe_arg(),
        "straggler",
        "term",
        "7",
    ];
    cooperating_straggler_gets_term_and_the_exit_status_is_the_childs(as_process(args));
}

#[test]
fn grace_period_from_the_environment() {
    let mut command = as_pid1(["--", probe_arg(), "straggler", "term", "7"]);
    command.env("FERRINIT_GRACE_PERIOD", "1h");
    cooperating_straggler_gets_term_and_the_exit_status_is_the_childs(command);
}

fn stubborn_straggler_is_killed_after_the_grace_period(
    command: std::process::Command,
) -> (Finished, i32) {
    let mut running = Running::start(command);
    running.close_stdin();
    let straggler = straggler_pid(&running);
    let out = running.finish();
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("grace period of 200ms is over"),
        "{:?}",
        out.stderr
    );
    (out, straggler)
}

#[test]
fn a_straggler_that_ignores_term_is_killed_after_the_grace_period_as_pid1() {
    let args = [
        "-t",
        "200ms",
        "--",
        probe_arg(),
        "straggler",
        "stubborn",
        "3",
    ];
    stubborn_straggler_is_killed_after_the_grace_period(as_pid1(args));
}

#[test]
fn a_straggler_that_ignores_term_is_killed_after_the_grace_period_as_subreaper() {
    let args = [
        "-s",
        "-t",
        "200ms",
        "--",
        probe_arg(),
        "straggler",
        "stubborn",
        "3",
    ];
    let (_, straggler) = stubborn_straggler_is_killed_after_the_grace_period(as_process(args));
    // Our own pid namespace: the straggler was killed and reaped by ferrinit before it exited.
    assert!(!is_alive(straggler), "straggler {straggler} survived");
}

#[test]
fn a_process_forked_during_the_drain_is_caught_too() {
    // The straggler answers TERM by forking a process that ignores every signal, then exits.
    // SIGKILL must find that process when the grace period is over. The grace period has to
    // leave the straggler time to fork, which a loaded machine may not give it: a run where the
    // straggler was killed before it could fork proves nothing and is tried again with twice the
    // grace period, until that exceeds the stall timeout.
    for (as_subreaper, host_pids) in [(false, false), (true, true)] {
        let mut grace = std::time::Duration::from_millis(500);
        let (out, spawned) = loop {
            let grace_arg = format!("{}ms", grace.as_millis());
            let mut args = vec![
                "-t",
                &grace_arg,
                "--",
                probe_arg(),
                "straggler",
                "spawner",
                "5",
            ];
            let mut running = if as_subreaper {
                args.insert(0, "-s");
                Running::start(as_process(args))
            } else {
                Running::start(as_pid1(args))
            };
            running.close_stdin();
            straggler_pid(&running);
            let out = running.finish();
            let spawned = out
                .stdout
                .iter()
                .find_map(|l| l.strip_prefix("spawned ")?.parse::<i32>().ok());
            if let Some(pid) = spawned {
                break (out, pid);
            }
            grace *= 2;
            assert!(
                grace < stall_timeout(),
                "the straggler never forked during the drain: {:?} {:?}",
                out.stdout,
                out.stderr
            );
        };
        assert_eq!(out.code(), 5, "{:?}", out.stderr);
        assert!(
            out.stderr.iter().any(|l| l.contains("is over")),
            "{:?}",
            out.stderr
        );
        if host_pids {
            assert!(
                !is_alive(spawned),
                "process {spawned} forked during the drain survived"
            );
        }
    }
}

#[test]
fn drain_runs_when_a_forwarded_term_ends_the_child() {
    // The child has SIGTERM's default action; ferrinit forwards TERM, the child dies of it
    // (143), and the straggler gets its own TERM from the drain.
    let running = Running::start(as_pid1([
        "-t",
        "1h",
        "--",
        probe_arg(),
        "straggler",
        "term",
    ]));
    running.expect_stdout("straggler ");
    running.signal_init(libc::SIGTERM);
    running.expect_stdout("straggler got SIGTERM");
    let out = running.finish();
    assert_eq!(out.code(), 143);
}

#[test]
fn drain_signal_can_be_chosen() {
    let args = [
        "-t",
        "1h",
        "--drain-signal",
        "USR1",
        "--",
        probe_arg(),
        "straggler",
        "term",
        "0",
    ];
    let mut running = Running::start(as_pid1(args));
    running.close_stdin();
    running.expect_stdout("straggler got SIGUSR1");
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn without_a_grace_period_ferrinit_exits_at_once_as_tini_does() {
    // As PID 1 the kernel SIGKILLs the straggler with the namespace: it never sees a TERM.
    let out = {
        let mut running = Running::start(as_pid1(["--", probe_arg(), "straggler", "term", "4"]));
        running.close_stdin();
        running.finish()
    };
    assert_eq!(out.code(), 4);
    assert!(
        !out.stdout.iter().any(|l| l.contains("got")),
        "{:?}",
        out.stdout
    );
}

#[test]
fn the_drain_never_signals_a_process_outside_ferrinits_subtree() {
    let sibling = ferrinit_testkit::Sibling::start();
    let args = [
        "-s",
        "-t",
        "200ms",
        "--",
        probe_arg(),
        "straggler",
        "stubborn",
        "0",
    ];
    let mut running = Running::start(as_process(args));
    running.close_stdin();
    let straggler = straggler_pid(&running);
    let out = running.finish();
    assert!(
        out.stderr.iter().any(|l| l.contains("is over")),
        "{:?}",
        out.stderr
    );
    assert!(wait_for_exit_of(straggler, stall_timeout()));
    sibling.assert_untouched();
}

#[test]
fn a_drain_that_cannot_see_its_descendants_still_ends() {
    // A PID namespace without its own /proc: ferrinit (not PID 1 there) cannot tell its
    // descendants from the host's processes, so it signals none, and must still end after the
    // grace period rather than wait forever for a straggler that ignores everything.
    let script = r#""$0" -s -t 200ms -- "$1" straggler stubborn 0; echo "ferrinit exited $?""#;
    let mut command = ferrinit_testkit::clean_command(
        "unshare",
        ["--pid", "--fork", "--kill-child", "sh", "-c", script],
    );
    command.arg(ferrinit_testkit::ferrinit()).arg(probe());
    let mut running = Running::start(command);
    running.close_stdin();
    running.expect_stdout("ferrinit exited 0");
    running.expect_stderr("cannot find them");
    running.finish();
}

/// The child leaves a straggler that reports TERM, INT, HUP, QUIT or USR1 (and exits on it) and
/// exits 7 itself. The drain sends SIGWINCH, which the straggler ignores: it is still there when
/// the test sends ferrinit more signals. Returns once the drain has begun.
fn draining_with_a_straggler(options: &[&str]) -> Running {
    let mut args = vec!["-v", "-t", "1h", "--drain-signal", "WINCH"];
    args.extend(options);
    args.extend(["--", probe_arg(), "straggler", "term", "7"]);
    let mut running = Running::start(as_pid1(args));
    running.expect_stdout("straggler ");
    running.close_stdin();
    running.expect_stderr("sending SIGWINCH to the processes left");
    running
}

#[test]
fn rewrite_applies_to_signals_received_during_the_drain() {
    let running = draining_with_a_straggler(&["-r", "USR1:QUIT"]);
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("straggler got SIGQUIT");
    let out = running.finish();
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}

#[test]
fn a_stop_signal_received_during_the_drain_does_not_freeze_what_is_exiting() {
    let running = draining_with_a_straggler(&[]);
    running.signal_init(libc::SIGTSTP);
    // Had SIGTSTP been passed on, the straggler would be stopped and never report this one.
    running.signal_init(libc::SIGUSR1);
    running.expect_stdout("straggler got SIGUSR1");
    let out = running.finish();
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}

#[test]
fn as_pid1_the_drain_waits_for_processes_that_joined_the_namespace() {
    // nsenter (like `docker exec`) puts a process into the namespace whose parent is outside:
    // no SIGCHLD tells ferrinit about it. It must still get the drain signal, and ferrinit must
    // wait for it to finish: its exit takes the namespace down, SIGKILLing whoever is left.
    let mut running = Running::start(as_pid1(["-t", "1h", "--", probe_arg(), "wait"]));
    running.expect_stdout("ready");
    let init = running.init_pid().to_string();
    let nsenter = ferrinit_testkit::tool("nsenter");
    let mut joined = Running::start(ferrinit_testkit::clean_command(
        nsenter,
        [
            "--target",
            &init,
            "--pid",
            "--",
            probe_arg(),
            "signals",
            "joined",
        ],
    ));
    joined.expect_stdout("joined ready");
    running.close_stdin();
    joined.expect_stdout("joined got SIGTERM");
    // Its "shutdown" ends when we say so; ferrinit must still be there to see it.
    joined.close_stdin();
    let joined = joined.finish();
    assert_eq!(
        joined.code(),
        0,
        "the joined process was killed: {:?}",
        joined.stdout
    );
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    assert!(
        out.stderr.is_empty(),
        "no SIGKILL was needed: {:?}",
        out.stderr
    );
}

/// `ferrinit -s -t 1h OPTIONS` over three stragglers that report TERM, with at most
/// `descriptors` descriptors once they are ready; the child exits 7. Returns ferrinit's stderr.
fn three_stragglers_get_term_with_descriptors(options: &[&str], descriptors: u64) -> Vec<String> {
    let script = r#"for i in 1 2 3; do "$0" straggler term 0; done; read -r line; exit 7"#;
    let mut args = vec!["-s", "-t", "1h"];
    args.extend(options);
    args.extend(["--", "sh", "-c", script, probe_arg()]);
    let mut running = Running::start(as_process(args));
    for _ in 0..3 {
        running.expect_stdout(" ready");
    }
    ferrinit_testkit::limit_descriptors_of(running.pid(), descriptors);
    running.close_stdin();
    for _ in 0..3 {
        running.expect_stdout("straggler got SIGTERM");
    }
    let out = running.finish();
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
    out.stderr
}

#[test]
fn the_drain_signals_every_descendant_with_a_single_descriptor_to_spare() {
    // ferrinit holds 0, 1 and 2 by now: a limit of 4 leaves it descriptor 3 alone.
    let stderr = three_stragglers_get_term_with_descriptors(&[], 4);
    assert!(stderr.is_empty(), "{stderr:?}");
}

#[test]
fn logging_keeps_no_descriptor_that_the_drain_needs() {
    // -v: lines are logged before and during the drain, through a descriptor of the log's own
    // on the stderr pipe; it must not be the one a limit of 4 leaves.
    let stderr = three_stragglers_get_term_with_descriptors(&["-v"], 4);
    assert!(!stderr.iter().any(|l| l.contains("warning")), "{stderr:?}");
}

#[test]
fn with_no_descriptor_to_spare_the_drain_still_signals_and_says_why() {
    // A limit of 3: not even /proc can be read. The stragglers are ferrinit's own children
    // (their parents have exited), which it finds and signals without a descriptor.
    let stderr = three_stragglers_get_term_with_descriptors(&[], 3);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].contains("cannot list /proc (EMFILE"),
        "never blamed on /proc: {stderr:?}"
    );
}

/// `ferrinit ARGS` where pidfd_open (434) fails with ENOSYS (38), as before Linux 5.3 or under
/// a seccomp profile without it.
fn as_process_without_pidfds(args: &[&str]) -> std::process::Command {
    let mut all = vec![
        "no-syscall",
        "434",
        "38",
        ferrinit_testkit::ferrinit().to_str().expect("utf-8 path"),
    ];
    all.extend(args);
    ferrinit_testkit::clean_command(probe(), all)
}

#[test]
fn without_pidfds_the_drain_still_gives_a_straggler_its_term() {
    let args = [
        "-s",
        "-t",
        "1h",
        "--",
        probe_arg(),
        "straggler",
        "term",
        "7",
    ];
    let mut running = Running::start(as_process_without_pidfds(&args));
    running.close_stdin();
    running.expect_stdout("straggler got SIGTERM");
    let out = running.finish();
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0].contains("cannot open pidfds"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn without_pidfds_a_straggler_that_ignores_term_is_still_killed() {
    let args = [
        "-s",
        "-t",
        "200ms",
        "--",
        probe_arg(),
        "straggler",
        "stubborn",
        "3",
    ];
    let mut running = Running::start(as_process_without_pidfds(&args));
    running.close_stdin();
    let straggler = straggler_pid(&running);
    let out = running.finish();
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
    assert!(
        out.stderr
            .iter()
            .any(|l| l.contains("grace period of 200ms is over")),
        "{:?}",
        out.stderr
    );
    assert!(
        !out.stderr.iter().any(|l| l.contains("still left")),
        "{:?}",
        out.stderr
    );
    assert!(!is_alive(straggler), "straggler {straggler} survived");
}

#[test]
fn without_pidfds_grandchildren_get_term_once_orphaned_to_ferrinit() {
    // `probe tree 2` dies of TERM, leaving its two children, which report TERM, to ferrinit.
    let script = r#""$0" tree 2 & read -r line; exit 7"#;
    let args = ["-s", "-t", "1h", "--", "sh", "-c", script, probe_arg()];
    let mut running = Running::start(as_process_without_pidfds(&args));
    running.expect_stdout("tree ready");
    running.close_stdin();
    running.expect_stdout("done");
    running.expect_stdout("done");
    let out = running.finish();
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}

#[test]
fn a_grace_period_alone_makes_ferrinit_a_subreaper_that_drains_orphans() {
    // No -s: the straggler's parent exits, and without a subreaper it would be re-parented far
    // away from ferrinit, and never drained.
    let args = ["-t", "1h", "--", probe_arg(), "straggler", "term", "7"];
    cooperating_straggler_gets_term_and_the_exit_status_is_the_childs(as_process(args));
}

#[test]
fn a_drain_without_proc_mounted_says_so() {
    // ferrinit is PID 2 of a namespace in which /proc is not mounted at all.
    let script = r#"umount -l /proc && { "$0" -t 200ms -- "$1" straggler stubborn 0; echo "ferrinit exited $?"; }"#;
    let mut command = ferrinit_testkit::clean_command(
        "unshare",
        [
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ],
    );
    command.arg(ferrinit_testkit::ferrinit()).arg(probe());
    let mut running = Running::start(command);
    running.close_stdin();
    running.expect_stdout("ferrinit exited 0");
    let warning = running.expect_stderr("/proc");
    assert!(warning.contains("/proc is not mounted"), "{warning}");
    running.finish();
}

#[test]
fn the_drain_asks_the_kernel_not_proc_whose_child_a_process_is() {
    // A descendant that may mount (root in ferrinit's mount namespace) makes /proc claim that
    // an outside process is its child. It must get no signal.
    let mut victim = Running::start(ferrinit_testkit::clean_command(
        probe(),
        ["signals", "victim"],
    ));
    victim.expect_stdout("victim ready");
    let script = r#"exec "$0" -s -t 200ms -- "$1" fake-parent "$2""#;
    let mut command = ferrinit_testkit::clean_command(
        "unshare",
        ["--mount", "--propagation", "private", "sh", "-c", script],
    );
    command
        .arg(ferrinit_testkit::ferrinit())
        .arg(probe())
        .arg(victim.pid().to_string());
    let mut running = Running::start(command);
    running.close_stdin();
    running.expect_stdout(&format!("faked {}", victim.pid()));
    let out = running.finish();
    assert!(
        out.stderr.iter().any(|l| l.contains("is over")),
        "the faker was drained: {:?}",
        out.stderr
    );
    // SAFETY: kill has no memory-safety preconditions; the victim is our child.
    assert_eq!(
        unsafe { libc::kill(victim.pid(), libc::SIGUSR1) },
        0,
        "the victim is gone"
    );
    assert_eq!(victim.expect_stdout("victim got"), "victim got SIGUSR1");
    victim.close_stdin();
    assert_eq!(victim.finish().code(), 0);
}

#[test]
fn the_drain_waits_without_holding_a_signalfd() {
    // A stubborn straggler keeps the drain waiting out its hour. Its waits have deadlines and
    // take signals with sigtimedwait: a signalfd opened there would take the one descriptor a
    // tight RLIMIT_NOFILE leaves the drain's /proc listing.
    let script = r#""$0" straggler stubborn 0; read -r line; exit 7"#;
    let mut running = Running::start(as_process([
        "-s",
        "-t",
        "1h",
        "--",
        "sh",
        "-c",
        script,
        probe_arg(),
    ]));
    let straggler = straggler_pid(&running);
    running.close_stdin();
    let init = running.pid();
    eventually("ferrinit waits out the grace period", || {
        waits_for_signals_with_timeout(init)
    });
    let signalfds: Vec<i32> = fds_of(init)
        .into_iter()
        .filter(|fd| {
            std::fs::read_link(format!("/proc/{init}/fd/{fd}"))
                .is_ok_and(|file| file.as_os_str() == "anon_inode:[signalfd]")
        })
        .collect();
    // SAFETY: kill has no memory-safety preconditions; the straggler is the probe's, and its
    // end lets the drain end.
    unsafe { libc::kill(straggler, libc::SIGKILL) };
    let out = running.finish();
    assert!(
        signalfds.is_empty(),
        "signalfds held while draining: {signalfds:?}"
    );
    assert_eq!(out.code(), 7, "{:?}", out.stderr);
}
