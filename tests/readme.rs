//! The README documents exactly the settings of the settings table, its two set-up commands are
//! the ones CI and users run, and its defaults write nowhere git tracks.

use nodegate::cli::{COMMANDS, markdown_table};
use nodegate::config::known_variables;

const BEGIN: &str =
    "<!-- settings:begin (generated from the settings table: tests/readme.rs) -->\n";
const END: &str = "<!-- settings:end -->";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn readme_settings_table_is_the_settings_table() {
    let readme = read("README.md");
    let start = readme
        .find(BEGIN)
        .expect("README.md has the settings markers")
        + BEGIN.len();
    let end = readme[start..].find(END).expect("settings end marker") + start;
    let expected = markdown_table();
    assert!(
        readme[start..end] == expected,
        "README.md's settings table differs from the table; replace it with:\n{expected}"
    );
    for role in COMMANDS {
        for setting in known_variables(role) {
            assert!(
                readme.contains(&format!("`{}`", setting.name)),
                "{}",
                setting.name
            );
        }
    }
}

#[test]
fn readme_gives_the_worker_and_test_commands_ci_uses() {
    let readme = read("README.md");
    let setup = &readme[readme.find("## Set-up").expect("Set-up")..];
    let setup = &setup[..setup[3..].find("\n## ").map_or(setup.len(), |i| i + 3)];
    let block = &setup[setup.find("```sh\n").expect("a sh block") + 6..];
    let block = &block[..block.find("```").expect("end of block")];
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands,
        [
            "LOCALAI_REGISTRATION_TOKEN=change-me cargo run --release --example worker",
            "bash scripts/test"
        ],
        "exactly two set-up commands"
    );
    let ci = read(".ci/run");
    assert!(
        ci.contains("bash scripts/test"),
        ".ci/run must run the README's test command"
    );
    assert!(
        ci.contains("cargo install --path ."),
        ".ci/run installs the command"
    );
}

#[test]
fn the_default_roots_are_git_ignored() {
    // `cargo run` in the repository uses LOCALAI_MODELS_PATH=models: models, staging and data
    // appear next to Cargo.toml.
    let ignore = read(".gitignore");
    for root in ["/models/", "/staging/", "/data/"] {
        assert!(ignore.lines().any(|l| l == root), ".gitignore lacks {root}");
    }
}
