//! `nodegate nats-setup DIR [PORT]`: writes an operator, an account, the frontend's service
//! user and a `nats-server.conf` (operator mode, memory resolver) into DIR, keeping existing
//! keys, with every file mode 0600 ([`crate::tokio_adapter::frontend::setup::run`]); prints the
//! environment lines the frontend needs (they read the seeds from their files: no seed is ever
//! printed).
//!
//! ```text
//! nodegate nats-setup ./nats 4222
//! nats-server -c ./nats/nats-server.conf
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Arg, ArgMatches, Command, value_parser};

use super::{EXIT_FAILED, EXIT_OK};
use crate::tokio_adapter::frontend::setup;

/// The port written into `nats-server.conf` when none is given.
const DEFAULT_PORT: u16 = 4222;

/// The command line of `nodegate nats-setup`.
pub(super) fn command() -> Command {
    Command::new("nats-setup")
        .display_name("nodegate nats-setup")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Write the keys and server configuration of an operator-mode NATS for a frontend")
        .long_about(
            "Write an operator, an account, the frontend's service user and a nats-server.conf \
             (operator mode, memory resolver) into DIR, with the directory mode 0700 and every \
             file 0600. Keys already in DIR are kept, so running it again changes nothing but \
             the port. It prints the environment lines the frontend needs; they read the seeds \
             from their files, and no seed is ever printed.",
        )
        .arg(
            Arg::new("dir")
                .value_name("DIR")
                .required(true)
                .value_parser(value_parser!(PathBuf))
                .help("directory to write into (created when missing)"),
        )
        .arg(
            Arg::new("port")
                .value_name("PORT")
                .value_parser(value_parser!(u16).range(1..))
                .help(format!(
                    "client port of the NATS server, 1 to 65535 [default: {DEFAULT_PORT}]"
                )),
        )
        .after_help(
            "Exit status:\n  \
             0  written (or kept)\n  \
             1  DIR or a file in it cannot be written\n  \
             2  usage (no DIR, a PORT that is not 1 to 65535)\n\n\
             Example:\n  \
             nodegate nats-setup ./cluster/nats 4222 && \
             nats-server -c ./cluster/nats/nats-server.conf",
        )
}

/// Runs `nodegate nats-setup` with parsed command-line matches.
pub(super) fn main(matches: &ArgMatches) -> ExitCode {
    let Some(dir) = matches.get_one::<PathBuf>("dir") else {
        // `required(true)`: clap has printed the usage and exited 2 already.
        return ExitCode::from(super::EXIT_CONFIG);
    };
    let port = matches
        .get_one::<u16>("port")
        .copied()
        .unwrap_or(DEFAULT_PORT);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match setup::run(dir, port, now) {
        Ok(report) => {
            for name in &report.created {
                println!("created {}/{name}", report.dir.display());
            }
            for name in &report.kept {
                println!("kept    {}/{name}", report.dir.display());
            }
            println!(
                "wrote   {}/nats-server.conf (account {})",
                report.dir.display(),
                report.account_public_key
            );
            println!();
            println!(
                "Start the server:  nats-server -c {}/nats-server.conf",
                report.dir.display()
            );
            println!("Frontend environment:");
            for line in &report.env_lines {
                println!("  {line}");
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("nats-setup: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
