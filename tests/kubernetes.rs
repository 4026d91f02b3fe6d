//! The Kubernetes manifests in examples/kubernetes, run for real with `podman kube play`, as
//! written: the images they name are built here from the Containerfiles next to them, with the
//! repository's Dockerfile image and the host's busybox standing in for registry images.
//!
//! podman on these machines is 4.3: its `kube down` SIGKILLs at once (podman #22397, fixed in
//! 5.1), so SIGTERM is delivered by `podman pod stop`, which waits the container's stop timeout
//! (10 s: 4.3 ignores terminationGracePeriodSeconds), and `kube down` only cleans up.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ferrinit_testkit::containers::{images, podman_ok};
use ferrinit_testkit::{
    Running, eventually, require, require_root, scratch_dir, stall_timeout, workspace_root,
};

/// Tags the manifests name (in this test binary's private podman storage).
const EXAMPLE_IMAGE: &str = "localhost/ferrinit-example:latest";
const PAUSE_IMAGE: &str = "localhost/ferrinit-pause:latest";

fn examples() -> PathBuf {
    workspace_root().join("examples/kubernetes")
}

/// podman (and catatonit, from which podman 4 builds its default pause image), as root: missing,
/// they fail the test naming their package, unless FERRINIT_TEST_SKIP opts out.
fn podman_usable() -> bool {
    require_root("podman runs as root here") && require("podman") && require("catatonit")
}

/// `podman ARGS` in the test kit's private storage, to completion; stdout on success.
fn podman(args: &[&str]) -> String {
    podman_ok(images().podman(), args)
}

/// Builds the images the manifests name, once, from examples/kubernetes/Containerfile*.
fn example_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let images = images();
        let context = examples();
        let context = context.to_str().expect("utf-8");
        // The test kit's bare image holds busybox (and ferrinit, replaced by the COPY).
        podman(&[
            "build",
            "--quiet",
            "--build-arg",
            &format!("FERRINIT={}", images.shipped),
            "--build-arg",
            &format!("BUSYBOX={}", images.bare),
            "--tag",
            EXAMPLE_IMAGE,
            context,
        ]);
        podman(&[
            "build",
            "--quiet",
            "--build-arg",
            &format!("FERRINIT={}", images.shipped),
            "--file",
            &format!("{context}/Containerfile.pause"),
            "--tag",
            PAUSE_IMAGE,
            context,
        ]);
    });
}

/// A pod played from one of the example manifests (`kube down` when dropped), or made by hand
/// (`pod rm` when dropped).
struct Pod {
    manifest: Option<PathBuf>,
    name: &'static str,
    /// Another containers.conf (for the pause infra image), or the test kit's.
    conf: Option<PathBuf>,
}

impl Pod {
    fn play(file: &str, name: &'static str, conf: Option<PathBuf>) -> Pod {
        example_images();
        let manifest = examples().join(file);
        let pod = Pod {
            manifest: Some(manifest.clone()),
            name,
            conf,
        };
        pod.remove_leftover();
        pod.run(&[
            "kube",
            "play",
            "--network",
            "none",
            manifest.to_str().expect("utf-8"),
        ]);
        pod
    }

    /// A pod of the same name left by a test process that died half-way.
    fn remove_leftover(&self) {
        let _ = self
            .command()
            .args(["pod", "rm", "--force", self.name])
            .stdin(Stdio::null())
            .output();
    }

    fn command(&self) -> Command {
        let mut command = images().podman();
        if let Some(conf) = &self.conf {
            command.env("CONTAINERS_CONF", conf);
        }
        command
    }

    fn run(&self, args: &[&str]) -> String {
        podman_ok(self.command(), args)
    }

    /// Kubernetes names a pod's container POD-CONTAINER.
    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    fn infra(&self) -> String {
        self.run(&[
            "pod",
            "inspect",
            self.name,
            "--format",
            "{{.InfraContainerID}}",
        ])
        .trim()
        .to_owned()
    }

    /// `podman logs --follow`: the container's stdout and stderr as lines, as they come.
    fn follow_logs(&self, container: &str) -> Running {
        let mut command = self.command();
        command.args(["logs", "--follow", &self.container(container)]);
        Running::start(command)
    }

