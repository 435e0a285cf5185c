//! # nodegate-store
//!
//! The file store of nodegate's file-transfer servers: blocking, runtime-free file effects
//! confined to one storage root, shared by every adapter (tokio, smol, the std-only embedding)
//! so that none of them re-implements symlink-safe opens, temporary files or partial uploads.
//! It holds no protocol: the core (`nodegate-core`) validates every key and decides what to do;
//! this crate only performs the effects, as quinn-udp holds quinn's socket tricks. Its
//! [`upload`] module carries out the multi-step effects of the core's upload protocol (read a
//! key's state, publish, discard, hash) in the order crash safety needs, so that every driver
//! runs the same sequence.
//!
//! The core validates every key into a safe relative path (`rel`: `/`-separated, no empty, `.`,
//! `..` or leading-dot segments). Every operation resolves `rel` through a capability handle on
//! the root ([`cap_std::fs::Dir`]), so a symbolic link or `..` that would leave the root is
//! refused by the walk at open time, not by a check that could race with the open (spec D8,
//! D14). Symbolic links that stay inside the root are followed where an operation follows links
//! at all. A link with an absolute target always counts as leaving the root, even if the target
//! happens to lie inside it.
//!
//! The API is synchronous and blocking: an async adapter calls it from its blocking pool
//! (`tokio::task::spawn_blocking`, `blocking::unblock`) or, for operations known to be cheap,
//! inline; a threaded program calls it directly.
//!
//! Durability protocol for a replaced file (security.md §4.5): [`RootDir::create_new`] a temporary
//! name in the target's directory → write → call [`std::fs::File::sync_all`] on the file (the
//! caller's duty: this module cannot know when the writing is over) → [`RootDir::write_atomic`]
//! the sidecar → [`RootDir::rename`] the temporary name onto the final one, which syncs the parent
//! directory so the new entry survives a crash.
//!
//! Error messages never contain absolute paths (D15): only [`RootDir::path`] reveals where a root
//! lives, for the `local_path` field the wire requires.
//!
//! ```
//! use std::io::Write as _;
//! use nodegate_store::{EntryInfo, RootDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let path = tmp.path().join("models");
//! let root = RootDir::open_or_create(&path)?;
//! let (mut file, mut temp) = root.create_temp(".model.gguf.tmp", nodegate_store::FILE_MODE)?;
//! file.write_all(b"weights")?;
//! file.sync_all()?;
//! root.rename(".model.gguf.tmp", "model.gguf")?;
//! temp.keep(); // renamed into place: nothing left to remove
//! assert!(matches!(root.stat("model.gguf")?, EntryInfo::File { size: 7, .. }));
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod machine;
mod stamps;
pub mod upload;

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt as _, MetadataExt as _, OpenOptions, OpenOptionsExt as _,
};

/// Mode of every directory this module creates (D7), before the process umask.
pub const DIR_MODE: u32 = 0o750;

/// Mode of files created by [`RootDir::open_append`] and [`RootDir::write_atomic`] (sidecars,
/// partial uploads; spec §2.13), before the process umask.
pub const FILE_MODE: u32 = 0o640;

/// Mode of the files made by [`RootDir::create_output_temp`] (spec §2.9), before the umask.
pub const OUTPUT_TEMP_MODE: u32 = 0o600;

/// Prefix of the names made by [`RootDir::create_output_temp`].
pub const OUTPUT_TEMP_PREFIX: &str = "localai-output-";

/// Suffix of the names made by [`RootDir::create_output_temp`].
pub const OUTPUT_TEMP_SUFFIX: &str = ".tmp";

/// What [`RootDir::stat`] found at a relative path (symbolic links inside the root followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryInfo {
    /// Nothing exists there.
    Missing,
    /// A directory.
    Directory,
    /// A regular file.
    File {
        /// Length in bytes.
        size: u64,
        /// Last modification time, nanoseconds since the Unix epoch (negative before it).
        mtime_ns: i128,
    },
    /// Something else: a FIFO, a socket or a device.
    Other,
}

/// Why a file operation under a root failed.
///
/// `Display` names the problem without any path, so it is safe to show to a client; the server
/// adds `local_path` itself where the wire wants it.
#[derive(Debug)]
pub enum StoreError {
    /// The path does not exist (`ENOENT`), or names nothing that can exist (a NUL byte).
    NotFound,
    /// The path leaves the root through a symbolic link or `..` (cap-std's escape error), or runs
    /// into a symbolic-link loop (`ELOOP`).
    Escape,
    /// The path names a directory where a file is needed (`EISDIR`).
    IsADirectory,
    /// A component of the path that must be a directory is not one (`ENOTDIR`).
    NotADirectory,
    /// The path exists but is a FIFO, socket or device, not a regular file (includes `ENXIO`,
    /// which `open` gives for sockets and reader-less FIFOs).
    NotAFile,
    /// An entry already exists where a new one was to be created exclusively (`EEXIST`).
    AlreadyExists,
    /// Out of space: `ENOSPC` or `EDQUOT` (quota).
    NoSpace,
    /// The file reached a size limit (`EFBIG`, for example `RLIMIT_FSIZE`).
    FileTooLarge,
    /// A component of the path is longer than the filesystem allows (`ENAMETOOLONG`).
    NameTooLong,
    /// [`RootDir::read_small`] found more bytes than its limit.
    TooLarge,
    /// Any other I/O error (permissions, hardware, ...).
    Io(io::Error),
}

impl StoreError {
    /// A short, stable label for logs and metrics (`"escape"`, `"no_space"`, ...).
    pub fn kind_label(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::Escape => "escape",
            StoreError::IsADirectory => "is_a_directory",
            StoreError::NotADirectory => "not_a_directory",
            StoreError::NotAFile => "not_a_file",
            StoreError::AlreadyExists => "already_exists",
            StoreError::NoSpace => "no_space",
            StoreError::FileTooLarge => "file_too_large",
            StoreError::NameTooLong => "name_too_long",
            StoreError::TooLarge => "too_large",
            StoreError::Io(_) => "io",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("no such file or directory in the storage root"),
            StoreError::Escape => f.write_str(
                "the path leaves the storage root through a symbolic link; \
                 remove the link or make it point inside the root with a relative target",
            ),
            StoreError::IsADirectory => f.write_str("the path names a directory, not a file"),
            StoreError::NotADirectory => {
                f.write_str("a component of the path is a file, not a directory")
            }
            StoreError::NotAFile => {
                f.write_str("the path names a FIFO, socket or device, not a regular file")
            }
            StoreError::AlreadyExists => f.write_str("an entry with this name already exists"),
            StoreError::NoSpace => f.write_str(
                "no space left for the file (disk full, quota or file size limit reached); \
                 free space or raise the limit",
            ),
            StoreError::FileTooLarge => f.write_str(
                "the file reached the size limit of the process or filesystem; raise the limit",
            ),
            StoreError::NameTooLong => {
                f.write_str("a name in the path is too long for the filesystem; use shorter names")
            }
            StoreError::TooLarge => f.write_str("the file is larger than allowed for this read"),
            // Only the kind and the OS code: the inner message of a custom error could carry a path.
            StoreError::Io(err) => match err.raw_os_error() {
                Some(code) => write!(
                    f,
                    "I/O error in the storage root: {} (os error {code})",
                    err.kind()
                ),
                None => write!(f, "I/O error in the storage root: {}", err.kind()),
            },
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// The message cap-std gives its escape error (`cap_primitives::fs::errors::escape_attempt`).
const CAP_STD_ESCAPE_MESSAGE: &str = "a path led outside of the filesystem";

impl From<io::Error> for StoreError {
    /// Classifies an error from any operation under a root, including the writes and syncs the
    /// server performs on returned files (so `ENOSPC` while streaming maps to [`StoreError::NoSpace`]).
    fn from(err: io::Error) -> Self {
        if is_cap_std_escape(&err) {
            return StoreError::Escape;
        }
        match err.raw_os_error() {
            Some(libc::ENOENT) => StoreError::NotFound,
            Some(libc::ELOOP) => StoreError::Escape,
            Some(libc::EISDIR) => StoreError::IsADirectory,
            Some(libc::ENOTDIR) => StoreError::NotADirectory,
            Some(libc::EEXIST) => StoreError::AlreadyExists,
            Some(libc::ENOSPC | libc::EDQUOT) => StoreError::NoSpace,
            Some(libc::EFBIG) => StoreError::FileTooLarge,
            Some(libc::ENAMETOOLONG) => StoreError::NameTooLong,
            // `open` of a FIFO without a reader (non-blocking) or of a socket.
            Some(libc::ENXIO) => StoreError::NotAFile,
            Some(_) => StoreError::Io(err),
            None => match err.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound,
                io::ErrorKind::AlreadyExists => StoreError::AlreadyExists,
                _ => StoreError::Io(err),
            },
        }
    }
}

/// Whether `err` is cap-std's refusal of a path that leaves the directory it resolves in: a
/// `PermissionDenied` without an OS code and with [`CAP_STD_ESCAPE_MESSAGE`] (the kernel's
/// `EXDEV` from `openat2(RESOLVE_BENEATH)` is turned into the same error by cap-std).
fn is_cap_std_escape(err: &io::Error) -> bool {
    err.raw_os_error().is_none()
        && err.kind() == io::ErrorKind::PermissionDenied
        && err
            .get_ref()
            .is_some_and(|inner| inner.to_string() == CAP_STD_ESCAPE_MESSAGE)
}

/// One storage root (models, staging or data): a capability handle plus its absolute path.
#[derive(Debug)]
pub struct RootDir {
    dir: Dir,
    path: PathBuf,
}

impl RootDir {
    /// Creates `path` and its missing ancestors with mode [`DIR_MODE`] (D7; existing directories
    /// keep their mode), then opens it as a root. The path itself may be a symbolic link.
    ///
    /// Fails if `path` exists and is not a directory. This is a startup operation: its error
    /// is for the operator and may name the path.
    pub fn open_or_create(path: &Path) -> io::Result<RootDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        let path = std::path::absolute(path)?;
        Ok(RootDir { dir, path })
    }

