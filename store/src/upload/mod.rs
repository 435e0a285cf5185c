//! The blocking effect sequences of the core's upload protocol, written once for every driver.
//!
//! The core (`nodegate_core::upload`) decides what a `HEAD` answers and what a `PUT` does from a
//! [`FileState`], and names the files of a key through its [`Target`]; these functions read
//! that state and carry out the multi-step effects in the order the protocol needs for crash
//! safety. They block: an async driver calls them inline where they are cheap ([`read_state`])
//! or on its blocking pool, a threaded one calls them directly. Locking a key is the driver's
//! business (each has its own kind of lock); so is logging — a failure that does not stop the
//! operation (a hash sidecar that could not be written) is returned for the driver to report.
//!
//! [`StoreError::fault`] is the store's side of the error mapping: the reply to a
//! [`FileFault`] is decided by the core.

use std::io::{self, Read as _};

use nodegate_core::file_fault::FileFault;
use nodegate_core::keys::Target;
use nodegate_core::upload::{self, Discard, Entry, FileState, Sha256, Sidecar};
use sha2::Digest as _;

use crate::{EntryInfo, RootDir, StoreError};

/// Largest sidecar read (a hash sidecar holds 64 bytes, a total a decimal number).
pub const SIDECAR_MAX: usize = 256;

/// Read size when hashing a file.
const HASH_CHUNK: usize = 1024 * 1024;

impl StoreError {
    /// The kind of file failure the client's answer depends on
    /// ([`FileFault::read_reply`], [`FileFault::write_reply`]).
    #[must_use]
    pub fn fault(&self) -> FileFault {
        match self {
            StoreError::NotFound => FileFault::NotFound,
            StoreError::Escape => FileFault::Escape,
            StoreError::IsADirectory => FileFault::IsADirectory,
            StoreError::NotADirectory => FileFault::NotADirectory,
            StoreError::NotAFile => FileFault::NotAFile,
            StoreError::NameTooLong => FileFault::NameTooLong,
            StoreError::NoSpace => FileFault::NoSpace,
            StoreError::FileTooLarge => FileFault::FileTooLarge,
            StoreError::AlreadyExists | StoreError::TooLarge | StoreError::Io(_) => {
                FileFault::Internal
            }
        }
    }
}

/// Reads what the core needs to answer a `HEAD` or plan a `PUT`: the entry and its sidecars.
///
/// A few `stat`s and reads of at most [`SIDECAR_MAX`] bytes. An oversized hash sidecar counts
/// as none (the hash is recomputed); an oversized target or total sidecar reads as empty, so
/// it parses as nothing. The target and total sidecars are read whatever the request: one that
/// is a link out of the root makes the whole state unreadable (D14).
///
/// # Errors
/// The store's error for the first path that cannot be read; [`StoreError::NotAFile`] when the
/// key names a FIFO, socket or device.
pub fn read_state(dir: &RootDir, target: &Target) -> Result<FileState, StoreError> {
    let entry = match dir.stat(target.rel())? {
        EntryInfo::Missing => Entry::Missing,
        EntryInfo::Directory => Entry::Directory,
        EntryInfo::File { size, mtime_ns } => Entry::File { size, mtime_ns },
        EntryInfo::Other => return Err(StoreError::NotAFile),
    };
    let sidecar = match dir.read_small(&target.sidecar(), SIDECAR_MAX) {
        Ok(found) => found.map(|(content, mtime_ns)| Sidecar { content, mtime_ns }),
        Err(StoreError::TooLarge) => None,
        Err(error) => return Err(error),
    };
    let partial = match dir.stat(&target.partial())? {
        EntryInfo::File { size, .. } => Some(size),
        _ => None,
    };
    Ok(FileState {
        entry,
        sidecar,
        partial,
        target: read_sidecar(dir, &target.target_sidecar())?,
        total: read_sidecar(dir, &upload::total_sidecar(target))?,
    })
}

/// A sidecar's content; one too large to be ours reads as empty.
fn read_sidecar(dir: &RootDir, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match dir.read_small(rel, SIDECAR_MAX) {
        Ok(found) => Ok(found.map(|(content, _)| content)),
        Err(StoreError::TooLarge) => Ok(Some(Vec::new())),
        Err(error) => Err(error),
    }
}

/// Hashes the file at `rel`; returns the digest and the size and modification time (ns) it
/// had before it was read, to compare with a `stat` afterwards.
///
/// # Errors
/// The store's error when the file cannot be opened or read.
pub fn hash_file(dir: &RootDir, rel: &str) -> Result<(Sha256, u64, i128), StoreError> {
    let (size, mtime) = match dir.stat(rel)? {
        EntryInfo::File { size, mtime_ns } => (size, mtime_ns),
        _ => (0, 0),
    };
    let (mut file, _) = dir.open_read(rel)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(StoreError::from(error)),
        }
    }
    Ok((Sha256(hasher.finalize().into()), size, mtime))
}

