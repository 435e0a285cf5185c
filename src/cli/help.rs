//! The command line and `--help` of each role, and the README's settings table, generated from
//! the settings table.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command};

use super::COMMANDS;
use crate::config::{Group, Role, SETTINGS, Setting, known_variables};

/// The `nodegate` command with its subcommands.
#[must_use]
pub fn nodegate_command() -> Command {
    let mut nodegate = Command::new("nodegate")
        .version(env!("CARGO_PKG_VERSION"))
        .about("nodegate: the authenticated, fail-closed data plane of LocalAI-style distributed inference clusters")
        .long_about(
            "nodegate: the authenticated, fail-closed data plane of LocalAI-style distributed \
             inference clusters (a frontend, GPU workers, a NATS bus). Wire-compatible with \
             LocalAI: the same routes, headers, status codes and environment variables.",
        )
        .subcommand_required(true)
        .arg_required_else_help(true)
        .propagate_version(true)
        .after_help(
            "Run `nodegate <COMMAND> --help` for the settings of a command. Settings are flags \
             or the LocalAI environment variables shown with them; a flag wins.",
        );
    for role in COMMANDS {
        nodegate = nodegate.subcommand(command(role));
    }
    nodegate
        .subcommand(super::stage::command())
        .subcommand(super::nats_setup::command())
}

/// The command line of `role`: one flag per setting the role honours, grouped, each with its
/// environment variable and default, then the exit statuses and an example.
#[must_use]
pub fn command(role: Role) -> Command {
    let (about, long_about, example) = describe(role);
    let mut command = Command::new(role.as_str())
        .display_name(format!("nodegate {role}"))
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .long_about(long_about)
        .after_help(after_help(role, example))
        .after_long_help(after_help(role, example));
    for setting in known_variables(role) {
        command = command.arg(arg(setting));
    }
    command
}

fn arg(setting: &Setting) -> Arg {
    let mut arg = Arg::new(setting.name)
        .long(setting.flag)
        .env(setting.name)
        .value_name(setting.value)
        .help(format!(
            "{} [default: {}]",
            setting.meaning, setting.default
        ))
        .help_heading(setting.group.title())
        .action(ArgAction::Set)
        .allow_hyphen_values(true)
        .hide_env_values(setting.secret);
    if setting.is_switch() {
        arg = arg
            .num_args(0..=1)
            .require_equals(false)
            .default_missing_value("true");
    }
    arg
}

fn describe(role: Role) -> (&'static str, &'static str, &'static str) {
    match role {
        Role::Worker => (
            "Run a supervisor worker: the authenticated file-transfer server, registration with the frontend, NATS",
            "Run a LocalAI-compatible supervisor worker. It evaluates its security posture before \
             touching the network or the disk (refusing to start when authentication is required \
             but not configured), serves /v1/files*, /v1/files-list/*, /v1/backend-logs*, /healthz \
             and /readyz, registers with the frontend (LOCALAI_REGISTER_TO), answers its NATS node \
             subjects (LOCALAI_NATS_URL) and heartbeats; on SIGINT or SIGTERM it drains, \
             deregisters and exits 0. Without LOCALAI_REGISTER_TO it serves files only.",
            "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/localai-token \\\n    \
             LOCALAI_MODELS_PATH=/srv/localai/models \\\n    \
             LOCALAI_REGISTER_TO=http://frontend:8080 LOCALAI_NATS_URL=nats://nats:4222 \\\n    \
             nodegate worker",
        ),
        Role::AgentWorker => (
            "Run an agent worker: registration as an agent, an authenticated NATS connection, its subjects",
            "Run a LocalAI-compatible agent worker. It registers with the frontend as node_type \
             agent, connects to NATS with the agent's credential (static, the service user, or \
             minted by the frontend), confirms every agent subscription, heartbeats and logs each \
             message it receives; on SIGINT or SIGTERM it deregisters and exits 0.",
            "LOCALAI_REGISTER_TO=http://frontend:8080 LOCALAI_NATS_URL=nats://nats:4222 \\\n    \
             LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/localai-token nodegate agent-worker",
        ),
        Role::Frontend => (
            "Run a frontend: node registration and approval, minted NATS credentials, the health monitor, admin routes",
            "Run the reference frontend: LocalAI's node endpoints (/api/node/*) behind the \
             registration token, admin routes (/api/nodes/*: list, approve, delete, stage a file \
             to a worker) behind NODEGATE_ADMIN_TOKEN, per-node NATS user JWTs minted from \
             LOCALAI_NATS_ACCOUNT_SEED at registration, a health monitor that marks silent nodes \
             offline, and a registry kept in an SQLite file. It evaluates its security posture \
             before binding or creating anything (refusing to start when authentication is \
             required but not configured), connects to NATS when LOCALAI_NATS_URL is set \
             (/readyz follows the link), and on SIGINT or SIGTERM stops and exits 0.",
            "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/localai-token \\\n    \
             NODEGATE_ADMIN_TOKEN=\"$(cat /run/secrets/nodegate-admin)\" \\\n    \
             LOCALAI_NATS_URL=nats://nats:4222 LOCALAI_NATS_ACCOUNT_SEED=\"$(cat nats/account.nk)\" \\\n    \
             nodegate frontend",
        ),
    }
}

