//! The shipped binary: static and fixed-address from a plain `cargo build --release` or `cargo
//! install --path .`, its flags in `.cargo/config.toml` alone, and as big as the README says.

use std::path::Path;
use std::process::Command;

use ferrinit_testkit::{ferrinit, scratch_dir, tool, workspace_root};

/// The target the configuration builds for, and the flags that make the binary what it is.
const TARGET: &str = "x86_64-unknown-linux-gnu";
const FLAGS: [&str; 2] = ["target-feature=+crt-static", "relocation-model=static"];

fn read(name: &str) -> String {
    std::fs::read_to_string(workspace_root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `file`'s description: static glibc, no interpreter, and a fixed-address executable (a
/// static PIE says "pie executable" and "static-pie linked").
fn assert_static_fixed_address(binary: &Path) {
    let file = Command::new(tool("file"))
        .arg(binary)
        .output()
        .expect("file(1) runs (Debian package 'file')");
    let description = String::from_utf8_lossy(&file.stdout);
    assert!(description.contains("statically linked"), "{description}");
    assert!(description.contains("LSB executable"), "{description}");
    assert!(!description.contains("interpreter"), "{description}");
    assert!(!description.contains("pie"), "{description}");
}

#[test]
fn the_shipped_binary_is_statically_linked() {
    assert_static_fixed_address(ferrinit());
}

#[test]
fn cargo_install_gives_the_static_binary() {
    let root = scratch_dir("cargo-install");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // From elsewhere, as a user would: `--path` makes cargo read the repository's configuration.
    let status = Command::new(cargo)
        .current_dir(&root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["install", "--locked", "--quiet", "--path"])
        .arg(workspace_root())
        .arg("--root")
        .arg(&root)
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "cargo install --path . failed");
    assert_static_fixed_address(&root.join("bin/ferrinit"));
}

#[test]
fn the_build_flags_live_in_the_cargo_configuration_alone() {
    let config = read(".cargo/config.toml");
    let lines: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    // Naming the target keeps the flags off build scripts and proc-macros, built for the host.
    let build = lines.iter().position(|l| *l == "[build]").expect("[build]");
    assert!(
        lines[build + 1..]
            .iter()
            .take_while(|l| !l.starts_with('['))
            .any(|l| *l == format!("target = \"{TARGET}\"")),
        ".cargo/config.toml must name the build target {TARGET}"
    );
    let table = format!("[target.{TARGET}]");
    let start = lines.iter().position(|l| *l == table).expect(&table);
    let rustflags = lines[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with('['))
        .find(|l| l.starts_with("rustflags"))
        .expect("rustflags for the target");
    for flag in FLAGS {
        assert!(rustflags.contains(flag), "{rustflags} lacks {flag}");
    }

    // Everything that builds it builds it plainly: RUSTFLAGS would replace the configuration.
    for document in [
        "README.md",
        "Dockerfile",
        ".ci/run",
        "tests/testkit/src/lib.rs",
    ] {
        let text = read(document);
        assert!(
            !text.contains("RUSTFLAGS=") && !text.contains("crt-static\""),
            "{document} sets its own build flags: they belong in .cargo/config.toml"
        );
    }
    for document in ["README.md", "Dockerfile"] {
        let text = read(document);
        assert!(
            text.contains("cargo build --release"),
            "{document} builds otherwise"
        );
        assert!(
            text.contains(&format!("target/{TARGET}/release/ferrinit")),
            "{document} looks for the binary elsewhere than target/{TARGET}/release"
        );
    }
}

#[test]
fn the_readme_records_the_binary_size() {
    let size = std::fs::metadata(ferrinit()).unwrap().len();
    let readme = read("README.md");
    // "NNN,NNN bytes" after "The static binary is": within 5 % of the binary just built.
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