    /// The absolute path the root was opened at (lexically absolute, links not resolved), for
    /// `local_path` / `X-Local-Path` only.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is at `rel`, following symbolic links that stay inside the root. The empty string
    /// names the root itself.
    ///
    /// A missing entry is `Ok(EntryInfo::Missing)`; a link leaving the root is
    /// `Err(StoreError::Escape)`; a file where a directory is needed on the way is
    /// `Err(StoreError::NotADirectory)`.
    pub fn stat(&self, rel: &str) -> Result<EntryInfo, StoreError> {
        let path = lookup_path(rel)?;
        let meta = match self.dir.metadata(path) {
            Ok(meta) => meta,
            Err(err) => {
                return match StoreError::from(err) {
                    StoreError::NotFound => Ok(EntryInfo::Missing),
                    other => Err(other),
                };
            }
        };
        let kind = meta.file_type();
        Ok(if kind.is_dir() {
            EntryInfo::Directory
        } else if kind.is_file() {
            EntryInfo::File {
                size: meta.len(),
                mtime_ns: mtime_ns(meta.mtime(), meta.mtime_nsec()),
            }
        } else {
            EntryInfo::Other
        })
    }

    /// Reads a small regular file (a sidecar) whole, with its modification time in nanoseconds.
    ///
    /// `Ok(None)` if nothing exists at `rel`; [`StoreError::TooLarge`] if it holds more than
    /// `max` bytes (checked before reading and again while reading, in case it grows).
    pub fn read_small(&self, rel: &str, max: usize) -> Result<Option<(Vec<u8>, i128)>, StoreError> {
        let (file, meta) = match self.open_regular_for_read(rel) {
            Ok(opened) => opened,
            Err(StoreError::NotFound) => return Ok(None),
            Err(err) => return Err(err),
        };
        let limit = u64::try_from(max).unwrap_or(u64::MAX);
        if meta.len() > limit {
            return Err(StoreError::TooLarge);
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(max).min(max));
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() > max {
            return Err(StoreError::TooLarge);
        }
        Ok(Some((bytes, mtime_ns(meta.mtime(), meta.mtime_nsec()))))
    }

    /// Opens a regular file for reading and returns it with its length at open time (from the
    /// open handle, so it describes exactly the file returned).
    ///
    /// A directory is [`StoreError::IsADirectory`]; a FIFO, socket or device is
    /// [`StoreError::NotAFile`] (opened without blocking, never read). The returned file keeps
    /// `O_NONBLOCK`, which has no effect on regular files.
    pub fn open_read(&self, rel: &str) -> Result<(std::fs::File, u64), StoreError> {
        let (file, meta) = self.open_regular_for_read(rel)?;
        Ok((file, meta.len()))
    }

    /// Creates a new file exclusively (`O_EXCL`: an existing entry, even a dangling symbolic
    /// link, is never opened) with `mode` (before the umask), creating missing parent
    /// directories inside the root with [`DIR_MODE`].
    ///
    /// An existing entry is [`StoreError::AlreadyExists`], or [`StoreError::Escape`] if it is a
    /// symbolic link leaving the root. The parent directory is not synced: the caller writes,
    /// calls [`std::fs::File::sync_all`], then [`RootDir::rename`]s the file into place, which
    /// syncs the directory.
    pub fn create_new(&self, rel: &str, mode: u32) -> Result<std::fs::File, StoreError> {
        let path = entry_path(rel)?;
        self.ensure_parent(path)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(mode);
        match self.dir.open_with(path, &options) {
            Ok(file) => Ok(file.into_std()),
            Err(err) => match StoreError::from(err) {
                StoreError::AlreadyExists => {
                    self.refuse_escaping_link(path)?;
                    Err(StoreError::AlreadyExists)
                }
                other => Err(other),
            },
        }
    }

    /// Creates a temporary file exclusively like [`RootDir::create_new`], and returns it with a
    /// [`TempFile`] guard that removes it again unless [`TempFile::keep`] is called (after the
    /// file was renamed into place).
    ///
    /// The guard holds a handle on the directory the file was created in and unlinks the name
    /// through it, so the temp file is removed even if a parent directory was renamed or
    /// replaced by a symbolic link meanwhile (removal by path would then be refused as an
    /// escape and leave the file behind), and even if the upload's task is dropped mid-way.
    pub fn create_temp(
        &self,
        rel: &str,
        mode: u32,
    ) -> Result<(std::fs::File, TempFile), StoreError> {
        let path = entry_path(rel)?;
        self.ensure_parent(path)?;
        let (parent, name) = split_parent(path);
        let parent = match parent {
            Some(parent) => self.dir.open_dir(parent)?,
            None => self.dir.try_clone()?,
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(mode);
        match parent.open_with(name, &options) {
            Ok(file) => Ok((
                file.into_std(),
                TempFile {
                    parent: Some(parent),
                    name: name.to_owned(),
                },
            )),
            Err(err) => match StoreError::from(err) {
                StoreError::AlreadyExists => {
                    self.refuse_escaping_link(path)?;
                    Err(StoreError::AlreadyExists)
                }
                other => Err(other),
            },
        }
    }

    /// Opens a file for appending (a `.partial` upload), creating it with [`FILE_MODE`] and any
    /// missing parent directories if needed, and returns it with its current length.
    ///
    /// When the file is created, its directory is synced so that the partial file itself
    /// survives a crash; the caller syncs the data it appends. An existing entry is opened with
    /// `O_NONBLOCK` (so a FIFO cannot hang the thread; no effect on regular files) and must be a
    /// regular file.
    pub fn open_append(&self, rel: &str) -> Result<(std::fs::File, u64), StoreError> {
        let path = entry_path(rel)?;
        self.ensure_parent(path)?;
        let mut create = OpenOptions::new();
        create.append(true).create_new(true).mode(FILE_MODE);
        match self.dir.open_with(path, &create) {
            Ok(file) => {
                self.sync_parent(path)?;
                return Ok((file.into_std(), 0));
            }
            Err(err) => match StoreError::from(err) {
                StoreError::AlreadyExists => {}
                other => return Err(other),
            },
        }
        let mut existing = OpenOptions::new();
        existing
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = self.dir.open_with(path, &existing)?.into_std();
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(StoreError::IsADirectory);
        }
        if !meta.is_file() {
            return Err(StoreError::NotAFile);
        }
        Ok((file, meta.len()))
    }

