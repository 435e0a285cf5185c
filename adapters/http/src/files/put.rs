//! `PUT /v1/files/{key}`: full and resumable uploads — the core plans, this module streams the
//! body into a temp or partial file on the blocking pool, hashes it beside the writer, and
//! publishes or discards in the order the core's `upload` module documents.

use super::*;

/// Body chunks buffered between the socket and the writer thread.
const WRITE_QUEUE: usize = 8;
/// Write buffer of the upload writer thread.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes written between two background flushes of an upload.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;

impl<R: Runtime> Files<R> {
    /// `PUT /v1/files/{key}`: full or resumable upload. Returns the reply and the body bytes
    /// received; emits the upload's one completion or failure event.
    pub(crate) async fn put(
        &self,
        target: &Target,
        request: &UploadRequest,
        body: Incoming,
        idle: BodyLimits,
        remote: SocketAddr,
    ) -> (Reply, u64) {
        debug!(
            %remote,
            key = target.key().as_str(),
            content_length = request.content_length,
            range = request.range.map(|r| format!("{}-{}/{}", r.start, r.end, r.total)),
            "receiving upload"
        );
        let _in_progress = self.metrics.upload_started();
        let started = Instant::now();
        let dir = self.dir(target.root());
        let mut progress = Progress {
            received: 0,
            touches_partial: request.range.is_some(),
        };
        let end = self
            .put_planned(&dir, target, request, body, idle, &mut progress)
            .await;
        if progress.touches_partial
            && let Ok(size) = partial_size(&self.runtime, &dir, target).await
        {
            self.metrics.partial(target, size);
        }
        self.metrics.received(progress.received);
        let event = UploadEvent {
            key: target.key().as_str(),
            remote,
            bytes: progress.received,
            elapsed: started.elapsed(),
        };
        let reply = match end {
            PutEnd::Published {
                reply,
                sha256,
                verified,
            } => {
                self.metrics.upload(UploadOutcome::Published);
                event.published(&self.local_path(target), sha256, verified);
                reply
            }
            PutEnd::Partial { reply, size, total } => {
                self.metrics.upload(UploadOutcome::Partial);
                event.partial(size, total);
                reply
            }
            PutEnd::Failed { reply, reason } => {
                self.metrics.upload(UploadOutcome::Failed);
                event.failed(reply.status, &reason);
                reply
            }
        };
        (reply, progress.received)
    }

