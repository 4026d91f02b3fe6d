//! The benchmark harness in smoke mode: every workload, every init, a few iterations, so that
//! the harness never rots. Nothing here is timed or compared.

use std::time::{Duration, Instant};

use ferrinit_testkit::{Running, cpu_ticks_of_tree, is_alive, require, scratch_dir, stall_timeout};

#[test]
fn the_harness_runs_every_workload_for_every_init_in_smoke_mode() {
    let tools = [
        "tini-static",
        "dumb-init",
        "catatonit",
        "valgrind",
        "unshare",
        "setpriv",
        "perf",
        "strace",
        "cc",
    ];
    if !tools.iter().all(|tool| require(tool)) {
        return;
    }
    let dir = scratch_dir("bench-smoke");
    let (report, chart) = (dir.join("BENCHMARKS.md"), dir.join("ratios.svg"));
    let log = dir.join("stderr.txt");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferrinit-bench"));
    command
        .arg("--smoke")
        .arg("--out")
        .arg(&report)
        .arg("--chart")
        .arg(&chart);
    let stderr = std::fs::File::create(&log).unwrap();
    let run = Running::start_with_stderr(command, stderr.into());
    // The run takes as long as the machine needs: it fails only once it has stopped moving,
    // with no line written and no CPU used by its processes for a stall timeout.
    let progress = || {
        let written = std::fs::metadata(&log).map_or(0, |m| m.len());
        (written, cpu_ticks_of_tree(run.pid()))
    };
    let (mut last, mut since) = (progress(), Instant::now());
    while is_alive(run.pid()) {
        std::thread::sleep(Duration::from_millis(100));
        let now = progress();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < stall_timeout(),
            "the harness made no progress for {:?}: {}",
            stall_timeout(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let status = run.finish().status;
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{status}: {stderr}");
    let text = std::fs::read_to_string(&report).unwrap();
    for section in [
        "1. Binary size",
        "2–3. Idle cost",
        "4. Start-up",
        "4b. Start-up instructions and the environment",
        "5. Reaping",
        "6. Forwarding one signal at a time",
        "7. Signal storms",
        "8. Shutdown",
        "9. Fairness",
        "Headline",
    ] {
        assert!(
            text.contains(&format!("## {section}")),
            "no section {section}"
        );
    }
    let header = "| metric | measured with | ferrinit | tini-static | dumb-init | catatonit | floor | no init | ferrinit ÷ tini-static | ferrinit ÷ floor |";
    assert!(text.contains(header), "{text}");
    // The headline: ratios and goals, no absolute times.
    let headline = "| metric | measured with | ferrinit ÷ tini-static | ferrinit ÷ floor | goal (#12) | goal met? |";
    assert!(text.contains(headline), "{text}");
    // Every row of the detailed tables has a cell per init and two ratios; headline rows six.
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| metric"))
    {
        let cells = line.matches(" |").count();
        assert!(cells == 10 || cells == 6, "{line}");
    }
    // Every init passed the child's exit status on through both storms.
    let status_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("exit status (42) passed on"))
        .collect();
    assert_eq!(status_rows.len(), 2, "{text}");
    for row in status_rows {
        assert!(row.contains("| 1 | 1 | 1 | 1 | 1 | 1 |"), "{row}");
    }
    // Each count was measured for every init (the floor included), in the detailed tables.
    for row in [
        "system calls of the init per forwarded signal",
        "system calls of the init and its child before exec",
        "instructions of the init under env -i",
        "fairness: signals forwarded before",
        "fairness: most later signals",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with("| ") && l.contains(row) && l.matches(" |").count() == 10)
            .unwrap_or_else(|| panic!("no row '{row}'"));
        let cells: Vec<&str> = line.split(" | ").collect();
        for cell in &cells[2..7] {
            assert!(cell.starts_with(|c: char| c.is_ascii_digit()), "{line}");
        }
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}