    /// Replaces the file at `rel` with `bytes` atomically (for sidecars): a temporary file
    /// `.<name>.<16 hex>.tmp` in the same directory with [`FILE_MODE`], written and synced, then
    /// renamed over `rel`, then the directory synced. Missing parent directories are created.
    ///
    /// The entry at `rel` is replaced, never written through: a symbolic link inside the root is
    /// replaced by the file, one leaving the root is refused with [`StoreError::Escape`]. On
    /// failure the temporary file is removed and the old content stays.
    pub fn write_atomic(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = entry_path(rel)?;
        self.ensure_parent(path)?;
        self.refuse_escaping_link(path)?;
        let (parent, name) = split_parent(path);
        let mut attempts = 0;
        let (temp, mut file, mut guard) = loop {
            let temp_name = format!(".{name}.{:016x}.tmp", random_u64());
            let temp = match parent {
                Some(parent) => format!("{parent}/{temp_name}"),
                None => temp_name,
            };
            match self.create_temp(&temp, FILE_MODE) {
                Ok((file, guard)) => break (temp, file, guard),
                Err(StoreError::AlreadyExists) if attempts < TEMP_NAME_ATTEMPTS => attempts += 1,
                Err(other) => return Err(other),
            }
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(StoreError::from);
        drop(file);
        // On failure the guard removes the temp file through its directory handle.
        written.and_then(|()| {
            self.dir
                .rename(&temp, &self.dir, path)
                .map_err(StoreError::from)
        })?;
        guard.keep();
        self.sync_parent(path)
    }

    /// Renames `from` to `to` inside the root (replacing `to`), then syncs the directory of `to`
    /// (and of `from` when it differs) so the change survives a crash.
    ///
    /// Renaming moves or replaces directory entries and never writes through a link; still, an
    /// entry at either name that is a symbolic link leaving the root is refused with
    /// [`StoreError::Escape`], like every other operation.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let from = entry_path(from)?;
        let to = entry_path(to)?;
        self.refuse_escaping_link(from)?;
        self.refuse_escaping_link(to)?;
        self.dir.rename(from, &self.dir, to)?;
        self.sync_parent(to)?;
        if split_parent(from).0 != split_parent(to).0 {
            self.sync_parent(from)?;
        }
        Ok(())
    }

    /// Removes the file (or symbolic link) at `rel`; a missing entry is success.
    ///
    /// A symbolic link leaving the root is refused with [`StoreError::Escape`] rather than
    /// removed (its target is never touched either way); a directory is
    /// [`StoreError::IsADirectory`].
    pub fn remove_file(&self, rel: &str) -> Result<(), StoreError> {
        let path = match entry_path(rel) {
            Err(StoreError::NotFound) => return Ok(()),
            other => other?,
        };
        self.refuse_escaping_link(path)?;
        match self.dir.remove_file(path).map_err(StoreError::from) {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Creates an empty output file `localai-output-<random decimal digits>.tmp` with mode
    /// [`OUTPUT_TEMP_MODE`] at the top level of the root (spec §2.9; the frontend later fetches
    /// it by its bare name) and returns that name. A name collision picks another name.
    pub fn create_output_temp(&self) -> Result<String, StoreError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(OUTPUT_TEMP_MODE);
        let mut attempts = 0;
        loop {
            // Like Go's `os.CreateTemp`: a random 32-bit number in decimal.
            let number = random_u64() as u32;
            let name = format!("{OUTPUT_TEMP_PREFIX}{number}{OUTPUT_TEMP_SUFFIX}");
            match self.dir.open_with(&name, &options) {
                Ok(_file) => return Ok(name),
                Err(err) => match StoreError::from(err) {
                    StoreError::AlreadyExists if attempts < TEMP_NAME_ATTEMPTS => attempts += 1,
                    other => return Err(other),
                },
            }
        }
    }

    /// Lists a directory recursively (spec §2.10): every non-directory entry as a `/`-separated
    /// path relative to the listed directory, depth-first pre-order, the names of each directory
    /// in byte order (`a.txt`, `b/c.txt`, `b.txt`). `None` lists the root itself.
    ///
    /// Symbolic links are never followed below the listed directory: each is listed as an entry,
    /// even one pointing at a directory. Sidecars are listed like any file. An entry whose file
    /// name fails `visible` is omitted, and a directory whose name fails it is not descended.
    /// Names that are not UTF-8 are skipped, as are directories that cannot be read.
    ///
    /// A missing `rel_dir`, or one that is not a directory, is [`StoreError::NotFound`]; one
    /// that is itself a symbolic link to a directory inside the root lists as `["."]`, as
    /// LocalAI does (Go's `WalkDir` does not follow a link at its start).
    pub fn list(
        &self,
        rel_dir: Option<&str>,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let start = match rel_dir {
            None => ".",
            Some(rel) => lookup_path(rel)?,
        };
        let not_found_if_absent = |err: io::Error| match StoreError::from(err) {
            StoreError::NotADirectory => StoreError::NotFound,
            other => other,
        };
        let own = self
            .dir
            .symlink_metadata(start)
            .map_err(not_found_if_absent)?;
        if own.is_symlink() {
            let followed = self.dir.metadata(start).map_err(not_found_if_absent)?;
            return if followed.is_dir() {
                Ok(vec![".".to_owned()])
            } else {
                Err(StoreError::NotFound)
            };
        }
        if !own.is_dir() {
            return Err(StoreError::NotFound);
        }
        let dir = self.dir.open_dir(start).map_err(not_found_if_absent)?;
        let mut files = Vec::new();
        walk(dir, &visible, |_, _, path, kind| {
            if kind != EntryKind::Directory {
                files.push(path.to_owned());
            }
            true
        });
        Ok(files)
    }

    /// Walks the whole root without following symbolic links and removes every regular file
    /// whose name satisfies `is_temp` (temporary files left by a crash; spec HR-C01). Returns
    /// how many were removed. Entries that cannot be read or removed are skipped.
    pub fn remove_orphans(&self, is_temp: impl Fn(&str) -> bool) -> Result<usize, StoreError> {
        self.remove_orphans_bounded(is_temp, usize::MAX)
            .map(|sweep| sweep.removed)
    }

    /// Like [`RootDir::remove_orphans`], but stops after visiting `max_entries` directory
    /// entries, so a root pointed at a huge tree cannot hold up the start for long.
    /// [`Sweep::complete`] says whether the whole tree was seen.
    pub fn remove_orphans_bounded(
        &self,
        is_temp: impl Fn(&str) -> bool,
        max_entries: usize,
    ) -> Result<Sweep, StoreError> {
        let dir = self.dir.try_clone()?;
        let mut sweep = Sweep {
            removed: 0,
            visited: 0,
            complete: true,
        };
        walk(dir, &|_| true, |parent, name, _, kind| {
            if sweep.visited >= max_entries {
                sweep.complete = false;
                return false;
            }
            sweep.visited += 1;
            if kind == EntryKind::File && is_temp(name) && parent.remove_file(name).is_ok() {
                sweep.removed += 1;
            }
            true
        });
        Ok(sweep)
    }

    /// Checks that the root can take writes: creates a temp file (a name the orphan sweep
    /// recognises) and removes it again.
    ///
    /// # Errors
    /// The error of the create (a read-only filesystem, missing permissions, a full disk).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let name = format!(".nodegate-write-probe.{:016x}.tmp", random_u64());
        let (_file, mut guard) = self.create_temp(&name, FILE_MODE)?;
        guard.remove()
    }

