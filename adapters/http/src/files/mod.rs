//! File effects of the `/v1/files*` routes: the core decides, this module reads and writes.
//!
//! Metadata (opens, `stat`s, sidecars of at most 256 bytes) is handled on the connection's
//! thread, and file data is read there only from the page cache; everything that may wait for
//! the disk runs on the runtime's blocking pool ([`Runtime::unblock`]). Downloads are sent chunk
//! by chunk as hyper asks for them, with `sendfile` where the pages are cached
//! ([`ResponseBody`], `crate::sendfile`); `HEAD` reuses a state read before while its stamps
//! are unchanged (`nodegate_core::state_cache`); uploads ([`put`]) flow to a blocking
//! writer through a small bounded channel, so memory stays flat whatever the file size. Every
//! path comes from a core [`Target`] and is opened beneath its root by [`RootDir`], which
//! refuses symlinks that leave the root at open time.

mod put;

pub(crate) use put::BodyLimits;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use nodegate_core::file_fault::FileFault;
use nodegate_core::keys::{self, ListTarget, Root, Roots, Target};
use nodegate_core::metrics::UploadOutcome;
use nodegate_core::range::{self, RangeAnswer};
use nodegate_core::response::Reply;
use nodegate_core::state_cache::StateCache;
use nodegate_core::upload::{
    self, AppendOutcome, BodyFailure, Discard, Finish, HeadAnswer, MinRate, NoRoom, RateCheck,
    RateVerdict, Sha256, Sidecar, UploadPlan, UploadRequest,
};
use sha2::Digest as _;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tracing::{debug, error, info, warn};

use crate::access::millis;
use crate::body::ResponseBody;
use crate::metrics::Metrics;
use crate::runtime::{self, Runtime};
use crate::sendfile::Link;
use crate::server::{StartError, reply};
use nodegate_store::upload::read_state;
use nodegate_store::{EntryInfo, RootDir, StoreError};

/// Directory entries the start-up sweep of each root looks at, at most (a few seconds of
/// work even on a slow disk; a model root holds far fewer).
const SWEEP_MAX_ENTRIES: usize = 200_000;

pub(crate) struct Files<R: Runtime> {
    runtime: R,
    roots: Roots,
    models: Arc<RootDir>,
    staging: Arc<RootDir>,
    data: Arc<RootDir>,
    locks: KeyLocks,
    metrics: Arc<Metrics>,
    /// States `HEAD` reuses while their stamps are unchanged (the core decides which).
    states: Mutex<StateCache>,
}

