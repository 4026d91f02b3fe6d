//! Real container runtimes. The images come from the repository's own Dockerfile: podman builds
//! its final stage with the locally built static ferrinit standing in for the Rust build stage,
//! and the test image adds busybox and the probe on top. The runc and crun bundles are that same
//! image exported to a directory, run with the image's own entrypoint. So the layout every
//! runtime test uses is the Dockerfile's, and the two cannot drift apart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{artifacts, clean_start, remove_stale, tool, which, workspace_root};

pub struct Images {
    dir: PathBuf,
    /// The Dockerfile's final stage: ferrinit alone, as shipped.
    pub shipped: String,
    /// `shipped` plus busybox (`/bin/sh`, `ps`, ...) and `/probe`.
    pub test: String,
    /// The same files with no entrypoint, for `podman run --init`.
    pub bare: String,
    /// The shipped image's ENTRYPOINT, e.g. `["/ferrinit", "--"]`.
    pub entrypoint: Vec<String>,
    /// The test image exported to a directory: the root filesystem of runc and crun bundles.
    pub rootfs: PathBuf,
}

/// Everything built once per test binary, in a private podman storage under target/.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let scratch = workspace_root().join("target/test-scratch");
        remove_stale(&scratch, "containers");
        remove_stale(&std::env::temp_dir(), "ferrinit-podman");
        let dir = scratch.join(format!("containers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("containers.conf"), CONTAINERS_CONF).expect("containers.conf");
        let tag = |name: &str| format!("localhost/ferrinit-{name}-{}", std::process::id());
        let mut images = Images {
            shipped: tag("shipped"),
            test: tag("test"),
            bare: tag("bare"),
            entrypoint: Vec::new(),
            rootfs: dir.join("rootfs"),
            dir,
        };
        images.build();
        images
    })
}

/// No registry is reachable and no systemd runs here: cgroupfs, file events, runc.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

impl Images {
    /// `podman` with this test binary's private storage and configuration.
    pub fn podman(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.runroot())
            .args(["--storage-driver", "vfs"]);
        clean_start(&mut command);
        command
    }

    /// podman wants its runroot path shorter than 50 characters.
    fn runroot(&self) -> PathBuf {
        std::env::temp_dir().join(format!("ferrinit-podman-{}", std::process::id()))
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        podman_ok(self.podman(), args)
    }

    fn build(&mut self) {
        // The Dockerfile's build stage is named "build"; its final stage copies /ferrinit from
        // it. --build-context hands podman a directory holding our static binary instead.
        let stage = self.dir.join("build-stage");
        std::fs::create_dir_all(&stage).expect("dir");
        std::fs::copy(&artifacts().ferrinit, stage.join("ferrinit")).expect("copy ferrinit");
        let empty = self.dir.join("empty-context");
        std::fs::create_dir_all(&empty).expect("dir");
        let dockerfile = workspace_root().join("Dockerfile");
        self.podman_ok(&[
            "build",
            "--quiet",
            "--build-context",
            &format!("build={}", stage.display()),
            "--file",
            dockerfile.to_str().expect("utf-8"),
            "--tag",
            &self.shipped,
            empty.to_str().expect("utf-8"),
        ]);
        let entrypoint = self.podman_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            &self.shipped,
        ]);
        self.entrypoint =
            serde_json::from_str(entrypoint.trim()).expect("entrypoint is a JSON list");

        let context = self.dir.join("test-context");
        let files = context.join("files");
        std::fs::create_dir_all(files.join("bin")).expect("dir");
        // Static (busybox-static), as nothing else is in the image to link against.
        std::fs::copy(tool("busybox"), files.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "ps", "echo", "cat", "ls", "kill", "true"] {
            std::os::unix::fs::symlink("busybox", files.join("bin").join(applet)).expect("symlink");
        }
        std::fs::copy(&artifacts().probe, files.join("probe")).expect("copy probe");
        let containerfile = format!("FROM {}\nCOPY files/ /\n", self.shipped);
        std::fs::write(context.join("Containerfile"), containerfile).expect("Containerfile");
        self.podman_ok(&[
            "build",
            "--quiet",
            "--tag",
            &self.test,
            context.to_str().expect("utf-8"),
        ]);
        let bare = format!("FROM {}\nENTRYPOINT []\n", self.test);
        std::fs::write(context.join("Containerfile.bare"), bare).expect("Containerfile");
        self.podman_ok(&[
            "build",
            "--quiet",
            "--file",
            context.join("Containerfile.bare").to_str().expect("utf-8"),
            "--tag",
            &self.bare,
            context.to_str().expect("utf-8"),
        ]);

        // Export the test image for runc and crun.
        let name = format!("ferrinit-export-{}", std::process::id());
        self.podman_ok(&["create", "--name", &name, &self.test]);
        let tar = self.dir.join("rootfs.tar");
        self.podman_ok(&["export", "--output", tar.to_str().expect("utf-8"), &name]);
        self.podman_ok(&["rm", &name]);
        std::fs::create_dir_all(&self.rootfs).expect("dir");
        let status = Command::new(tool("tar"))
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&self.rootfs)
            .status()
            .expect("tar");
        assert!(status.success(), "untar the exported image");
        // Mount points, made now: runtimes sharing this read-only root would race to make them.
        for mount_point in ["proc", "sys", "dev"] {
            std::fs::create_dir_all(self.rootfs.join(mount_point)).expect("mount point");
        }
    }
}

