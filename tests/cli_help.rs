//! The installed command as an operator meets it: `nodegate --version`, `nodegate <command>
//! --help` listing every setting of the table with its flag, variable and default, the tools
//! `stage` and `nats-setup`, and usage errors and bad values exiting 2 before anything is bound
//! or created.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nodegate::cli::{COMMANDS, TOOLS};
use nodegate::config::{Config, FileContents, Group, Host, Role, Vars, known_variables};
use nodegate::tokio_adapter::Limits;

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

#[test]
fn top_level_help_lists_every_command() {
    let output = nodegate(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    let names: Vec<&str> = COMMANDS
        .iter()
        .map(|role| role.as_str())
        .chain(TOOLS)
        .collect();
    assert_eq!(
        names,
        ["worker", "frontend", "agent-worker", "stage", "nats-setup"]
    );
    for name in names {
        assert!(
            help.contains(&format!("\n  {name} ")),
            "lacks {name}:\n{help}"
        );
        let output = nodegate(&[name, "--version"]);
        assert_eq!(
            stdout(&output).trim(),
            format!("nodegate {name} {}", env!("CARGO_PKG_VERSION")),
            "{name}"
        );
    }
}

#[test]
fn stage_help_lists_its_commands_environment_and_exit_codes() {
    let output = nodegate(&["stage", "--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for expected in [
        "Usage: nodegate stage <COMMAND>",
        "push",
        "pull",
        "ls",
        "temp",
        "LOCALAI_REGISTRATION_TOKEN",
        "Exit codes:",
        "  3    the worker refused the token",
        "  130  interrupted",
    ] {
        assert!(help.contains(expected), "lacks {expected:?}:\n{help}");
    }
    let output = nodegate(&["stage", "push", "--help"]);
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("Usage: nodegate stage push <FILE> <URL> <KEY>"),
        "{}",
        stdout(&output)
    );
    // A missing argument is a usage error.
    assert_eq!(
        nodegate(&["stage", "push", "only-a-file"]).status.code(),
        Some(2)
    );
}

#[test]
fn nats_setup_help_gives_its_arguments_default_port_and_exit_codes() {
    let output = nodegate(&["nats-setup", "--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for expected in [
        "Usage: nodegate nats-setup <DIR> [PORT]",
        "[default: 4222]",
        "Exit status:",
        "  2  usage",
        "Example:",
    ] {
        assert!(help.contains(expected), "lacks {expected:?}:\n{help}");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("nats");
    let dir = dir.to_str().expect("utf-8 path");
    for args in [
        &["nats-setup"][..],
        &["nats-setup", dir, "0"],
        &["nats-setup", dir, "port"],
    ] {
        let output = nodegate(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(!Path::new(dir).exists(), "a usage error writes nothing");
}

/// Runs `nodegate <args>` in `dir` with only `vars` (and `PATH`) set; kills it if it is still
/// running after 15 s (a command expected to refuse must not start serving).
fn run_in(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nodegate"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn nodegate");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "nodegate {args:?} kept running:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts exit 2 with one line on stderr that names every one of `names`, shows none of
/// `secrets`, and left `dir` empty (no registry file, no root).
fn assert_refused(output: &Output, dir: &Path, names: &[&str], secrets: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one message:\n{err}");
    for name in names {
        assert!(err.contains(name), "does not name {name}: {err}");
    }
    for secret in secrets {
        assert!(
            !err.contains(secret) && !stdout(output).contains(secret),
            "{err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir).expect("read dir").collect();
    assert!(left.is_empty(), "nothing may be created: {left:?}");
}

#[test]
fn the_frontend_refuses_an_admin_token_equal_to_the_registration_token() {
    let tmp = tempfile::tempdir().expect("tmp");
    let token = "Same-Token_for-both";
    for (args, vars) in [
        (
            &["frontend"][..],
            &[
                ("LOCALAI_REGISTRATION_TOKEN", token),
                ("NODEGATE_ADMIN_TOKEN", token),
            ][..],
        ),
        (
            &["frontend", "--admin-token", token][..],
            &[("LOCALAI_REGISTRATION_TOKEN", token)][..],
        ),
    ] {
        let output = run_in(tmp.path(), args, vars);
        assert_refused(
            &output,
            tmp.path(),
            &[
                "nodegate frontend: NODEGATE_ADMIN_TOKEN",
                "must differ from LOCALAI_REGISTRATION_TOKEN",
            ],
            &[token],
        );
    }
}

#[test]
fn the_frontend_refuses_a_negative_or_unparsable_duration_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, value, says) in [
        ("NODEGATE_STALE_AFTER", "-5s", "is negative"),
        (
            "NODEGATE_HEALTH_CHECK_INTERVAL",
            "often",
            "is not a duration",
        ),
        ("LOCALAI_NATS_WORKER_JWT_TTL", "-1h", "is negative"),
    ] {
        let output = run_in(tmp.path(), &["frontend"], &[(name, value)]);
        assert_refused(
            &output,
            tmp.path(),
            &[
                &format!("{name}: \"{value}\" {says}"),
                &format!("(for example {name}="),
            ],
            &[],
        );
    }
}

#[test]
fn the_frontend_refuses_an_address_in_use_or_a_registry_it_cannot_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let output = run_in(tmp.path(), &["frontend"], &[("LOCALAI_ADDRESS", &taken)]);
    assert_refused(
        &output,
        tmp.path(),
        &["LOCALAI_ADDRESS", "already in use"],
        &[],
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let inside = tempfile::tempdir().expect("tmp");
    let registry = inside.path().join("no-such-dir").join("frontend.sqlite");
    let registry = registry.to_str().expect("utf-8 path");
    let output = run_in(
        tmp.path(),
        &["frontend"],
        &[("LOCALAI_ADDRESS", &free), ("NODEGATE_REGISTRY", registry)],
    );
    assert_refused(&output, tmp.path(), &["NODEGATE_REGISTRY", registry], &[]);
    for address in ["localhost", ":0"] {
        let output = run_in(tmp.path(), &["frontend"], &[("LOCALAI_ADDRESS", address)]);
        assert_refused(&output, tmp.path(), &["LOCALAI_ADDRESS"], &[]);
    }
}

#[test]
fn a_bad_worker_limit_exits_2_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, flag, value) in [
        ("NODEGATE_MIN_BODY_RATE", "--min-body-rate", "fast"),
        ("NODEGATE_FIRST_HEAD_TIMEOUT", "--first-head-timeout", "-1s"),
        ("NODEGATE_MAX_HEAD_PER_REMOTE", "--max-head-per-remote", "0"),
        ("NODEGATE_MAX_LOG_STREAMS", "--max-log-streams", "lots"),
        (
            "NODEGATE_BODY_RATE_WINDOW",
            "--body-rate-window",
            "1 minute",
        ),
        (
            "NODEGATE_REFUSAL_LOG_INTERVAL",
            "--refusal-log-interval",
            "-10s",
        ),
    ] {
        let expected = format!("nodegate worker: {name}: \"{value}\"");
        let output = run_in(tmp.path(), &["worker"], &[(name, value)]);
        assert_refused(&output, tmp.path(), &[&expected, &format!("{name}=")], &[]);
        let output = run_in(tmp.path(), &["worker", flag, value], &[]);
        assert_refused(&output, tmp.path(), &[&expected], &[]);
    }
}

#[test]
fn the_tables_worker_limits_are_the_servers_defaults() {
    let host = Host {
        hostname: Some("h".into()),
        pid: 1,
    };
    let config = Config::parse(Role::Worker, &Vars::default(), &FileContents::new(), &host)
        .expect("the defaults parse");
    let worker = config.worker.expect("worker settings");
    let server = Limits::default();
    assert_eq!(worker.header_timeout, server.header_read_timeout);
    assert_eq!(worker.body_idle_timeout, server.body_idle_timeout);
    assert_eq!(worker.max_connections, server.max_connections);
    assert_eq!(worker.first_head_timeout, server.first_head_timeout);
    assert_eq!(worker.max_head_per_remote, server.max_head_per_remote);
    assert_eq!(worker.max_log_streams, server.max_log_streams);
    assert_eq!(worker.min_body_rate, server.min_body_rate);
    assert_eq!(worker.body_rate_window, server.body_rate_window);
    assert_eq!(worker.refusal_log_interval, server.refusal_log_interval);
}
