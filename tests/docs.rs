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
fn the_benchmarks_were_a_full_run_with_every_init() {
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
        "no init",
    ] {
        assert!(
            benchmarks.contains(&format!(" {init} |")),
            "no column for {init}"
        );
    }
    assert!(workspace_root().join("bench/ratios.svg").is_file());
}