/// An OCI bundle for runc or crun: the exported image, read-only, running the image's
/// entrypoint followed by `command`.
pub struct Bundle {
    pub dir: PathBuf,
    pub id: String,
}

impl Bundle {
    pub fn new(name: &str, command: &[&str]) -> Bundle {
        let images = images();
        let id = format!("ferrinit-{name}-{}", std::process::id());
        let dir = images.dir.join("bundles").join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        // Either runtime writes the skeleton: a test of one must not need the other.
        let spec_writer = which("runc").unwrap_or_else(|| tool("crun"));
        let status = Command::new(spec_writer)
            .args(["spec", "--bundle"])
            .arg(&dir)
            .status()
            .expect("runc spec");
        assert!(status.success());
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("config.json"))
                .expect("JSON");
        let args: Vec<String> = images
            .entrypoint
            .iter()
            .cloned()
            .chain(command.iter().map(|s| s.to_string()))
            .collect();
        // Without a terminal: runc's would need /dev/tty, and the tests read stdout.
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.into();
        config["root"]["path"] = images.rootfs.to_str().expect("utf-8").into();
        config["root"]["readonly"] = true.into();
        std::fs::write(&path, config.to_string()).expect("write config.json");
        Bundle { dir, id }
    }

    /// `runc run` (or `crun run`) of this bundle, in the foreground.
    pub fn run(&self, runtime: Runtime) -> Command {
        let mut command = runtime.command();
        command
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id);
        command
    }

    /// `runc ARGS` (kill, exec, delete ...), to completion.
    pub fn control(&self, runtime: Runtime, args: &[&str]) -> std::process::Output {
        let mut command = runtime.command();
        command.args(args).stdin(Stdio::null());
        command.output().expect("run the runtime")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for runtime in [Runtime::Runc, Runtime::Crun] {
            let _ = runtime
                .command()
                .args(["delete", "--force", &self.id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    Runc,
    /// crun refuses this machine's hybrid cgroups; it runs in a mount namespace that hides the
    /// cgroup2 mount (when there is one).
    Crun,
}

impl Runtime {
    pub fn command(self) -> Command {
        let mut command = match self {
            Runtime::Runc => Command::new("runc"),
            Runtime::Crun => {
                let mut command = Command::new("unshare");
                command.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    r#"umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@""#,
                    "crun",
                ]);
                command
            }
        };
        clean_start(&mut command);
        command
    }

    pub fn program(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
        }
    }
}

/// The shipped image's entrypoint program, for assertions.
pub fn entrypoint_program() -> &'static Path {
    Path::new(
        images()
            .entrypoint
            .first()
            .map(String::as_str)
            .unwrap_or("?"),
    )
}

/// `podman ARGS` (with `command`'s storage and configuration), to completion: its stdout, or a
/// failure that shows both of its outputs.
pub fn podman_ok(mut command: Command, args: &[&str]) -> String {
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podman");
    assert!(
        output.status.success(),
        "podman {args:?} failed: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
