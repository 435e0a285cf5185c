//! The `nodegate` command: one subcommand per role, with flags, environment variables and
//! `--help` built from the core's settings table ([`crate::config::SETTINGS`]), and two tools.
//!
//! - `nodegate worker`: LocalAI's supervisor worker ([`crate::tokio_adapter::member::run_worker`]);
//! - `nodegate frontend`: the reference frontend
//!   ([`crate::tokio_adapter::frontend::run_frontend`]): node registration and approval, minted
//!   NATS credentials, the health monitor, admin routes, a registry in SQLite;
//! - `nodegate agent-worker`: LocalAI's agent worker
//!   ([`crate::tokio_adapter::member::start_agent`]), logging each message it receives;
//! - `nodegate stage push|pull|ls|temp`: the resumable staging client
//!   ([`crate::tokio_adapter::stage::Stager`]);
//! - `nodegate nats-setup DIR [PORT]`: the keys and configuration of an operator-mode NATS
//!   ([`crate::tokio_adapter::frontend::setup::run`]).
//!
//! The reference programs in `examples/` are these commands as programs of their own:
//! [`worker`], [`frontend`], [`agent_worker`], [`stage`] and [`nats_setup`]; `worker_smol`
//! (feature `smol`) is `nodegate worker` with its member on smol.
//!
//! Every run of a role goes the same way: the settings are collected from flags and the
//! environment (a flag wins), the files they name are read, [`Config::parse`] checks every
//! value, the log filter is checked by the log library, and — unless the posture refuses — the
//! role checks that its address (and the worker its roots, the frontend its registry) is
//! usable before it starts. A value that cannot be honoured stops the program with
//! [`EXIT_CONFIG`] and one message that names the variable and a valid example.
//!
//! ```no_run
//! // A program of your own that is the `nodegate` command:
//! fn main() -> std::process::ExitCode {
//!     nodegate::cli::main()
//! }
//! ```
//!
//! The command line of a role, for documentation or tests:
//!
//! ```
//! use nodegate::config::Role;
//!
//! let help = nodegate::cli::command(Role::Worker).render_long_help().to_string();
//! assert!(help.contains("--max-upload-size <SIZE>"));
//! assert!(help.contains("[default: 50GiB]"));
//! ```

mod agent;
mod frontend;
mod help;
mod logging;
mod nats_setup;
mod preflight;
mod stage;
mod worker;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::ArgMatches;

use crate::config::{Config, ConfigError, FileContents, Host, Role, Vars, known_variables};

pub use help::{command, markdown_table, nodegate_command, own_settings_table};

/// Exit status of a clean stop (signal, or the frontend's stop request).
pub const EXIT_OK: u8 = 0;
/// Exit status when the posture refuses to start, or the member fails while running.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when a setting cannot be honoured: an invalid value, or an address or directory
/// it names that cannot be used. Also clap's status for a command-line usage error.
pub const EXIT_CONFIG: u8 = 2;

/// The roles that have a subcommand, in `--help` order (the tools `stage` and `nats-setup`
/// follow them).
pub const COMMANDS: [Role; 3] = [Role::Worker, Role::Frontend, Role::AgentWorker];

/// The subcommands that are tools rather than roles, in `--help` order.
pub const TOOLS: [&str; 2] = ["stage", "nats-setup"];

/// Runs `nodegate` with the process's arguments and returns its exit status.
#[must_use]
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs `nodegate` with `args` (the first is the program name).
#[must_use]
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = nodegate_command().get_matches_from(args);
    match matches.subcommand() {
        Some(("stage", sub)) => stage::main(sub),
        Some(("nats-setup", sub)) => nats_setup::main(sub),
        Some((name, sub)) => match COMMANDS.into_iter().find(|role| role.as_str() == name) {
            Some(role) => run(role, sub, &format!("nodegate {name}")),
            None => ExitCode::from(EXIT_CONFIG),
        },
        // `subcommand_required` makes clap print the usage and exit 2 first.
        None => ExitCode::from(EXIT_CONFIG),
    }
}

/// The reference supervisor worker (`examples/worker.rs`): `nodegate worker` as a program of
/// its own.
#[must_use]
pub fn worker() -> ExitCode {
    role_main(Role::Worker)
}

