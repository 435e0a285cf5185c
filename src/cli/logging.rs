//! The log subscriber: `NODEGATE_LOG_FORMAT` and `RUST_LOG`, checked before anything runs.
//!
//! Events go to stderr through [`Sink`]. When stderr is not a terminal, the access log — one
//! line per request, the only per-request INFO event — collects in a 64 KiB buffer written when
//! it fills and at least every [`FLUSH_EVERY`] (as nginx's `access_log ... buffer=64k`), so a
//! busy worker spends one `write` per few hundred requests instead of one each. Every other
//! event (the posture, start-up and shutdown, uploads, warnings and errors) is written at once,
//! together with the access lines before it, so nothing but access lines is ever held back and
//! the order of lines is kept. A process killed with SIGKILL loses at most the access lines of
//! its last [`FLUSH_EVERY`]. On a terminal every line is written as it comes.

use std::io::{self, IsTerminal as _, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{ConfigError, ConfigProblem, LOG_FILTER, LogFormat, LoggingConfig};

/// Size of the buffer of quiet lines.
const BUFFER: usize = 64 * 1024;
/// Longest time a buffered line waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Installs the global subscriber and returns the guard that writes what is still buffered
/// when it is dropped (keep it until the program ends).
///
/// # Errors
/// A `RUST_LOG` the filter library refuses, naming the variable.
pub(super) fn init(config: &LoggingConfig) -> Result<Flush, ConfigError> {
    let filter = EnvFilter::builder()
        .parse(&config.filter)
        .map_err(|error| {
            ConfigError::new(
                LOG_FILTER,
                ConfigProblem::InvalidLogFilter {
                    value: config.filter.chars().take(64).collect(),
                    reason: error.to_string(),
                },
            )
        })?;
    let terminal = io::stderr().is_terminal();
    let sink = Sink::new(if terminal { 0 } else { BUFFER });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(sink.clone());
    // A subscriber installed already (a test harness, an embedding program) is kept.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    if !terminal {
        let flusher = sink.clone();
        // Without the thread buffered lines would still be written, only later (when the
        // buffer fills or at exit): failing to start it is not worth refusing to run for.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flusher.flush();
                }
            });
    }
    Ok(Flush(sink))
}

/// Writes the buffered log lines when dropped.
pub(super) struct Flush(Sink);

impl Drop for Flush {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// Stderr behind a buffer shared by every thread.
#[derive(Clone)]
struct Sink {
    buffer: Arc<Mutex<io::BufWriter<io::Stderr>>>,
}

impl Sink {
    fn new(capacity: usize) -> Self {
        Self {
            buffer: Arc::new(Mutex::new(io::BufWriter::with_capacity(
                capacity,
                io::stderr(),
            ))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, io::BufWriter<io::Stderr>> {
        // A panic while a line was being copied leaves at worst a partial line: keep logging.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flush(&self) {
        let _ = self.lock().flush();
    }
}

/// One event's writer: the buffer, written through unless the event is an access line.
struct EventWriter<'a> {
    sink: &'a Sink,
    urgent: bool,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.sink.lock().write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        // One lock per event: the formatter hands over the whole line at once.
        self.sink.lock().write_all(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.lock().flush()
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if self.urgent {
            self.sink.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            sink: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            sink: self,
            urgent: *meta.level() <= Level::WARN
                || meta.target() != nodegate_http::ACCESS_LOG_TARGET,
        }
    }
}
