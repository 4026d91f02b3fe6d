//! The documents agree with what was measured and built.

use ferrinit_testkit::workspace_root;

fn read(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The table under "## Headline" in BENCHMARKS.md.
fn headline(benchmarks: &str) -> String {
    let after = benchmarks
        .split("## Headline")
        .nth(1)
        .expect("a Headline section");
    after
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_shows_the_benchmark_headline_as_measured() {
    let table = headline(&read("BENCHMARKS.md"));
    assert!(table.lines().count() > 5, "{table}");
    assert!(
        read("README.md").contains(&table),
        "README.md must show BENCHMARKS.md's headline table as generated:\n{table}"
    );
}

#[test]
fn the_headline_quotes_ratios_and_goals_not_absolute_times() {
    let table = headline(&read("BENCHMARKS.md"));
    let mut lines = table.lines();
    assert_eq!(
        lines.next(),
        Some(
            "| metric | measured with | ferrinit ÷ tini-static | ferrinit ÷ floor | goal (#12) | goal met? |"
        )
    );
    for line in lines.skip(1) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert_eq!(cells.len(), 6, "{line}");
        for ratio in &cells[2..4] {
            assert!(
                ratio.ends_with('×') || *ratio == "—",
                "not a ratio: '{ratio}' in {line}"
            );
        }
        let verdict = cells[5].trim_end_matches(" |");
        assert!(
            verdict == "—" || verdict.starts_with("met (") || verdict.starts_with("**not met** ("),
            "no verdict in {line}"
        );
    }
}

#[test]
fn the_benchmarks_come_from_a_real_run_with_every_init() {
    let benchmarks = read("BENCHMARKS.md");
    assert!(
        !benchmarks.contains("--smoke"),
        "BENCHMARKS.md is from a smoke run"
    );
    for init in [
        "ferrinit",
        "tini-static",
        "dumb-init",
        "catatonit",
        "floor",
        "no init",
    ] {
        assert!(
            benchmarks.contains(&format!(" {init} |")),
            "no column for {init}"
        );
    }
    assert!(workspace_root().join("bench/ratios.svg").is_file());
}
