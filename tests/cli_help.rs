//! The installed command as an operator meets it: `nodegate --version`, `nodegate <command>
//! --help` listing every setting of the table with its flag, variable and default, and usage
//! errors and bad values exiting 2.

use std::process::{Command, Output};

use nodegate::cli::COMMANDS;
use nodegate::config::{Group, known_variables};

fn nodegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run nodegate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn version_names_the_product() {
    let output = nodegate(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output).trim(),
        format!("nodegate {}", env!("CARGO_PKG_VERSION"))
    );
    let output = nodegate(&["worker", "--version"]);
    assert_eq!(
        stdout(&output).trim(),
        format!("nodegate worker {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!env!("CARGO_PKG_DESCRIPTION").contains("facade"));
}

#[test]
fn help_of_each_command_lists_every_setting_with_its_variable_and_default() {
    for role in COMMANDS {
        for flag in ["--help", "-h"] {
            let output = nodegate(&[role.as_str(), flag]);
            assert!(output.status.success(), "{role} {flag}");
            let help = stdout(&output);
            for setting in known_variables(role) {
                for expected in [
                    format!("--{} <{}>", setting.flag, setting.value),
                    setting.name.to_owned(),
                    format!("[default: {}]", setting.default),
                ] {
                    let expected = if setting.is_switch() {
                        expected.replace(
                            &format!("<{}>", setting.value),
                            &format!("[<{}>]", setting.value),
                        )
                    } else {
                        expected
                    };
                    assert!(
                        help.contains(&expected),
                        "{role} {flag} lacks {expected}:\n{help}"
                    );
                }
            }
            // Grouped, in the table's order.
            let positions: Vec<usize> = Group::ALL
                .iter()
                .filter(|g| known_variables(role).iter().any(|s| s.group == **g))
                .map(|g| {
                    help.find(&format!("\n{}:\n", g.title()))
                        .unwrap_or_else(|| panic!("{role}: no {} group:\n{help}", g.title()))
                })
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{role}: groups out of order"
            );
            for tail in [
                "Exit status:",
                "  2  a setting cannot be honoured",
                "Example:",
                &format!("nodegate {role}"),
            ] {
                assert!(help.contains(tail), "{role} {flag} lacks {tail:?}:\n{help}");
            }
        }
    }
}

#[test]
fn help_never_shows_a_secret_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .args(["worker", "--help"])
        .env_clear()
        .env("LOCALAI_REGISTRATION_TOKEN", "Sekr1t-in-env")
        .env("LOCALAI_NATS_PASSWORD", "Pa55-in-env")
        .output()
        .expect("run");
    let help = stdout(&output);
    assert!(
        !help.contains("Sekr1t-in-env") && !help.contains("Pa55-in-env"),
        "{help}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["worker", "--no-such-flag"][..],
        &["no-such-command"][..],
    ] {
        let output = nodegate(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_flag_is_checked_like_its_variable() {
    for role in COMMANDS {
        let output = nodegate(&[role.as_str(), "--log-format", "xml"]);
        assert_eq!(output.status.code(), Some(2), "{role}");
        let err = stderr(&output);
        assert!(
            err.contains("NODEGATE_LOG_FORMAT: \"xml\" is not one of plain or json"),
            "{err}"
        );
        assert!(err.contains("NODEGATE_LOG_FORMAT=json"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn the_agent_worker_refuses_a_bad_log_filter() {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegate"))
        .arg("agent-worker")
        .env_clear()
        .env("RUST_LOG", "bogus===")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("nodegate agent-worker: RUST_LOG: \"bogus===\""));
}
