//! The benchmark harness in smoke mode: every workload, every init, a few iterations, so that
//! the harness never rots. Nothing here is timed or compared.

use ferrinit_testkit::{require, scratch_dir};

#[test]
fn the_harness_runs_every_workload_for_every_init_in_smoke_mode() {
    let tools = [
        "tini-static",
        "dumb-init",
        "catatonit",
        "valgrind",
        "unshare",
    ];
    if !tools.iter().all(|tool| require(tool)) {
        return;
    }
    let dir = scratch_dir("bench-smoke");
    let (report, chart) = (dir.join("BENCHMARKS.md"), dir.join("ratios.svg"));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_ferrinit-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&report)
        .arg("--chart")
        .arg(&chart)
        .output()
        .expect("run the harness");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    for section in [
        "1. Binary size",
        "2–3. Idle cost",
        "4. Start-up",
        "5. Reaping",
        "6. Signal forwarding latency",
        "7. Signal storm",
        "8. Shutdown",
        "Headline",
    ] {
        assert!(
            text.contains(&format!("## {section}")),
            "no section {section}"
        );
    }
    let header =
        "| metric | measured with | ferrinit | tini-static | dumb-init | catatonit | no init |";
    assert!(text.contains(header), "{text}");
    // Every row has a cell per init and two ratios.
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| metric"))
    {
        assert_eq!(line.matches(" |").count(), 9, "{line}");
    }
    // ferrinit passed the child's exit status on through the storm, like every init.
    let status_row = text
        .lines()
        .find(|l| l.contains("exit status (42) passed on"))
        .unwrap();
    assert!(status_row.contains("| 1 | 1 | 1 | 1 | 1 |"), "{status_row}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}