/// The reference supervisor worker on smol (`examples/worker-smol.rs`): the same flags,
/// posture output and refusals as `nodegate worker` — the same parsing, preflight and posture
/// code — with the cluster member driven by `nodegate-smol`.
#[cfg(feature = "smol")]
#[must_use]
pub fn worker_smol() -> ExitCode {
    let program = "nodegate worker";
    let matches = command(Role::Worker).get_matches();
    // Held to the end: what is still buffered in the log is written when it is dropped.
    let (config, host, _log_flush) = match parse(Role::Worker, &matches, program) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    ExitCode::from(crate::smol_adapter::rt::block_on(worker::run_smol(
        config, host, program,
    )))
}

/// The reference frontend (`examples/frontend.rs`): `nodegate frontend` as a program of its
/// own.
#[must_use]
pub fn frontend() -> ExitCode {
    role_main(Role::Frontend)
}

/// The reference agent worker (`examples/agent-worker.rs`): `nodegate agent-worker` as a
/// program of its own.
#[must_use]
pub fn agent_worker() -> ExitCode {
    role_main(Role::AgentWorker)
}

/// The staging client (`examples/stage.rs`): `nodegate stage` as a program of its own.
#[must_use]
pub fn stage() -> ExitCode {
    stage::main(&stage::command().get_matches())
}

/// The NATS set-up (`examples/nats-setup.rs`): `nodegate nats-setup` as a program of its own.
#[must_use]
pub fn nats_setup() -> ExitCode {
    nats_setup::main(&nats_setup::command().get_matches())
}

fn role_main(role: Role) -> ExitCode {
    let matches = command(role).get_matches();
    run(role, &matches, &format!("nodegate {role}"))
}

/// Runs `role` with parsed command-line matches, on tokio.
fn run(role: Role, matches: &ArgMatches, program: &str) -> ExitCode {
    // Declared before the runtime, so dropped after it: what its last tasks log is written.
    let (config, host, _log_flush) = match parse(role, matches, program) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    // 2. From here the core's start-up machine decides: it evaluates the posture first and
    //    asks to exit (refusal) before it asks for the file server.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match role {
        Role::Worker => runtime.block_on(worker::run(config, host, program)),
        Role::Frontend => runtime.block_on(frontend::run(config, program)),
        Role::AgentWorker => runtime.block_on(agent::run(config, host)),
    };
    ExitCode::from(code)
}

/// The first step of every role, whatever runtime runs it: the settings from the command line
/// and the environment, the files they name, [`Config::parse`] and the log set-up. A value
/// that cannot be honoured is reported here ([`EXIT_CONFIG`]).
fn parse(
    role: Role,
    matches: &ArgMatches,
    program: &str,
) -> Result<(Config, Host, logging::Flush), ExitCode> {
    // 1. Parse: bad values stop here, naming the variable, before anything is bound or created.
    let vars = Vars::from_pairs(known_variables(role).iter().filter_map(|setting| {
        matches
            .get_one::<String>(setting.name)
            .map(|value| (setting.name, value.clone()))
    }));
    let mut files = FileContents::new();
    for (variable, path) in vars.files_to_read() {
        files.insert(variable, std::fs::read(&path).map_err(|e| e.to_string()));
    }
    let host = Host {
        hostname: hostname(),
        pid: std::process::id(),
    };
    let config = match Config::parse(role, &vars, &files, &host) {
        Ok(config) => config,
        Err(error) => return Err(refuse_setting(program, &error, false)),
    };
    match logging::init(&config.logging) {
        Ok(flush) => Ok((config, host, flush)),
        Err(error) => Err(refuse_setting(program, &error, false)),
    }
}

/// Prints one message for a setting that cannot be honoured, and returns [`EXIT_CONFIG`]:
/// through the log once logging is set up (so JSON logs stay JSON), plainly before.
fn refuse_setting(program: &str, error: &ConfigError, logging_ready: bool) -> ExitCode {
    let example = error
        .example()
        .map(|example| format!(" (for example {example})"))
        .unwrap_or_default();
    if logging_ready {
        tracing::error!(variable = error.variable(), "{error}{example}");
    } else {
        eprintln!("{program}: {error}{example}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}
