//! The README documents exactly the settings of the settings table, its two set-up commands are
//! the ones CI and users run, and its defaults write nowhere git tracks.

use nodegate::cli::{COMMANDS, markdown_table, own_settings_table};
use nodegate::config::{Role, known_variables};

const BEGIN: &str =
    "<!-- settings:begin (generated from the settings table: tests/readme.rs) -->\n";
const END: &str = "<!-- settings:end -->";
const FRONTEND_BEGIN: &str =
    "<!-- frontend-settings:begin (generated from the settings table: tests/readme.rs) -->\n";
const FRONTEND_END: &str = "<!-- frontend-settings:end -->";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text between `begin` and `end`.
fn between<'a>(readme: &'a str, begin: &str, end: &str) -> &'a str {
    let start = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README.md lacks {begin:?}"))
        + begin.len();
    let stop = readme[start..]
        .find(end)
        .unwrap_or_else(|| panic!("README.md lacks {end:?}"))
        + start;
    &readme[start..stop]
}

#[test]
fn readme_settings_table_is_the_settings_table() {
    let readme = read("README.md");
    let expected = markdown_table();
    assert!(
        between(&readme, BEGIN, END) == expected,
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
fn readme_cluster_section_shows_the_frontends_own_settings_from_the_table() {
    let readme = read("README.md");
    let expected = own_settings_table(Role::Frontend);
    assert!(
        between(&readme, FRONTEND_BEGIN, FRONTEND_END) == expected,
        "README.md's frontend settings differ from the table; replace them with:\n{expected}"
    );
    for name in [
        "NODEGATE_ADMIN_TOKEN",
        "NODEGATE_REGISTRY",
        "NODEGATE_STALE_AFTER",
        "NODEGATE_HEALTH_CHECK_INTERVAL",
    ] {
        assert!(expected.contains(&format!("`{name}`")), "{name}");
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