    async fn put_planned(
        &self,
        dir: &Arc<RootDir>,
        target: &Target,
        request: &UploadRequest,
        body: Incoming,
        idle: BodyLimits,
        progress: &mut Progress,
    ) -> PutEnd {
        // Resumable uploads hold the key for their whole duration; full uploads stream into a
        // private temp file and take the key only to publish.
        let guard = if request.range.is_some() {
            Some(self.locks.lock(target).await)
        } else {
            None
        };
        let mut plan = None;
        for _ in 0..3 {
            let state = match read_state(dir, target) {
                Ok(state) => state,
                Err(error) => return PutEnd::store(&error),
            };
            progress.touches_partial |= state.partial.is_some();
            match upload::plan_upload(request, &state) {
                UploadPlan::NeedHash => {
                    let hashed = if guard.is_some() {
                        self.hash_and_cache_locked(dir, target).await
                    } else {
                        self.hash_and_cache(dir, target).await
                    };
                    if let Err(error) = hashed {
                        return PutEnd::store(&error);
                    }
                }
                UploadPlan::AlreadyComplete { discard } => {
                    if let Err(error) = discard_state(&self.runtime, dir, target, discard).await {
                        return PutEnd::store(&error);
                    }
                    let Some(sha256) = state.complete_hash() else {
                        return PutEnd::internal("the complete file has no trusted hash");
                    };
                    return PutEnd::Published {
                        reply: upload::upload_ok(&self.local_path(target)),
                        sha256,
                        verified: request.expected.is_some(),
                    };
                }
                decided => {
                    plan = Some(decided);
                    break;
                }
            }
        }
        let Some(plan) = plan else {
            return PutEnd::internal("the file kept changing while it was hashed");
        };
        match plan {
            UploadPlan::NeedHash | UploadPlan::AlreadyComplete { .. } => {
                PutEnd::internal("the file kept changing while it was hashed")
            }
            UploadPlan::Refuse { reply, discard } => {
                if let Err(error) = discard_state(&self.runtime, dir, target, discard).await {
                    return PutEnd::store(&error);
                }
                PutEnd::refused(reply)
            }
            UploadPlan::WriteFull { max_len } => {
                self.put_full(dir, target, request, body, idle, max_len, progress)
                    .await
            }
            UploadPlan::Append {
                discard,
                offset,
                len,
                write_target,
                write_total,
                completes: _,
            } => {
                let guard = guard.expect("resumable uploads always hold the key lock");
                self.put_range(
                    dir,
                    target,
                    request,
                    body,
                    idle,
                    AppendStep {
                        discard,
                        offset,
                        len,
                        write_target,
                        write_total,
                    },
                    guard,
                    progress,
                )
                .await
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the upload is already grouped"
    )]
    async fn put_full(
        &self,
        dir: &Arc<RootDir>,
        target: &Target,
        request: &UploadRequest,
        body: Incoming,
        idle: BodyLimits,
        max_len: Option<u64>,
        progress: &mut Progress,
    ) -> PutEnd {
        let temp = target.temp(nonce());
        let created = {
            let dir = dir.clone();
            let temp = temp.clone();
            blocking(&self.runtime, move || dir.create_temp(&temp, 0o640)).await
        };
        // Every way out of this function that does not publish drops `guard`, which unlinks the
        // temp file through its directory handle: a failed body, a refused hash, a failed
        // publish (a parent swapped for a symlink), and this future being dropped mid-upload.
        let (file, mut guard) = match created {
            Ok(created) => created,
            Err(error) => return PutEnd::store(&error),
        };
        let (outcome, received) = stream_body(&self.runtime, body, file, None, max_len, idle).await;
        progress.received = received;
        let (hash, written) = match outcome {
            Streamed::Done { hash, written } => (hash, written),
            failed => return failed.end(request, received, idle),
        };
        match upload::finish_full(request, hash, written) {
            Finish::Publish { sha256 } => {
                let _lock = self.locks.lock(target).await;
                match publish(&self.runtime, dir, target, &temp, sha256, true).await {
                    Ok(()) => {
                        guard.keep();
                        PutEnd::Published {
                            reply: upload::upload_ok(&self.local_path(target)),
                            sha256,
                            verified: request.expected.is_some(),
                        }
                    }
                    Err(error) => PutEnd::store(&error),
                }
            }
            Finish::Refuse { reply, .. } => PutEnd::finish_refused(reply, request, hash, written),
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the step is already grouped"
    )]
    async fn put_range(
        &self,
        dir: &Arc<RootDir>,
        target: &Target,
        request: &UploadRequest,
        body: Incoming,
        idle: BodyLimits,
        step: AppendStep,
        _guard: OwnedMutexGuard<()>,
        progress: &mut Progress,
    ) -> PutEnd {
        if let Err(error) = discard_state(&self.runtime, dir, target, step.discard).await {
            return PutEnd::store(&error);
        }
        let opened = {
            let dir = dir.clone();
            let target = target.clone();
            let (write_target, write_total) = (step.write_target, step.write_total);
            blocking(&self.runtime, move || {
                nodegate_store::upload::begin_append(&dir, &target, write_target, write_total)
            })
            .await
        };
        let (file, current) = match opened {
            Ok(opened) => opened,
            Err(error) => return PutEnd::store(&error),
        };
        if current != step.offset {
            // The plan was made under the key lock from this very state, so this is a bug or
            // an outside writer; refuse without touching the bytes.
            return PutEnd::Failed {
                reply: Reply::error(
                    StatusCode::CONFLICT,
                    "upload state changed while planning; retry from the size reported by HEAD",
                ),
                reason: format!(
                    "the partial file holds {current} bytes, not the {} planned: another writer?",
                    step.offset
                ),
            };
        }
        let (outcome, received) =
            stream_body(&self.runtime, body, file, Some(step.len), None, idle).await;
        progress.received = received;
        let written = match outcome {
            Streamed::Done { written, .. } => written,
            failed => {
                let no_room = match &failed {
                    Streamed::Disk(StoreError::NoSpace) => Some(NoRoom::DiskFull),
                    Streamed::Disk(StoreError::FileTooLarge) => Some(NoRoom::FileTooLarge),
                    _ => None,
                };
                if let Some(no_room) = no_room {
                    let discard = upload::after_append_failed(no_room);
                    if !discard.is_nothing() {
                        warn!(
                            key = target.key().as_str(),
                            "disk full while appending: the partial upload is discarded so the root recovers"
                        );
                    }
                    if let Err(error) = discard_state(&self.runtime, dir, target, discard).await {
                        warn!(error = %error, "could not discard the partial upload");
                    }
                }
                return failed.end(request, received, idle);
            }
        };
        if written < step.len {
            return PutEnd::Failed {
                reply: upload::short_body(written, step.len),
                reason: format!(
                    "client cut off mid-body: {written} of {} bytes arrived; the partial keeps them",
                    step.len
                ),
            };
        }
        match upload::after_append(request, step.offset + written) {
            AppendOutcome::Incomplete { reply } => PutEnd::Partial {
                reply,
                size: step.offset + written,
                total: request.range.map(|r| r.total),
            },
            AppendOutcome::Complete => {
                let hashed = {
                    let dir = dir.clone();
                    let partial = target.partial();
                    blocking(&self.runtime, move || {
                        nodegate_store::upload::hash_file(&dir, &partial)
                    })
                    .await
                };
                let (hash, _, _) = match hashed {
                    Ok(hashed) => hashed,
                    Err(error) => return PutEnd::store(&error),
                };
                match upload::finish_range(request, hash) {
                    Finish::Publish { sha256 } => {
                        match publish(&self.runtime, dir, target, &target.partial(), sha256, false)
                            .await
                        {
                            Ok(()) => PutEnd::Published {
                                reply: upload::upload_ok(&self.local_path(target)),
                                sha256,
                                verified: request.expected.is_some(),
                            },
                            Err(error) => PutEnd::store(&error),
                        }
                    }
                    Finish::Refuse { reply, discard } => {
                        if let Err(error) = discard_state(&self.runtime, dir, target, discard).await
                        {
                            return PutEnd::store(&error);
                        }
                        PutEnd::finish_refused(reply, request, hash, step.offset + written)
                    }
                }
            }
        }
    }
}

/// What an upload request has done so far, for the log and the metrics.
struct Progress {
    /// Body bytes received.
    received: u64,
    /// Whether the key's partial file may have changed (a range upload, or one was found).
    touches_partial: bool,
}

/// How an upload request ended.
enum PutEnd {
    /// Verified (or accepted without a declared hash) and published; or already complete.
    Published {
        reply: Reply,
        sha256: Sha256,
        /// Whether `X-Content-SHA256` was declared and matched.
        verified: bool,
    },
    /// A chunk of a resumable upload was stored (308).
    Partial {
        reply: Reply,
        size: u64,
        total: Option<u64>,
    },
    /// Refused or failed; `reason` in words.
    Failed { reply: Reply, reason: String },
}

impl PutEnd {
    /// The core refused the upload: its answer to the client is the reason.
    fn refused(reply: Reply) -> Self {
        let reason = String::from_utf8_lossy(&reply.body).trim_end().to_owned();
        Self::Failed { reply, reason }
    }

