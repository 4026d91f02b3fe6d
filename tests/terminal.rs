//! On a terminal the child leads the foreground process group: Ctrl-C reaches it (and ferrinit
//! exits 130), and Ctrl-Z under an interactive shell gives the prompt back, with `fg` resuming.

use std::process::Command;

use ferrinit_testkit::{
    OnTerminal, as_pid1, as_process, clean_command, interactive_shell, probe, rtmin,
};

fn probe_arg() -> &'static str {
    probe().to_str().expect("utf-8 path")
}

#[test]
fn the_child_leads_the_terminals_foreground_group() {
    for command in [
        as_pid1(["--", probe_arg(), "state"]),
        as_process(["-s", "--", probe_arg(), "state"]),
    ] {
        child_leads_the_foreground_group(command);
    }
}

#[test]
fn the_child_leads_the_terminals_foreground_group_under_a_tight_descriptor_limit() {
    // RLIMIT_NOFILE 4 and 5: one or two descriptors beyond stdio, which ferrinit's own (the
    // OOM baseline's, left open until the spawn) must not keep from /dev/tty.
    for limit in [4, 5] {
        let mut command = as_process(["-s", "--", probe_arg(), "state"]);
        ferrinit_testkit::limit_descriptors(&mut command, limit);
        child_leads_the_foreground_group(command);
    }
}

