//! What a role checks before it binds and creates: that its address can be listened on, that
//! the worker's roots are (or can become) writable directories. Each failure is a
//! [`ConfigError`] naming the setting to change. Nothing is left behind: the probe listener
//! is closed and the probe file removed before the server starts.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs as _};
use std::path::Path;

use crate::config::{
    ADDRESS, ConfigError, ConfigProblem, FrontendConfig, HTTP_ADDR, MODELS_PATH, WorkerConfig,
};
use crate::keys::Roots;

/// Checks the listen address of a frontend.
///
/// # Errors
/// [`ADDRESS`] when it cannot be resolved or listened on.
pub(super) fn frontend(frontend: &FrontendConfig) -> Result<(), ConfigError> {
    let bind = frontend.bind();
    let addrs = resolve(&bind, ADDRESS)?;
    listenable(&addrs, bind, ADDRESS)
}

/// Checks the bind address and the three roots of a worker.
///
/// # Errors
/// The first unusable one: [`HTTP_ADDR`] or [`MODELS_PATH`] (staging and data are its
/// siblings).
pub(super) fn worker(worker: &WorkerConfig, roots: &Roots) -> Result<(), ConfigError> {
    let bind = worker.http_bind();
    let addrs = resolve(&bind, HTTP_ADDR)?;
    for (path, what) in [
        (&roots.models, "the models directory"),
        (
            &roots.staging,
            "the staging directory, ../staging of LOCALAI_MODELS_PATH",
        ),
        (
            &roots.data,
            "the data directory, ../data of LOCALAI_MODELS_PATH",
        ),
    ] {
        usable_directory(path).map_err(|reason| {
            ConfigError::new(
                MODELS_PATH,
                ConfigProblem::UnusableDirectory {
                    path: path.display().to_string(),
                    reason: format!("{reason} ({what})"),
                },
            )
        })?;
    }
    listenable(&addrs, bind, HTTP_ADDR)
}

/// The socket addresses of `bind`, the value of `variable`.
fn resolve(bind: &str, variable: &'static str) -> Result<Vec<SocketAddr>, ConfigError> {
    bind.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|error| {
            ConfigError::new(
                variable,
                ConfigProblem::UnusableAddress {
                    value: bind.to_owned(),
                    reason: format!("cannot resolve it: {error}"),
                },
            )
        })
}

/// `Ok` when a listener can be bound on `addrs` (and is closed again at once).
fn listenable(
    addrs: &[SocketAddr],
    bind: String,
    variable: &'static str,
) -> Result<(), ConfigError> {
    match TcpListener::bind(addrs) {
        Ok(listener) => {
            drop(listener);
            Ok(())
        }
        Err(error) if error.kind() == ErrorKind::AddrInUse => Err(ConfigError::new(
            variable,
            ConfigProblem::AddressInUse { value: bind },
        )),
        Err(error) => Err(ConfigError::new(
            variable,
            ConfigProblem::UnusableAddress {
                value: bind,
                reason: error.to_string(),
            },
        )),
    }
}

/// `Ok` when `path` is a writable directory, or does not exist and its nearest existing
/// ancestor is a writable directory (the server creates it).
fn usable_directory(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => writable(path).map_err(|e| format!("is not writable: {e}")),
        Ok(_) => Err("is not a directory".to_owned()),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let mut ancestor = path.parent();
            while let Some(dir) = ancestor {
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {
                        return writable(dir).map_err(|e| {
                            format!("cannot be created: {} is not writable: {e}", dir.display())
                        });
                    }
                    Ok(_) => {
                        return Err(format!(
                            "cannot be created: {} is not a directory",
                            dir.display()
                        ));
                    }
                    Err(_) => ancestor = dir.parent(),
                }
            }
            Err("cannot be created: no parent directory exists".to_owned())
        }
        Err(error) => Err(format!("cannot be inspected: {error}")),
    }
}

/// Creates and removes a probe file in `dir`: the only proof of writability that also covers
/// read-only mounts, ACLs and security modules.
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".nodegate-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}