    /// The core refused a written body: a hash that differs from the declared one, in the
    /// operator's words; otherwise the core's own words (short body, over the limit).
    fn finish_refused(
        reply: Reply,
        request: &UploadRequest,
        computed: Sha256,
        written: u64,
    ) -> Self {
        match request.expected {
            Some(declared)
                if declared != computed
                    && request.content_length.is_none_or(|len| len == written) =>
            {
                Self::Failed {
                    reply,
                    reason: format!("hash mismatch: declared {declared} computed {computed}"),
                }
            }
            _ => Self::refused(reply),
        }
    }

    fn store(error: &StoreError) -> Self {
        let reason = match error {
            StoreError::NoSpace => format!("disk full: {error}"),
            other => format!("cannot store the upload: {other}"),
        };
        Self::Failed {
            reply: write_error(error),
            reason,
        }
    }

    fn internal(message: &str) -> Self {
        Self::Failed {
            reply: internal(message),
            reason: message.to_owned(),
        }
    }
}

/// The one event that ends an upload request; every variant carries `key`, `bytes` (body
/// bytes received), `duration_ms` and `remote`.
struct UploadEvent<'a> {
    key: &'a str,
    remote: SocketAddr,
    bytes: u64,
    elapsed: Duration,
}

impl UploadEvent<'_> {
    fn rate_mib_s(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "a rate for the log, not an account"
        )]
        let bytes = self.bytes as f64;
        (bytes / seconds / 1_048_576.0 * 100.0).round() / 100.0
    }

    fn published(&self, local_path: &str, sha256: Sha256, verified: bool) {
        let hash = if verified { "verified" } else { "not declared" };
        info!(
            key = self.key,
            bytes = self.bytes,
            duration_ms = millis(self.elapsed),
            rate_mib_s = self.rate_mib_s(),
            hash,
            sha256 = %sha256,
            published = local_path,
            remote = %self.remote,
            "upload complete"
        );
    }

    fn partial(&self, size: u64, total: Option<u64>) {
        info!(
            key = self.key,
            bytes = self.bytes,
            duration_ms = millis(self.elapsed),
            rate_mib_s = self.rate_mib_s(),
            partial = size,
            total,
            remote = %self.remote,
            "upload chunk stored; the upload is partial"
        );
    }

    fn failed(&self, status: StatusCode, reason: &str) {
        warn!(
            key = self.key,
            bytes = self.bytes,
            duration_ms = millis(self.elapsed),
            status = status.as_u16(),
            reason,
            remote = %self.remote,
            "upload failed"
        );
    }
}

