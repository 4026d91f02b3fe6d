//! What a test needs from the machine: tools on PATH and root. Missing means failure, naming the
//! Debian package to install, on every machine alike. The one way past is an explicit opt-out,
//! `FERRINIT_TEST_SKIP=podman,crun` (a tool or its package; `root` for the tests that need root),
//! and every test it skips appends a line to [`skip_log`], which `.ci/test` prints at the end of
//! the run: a skip is never passed off as green.

use std::io::Write;
use std::path::PathBuf;

use crate::{is_root, which, workspace_root};

/// The Debian package that installs `tool`.
pub fn debian_package(tool: &str) -> &str {
    match tool {
        "unshare" | "nsenter" | "setpriv" => "util-linux",
        "bwrap" => "bubblewrap",
        "tini" | "tini-static" => "tini",
        "busybox" => "busybox-static",
        "ps" => "procps",
        "newuidmap" | "newgidmap" => "uidmap",
        "groff" => "groff-base",
        "man" => "man-db",
        "dpkg" | "dpkg-deb" => "dpkg",
        // runc, crun, podman, buildah, valgrind, dumb-init, catatonit, stress-ng, file, tar,
        // bash: the package has the tool's name.
        other => other,
    }
}

/// The path of `tool`, which the test cannot do without: a missing one fails the test, naming
/// its package. For tools too basic to opt out of (unshare, busybox, tar).
#[track_caller]
pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("{}", missing(name)))
}

/// Whether the test may use `tool`: true when it is installed. A missing tool fails the test,
/// naming its package, unless `FERRINIT_TEST_SKIP` names it: then the skip is recorded and the
/// test returns early.
#[track_caller]
pub fn require(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    if opted_out(&[tool, debian_package(tool)]) {
        record_skip(&format!("{tool} is missing"));
        return false;
    }
    panic!(
        "{}; or skip the tests that need it with FERRINIT_TEST_SKIP={tool}",
        missing(tool)
    )
}

/// Whether the test may run as root, which it needs: without root it fails, unless
/// `FERRINIT_TEST_SKIP` names `root`.
#[track_caller]
pub fn require_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    if opted_out(&["root"]) {
        record_skip(&format!("not root ({why})"));
        return false;
    }
    panic!(
        "this test needs root ({why}): run the tests as root, or skip it with FERRINIT_TEST_SKIP=root"
    )
}

/// Whether the host has `feature` (a kernel facility no package can install, such as a cgroup
/// v2 memory controller), which the test needs: without it the test fails, unless
/// `FERRINIT_TEST_SKIP` names the feature; then the skip is recorded like any other.
#[track_caller]
pub fn require_host(feature: &str, available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if opted_out(&[feature]) {
        record_skip(&format!("this host has no {what}"));
        return false;
    }
    panic!(
        "this host has no {what}: run this test where there is one, or skip it with FERRINIT_TEST_SKIP={feature}"
    )
}

fn missing(tool: &str) -> String {
    // Not a Debian package: cargo's own subcommand, from crates.io.
    if tool == "cargo-deb" {
        return "cargo-deb is missing: cargo install cargo-deb --locked".into();
    }
    format!(
        "{tool} is missing: apt-get install {}",
        debian_package(tool)
    )
}

/// Whether `FERRINIT_TEST_SKIP` (comma- or space-separated) names one of `names`.
fn opted_out(names: &[&str]) -> bool {
    let list = std::env::var("FERRINIT_TEST_SKIP").unwrap_or_default();
    list.split([',', ' '])
        .map(str::trim)
        .any(|token| !token.is_empty() && names.contains(&token))
}

/// Where the skips of this run are listed, one line each: `target/test-skips.log`. `.ci/test`
/// empties it before the run and prints it after.
pub fn skip_log() -> PathBuf {
    workspace_root().join("target/test-skips.log")
}

fn record_skip(reason: &str) {
    let line = format!("{}: {reason}", test_name());
    eprintln!("SKIPPED by FERRINIT_TEST_SKIP: {line}");
    let log = skip_log();
    let appended = log
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
        })
        // One write of a whole line: parallel tests append without interleaving.
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        panic!("cannot record the skip in {}: {e}", log.display());
    }
}

/// `BINARY::TEST`: the test binary without cargo's hash, and the test from the name libtest gives
/// its thread.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_name()?.to_str()?.to_owned()))
        .map(|name| match name.rsplit_once('-') {
            Some((stem, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => stem.to_owned(),
            _ => name,
        })
        .unwrap_or_else(|| "?".into());
    let thread = std::thread::current();
    let test = thread.name().filter(|&name| name != "main").unwrap_or("?");
    format!("{binary}::{test}")
}
