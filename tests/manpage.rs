//! The manual page, `ferrinit.1`: it names every option and environment variable the built
//! binary's `--help` names, carries the crate's version, and groff renders it without a warning.

use std::process::Command;

use ferrinit_testkit::{as_process, run, tool, workspace_root};

fn help() -> String {
    let out = run(as_process(["--help"]));
    assert_eq!(out.code(), 0, "ferrinit --help: {:?}", out.stderr);
    out.stdout.join("\n")
}

/// The page as words: font escapes dropped and `\-` read as `-`.
fn manpage_text() -> String {
    let source = std::fs::read_to_string(workspace_root().join("ferrinit.1")).expect("ferrinit.1");
    let mut text = source.replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// The lines of the help section that starts with a line beginning `heading`, up to a blank line.
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// `-s`, `--subreaper`, `--drain-signal`...: the names in the left column of the options.
fn option_names(help: &str) -> Vec<String> {
    let names: Vec<String> = section(help, "Options")
        .iter()
        .filter_map(|line| {
            let entry = line.trim_start();
            // Continuation lines are prose; an entry's names end where its description begins.
            entry.starts_with('-').then(|| entry.split("  ").next())?
        })
        .flat_map(|names| names.split([',', ' ']))
        .filter(|word| word.starts_with('-'))
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() > 20,
        "too few options found in --help: {names:?}"
    );
    names
}

fn environment_names(help: &str) -> Vec<String> {
    let names: Vec<String> = section(help, "Environment")
        .iter()
        .flat_map(|line| line.split([',', ' ']))
        .filter(|word| word.starts_with("FERRINIT_") || word.starts_with("TINI_"))
        .filter(|word| !word.ends_with('*'))
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() >= 7,
        "too few variables found in --help: {names:?}"
    );
    names
}

#[test]
fn the_manpage_names_every_option_of_help() {
    let page = manpage_text();
    let missing: Vec<String> = option_names(&help())
        .into_iter()
        .filter(|name| {
            // As a word: `-p` must not be found inside `--pause`, nor `--delay` in `--delays`.
            !page.match_indices(name.as_str()).any(|(at, _)| {
                let before = page[..at].chars().next_back();
                let after = page[at + name.len()..].chars().next();
                let joins = |c: Option<char>| c.is_some_and(|c| c == '-' || c.is_alphanumeric());
                !joins(before) && !joins(after)
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ferrinit.1 does not document {missing:?}"
    );
}

#[test]
fn the_manpage_names_every_environment_variable_of_help() {
    let page = manpage_text();
    let missing: Vec<String> = environment_names(&help())
        .into_iter()
        .filter(|name| !page.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "ferrinit.1 does not document {missing:?}"
    );
}

#[test]
fn the_manpage_documents_every_exit_code_of_help() {
    let help = help();
    let codes = help
        .split("Exit codes:")
        .nth(1)
        .expect("--help lists exit codes");
    let page = manpage_text();
    let exit_status = page
        .split(".SH EXIT STATUS")
        .nth(1)
        .and_then(|rest| rest.split("\n.SH ").next())
        .expect("an EXIT STATUS section");
    for code in codes
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
    {
        assert!(
            exit_status.contains(&format!("\n{code}\n")),
            "EXIT STATUS has no entry for {code}"
        );
    }
}

#[test]
fn the_manpage_carries_the_crate_version() {
    let page = manpage_text();
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH line");
    let version = format!("\"ferrinit {}\"", env!("CARGO_PKG_VERSION"));
    assert!(title.contains(&version), "{title} should say {version}");
}

#[test]
fn the_manpage_renders_without_warnings() {
    let groff = tool("groff");
    // -ww: every warning; CHECKSTYLE: the man macros' own checks of their usage; -z: no output.
    let out = Command::new(groff)
        .args(["-man", "-Tutf8", "-ww", "-rCHECKSTYLE=3", "-z"])
        .arg(workspace_root().join("ferrinit.1"))
        .output()
        .expect("groff runs");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.is_empty(),
        "groff: {warnings}"
    );
}
