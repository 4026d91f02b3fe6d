//! Start-up bounds of issue #12, counted under strace and callgrind, never timed: ferrinit and
//! its child make no more system calls than tini-static's before the command runs, the child
//! makes none that glibc's fork or a shared mapping would add, and ferrinit runs at most 1.15
//! times tini-static's instructions under `env -i`.

use std::collections::HashMap;
use std::path::Path;

use ferrinit_testkit::{
    Running, clean_command, ferrinit, init_as_pid1, probe, require, run, run_with_closed_stdio,
    scratch_dir, tool,
};

/// The system calls of `INIT -- /bin/true` as PID 1 of a new PID namespace, from strace -f: the
/// init's own after its execve (glibc's start-up included), and its child's up to and including
/// its execve of /bin/true. Each as the names of the calls, in order.
struct StartUp {
    init: Vec<String>,
    child: Vec<String>,
    trace: String,
}

fn start_up(init: &Path, name: &str) -> StartUp {
    let trace_file = scratch_dir(&format!("startup-trace-{name}")).join("trace");
    let inner = init_as_pid1(init, ["--", "/bin/true"]);
    let mut command = clean_command(
        tool("strace"),
        [
            "-f".as_ref(),
            "-qq".as_ref(),
            "-o".as_ref(),
            trace_file.as_os_str(),
        ],
    );
    command.arg(inner.get_program()).args(inner.get_args());
    let out = run(command);
    assert_eq!(out.code(), 0, "{name}: {:?}", out.stderr);
    let trace = std::fs::read_to_string(&trace_file).expect("strace's output");
    // "PID call(args) = result": a call strace had to split ("<unfinished ...>", then
    // "<... call resumed>") is counted at its first line; signals ("---") are no calls.
    let mut calls: HashMap<i32, Vec<(String, String)>> = HashMap::new();
    let mut order = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("<...") || rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let Some((call, _)) = rest.split_once('(') else {
            continue;
        };
        if !calls.contains_key(&pid) {
            order.push(pid);
        }
        calls
            .entry(pid)
            .or_default()
            .push((call.to_owned(), rest.to_owned()));
    }
    let init_path = format!("execve(\"{}\"", init.display());
    let init_pid = *order
        .iter()
        .find(|pid| calls[pid].iter().any(|(_, l)| l.starts_with(&init_path)))
        .unwrap_or_else(|| panic!("{name}: no execve of the init:\n{trace}"));
    let child_pid = *order
        .iter()
        .find(|&&pid| {
            pid != init_pid
                && calls[&pid]
                    .iter()
                    .any(|(_, l)| l.starts_with("execve(\"/bin/true\""))
        })
        .unwrap_or_else(|| panic!("{name}: no execve of /bin/true:\n{trace}"));
    let names = |calls: &[(String, String)]| calls.iter().map(|(c, _)| c.clone()).collect();
    let init_calls = &calls[&init_pid];
    let exec = init_calls
        .iter()
        .position(|(_, l)| l.starts_with(&init_path))
        .unwrap();
    let child_calls = &calls[&child_pid];
    let exec_of_true = child_calls
        .iter()
        .position(|(_, l)| l.starts_with("execve(\"/bin/true\""))
        .unwrap();
    StartUp {
        init: names(&init_calls[exec + 1..]),
        child: names(&child_calls[..=exec_of_true]),
        trace,
    }
}

#[test]
fn start_up_makes_no_more_system_calls_than_tini() {
    if !require("strace") || !require("tini-static") {
        return;
    }
    let ours = start_up(ferrinit(), "ferrinit");
    let tini = start_up(&tool("tini-static"), "tini-static");
    let count = |s: &StartUp| s.init.len() + s.child.len();
    assert!(
        count(&ours) <= count(&tini),
        "ferrinit {} ({:?} + {:?}), tini-static {} ({:?} + {:?})",
        count(&ours),
        ours.init,
        ours.child,
        count(&tini),
        tini.init,
        tini.child
    );
}

