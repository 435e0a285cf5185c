//! What the worker checks before the start-up machine binds and creates: that its address can
//! be listened on and that its roots are (or can become) writable directories. Each failure is
//! a [`ConfigError`] naming the setting to change. Nothing is left behind: the probe listener
//! is closed and the probe file removed before the server starts.

use std::io::ErrorKind;
use std::net::{TcpListener, ToSocketAddrs as _};
use std::path::Path;

use crate::config::{ConfigError, ConfigProblem, HTTP_ADDR, MODELS_PATH, WorkerConfig};
use crate::keys::Roots;

/// Checks the bind address and the three roots of a worker.
///
/// # Errors
/// The first unusable one: [`HTTP_ADDR`] or [`MODELS_PATH`] (staging and data are its
/// siblings).
pub(super) fn worker(worker: &WorkerConfig, roots: &Roots) -> Result<(), ConfigError> {
    let bind = worker.http_bind();
    let address_error = |problem| ConfigError::new(HTTP_ADDR, problem);
    let addrs: Vec<_> = bind
        .to_socket_addrs()
        .map_err(|error| {
            address_error(ConfigProblem::UnusableAddress {
                value: bind.clone(),
                reason: format!("cannot resolve it: {error}"),
            })
        })?
        .collect();
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
    match TcpListener::bind(&addrs[..]) {
        Ok(listener) => drop(listener),
        Err(error) if error.kind() == ErrorKind::AddrInUse => {
            return Err(address_error(ConfigProblem::AddressInUse { value: bind }));
        }
        Err(error) => {
            return Err(address_error(ConfigProblem::UnusableAddress {
                value: bind,
                reason: error.to_string(),
            }));
        }
    }
    Ok(())
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
