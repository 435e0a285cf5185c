//! The staging client: uploading a local file to a worker key (LocalAI's `EnsureRemote`, spec
//! §3.2, with nodegate's fixes), and the planners of downloads, listings and temp files.
//!
//! [`Upload`] is one owner object per file. It performs no I/O and reads no clock: the adapter
//! hashes the file (showing progress) and passes its size and SHA-256 in, sends the requests
//! the machine asks for ([`Effect::Head`], [`Effect::Put`]), feeds the answers back with
//! `handle_*`, and sleeps when asked to.
//!
//! ```text
//!            ┌────────────── 308 / 416 (≤ max_resumes): the worker holds part ─────────┐
//!            ▼                                                                          │
//!   new ──▶ HEAD ──200, X-Content-SHA256 = local hash, X-Local-Path──▶ Done (skipped)    │
//!            │  200: X-Target-SHA256 = local hash, 0 < X-File-Size < size → offset      │
//!            │  404 / 405 / other 200 → offset 0                                         │
//!            │  400 / 401 / 403 / other 4xx → Failed                                     │
//!            ▼                                                                          │
//!           PUT bytes offset-(size-1)/size + X-Content-SHA256 (size 0: plain PUT) ──────┘
//!            │  200 {"local_path"} → Done        409 → PUT from 0 (once), then Failed
//!            │  400 / 401 / 403 / 413 / 507 / other 4xx → Failed
//!            ▼
//!   5xx / transport error ──▶ Backoff 1 s, 2 s, 4 s … ≤ 30 s (≤ max_retries, within budget) ──▶ HEAD
//! ```
//!
//! ## Where this differs from LocalAI on purpose
//! - One `HEAD` per attempt both decides the skip and finds the resume offset, and it is asked
//!   again after **every** 308, 416 and failure: a worker that already holds every byte (the
//!   D9 livelock of §8.11, where LocalAI re-sent `bytes 0-…` until its one-hour deadline) is
//!   found by its hash and the upload ends.
//! - The skip compares hashes case-insensitively (§8.14).
//! - Retries are bounded in count ([`Policy::max_retries`]) as well as in time
//!   ([`Policy::budget`]); 401/403 stop at once, naming `LOCALAI_REGISTRATION_TOKEN`.
//! - 413 and 507 stop (the file does not fit the worker's limit or disk); a 308 that carries
//!   `Location` is a redirect and is refused, never followed.
//!
//! # The drain contract
//! After [`Upload::new`] and after **every** `handle_*` call, call [`Upload::poll_output`]
//! until it returns [`Effect::Wait`] (a request is in flight: feed its answer back),
//! [`Effect::SleepUntil`] (call [`Upload::handle_timeout`] at that time), or a terminal
//! [`Effect::Done`] / [`Effect::Failed`] (returned again on every later poll).
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use nodegate_core::staging::{Answer, Effect, Policy, Upload};
//! use nodegate_core::upload::Sha256;
//!
//! let file = b"hello, worker".to_vec();
//! let mut now = Duration::ZERO; // the adapter's monotonic clock, as an argument
//! let mut upload =
//!     Upload::new("models/hello.txt", file.len() as u64, Sha256::of(&file), Policy::default(), now)
//!         .unwrap();
//! // The canonical run loop, with a fake worker that has nothing yet and accepts the PUT.
//! let done = loop {
//!     match upload.poll_output() {
//!         Effect::Head { path } => {
//!             assert_eq!(path, "/v1/files/models/hello.txt");
//!             let answer = Answer::response(404, HeaderMap::new(), b"not found\n".to_vec());
//!             upload.handle_head(now, answer);
//!         }
//!         Effect::Put(put) => {
//!             assert_eq!(put.content_range.as_deref(), Some("bytes 0-12/13"));
//!             let bytes = &file[put.offset as usize..][..put.len as usize]; // stream from disk
//!             assert_eq!(bytes, b"hello, worker");
//!             let body = br#"{"local_path":"/srv/models/hello.txt"}"#.to_vec();
//!             upload.handle_put(now, Answer::response(200, HeaderMap::new(), body));
//!         }
//!         Effect::Note(note) => println!("{note}"),
//!         Effect::SleepUntil(at) => {
//!             now = at;
//!             upload.handle_timeout(now);
//!         }
//!         Effect::Wait => unreachable!("this fake answers every request at once"),
//!         Effect::Done(done) => break done,
//!         Effect::Failed(error) => panic!("{error}"),
//!     }
//! };
//! assert_eq!(done.local_path, "/srv/models/hello.txt");
//! assert!(!done.skipped);
//! ```

