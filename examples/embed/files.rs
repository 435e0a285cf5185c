//! File effects for `examples/embed.rs`: the core plans every `HEAD`, `GET` and `PUT`, and
//! `nodegate-store` opens every path beneath its root (symlink escapes refused at open time,
//! temp files removed unless published, crash-safe renames). Blocking calls, made straight
//! from the connection's thread.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::StatusCode;
use http::header::{self, HeaderValue};
use nodegate_core::config::WorkerConfig;
use nodegate_core::file_fault::FileFault;
use nodegate_core::keys::{self, Root, Roots, Target};
use nodegate_core::range::{self, RangeAnswer};
use nodegate_core::response::Reply;
use nodegate_core::startup::Level;
use nodegate_core::upload::{
    self, AppendOutcome, BodyFailure, Finish, HeadAnswer, MinRate, NoRoom, RateCheck, RateVerdict,
    Sha256, Sidecar, UploadPlan, UploadRequest,
};
use nodegate_store::upload::{begin_append, discard as discard_state, hash_file, read_state};
use nodegate_store::{FILE_MODE, RootDir, StoreError};
use sha2::Digest as _;

use crate::http1::{Answer, Body};
use crate::{lock, log};

/// Size of the body buffers: the memory one transfer holds, whatever the file size.
const CHUNK: usize = 256 * 1024;

/// The three roots, opened once, and the per-key write locks.
pub(crate) struct Files {
    roots: Roots,
    dirs: [RootDir; 3],
    locks: KeyLocks,
}

/// How a body may be paced: the idle timeout (already on the socket) and the minimum rate.
pub(crate) type Pace = (Duration, MinRate);

impl Files {
    /// Makes the roots absolute, lets the core refuse `/` and nested roots, creates them,
    /// checks that they take writes and sweeps temp files left by interrupted uploads.
    pub(crate) fn open(worker: &WorkerConfig) -> Result<Self, String> {
        let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
        let absolute = |path: PathBuf| clean(&cwd.join(path));
        let roots = Roots {
            models: absolute(worker.models_dir()),
            staging: absolute(worker.staging_dir()),
            data: absolute(worker.data_dir()),
        };
        let refuse = |refusal| format!("refusing the storage directories: {refusal}");
        nodegate_core::roots::check_roots(&roots).map_err(refuse)?;
        let open = |root: Root| {
            let path = roots.dir(root);
            RootDir::open_or_create(path).map_err(|e| format!("preparing {}: {e}", path.display()))
        };
        let dirs = [open(Root::Models)?, open(Root::Staging)?, open(Root::Data)?];
        // Again on the resolved paths: a symbolic link can nest roots that look apart.
        let resolved = |root: Root| std::fs::canonicalize(roots.dir(root));
        if let (Ok(models), Ok(staging), Ok(data)) = (
            resolved(Root::Models),
            resolved(Root::Staging),
            resolved(Root::Data),
        ) {
            let resolved = Roots {
                models,
                staging,
                data,
            };
            nodegate_core::roots::check_roots(&resolved).map_err(refuse)?;
        }
        for dir in &dirs {
            dir.check_writable()
                .map_err(|e| format!("{} does not take writes: {e}", dir.path().display()))?;
            if let Err(error) = dir.remove_orphans_bounded(keys::is_temp_name, 200_000) {
                log(Level::Warn, &format!("could not clean temp files: {error}"));
            }
        }
        Ok(Self {
            roots,
            dirs,
            locks: KeyLocks::default(),
        })
    }

    fn dir(&self, root: Root) -> &RootDir {
        let [models, staging, data] = &self.dirs;
        match root {
            Root::Models => models,
            Root::Staging => staging,
            Root::Data => data,
        }
    }

    fn local_path(&self, target: &Target) -> String {
        self.roots.local_path(target).display().to_string()
    }

    /// `HEAD`: read the key's state, let the core answer; hash the file first if it asks.
    pub(crate) fn head(&self, target: &Target) -> Reply {
        let dir = self.dir(target.root());
        for _ in 0..3 {
            let mut state = match read_state(dir, target) {
                Ok(state) => state,
                Err(error) => return read_error(&error, "not found"),
            };
            if upload::answer_head(&state) == HeadAnswer::NeedHash {
                match self.hash_and_cache(dir, target, false) {
                    Ok(Some(sidecar)) => state.sidecar = Some(sidecar),
                    Ok(None) => continue, // the file changed while it was read
                    Err(error) => return read_error(&error, "not found"),
                }
            }
            return upload::answer_head(&state).reply(&self.local_path(target));
        }
        internal("the file kept changing while it was hashed")
    }

