//! The staging client on tokio + hyper: push a local file to a worker key (skip when the worker
//! has it, resume what it holds), pull a key into a local file (resuming a partial), list a
//! prefix, allocate a temp file.
//!
//! Every decision is the core's ([`nodegate_core::staging`]); this module hashes, streams the
//! file from disk in 256 KiB chunks (bounded memory whatever the size), sends the requests and
//! sleeps when told to. The HTTP client is hyper-util over rustls: HTTPS when the URL says so
//! (native roots), 10 s to connect, redirects never followed, `Authorization: Bearer <token>`
//! marked sensitive and sent only when a token is given.
//!
//! Interrupting a push (Ctrl-C, a dropped connection, a killed process) loses nothing: the
//! worker keeps the bytes it received, and the next push asks it where to resume.
//!
//! ```no_run
//! # async fn run() -> Result<(), nodegate_tokio::stage::StageError> {
//! use std::path::Path;
//! use nodegate_tokio::stage::{self, NoProgress};
//!
//! let token = Some("change-me");
//! let pushed = stage::push(
//!     Path::new("model.gguf"),
//!     "http://worker:50050",
//!     "models/x.gguf",
//!     token,
//!     &NoProgress,
//! )
//! .await?;
//! println!("on the worker at {}", pushed.local_path);
//! # Ok(()) }
//! ```

mod body;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, RANGE};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nodegate_core::staging::{
    self as core, Answer, DownloadStart, Effect, GetStart, LocalPartial, Note, Policy,
    TransferError, Upload,
};
use nodegate_core::upload::Sha256;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use body::ReqBody;

pub use nodegate_core::staging::Note as StageNote;

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for an answer without a body of ours (`HEAD` may hash a large file first).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
/// A `PUT` whose body does not move for this long is abandoned (and retried).
const STALL: Duration = Duration::from_secs(60);
/// Largest answer body kept (error texts, JSON).
const MAX_ANSWER: usize = 64 * 1024;
/// Bytes hashed per read.
const HASH_CHUNK: usize = 1024 * 1024;
/// How often transfer progress is reported.
const TICK: Duration = Duration::from_millis(100);
/// Suffix of a pull's partial file, next to the destination.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of the file that records the worker's hash of a pull's partial.
pub const PARTIAL_HASH_SUFFIX: &str = ".partial.sha256";

/// What a transfer reports while it runs. Every method has an empty default.
pub trait Progress: Send + Sync {
    /// Hashing (push) or verifying (pull) the local file: `done` of `total` bytes read.
    fn hashing(&self, done: u64, total: u64) {
        let _ = (done, total);
    }
    /// A transfer starts at byte `offset` of `total` (`offset > 0`: resuming).
    fn transfer_started(&self, offset: u64, total: u64) {
        let _ = (offset, total);
    }
    /// The transfer has reached byte `position` of `total`.
    fn transferred(&self, position: u64, total: u64) {
        let _ = (position, total);
    }
    /// Something worth telling the user (retries, resumes, restarts).
    fn note(&self, note: &Note) {
        let _ = note;
    }
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A finished push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The file's absolute path on the worker.
    pub local_path: String,
    /// Whether the worker already held the file (one `HEAD`, nothing sent).
    pub skipped: bool,
    /// Where the last, successful `PUT` started.
    pub resumed_from: u64,
    /// File bytes handed to the connection over all attempts.
    pub sent: u64,
    /// The file's size.
    pub size: u64,
    /// The file's SHA-256.
    pub sha256: Sha256,
}

/// A finished pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The file's size.
    pub size: u64,
    /// Where the last download started (> 0: a partial was resumed).
    pub resumed_from: u64,
    /// Body bytes received over all attempts.
    pub received: u64,
    /// Whether the bytes were checked against the worker's `X-Content-SHA256`.
    pub verified: bool,
}