/// A complete file hashed by [`hash_and_cache`].
#[derive(Debug)]
pub struct Hashed {
    /// The sidecar as the core should see it: the fresh hash with the file's mtime, whether or
    /// not it could be written (a read-only tree still answers `HEAD`).
    pub sidecar: Sidecar,
    /// Why the sidecar could not be written, if it could not: worth a warning, not a failure
    /// (the hash is recomputed next time).
    pub unsaved: Option<StoreError>,
}

/// Hashes the key's complete file and rewrites its hash sidecar, but only if the file did not
/// change while it was read: a sidecar never describes other bytes (HR-C03). `Ok(None)`: the
/// file changed, read the state again.
///
/// The caller holds the key's lock, so no upload of its own publishes in between.
///
/// # Errors
/// The store's error when the file cannot be read or `stat`ed.
pub fn hash_and_cache(dir: &RootDir, target: &Target) -> Result<Option<Hashed>, StoreError> {
    let (hash, size, mtime) = hash_file(dir, target.rel())?;
    match dir.stat(target.rel())? {
        EntryInfo::File {
            size: now,
            mtime_ns,
        } if now == size && mtime_ns == mtime => {
            let hex = hash.to_hex();
            let unsaved = dir.write_atomic(&target.sidecar(), hex.as_bytes()).err();
            Ok(Some(Hashed {
                sidecar: Sidecar {
                    content: hex.into_bytes(),
                    mtime_ns: mtime,
                },
                unsaved,
            }))
        }
        _ => Ok(None),
    }
}

/// Publishes verified bytes (the synced file at `source`) under the key's name: the old hash
/// sidecar goes first, then the rename, then the new sidecar, so a crash at any point leaves
/// either no sidecar (the hash is recomputed) or one that matches the visible bytes. Then the
/// in-progress state goes: the total and target sidecars, and with `supersede_partial` (a
/// verified full upload replaces a resumable one in progress) the partial file.
///
/// `Ok(Some(error))`: published, but the new sidecar could not be written (worth a warning).
///
/// # Errors
/// [`StoreError::IsADirectory`] when the key names a directory; otherwise the store's error of
/// the step that failed (nothing is renamed if a step before the rename fails).
pub fn publish(
    dir: &RootDir,
    target: &Target,
    source: &str,
    sha256: Sha256,
    supersede_partial: bool,
) -> Result<Option<StoreError>, StoreError> {
    if let EntryInfo::Directory = dir.stat(target.rel())? {
        return Err(StoreError::IsADirectory);
    }
    let sidecar = target.sidecar();
    dir.remove_file(&sidecar)?;
    dir.rename(source, target.rel())?;
    let unsaved = dir.write_atomic(&sidecar, sha256.to_hex().as_bytes()).err();
    if supersede_partial {
        dir.remove_file(&target.partial())?;
    }
    dir.remove_file(&upload::total_sidecar(target))?;
    dir.remove_file(&target.target_sidecar())?;
    Ok(unsaved)
}

/// Deletes the in-progress state the core names (each file only if present; never the
/// complete file).
///
/// # Errors
/// The store's error of the first removal that failed.
pub fn discard(dir: &RootDir, target: &Target, discard: Discard) -> Result<(), StoreError> {
    if discard.partial {
        dir.remove_file(&target.partial())?;
        dir.remove_file(&upload::total_sidecar(target))?;
    }
    if discard.target {
        dir.remove_file(&target.target_sidecar())?;
    }
    Ok(())
}

/// Begins a resumable chunk: writes the target and total sidecars the core's plan asks for,
/// then opens the partial file for appending. Returns the file and the partial's current size,
/// which the caller compares with the planned offset before writing a byte.
///
/// # Errors
/// The store's error of the sidecar write or the open that failed.
pub fn begin_append(
    dir: &RootDir,
    target: &Target,
    write_target: Option<Sha256>,
    write_total: Option<u64>,
) -> Result<(std::fs::File, u64), StoreError> {
    if let Some(hash) = write_target {
        dir.write_atomic(&target.target_sidecar(), hash.to_hex().as_bytes())?;
    }
    if let Some(total) = write_total {
        dir.write_atomic(&upload::total_sidecar(target), total.to_string().as_bytes())?;
    }
    dir.open_append(&target.partial())
}

#[cfg(test)]
mod tests;