    /// Opens `rel` for reading without blocking on FIFOs and checks that it is a regular file.
    fn open_regular_for_read(
        &self,
        rel: &str,
    ) -> Result<(std::fs::File, std::fs::Metadata), StoreError> {
        let path = lookup_path(rel)?;
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = self.dir.open_with(path, &options)?.into_std();
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(StoreError::IsADirectory);
        }
        if !meta.is_file() {
            return Err(StoreError::NotAFile);
        }
        Ok((file, meta))
    }

    /// Creates the parent directories of `path` inside the root, reporting an escaping or
    /// non-directory component precisely (cap-std's `create_dir_all` reports those as `EEXIST`).
    fn ensure_parent(&self, path: &str) -> Result<(), StoreError> {
        let Some(parent) = split_parent(path).0 else {
            return Ok(());
        };
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(DIR_MODE);
        let Err(create_err) = self.dir.create_dir_with(parent, &builder) else {
            return Ok(());
        };
        match self.dir.metadata(parent) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::NotADirectory),
            Err(err) => match StoreError::from(err) {
                found @ (StoreError::Escape | StoreError::NotADirectory) => Err(found),
                _ => Err(StoreError::from(create_err)),
            },
        }
    }

    /// Refuses `path` if its last component is a symbolic link that leaves the root (or loops).
    ///
    /// Used before operations that act on the entry itself (rename, unlink): they never follow
    /// the link, so a link swapped in after this check still cannot make them touch anything
    /// outside the root; the check only keeps the refusal uniform across operations.
    fn refuse_escaping_link(&self, path: &str) -> Result<(), StoreError> {
        match self.dir.symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() => match self.dir.metadata(path) {
                Ok(_) => Ok(()),
                Err(err) => match StoreError::from(err) {
                    StoreError::Escape => Err(StoreError::Escape),
                    _ => Ok(()),
                },
            },
            Ok(_) => Ok(()),
            Err(err) => match StoreError::from(err) {
                StoreError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Syncs the directory holding `path` so a created, renamed or replaced entry is durable.
    fn sync_parent(&self, path: &str) -> Result<(), StoreError> {
        // cap-std's `Dir` handles are `O_PATH` descriptors, which `fsync` refuses (`EBADF`):
        // open the directory for reading instead.
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_DIRECTORY);
        let dir = self
            .dir
            .open_with(split_parent(path).0.unwrap_or("."), &options)?;
        dir.into_std().sync_all()?;
        Ok(())
    }
}

/// A temporary file made by [`RootDir::create_temp`]: removed when dropped, unless kept.
#[derive(Debug)]
pub struct TempFile {
    /// The directory the file was created in; `None` once kept or removed.
    parent: Option<Dir>,
    /// The file's name in that directory.
    name: String,
}

impl TempFile {
    /// The file was renamed into place (or must otherwise stay): do not remove it.
    pub fn keep(&mut self) {
        self.parent = None;
    }

    /// Removes the file now, through the handle on its directory; a missing file is success.
    ///
    /// # Errors
    /// The unlink failed for another reason than the file being gone.
    pub fn remove(&mut self) -> Result<(), StoreError> {
        let Some(parent) = self.parent.take() else {
            return Ok(());
        };
        match parent.remove_file(&self.name).map_err(StoreError::from) {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // One `unlinkat`: cheap enough to run wherever the guard is dropped.
        let _ = self.remove();
    }
}

/// What a bounded orphan sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Temp files removed.
    pub removed: usize,
    /// Directory entries looked at.
    pub visited: usize,
    /// Whether the whole tree was walked (the bound was not reached).
    pub complete: bool,
}

/// How many other names the temp-file constructors try after a collision.
const TEMP_NAME_ATTEMPTS: u32 = 1000;

/// The kind of a directory entry, from the entry itself (links not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Directory,
    File,
    Other,
}

/// Validates `rel` for a lookup; the empty string names the root itself.
fn lookup_path(rel: &str) -> Result<&str, StoreError> {
    if rel.contains('\0') {
        // No entry can have a NUL in its name; the core refuses such keys before this point.
        Err(StoreError::NotFound)
    } else if rel.is_empty() {
        Ok(".")
    } else {
        Ok(rel)
    }
}

/// Validates `rel` for an operation on an entry: the empty string would be the root itself.
fn entry_path(rel: &str) -> Result<&str, StoreError> {
    if rel.is_empty() {
        Err(StoreError::IsADirectory)
    } else {
        lookup_path(rel)
    }
}

/// Splits `a/b/c` into `(Some("a/b"), "c")` and `c` into `(None, "c")`.
fn split_parent(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    }
}

/// Nanoseconds since the epoch from `stat`'s seconds and nanoseconds fields.
fn mtime_ns(seconds: i64, nanos: i64) -> i128 {
    i128::from(seconds) * 1_000_000_000 + i128::from(nanos)
}

/// 64 unpredictable bits for temporary names (std's per-instance SipHash keys come from the OS
/// generator; names are also created with `O_EXCL`, so they need not be cryptographic).
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Entries of `dir` as (name, kind), UTF-8 names only, sorted by bytes; unreadable entries skipped.
fn sorted_entries(dir: &Dir) -> Vec<(String, EntryKind)> {
    let Ok(entries) = dir.entries() else {
        return Vec::new();
    };
    let mut out: Vec<(String, EntryKind)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let kind = entry.file_type().ok()?;
            let kind = if kind.is_dir() {
                EntryKind::Directory
            } else if kind.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            Some((name, kind))
        })
        .collect();
    // `str` orders by bytes, which is Go's `WalkDir` order.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Depth-first pre-order walk below `root` without following symbolic links.
///
/// Entries whose name fails `keep` are skipped entirely (directories not descended). For each
/// kept entry, `visit(parent_dir, name, path_relative_to_root, kind)` is called; directories are
/// visited before their contents. Each subdirectory is opened through its parent's handle, so
/// the walk stays inside `root` even if the tree changes meanwhile.
/// The walk stops as soon as `visit` returns `false`.
fn walk(
    root: Dir,
    keep: &dyn Fn(&str) -> bool,
    mut visit: impl FnMut(&Dir, &str, &str, EntryKind) -> bool,
) {
    struct Frame {
        dir: Dir,
        prefix: String,
        entries: std::vec::IntoIter<(String, EntryKind)>,
    }
    let entries = sorted_entries(&root).into_iter();
    let mut stack = vec![Frame {
        dir: root,
        prefix: String::new(),
        entries,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some((name, kind)) = frame.entries.next() else {
            stack.pop();
            continue;
        };
        if !keep(&name) {
            continue;
        }
        let path = if frame.prefix.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", frame.prefix)
        };
        if !visit(&frame.dir, &name, &path, kind) {
            return;
        }
        if kind == EntryKind::Directory {
            // Were a link swapped in since the listing, `open_dir` would resolve it inside
            // `frame.dir` only: the walk cannot leave the root.
            if let Ok(sub) = frame.dir.open_dir(&name) {
                let entries = sorted_entries(&sub).into_iter();
                stack.push(Frame {
                    dir: sub,
                    prefix: path,
                    entries,
                });
            }
        }
    }
}

