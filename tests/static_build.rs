//! The shipped binary: static, built the same way by the README, the Dockerfile and the tests,
//! and as big as the README says.

use ferrinit_testkit::{STATIC_RUSTFLAGS, ferrinit, tool, workspace_root};

#[test]
fn the_shipped_binary_is_statically_linked() {
    let file = std::process::Command::new(tool("file"))
        .arg(ferrinit())
        .output()
        .expect("file(1)");
    let description = String::from_utf8_lossy(&file.stdout);
    assert!(description.contains("statically linked"), "{description}");
    assert!(!description.contains("interpreter"), "{description}");
}

#[test]
fn readme_dockerfile_and_tests_build_it_the_same_way() {
    for document in ["README.md", "Dockerfile"] {
        let text = std::fs::read_to_string(workspace_root().join(document)).unwrap();
        assert!(
            text.contains(&format!("RUSTFLAGS=\"{STATIC_RUSTFLAGS}\"")),
            "{document} builds with other flags than the tests ({STATIC_RUSTFLAGS})"
        );
        assert!(text.contains("--release") && text.contains("--target x86_64-unknown-linux-gnu"));
    }
}

#[test]
fn the_readme_records_the_binary_size() {
    let size = std::fs::metadata(ferrinit()).unwrap().len();
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    // "NNN,NNN bytes" after "ferrinit is": within 5 % of the binary just built.
    let recorded: u64 = readme
        .split("The static binary is ")
        .nth(1)
        .and_then(|rest| rest.split(" bytes").next())
        .map(|n| n.replace(',', ""))
        .and_then(|n| n.parse().ok())
        .expect("README says 'The static binary is N bytes'");
    let drift = size.abs_diff(recorded) as f64 / size as f64;
    assert!(
        drift < 0.05,
        "README says {recorded} bytes, the binary has {size}"
    );
}