mod files;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LOCATION};
use thiserror::Error;

pub use files::{
    DownloadStart, GetStart, LocalPartial, RemoteFile, TEMP_PATH, classify_get, download_range,
    files_path, list_path, parse_list, parse_local_path, plan_download, probe_download,
    verify_download,
};

use crate::upload::{Sha256, X_CONTENT_SHA256, X_FILE_SIZE, X_LOCAL_PATH, X_TARGET_SHA256};

/// The adapter's clock: a monotonic duration since any fixed origin.
pub type Time = Duration;

/// The variable that holds the token a worker checks.
pub const TOKEN_VARIABLE: &str = "LOCALAI_REGISTRATION_TOKEN";

/// First retry delay.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Largest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest excerpt of a worker's answer body kept in messages.
pub const MAX_MESSAGE: usize = 300;

/// The bounds of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Transient failures (5xx, transport errors) tolerated in total; the next one fails.
    pub max_retries: u32,
    /// 308 / 416 answers tolerated in total (each is followed by a fresh `HEAD`).
    pub max_resumes: u32,
    /// 409 answers tolerated in total (each restarts from byte 0).
    pub max_restarts: u32,
    /// No retry starts later than this after the upload began.
    pub budget: Duration,
}

impl Default for Policy {
    /// 10 retries, 16 resumes, 1 restart, one hour.
    fn default() -> Self {
        Self {
            max_retries: 10,
            max_resumes: 16,
            max_restarts: 1,
            budget: Duration::from_secs(3600),
        }
    }
}

impl Policy {
    /// The most requests an upload under this policy can send: a `HEAD` and a `PUT` per
    /// attempt, one attempt plus one per tolerated retry, resume and restart.
    #[must_use]
    pub fn max_requests(&self) -> u64 {
        2 * (1
            + u64::from(self.max_retries)
            + u64::from(self.max_resumes)
            + u64::from(self.max_restarts))
    }
}

/// The delay before retry number `retry` (1-based): 1 s, 2 s, 4 s, … capped at 30 s.
#[must_use]
pub fn backoff(retry: u32) -> Duration {
    let exponent = retry.saturating_sub(1).min(5);
    (BACKOFF_START * 2u32.pow(exponent)).min(BACKOFF_MAX)
}

/// What the adapter got back for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The worker answered (any status).
    Response {
        /// The status code.
        status: u16,
        /// The response headers.
        headers: HeaderMap,
        /// The body, or its first bytes (a few KiB are plenty).
        body: Vec<u8>,
    },
    /// No answer: connection refused or dropped, timeout, TLS failure…; the text says which.
    Failed(String),
}

impl Answer {
    /// A response.
    #[must_use]
    pub fn response(status: u16, headers: HeaderMap, body: Vec<u8>) -> Self {
        Self::Response {
            status,
            headers,
            body,
        }
    }
}

/// A `PUT` to send: stream `len` bytes of the local file starting at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// Path and (encoded) key: `/v1/files/<key>`.
    pub path: String,
    /// First byte of the file to send.
    pub offset: u64,
    /// Bytes to send (`offset + len` is the file size).
    pub len: u64,
    /// `Content-Range: bytes <offset>-<size-1>/<size>`; `None` for an empty file (a plain PUT).
    pub content_range: Option<String>,
    /// `X-Content-SHA256`: the lowercase hex hash of the whole file.
    pub sha256: String,
}

impl Put {
    /// The request headers besides `Authorization` and `Host`: `Content-Length`,
    /// `Content-Type`, `Content-Range` (when resumable) and `X-Content-SHA256`.
    #[must_use]
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(self.len));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(range) = &self.content_range
            && let Ok(value) = HeaderValue::from_str(range)
        {
            headers.insert(CONTENT_RANGE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&self.sha256) {
            headers.insert(X_CONTENT_SHA256, value);
        }
        headers
    }
}