/// The size of the key's partial file: `Ok(None)` when there is none.
async fn partial_size<R: Runtime>(
    runtime: &R,
    dir: &Arc<RootDir>,
    target: &Target,
) -> Result<Option<u64>, StoreError> {
    let dir = dir.clone();
    let partial = target.partial();
    blocking(runtime, move || match dir.stat(&partial)? {
        EntryInfo::File { size, .. } => Ok(Some(size)),
        _ => Ok(None),
    })
    .await
}

/// How slow a request body may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Longest pause between two pieces.
    pub(crate) idle: Duration,
    /// Slowest average over a window.
    pub(crate) min_rate: MinRate,
}

struct AppendStep {
    discard: Discard,
    offset: u64,
    len: u64,
    write_target: Option<Sha256>,
    write_total: Option<u64>,
}

/// Publishes verified bytes under the key's name on the blocking pool
/// ([`nodegate_store::upload::publish`]: sidecar, rename, sidecar, in the crash-safe order).
async fn publish<R: Runtime>(
    runtime: &R,
    dir: &Arc<RootDir>,
    target: &Target,
    source: &str,
    sha256: Sha256,
    supersede_partial: bool,
) -> Result<(), StoreError> {
    let dir = dir.clone();
    let target = target.clone();
    let source = source.to_owned();
    blocking(runtime, move || {
        let published =
            nodegate_store::upload::publish(&dir, &target, &source, sha256, supersede_partial);
        if let Some(error) = published? {
            warn!(error = %error, "could not write the hash sidecar; HEAD will recompute it");
        }
        Ok(())
    })
    .await
}

/// Deletes the in-progress state the core names, on the blocking pool (no hop for nothing).
async fn discard_state<R: Runtime>(
    runtime: &R,
    dir: &Arc<RootDir>,
    target: &Target,
    discard: Discard,
) -> Result<(), StoreError> {
    if discard.is_nothing() {
        return Ok(());
    }
    let dir = dir.clone();
    let target = target.clone();
    blocking(runtime, move || {
        nodegate_store::upload::discard(&dir, &target, discard)
    })
    .await
}

/// How streaming a request body to disk ended.
enum Streamed {
    /// The body (or the requested span of it) is on disk and synced.
    Done { hash: Sha256, written: u64 },
    /// The body failed (too large, stalled, too slow, broken off).
    Failed(BodyFailure),
    /// The disk refused the bytes.
    Disk(StoreError),
}

impl Streamed {
    /// The failed end of an upload: the reply, and the reason in words for the log.
    fn end(self, request: &UploadRequest, received: u64, limits: BodyLimits) -> PutEnd {
        let reason = match &self {
            Self::Done { .. } => "upload finished unexpectedly".to_owned(),
            Self::Failed(BodyFailure::TooLarge) => format!(
                "the streamed body went over the upload limit of {} bytes",
                request.limit.unwrap_or(u64::MAX)
            ),
            Self::Failed(BodyFailure::Stalled) => format!(
                "client stalled: no body bytes for {} s after {received} bytes",
                limits.idle.as_secs()
            ),
            Self::Failed(BodyFailure::TooSlow(min)) => format!(
                "client too slow: under {} bytes/s over {} s",
                min.bytes_per_second,
                min.window.as_secs()
            ),
            Self::Failed(BodyFailure::Broken) => {
                match request.content_length.or(request.range.map(|r| r.len())) {
                    Some(expected) => format!(
                        "client cut off mid-body: the connection ended after {received} of {expected} bytes"
                    ),
                    None => format!(
                        "client cut off mid-body: the chunked body broke off after {received} bytes"
                    ),
                }
            }
            Self::Disk(StoreError::NoSpace) => format!("disk full: {}", StoreError::NoSpace),
            Self::Disk(error) => format!("cannot write the upload: {error}"),
        };
        PutEnd::Failed {
            reply: self.reply(request),
            reason,
        }
    }

