//! `nodegate stage`: copy files to and from a worker's file-transfer server (LocalAI's
//! `/v1/files` API), resumably, with [`crate::tokio_adapter::stage::Stager`].
//!
//! ```text
//! export LOCALAI_REGISTRATION_TOKEN=change-me
//! nodegate stage push model.gguf http://worker:50050 models/x.gguf
//! nodegate stage pull http://worker:50050 models/x.gguf ./x.gguf
//! nodegate stage ls   http://worker:50050 models/
//! nodegate stage temp http://worker:50050
//! ```
//!
//! - **push FILE URL KEY** hashes FILE (shown as its own step), asks the worker with one `HEAD`
//!   whether it already holds the same bytes ("already there": nothing is sent), otherwise
//!   uploads, resuming from what the worker kept of an earlier attempt. Interrupt it (Ctrl-C, a
//!   dropped connection, a killed process) and run the same command again: it sends only the
//!   rest. Prints the file's path on the worker on stdout.
//! - **pull URL KEY FILE** downloads KEY into FILE (a directory: the key's file name inside it)
//!   through `FILE.partial`, resumed by the next pull, verified against the worker's hash, then
//!   renamed into place.
//! - **ls URL PREFIX** prints the files under PREFIX (e.g. `models/`), one per line.
//! - **temp URL** allocates an empty temp file in the worker's staging root and prints its path.
//!
//! The token comes from `LOCALAI_REGISTRATION_TOKEN` (the worker's token; unset or empty: no
//! `Authorization` header). It is never printed. Progress bars with rate and ETA go to stderr;
//! when stderr is not a terminal, plain lines are written instead (every 10 %).
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (uploaded, already there, downloaded, listed) |
//! | 1 | the transfer failed (worker unreachable after the retries, 5xx, 413 too large, 507 disk full, 404, 409 conflict, hash mismatch) |
//! | 2 | usage or bad input (arguments, URL, key, local file; the worker refused the request with 400) |
//! | 3 | the worker refused the token (401/403): set `LOCALAI_REGISTRATION_TOKEN`; never retried |
//! | 130 | interrupted (Ctrl-C); run the same command again to resume |

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::staging::{Note, TOKEN_VARIABLE, TransferError};
use crate::tokio_adapter::stage::{Progress, StageError, Stager};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_AUTH: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

const AFTER_HELP: &str = "\
Environment:
  LOCALAI_REGISTRATION_TOKEN  the worker's token (sent as a bearer token; never printed)

Exit codes:
  0    done (uploaded, already there, downloaded, listed)
  1    the transfer failed (unreachable after retries, 5xx, 413, 507, 404, 409, hash mismatch)
  2    usage or bad input (arguments, URL, key, local file; the worker answered 400)
  3    the worker refused the token (401/403); never retried
  130  interrupted; run the same command again to resume";

/// Copy files to and from a worker, resumably.
#[derive(Parser, Debug)]
#[command(
    name = "stage",
    version,
    about = "Copy files to and from a worker's file server (LocalAI's /v1/files API), resumably",
    after_help = AFTER_HELP
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload FILE to KEY (skipped when the worker holds the same bytes; resumes).
    Push {
        /// The local file.
        file: PathBuf,
        /// The worker's file server, e.g. http://worker:50050.
        url: String,
        /// The key on the worker, e.g. models/x.gguf.
        key: String,
    },
    /// Download KEY into FILE (resumes a partial; verified against the worker's hash).
    Pull {
        /// The worker's file server.
        url: String,
        /// The key on the worker.
        key: String,
        /// The local file, or a directory to put it in.
        file: PathBuf,
    },
    /// List the files under PREFIX.
    Ls {
        /// The worker's file server.
        url: String,
        /// A key prefix (a directory), e.g. models/.
        prefix: String,
    },
    /// Allocate an empty temp file in the worker's staging root.
    Temp {
        /// The worker's file server.
        url: String,
    },
}

/// The command line of `nodegate stage`.
pub(super) fn command() -> clap::Command {
    Args::command().display_name("nodegate stage")
}

/// Runs `nodegate stage` with parsed command-line matches.
pub(super) fn main(matches: &ArgMatches) -> ExitCode {
    let args = match Args::from_arg_matches(matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stage: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            code = run(args.command) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "\nstage: interrupted; the worker keeps what it received — run the same \
                     command again to resume"
                );
                EXIT_INTERRUPTED
            }
        }
    });
    ExitCode::from(code)
}