impl<R: Runtime> Files<R> {
    pub(crate) fn open(
        runtime: R,
        roots: &Roots,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        // Refuse `/` and nested roots before creating anything.
        nodegate_core::roots::check_roots(roots).map_err(StartError::Roots)?;
        let open = |name: &'static str, root: Root| {
            let path = roots.dir(root);
            RootDir::open_or_create(path)
                .map(Arc::new)
                .map_err(|error| StartError::Root {
                    name,
                    path: path.to_path_buf(),
                    error,
                })
        };
        let files = Self {
            runtime,
            roots: roots.clone(),
            models: open("models", Root::Models)?,
            staging: open("staging", Root::Staging)?,
            data: open("data", Root::Data)?,
            locks: KeyLocks::default(),
            metrics,
            states: Mutex::new(StateCache::new_default()),
        };
        // Again on the resolved paths: a symbolic link can nest roots that look apart.
        let resolved = |root: Root| std::fs::canonicalize(roots.dir(root));
        if let (Ok(models), Ok(staging), Ok(data)) = (
            resolved(Root::Models),
            resolved(Root::Staging),
            resolved(Root::Data),
        ) {
            nodegate_core::roots::check_roots(&Roots {
                models,
                staging,
                data,
            })
            .map_err(StartError::Roots)?;
        }
        for (name, root, dir) in files.named() {
            dir.check_writable()
                .map_err(|error| StartError::NotWritable {
                    name,
                    path: roots.dir(root).to_path_buf(),
                    error,
                })?;
        }
        for (name, _, dir) in files.named() {
            match dir.remove_orphans_bounded(keys::is_temp_name, SWEEP_MAX_ENTRIES) {
                Ok(sweep) => {
                    if sweep.removed > 0 {
                        info!(
                            root = name,
                            count = sweep.removed,
                            "removed temp files of interrupted uploads"
                        );
                    }
                    if !sweep.complete {
                        warn!(
                            root = name,
                            visited = sweep.visited,
                            "the root holds more entries than the start-up sweep looks at; \
                             temp files of interrupted uploads further in stay until removed"
                        );
                    }
                }
                Err(error) => warn!(root = name, error = %error, "could not clean temp files"),
            }
        }
        Ok(files)
    }

    fn named(&self) -> [(&'static str, Root, &Arc<RootDir>); 3] {
        [
            ("models", Root::Models, &self.models),
            ("staging", Root::Staging, &self.staging),
            ("data", Root::Data, &self.data),
        ]
    }

    fn dir(&self, root: Root) -> Arc<RootDir> {
        match root {
            Root::Models => self.models.clone(),
            Root::Staging => self.staging.clone(),
            Root::Data => self.data.clone(),
        }
    }

    fn local_path(&self, target: &Target) -> String {
        self.roots.local_path(target).display().to_string()
    }

    /// `HEAD /v1/files/{key}`.
    pub(crate) async fn head(&self, target: &Target) -> Reply {
        let dir = self.dir(target.root());
        for _ in 0..3 {
            // On this thread: a few `stat`s and reads of sidecars of at most a few hundred
            // bytes cost less than a hand-off to the blocking pool (so does the plan of a PUT).
            // A state read before is reused while its stamps (three `statx`) are unchanged;
            // the clock is read before the stamps (`nodegate_core::state_cache`).
            let now_ns = unix_now_ns();
            let stamps = dir.stamps(target);
            let kept = stamps.as_ref().and_then(|stamps| {
                self.states
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(target, stamps)
            });
            let mut state = match kept {
                Some(state) => state,
                None => match read_state(&dir, target) {
                    Ok(state) => {
                        if let Some(stamps) = &stamps {
                            self.states
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .offer(target, stamps, &state, now_ns);
                        }
                        state
                    }
                    Err(error) => return read_error(&error, "not found"),
                },
            };
            self.metrics.partial(target, state.partial);
            if upload::answer_head(&state) == HeadAnswer::NeedHash {
                match self.hash_and_cache(&dir, target).await {
                    // Answer from the fresh hash even if the sidecar could not be written
                    // (a read-only tree): the core sees a trusted sidecar either way.
                    Ok(Some(sidecar)) => state.sidecar = Some(sidecar),
                    Ok(None) => continue, // the file changed while it was read
                    Err(error) => return read_error(&error, "not found"),
                }
            }
            return upload::answer_head(&state).reply(&self.local_path(target));
        }
        internal("the file kept changing while it was hashed")
    }

    /// `GET /v1/files/{key}`, whole or one range.
    pub(crate) async fn get(
        &self,
        target: &Target,
        range_header: Option<&HeaderValue>,
        link: Option<Link>,
    ) -> Response<ResponseBody> {
        let dir = self.dir(target.root());
        // Opened on this thread: an open and a `stat` of a cached entry cost microseconds, less
        // than any hand-off to the blocking pool (bench/README.md); data is read here only when
        // the page cache holds it (see `read_small_body` and `ResponseBody::file`).
        let (file, size) = match dir.open_read(target.rel()) {
            Ok(opened) => opened,
            Err(error) => return reply(read_error(&error, "file not found"), &http::Method::GET),
        };
        let (status, start, len, content_range) = match range::resolve_range(range_header, size) {
            RangeAnswer::Full => (StatusCode::OK, 0, size, None),
            RangeAnswer::Partial { start, end } => (
                StatusCode::PARTIAL_CONTENT,
                start,
                end - start + 1,
                Some(format!("bytes {start}-{end}/{size}")),
            ),
            RangeAnswer::Unsatisfiable => {
                let answer =
                    Reply::error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                        .with_header(CONTENT_RANGE, header_value(&format!("bytes */{size}")));
                return reply(answer, &http::Method::GET);
            }
        };
        let body = if len <= SMALL_BODY {
            match read_small_body(&self.runtime, file, start, len).await {
                Ok(bytes) => ResponseBody::full(bytes),
                Err(error) => {
                    return reply(read_error(&error, "file not found"), &http::Method::GET);
                }
            }
        } else {
            ResponseBody::file(&self.runtime, file, start, len, link)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(content_range) = content_range {
            headers.insert(CONTENT_RANGE, header_value(&content_range));
        }
        response
    }

    /// `POST /v1/files/temp`.
    pub(crate) async fn alloc_temp(&self) -> Reply {
        let staging = self.staging.clone();
        match blocking(&self.runtime, move || staging.create_output_temp()).await {
            Ok(name) => {
                let path = self.roots.dir(Root::Staging).join(name);
                upload::upload_ok(&path.display().to_string())
            }
            Err(error) => write_error(&error),
        }
    }

    /// `GET /v1/files-list/{key}`.
    pub(crate) async fn list(&self, target: &ListTarget) -> Reply {
        let (dir, rel) = match target {
            ListTarget::Root(root) => (self.dir(*root), None),
            ListTarget::Dir(target) => (self.dir(target.root()), Some(target.rel().to_owned())),
        };
        let listed = blocking(&self.runtime, move || {
            dir.list(rel.as_deref(), keys::is_listable)
        })
        .await;
        match listed {
            Ok(files) if files.is_empty() => {
                Reply::json(StatusCode::OK, &serde_json::json!({ "files": null }))
            }
            Ok(files) => Reply::json(StatusCode::OK, &serde_json::json!({ "files": files })),
            Err(StoreError::NotFound | StoreError::NotADirectory | StoreError::Escape) => {
                Reply::error(StatusCode::NOT_FOUND, "directory not found")
            }
            Err(error) => read_error(&error, "directory not found"),
        }
    }

    async fn hash_and_cache(
        &self,
        dir: &Arc<RootDir>,
        target: &Target,
    ) -> Result<Option<Sidecar>, StoreError> {
        let _guard = self.locks.lock(target).await;
        self.hash_and_cache_locked(dir, target).await
    }

    /// Hashes the complete file and rewrites its sidecar, but only if the file did not change
    /// while it was read: a sidecar must never describe other bytes (HR-C03). The caller holds
    /// the key lock, so no upload of ours can publish in between. Returns the sidecar as the
    /// core should see it, or `None` when the file changed and must be looked at again.
    async fn hash_and_cache_locked(
        &self,
        dir: &Arc<RootDir>,
        target: &Target,
    ) -> Result<Option<Sidecar>, StoreError> {
        let dir = dir.clone();
        let target = target.clone();
        blocking(&self.runtime, move || {
            let Some(hashed) = nodegate_store::upload::hash_and_cache(&dir, &target)? else {
                return Ok(None);
            };
            if let Some(error) = hashed.unsaved {
                // A read-only tree still answers HEAD; the hash is recomputed next time.
                warn!(error = %error, "could not cache the hash sidecar");
            }
            Ok(Some(hashed.sidecar))
        })
        .await
    }
}

/// Reads a body of at most one chunk: from the page cache on this thread when it is there
/// (no hand-off at all), else in one hop to the blocking pool.
async fn read_small_body<R: Runtime>(
    runtime: &R,
    file: std::fs::File,
    start: u64,
    len: u64,
) -> Result<Bytes, StoreError> {
    let mut buf = vec![0; usize::try_from(len).map_err(|_| StoreError::TooLarge)?];
    let mut done = 0;
    while done < buf.len() {
        match nodegate_store::read_cached(&file, &mut buf[done..], start + done as u64) {
            Ok(Some(0)) => return Err(StoreError::from(shrank())),
            Ok(Some(n)) => done += n,
            Ok(None) => break,
            Err(error) => return Err(StoreError::from(error)),
        }
    }
    if done == buf.len() {
        return Ok(Bytes::from(buf));
    }
    blocking(runtime, move || {
        use std::os::unix::fs::FileExt as _;
        file.read_exact_at(&mut buf[done..], start + done as u64)?;
        Ok(Bytes::from(buf))
    })
    .await
}

/// The error of a file that ended before the length it had when opened.
fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
}