    /// `GET`, whole or the one range the core resolves.
    pub(crate) fn get(&self, target: &Target, range_header: Option<&HeaderValue>) -> Answer {
        let (file, size) = match self.dir(target.root()).open_read(target.rel()) {
            Ok(opened) => opened,
            Err(error) => return Answer::Reply(read_error(&error, "file not found")),
        };
        let (status, start, len, mut headers) = match range::resolve_range(range_header, size) {
            RangeAnswer::Full => (StatusCode::OK, 0, size, Vec::new()),
            RangeAnswer::Partial { start, end } => {
                let headers = range::partial_headers(start, end, size).to_vec();
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1, headers)
            }
            RangeAnswer::Unsatisfiable => return Answer::Reply(range::unsatisfiable(size)),
        };
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ));
        headers.push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
        Answer::File {
            status,
            headers,
            file,
            start,
            len,
        }
    }

    /// `PUT`: plan against the key's state, then carry out the plan.
    pub(crate) fn put(
        &self,
        target: &Target,
        request: &UploadRequest,
        body: &mut Body<'_>,
        pace: Pace,
    ) -> Reply {
        let dir = self.dir(target.root());
        // One writer per key: a resumable upload holds the key throughout; a full upload
        // streams into a private temp file and takes the key only to publish.
        let held = request.range.is_some().then(|| self.locks.lock(target));
        let planned = (|| -> Result<Option<UploadPlan>, StoreError> {
            for _ in 0..3 {
                let state = read_state(dir, target)?;
                match upload::plan_upload(request, &state) {
                    UploadPlan::NeedHash => {
                        self.hash_and_cache(dir, target, held.is_some())?;
                    }
                    plan => return Ok(Some(plan)),
                }
            }
            Ok(None)
        })();
        let outcome = match planned {
            Ok(Some(plan)) => self.carry_out(dir, target, request, plan, body, pace),
            Ok(None) => return internal("the file kept changing while it was hashed"),
            Err(error) => Err(error),
        };
        outcome.unwrap_or_else(|error| write_error(&error))
    }

    fn carry_out(
        &self,
        dir: &RootDir,
        target: &Target,
        request: &UploadRequest,
        plan: UploadPlan,
        body: &mut Body<'_>,
        pace: Pace,
    ) -> Result<Reply, StoreError> {
        let local = self.local_path(target);
        let (discard, offset, len, write_target, write_total) = match plan {
            UploadPlan::NeedHash => {
                return Ok(internal("the file kept changing while it was hashed"));
            }
            UploadPlan::Refuse { reply, discard } => {
                discard_state(dir, target, discard)?;
                return Ok(reply);
            }
            UploadPlan::AlreadyComplete { discard } => {
                discard_state(dir, target, discard)?;
                return Ok(upload::upload_ok(&local));
            }
            // A full upload: a fresh temp file, removed by its guard unless published.
            UploadPlan::WriteFull { max_len } => {
                let temp = target.temp(nonce());
                let (file, mut guard) = dir.create_temp(&temp, FILE_MODE)?;
                let (hash, written) = match stream_body(body, file, None, max_len, pace) {
                    Streamed::Done { hash, written } => (hash, written),
                    failed => return Ok(failed.reply(request)),
                };
                return match upload::finish_full(request, hash, written) {
                    Finish::Publish { sha256 } => {
                        let _key = self.locks.lock(target);
                        publish(dir, target, &temp, sha256, true)?;
                        guard.keep();
                        Ok(upload::upload_ok(&local))
                    }
                    Finish::Refuse { reply, discard } => {
                        discard_state(dir, target, discard)?;
                        Ok(reply)
                    }
                };
            }
            UploadPlan::Append {
                discard,
                offset,
                len,
                write_target,
                write_total,
                ..
            } => (discard, offset, len, write_target, write_total),
        };
        // A resumable chunk: the sidecars first, then append exactly `len` bytes to the partial.
        discard_state(dir, target, discard)?;
        let (file, current) = begin_append(dir, target, write_target, write_total)?;
        if current != offset {
            let message =
                "upload state changed while planning; retry from the size reported by HEAD";
            return Ok(Reply::error(StatusCode::CONFLICT, message));
        }
        let written = match stream_body(body, file, Some(len), None, pace) {
            Streamed::Done { written, .. } => written,
            failed => {
                let no_room = match &failed {
                    Streamed::Disk(StoreError::NoSpace) => Some(NoRoom::DiskFull),
                    Streamed::Disk(StoreError::FileTooLarge) => Some(NoRoom::FileTooLarge),
                    _ => None,
                };
                if let Some(no_room) = no_room {
                    discard_state(dir, target, upload::after_append_failed(no_room))?;
                }
                return Ok(failed.reply(request));
            }
        };
        if written < len {
            return Ok(upload::short_body(written, len));
        }
        match upload::after_append(request, offset + written) {
            AppendOutcome::Incomplete { reply } => Ok(reply),
            AppendOutcome::Complete => {
                let (hash, _, _) = hash_file(dir, &target.partial())?;
                match upload::finish_range(request, hash) {
                    Finish::Publish { sha256 } => {
                        publish(dir, target, &target.partial(), sha256, false)?;
                        Ok(upload::upload_ok(&local))
                    }
                    Finish::Refuse { reply, discard } => {
                        discard_state(dir, target, discard)?;
                        Ok(reply)
                    }
                }
            }
        }
    }

    /// Hashes the complete file and rewrites its sidecar, unless the file changed while it was
    /// read (`None`: look again). Takes the key unless the caller already holds it.
    fn hash_and_cache(
        &self,
        dir: &RootDir,
        target: &Target,
        held: bool,
    ) -> Result<Option<Sidecar>, StoreError> {
        let _key = (!held).then(|| self.locks.lock(target));
        let Some(hashed) = nodegate_store::upload::hash_and_cache(dir, target)? else {
            return Ok(None);
        };
        if let Some(error) = hashed.unsaved {
            let message = format!("could not cache the hash sidecar: {error}");
            log(Level::Warn, &message);
        }
        Ok(Some(hashed.sidecar))
    }
}

