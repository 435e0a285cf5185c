//! `nats-setup`: everything a NATS server in operator mode needs for a nodegate (or LocalAI)
//! cluster, written into one directory, re-runnable.
//!
//! It creates (mode 0600, in a 0700 directory) an operator, an account and the frontend's
//! service user — keys are kept when they exist, so running it again gives the same keys and
//! rewrites only the JWTs and the config — and a `nats-server.conf` with a memory resolver
//! preloaded with the account. It never prints a seed: the environment lines it reports read
//! the seeds from their files.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nkeys::KeyPair;
use nodegate_core::jwt::{self, AccountClaims, OperatorClaims, UserClaims};

use super::mint::KeySigner;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// The directory written.
    pub dir: PathBuf,
    /// Key files created by this run.
    pub created: Vec<String>,
    /// Key files that existed and were kept.
    pub kept: Vec<String>,
    /// The account public key (the server's resolver knows it).
    pub account_public_key: String,
    /// Shell lines that set the frontend's variables from the files (no secret in them).
    pub env_lines: Vec<String>,
}

/// A failed set-up; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file holds something that is not a seed of the expected kind.
    #[error("{path}: not an nkey seed of a {kind} (remove it to create a new one)")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The expected kind.
        kind: &'static str,
    },
    /// Encoding a JWT failed.
    #[error("encoding a JWT: {0}")]
    Jwt(#[from] jwt::JwtError),
}

/// Writes (or refreshes) the set-up in `dir`; the server will listen on `port`.
///
/// # Errors
/// [`SetupError`] naming the file that could not be written or read.
pub fn run(dir: &Path, port: u16, now: u64) -> Result<SetupReport, SetupError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SetupError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let mut created = Vec::new();
    let mut kept = Vec::new();
    let mut key = |name: &str, kind: &'static str, make: fn() -> KeyPair| {
        let path = dir.join(name);
        let pair = load_or_create(&path, kind, make, &mut created, &mut kept)?;
        Ok::<_, SetupError>(pair)
    };
    let operator = key("operator.nk", "operator", KeyPair::new_operator)?;
    let account = key("account.nk", "account", KeyPair::new_account)?;
    let service = key("frontend-service.nk", "user", KeyPair::new_user)?;
    let operator_jwt = OperatorClaims::new(operator.public_key(), "nodegate", now)
        .encode(&KeySigner(&operator))?;
    let mut account_claims = AccountClaims::new(account.public_key(), "LOCALAI", now);
    account_claims.signing_keys = vec![account.public_key()];
    let account_jwt = account_claims.encode(&KeySigner(&operator))?;
    let mut service_claims = UserClaims::new(service.public_key(), "nodegate-frontend", now);
    service_claims.permissions = jwt::frontend_service_permissions();
    let service_jwt = service_claims.encode(&KeySigner(&account))?;
    write_private(&dir.join("operator.jwt"), operator_jwt.expose())?;
    write_private(&dir.join("account.jwt"), account_jwt.expose())?;
    write_private(&dir.join("frontend-service.jwt"), service_jwt.expose())?;
    let config = format!(
        "# Written by nodegate nats-setup; run it again to refresh. Operator mode, memory resolver.\n\
         port: {port}\n\
         operator: {}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n  {}: {}\n}}\n",
        operator_jwt.expose(),
        account.public_key(),
        account_jwt.expose(),
    );
    write_private(&dir.join("nats-server.conf"), &config)?;
    let shown = dir.display();
    let env_lines = vec![
        format!("export LOCALAI_NATS_ACCOUNT_SEED=\"$(cat {shown}/account.nk)\""),
        format!("export LOCALAI_NATS_SERVICE_JWT=\"$(cat {shown}/frontend-service.jwt)\""),
        format!("export LOCALAI_NATS_SERVICE_SEED=\"$(cat {shown}/frontend-service.nk)\""),
        format!("export LOCALAI_NATS_URL=nats://127.0.0.1:{port}"),
    ];
    Ok(SetupReport {
        dir: dir.to_path_buf(),
        created,
        kept,
        account_public_key: account.public_key(),
        env_lines,
    })
}

fn load_or_create(
    path: &Path,
    kind: &'static str,
    make: fn() -> KeyPair,
    created: &mut Vec<String>,
    kept: &mut Vec<String>,
) -> Result<KeyPair, SetupError> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    match fs::read_to_string(path) {
        Ok(text) => {
            let pair = KeyPair::from_seed(text.trim()).map_err(|_| SetupError::BadKey {
                path: path.to_path_buf(),
                kind,
            })?;
            if pair.key_pair_type() != make().key_pair_type() {
                return Err(SetupError::BadKey {
                    path: path.to_path_buf(),
                    kind,
                });
            }
            kept.push(name);
            Ok(pair)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = make();
            let seed = pair.seed().map_err(|_| SetupError::BadKey {
                path: path.to_path_buf(),
                kind,
            })?;
            write_private(path, &seed)?;
            created.push(name);
            Ok(pair)
        }
        Err(source) => Err(SetupError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `text` to `path` with mode 0600, through a temporary file renamed into place (a
/// crash never leaves half a key).
fn write_private(path: &Path, text: &str) -> Result<(), SetupError> {
    let io = |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp-nodegate");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_keeps_the_keys_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nats");
        let first = run(&target, 4222, 1_000).unwrap();
        assert_eq!(first.created.len(), 3);
        let seed = fs::read_to_string(target.join("account.nk")).unwrap();
        let second = run(&target, 4222, 2_000).unwrap();
        assert!(second.created.is_empty());
        assert_eq!(second.kept.len(), 3);
        assert_eq!(second.account_public_key, first.account_public_key);
        assert_eq!(fs::read_to_string(target.join("account.nk")).unwrap(), seed);
        for name in [
            "account.nk",
            "operator.nk",
            "frontend-service.nk",
            "nats-server.conf",
        ] {
            let mode = fs::metadata(target.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        for line in &second.env_lines {
            assert!(!line.contains(seed.trim()), "a seed printed: {line}");
        }
    }

    #[test]
    fn a_corrupt_key_file_is_named_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("account.nk"), "garbage").unwrap();
        let error = run(dir.path(), 4222, 1).unwrap_err().to_string();
        assert!(error.contains("account.nk"), "{error}");
        assert_eq!(
            fs::read_to_string(dir.path().join("account.nk")).unwrap(),
            "garbage"
        );
    }
}
