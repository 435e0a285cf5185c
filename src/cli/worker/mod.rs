//! `nodegate worker`: the supervisor worker. What comes before "run on a runtime" — the
//! roots made absolute, the preflight of the address and the roots, the server's limits from
//! the settings — is [`prepare`], shared by the tokio worker ([`run`]) and the smol worker
//! ([`run_smol`], feature `smol`), so both accept, report and refuse the same settings.

#[cfg(feature = "smol")]
mod smol;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tracing::error;

use super::{EXIT_CONFIG, EXIT_FAILED, preflight, refuse_setting};
use crate::config::{Config, ConfigError, ConfigProblem, Host, MODELS_PATH};
use crate::keys::Roots;
use crate::posture::Posture;
use crate::request::{MetricsAccess, ServerPolicy};
use crate::tokio_adapter::member::{self, WorkerSetup};
use crate::tokio_adapter::{Limits, LogStore, ServerConfig};

/// Runs the supervisor worker on tokio to its exit status.
pub(super) async fn run(config: Config, host: Host, program: &str) -> u8 {
    // A file-size limit (RLIMIT_FSIZE) must fail the upload with EFBIG, not kill the worker:
    // listening for SIGXFSZ replaces its default action for the life of the process.
    let _file_size_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ));
    match prepare(&config, program) {
        Ok(setup) => member::run_worker(config, host, setup).await,
        Err(code) => code,
    }
}

/// Runs the supervisor worker on smol to its exit status.
#[cfg(feature = "smol")]
pub(super) async fn run_smol(config: Config, host: Host, program: &str) -> u8 {
    // As on tokio: SIGXFSZ must fail the upload with EFBIG, not kill the worker.
    let _file_size_signal = async_signal::Signals::new([async_signal::Signal::Xfsz]);
    match prepare(&config, program) {
        Ok(setup) => smol::run(config, host, setup).await,
        Err(code) => code,
    }
}

/// What both runtimes' workers serve: the roots, the checks of the address and the roots
/// (unless the posture refuses: the start-up machine reports that first), the limits.
fn prepare(config: &Config, program: &str) -> Result<WorkerSetup, u8> {
    let Some(worker) = config.worker.as_ref() else {
        error!("no worker settings: Config::parse(Role::Worker) always yields them");
        return Err(EXIT_FAILED);
    };
    let roots = match roots(
        &worker.models_path,
        &worker.staging_dir(),
        &worker.data_dir(),
    ) {
        Ok(roots) => roots,
        Err(error) => {
            let error = ConfigError::new(
                MODELS_PATH,
                ConfigProblem::UnusableDirectory {
                    path: worker.models_path.display().to_string(),
                    reason: format!("cannot be made absolute: {error}"),
                },
            );
            let _ = refuse_setting(program, &error, true);
            return Err(EXIT_CONFIG);
        }
    };
    // A refused posture is the start-up machine's to report (before anything is bound or
    // created); otherwise the address and the roots are checked here, so that what cannot be
    // used is reported as the setting to change rather than as an I/O error.
    if Posture::evaluate(config).refusal().is_none()
        && let Err(error) = preflight::worker(worker, &roots)
    {
        let _ = refuse_setting(program, &error, true);
        return Err(EXIT_CONFIG);
    }
    let limits = Limits {
        header_read_timeout: worker.header_timeout,
        body_idle_timeout: worker.body_idle_timeout,
        max_connections: worker.max_connections,
        first_head_timeout: worker.first_head_timeout,
        max_head_per_remote: worker.max_head_per_remote,
        max_log_streams: worker.max_log_streams,
        min_body_rate: worker.min_body_rate,
        body_rate_window: worker.body_rate_window,
        refusal_log_interval: worker.refusal_log_interval,
        metrics_access: if worker.metrics_public {
            MetricsAccess::Public
        } else {
            MetricsAccess::Protected
        },
        shutdown_grace: Duration::from_secs(5),
        ..Limits::default()
    };
    Ok(WorkerSetup {
        server: ServerConfig {
            policy: ServerPolicy {
                auth: config.auth_policy(),
                max_upload: worker.max_upload_size,
            },
            roots,
            limits,
            logs: LogStore::new(),
            readiness: None,
        },
        bind: worker.http_bind(),
    })
}

/// Makes the three roots absolute (relative to the current directory) and lexically clean.
fn roots(models: &Path, staging: &Path, data: &Path) -> std::io::Result<Roots> {
    let cwd = std::env::current_dir()?;
    let absolute = |p: &Path| clean(&cwd.join(p));
    Ok(Roots {
        models: absolute(models),
        staging: absolute(staging),
        data: absolute(data),
    })
}

fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