    /// `ps` inside the container: (pid, ppid, stat, args) rows.
    fn ps(&self, container: &str) -> Vec<(i32, i32, String, String)> {
        let table = self.run(&[
            "exec",
            &self.container(container),
            "ps",
            "-o",
            "pid,ppid,stat,args",
        ]);
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let pid = fields.next()?.parse().ok()?;
                let ppid = fields.next()?.parse().ok()?;
                let stat = fields.next()?.to_owned();
                Some((pid, ppid, stat, fields.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }

    /// SIGTERM to every container, then the stop timeout: what a pod's deletion does.
    fn stop(&self) {
        self.run(&["pod", "stop", self.name]);
    }

    /// Stops one container of the pod (SIGTERM, then podman's SIGKILL after the stall timeout),
    /// as the kubelet stops the app containers before the pod's sandbox.
    fn stop_container(&self, name: &str) {
        let timeout = stall_timeout().as_secs().to_string();
        self.run(&["stop", "--time", &timeout, &self.container(name)]);
    }

    fn exit_code(&self, container: &str) -> i32 {
        self.run(&["inspect", container, "--format", "{{.State.ExitCode}}"])
            .trim()
            .parse()
            .expect("an exit code")
    }

    fn logs(&self, container: &str) -> String {
        let mut command = self.command();
        let output = command
            .args(["logs", &self.container(container)])
            .stdin(Stdio::null())
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        match &self.manifest {
            Some(manifest) => {
                let _ = self
                    .command()
                    .args(["kube", "down"])
                    .arg(manifest)
                    .stdin(Stdio::null())
                    .output();
            }
            None => self.remove_leftover(),
        }
    }
}

fn no_zombies(rows: &[(i32, i32, String, String)]) -> bool {
    rows.iter().all(|(_, _, stat, _)| !stat.starts_with('Z'))
}

#[test]
fn graceful_shutdown_pod_drains_the_worker_on_sigterm_and_exits_with_the_apps_status() {
    if !podman_usable() {
        return;
    }
    let pod = Pod::play("graceful-shutdown.yaml", "ferrinit-graceful", None);
    let logs = pod.follow_logs("app");
    // The worker's TERM handler is in place before SIGTERM comes.
    logs.expect_stdout("worker: started");
    logs.expect_stdout("app: started");
    let rows = pod.ps("app");
    assert!(
        rows.iter()
            .any(|(pid, _, _, args)| *pid == 1 && args.starts_with("/ferrinit -t 5s")),
        "ferrinit is PID 1 of its container: {rows:?}"
    );
    pod.stop();
    // Forwarded SIGTERM killed the app (143); the drain's SIGTERM let the worker finish.
    assert_eq!(
        pod.exit_code(&pod.container("app")),
        143,
        "{}",
        pod.logs("app")
    );
    let out = logs.finish();
    assert!(
        out.stdout.iter().any(|l| l.contains("worker: finishing")),
        "the worker finished within the drain: {:?}",
        out.stdout
    );
    assert!(
        out.stderr.is_empty(),
        "no SIGKILL was needed, no warning: {:?}",
        out.stderr
    );
}

#[test]
fn shared_pid_namespace_pod_runs_ferrinit_with_s_as_the_reaper_of_its_orphans() {
    if !podman_usable() {
        return;
    }
    let pod = Pod::play("shared-pid-namespace.yaml", "ferrinit-shared-pid", None);
    let logs = pod.follow_logs("app");
    logs.expect_stdout("app: made 3 orphans");
    // ferrinit -w names each orphan it reaped: they came to it, not to the pod's PID 1.
    logs.stderr_count("reaped zombie process", 3);
    let rows = pod.ps("app");
    let ferrinit = rows
        .iter()
        .find(|(_, _, _, args)| args.starts_with("/ferrinit -s"))
        .unwrap_or_else(|| panic!("no ferrinit: {rows:?}"));
    assert_ne!(ferrinit.0, 1, "the infra container is PID 1: {rows:?}");
    assert!(
        rows.iter()
            .any(|(pid, _, _, args)| *pid == 1 && !args.contains("ferrinit")),
        "{rows:?}"
    );
    assert!(no_zombies(&rows), "{rows:?}");
    // The app first: stopping the whole pod at once races its infra container, the shared
    // namespace's PID 1, whose exit SIGKILLs everyone left in the namespace.
    pod.stop_container("app");
    pod.stop();
    assert_eq!(
        pod.exit_code(&pod.container("app")),
        143,
        "{}",
        pod.logs("app")
    );
    let out = logs.finish();
    assert!(
        !out.stderr
            .iter()
            .any(|l| l.contains("not running as PID 1")),
        "-s silences the warning: {:?}",
        out.stderr
    );
}

/// The orphans' pids, from the app's 'orphan PID' lines; each one must vanish, not linger as a
/// zombie: only PID 1 (ferrinit --pause) can reap them. No event announces a reap, so poll.
fn orphans_are_reaped_by_the_pause_container(pod: &Pod) {
    let logs = pod.follow_logs("app");
    logs.expect_stdout("app: made 3 orphans");
    let orphans: Vec<i32> = (0..3)
        .map(|_| {
            let line = logs.expect_stdout("orphan ");
            line.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("'orphan PID': {line}"))
        })
        .collect();
    let rows = pod.ps("app");
    assert!(
        rows.iter()
            .any(|(pid, _, _, args)| *pid == 1 && args == "/ferrinit --pause"),
        "ferrinit --pause is PID 1 of the pod: {rows:?}"
    );
    eventually("the orphans are reaped", || {
        let rows = pod.ps("app");
        no_zombies(&rows) && !rows.iter().any(|(pid, ..)| orphans.contains(pid))
    });
    let infra = pod.infra();
    pod.stop();
    assert_eq!(
        pod.exit_code(&infra),
        0,
        "ferrinit --pause exits 0 on SIGTERM"
    );
    // The app's own status is not the pause container's to decide: podman 4.3 stops the infra
    // container alongside the app, and once PID 1 has exited the kernel SIGKILLs what is left.
    drop(logs);
}

/// containers.conf naming ferrinit-pause as podman's infra image: how kube play picks it.
fn conf_with_ferrinit_pause_infra() -> PathBuf {
    let dir = scratch_dir("kubernetes-conf");
    let base = images().podman();
    let base_conf = base
        .get_envs()
        .find(|(k, _)| *k == "CONTAINERS_CONF")
        .and_then(|(_, v)| v)
        .expect("the test kit sets CONTAINERS_CONF");
    let conf = std::fs::read_to_string(base_conf).expect("containers.conf");
    let conf = conf.replacen(
        "[engine]\n",
        &format!("[engine]\ninfra_image = \"{PAUSE_IMAGE}\"\n"),
        1,
    );
    assert!(conf.contains("infra_image"), "{conf}");
    let path = dir.join("containers.conf");
    std::fs::write(&path, conf).expect("write containers.conf");
    path
}

#[test]
fn pause_infra_pod_has_ferrinit_pause_as_pid1_reaping_the_apps_orphans() {
    if !podman_usable() {
        return;
    }
    example_images();
    let pod = Pod::play(
        "pause-infra.yaml",
        "ferrinit-pause-infra",
        Some(conf_with_ferrinit_pause_infra()),
    );
    orphans_are_reaped_by_the_pause_container(&pod);
}

#[test]
fn podman_pod_create_with_ferrinit_pause_as_infra_image_reaps_orphans() {
    if !podman_usable() {
        return;
    }
    example_images();
    let pod = Pod {
        manifest: None,
        name: "ferrinit-pod-create",
        conf: None,
    };
    pod.remove_leftover();
    pod.run(&[
        "pod",
        "create",
        "--name",
        pod.name,
        "--network",
        "none",
        "--share",
        "pid,ipc,uts",
        "--infra-image",
        PAUSE_IMAGE,
    ]);
    // The app of pause-infra.yaml, run by hand under the name kube play would give it.
    let manifest = std::fs::read_to_string(examples().join("pause-infra.yaml")).unwrap();
    let script = manifest
        .split("        - |\n")
        .nth(1)
        .expect("the app's script")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n");
    pod.run(&[
        "run",
        "--detach",
        "--pod",
        pod.name,
        "--name",
        &pod.container("app"),
        "--entrypoint",
        "/bin/sh",
        EXAMPLE_IMAGE,
        "-c",
        &script,
    ]);
    orphans_are_reaped_by_the_pause_container(&pod);
}