/// Publishes verified bytes under the key's name ([`nodegate_store::upload::publish`]); a
/// sidecar that could not be written is a warning.
fn publish(
    dir: &RootDir,
    target: &Target,
    source: &str,
    sha256: Sha256,
    supersede_partial: bool,
) -> Result<(), StoreError> {
    let unsaved = nodegate_store::upload::publish(dir, target, source, sha256, supersede_partial)?;
    if let Some(error) = unsaved {
        let message = format!("could not write the hash sidecar: {error}");
        log(Level::Warn, &message);
    }
    Ok(())
}

/// How streaming a body to disk ended.
enum Streamed {
    /// On disk and synced.
    Done { hash: Sha256, written: u64 },
    /// The body failed (too large, stalled, too slow, broken off).
    Failed(BodyFailure),
    /// The disk refused the bytes.
    Disk(StoreError),
}

impl Streamed {
    /// The reply for a body that did not make it (the core's words where it has them).
    fn reply(self, request: &UploadRequest) -> Reply {
        match self {
            Self::Done { .. } => internal("upload finished unexpectedly"),
            Self::Failed(failure) => failure.reply(request),
            Self::Disk(error) => write_error(&error),
        }
    }
}

/// Streams the body into `file` in [`CHUNK`]s while hashing: at most `exact` bytes are taken
/// (the rest stays unread), more than `max_len` fails. The file is synced before `Done`, and
/// also after a failure, so the bytes a partial keeps are on disk.
fn stream_body(
    body: &mut Body<'_>,
    file: std::fs::File,
    exact: Option<u64>,
    max_len: Option<u64>,
    pace: Pace,
) -> Streamed {
    let (_, min_rate) = pace;
    let started = Instant::now();
    let mut rate = RateCheck::new(min_rate, Duration::ZERO);
    let mut hasher = sha2::Sha256::new();
    let mut out = io::BufWriter::with_capacity(CHUNK, file);
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    let failure = loop {
        let room = exact.map_or(u64::MAX, |exact| exact - received);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            break None;
        }
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Some(Streamed::Failed(BodyFailure::Stalled));
            }
            Err(_) => break Some(Streamed::Failed(BodyFailure::Broken)),
        };
        received += n as u64;
        if rate.handle_progress(started.elapsed(), received) == RateVerdict::TooSlow {
            break Some(Streamed::Failed(BodyFailure::TooSlow(min_rate)));
        }
        if max_len.is_some_and(|max| received > max) {
            break Some(Streamed::Failed(BodyFailure::TooLarge));
        }
        hasher.update(&buf[..n]);
        if let Err(error) = out.write_all(&buf[..n]) {
            break Some(Streamed::Disk(error.into()));
        }
    };
    let synced = out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|file| file.sync_all());
    match (failure, synced) {
        (Some(failure), _) => failure,
        (None, Err(error)) => Streamed::Disk(error.into()),
        (None, Ok(())) => Streamed::Done {
            hash: Sha256(hasher.finalize().into()),
            written: received,
        },
    }
}

/// One lock per key: resumable uploads hold it throughout, full uploads and hashing while they
/// publish.
#[derive(Default)]
struct KeyLocks {
    held: Mutex<HashSet<(Root, String)>>,
    freed: Condvar,
}

/// A held key; released when dropped.
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: (Root, String),
}

impl KeyLocks {
    fn lock(&self, target: &Target) -> KeyGuard<'_> {
        let key = (target.root(), target.rel().to_owned());
        let mut held = lock(&self.held);
        while held.contains(&key) {
            held = self
                .freed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(key.clone());
        KeyGuard { locks: self, key }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.held).remove(&self.key);
        self.locks.freed.notify_all();
    }
}

/// The core's answer to a failure to read ([`FileFault::read_reply`]).
fn read_error(error: &StoreError, missing: &str) -> Reply {
    error
        .fault()
        .read_reply(missing)
        .unwrap_or_else(|| io_failure(error))
}

/// The core's answer to a failure to write ([`FileFault::write_reply`]).
fn write_error(error: &StoreError) -> Reply {
    error
        .fault()
        .write_reply()
        .unwrap_or_else(|| io_failure(error))
}

/// The server's own failure: logged here, a bare 500 for the client.
fn io_failure(error: &StoreError) -> Reply {
    log(Level::Error, &format!("file operation failed: {error}"));
    FileFault::internal_reply()
}

fn internal(message: &str) -> Reply {
    Reply::error(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// A temp-file nonce: random per process, unique per call (`create_temp` is exclusive anyway).
fn nonce() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Lexically resolves `.` and `..` (the roots must be clean for the core's checks).
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