/// Why a staging operation failed.
#[derive(Debug)]
pub enum StageError {
    /// The worker or the network (see [`TransferError`]).
    Transfer(TransferError),
    /// A local file could not be read or written.
    Local {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The worker URL is not `http://host:port` or `https://host:port` (with an optional path).
    BadUrl {
        /// Why.
        reason: String,
    },
    /// The token cannot be sent in a header.
    BadToken,
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transfer(error) => error.fmt(f),
            Self::Local {
                context,
                path,
                source,
            } => write!(f, "{context} {}: {source}", path.display()),
            Self::BadUrl { reason } => write!(
                f,
                "invalid worker URL: {reason}; give http://host:port or https://host:port"
            ),
            Self::BadToken => write!(
                f,
                "{} holds characters that cannot be sent in a header",
                core::TOKEN_VARIABLE
            ),
        }
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transfer(error) => Some(error),
            Self::Local { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<TransferError> for StageError {
    fn from(error: TransferError) -> Self {
        Self::Transfer(error)
    }
}

impl StageError {
    /// The worker refused the token (401/403).
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Transfer(error) if error.is_unauthorized())
    }

    /// The caller's input is wrong (URL, key, token, local file) rather than the transfer.
    #[must_use]
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::BadUrl { .. }
                | Self::BadToken
                | Self::Local { .. }
                | Self::Transfer(TransferError::BadKey { .. })
        )
    }
}