/// Something worth telling the user; the upload goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A `PUT` starts at `offset` (`offset > 0`: resuming).
    Sending {
        /// First byte sent.
        offset: u64,
        /// The file size.
        size: u64,
    },
    /// A transient failure: waiting `delay` before asking the worker again.
    Retrying {
        /// Which retry this is (1-based).
        retry: u32,
        /// The most retries allowed.
        max: u32,
        /// The wait.
        delay: Duration,
        /// What failed.
        reason: String,
    },
    /// The worker holds part of the file (308 / 416): asking where to resume.
    Resuming {
        /// The status that said so.
        status: u16,
    },
    /// The worker discarded its in-progress copy (409): starting again from byte 0.
    Restarting {
        /// The worker's explanation.
        reason: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sending { offset: 0, size } => write!(f, "sending {size} bytes"),
            Self::Sending { offset, size } => write!(
                f,
                "resuming at byte {offset}: sending the remaining {} of {size} bytes",
                size - offset
            ),
            Self::Retrying {
                retry,
                max,
                delay,
                reason,
            } => write!(
                f,
                "{reason}; retry {retry}/{max} in {}s",
                delay.as_secs_f32()
            ),
            Self::Resuming { status } => write!(
                f,
                "the worker holds part of the file ({status}); asking where to resume"
            ),
            Self::Restarting { reason } => write!(
                f,
                "the worker discarded its in-progress copy ({reason}); starting again from byte 0"
            ),
        }
    }
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The file's absolute path on the worker (`X-Local-Path` or the `local_path` of the 200).
    pub local_path: String,
    /// Whether the worker already held the file (nothing was sent).
    pub skipped: bool,
    /// Where the last, successful `PUT` started (0 when it sent the whole file or skipped).
    pub resumed_from: u64,
}

/// Why a transfer failed. Every message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// The key is empty, starts with `/`, or holds a control character.
    #[error("invalid key {key:?}: give a relative key such as models/name.gguf")]
    BadKey {
        /// The key as given (may be shown: it is the user's own input).
        key: String,
    },
    /// 401 or 403: the token is missing or wrong. Never retried.
    #[error(
        "the worker refused the token ({status}): set {TOKEN_VARIABLE} to the token the worker was started with"
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
    },
    /// 413: the file is larger than the worker accepts.
    #[error(
        "the file is too large for the worker's upload limit (413: {message}); raise the worker's limit or stage a smaller file"
    )]
    TooLarge {
        /// The worker's explanation.
        message: String,
    },
    /// 507: the worker's disk is full.
    #[error("the worker has no room for the file (507: {message}); free space on the worker")]
    NoRoom {
        /// The worker's explanation.
        message: String,
    },
    /// 400: the worker refused the request (bad key, hash mismatch…).
    #[error("the worker refused the request (400: {message})")]
    BadRequest {
        /// The worker's explanation.
        message: String,
    },
    /// 404 on a download or listing.
    #[error("not found on the worker (404: {message}); check the key")]
    NotFound {
        /// The worker's explanation.
        message: String,
    },
    /// Another status the client cannot act on (other 4xx, a redirect).
    #[error("the worker answered {status}: {message}")]
    Refused {
        /// The status.
        status: u16,
        /// The worker's explanation.
        message: String,
    },
    /// 409 more often than [`Policy::max_restarts`]: something else writes the same key.
    #[error(
        "the upload kept conflicting with another upload of the same key (409: {message}); stop the other upload and try again"
    )]
    Conflict {
        /// The worker's explanation.
        message: String,
    },
    /// 308 / 416 more often than [`Policy::max_resumes`] without finishing.
    #[error(
        "the worker asked to resume {count} times without the upload finishing (last: {status}); try again later"
    )]
    NoProgress {
        /// How many 308/416 answers.
        count: u32,
        /// The last of them.
        status: u16,
    },
    /// Transient failures beyond [`Policy::max_retries`] or [`Policy::budget`].
    #[error("gave up after {retries} retries: {last}; run the same command again to resume")]
    GaveUp {
        /// How many retries were made.
        retries: u32,
        /// The last failure.
        last: String,
    },
    /// A 5xx or transport failure (downloads: the adapter retries these).
    #[error("{0}")]
    Transient(String),
    /// The worker's answer could not be understood.
    #[error("the worker's answer was not understood: {0}")]
    BadAnswer(String),
    /// A download's bytes do not have the hash the worker announced.
    #[error(
        "the downloaded bytes do not match the worker's hash (expected {expected}, got {actual}); the partial was discarded, try again"
    )]
    HashMismatch {
        /// The worker's `X-Content-SHA256`.
        expected: Sha256,
        /// The hash of what arrived.
        actual: Sha256,
    },
    /// The key exists on the worker only as an unfinished upload.
    #[error("the worker holds only an unfinished upload of this key; finish the upload first")]
    Incomplete,
}

impl TransferError {
    /// Whether trying again later may succeed (5xx, transport failures).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// Whether the worker refused the token.
    #[must_use]
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }
}

