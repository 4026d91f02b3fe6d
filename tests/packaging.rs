//! Installing ferrinit: the Debian package `cargo deb` builds, installed with dpkg into a
//! throw-away root and run from there; and ferrinit as Docker's `docker-init`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrinit_testkit::{
    clean_command, ferrinit, init_as_pid1, run, scratch_dir, tool, workspace_root,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `program`, or a failure naming the Debian package that has it.
#[track_caller]
fn command(program: &str) -> Command {
    Command::new(tool(program))
}

fn command_output(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The README's command for the package, `cargo deb --target x86_64-unknown-linux-gnu`, with
/// the package written to `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tool("cargo-deb");
    let deb = dir.join("ferrinit.deb");
    command_output(
        Command::new(&cargo)
            .current_dir(workspace_root())
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .args(["deb", "--target", "x86_64-unknown-linux-gnu", "--output"])
            .arg(&deb),
    );
    deb
}

/// `dpkg -i` into `root`, a directory with an empty dpkg database of its own.
fn install_into(root: &Path, deb: &Path) {
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    command_output(
        command("dpkg")
            .arg(format!("--root={}", root.display()))
            // Slim images tell dpkg to leave out man pages: this root takes every file.
            .args([
                "--path-include=*",
                "--force-not-root",
                "--log=/dev/null",
                "-i",
            ])
            .arg(deb),
    );
}

#[test]
fn the_debian_package_installs_the_static_binary_and_the_man_page() {
    let dir = scratch_dir("deb");
    let deb = build_deb(&dir);
    let fields = command_output(command("dpkg-deb").args(["--field"]).arg(&deb));
    let fields = String::from_utf8_lossy(&fields.stdout);
    assert!(fields.contains("Package: ferrinit\n"), "{fields}");
    assert!(fields.contains(&format!("Version: {VERSION}-")), "{fields}");

    let root = dir.join("root");
    install_into(&root, &deb);
    let installed = root.join("usr/bin/ferrinit");
    let file = command_output(command("file").arg(&installed));
    let description = String::from_utf8_lossy(&file.stdout);
    assert!(description.contains("statically linked"), "{description}");
    assert!(!description.contains("interpreter"), "{description}");

    // man finds the page where the package put it, and it is the repository's page.
    let found = command_output(
        command("man")
            .arg("-M")
            .arg(root.join("usr/share/man"))
            .args(["-w", "ferrinit"]),
    );
    let page = root.join("usr/share/man/man1/ferrinit.1.gz");
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        page.to_str().unwrap()
    );
    let unpacked = command_output(command("gzip").arg("-dc").arg(&page));
    let shipped = std::fs::read(workspace_root().join("ferrinit.1")).unwrap();
    assert!(
        unpacked.stdout == shipped,
        "the packaged man page is not ferrinit.1"
    );

    // The installed binary runs, as itself and as PID 1.
    let out = run(clean_command(&installed, ["--version"]));
    assert_eq!(out.stdout, [format!("ferrinit {VERSION}")]);
    let out = run(init_as_pid1(&installed, ["--", "sh", "-c", "exit 7"]));
    assert_eq!(out.code(), 7, "{:?}", out.stderr);

    // Docker's init-path points at the docker-init link the package installs.
    let link = root.join("usr/libexec/ferrinit/docker-init");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../bin/ferrinit")
    );
    assert_eq!(
        parse_init_version(&docker_init_version(&link)),
        Ok((VERSION.to_owned(), "ferrinit".to_owned()))
    );
}

/// dockerd's reading of `docker-init --version`, rule for rule: moby/moby,
/// daemon/info_unix.go, `parseInitVersion` (called by `populateInitCommit` for `docker info`
/// and `populateInitVersion` for `docker version`, on the output of `INIT --version`, where INIT
/// is the configured `init-path`, by default `docker-init`, looked up by `LookupInitPath` in
/// daemon/config/config_linux.go). The output is split on " - "; the second part, trimmed, is
/// the commit if it splits on "." into exactly "git" and one more part; the first part, trimmed,
/// is the version after the prefix "tini version "; with neither it is an error.
fn parse_init_version(output: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = output.split(" - ").collect();
    let mut commit = "";
    if parts.len() >= 2 {
        let git_parts: Vec<&str> = parts[1].trim().split('.').collect();
        if git_parts.len() == 2 && git_parts[0] == "git" {
            commit = git_parts[1];
        }
    }
    let version = parts[0]
        .trim()
        .strip_prefix("tini version ")
        .unwrap_or_default();
    if version.is_empty() && commit.is_empty() {
        return Err(format!("unknown output format: {output}"));
    }
    Ok((version.to_owned(), commit.to_owned()))
}

#[test]
fn the_parser_reads_what_dockerd_reads() {
    let parsed = parse_init_version;
    let ok = |version: &str, commit: &str| Ok((version.to_owned(), commit.to_owned()));
    assert_eq!(
        parsed("tini version 0.19.0 - git.de40ad0\n"),
        ok("0.19.0", "de40ad0")
    );
    assert_eq!(parsed("tini version 0.19.0\n"), ok("0.19.0", ""));
    assert_eq!(parsed("tini version 0.19.0 - "), ok("0.19.0", ""));
    assert_eq!(parsed(" - git.de40ad0"), ok("", "de40ad0"));
    assert_eq!(parsed("tini version 1 - git.a.b"), ok("1", ""));
    for unreadable in [
        "ferrinit 0.1.0\n",
        "tini version0.19.0",
        "",
        " - ",
        "version 1",
    ] {
        assert!(parsed(unreadable).is_err(), "{unreadable:?}");
    }
}

/// dockerd runs the init binary as `docker-init --version` and takes its stdout, failing on a
/// non-zero exit (Go's `exec.Command(...).Output()`).
fn docker_init_version(docker_init: &Path) -> String {
    let out = command_output(&mut clean_command(docker_init, ["--version"]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn as_docker_init_the_version_is_one_dockerd_can_read() {
    let dir = scratch_dir("docker-init");
    let docker_init = dir.join("docker-init");
    symlink(ferrinit(), &docker_init).unwrap();
    let output = docker_init_version(&docker_init);
    assert_eq!(
        parse_init_version(&output),
        Ok((VERSION.to_owned(), "ferrinit".to_owned())),
        "{output:?}"
    );
    // Under its own name, its own line, which dockerd would not read.
    let own = docker_init_version(ferrinit());
    assert_eq!(own, format!("ferrinit {VERSION}\n"));
    assert!(parse_init_version(&own).is_err());
}

#[test]
fn as_docker_init_it_runs_the_command_as_pid1_like_ferrinit() {
    // Inside the container dockerd runs `/sbin/docker-init -- COMMAND`.
    let dir = scratch_dir("docker-init-run");
    let docker_init = dir.join("docker-init");
    symlink(ferrinit(), &docker_init).unwrap();
    let out = run(init_as_pid1(
        &docker_init,
        ["--", "sh", "-c", "echo $$; exit 3"],
    ));
    assert_eq!(out.stdout, ["2"], "{:?}", out.stderr);
    assert_eq!(out.code(), 3, "{:?}", out.stderr);
}