    fn reply(self, request: &UploadRequest) -> Reply {
        match self {
            Self::Done { .. } => internal("upload finished unexpectedly"),
            Self::Failed(failure) => failure.reply(request),
            Self::Disk(error) => write_error(&error),
        }
    }
}

/// Streams the request body into `file` on a blocking writer thread while hashing: at most
/// `exact` bytes are taken (the rest is left unread), more than `max_len` fails. The file is
/// synced before `Done` is reported.
async fn stream_body<R: Runtime>(
    runtime: &R,
    mut body: Incoming,
    file: std::fs::File,
    exact: Option<u64>,
    max_len: Option<u64>,
    limits: BodyLimits,
) -> (Streamed, u64) {
    let idle = limits.idle;
    let started = Instant::now();
    let mut rate = RateCheck::new(limits.min_rate, Duration::ZERO);
    // Writing and hashing run on two blocking threads, so the upload proceeds at the pace of
    // the slower of the two rather than their sum.
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = runtime.unblock(move || -> io::Result<u64> {
        // Write-back overlaps the transfer: every SYNC_EVERY bytes a helper thread flushes
        // what is written so far, so the final sync has little left to do.
        let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = file.try_clone().ok().map(|clone| {
            std::thread::spawn(move || {
                while sync_rx.recv().is_ok() {
                    let _ = clone.sync_data();
                }
            })
        });
        // Body frames are small; coalescing them saves a system call per frame.
        let mut file = io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut written = 0u64;
        let mut since_sync = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
            since_sync += chunk.len() as u64;
            if since_sync >= SYNC_EVERY {
                since_sync = 0;
                // A sync still running is enough; never wait for it here.
                let _ = sync_tx.try_send(());
            }
        }
        drop(sync_tx);
        if let Some(syncer) = syncer {
            let _ = syncer.join();
        }
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok(written)
    });
    let hasher = runtime.unblock(move || {
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = hash_rx.blocking_recv() {
            hasher.update(&chunk);
        }
        Sha256(hasher.finalize().into())
    });
    let mut received = 0u64;
    let mut failure = None;
    while exact.is_none_or(|exact| received < exact) {
        let frame = match runtime::timeout(runtime, idle, body.frame()).await {
            Err(_) => {
                failure = Some(Streamed::Failed(BodyFailure::Stalled));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                failure = Some(Streamed::Failed(BodyFailure::Broken));
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        if let Some(exact) = exact {
            let room = exact - received;
            if data.len() as u64 > room {
                data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            }
        }
        received += data.len() as u64;
        if rate.handle_progress(started.elapsed(), received) == RateVerdict::TooSlow {
            failure = Some(Streamed::Failed(BodyFailure::TooSlow(limits.min_rate)));
            break;
        }
        if max_len.is_some_and(|max| received > max) {
            failure = Some(Streamed::Failed(BodyFailure::TooLarge));
            break;
        }
        if hash_tx.send(data.clone()).await.is_err() || tx.send(data).await.is_err() {
            break; // the writer failed; its error is collected below
        }
    }
    drop(tx);
    drop(hash_tx);
    let written = match writer.await {
        Ok(Ok(written)) => written,
        Ok(Err(error)) => return (Streamed::Disk(StoreError::from(error)), received),
        Err(join) => {
            let error = StoreError::Io(io::Error::other(join.to_string()));
            return (Streamed::Disk(error), received);
        }
    };
    let hash = match hasher.await {
        Ok(hash) => hash,
        Err(join) => {
            let error = StoreError::Io(io::Error::other(join.to_string()));
            return (Streamed::Disk(error), received);
        }
    };
    match failure {
        Some(failure) => (failure, received),
        None => (Streamed::Done { hash, written }, received),
    }
}