/// What the upload machine asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `HEAD <base><path>` and call [`Upload::handle_head`] with the answer.
    Head {
        /// `/v1/files/<encoded key>`.
        path: String,
    },
    /// Send the `PUT` and call [`Upload::handle_put`] with the answer.
    Put(Put),
    /// Tell the user.
    Note(Note),
    /// Call [`Upload::handle_timeout`] at this time.
    SleepUntil(Time),
    /// A request is in flight: wait for its answer.
    Wait,
    /// Finished (returned on every poll from now on).
    Done(Uploaded),
    /// Failed (returned on every poll from now on).
    Failed(TransferError),
}

/// The upload of one local file to one worker key.
#[derive(Debug)]
pub struct Upload {
    path: String,
    size: u64,
    sha256: Sha256,
    policy: Policy,
    started: Time,
    state: State,
    out: VecDeque<Effect>,
    retries: u32,
    resumes: u32,
    restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    ExpectHead,
    ExpectPut { offset: u64 },
    Backoff { until: Time },
    Finished(Box<Effect>),
}

impl Upload {
    /// Starts the upload of a local file of `size` bytes whose SHA-256 is `sha256` to `key`
    /// (given unencoded, e.g. `models/x.gguf`); `now` is the adapter's clock. The first effect
    /// is the `HEAD`.
    ///
    /// # Errors
    /// [`TransferError::BadKey`] for an empty key, one starting with `/`, or one holding a
    /// control character.
    pub fn new(
        key: &str,
        size: u64,
        sha256: Sha256,
        policy: Policy,
        now: Time,
    ) -> Result<Self, TransferError> {
        let path = files_path(key)?;
        let mut upload = Self {
            path,
            size,
            sha256,
            policy,
            started: now,
            state: State::ExpectHead,
            out: VecDeque::new(),
            retries: 0,
            resumes: 0,
            restarts: 0,
        };
        upload.head();
        Ok(upload)
    }

    /// The next effect. See the drain contract in the module documentation.
    pub fn poll_output(&mut self) -> Effect {
        if let Some(effect) = self.out.pop_front() {
            return effect;
        }
        match &self.state {
            State::Finished(effect) => (**effect).clone(),
            State::Backoff { until } => Effect::SleepUntil(*until),
            State::ExpectHead | State::ExpectPut { .. } => Effect::Wait,
        }
    }