async fn run(command: Command) -> u8 {
    let token = std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty());
    let url = match &command {
        Command::Push { url, .. }
        | Command::Pull { url, .. }
        | Command::Ls { url, .. }
        | Command::Temp { url } => url.clone(),
    };
    let stager = match Stager::new(&url, token.as_deref()) {
        Ok(stager) => stager,
        Err(error) => return fail(&error),
    };
    if token.is_none() {
        eprintln!("stage: {TOKEN_VARIABLE} is not set: sending no token");
    }
    let bars = Bars::new(match command {
        Command::Pull { .. } => "verifying",
        _ => "hashing",
    });
    let result = match command {
        Command::Push { file, key, .. } => stager.push(&file, &key, &bars).await.map(|pushed| {
            bars.finish();
            if pushed.skipped {
                eprintln!(
                    "stage: already there: the worker holds the same {} bytes (sha256 {})",
                    pushed.size, pushed.sha256
                );
            } else if pushed.resumed_from > 0 {
                eprintln!(
                    "stage: uploaded {key}: resumed at byte {}, sent {} of {} bytes",
                    pushed.resumed_from, pushed.sent, pushed.size
                );
            } else {
                eprintln!("stage: uploaded {key}: {} bytes", pushed.size);
            }
            println!("{}", pushed.local_path);
        }),
        Command::Pull { key, file, .. } => {
            let file = destination(&file, &key);
            stager.pull(&key, &file, &bars).await.map(|pulled| {
                bars.finish();
                let check = if pulled.verified {
                    "sha256 verified"
                } else {
                    "the worker gave no hash to verify"
                };
                let resumed = if pulled.resumed_from > 0 {
                    format!(", resumed at byte {}", pulled.resumed_from)
                } else {
                    String::new()
                };
                eprintln!(
                    "stage: downloaded {key} to {}: {} bytes{resumed}, {check}",
                    file.display(),
                    pulled.size
                );
            })
        }
        Command::Ls { prefix, .. } => stager.list(&prefix).await.map(|files| {
            for file in files {
                println!("{file}");
            }
        }),
        Command::Temp { .. } => stager.alloc_temp().await.map(|path| println!("{path}")),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            bars.finish();
            fail(&error)
        }
    }
}

/// A directory destination gets the key's file name.
fn destination(file: &Path, key: &str) -> PathBuf {
    if file.is_dir() {
        let name = key.rsplit('/').next().unwrap_or(key);
        file.join(name)
    } else {
        file.to_owned()
    }
}

fn fail(error: &StageError) -> u8 {
    eprintln!("stage: {error}");
    if error.is_unauthorized() {
        EXIT_AUTH
    } else if error.is_bad_input()
        || matches!(
            error,
            StageError::Transfer(TransferError::BadRequest { .. })
        )
    {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

/// Progress on stderr: indicatif bars on a terminal, plain lines otherwise.
struct Bars {
    /// The label of the hashing step.
    hashing: &'static str,
    bar: Mutex<Option<(Step, ProgressBar)>>,
    terminal: bool,
    /// Plain mode: the last tenth printed, per step.
    plain: Mutex<(Option<Step>, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Hashing before a push, verifying after a pull.
    Hashing(&'static str),
    Transfer,
}

impl Step {
    fn label(self) -> &'static str {
        match self {
            Self::Hashing(label) => label,
            Self::Transfer => "transfer",
        }
    }
}

impl Bars {
    fn new(hashing: &'static str) -> Self {
        Self {
            hashing,
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
            plain: Mutex::new((None, 0)),
        }
    }

    fn update(&self, step: Step, position: u64, total: u64, fresh: bool) {
        if !self.terminal {
            let mut plain = self.plain.lock().unwrap_or_else(|e| e.into_inner());
            let tenth = (position.saturating_mul(10))
                .checked_div(total)
                .unwrap_or(10);
            if plain.0 != Some(step) || fresh {
                *plain = (Some(step), tenth);
                eprintln!("stage: {}: {position} of {total} bytes", step.label());
            } else if tenth > plain.1 {
                plain.1 = tenth;
                eprintln!(
                    "stage: {}: {}% ({position} of {total} bytes)",
                    step.label(),
                    tenth * 10
                );
            }
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let same = matches!(&*bar, Some((s, _)) if *s == step);
        if !same || fresh {
            if let Some((_, old)) = bar.take() {
                old.finish_and_clear();
            }
            let new = ProgressBar::new(total);
            let template =
                "{msg:>9} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                new.set_style(style.progress_chars("=> "));
            }
            new.set_message(step.label());
            new.set_position(position);
            new.reset_eta();
            new.enable_steady_tick(Duration::from_millis(200));
            *bar = Some((step, new));
        } else if let Some((_, current)) = &*bar {
            current.set_position(position);
        }
    }

    fn finish(&self) {
        if let Some((_, bar)) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    fn say(&self, line: &str) {
        match &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((_, bar)) => bar.println(format!("stage: {line}")),
            None => eprintln!("stage: {line}"),
        }
    }
}

impl Progress for Bars {
    fn hashing(&self, done: u64, total: u64) {
        self.update(Step::Hashing(self.hashing), done, total, false);
    }

    fn transfer_started(&self, offset: u64, total: u64) {
        self.update(Step::Transfer, offset, total, true);
    }

    fn transferred(&self, position: u64, total: u64) {
        self.update(Step::Transfer, position, total, false);
    }

    fn note(&self, note: &Note) {
        // A plain start at byte 0 is the bar itself; everything else is worth a line.
        if !matches!(note, Note::Sending { offset: 0, .. }) {
            self.say(&note.to_string());
        }
    }
}