fn child_leads_the_foreground_group(command: Command) {
    let terminal = OnTerminal::start(command);
    terminal.expect("pid ");
    let line = format!("pid {}", terminal.expect("\n"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (pid, pgid, tpgid) = (fields[1], fields[5], fields[9]);
    assert_eq!(pgid, pid, "its own group: {line}");
    assert_eq!(tpgid, pgid, "the foreground group: {line}");
    assert!(terminal.finish().success());
}

#[test]
fn ctrl_c_reaches_the_child_and_gives_130() {
    for command in [
        as_pid1(["--", probe_arg(), "tty-read"]),
        as_process(["-s", "--", probe_arg(), "tty-read"]),
    ] {
        let mut terminal = OnTerminal::start(command);
        terminal.expect("ready");
        terminal.type_text("\x03");
        assert_eq!(terminal.finish().code(), Some(130));
    }
}

#[test]
fn the_child_reads_the_terminal_as_pid1() {
    let mut terminal = OnTerminal::start(as_pid1(["--", probe_arg(), "tty-read"]));
    terminal.expect("ready");
    terminal.type_text("typed at the terminal\n");
    terminal.expect("read typed at the terminal");
    assert!(terminal.finish().success());
}

#[test]
fn a_failed_exec_in_the_background_under_tostop_says_why_and_exits_127() {
    // The child's line about its failed exec is ferrinit's own: a background job under
    // `stty tostop` must not be stopped for it (as the command would be for its output).
    let mut shell = interactive_shell();
    shell.type_text("stty tostop; \"$F\" -s -- /no/such/command & wait $!; echo \"status=$?\"\n");
    // The typed line echoes "status=$?" first: the answer is the next "status=".
    shell.expect("status=");
    let seen = shell.expect("status=");
    let answer = shell.expect("\n");
    assert!(seen.contains("cannot run '/no/such/command'"), "{seen:?}");
    assert_eq!(answer.trim(), "127", "{seen:?}");
}

#[test]
fn ctrl_z_gives_the_shell_its_prompt_back_and_fg_resumes_the_child() {
    let mut shell = interactive_shell();
    shell.type_text("\"$F\" -s -- \"$P\" tty-read\n");
    shell.expect("ready");
    shell.type_text("\x1a");
    shell.expect("Stopped");
    shell.expect("PROMPT> ");
    shell.type_text("jobs; echo jobs-$((1 + 1))\n");
    shell.expect("jobs-2");
    shell.type_text("fg\n");
    // Resumed in the foreground: the child reads the terminal again.
    shell.type_text("after fg\n");
    shell.expect("read after fg");
    shell.type_text("echo status=$?\n");
    shell.expect("status=0");
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn ctrl_c_from_an_interactive_shell_ends_the_child_and_the_shell_gets_the_terminal_back() {
    let mut shell = interactive_shell();
    shell.type_text("\"$F\" -s -- \"$P\" tty-read\n");
    shell.expect("ready");
    shell.type_text("\x03");
    shell.expect("PROMPT> ");
    shell.type_text("echo status=$?\n");
    shell.expect("status=130");
    // The shell can read the terminal again: ferrinit gave the foreground back.
    shell.type_text("read -r line; echo got=$line\n");
    shell.type_text("still mine\n");
    shell.expect("got=still mine");
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn a_background_ferrinit_leaves_the_terminal_to_the_shell() {
    let mut shell = interactive_shell();
    // Started with `&`, not in the foreground: the terminal must stay the shell's. The probe's
    // stdin is a pipe that ends when `sleep` does.
    shell.type_text("sleep infinity | \"$F\" -s -- \"$P\" signals bg &\n");
    shell.expect("bg ready");
    shell.type_text("read -r line; echo got=$line\n");
    shell.type_text("typed\n");
    shell.expect("got=typed");
    shell.type_text(&format!("kill -{} $!\n", rtmin(3)));
    shell.expect("bg got SIGRTMIN+3");
    shell.type_text("kill %1; wait; echo waited=$?\n");
    shell.expect("waited=0");
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

/// Ctrl-Z where no job-control shell would continue ferrinit: only the child stops; ferrinit
/// stays up, and a SIGCONT sent to it resumes the child.
fn ctrl_z_stops_only_the_child(mut terminal: OnTerminal, ferrinit: i32) {
    let child = ferrinit_testkit::children_of(ferrinit)[0];
    terminal.type_text("\x1a");
    let state = ferrinit_testkit::process_state;
    ferrinit_testkit::eventually("the child is stopped", || {
        state(child).as_deref() == Some("T")
    });
    // Asleep, or briefly running the SIGCHLD of the stop: anything but stopped.
    assert_ne!(
        state(ferrinit).as_deref(),
        Some("T"),
        "ferrinit itself is stopped"
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our ferrinit.
    assert_eq!(unsafe { libc::kill(ferrinit, libc::SIGCONT) }, 0);
    terminal.type_text("resumed\n");
    terminal.expect("read resumed");
    assert!(terminal.finish().success());
}

#[test]
fn ctrl_z_as_pid1_stops_the_child_and_a_forwarded_cont_resumes_it() {
    // docker run -it: there is no shell to give the terminal back to, so ferrinit stays up and
    // the child stays stopped until a SIGCONT comes (docker kill -s CONT, or the runtime).
    let terminal = OnTerminal::start(as_pid1(["--", probe_arg(), "tty-read"]));
    terminal.expect("ready");
    let ferrinit = ferrinit_testkit::children_of(terminal.pid())[0];
    ctrl_z_stops_only_the_child(terminal, ferrinit);
}

#[test]
fn ctrl_z_without_a_job_control_shell_never_stops_ferrinit() {
    // ferrinit leads the session (as under `ssh -t host ferrinit ...` or `docker exec -it`):
    // nobody would continue a stopped ferrinit, so only the child stops.
    let terminal = OnTerminal::start(as_process(["-s", "--", probe_arg(), "tty-read"]));
    terminal.expect("ready");
    let ferrinit = terminal.pid();
    ctrl_z_stops_only_the_child(terminal, ferrinit);
}

/// `command` on the terminal with stdin from /dev/null, as in `ferrinit -- ssh host </dev/null`:
/// the terminal is still the controlling one, and programs open /dev/tty to prompt on it.
fn with_stdin_from_dev_null(command: Command) -> Command {
    let mut wrapped = clean_command("sh", ["-c", r#"exec "$@" </dev/null"#, "sh"]);
    wrapped.arg(command.get_program()).args(command.get_args());
    wrapped
}

#[test]
fn a_child_prompting_on_dev_tty_gets_the_terminal_whatever_stdin_is() {
    for command in [
        as_pid1(["--", probe_arg(), "tty-prompt"]),
        as_process(["-s", "--", probe_arg(), "tty-prompt"]),
    ] {
        let mut terminal = OnTerminal::start(with_stdin_from_dev_null(command));
        terminal.expect("ready");
        terminal.type_text("secret\n");
        terminal.expect("read secret");
        assert!(terminal.finish().success());
    }
}

#[test]
fn ctrl_c_reaches_a_child_prompting_on_dev_tty_whatever_stdin_is() {
    let command = as_process(["-s", "--", probe_arg(), "tty-prompt"]);
    let mut terminal = OnTerminal::start(with_stdin_from_dev_null(command));
    terminal.expect("ready");
    terminal.type_text("\x03");
    assert_eq!(terminal.finish().code(), Some(130));
}

#[test]
fn the_child_inherits_no_descriptor_of_ferrinits_terminal() {
    for command in [
        as_pid1(["--", probe_arg(), "state"]),
        as_process(["-s", "--", probe_arg(), "state"]),
    ] {
        let terminal = OnTerminal::start(with_stdin_from_dev_null(command));
        terminal.expect("fds ");
        assert_eq!(terminal.expect("\n").trim(), "0 1 2");
        assert!(terminal.finish().success());
    }
}

#[test]
fn a_child_stopped_by_sigttin_while_ferrinit_holds_the_terminal_gets_it_back() {
    // The child hands the foreground to ferrinit's group, then reads the terminal: SIGTTIN stops
    // it, and ferrinit, holding the foreground, gives it back and continues the child.
    let mut terminal = OnTerminal::start(as_process(["-s", "--", probe_arg(), "tty-yield"]));
    terminal.expect("yielded");
    terminal.type_text("back\n");
    terminal.expect("read back");
    assert!(terminal.finish().success());
}

#[test]
fn fg_gives_the_terminal_to_the_child_of_a_ferrinit_started_in_the_background() {
    let mut shell = interactive_shell();
    // The child reads the terminal from the background: SIGTTIN stops it, and ferrinit stops
    // too, so that the shell sees the job stopped (as it would see `cat &`), and `wait` returns.
    shell.type_text("\"$F\" -s -- \"$P\" tty-read & wait %1; echo waited=$?\n");
    shell.expect("ready");
    shell.expect("waited=147");
    shell.expect("PROMPT> ");
    shell.type_text("fg\n");
    shell.type_text("typed\n");
    shell.expect("read typed");
    shell.type_text("echo status=$?\n");
    shell.expect("status=0");
    shell.type_text("exit\n");
    assert!(shell.finish().success());
}

#[test]
fn after_a_stream_of_queued_signals_a_child_stopped_by_sigttin_still_gets_the_terminal_under_rlimit_nofile_5()
 {
    // ferrinit opens /dev/tty for each use, between its waits: RLIMIT_NOFILE 5 leaves two
    // descriptors beyond stdio, and a stream of one queued signal, taken many at a time, must
    // not leave both to ferrinit's signalfds. `-r RTMIN:0`: the stream is ferrinit's alone.
    let rtmin = rtmin(0);
    let drop_rtmin = format!("{rtmin}:0");
    let script = r#"echo waiting; read -r go; exec "$0" tty-yield"#;
    let mut command = as_process(["-r", &drop_rtmin, "--", "sh", "-c", script, probe_arg()]);
    ferrinit_testkit::limit_descriptors(&mut command, 5);
    let mut terminal = OnTerminal::start(command);
    terminal.expect("waiting");
    let init = terminal.pid();
    let signal = |sig| {
        // SAFETY: kill has no memory-safety preconditions; `init` is our ferrinit.
        assert_eq!(unsafe { libc::kill(init, sig) }, 0);
    };
    // Stopped, ferrinit finds the whole stream pending when it goes on.
    signal(libc::SIGSTOP);
    ferrinit_testkit::eventually("ferrinit stopped", || {
        ferrinit_testkit::process_state(init).as_deref() == Some("T")
    });
    for n in 0..200 {
        ferrinit_testkit::sigqueue(init, rtmin, n);
    }
    signal(libc::SIGCONT);
    ferrinit_testkit::eventually("the stream taken, and waiting again", || {
        ferrinit_testkit::status_field(init, "ShdPnd").as_deref() == Some("0000000000000000")
            && ferrinit_testkit::waits_for_signals_without_timeout(init)
    });
    // The child hands the foreground to ferrinit's group and reads: SIGTTIN stops it, and
    // ferrinit gives the terminal back and continues it.
    terminal.type_text("go\n");
    terminal.expect("yielded");
    terminal.type_text("back\n");
    terminal.expect("read back");
    assert!(terminal.finish().success());
}