fn local<'a>(context: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StageError + 'a {
    move |source| StageError::Local {
        context,
        path: path.to_owned(),
        source,
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A staging client of one worker.
#[derive(Clone)]
pub struct Stager {
    client: Client<Https, ReqBody>,
    base: String,
    bearer: Option<HeaderValue>,
    policy: Policy,
}

impl fmt::Debug for Stager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stager")
            .field("base", &self.base)
            .field("token", &self.bearer.as_ref().map(|_| "***"))
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Stager {
    /// A client of the worker at `base_url` (`http://host:port` or `https://…`, optionally
    /// with a path prefix) that sends `token` as a bearer token when it is given and not empty.
    ///
    /// # Errors
    /// [`StageError::BadUrl`], [`StageError::BadToken`], or a `Local` error when the system's
    /// TLS roots cannot be loaded.
    pub fn new(base_url: &str, token: Option<&str>) -> Result<Self, StageError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().map_err(|e| StageError::BadUrl {
            reason: format!("{e}"),
        })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(StageError::BadUrl {
                    reason: "the scheme must be http or https".to_owned(),
                });
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(StageError::BadUrl {
                reason: "no host".to_owned(),
            });
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(StageError::BadUrl {
                reason: "user info in the URL is not supported (the token goes in LOCALAI_REGISTRATION_TOKEN)".to_owned(),
            });
        }
        if uri.query().is_some() || base.contains('#') {
            return Err(StageError::BadUrl {
                reason: "a query or fragment".to_owned(),
            });
        }
        let bearer = match token.filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| StageError::BadToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(local("loading the TLS roots from", Path::new("the system")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            base,
            bearer,
            policy: Policy::default(),
        })
    }

    /// The same client with other retry bounds.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Uploads `file` to `key`: skipped when the worker holds the same bytes, resumed from what
    /// it holds of an earlier attempt, retried on transient failures within the policy.
    ///
    /// # Errors
    /// [`StageError`]; a refused token is [`StageError::is_unauthorized`] (never retried).
    pub async fn push(
        &self,
        file: &Path,
        key: &str,
        progress: &dyn Progress,
    ) -> Result<Pushed, StageError> {
        // Check the key before spending time hashing.
        core::files_path(key)?;
        let meta = tokio::fs::metadata(file)
            .await
            .map_err(local("reading", file))?;
        if !meta.is_file() {
            return Err(StageError::Local {
                context: "not a regular file:",
                path: file.to_owned(),
                source: io::Error::other("give a file, not a directory"),
            });
        }
        let size = meta.len();
        let sha256 = hash_file(file, size, progress).await?;
        let origin = Instant::now();
        let now = || origin.elapsed();
        let mut upload = Upload::new(key, size, sha256, self.policy, now())?;
        let mut sent = 0;
        loop {
            match upload.poll_output() {
                Effect::Head { path } => {
                    let answer = self
                        .exchange(Method::HEAD, &path, ReqBody::Empty, &[])
                        .await;
                    upload.handle_head(now(), answer);
                }
                Effect::Put(put) => {
                    let (answer, n) = self.put(file, &put, size, progress).await?;
                    sent += n;
                    upload.handle_put(now(), answer);
                }
                Effect::Note(note) => progress.note(&note),
                Effect::SleepUntil(at) => {
                    tokio::time::sleep_until(origin + at).await;
                    upload.handle_timeout(now());
                }
                Effect::Wait => unreachable!("every request is answered before polling again"),
                Effect::Done(done) => {
                    return Ok(Pushed {
                        local_path: done.local_path,
                        skipped: done.skipped,
                        resumed_from: done.resumed_from,
                        sent,
                        size,
                        sha256,
                    });
                }
                Effect::Failed(error) => return Err(error.into()),
            }
        }
    }

    /// Downloads `key` into `file`, through `<file>.partial` (resumed on the next call when the
    /// worker still holds the same content), verified against the worker's hash when it gives
    /// one, then renamed into place.
    ///
    /// # Errors
    /// [`StageError`].
    pub async fn pull(
        &self,
        key: &str,
        file: &Path,
        progress: &dyn Progress,
    ) -> Result<Pulled, StageError> {
        let path = core::files_path(key)?;
        let partial = sibling(file, PARTIAL_SUFFIX);
        let recorded = sibling(file, PARTIAL_HASH_SUFFIX);
        let mut retries = 0;
        let mut received = 0;
        loop {
            let error = match self
                .pull_once(&path, file, &partial, &recorded, progress, &mut received)
                .await
            {
                Ok(pulled) => return Ok(pulled),
                Err(StageError::Transfer(error)) if error.is_transient() => error,
                Err(error) => return Err(error),
            };
            retries += 1;
            if retries > self.policy.max_retries {
                return Err(TransferError::GaveUp {
                    retries: retries - 1,
                    last: error.to_string(),
                }
                .into());
            }
            let delay = core::backoff(retries);
            progress.note(&Note::Retrying {
                retry: retries,
                max: self.policy.max_retries,
                delay,
                reason: error.to_string(),
            });
            tokio::time::sleep(delay).await;
        }
    }

    async fn pull_once(
        &self,
        path: &str,
        file: &Path,
        partial: &Path,
        recorded: &Path,
        progress: &dyn Progress,
        received: &mut u64,
    ) -> Result<Pulled, StageError> {
        let remote = match self.exchange(Method::HEAD, path, ReqBody::Empty, &[]).await {
            Answer::Response {
                status,
                headers,
                body,
            } => core::probe_download(status, &headers, &body)?,
            Answer::Failed(reason) => return Err(TransferError::Transient(reason).into()),
        };
        let existing = match tokio::fs::metadata(partial).await {
            Ok(meta) if meta.is_file() => Some(LocalPartial {
                size: meta.len(),
                sha256: tokio::fs::read(recorded)
                    .await
                    .ok()
                    .and_then(|hex| Sha256::from_hex(hex.trim_ascii())),
            }),
            _ => None,
        };
        let mut from = match core::plan_download(&remote, existing) {
            DownloadStart::Fresh => 0,
            DownloadStart::Resume { from } => from,
            DownloadStart::Verify => remote.size,
        };
        if from == 0 {
            remove_if_present(partial).await?;
            match remote.sha256 {
                Some(hash) => tokio::fs::write(recorded, hash.to_hex())
                    .await
                    .map_err(local("writing", recorded))?,
                None => remove_if_present(recorded).await?,
            }
        }
        if from < remote.size || remote.size == 0 {
            from = self
                .download(path, partial, from, remote.size, progress, received)
                .await?;
        }
        let actual = hash_file(partial, remote.size, progress).await?;
        if let Err(error) = core::verify_download(remote.sha256, actual) {
            remove_if_present(partial).await?;
            remove_if_present(recorded).await?;
            return Err(error.into());
        }
        tokio::fs::rename(partial, file)
            .await
            .map_err(local("renaming the download into", file))?;
        remove_if_present(recorded).await?;
        Ok(Pulled {
            size: remote.size,
            resumed_from: from,
            received: *received,
            verified: remote.sha256.is_some(),
        })
    }

    /// One `GET` from `from` into the partial; returns where the body started.
    async fn download(
        &self,
        path: &str,
        partial: &Path,
        from: u64,
        size: u64,
        progress: &dyn Progress,
        received: &mut u64,
    ) -> Result<u64, StageError> {
        let range = core::download_range(from);
        let extra: Vec<_> = range.iter().map(|r| (RANGE, r.as_str())).collect();
        let response = match self.send(Method::GET, path, ReqBody::Empty, &extra).await {
            Ok(response) => response,
            Err(reason) => return Err(TransferError::Transient(reason).into()),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if !matches!(status, 200 | 206) {
            let body = read_limited(response.into_body()).await.unwrap_or_default();
            return match core::classify_get(from, status, &headers, &body)? {
                GetStart::StartOver => {
                    remove_if_present(partial).await?;
                    Err(TransferError::Transient(format!("{status}: the file changed")).into())
                }
                GetStart::WriteFrom { .. } => {
                    Err(TransferError::BadAnswer(format!("unexpected status {status}")).into())
                }
            };
        }
        let GetStart::WriteFrom { from } = core::classify_get(from, status, &headers, &[])? else {
            unreachable!("200 and 206 are bodies");
        };
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(partial)
            .await
            .map_err(local("opening", partial))?;
        out.set_len(from)
            .await
            .map_err(local("truncating", partial))?;
        out.seek(io::SeekFrom::Start(from))
            .await
            .map_err(local("seeking in", partial))?;
        progress.transfer_started(from, size);
        let mut position = from;
        let mut body = response.into_body();
        let mut last = Instant::now();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => {
                    out.flush().await.map_err(local("writing", partial))?;
                    return Err(TransferError::Transient(format!(
                        "the download broke off at byte {position}: {error}"
                    ))
                    .into());
                }
            };
            if let Ok(data) = frame.into_data() {
                if position + data.len() as u64 > size {
                    return Err(TransferError::BadAnswer(
                        "more bytes than the worker announced".to_owned(),
                    )
                    .into());
                }
                out.write_all(&data)
                    .await
                    .map_err(local("writing", partial))?;
                position += data.len() as u64;
                *received += data.len() as u64;
                if last.elapsed() >= TICK {
                    last = Instant::now();
                    progress.transferred(position, size);
                }
            }
        }
        out.flush().await.map_err(local("writing", partial))?;
        out.sync_all().await.map_err(local("syncing", partial))?;
        progress.transferred(position, size);
        if position != size {
            return Err(TransferError::Transient(format!(
                "the download ended at byte {position} of {size}"
            ))
            .into());
        }
        Ok(from)
    }

    /// Lists the files under `prefix` (relative paths, sidecars included).
    ///
    /// # Errors
    /// [`StageError`] (404: no such directory).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        let path = core::list_path(prefix)?;
        match self.exchange(Method::GET, &path, ReqBody::Empty, &[]).await {
            Answer::Response { status, body, .. } => Ok(core::parse_list(status, &body)?),
            Answer::Failed(reason) => Err(TransferError::Transient(reason).into()),
        }
    }

    /// Allocates an empty temp file in the worker's staging root; returns its path there.
    ///
    /// # Errors
    /// [`StageError`].
    pub async fn alloc_temp(&self) -> Result<String, StageError> {
        let zero = [(CONTENT_LENGTH, "0")];
        match self
            .exchange(Method::POST, core::TEMP_PATH, ReqBody::Empty, &zero)
            .await
        {
            Answer::Response { status, body, .. } => Ok(core::parse_local_path(status, &body)?),
            Answer::Failed(reason) => Err(TransferError::Transient(reason).into()),
        }
    }

    async fn put(
        &self,
        file: &Path,
        put: &core::Put,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<(Answer, u64), StageError> {
        let mut handle = tokio::fs::File::open(file)
            .await
            .map_err(local("opening", file))?;
        handle
            .seek(io::SeekFrom::Start(put.offset))
            .await
            .map_err(local("seeking in", file))?;
        let sent = Arc::new(AtomicU64::new(0));
        let body = ReqBody::file(handle, put.len, Arc::clone(&sent));
        let headers: Vec<_> = put
            .headers()
            .into_iter()
            .filter_map(|(name, value)| Some((name?, value)))
            .collect();
        progress.transfer_started(put.offset, size);
        let exchange = self.exchange_values(Method::PUT, &put.path, body, headers, None);
        tokio::pin!(exchange);
        let mut tick = tokio::time::interval(TICK);
        let (mut seen, mut moved) = (0, Instant::now());
        let answer = loop {
            tokio::select! {
                answer = &mut exchange => break answer,
                _ = tick.tick() => {
                    let now = sent.load(Ordering::Relaxed);
                    progress.transferred(put.offset + now, size);
                    let waiting = if now < put.len { STALL } else { ANSWER_TIMEOUT };
                    if now != seen {
                        (seen, moved) = (now, Instant::now());
                    } else if moved.elapsed() >= waiting {
                        break Answer::Failed(format!(
                            "the worker took nothing for {}s", waiting.as_secs()
                        ));
                    }
                }
            }
        };
        let n = sent.load(Ordering::Relaxed);
        progress.transferred(put.offset + n, size);
        Ok((answer, n))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        extra: &[(hyper::header::HeaderName, &str)],
    ) -> Answer {
        let headers = extra
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), HeaderValue::from_str(value).ok()?)))
            .collect();
        self.exchange_values(method, path, body, headers, Some(ANSWER_TIMEOUT))
            .await
    }

    async fn exchange_values(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
        timeout: Option<Duration>,
    ) -> Answer {
        let is_head = method == Method::HEAD;
        let exchange = async {
            let response = self.send_values(method, path, body, headers).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = if is_head {
                Vec::new()
            } else {
                read_limited(response.into_body()).await.unwrap_or_default()
            };
            Ok::<_, String>(Answer::response(status, headers, body))
        };
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs()))),
            None => exchange.await,
        };
        result.unwrap_or_else(Answer::Failed)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        extra: &[(hyper::header::HeaderName, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let headers = extra
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), HeaderValue::from_str(value).ok()?)))
            .collect();
        self.send_values(method, path, body, headers).await
    }

    async fn send_values(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(bearer) = &self.bearer {
            builder = builder.header(AUTHORIZATION, bearer.clone());
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(body)
            .map_err(|e| format!("building the request: {e}"))?;
        self.client.request(request).await.map_err(|e| describe(&e))
    }
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer body.
async fn read_limited(body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    http_body_util::Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .or_else(|e| {
            // An over-long error text is cut, not fatal.
            if e.to_string().contains("length limit") {
                Ok(Bytes::new().to_vec())
            } else {
                Err(format!("reading the answer: {e}"))
            }
        })
}

/// The SHA-256 of a file, read in 1 MiB chunks, with progress.
async fn hash_file(file: &Path, size: u64, progress: &dyn Progress) -> Result<Sha256, StageError> {
    let mut handle = tokio::fs::File::open(file)
        .await
        .map_err(local("opening", file))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; HASH_CHUNK];
    let mut done = 0;
    progress.hashing(0, size);
    loop {
        let n = handle
            .read(&mut buf)
            .await
            .map_err(local("reading", file))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress.hashing(done, size);
    }
    Ok(Sha256(hasher.finalize().into()))
}