    /// The request path of the key (`/v1/files/<encoded key>`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the upload ended (done or failed).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(_))
    }

    /// The answer to the `HEAD`.
    pub fn handle_head(&mut self, now: Time, answer: Answer) {
        if self.state != State::ExpectHead {
            return;
        }
        let (status, headers, body) = match answer {
            Answer::Failed(reason) => return self.transient(now, format!("HEAD failed: {reason}")),
            Answer::Response {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        match status {
            200 => {
                let remote = HeadInfo::parse(&headers);
                if let (Some(hash), Some(local_path)) = (remote.content, &remote.local_path)
                    && hash == self.sha256
                {
                    return self.finish(Effect::Done(Uploaded {
                        local_path: local_path.clone(),
                        skipped: true,
                        resumed_from: 0,
                    }));
                }
                let offset = match (remote.target, remote.size) {
                    (Some(target), Some(size))
                        if target == self.sha256 && size > 0 && size < self.size =>
                    {
                        size
                    }
                    _ => 0,
                };
                self.put(offset);
            }
            // Missing, or a server without HEAD: upload everything.
            404 | 405 => self.put(0),
            401 | 403 => self.fail(TransferError::Unauthorized { status }),
            400 => self.fail(TransferError::BadRequest {
                message: message(&body),
            }),
            500..=599 => self.transient(now, format!("HEAD answered {status}: {}", message(&body))),
            _ => self.fail(TransferError::Refused {
                status,
                message: message(&body),
            }),
        }
    }

    /// The answer to the `PUT`.
    pub fn handle_put(&mut self, now: Time, answer: Answer) {
        if !matches!(self.state, State::ExpectPut { .. }) {
            return;
        }
        let State::ExpectPut { offset } = self.state else {
            return;
        };
        let (status, headers, body) = match answer {
            Answer::Failed(reason) => return self.transient(now, format!("PUT failed: {reason}")),
            Answer::Response {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        match status {
            200 => match parse_local_path(200, &body) {
                Ok(local_path) => self.finish(Effect::Done(Uploaded {
                    local_path,
                    skipped: false,
                    resumed_from: offset,
                })),
                Err(error) => self.fail(error),
            },
            308 if headers.contains_key(LOCATION) => self.fail(TransferError::Refused {
                status,
                message: "a redirect; staging never follows redirects (give the worker's own URL)"
                    .to_owned(),
            }),
            308 | 416 => {
                self.resumes += 1;
                if self.resumes > self.policy.max_resumes {
                    return self.fail(TransferError::NoProgress {
                        count: self.resumes,
                        status,
                    });
                }
                self.out.push_back(Effect::Note(Note::Resuming { status }));
                self.head();
            }
            409 => {
                self.restarts += 1;
                let reason = message(&body);
                if self.restarts > self.policy.max_restarts {
                    return self.fail(TransferError::Conflict { message: reason });
                }
                self.out
                    .push_back(Effect::Note(Note::Restarting { reason }));
                self.put(0);
            }
            401 | 403 => self.fail(TransferError::Unauthorized { status }),
            413 => self.fail(TransferError::TooLarge {
                message: message(&body),
            }),
            507 => self.fail(TransferError::NoRoom {
                message: message(&body),
            }),
            400 => self.fail(TransferError::BadRequest {
                message: message(&body),
            }),
            500..=599 => self.transient(now, format!("PUT answered {status}: {}", message(&body))),
            _ => self.fail(TransferError::Refused {
                status,
                message: message(&body),
            }),
        }
    }

    /// Time has passed: after a backoff, ask the worker again.
    pub fn handle_timeout(&mut self, now: Time) {
        if let State::Backoff { until } = self.state
            && now >= until
        {
            self.head();
        }
    }

    fn head(&mut self) {
        self.state = State::ExpectHead;
        self.out.push_back(Effect::Head {
            path: self.path.clone(),
        });
    }

    fn put(&mut self, offset: u64) {
        // The offset comes from `X-File-Size` only when it is below the size (see handle_head).
        let offset = offset.min(self.size);
        let content_range =
            (self.size > 0).then(|| format!("bytes {offset}-{}/{}", self.size - 1, self.size));
        self.state = State::ExpectPut { offset };
        self.out.push_back(Effect::Note(Note::Sending {
            offset,
            size: self.size,
        }));
        self.out.push_back(Effect::Put(Put {
            path: self.path.clone(),
            offset,
            len: self.size - offset,
            content_range,
            sha256: self.sha256.to_hex(),
        }));
    }

    fn transient(&mut self, now: Time, reason: String) {
        self.retries += 1;
        if self.retries > self.policy.max_retries {
            return self.fail(TransferError::GaveUp {
                retries: self.retries - 1,
                last: reason,
            });
        }
        let delay = backoff(self.retries);
        let until = now.saturating_add(delay);
        if until.saturating_sub(self.started) > self.policy.budget {
            return self.fail(TransferError::GaveUp {
                retries: self.retries - 1,
                last: format!(
                    "{reason} (retry budget of {}s spent)",
                    self.policy.budget.as_secs()
                ),
            });
        }
        self.out.push_back(Effect::Note(Note::Retrying {
            retry: self.retries,
            max: self.policy.max_retries,
            delay,
            reason,
        }));
        self.state = State::Backoff { until };
    }

    fn fail(&mut self, error: TransferError) {
        self.finish(Effect::Failed(error));
    }

    fn finish(&mut self, effect: Effect) {
        self.out.clear();
        self.state = State::Finished(Box::new(effect));
    }
}

/// The headers of a `HEAD` answer that matter to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HeadInfo {
    size: Option<u64>,
    content: Option<Sha256>,
    target: Option<Sha256>,
    local_path: Option<String>,
}

impl HeadInfo {
    fn parse(headers: &HeaderMap) -> Self {
        Self {
            size: header_text(headers, &X_FILE_SIZE).and_then(|v| v.parse().ok()),
            content: header_text(headers, &X_CONTENT_SHA256)
                .and_then(|v| Sha256::from_hex(v.as_bytes())),
            target: header_text(headers, &X_TARGET_SHA256)
                .and_then(|v| Sha256::from_hex(v.as_bytes())),
            local_path: header_text(headers, &X_LOCAL_PATH).map(str::to_owned),
        }
    }
}

/// A header's value, trimmed, when it is present, text and not blank.
fn header_text<'a>(headers: &'a HeaderMap, name: &http::header::HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A worker's answer body made fit for a message: UTF-8 (lossy), control characters replaced,
/// trimmed, at most [`MAX_MESSAGE`] characters.
#[must_use]
pub fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    if text.trim().chars().count() > MAX_MESSAGE {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("no details");
    }
    out
}