#[test]
fn the_child_makes_only_its_own_calls_before_exec_and_nothing_is_shared_with_it() {
    if !require("strace") {
        return;
    }
    let ours = start_up(ferrinit(), "ferrinit-child");
    // Its own group, the signal mask it inherited, the exec: no robust list (glibc's fork), no
    // mapping. (With stdin not a terminal, and SIGCHLD not ignored, as here.)
    assert_eq!(
        ours.child,
        ["setpgid", "rt_sigprocmask", "execve"],
        "{}",
        ours.trace
    );
    // No memory shared with the child for its exec's outcome, and no look at the parent
    // without -p.
    for call in ["mmap", "getppid"] {
        assert!(
            !ours.init.iter().any(|c| c == call),
            "{call} in {:?}",
            ours.init
        );
    }
}

#[test]
fn a_failed_exec_exits_127_even_when_nobody_reads_stderr() {
    // The child says why its exec failed and exits 127: a write to a pipe nobody reads must not
    // kill it with SIGPIPE instead (which would make ferrinit exit 141).
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let mut command = ferrinit_testkit::as_process(["-s", "--", "/no/such/command"]);
    command.stderr(std::process::Stdio::from(write));
    let status = command.status().expect("run ferrinit");
    assert_eq!(status.code(), Some(127), "{status:?}");
}

#[test]
fn closed_stdio_stays_closed_with_an_exit_report_and_the_report_is_whole() {
    // ferrinit's first descriptor fills the gaps: the report, opened after it, never lands on
    // 0, 1 or 2 (where a log line would go into it, or the child would get it).
    let dir = scratch_dir("closed-stdio-report");
    for closed in [&[0][..], &[1], &[2], &[0, 1, 2]] {
        let state = dir.join(format!("state-{closed:?}"));
        let report = dir.join(format!("report-{closed:?}"));
        let mut command = ferrinit_testkit::as_process([
            "-s".as_ref(),
            "-vvv".as_ref(),
            "--exit-report".as_ref(),
            report.as_os_str(),
            "--".as_ref(),
            probe().as_os_str(),
            "state-file".as_ref(),
            state.as_os_str(),
        ]);
        // The log (-vvv) says a lot: none of it may reach the report.
        command.stderr(std::process::Stdio::null());
        run_with_closed_stdio(command, closed, &state);
        let report = std::fs::read_to_string(&report).unwrap();
        assert!(
            report.starts_with("{\"code\":0,") && report.lines().count() == 1,
            "closed {closed:?}: {report:?}"
        );
    }
}

#[test]
fn the_parent_is_read_before_signals_are_blocked_when_p_is_given() {
    if !require("strace") {
        return;
    }
    let trace = scratch_dir("startup-pdeathsig").join("trace");
    let mut command = clean_command(
        tool("strace"),
        ["-qq".as_ref(), "-o".as_ref(), trace.as_os_str()],
    );
    command
        .arg(ferrinit())
        .args(["-s", "-p", "KILL", "--", "/bin/true"]);
    let running = Running::start(command);
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    let trace = std::fs::read_to_string(&trace).expect("strace's output");
    let at = |call: &str| {
        trace
            .lines()
            .position(|l| l.starts_with(call))
            .unwrap_or_else(|| panic!("no {call} in:\n{trace}"))
    };
    assert!(at("getppid(") < at("rt_sigprocmask("), "{trace}");
}

/// Instructions of `INIT -- /bin/true` as PID 1 under `env -i`, the init alone (callgrind, the
/// child not traced): exact, whatever the machine is doing.
fn instructions(init: &Path, name: &str) -> u64 {
    let valgrind = tool("valgrind");
    let mut command = init_as_pid1(
        &valgrind,
        [
            "--tool=callgrind".as_ref(),
            "--callgrind-out-file=/dev/null".as_ref(),
            "--trace-children=no".as_ref(),
            init.as_os_str(),
            "--".as_ref(),
            "/bin/true".as_ref(),
        ],
    );
    command.env_clear();
    let out = run(command);
    assert_eq!(out.code(), 0, "{name}: {:?}", out.stderr);
    out.stderr
        .iter()
        .find_map(|line| line.split("Collected :").nth(1)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}: no count from callgrind: {:?}", out.stderr))
}

#[test]
fn start_up_runs_at_most_115_percent_of_tinis_instructions_under_env_i() {
    if !require("valgrind") || !require("tini-static") {
        return;
    }
    let ours = instructions(ferrinit(), "ferrinit");
    let tini = instructions(&tool("tini-static"), "tini-static");
    assert!(
        ours * 100 <= tini * 115,
        "ferrinit {ours} instructions, tini-static {tini}: {:.2}x",
        ours as f64 / tini as f64
    );
}