/// `<file><suffix>` in the same directory.
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

async fn remove_if_present(path: &Path) -> Result<(), StageError> {
    match tokio::fs::remove_file(path).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StageError::Local {
            context: "removing",
            path: path.to_owned(),
            source: error,
        }),
        _ => Ok(()),
    }
}

use crate::member::describe_client_error as describe;

/// [`Stager::push`] with a fresh client and the default policy.
///
/// # Errors
/// [`StageError`].
pub async fn push(
    file: &Path,
    base_url: &str,
    key: &str,
    token: Option<&str>,
    progress: &dyn Progress,
) -> Result<Pushed, StageError> {
    Stager::new(base_url, token)?
        .push(file, key, progress)
        .await
}

/// [`Stager::pull`] with a fresh client and the default policy.
///
/// # Errors
/// [`StageError`].
pub async fn pull(
    base_url: &str,
    key: &str,
    file: &Path,
    token: Option<&str>,
    progress: &dyn Progress,
) -> Result<Pulled, StageError> {
    Stager::new(base_url, token)?
        .pull(key, file, progress)
        .await
}

/// [`Stager::list`] with a fresh client.
///
/// # Errors
/// [`StageError`].
pub async fn list(
    base_url: &str,
    prefix: &str,
    token: Option<&str>,
) -> Result<Vec<String>, StageError> {
    Stager::new(base_url, token)?.list(prefix).await
}

/// [`Stager::alloc_temp`] with a fresh client.
///
/// # Errors
/// [`StageError`].
pub async fn alloc_temp(base_url: &str, token: Option<&str>) -> Result<String, StageError> {
    Stager::new(base_url, token)?.alloc_temp().await
}