/// One lock per key: resumable uploads hold it throughout, full uploads and hash caching
/// while they publish (D4).
#[derive(Default)]
struct KeyLocks {
    map: Mutex<HashMap<(Root, String), KeyLock>>,
}

type KeyLock = Arc<tokio::sync::Mutex<()>>;

impl KeyLocks {
    async fn lock(&self, target: &Target) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget locks nobody holds or waits for, so the map stays small.
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
            map.entry((target.root(), target.rel().to_owned()))
                .or_default()
                .clone()
        };
        lock.lock_owned().await
    }
}

/// Largest body a `GET` reads whole on the blocking pool instead of streaming (one chunk of a
/// streamed download: the memory bound per download is unchanged).
const SMALL_BODY: u64 = crate::body::READ_CHUNK as u64;

async fn blocking<R, T, F>(runtime: &R, work: F) -> Result<T, StoreError>
where
    R: Runtime,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match runtime.unblock(work).await {
        Ok(result) => result,
        Err(unfinished) => Err(StoreError::Io(io::Error::other(unfinished.to_string()))),
    }
}

/// The core's answer to a failure to read ([`FileFault::read_reply`]: escapes read as
/// missing, so a client cannot probe what lies outside the roots).
fn read_error(error: &StoreError, missing: &str) -> Reply {
    error
        .fault()
        .read_reply(missing)
        .unwrap_or_else(|| io_failure(error))
}

/// The core's answer to a failure to write ([`FileFault::write_reply`]: client-caused cases
/// are 4xx, a full disk 507).
fn write_error(error: &StoreError) -> Reply {
    error
        .fault()
        .write_reply()
        .unwrap_or_else(|| io_failure(error))
}

/// The server's own failure: logged here, a bare 500 for the client.
fn io_failure(error: &StoreError) -> Reply {
    error!(error = %error, kind = error.kind_label(), "file operation failed");
    FileFault::internal_reply()
}

fn internal(message: &str) -> Reply {
    Reply::error(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The wall clock in nanoseconds since the Unix epoch, as filesystem timestamps count
/// (0 if it reads before the epoch, which keeps nothing cached).
fn unix_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i128::try_from(since.as_nanos()).unwrap_or(0))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

/// A temp-file nonce: random per process, unique per call. `create_new` retries on the rare
/// collision anyway.
fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}
