//! Idle memory (#12): as PID 1 with a child that waits, ferrinit keeps at most 1.15 times as
//! much memory resident as tini-static, measured side by side. An idle init's resident set is
//! mostly the pages of its executable that are mapped, a 64 KB window around every page it ran
//! or read; the link order (`.cargo/link-order.ld`, README "Building") keeps those few.

use std::path::Path;

use ferrinit_testkit::{
    Running, eventually, ferrinit, init_as_pid1, probe, require, status_field,
    waits_for_signals_with_timeout, waits_for_signals_without_timeout,
};

const TINI: &str = "/usr/bin/tini-static";

/// VmRSS (kB) of `init`, as PID 1 once its child has started and `init` sleeps in its wait.
fn idle_resident_kb(init: &Path, waits: fn(i32) -> bool) -> u64 {
    let probe = probe().to_str().expect("utf-8 path");
    let mut running = Running::start(init_as_pid1(init, ["--", probe, "wait"]));
    running.expect_stdout("ready");
    let pid = running.init_pid();
    eventually(&format!("{} waits for signals", init.display()), || {
        waits(pid)
    });
    let rss = status_field(pid, "VmRSS").expect("VmRSS of a live init");
    let kb = rss
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("VmRSS: {rss}"));
    running.close_stdin();
    let out = running.finish();
    assert_eq!(out.code(), 0, "{:?}", out.stderr);
    kb
}

#[test]
fn an_idle_ferrinit_keeps_at_most_115_percent_of_tini_statics_memory_resident() {
    if !require("tini-static") {
        return;
    }
    // The kernel maps a file's pages around a fault only if they are in the page cache: read
    // both binaries whole first, so that neither looks smaller for being partly evicted.
    for binary in [Path::new(TINI), ferrinit()] {
        std::fs::read(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    }
    let tini = idle_resident_kb(Path::new(TINI), waits_for_signals_with_timeout);
    let ours = idle_resident_kb(ferrinit(), waits_for_signals_without_timeout);
    assert!(
        ours * 100 <= tini * 115,
        "idle VmRSS: ferrinit {ours} kB, tini-static {tini} kB ({:.2}x; at most 1.15x)",
        ours as f64 / tini as f64
    );
}
