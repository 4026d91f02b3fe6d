//! ferrinit under real container runtimes: runc, crun, podman (image entrypoint and --init-path)
//! and bubblewrap, with images built from the repository's Dockerfile (see testkit::containers).
//! A runtime that is missing fails the test, naming its Debian package, unless FERRINIT_TEST_SKIP
//! names it (see testkit::require).

use std::process::Command;

use ferrinit_testkit::containers::{Bundle, Runtime, images};
use ferrinit_testkit::{
    Running, clean_command, ferrinit, probe, require, require_root, run, stall_timeout,
};

/// Runtimes need root here (no rootless setup on these machines), and the tool itself. The
/// images for every runtime but bwrap are built by podman, whose configuration here runs runc.
fn runtime_available(program: &str) -> bool {
    let images_need: &[&str] = match program {
        "bwrap" => &[],
        _ => &["podman", "runc"],
    };
    require_root("container runtimes run as root here")
        && require(program)
        && images_need.iter().all(|tool| require(tool))
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// --- the Dockerfile ------------------------------------------------------------------------

#[test]
fn the_dockerfile_ships_ferrinit_alone_with_the_documented_entrypoint() {
    if !runtime_available("podman") {
        return;
    }
    let images = images();
    assert_eq!(images.entrypoint, ["/ferrinit", "--"]);
    let files = images
        .podman()
        .args([
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            &images.shipped,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&files.stdout).trim(),
        "1",
        "FROM scratch plus one COPY"
    );
    // The runc/crun bundles run exactly that entrypoint.
    let config = std::fs::read_to_string(
        Bundle::new("layout", &["/bin/true"])
            .dir
            .join("config.json"),
    )
    .unwrap();
    assert!(
        config.contains(r#""args":["/ferrinit","--","/bin/true"]"#),
        "{config}"
    );
    assert!(images.rootfs.join("ferrinit").is_file());
}

// --- runc and crun -------------------------------------------------------------------------

fn exit_codes_come_back(runtime: Runtime) {
    for (command, code) in [
        (&["/bin/sh", "-c", "exit 42"][..], 42),
        (&["/probe", "exit", "0"], 0),
        (&["/probe", "die", "15"], 143),
        (&["/probe", "die", "9"], 137),
    ] {
        let bundle = Bundle::new(&format!("exit-{code}"), command);
        let out = run(bundle.run(runtime));
        assert_eq!(
            out.code(),
            code,
            "{runtime:?} {command:?}: {:?}",
            out.stderr
        );
    }
}

fn kill_reaches_the_child_through_ferrinit(runtime: Runtime) {
    let bundle = Bundle::new("kill", &["/probe", "signals"]);
    let mut running = Running::start(bundle.run(runtime));
    running.expect_stdout("probe ready");
    for (sig, name) in [("USR1", "SIGUSR1"), ("HUP", "SIGHUP"), ("TERM", "SIGTERM")] {
        let kill = bundle.control(runtime, &["kill", &bundle.id, sig]);
        assert!(
            kill.status.success(),
            "{runtime:?} kill: {}",
            output_text(&kill)
        );
        running.expect_stdout(&format!("probe got {name}"));
    }
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

fn orphans_inside_are_reaped(runtime: Runtime) {
    // The entrypoint is `/ferrinit --`; -w goes through the environment instead.
    let bundle = Bundle::new("orphans", &["/probe", "orphans", "25"]);
    let mut command = bundle.run(runtime);
    command.env("FERRINIT_VERBOSITY", "1");
    let mut running = Running::start(command);
    running.expect_stdout("orphans-exited 25");
    let ps = bundle.control(
        runtime,
        &["exec", &bundle.id, "/bin/ps", "-o", "pid,stat,comm"],
    );
    assert!(
        ps.status.success(),
        "{runtime:?} exec ps: {}",
        output_text(&ps)
    );
    let table = String::from_utf8_lossy(&ps.stdout).into_owned();
    let zombies: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with('Z'))
        })
        .collect();
    assert!(zombies.is_empty(), "{runtime:?}: zombies left:\n{table}");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn runc_exit_codes_come_back() {
    if runtime_available("runc") {
        exit_codes_come_back(Runtime::Runc);
    }
}

#[test]
fn runc_kill_reaches_the_child_through_ferrinit() {
    if runtime_available("runc") {
        kill_reaches_the_child_through_ferrinit(Runtime::Runc);
    }
}

#[test]
fn runc_orphans_inside_are_reaped() {
    if runtime_available("runc") {
        orphans_inside_are_reaped(Runtime::Runc);
    }
}

#[test]
fn crun_exit_codes_come_back() {
    if runtime_available("crun") {
        exit_codes_come_back(Runtime::Crun);
    }
}

#[test]
fn crun_kill_reaches_the_child_through_ferrinit() {
    if runtime_available("crun") {
        kill_reaches_the_child_through_ferrinit(Runtime::Crun);
    }
}

#[test]
fn crun_orphans_inside_are_reaped() {
    if runtime_available("crun") {
        orphans_inside_are_reaped(Runtime::Crun);
    }
}

// --- podman --------------------------------------------------------------------------------

fn container_name(test: &str) -> String {
    format!("ferrinit-{test}-{}", std::process::id())
}

#[test]
fn podman_run_returns_the_childs_exit_code() {
    if !runtime_available("podman") {
        return;
    }
    let images = images();
    for (command, code) in [
        (&["/bin/sh", "-c", "exit 3"][..], 3),
        (&["/probe", "die", "10"], 138),
        (&["/no/such/program"], 127),
    ] {
        let mut podman = images.podman();
        podman
            .args(["run", "--rm", "--network", "none", &images.test])
            .args(command);
        let out = run(podman);
        assert_eq!(out.code(), code, "{command:?}: {:?}", out.stderr);
    }
}

/// `podman stop` sends SIGTERM, then SIGKILL after the timeout. Returns the container's exit code.
fn stop_code(through_ferrinit: bool, name: &str) -> i32 {
    let images = images();
    let mut podman = images.podman();
    podman.args(["run", "--detach", "--network", "none", "--name", name]);
    if through_ferrinit {
        podman.args([&images.test, "/bin/sh", "-c", "sleep 1000"]);
    } else {
        // A shell as PID 1 drops SIGTERM: it installs no handler for it.
        podman.args(["--entrypoint", "/bin/sh", &images.test, "-c", "sleep 1000"]);
    }
    assert!(run(podman).status.success());
    // Through ferrinit the container ends as soon as the TERM arrives, so its timeout may be as
    // long as a stall: only a TERM that never arrives lets podman's SIGKILL win. The shell alone
    // never ends on TERM, so 2 s only makes that case quick.
    let timeout = if through_ferrinit {
        stall_timeout().as_secs()
    } else {
        2
    };
    let stop = images
        .podman()
        .args(["stop", "--time", &timeout.to_string(), name])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", output_text(&stop));
    let inspect = images
        .podman()
        .args(["inspect", "--format", "{{.State.ExitCode}}", name])
        .output()
        .unwrap();
    let _ = images.podman().args(["rm", "--force", name]).output();
    String::from_utf8_lossy(&inspect.stdout)
        .trim()
        .parse()
        .expect("exit code")
}

#[test]
fn podman_stop_ends_a_shell_entrypoint_with_sigterm_not_sigkill() {
    if !runtime_available("podman") {
        return;
    }
    // Under ferrinit the shell gets the TERM and dies of it: 143, no SIGKILL needed.
    assert_eq!(stop_code(true, &container_name("stop")), 143);
    // The same shell as PID 1 ignores TERM, and podman has to SIGKILL it after the timeout.
    assert_eq!(stop_code(false, &container_name("stop-no-init")), 137);
}

#[test]
fn podman_kill_reaches_the_child() {
    if !runtime_available("podman") {
        return;
    }
    let images = images();
    let name = container_name("kill");
    let mut podman = images.podman();
    podman.args([
        "run",
        "--rm",
        "--interactive",
        "--network",
        "none",
        "--name",
        &name,
        &images.test,
        "/probe",
        "signals",
    ]);
    let mut running = Running::start(podman);
    running.expect_stdout("probe ready");
    for (sig, name_of_sig) in [("USR1", "SIGUSR1"), ("RTMIN+3", "SIGRTMIN+3")] {
        let kill = images
            .podman()
            .args(["kill", "--signal", sig, &name])
            .output()
            .unwrap();
        assert!(kill.status.success(), "{}", output_text(&kill));
        running.expect_stdout(&format!("probe got {name_of_sig}"));
    }
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn podman_init_path_runs_ferrinit_in_place_of_catatonit() {
    if !runtime_available("podman") {
        return;
    }
    let images = images();
    let name = container_name("init-path");
    let mut podman = images.podman();
    podman
        .args([
            "run",
            "--rm",
            "--interactive",
            "--network",
            "none",
            "--name",
            &name,
            "--init",
            "--init-path",
        ])
        .arg(ferrinit())
        .args([&images.bare, "/probe", "signals"]);
    let mut running = Running::start(podman);
    running.expect_stdout("probe ready");
    let cmdline = images
        .podman()
        .args(["exec", &name, "/bin/cat", "/proc/1/cmdline"])
        .output()
        .unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline.stdout).replace('\0', " ");
    assert!(
        cmdline.starts_with("/run/podman-init -- /probe signals"),
        "PID 1 is {cmdline:?}"
    );
    let kill = images
        .podman()
        .args(["kill", "--signal", "HUP", &name])
        .output()
        .unwrap();
    assert!(kill.status.success(), "{}", output_text(&kill));
    running.expect_stdout("probe got SIGHUP");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn not_pid1_under_podman_init_ferrinit_warns_and_s_makes_it_reap() {
    if !runtime_available("podman") {
        return;
    }
    let images = images();
    let podman = |ferrinit_args: &[&str]| {
        let mut podman = images.podman();
        podman
            .args([
                "run",
                "--rm",
                "--interactive",
                "--network",
                "none",
                "--init",
                &images.bare,
                "/ferrinit",
            ])
            .args(ferrinit_args)
            .args(["--", "/probe", "orphans", "10"]);
        podman
    };
    // catatonit is PID 1 and ferrinit a later one: it cannot reap the orphans, and says so.
    let mut running = Running::start(podman(&[]));
    running.expect_stderr("not running as PID 1");
    running.expect_stdout("orphans-exited 10");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
    // With -s the orphans come to ferrinit.
    let mut running = Running::start(podman(&["-s", "-w"]));
    running.expect_stdout("orphans-exited 10");
    running.stderr_count("reaped zombie process", 10);
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0);
    assert!(
        out.stderr.is_empty(),
        "no warning with -s: {:?}",
        out.stderr
    );
}

// --- bubblewrap ----------------------------------------------------------------------------

fn bwrap(as_pid1: bool, ferrinit_args: &[&str], command: &[&str]) -> Command {
    let mut args = vec!["--unshare-pid"];
    if as_pid1 {
        args.push("--as-pid-1");
    }
    args.extend([
        "--die-with-parent",
        "--dev-bind",
        "/",
        "/",
        "--proc",
        "/proc",
    ]);
    let mut bwrap = clean_command("bwrap", args);
    bwrap
        .arg(ferrinit())
        .args(ferrinit_args)
        .arg("--")
        .arg(probe())
        .args(command);
    bwrap
}

#[test]
fn bwrap_as_pid1_exit_codes_forwarding_and_reaping() {
    if !runtime_available("bwrap") {
        return;
    }
    assert_eq!(run(bwrap(true, &[], &["exit", "9"])).code(), 9);
    assert_eq!(run(bwrap(true, &[], &["die", "2"])).code(), 130);

    // bwrap forwards nothing: signal ferrinit directly.
    let mut running = Running::start(bwrap(true, &[], &["signals"]));
    running.expect_stdout("probe ready");
    running.signal_init(libc::SIGUSR2);
    running.expect_stdout("probe got SIGUSR2");
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);

    let mut running = Running::start(bwrap(true, &["-w"], &["orphans", "20"]));
    running.expect_stdout("orphans-exited 20");
    running.stderr_count("reaped zombie process", 20);
    running.close_stdin();
    assert_eq!(running.finish().code(), 0);
}

#[test]
fn bwrap_without_as_pid1_ferrinit_is_pid2_warns_and_s_makes_it_reap() {
    if !runtime_available("bwrap") {
        return;
    }
    let out = run(bwrap(false, &[], &["exit", "0"]));
    assert_eq!(out.code(), 0);
    assert!(
        out.stderr
            .iter()
            .any(|l| l.contains("not running as PID 1 (pid 2)")),
        "{:?}",
        out.stderr
    );

    let mut running = Running::start(bwrap(false, &["-s", "-w"], &["orphans", "20"]));
    running.expect_stdout("orphans-exited 20");
    running.stderr_count("reaped zombie process", 20);
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
}
