//! The log subscriber: `NODEGATE_LOG_FORMAT` and `RUST_LOG`, checked before anything runs.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, ConfigProblem, LOG_FILTER, LogFormat, LoggingConfig};

/// Installs the global subscriber.
///
/// # Errors
/// A `RUST_LOG` the filter library refuses, naming the variable.
pub(super) fn init(config: &LoggingConfig) -> Result<(), ConfigError> {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A subscriber installed already (a test harness, an embedding program) is kept.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    Ok(())
}