/// Reads up to `buf.len()` bytes of `file` at `offset` if they are already in the page cache,
/// without ever waiting for the disk (Linux `preadv2` with `RWF_NOWAIT`).
///
/// `Ok(Some(n))`: `n` bytes were read (`0` at the end of the file; fewer than asked when only
/// the first part is cached). `Ok(None)`: the data is not cached, or this kernel or file system
/// cannot say — read it on a blocking thread instead. This is what lets an async adapter serve
/// hot files on its own threads, as nginx does, while a cold read never stalls them.
///
/// # Errors
/// Any other read error (`EIO`, a descriptor not open for reading, ...).
pub fn read_cached(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<Option<usize>> {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::{Errno, ReadWriteFlags, preadv2};
        match preadv2(
            file,
            &mut [io::IoSliceMut::new(buf)],
            offset,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(None),
            Err(Errno::INTR) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, buf, offset);
        Ok(None)
    }
}

/// Sends up to `len` bytes of `file` from `offset` to `socket` with `sendfile(2)`: the kernel
/// moves page-cache pages to the socket without a copy through user space. Returns the bytes
/// sent (0 only at the end of the file); a non-blocking socket that is full gives
/// [`io::ErrorKind::WouldBlock`]. Like any read, it waits for the disk if the pages are not
/// cached: probe with [`read_cached`] first on a thread that must not wait.
///
/// # Errors
/// The system call's error; [`io::ErrorKind::Unsupported`] off Linux.
pub fn send_file(
    socket: std::os::fd::BorrowedFd<'_>,
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let mut at = offset;
        Ok(rustix::fs::sendfile(socket, file, Some(&mut at), len)?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, file, offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Whether the bytes at `offset` and at `offset + len - 1` of `file` are in the page cache
/// (two one-byte `preadv2(RWF_NOWAIT)` probes): the check an async thread makes before a
/// [`send_file`] of that range. Pages between them may have been evicted; sequential reads
/// are cached and evicted together, so that is rare, and costs one disk read where it happens.
#[must_use]
pub fn range_cached(file: &std::fs::File, offset: u64, len: u64) -> bool {
    let mut byte = [0_u8; 1];
    let last = offset.saturating_add(len.saturating_sub(1));
    len > 0
        && [offset, last]
            .into_iter()
            .all(|at| matches!(read_cached(file, &mut byte, at), Ok(Some(1))))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    use super::*;

    #[test]
    fn send_file_sends_the_range_and_range_cached_checks_both_ends() {
        use std::os::fd::AsFd as _;
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("hot.bin");
        fs::write(&path, b"0123456789").expect("write");
        let file = fs::File::open(&path).expect("open");
        let (sender, mut receiver) = std::os::unix::net::UnixStream::pair().expect("pair");
        match send_file(sender.as_fd(), &file, 3, 4) {
            Ok(n) => {
                assert_eq!(n, 4);
                let mut got = [0_u8; 4];
                receiver.read_exact(&mut got).expect("read");
                assert_eq!(&got, b"3456");
                assert_eq!(
                    send_file(sender.as_fd(), &file, 10, 4).expect("at the end"),
                    0
                );
            }
            Err(error) => assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}"),
        }
        assert!(
            !range_cached(&file, 0, 0),
            "an empty range is never worth a send"
        );
        assert!(!range_cached(&file, 5, 10), "the last byte is past the end");
        if read_cached(&file, &mut [0_u8; 1], 0)
            .expect("probe")
            .is_some()
        {
            assert!(range_cached(&file, 0, 10), "a file just written is cached");
        }
    }

    #[test]
    fn read_cached_reads_a_file_just_written_or_says_it_cannot() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("hot.bin");
        fs::write(&path, b"0123456789").expect("write");
        let file = fs::File::open(&path).expect("open");
        let mut buf = [0_u8; 4];
        // Just written, so cached; a file system without RWF_NOWAIT answers None instead.
        if let Some(n) = read_cached(&file, &mut buf, 3).expect("read") {
            assert!(n > 0, "a just-written file is in the cache");
            assert_eq!(&buf[..n], &b"3456"[..n]);
        }
        let mut tail = [0_u8; 8];
        if let Some(n) = read_cached(&file, &mut tail, 10).expect("read at the end") {
            assert_eq!(n, 0, "nothing past the end");
        }
        let write_only = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open w");
        assert!(
            read_cached(&write_only, &mut buf, 0).is_err(),
            "EBADF is an error"
        );
    }

    /// A root `<tmp>/root` next to an outside directory `<tmp>/outside` holding `secret.txt`.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: RootDir,
        outside: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().expect("temp dir");
            let outside = tmp.path().join("outside");
            fs::create_dir(&outside).expect("outside dir");
            fs::write(outside.join("secret.txt"), b"secret").expect("outside file");
            let root = RootDir::open_or_create(&tmp.path().join("root")).expect("root");
            Fixture {
                _tmp: tmp,
                root,
                outside,
            }
        }

        fn at(&self, rel: &str) -> PathBuf {
            self.root.path().join(rel)
        }

        fn write(&self, rel: &str, bytes: &[u8]) {
            let path = self.at(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("parent");
            }
            fs::write(path, bytes).expect("write fixture file");
        }

        fn link(&self, target: impl AsRef<Path>, rel: &str) {
            symlink(target, self.at(rel)).expect("symlink");
        }

        /// The outside directory still holds exactly `secret.txt` with its original content.
        fn assert_outside_untouched(&self) {
            let names: Vec<_> = fs::read_dir(&self.outside)
                .expect("read outside")
                .map(|entry| entry.expect("entry").file_name())
                .collect();
            assert_eq!(names, ["secret.txt"], "nothing created outside the root");
            assert_eq!(
                fs::read(self.outside.join("secret.txt")).expect("secret"),
                b"secret"
            );
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn assert_escape<T: fmt::Debug>(result: Result<T, StoreError>, what: &str) {
        match result {
            Err(StoreError::Escape) => {}
            other => panic!("{what}: expected Escape, got {other:?}"),
        }
    }

    // --- cap-std behaviour pinned -------------------------------------------------------------

    /// How cap-std reports an escape: `PermissionDenied`, no OS code, a fixed message. If an
    /// upgrade changes this, the mapping to `StoreError::Escape` must follow.
    #[test]
    fn cap_std_escape_error_shape_is_pinned() {
        let fx = Fixture::new();
        fx.link(fx.outside.join("secret.txt"), "abs-link");
        fx.link("../outside/secret.txt", "rel-link");
        for name in [
            "abs-link",
            "rel-link",
            "../outside/secret.txt",
            "/etc/hostname",
        ] {
            let err = fx.root.dir.open(name).expect_err("escape must be refused");
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{name}");
            assert_eq!(err.raw_os_error(), None, "{name}");
            assert_eq!(err.to_string(), CAP_STD_ESCAPE_MESSAGE, "{name}");
            assert!(
                matches!(StoreError::from(err), StoreError::Escape),
                "{name}"
            );
        }
    }

    // --- D8/D14: a symbolic link to a file outside the root -----------------------------------

    #[test]
    fn symlink_to_outside_file_is_refused_by_every_operation_d14() {
        let fx = Fixture::new();
        fx.write("ok.bin", b"ok");
        for target in [
            fx.outside.join("secret.txt"),
            PathBuf::from("../outside/secret.txt"),
        ] {
            let _ = fs::remove_file(fx.at("x.bin.sha256"));
            fx.link(&target, "x.bin.sha256");
            let root = &fx.root;
            assert_escape(root.stat("x.bin.sha256"), "stat");
            assert_escape(root.read_small("x.bin.sha256", 64), "read_small");
            assert_escape(root.open_read("x.bin.sha256"), "open_read");
            assert_escape(root.create_new("x.bin.sha256", 0o640), "create_new");
            assert_escape(root.open_append("x.bin.sha256"), "open_append");
            assert_escape(root.write_atomic("x.bin.sha256", b"0000"), "write_atomic");
            assert_escape(root.rename("ok.bin", "x.bin.sha256"), "rename onto link");
            assert_escape(root.rename("x.bin.sha256", "moved"), "rename of link");
            assert_escape(root.remove_file("x.bin.sha256"), "remove_file");
            fx.assert_outside_untouched();
            assert!(fx.at("x.bin.sha256").is_symlink(), "the link itself stays");
            assert_eq!(fs::read(fx.at("ok.bin")).expect("ok"), b"ok");
            assert!(!fx.at("moved").exists());
        }
    }

    #[test]
    fn symlinked_parent_dir_pointing_outside_is_refused_d8() {
        let fx = Fixture::new();
        fx.write("ok.bin", b"ok");
        fx.link(&fx.outside, "models");
        let root = &fx.root;
        assert_escape(root.stat("models/secret.txt"), "stat");
        assert_escape(root.read_small("models/secret.txt", 64), "read_small");
        assert_escape(root.open_read("models/secret.txt"), "open_read");
        assert_escape(root.create_new("models/new.bin", 0o640), "create_new");
        assert_escape(
            root.create_new("models/deeper/new.bin", 0o640),
            "create_new deeper",
        );
        assert_escape(root.open_append("models/.new.bin.partial"), "open_append");
        assert_escape(
            root.write_atomic("models/new.bin.sha256", b"00"),
            "write_atomic",
        );
        assert_escape(root.rename("ok.bin", "models/ok.bin"), "rename into");
        assert_escape(root.rename("models/secret.txt", "stolen"), "rename out of");
        assert_escape(root.remove_file("models/secret.txt"), "remove_file");
        assert_escape(root.list(Some("models"), |_| true), "list");
        fx.assert_outside_untouched();
        assert!(!fx.at("stolen").exists());
    }

    #[test]
    fn dangling_symlink_target_is_refused_and_nothing_is_created_outside_d14() {
        let fx = Fixture::new();
        for target in [
            fx.outside.join("planted.bin"),
            PathBuf::from("../outside/planted.bin"),
        ] {
            let _ = fs::remove_file(fx.at("upload.bin"));
            fx.link(&target, "upload.bin");
            assert_escape(fx.root.create_new("upload.bin", 0o640), "create_new");
            assert_escape(fx.root.write_atomic("upload.bin", b"data"), "write_atomic");
            assert_escape(fx.root.open_append("upload.bin"), "open_append");
            assert_eq!(
                fx.root.stat("upload.bin").map_err(|e| e.kind_label()),
                Err("escape")
            );
            fx.assert_outside_untouched();
        }
        // No temporary file of write_atomic is left behind either.
        assert_eq!(fx.root.list(None, |_| true).expect("list"), ["upload.bin"]);
    }

    // --- symbolic links that stay inside the root ---------------------------------------------

    #[test]
    fn symlink_inside_root_is_followed() {
        let fx = Fixture::new();
        fx.write("real/x.bin", b"content");
        fx.link("real/x.bin", "alias.bin");
        fx.link("real", "alias-dir");
        fx.write("sub/keep", b"");
        fx.link("../real/x.bin", "sub/up.bin");
        let root = &fx.root;
        assert!(matches!(
            root.stat("alias.bin"),
            Ok(EntryInfo::File { size: 7, .. })
        ));
        assert_eq!(root.stat("alias-dir").expect("stat"), EntryInfo::Directory);
        let (bytes, _) = root
            .read_small("sub/up.bin", 64)
            .expect("read")
            .expect("some");
        assert_eq!(bytes, b"content");
        let (mut file, len) = root.open_read("alias-dir/x.bin").expect("open");
        let mut read = String::new();
        file.read_to_string(&mut read).expect("read");
        assert_eq!((read.as_str(), len), ("content", 7));
        let mut file = root.create_new("alias-dir/new.bin", 0o640).expect("create");
        file.write_all(b"n").expect("write");
        assert_eq!(fs::read(fx.at("real/new.bin")).expect("new"), b"n");
        let (mut file, len) = root.open_append("alias.bin").expect("append");
        file.write_all(b"+").expect("append");
        assert_eq!(len, 7);
        assert_eq!(fs::read(fx.at("real/x.bin")).expect("x"), b"content+");
    }

    // --- stat, read_small, open_read ----------------------------------------------------------

    #[test]
    fn stat_reports_missing_directory_file_and_other() {
        let fx = Fixture::new();
        fx.write("d/f.bin", b"12345");
        let root = &fx.root;
        assert_eq!(root.stat("nope").expect("stat"), EntryInfo::Missing);
        assert_eq!(
            root.stat("d/nope/deeper").expect("stat"),
            EntryInfo::Missing
        );
        assert_eq!(root.stat("d").expect("stat"), EntryInfo::Directory);
        assert_eq!(root.stat("").expect("root itself"), EntryInfo::Directory);
        let meta = fs::metadata(fx.at("d/f.bin")).expect("meta");
        let expected_ns = mtime_ns(meta.mtime(), meta.mtime_nsec());
        assert_eq!(
            root.stat("d/f.bin").expect("stat"),
            EntryInfo::File {
                size: 5,
                mtime_ns: expected_ns
            }
        );
        make_fifo(&fx.at("fifo"));
        assert_eq!(root.stat("fifo").expect("stat"), EntryInfo::Other);
    }

    #[test]
    fn path_through_a_file_is_not_a_directory() {
        let fx = Fixture::new();
        fx.write("f.bin", b"x");
        assert!(matches!(
            fx.root.stat("f.bin/x"),
            Err(StoreError::NotADirectory)
        ));
        assert!(matches!(
            fx.root.open_read("f.bin/x"),
            Err(StoreError::NotADirectory)
        ));
        assert!(matches!(
            fx.root.create_new("f.bin/x", 0o640),
            Err(StoreError::NotADirectory)
        ));
    }

    #[test]
    fn overlong_name_is_name_too_long_d15() {
        let fx = Fixture::new();
        let long = "a".repeat(300);
        assert!(matches!(fx.root.stat(&long), Err(StoreError::NameTooLong)));
        assert!(matches!(
            fx.root.create_new(&long, 0o640),
            Err(StoreError::NameTooLong)
        ));
    }

    /// Policy: a NUL byte names nothing that can exist, so lookups say NotFound (never Io/500).
    #[test]
    fn nul_in_path_is_not_found_d15() {
        let fx = Fixture::new();
        assert!(matches!(fx.root.stat("a\0b"), Err(StoreError::NotFound)));
        assert!(matches!(
            fx.root.open_read("a\0b"),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(fx.root.read_small("a\0b", 8), Ok(None)));
        assert!(matches!(fx.root.remove_file("a\0b"), Ok(())));
    }

    #[test]
    fn read_small_returns_content_and_mtime_or_none_and_refuses_over_max() {
        let fx = Fixture::new();
        fx.write("x.sha256", b"abc");
        let root = &fx.root;
        let (bytes, mtime) = root.read_small("x.sha256", 3).expect("read").expect("some");
        assert_eq!(bytes, b"abc");
        let EntryInfo::File { mtime_ns, .. } = root.stat("x.sha256").expect("stat") else {
            panic!("x.sha256 is a file");
        };
        assert_eq!(mtime, mtime_ns);
        assert!(matches!(
            root.read_small("x.sha256", 2),
            Err(StoreError::TooLarge)
        ));
        assert!(matches!(root.read_small("missing.sha256", 64), Ok(None)));
        fs::create_dir(fx.at("dir.sha256")).expect("dir");
        assert!(matches!(
            root.read_small("dir.sha256", 64),
            Err(StoreError::IsADirectory)
        ));
    }

    #[test]
    fn open_read_refuses_directories_and_fifos_without_blocking_d5() {
        let fx = Fixture::new();
        fs::create_dir(fx.at("dir")).expect("dir");
        make_fifo(&fx.at("fifo"));
        assert!(matches!(
            fx.root.open_read("dir"),
            Err(StoreError::IsADirectory)
        ));
        assert!(matches!(
            fx.root.open_read(""),
            Err(StoreError::IsADirectory)
        ));
        assert!(matches!(
            fx.root.open_read("fifo"),
            Err(StoreError::NotAFile)
        ));
        assert!(matches!(
            fx.root.open_append("fifo"),
            Err(StoreError::NotAFile)
        ));
        assert!(matches!(
            fx.root.open_read("missing"),
            Err(StoreError::NotFound)
        ));
    }

    // --- creating and writing -----------------------------------------------------------------

    #[test]
    fn create_new_is_exclusive_applies_mode_and_creates_parents() {
        let fx = Fixture::new();
        let root = &fx.root;
        let mut file = root
            .create_new("a/b/.x.bin.0123456789abcdef.tmp", 0o600)
            .expect("create");
        file.write_all(b"data").expect("write");
        file.sync_all().expect("sync");
        assert_eq!(mode_of(&fx.at("a/b/.x.bin.0123456789abcdef.tmp")), 0o600);
        for dir in ["a", "a/b"] {
            assert_eq!(
                mode_of(&fx.at(dir)) & !DIR_MODE,
                0,
                "{dir} not wider than 0750"
            );
            assert_eq!(mode_of(&fx.at(dir)) & 0o700, 0o700, "{dir} owner rwx");
        }
        assert!(matches!(
            root.create_new("a/b/.x.bin.0123456789abcdef.tmp", 0o600),
            Err(StoreError::AlreadyExists)
        ));
        assert_eq!(
            fs::read(fx.at("a/b/.x.bin.0123456789abcdef.tmp")).expect("read"),
            b"data"
        );
        assert!(matches!(
            root.create_new("", 0o600),
            Err(StoreError::IsADirectory)
        ));
    }

    #[test]
    fn open_append_creates_with_0640_and_reports_current_length() {
        let fx = Fixture::new();
        let root = &fx.root;
        let (mut file, len) = root.open_append("m/.w.bin.partial").expect("create");
        assert_eq!(len, 0);
        file.write_all(b"hello").expect("write");
        file.sync_all().expect("sync");
        drop(file);
        assert_eq!(mode_of(&fx.at("m/.w.bin.partial")) & !FILE_MODE, 0);
        let (mut file, len) = root.open_append("m/.w.bin.partial").expect("reopen");
        assert_eq!(len, 5);
        // Append mode: writes land at the end whatever the cursor says.
        file.rewind().expect("rewind");
        file.write_all(b" world").expect("write");
        assert_eq!(
            fs::read(fx.at("m/.w.bin.partial")).expect("read"),
            b"hello world"
        );
        fs::create_dir(fx.at("m/d")).expect("dir");
        assert!(matches!(
            root.open_append("m/d"),
            Err(StoreError::IsADirectory)
        ));
    }

    #[test]
    fn write_atomic_replaces_content_with_0640_and_leaves_no_temp_d3() {
        let fx = Fixture::new();
        let root = &fx.root;
        root.write_atomic("w.bin.sha256", b"old").expect("first");
        root.write_atomic("w.bin.sha256", b"new").expect("second");
        assert_eq!(fs::read(fx.at("w.bin.sha256")).expect("read"), b"new");
        assert_eq!(mode_of(&fx.at("w.bin.sha256")) & !FILE_MODE, 0);
        root.write_atomic("deep/dir/w.bin.sha256.target", b"t")
            .expect("nested");
        fs::create_dir(fx.at("taken")).expect("dir");
        assert!(matches!(
            root.write_atomic("taken", b"x"),
            Err(StoreError::IsADirectory)
        ));
        assert_eq!(
            root.list(None, |_| true).expect("list"),
            ["deep/dir/w.bin.sha256.target", "w.bin.sha256"],
            "no temporary file left, the directory `taken` untouched"
        );
    }

    #[test]
    fn write_atomic_replaces_a_symlink_inside_the_root_instead_of_writing_through() {
        let fx = Fixture::new();
        fx.write("real.sha256", b"keep");
        fx.link("real.sha256", "x.sha256");
        fx.root.write_atomic("x.sha256", b"new").expect("write");
        assert!(!fx.at("x.sha256").is_symlink());
        assert_eq!(fs::read(fx.at("x.sha256")).expect("x"), b"new");
        assert_eq!(fs::read(fx.at("real.sha256")).expect("real"), b"keep");
    }

    /// Security §4.5: temp created exclusively, written, synced, renamed onto the final name.
    #[test]
    fn durable_replace_protocol_create_sync_rename() {
        let fx = Fixture::new();
        fx.write("models/m.bin", b"old");
        let root = &fx.root;
        let temp = "models/.m.bin.00000000000000ff.tmp";
        let mut file = root.create_new(temp, FILE_MODE).expect("temp");
        file.write_all(b"new").expect("write");
        file.sync_all().expect("sync");
        drop(file);
        assert_eq!(fs::read(fx.at("models/m.bin")).expect("old"), b"old");
        root.rename(temp, "models/m.bin").expect("rename");
        assert_eq!(fs::read(fx.at("models/m.bin")).expect("new"), b"new");
        assert_eq!(root.stat(temp).expect("stat"), EntryInfo::Missing);
        assert!(matches!(
            root.rename(temp, "models/m.bin"),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn remove_file_removes_and_missing_is_ok() {
        let fx = Fixture::new();
        fx.write("a/x.sha256", b"h");
        fx.write("inside", b"i");
        fx.link("inside", "a/link");
        let root = &fx.root;
        root.remove_file("a/x.sha256").expect("remove");
        root.remove_file("a/x.sha256").expect("again");
        root.remove_file("nowhere/x").expect("missing parent");
        root.remove_file("a/link").expect("link inside the root");
        assert_eq!(fs::read(fx.at("inside")).expect("target"), b"i");
        assert_eq!(
            root.list(Some("a"), |_| true).expect("list"),
            Vec::<String>::new()
        );
        assert!(matches!(
            root.remove_file("a"),
            Err(StoreError::IsADirectory)
        ));
    }

    // --- §2.9 output temp files ---------------------------------------------------------------

    #[test]
    fn create_output_temp_makes_empty_0600_file_at_top_level_2_9() {
        let fx = Fixture::new();
        let first = fx.root.create_output_temp().expect("temp");
        let second = fx.root.create_output_temp().expect("temp");
        assert_ne!(first, second);
        for name in [&first, &second] {
            let digits = name
                .strip_prefix("localai-output-")
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .expect("name pattern");
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{name}"
            );
            assert_eq!(mode_of(&fx.at(name)), 0o600, "{name}");
            assert_eq!(fs::metadata(fx.at(name)).expect("meta").len(), 0);
        }
    }

    // --- §2.10 listing ------------------------------------------------------------------------

    #[test]
    fn list_is_depth_first_in_byte_order_with_sidecars_2_10() {
        let fx = Fixture::new();
        for rel in [
            "b.txt",
            "b/c.txt",
            "a.txt",
            "B",
            "x.bin",
            "x.bin.sha256",
            "x.bin.sha256.target",
        ] {
            fx.write(rel, b"");
        }
        fs::create_dir(fx.at("empty")).expect("empty dir");
        let expected = [
            "B",
            "a.txt",
            "b/c.txt",
            "b.txt",
            "x.bin",
            "x.bin.sha256",
            "x.bin.sha256.target",
        ];
        assert_eq!(fx.root.list(None, |_| true).expect("list"), expected);
        assert_eq!(fx.root.list(Some(""), |_| true).expect("list"), expected);
        assert_eq!(fx.root.list(Some("b"), |_| true).expect("list"), ["c.txt"]);
        assert_eq!(
            fx.root.list(Some("empty"), |_| true).expect("list"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn list_shows_symlinks_as_entries_without_following_2_10() {
        let fx = Fixture::new();
        fx.write("d/f", b"");
        fx.link("d", "dir-link");
        fx.link(&fx.outside, "out-link");
        fx.link("nowhere", "dangling");
        assert_eq!(
            fx.root.list(None, |_| true).expect("list"),
            ["d/f", "dangling", "dir-link", "out-link"]
        );
        // The listed directory itself a link to a directory inside the root: LocalAI's ["."].
        assert_eq!(
            fx.root.list(Some("dir-link"), |_| true).expect("list"),
            ["."]
        );
    }

    #[test]
    fn list_omits_names_failing_visible_and_does_not_descend_them() {
        let fx = Fixture::new();
        for rel in [
            "a.bin",
            ".a.bin.partial",
            ".hidden/inner.bin",
            "sub/.x.0011223344556677.tmp",
            "sub/y",
        ] {
            fx.write(rel, b"");
        }
        let visible = |name: &str| !name.starts_with('.');
        assert_eq!(
            fx.root.list(None, visible).expect("list"),
            ["a.bin", "sub/y"]
        );
    }

    #[test]
    fn list_of_missing_or_non_directory_is_not_found_2_10() {
        let fx = Fixture::new();
        fx.write("f.bin", b"");
        fx.link("f.bin", "file-link");
        for rel in ["missing", "f.bin", "f.bin/below", "file-link"] {
            assert!(
                matches!(fx.root.list(Some(rel), |_| true), Err(StoreError::NotFound)),
                "{rel}"
            );
        }
    }

    // --- orphan sweep -------------------------------------------------------------------------

    #[test]
    fn remove_orphans_deletes_matching_regular_files_everywhere_hr_c01() {
        let fx = Fixture::new();
        for rel in [
            ".a.0000000000000001.tmp",
            "a",
            "m/n/.b.0000000000000002.tmp",
            "m/n/b",
            "m/.c.partial",
        ] {
            fx.write(rel, b"x");
        }
        fs::write(fx.outside.join(".o.0000000000000003.tmp"), b"o").expect("outside temp");
        fx.link(&fx.outside, "out");
        fx.link("a", ".l.0000000000000004.tmp");
        let removed = fx
            .root
            .remove_orphans(|name| name.ends_with(".tmp"))
            .expect("sweep");
        assert_eq!(removed, 2);
        assert_eq!(
            fx.root.list(None, |_| true).expect("list"),
            [
                ".l.0000000000000004.tmp",
                "a",
                "m/.c.partial",
                "m/n/b",
                "out"
            ]
        );
        assert!(
            fx.outside.join(".o.0000000000000003.tmp").exists(),
            "link not followed"
        );
    }

    #[test]
    fn remove_orphans_bounded_stops_after_max_entries() {
        let fx = Fixture::new();
        for i in 0..10 {
            fx.write(&format!("d/.t{i}.000000000000000{i}.tmp"), b"x");
        }
        let sweep = fx
            .root
            .remove_orphans_bounded(|name| name.ends_with(".tmp"), 4)
            .expect("sweep");
        assert!(!sweep.complete);
        assert_eq!(sweep.visited, 4);
        assert_eq!(sweep.removed, 3, "the directory `d` counts as one entry");
        let sweep = fx
            .root
            .remove_orphans_bounded(|name| name.ends_with(".tmp"), 100)
            .expect("sweep");
        assert!(sweep.complete);
        assert_eq!(sweep.removed, 7);
    }

    // --- temp files ---------------------------------------------------------------------------

    #[test]
    fn a_temp_guard_removes_its_file_through_a_renamed_parent() {
        let fx = Fixture::new();
        let (_file, guard) = fx
            .root
            .create_temp("p/.x.0000000000000001.tmp", FILE_MODE)
            .expect("temp");
        fs::rename(fx.at("p"), fx.at("p.moved")).expect("move");
        fx.link(&fx.outside, "p");
        drop(guard);
        assert!(!fx.at("p.moved/.x.0000000000000001.tmp").exists());
        let (_file, mut kept) = fx
            .root
            .create_temp(".y.0000000000000002.tmp", FILE_MODE)
            .expect("temp");
        kept.keep();
        drop(kept);
        assert!(fx.at(".y.0000000000000002.tmp").exists(), "kept");
    }

    #[test]
    fn check_writable_leaves_nothing_behind() {
        let fx = Fixture::new();
        fx.root.check_writable().expect("writable");
        assert_eq!(
            fx.root.list(None, |_| true).expect("list"),
            Vec::<String>::new()
        );
    }

    // --- roots --------------------------------------------------------------------------------

    #[test]
    fn open_or_create_makes_0750_dirs_and_refuses_a_file_d7() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("x/y/staging");
        let root = RootDir::open_or_create(&path).expect("create");
        assert!(root.path().is_absolute());
        assert_eq!(root.path(), path);
        for dir in ["x", "x/y", "x/y/staging"] {
            let mode = mode_of(&tmp.path().join(dir));
            assert_eq!(mode & !DIR_MODE, 0, "{dir}: {mode:o} not wider than 0750");
            assert_eq!(mode & 0o700, 0o700, "{dir}: owner rwx");
        }
        RootDir::open_or_create(&path).expect("existing dir is fine");
        let file = tmp.path().join("file");
        fs::write(&file, b"").expect("file");
        assert!(RootDir::open_or_create(&file).is_err());
        assert!(RootDir::open_or_create(&file.join("below")).is_err());
    }

    /// The server shares one `RootDir` per root across blocking tasks.
    #[test]
    fn root_dir_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RootDir>();
        assert_send_sync::<StoreError>();
    }

    // --- errors -------------------------------------------------------------------------------

    #[test]
    fn errors_map_from_errno_and_display_no_paths_d15() {
        let cases = [
            (libc::ENOENT, "not_found"),
            (libc::ELOOP, "escape"),
            (libc::EISDIR, "is_a_directory"),
            (libc::ENOTDIR, "not_a_directory"),
            (libc::EEXIST, "already_exists"),
            (libc::ENOSPC, "no_space"),
            (libc::EDQUOT, "no_space"),
            (libc::EFBIG, "file_too_large"),
            (libc::ENAMETOOLONG, "name_too_long"),
            (libc::ENXIO, "not_a_file"),
            (libc::EACCES, "io"),
            (libc::EIO, "io"),
        ];
        for (errno, label) in cases {
            let err = StoreError::from(io::Error::from_raw_os_error(errno));
            assert_eq!(err.kind_label(), label, "errno {errno}");
            assert!(!names_absolute_path(&err.to_string()), "{err}");
        }
        let custom = StoreError::from(io::Error::other("/secret/absolute/path failed"));
        assert_eq!(custom.kind_label(), "io");
        assert!(!custom.to_string().contains("/secret"), "{custom}");
        assert!(!names_absolute_path(&custom.to_string()), "{custom}");
        assert!(!names_absolute_path(&StoreError::TooLarge.to_string()));
        assert!(!names_absolute_path(&StoreError::NotAFile.to_string()));
    }

    #[test]
    fn errors_from_real_operations_carry_no_absolute_path_d15() {
        let fx = Fixture::new();
        fx.link(&fx.outside, "out");
        let root_text = fx.root.path().to_string_lossy().into_owned();
        let errors = [
            fx.root.open_read("missing").expect_err("missing"),
            fx.root.open_read("out/secret.txt").expect_err("escape"),
            fx.root.create_new("out/x", 0o600).expect_err("escape"),
        ];
        for err in errors {
            let text = format!("{err} {err:?}");
            assert!(!text.contains(&root_text), "{text}");
            assert!(!text.contains("outside"), "{text}");
        }
    }

    /// Whether `text` holds a word that starts like an absolute path.
    fn names_absolute_path(text: &str) -> bool {
        text.split_whitespace()
            .any(|word| word.trim_start_matches(['"', '\'', '(']).starts_with('/'))
    }

    fn make_fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
    }
}