fn after_help(role: Role, example: &str) -> String {
    let stopped = match role {
        Role::Frontend => "SIGTERM or SIGINT",
        Role::Worker | Role::AgentWorker => "SIGTERM, SIGINT, or the frontend's stop request",
    };
    format!(
        "Booleans accept true/false, 1/0, t/f, yes/no, on/off; a bare switch means true. \
         Durations use Go syntax (10s, 1m30s). Secrets are never printed.\n\n\
         Exit status:\n  \
         0  stopped cleanly ({stopped})\n  \
         1  refused to start (a *_REQUIRE_AUTH switch without its secret), or failed while running\n  \
         2  a setting cannot be honoured (invalid value, unusable address or directory); the \
         message names it\n\n\
         Example:\n  {example}"
    )
}

/// The README's settings table: one Markdown table per group, for the settings of the roles
/// that have a subcommand ([`super::COMMANDS`]). `tests/readme.rs` checks that README.md
/// holds exactly this text between `<!-- settings:begin -->` and `<!-- settings:end -->`.
#[must_use]
pub fn markdown_table() -> String {
    let mut out = String::new();
    for group in Group::ALL {
        let rows: Vec<&Setting> = SETTINGS
            .iter()
            .filter(|s| s.group == group && COMMANDS.iter().any(|&role| s.applies_to(role)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n**{}**\n\n| Variable | Flag | Default | Commands | Meaning |\n|---|---|---|---|---|\n",
            group.title()
        );
        for s in rows {
            let roles: Vec<&str> = COMMANDS
                .iter()
                .filter(|&&role| s.applies_to(role))
                .map(|role| role.as_str())
                .collect();
            let secret = if s.secret { " (secret)" } else { "" };
            let _ = writeln!(
                out,
                "| `{}`{secret} | `--{}` | {} | {} | {} |",
                s.name,
                s.flag,
                code_or_words(s.default),
                roles.join(", "),
                escape(s.meaning)
            );
        }
    }
    out
}

/// The settings only `role` has, as one Markdown table (the README's frontend section shows
/// the frontend's; `tests/readme.rs` checks it between `<!-- <role>-settings:begin` and
/// `<!-- <role>-settings:end -->`).
#[must_use]
pub fn own_settings_table(role: Role) -> String {
    let mut out = String::from("\n| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n");
    for s in known_variables(role) {
        if Role::ALL
            .iter()
            .any(|&other| other != role && s.applies_to(other))
        {
            continue;
        }
        let secret = if s.secret { " (secret)" } else { "" };
        let _ = writeln!(
            out,
            "| `{}`{secret} | `--{}` | {} | {} |",
            s.name,
            s.flag,
            code_or_words(s.default),
            escape(s.meaning)
        );
    }
    out
}

/// Defaults that are values go in backticks; descriptions (`unset (anonymous)`) do not.
fn code_or_words(default: &str) -> String {
    if default.contains(' ') || default.starts_with("unset") {
        escape(default)
    } else {
        format!("`{default}`")
    }
}

/// Escapes what Markdown would take for HTML or a cell boundary.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "\\<")
        .replace('>', "\\>")
}
