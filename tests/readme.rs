//! The README documents every setting the worker reads, and its two set-up commands are the
//! ones CI and users run.

use nodegate::config::{Role, known_variables};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn readme_documents_every_worker_setting() {
    let readme = readme();
    let missing: Vec<&str> = known_variables(Role::Worker)
        .iter()
        .map(|v| v.name)
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "README.md lacks settings: {missing:?}");
}

#[test]
fn readme_gives_the_worker_and_test_commands_ci_uses() {
    let readme = readme();
    assert!(readme.contains("cargo run --release --example worker"));
    assert!(readme.contains("bash scripts/test"));
    let ci =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    assert!(
        ci.contains("bash scripts/test"),
        ".ci/run must run the README's test command"
    );
}
