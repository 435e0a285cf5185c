//! Uploads: the `Content-Range` and `X-Content-SHA256` headers, the `HEAD` answer for a file, and
//! the planner of full and resumable `PUT`s.
//!
//! The adapter describes what is on disk for a key as a [`FileState`] and the request as an
//! [`UploadRequest`]; the core answers with a [`HeadAnswer`] or an [`UploadPlan`], and after the
//! body was written, with an [`AppendOutcome`] and a [`Finish`]. Every response is a [`Reply`].
//!
//! ## Storage layout per key (`rel` = the key's path inside its root)
//! - `rel`: the complete file. It only ever appears by an atomic rename, never partially written.
//! - `rel.sha256`: 64 lowercase hex of the complete file, no newline (LocalAI's name).
//! - `rel.sha256.target`: the declared `X-Content-SHA256` of an in-progress resumable upload.
//! - `<dir>/.<name>.partial`: the bytes received so far of a resumable upload (never a key).
//! - `<dir>/.<name>.partial.total`: the `Content-Range` total the partial was begun with, in
//!   decimal ([`total_sidecar`]); written before the partial is created, deleted with it (D18).
//! - `<dir>/.<name>.<nonce>.tmp`: a full upload being streamed (deleted on failure and at start).
//!
//! A key may hold a complete file and an in-progress partial at the same time: the previous good
//! copy survives until the new one is verified (D3). The target sidecar only means something while
//! a partial exists; a target left alone (after a crash) is ignored and cleaned up.
//!
//! ## Publishing (what the adapter does on [`Finish::Publish`])
//! 1. `fsync` the temp file or the partial;
//! 2. delete `rel.sha256` (so the old sidecar can never describe the new file, nor the new
//!    sidecar the old file);
//! 3. rename the temp file or the partial over `rel`, then `fsync` the directory;
//! 4. write `rel.sha256` with the new hash (after the rename, so it is never older than the file);
//! 5. delete the partial (a full upload supersedes an in-progress one), its total sidecar and
//!    `rel.sha256.target`.
//!
//! A crash between any two steps leaves the key absent, partial, or complete with a correct or
//! missing sidecar; a missing sidecar makes `HEAD` rehash ([`HeadAnswer::NeedHash`]).
//!
//! ## Where this differs from LocalAI on purpose
//! - D2: a body over the limit is 413, decided from `Content-Length` or the declared
//!   `Content-Range` total before anything is written (D16), and enforced while streaming.
//! - D3: a full upload streams into a temp file and is renamed into place only after its hash
//!   was verified; a failed upload never destroys the previous good copy.
//! - D6: a `.sha256` sidecar is trusted only if it is 64 lowercase hex and not older than the file
//!   ([`trusted_sidecar`]).
//! - D9: a range upload whose bytes are already complete with the same hash ends with 200 instead
//!   of the 416 that made LocalAI's client loop.
//! - `X-Content-SHA256` must be 64 hex characters (CR-14); a full upload onto a directory is 400,
//!   not 500; a range chunk without `X-Content-SHA256` cannot continue a partial that has a target
//!   (409, nothing discarded): every completed range upload is verified against its target.
//! - D18: the declared `Content-Range` total belongs to the partial: a chunk that declares
//!   another total is 409 and the partial is discarded (like a changed hash), so two files of
//!   different sizes are never published as one.

use std::fmt;
use std::time::Duration;

use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, HeaderName, HeaderValue, RANGE};
use http::{HeaderMap, StatusCode};
use sha2::Digest as _;
use thiserror::Error;

use crate::keys::Target;
use crate::response::Reply;

/// `X-Content-SHA256`: the SHA-256 of the complete file (request: declared; `HEAD`: stored).
pub const X_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-content-sha256");
/// `X-Target-SHA256`: the declared hash of an in-progress resumable upload (`HEAD`).
pub const X_TARGET_SHA256: HeaderName = HeaderName::from_static("x-target-sha256");
/// `X-File-Size`: bytes of the complete file, or received so far of a partial one.
pub const X_FILE_SIZE: HeaderName = HeaderName::from_static("x-file-size");
/// `X-Local-Path`: the file's absolute path on the worker (`HEAD`).
pub const X_LOCAL_PATH: HeaderName = HeaderName::from_static("x-local-path");

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `data`.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        Self(sha2::Sha256::digest(data).into())
    }

    /// 64 lowercase hex characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// Decodes exactly 64 hex characters, either case, nothing around them.
    #[must_use]
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut digest = [0_u8; 32];
        for (out, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            let (&high, &low) = (pair.first()?, pair.get(1)?);
            *out = (hex_value(high)? << 4) | hex_value(low)?;
        }
        Some(Self(digest))
    }
}

impl From<[u8; 32]> for Sha256 {
    fn from(digest: [u8; 32]) -> Self {
        Self(digest)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

/// A parsed `Content-Range: bytes <start>-<end>/<total>` of a `PUT`.
///
/// Invariant: `start <= end < total` (so `total >= 1` and nothing overflows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// Offset of the first byte in the body.
    pub start: u64,
    /// Offset of the last byte in the body (inclusive).
    pub end: u64,
    /// Size of the complete file.
    pub total: u64,
}

impl ContentRange {
    /// Number of bytes in the body: `end - start + 1`.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Always false: a `Content-Range` carries at least one byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether this chunk ends the file (`end + 1 == total`).
    #[must_use]
    pub fn completes(&self) -> bool {
        self.end.checked_add(1) == Some(self.total)
    }
}

/// A number field of `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeField {
    /// The first byte offset.
    Start,
    /// The last byte offset.
    End,
    /// The complete size.
    Total,
}

impl fmt::Display for RangeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::End => "end",
            Self::Total => "total",
        })
    }
}

/// Why a number of `Content-Range` did not parse (as a base-10 signed 64-bit integer, like Go's
/// `strconv.ParseInt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Empty, or a character other than an optional leading sign and digits.
    InvalidSyntax,
    /// Outside the signed 64-bit range.
    OutOfRange,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidSyntax => "invalid syntax",
            Self::OutOfRange => "value out of range",
        })
    }
}

/// Why a `Content-Range` header was refused. The texts are LocalAI's 400 bodies.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentRangeError {
    /// The value does not start with `bytes ` (for example the `Range` syntax `bytes=0-99`).
    #[error("invalid Content-Range: missing \"bytes\" prefix")]
    MissingPrefix,
    /// No `/` before the complete size (send `bytes <start>-<end>/<total>`).
    #[error("invalid Content-Range: missing /total")]
    MissingTotal,
    /// No `-` between start and end (the `bytes */<total>` form is refused).
    #[error("invalid Content-Range: missing - separator")]
    MissingSeparator,
    /// A field is not a decimal number (`*` is refused) or does not fit 63 bits.
    #[error("invalid Content-Range {field}: strconv.ParseInt: parsing {text}: {reason}")]
    BadNumber {
        /// Which field.
        field: RangeField,
        /// The field as sent, quoted like Go's `strconv.Quote`.
        text: String,
        /// What is wrong with it.
        reason: NumberError,
    },
    /// The numbers parse but do not satisfy `0 <= start <= end < total`.
    #[error("invalid Content-Range range: {start}-{end}/{total}")]
    BadRange {
        /// The start as sent.
        start: i64,
        /// The end as sent.
        end: i64,
        /// The total as sent.
        total: i64,
    },
}

/// Parses a `Content-Range` value of a `PUT` the way LocalAI does: trimmed, `bytes ` prefix,
/// `<start>-<end>/<total>` as signed 64-bit decimals (each trimmed), `0 <= start <= end < total`.
/// `*` forms (`bytes */N`, `bytes 0-*/N`, `bytes 0-9/*`) and `bytes 0-0/0` are refused.
///
/// # Errors
/// [`ContentRangeError`], whose `Display` is LocalAI's 400 body.
pub fn parse_content_range(value: &[u8]) -> Result<ContentRange, ContentRangeError> {
    let value = trim_ascii(value);
    let rest = value
        .strip_prefix(b"bytes ")
        .ok_or(ContentRangeError::MissingPrefix)?;
    let (range, total) = split_once(rest, b'/').ok_or(ContentRangeError::MissingTotal)?;
    let (start, end) = split_once(range, b'-').ok_or(ContentRangeError::MissingSeparator)?;
    let start = parse_go_int(RangeField::Start, start)?;
    let end = parse_go_int(RangeField::End, end)?;
    let total = parse_go_int(RangeField::Total, total)?;
    match (
        u64::try_from(start),
        u64::try_from(end),
        u64::try_from(total),
    ) {
        (Ok(s), Ok(e), Ok(t)) if s <= e && e < t => Ok(ContentRange {
            start: s,
            end: e,
            total: t,
        }),
        _ => Err(ContentRangeError::BadRange { start, end, total }),
    }
}

/// Why an `X-Content-SHA256` header was refused (400 before anything is written, CR-14).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashHeaderError {
    /// Nothing but whitespace.
    #[error(
        "invalid X-Content-SHA256: empty; send the SHA-256 of the whole file as 64 hex characters"
    )]
    Empty,
    /// Not 64 characters after trimming.
    #[error(
        "invalid X-Content-SHA256: {len} characters; send the SHA-256 of the whole file as 64 hex characters"
    )]
    WrongLength {
        /// Length after trimming.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error(
        "invalid X-Content-SHA256: character {position} is not a hex digit; send the SHA-256 of the whole file as 64 hex characters"
    )]
    NotHex {
        /// Offset of the first offending character after trimming.
        position: usize,
    },
}

/// Parses `X-Content-SHA256`: 64 hex digits of either case, surrounding whitespace trimmed.
///
/// # Errors
/// [`HashHeaderError`] when the trimmed value is empty, not 64 characters, or not hex.
pub fn parse_sha256_header(value: &[u8]) -> Result<Sha256, HashHeaderError> {
    let value = trim_ascii(value);
    if value.is_empty() {
        return Err(HashHeaderError::Empty);
    }
    if value.len() != 64 {
        return Err(HashHeaderError::WrongLength { len: value.len() });
    }
    if let Some(position) = value.iter().position(|&b| hex_value(b).is_none()) {
        return Err(HashHeaderError::NotHex { position });
    }
    Sha256::from_hex(value).ok_or(HashHeaderError::NotHex { position: 0 })
}

/// D6: the hash a `.sha256` sidecar vouches for, if it is trustworthy: its content is exactly 64
/// lowercase hex (one trailing `\n` tolerated) and it is not older than the file. Anything else
/// (a stale sidecar, upper case, garbage, a different length) means "rehash the file".
#[must_use]
pub fn trusted_sidecar(
    content: &[u8],
    sidecar_mtime_ns: i128,
    file_mtime_ns: i128,
) -> Option<Sha256> {
    if sidecar_mtime_ns < file_mtime_ns {
        return None;
    }
    let hex = content.strip_suffix(b"\n").unwrap_or(content);
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Sha256::from_hex(hex)
}

/// A `.sha256` sidecar as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Its raw content.
    pub content: Vec<u8>,
    /// Its modification time in nanoseconds (any epoch, the same as the file's).
    pub mtime_ns: i128,
}

/// What is at the key's path `rel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing.
    Missing,
    /// A directory.
    Directory,
    /// A complete file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Its modification time in nanoseconds.
        mtime_ns: i128,
    },
}

/// Everything the core needs to know about a key on disk.
///
/// If hashing succeeded but the sidecar cannot be written (read-only mount), pass the computed
/// hash as a [`Sidecar`] with `mtime_ns` equal to the file's, so the next plan does not ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// What is at `rel`.
    pub entry: Entry,
    /// `rel.sha256`, if present.
    pub sidecar: Option<Sidecar>,
    /// Size of the partial file, if a resumable upload is in progress.
    pub partial: Option<u64>,
    /// Raw content of `rel.sha256.target`, if present.
    pub target: Option<Vec<u8>>,
    /// Raw content of the partial's total sidecar ([`total_sidecar`]), if present.
    pub total: Option<Vec<u8>>,
}

impl FileState {
    /// The hash of the complete file according to a trusted sidecar (D6), if both exist.
    #[must_use]
    pub fn complete_hash(&self) -> Option<Sha256> {
        match (&self.entry, &self.sidecar) {
            (Entry::File { mtime_ns, .. }, Some(sidecar)) => {
                trusted_sidecar(&sidecar.content, sidecar.mtime_ns, *mtime_ns)
            }
            _ => None,
        }
    }

    /// The target hash of the in-progress upload: the target sidecar, read only while a partial
    /// exists and only if it holds 64 hex characters (whitespace trimmed).
    #[must_use]
    pub fn target_hash(&self) -> Option<Sha256> {
        self.partial?;
        Sha256::from_hex(trim_ascii(self.target.as_deref()?))
    }

    /// The declared total of the in-progress upload (D18): the total sidecar, read only while a
    /// partial exists and only if it holds one decimal number (whitespace trimmed). `None` for a
    /// partial without one (begun by an older version, or an unreadable sidecar): such a partial
    /// takes the total of the next chunk that continues it.
    #[must_use]
    pub fn partial_total(&self) -> Option<u64> {
        self.partial?;
        parse_decimal(trim_ascii(self.total.as_deref()?))
    }
}

/// Relative path of the sidecar that records the declared total of a partial:
/// `<dir>/.<name>.partial.total` (hidden like the partial, so never a key nor listed).
#[must_use]
pub fn total_sidecar(target: &Target) -> String {
    format!("{}{TOTAL_SIDECAR_SUFFIX}", target.partial())
}

/// Suffix appended to the partial's name for its total sidecar.
pub const TOTAL_SIDECAR_SUFFIX: &str = ".total";

/// The answer to `HEAD /v1/files/{key}` for a file state (INV-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadAnswer {
    /// 404 `not found`.
    NotFound,
    /// 400 `is a directory`.
    IsDirectory,
    /// A complete file whose sidecar is missing or untrusted: hash the file, rewrite the sidecar
    /// and ask again. Not an answer to send; [`HeadAnswer::reply`] gives a 503 that asks the
    /// client to retry, should an adapter send it anyway.
    NeedHash,
    /// A complete file that could not be hashed (an I/O error while hashing): 200 with its size
    /// and no hash header, as LocalAI does. The client then uploads instead of skipping.
    Unverified {
        /// Size of the complete file.
        size: u64,
    },
    /// An upload in progress: 200 with the bytes received so far and `X-Target-SHA256` if the
    /// upload declared a hash; never `X-Content-SHA256`.
    Partial {
        /// Bytes received so far.
        size: u64,
        /// The declared hash of the whole file, if any.
        target: Option<Sha256>,
    },
    /// A complete file: 200 with `X-Content-SHA256`.
    Complete {
        /// Its size.
        size: u64,
        /// Its hash, from a trusted sidecar.
        sha256: Sha256,
    },
    /// D19: a complete file with a new upload in progress beside it. `Content-Length` and
    /// `X-Content-SHA256` describe the complete file (what `GET` serves, so a client holding
    /// the same bytes skips its upload); `X-File-Size` and `X-Target-SHA256` describe the
    /// partial (what a client reads to resume).
    Replacing {
        /// Size of the complete file.
        size: u64,
        /// Hash of the complete file, from a trusted sidecar.
        sha256: Sha256,
        /// Bytes of the new upload received so far.
        partial: u64,
        /// The declared hash of the new upload, if any.
        target: Option<Sha256>,
    },
}

/// INV-1 and D19: what `HEAD` answers. A partial alone is [`HeadAnswer::Partial`] (200 for
/// resume discovery, although `GET` answers 404: nothing is complete yet); a complete file is
/// [`HeadAnswer::Complete`], or [`HeadAnswer::Replacing`] while a new upload is in progress
/// beside it, so that `Content-Length` and `X-Content-SHA256` always describe what `GET` serves.
/// A complete file whose sidecar is untrusted gives [`HeadAnswer::NeedHash`].
#[must_use]
pub fn answer_head(state: &FileState) -> HeadAnswer {
    match (state.entry, state.partial) {
        (Entry::Directory, _) => HeadAnswer::IsDirectory,
        (Entry::Missing, None) => HeadAnswer::NotFound,
        (Entry::Missing, Some(size)) => HeadAnswer::Partial {
            size,
            target: state.target_hash(),
        },
        (Entry::File { size, .. }, partial) => match (state.complete_hash(), partial) {
            (None, _) => HeadAnswer::NeedHash,
            (Some(sha256), None) => HeadAnswer::Complete { size, sha256 },
            (Some(sha256), Some(partial)) => HeadAnswer::Replacing {
                size,
                sha256,
                partial,
                target: state.target_hash(),
            },
        },
    }
}

impl HeadAnswer {
    /// The `HEAD` response (spec §2.6). `local_path` is the complete file's absolute path; if it
    /// cannot be a header value (a control character), `X-Local-Path` is left out, which makes
    /// the client upload instead of skipping.
    #[must_use]
    pub fn reply(&self, local_path: &str) -> Reply {
        let (size, hash) = match *self {
            Self::Replacing {
                size,
                sha256,
                partial,
                target,
            } => {
                let mut reply = Reply::empty(StatusCode::OK)
                    .with_number(X_FILE_SIZE, partial)
                    .with_number(CONTENT_LENGTH, size);
                if let Ok(path) = HeaderValue::from_bytes(local_path.as_bytes()) {
                    reply = reply.with_header(X_LOCAL_PATH, path);
                }
                reply = reply
                    .with_header(ACCEPT_RANGES, HeaderValue::from_static("bytes"))
                    .with_header(X_CONTENT_SHA256, hex_header(sha256));
                if let Some(target) = target {
                    reply = reply.with_header(X_TARGET_SHA256, hex_header(target));
                }
                return reply;
            }
            Self::NotFound => return Reply::error(StatusCode::NOT_FOUND, "not found"),
            Self::IsDirectory => return Reply::error(StatusCode::BAD_REQUEST, "is a directory"),
            Self::NeedHash => {
                return Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "file hash is being computed; retry",
                )
                .with_number(http::header::RETRY_AFTER, 1);
            }
            Self::Unverified { size } => (size, None),
            Self::Partial { size, target } => (size, target.map(|t| (X_TARGET_SHA256, t))),
            Self::Complete { size, sha256 } => (size, Some((X_CONTENT_SHA256, sha256))),
        };
        let mut reply = Reply::empty(StatusCode::OK)
            .with_number(X_FILE_SIZE, size)
            .with_number(CONTENT_LENGTH, size);
        if let Ok(path) = HeaderValue::from_bytes(local_path.as_bytes()) {
            reply = reply.with_header(X_LOCAL_PATH, path);
        }
        reply = reply.with_header(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some((name, hash)) = hash {
            reply = reply.with_header(name, hex_header(hash));
        }
        reply
    }
}

/// A `PUT` request as far as uploads are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// `Content-Range`, if present (a resumable upload); `None` is a full upload.
    pub range: Option<ContentRange>,
    /// `X-Content-SHA256`: the declared hash of the complete file.
    pub expected: Option<Sha256>,
    /// `Content-Length`, if present (absent for chunked bodies).
    pub content_length: Option<u64>,
    /// The upload limit in bytes; `None` = unlimited.
    pub limit: Option<u64>,
}

/// Why the upload headers of a `PUT` were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UploadRequestError {
    /// A bad `Content-Range` (400).
    #[error(transparent)]
    ContentRange(#[from] ContentRangeError),
    /// More than one `Content-Range` field (400).
    #[error("invalid Content-Range: send a single Content-Range header")]
    RepeatedContentRange,
    /// A bad `X-Content-SHA256` (400).
    #[error(transparent)]
    Hash(#[from] HashHeaderError),
    /// More than one `X-Content-SHA256` field (400).
    #[error("invalid X-Content-SHA256: send a single X-Content-SHA256 header")]
    RepeatedHash,
    /// `Content-Length` is not one decimal number (400).
    #[error("invalid Content-Length: send one decimal byte count")]
    ContentLength,
    /// `Content-Length` differs from the `Content-Range` span (400, CR-12).
    #[error(
        "Content-Length {content_length} does not match Content-Range span {span}; send exactly end-start+1 bytes"
    )]
    SpanMismatch {
        /// The `Content-Length` sent.
        content_length: u64,
        /// `end - start + 1`.
        span: u64,
    },
    /// `Content-Length` is above the upload limit (413, HR-M01).
    #[error(
        "request body too large: Content-Length {content_length} exceeds the upload limit of {limit} bytes"
    )]
    BodyTooLarge {
        /// The `Content-Length` sent.
        content_length: u64,
        /// The limit.
        limit: u64,
    },
    /// The declared complete size is above the upload limit (413, HR-M04, D16).
    #[error("Content-Range total {total} exceeds the upload limit of {limit} bytes")]
    TotalTooLarge {
        /// The declared total.
        total: u64,
        /// The limit.
        limit: u64,
    },
}

impl UploadRequestError {
    /// 413 for the limits, 400 for everything else.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } | Self::TotalTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response: the status and this error's text.
    #[must_use]
    pub fn reply(&self) -> Reply {
        Reply::error(self.status(), &self.to_string())
    }
}

impl UploadRequest {
    /// Reads `Content-Range`, `X-Content-SHA256` and `Content-Length` and checks them against
    /// each other and the limit. A blank `Content-Range` is a full upload and a blank
    /// `X-Content-SHA256` declares no hash, as in LocalAI (Go cannot tell blank from absent).
    ///
    /// # Errors
    /// [`UploadRequestError`]: 400 for malformed or repeated headers and for a `Content-Length`
    /// other than the range's span (CR-12); 413 for a `Content-Length` or a `Content-Range` total
    /// above the limit (HR-M01, HR-M04). Checked in that order: syntax, then limits, then span.
    pub fn parse(headers: &HeaderMap, limit: Option<u64>) -> Result<Self, UploadRequestError> {
        let content_length = match single(headers, &CONTENT_LENGTH) {
            Err(()) => return Err(UploadRequestError::ContentLength),
            Ok(None) => None,
            Ok(Some(value)) => {
                Some(parse_decimal(trim_ascii(value)).ok_or(UploadRequestError::ContentLength)?)
            }
        };
        let range = match single(headers, &CONTENT_RANGE) {
            Err(()) => return Err(UploadRequestError::RepeatedContentRange),
            Ok(Some(value)) if !trim_ascii(value).is_empty() => Some(parse_content_range(value)?),
            Ok(_) => None,
        };
        let expected = match single(headers, &X_CONTENT_SHA256) {
            Err(()) => return Err(UploadRequestError::RepeatedHash),
            Ok(Some(value)) if !trim_ascii(value).is_empty() => Some(parse_sha256_header(value)?),
            Ok(_) => None,
        };
        let request = Self {
            range,
            expected,
            content_length,
            limit,
        };
        request.check()?;
        Ok(request)
    }

    /// Like [`UploadRequest::parse`], with the refusal already turned into a [`Reply`].
    ///
    /// # Errors
    /// The 400 or 413 response of [`UploadRequestError`].
    pub fn from_headers(headers: &HeaderMap, limit: Option<u64>) -> Result<Self, Reply> {
        Self::parse(headers, limit).map_err(|e| e.reply())
    }

    /// The limit and span checks of [`UploadRequest::parse`], for a request built by hand.
    ///
    /// # Errors
    /// [`UploadRequestError`] `BodyTooLarge`, `TotalTooLarge` or `SpanMismatch`.
    pub fn check(&self) -> Result<(), UploadRequestError> {
        if let (Some(content_length), Some(limit)) = (self.content_length, self.limit)
            && content_length > limit
        {
            return Err(UploadRequestError::BodyTooLarge {
                content_length,
                limit,
            });
        }
        if let Some(range) = self.range {
            if let Some(limit) = self.limit
                && range.total > limit
            {
                return Err(UploadRequestError::TotalTooLarge {
                    total: range.total,
                    limit,
                });
            }
            if let Some(content_length) = self.content_length
                && content_length != range.len()
            {
                return Err(UploadRequestError::SpanMismatch {
                    content_length,
                    span: range.len(),
                });
            }
        }
        Ok(())
    }
}

/// In-progress state to delete before acting (each file only if present). Never the complete
/// file: it survives until a verified replacement is renamed over it (D3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discard {
    /// Delete `<dir>/.<name>.partial` and its total sidecar ([`total_sidecar`]).
    pub partial: bool,
    /// Delete `rel.sha256.target`.
    pub target: bool,
}

impl Discard {
    /// Delete nothing.
    pub const NOTHING: Self = Self {
        partial: false,
        target: false,
    };
    /// Delete the partial and its target sidecar.
    pub const IN_PROGRESS: Self = Self {
        partial: true,
        target: true,
    };

    /// Whether nothing is to be deleted.
    #[must_use]
    pub fn is_nothing(&self) -> bool {
        !self.partial && !self.target
    }
}

/// What to do with a `PUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadPlan {
    /// Answer `reply` (400, 409, 413 or 416) after deleting `discard`; do not read the body.
    Refuse {
        /// The response.
        reply: Reply,
        /// What to delete first.
        discard: Discard,
    },
    /// The decision depends on the complete file's hash and its sidecar is missing or untrusted:
    /// hash the file, rewrite `rel.sha256`, read the state again and plan again.
    NeedHash,
    /// D9: the complete file already has the declared size and hash. Delete `discard`, answer
    /// [`upload_ok`] without reading the body or writing anything.
    AlreadyComplete {
        /// What to delete.
        discard: Discard,
    },
    /// A full upload: create a fresh temp file (`O_EXCL`), stream the body into it while hashing,
    /// stop with [`too_large`] (deleting the temp) as soon as more than `max_len` bytes arrive,
    /// delete the temp on any error, then call [`finish_full`]. The in-progress partial and
    /// target are left alone until publishing.
    WriteFull {
        /// The most bytes to accept; `None` = unlimited.
        max_len: Option<u64>,
    },
    /// A range upload: delete `discard`, write `rel.sha256.target` with `write_target` (lowercase
    /// hex) if `Some` and the total sidecar with `write_total` (decimal) if `Some`, both before
    /// the partial, then open the partial for append (creating it), check that its size is `offset`,
    /// append exactly `len` bytes of the body (ignore any excess; a short body is [`short_body`],
    /// keeping what was appended), then call [`after_append`] with the new size.
    Append {
        /// What to delete first.
        discard: Discard,
        /// The partial's size before appending (= the range's start).
        offset: u64,
        /// Bytes to append (= the range's span).
        len: u64,
        /// The target sidecar to write, if the request declared a hash.
        write_target: Option<Sha256>,
        /// The total sidecar to write: the declared total, when the partial is new or does not
        /// record it yet.
        write_total: Option<u64>,
        /// Whether this chunk ends the file (`end + 1 == total`).
        completes: bool,
    },
}

/// Plans a `PUT` from the request and the key's state (spec §2.8 adapted to the layout above).
///
/// 1. A directory at `rel` → 400 `destination is a directory` (full uploads too).
/// 2. No `Content-Range` → [`UploadPlan::WriteFull`].
/// 3. A range upload; the current size is the partial's, or 0 without one:
///    - (a) D9: a declared hash, a complete file of size `total` whose trusted hash equals it, and
///      no partial with a different target → [`UploadPlan::AlreadyComplete`] (the partial and
///      target discarded); [`UploadPlan::NeedHash`] when the sidecar is untrusted.
///    - (b) `start == 0` over a partial: kept only when the declared hash equals its target,
///      the declared total equals its recorded one (or it records none) and the partial is
///      shorter than `total` (else it could never be resumed), otherwise the partial and target
///      are discarded and the current size is 0.
///    - (c) `start > 0`, a declared hash different from the partial's target → 409, partial and
///      target discarded; `start > 0` without a declared hash over a partial that has a target →
///      409, nothing discarded; `start > 0` with a total other than the partial's recorded one
///      → 409, partial and target discarded (D18: the bytes belong to a file of another size).
///    - (d) `start` ≠ current size → 416 with `Content-Range: bytes */<total>` and
///      `X-File-Size: <current>`, nothing changed (INV-2).
///    - (e) otherwise [`UploadPlan::Append`] at `start`; a fresh partial also discards a
///      leftover target, and a kept partial an unreadable one. A partial begun without a hash
///      takes the first declared one as its target, unverified: if its bytes belong to another
///      file, the last chunk's hash check refuses them (400) and discards the partial, so the
///      client's next attempt starts clean (found by the `plan_upload` fuzz target).
///
/// Limits are checked again ([`UploadRequest::check`]) for requests built by hand.
#[must_use]
pub fn plan_upload(req: &UploadRequest, state: &FileState) -> UploadPlan {
    if let Err(error) = req.check() {
        return refuse(error.reply(), Discard::NOTHING);
    }
    if state.entry == Entry::Directory {
        return refuse(
            Reply::error(StatusCode::BAD_REQUEST, "destination is a directory"),
            Discard::NOTHING,
        );
    }
    let Some(range) = req.range else {
        return UploadPlan::WriteFull { max_len: req.limit };
    };
    let target = state.target_hash();
    let present = Discard {
        partial: state.partial.is_some(),
        target: state.target.is_some(),
    };

    // (a) D9: the bytes are already there.
    if let (Some(expected), Entry::File { size, .. }) = (req.expected, state.entry)
        && size == range.total
        && target.is_none_or(|t| t == expected)
    {
        match state.complete_hash() {
            None => return UploadPlan::NeedHash,
            Some(hash) if hash == expected => {
                return UploadPlan::AlreadyComplete { discard: present };
            }
            Some(_) => {}
        }
    }

    let mut discard = Discard::NOTHING;
    let mut current = state.partial;
    // (b) restart from byte 0. A partial of the same upload is kept so the 416 below tells the
    // client where to resume — unless it already holds every byte (a crash between the last
    // append and the publish): the client would then never resume, since it resumes only below
    // the full size, and would loop on 416. Such a partial is discarded and the upload restarts.
    if range.start == 0 && current.is_some() {
        let same = matches!((req.expected, target), (Some(e), Some(t)) if e == t)
            && state.partial_total().is_none_or(|t| t == range.total);
        let resumable = current.is_some_and(|size| size < range.total);
        if !(same && resumable) {
            discard = present;
            current = None;
        }
    }
    // (c) drift.
    if range.start > 0 && current.is_some() {
        match (req.expected, target) {
            (Some(new), Some(old)) if new != old => {
                let message = format!(
                    "X-Content-SHA256 mismatch with in-progress upload (was {old}, now {new}); restart from byte 0"
                );
                return refuse(Reply::error(StatusCode::CONFLICT, &message), present);
            }
            (None, Some(old)) => {
                let message = format!(
                    "X-Content-SHA256 required to continue the in-progress upload (target {old}); resend it or restart from byte 0"
                );
                return refuse(
                    Reply::error(StatusCode::CONFLICT, &message),
                    Discard::NOTHING,
                );
            }
            _ => {}
        }
        // D18: the total is part of the partial's identity.
        if let Some(old) = state.partial_total()
            && old != range.total
        {
            let message = format!(
                "Content-Range total mismatch with in-progress upload (was {old}, now {}); restart from byte 0",
                range.total
            );
            return refuse(Reply::error(StatusCode::CONFLICT, &message), present);
        }
    }
    // (d) offset.
    let size = current.unwrap_or(0);
    if range.start != size {
        let message = format!(
            "Content-Range start {} does not match current file size {size}",
            range.start
        );
        let reply = Reply::error(StatusCode::RANGE_NOT_SATISFIABLE, &message)
            .with_header(CONTENT_RANGE, unsatisfied_range(range.total))
            .with_number(X_FILE_SIZE, size);
        return refuse(reply, Discard::NOTHING);
    }
    // (e) append; clean up a target that must not describe the partial being written.
    if current.is_none() || (target.is_none() && req.expected.is_none()) {
        discard.target |= state.target.is_some();
    }
    let write_total = (current.is_none() || state.partial_total().is_none()).then_some(range.total);
    UploadPlan::Append {
        discard,
        offset: range.start,
        len: range.len(),
        write_target: req.expected,
        write_total,
        completes: range.completes(),
    }
}

/// The end of an upload whose body was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Verified: publish as described in the module docs (delete `rel.sha256`, rename the temp
    /// file or partial over `rel`, write `rel.sha256` with `sha256`, delete the partial and the
    /// target sidecar), then answer [`upload_ok`].
    Publish {
        /// The hash of the complete file, for `rel.sha256`.
        sha256: Sha256,
    },
    /// Answer `reply` after deleting the temp file (full uploads) and `discard`; the complete
    /// file is left untouched.
    Refuse {
        /// The response.
        reply: Reply,
        /// What to delete.
        discard: Discard,
    },
}

/// Decides a streamed full upload: `actual` is the hash and `written` the length of the temp
/// file. A declared hash that differs → 400 `sha256 mismatch: expected <declared> got <actual>`;
/// fewer bytes than `Content-Length` → 400 short body; more than the limit → 413. On refusal the
/// adapter deletes its temp file; the previous complete file stays (D3).
#[must_use]
pub fn finish_full(req: &UploadRequest, actual: Sha256, written: u64) -> Finish {
    if let Some(limit) = req.limit
        && written > limit
    {
        return Finish::Refuse {
            reply: too_large(limit),
            discard: Discard::NOTHING,
        };
    }
    if let Some(expected_len) = req.content_length
        && written != expected_len
    {
        return Finish::Refuse {
            reply: short_body(written, expected_len),
            discard: Discard::NOTHING,
        };
    }
    verify(req.expected, actual, Discard::NOTHING)
}

/// What follows an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// More bytes are needed: answer `reply` (308).
    Incomplete {
        /// 308 with `Range: bytes=0-<n-1>` and `X-File-Size: <n>`, no `Location`, empty body.
        reply: Reply,
    },
    /// The partial holds the whole file: hash it, then call [`finish_range`].
    Complete,
}

/// After appending a chunk: `new_size` is the partial's size now. Complete once it reaches the
/// declared total (or when the request has no range at all).
#[must_use]
pub fn after_append(req: &UploadRequest, new_size: u64) -> AppendOutcome {
    match req.range {
        Some(range) if new_size < range.total => {
            let mut reply = Reply::empty(StatusCode::PERMANENT_REDIRECT);
            if let Some(last) = new_size.checked_sub(1) {
                reply = reply.with_header(RANGE, ascii_header(format!("bytes=0-{last}")));
            }
            AppendOutcome::Incomplete {
                reply: reply.with_number(X_FILE_SIZE, new_size),
            }
        }
        _ => AppendOutcome::Complete,
    }
}

/// Decides a completed range upload: `actual` is the hash of the whole partial. A declared hash
/// that differs → 400 `sha256 mismatch: ...` with the partial and target discarded (LocalAI).
#[must_use]
pub fn finish_range(req: &UploadRequest, actual: Sha256) -> Finish {
    verify(req.expected, actual, Discard::IN_PROGRESS)
}

/// Why appending to a partial ran out of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The filesystem is full or the quota is reached (`ENOSPC`, `EDQUOT`): every write of the
    /// root fails until space is freed.
    DiskFull,
    /// The file reached a per-file size limit (`EFBIG`, `RLIMIT_FSIZE`): other writes still work.
    FileTooLarge,
}

/// What to delete after appending to a partial failed for lack of room (answered 507). A full
/// disk discards the partial and its target: the partial is what filled the disk, and kept it
/// would make every later write of the root fail too, across restarts, until someone found it;
/// its client restarts from byte 0 once space is freed (HEAD shows no partial). A per-file size
/// limit keeps it (HR-D02): the disk has room, and the upload resumes once the limit is raised.
#[must_use]
pub fn after_append_failed(no_room: NoRoom) -> Discard {
    match no_room {
        NoRoom::DiskFull => Discard::IN_PROGRESS,
        NoRoom::FileTooLarge => Discard::NOTHING,
    }
}

/// 400 `short body: got <n> expected <len>`. Bytes already appended to a partial stay, so the
/// client can resume from them.
#[must_use]
pub fn short_body(got: u64, expected: u64) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        &format!("short body: got {got} expected {expected}"),
    )
}

/// 413 for a body that went over the limit while streaming (D2).
#[must_use]
pub fn too_large(limit: u64) -> Reply {
    Reply::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body too large: the upload limit is {limit} bytes"),
    )
}

/// 200 with `{"local_path": ...}` and a newline.
#[must_use]
pub fn upload_ok(local_path: &str) -> Reply {
    Reply::json(
        StatusCode::OK,
        &serde_json::json!({ "local_path": local_path }),
    )
}

// ---------------------------------------------------------------------------------------------

fn refuse(reply: Reply, discard: Discard) -> UploadPlan {
    UploadPlan::Refuse { reply, discard }
}

fn verify(expected: Option<Sha256>, actual: Sha256, on_mismatch: Discard) -> Finish {
    match expected {
        Some(expected) if expected != actual => Finish::Refuse {
            reply: Reply::error(
                StatusCode::BAD_REQUEST,
                &format!("sha256 mismatch: expected {expected} got {actual}"),
            ),
            discard: on_mismatch,
        },
        _ => Finish::Publish { sha256: actual },
    }
}

fn unsatisfied_range(total: u64) -> HeaderValue {
    ascii_header(format!("bytes */{total}"))
}

fn hex_header(hash: Sha256) -> HeaderValue {
    ascii_header(hash.to_hex())
}

/// A header value made of ASCII digits, letters, spaces and punctuation only.
fn ascii_header(text: String) -> HeaderValue {
    HeaderValue::try_from(text)
        .expect("digits, letters, `-`, `=`, `*`, `/` and spaces are valid header bytes")
}

/// The single value of header `name`: `Err` when repeated.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a [u8]>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().map(HeaderValue::as_bytes);
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Go's `strings.TrimSpace` on the ASCII whitespace set.
fn trim_ascii(value: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

fn split_once(value: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = value.iter().position(|&b| b == separator)?;
    let (before, after) = value.split_at(at);
    Some((before, after.get(1..).unwrap_or_default()))
}

/// A plain decimal `u64` (no sign, no spaces), `None` on overflow.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0_u64, |n, &b| {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// Go's `strconv.ParseInt(trimmed, 10, 64)`.
fn parse_go_int(field: RangeField, raw: &[u8]) -> Result<i64, ContentRangeError> {
    let text = trim_ascii(raw);
    let error = |reason| ContentRangeError::BadNumber {
        field,
        text: go_quote(text),
        reason,
    };
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(error(NumberError::InvalidSyntax));
    }
    let magnitude = digits.iter().try_fold(0_i128, |n, &b| {
        let n = n * 10 + i128::from(b - b'0');
        (n <= 1 << 63).then_some(n)
    });
    let value = magnitude.map(|m| if negative { -m } else { m });
    value
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| error(NumberError::OutOfRange))
}

/// Go's `strconv.Quote`, closely enough for error messages: printable characters as they are,
/// `"` and `\` escaped, everything else as `\t`, `\n`, `\r` or `\xNN`.
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0_u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// The slowest average a request body may keep up (issue 12, item 8): a client trickling a
/// byte every few seconds never trips the idle timeout, which measures pauses only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second, averaged over `window`; zero disables the check.
    pub bytes_per_second: u64,
    /// The span the average is taken over.
    pub window: Duration,
}

/// Whether a body keeps up its [`MinRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Fast enough so far.
    KeepsUp,
    /// Slower than the minimum over a whole window: stop reading and answer
    /// [`too_slow`].
    TooSlow,
}

/// Tracks one body against a [`MinRate`], one window after another. Time is an argument.
#[derive(Debug, Clone, Copy)]
pub struct RateCheck {
    min: MinRate,
    window_start: Duration,
    received_at_start: u64,
}

impl RateCheck {
    /// Starts checking at `now`, with nothing received.
    #[must_use]
    pub fn new(min: MinRate, now: Duration) -> Self {
        Self {
            min,
            window_start: now,
            received_at_start: 0,
        }
    }

    /// `received` bytes of the body have arrived by `now`. Each time a window ends, the bytes
    /// it brought must reach `bytes_per_second × window`.
    pub fn handle_progress(&mut self, now: Duration, received: u64) -> RateVerdict {
        if self.min.bytes_per_second == 0 || self.min.window.is_zero() {
            return RateVerdict::KeepsUp;
        }
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed < self.min.window {
            return RateVerdict::KeepsUp;
        }
        let needed = u128::from(self.min.bytes_per_second) * elapsed.as_millis() / 1000;
        let brought = u128::from(received.saturating_sub(self.received_at_start));
        if brought < needed {
            return RateVerdict::TooSlow;
        }
        self.window_start = now;
        self.received_at_start = received;
        RateVerdict::KeepsUp
    }
}

/// How a request body failed while it was streamed to disk; the driver's read loop tells
/// which, [`BodyFailure::reply`] is the answer (the disk's own failures are
/// [`crate::file_fault::FileFault`]s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// More bytes than the upload limit arrived (413).
    TooLarge,
    /// No body bytes arrived for longer than the idle timeout (408, resumable).
    Stalled,
    /// The body came slower than the minimum rate over a whole window (408, resumable).
    TooSlow(MinRate),
    /// The body broke off (the client disconnected) or its framing was invalid (400).
    Broken,
}

impl BodyFailure {
    /// The reply to `request` whose body failed this way.
    #[must_use]
    pub fn reply(self, request: &UploadRequest) -> Reply {
        match self {
            Self::TooLarge => too_large(request.limit.unwrap_or(u64::MAX)),
            Self::Stalled => Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "request body stalled; resume the upload",
            ),
            Self::TooSlow(min) => too_slow(min),
            Self::Broken => Reply::error(StatusCode::BAD_REQUEST, "request body ended early"),
        }
    }
}

/// The answer to a body slower than the minimum rate: 408, resumable.
#[must_use]
pub fn too_slow(min: MinRate) -> Reply {
    Reply::error(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "request body too slow: under {} bytes/s over {} s; resume the upload",
            min.bytes_per_second,
            min.window.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use http::header::LOCATION;
    use proptest::prelude::*;

    use super::*;

    const PATH: &str = "/models/m/w.bin";

    fn hash(data: &[u8]) -> Sha256 {
        Sha256::of(data)
    }

    fn header<'a>(reply: &'a Reply, name: &HeaderName) -> Option<&'a str> {
        reply.header(name).and_then(|v| v.to_str().ok())
    }

    fn body(reply: &Reply) -> &str {
        std::str::from_utf8(&reply.body).unwrap()
    }

    fn range_error(value: &str) -> String {
        parse_content_range(value.as_bytes())
            .unwrap_err()
            .to_string()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ranged(start: u64, end: u64, total: u64, expected: Option<Sha256>) -> UploadRequest {
        UploadRequest {
            range: Some(ContentRange { start, end, total }),
            expected,
            content_length: Some(end - start + 1),
            limit: None,
        }
    }

    fn full(expected: Option<Sha256>, content_length: Option<u64>) -> UploadRequest {
        UploadRequest {
            range: None,
            expected,
            content_length,
            limit: None,
        }
    }

    fn absent() -> FileState {
        FileState {
            entry: Entry::Missing,
            sidecar: None,
            partial: None,
            target: None,
            total: None,
        }
    }

    /// `state` with its partial recording the declared total `total`.
    fn with_total(mut state: FileState, total: u64) -> FileState {
        state.total = Some(total.to_string().into_bytes());
        state
    }

    fn directory() -> FileState {
        FileState {
            entry: Entry::Directory,
            ..absent()
        }
    }

    /// A complete file of `size` bytes with a fresh sidecar holding `sha`.
    fn complete(size: u64, sha: Sha256) -> FileState {
        FileState {
            entry: Entry::File { size, mtime_ns: 10 },
            sidecar: Some(Sidecar {
                content: sha.to_hex().into_bytes(),
                mtime_ns: 20,
            }),
            ..absent()
        }
    }

    /// A partial of `size` bytes with the target sidecar `target`.
    fn partial(size: u64, target: Option<Sha256>) -> FileState {
        FileState {
            partial: Some(size),
            target: target.map(|t| t.to_hex().into_bytes()),
            ..absent()
        }
    }

    fn with_partial(mut state: FileState, size: u64, target: Option<Sha256>) -> FileState {
        state.partial = Some(size);
        state.target = target.map(|t| t.to_hex().into_bytes());
        state
    }

    fn refused(plan: UploadPlan) -> (Reply, Discard) {
        match plan {
            UploadPlan::Refuse { reply, discard } => (reply, discard),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    // ----- Content-Range (security.md §4.7, spec §2.8 and §7.10) -----

    #[test]
    fn content_range_parses_the_rfc_shape() {
        let range = parse_content_range(b"bytes 0-99/100").unwrap();
        assert_eq!(
            range,
            ContentRange {
                start: 0,
                end: 99,
                total: 100
            }
        );
        assert_eq!(range.len(), 100);
        assert!(range.completes());
        assert!(!parse_content_range(b"bytes 0-49/100").unwrap().completes());
    }

    #[test]
    fn content_range_is_trimmed_like_localai() {
        let range = parse_content_range(b" \tbytes 5 - 9 / 10 \r\n").unwrap();
        assert_eq!((range.start, range.end, range.total), (5, 9, 10));
        assert_eq!(parse_content_range(b"bytes +5-+9/+10").unwrap(), range);
    }

    #[test]
    fn cr05_range_request_syntax_is_missing_the_bytes_prefix() {
        let text = "invalid Content-Range: missing \"bytes\" prefix";
        assert_eq!(range_error("bytes=0-99/100"), text);
        assert_eq!(range_error("items 0-1/2"), text);
        assert_eq!(range_error("Bytes 0-1/2"), text);
        assert_eq!(range_error(""), text);
    }

    #[test]
    fn content_range_without_total_or_separator_is_refused() {
        assert_eq!(
            range_error("bytes 0-99"),
            "invalid Content-Range: missing /total"
        );
        assert_eq!(
            range_error("bytes 099/100"),
            "invalid Content-Range: missing - separator"
        );
    }

    #[test]
    fn cr06_cr07_ranges_out_of_order_or_past_the_total_are_refused() {
        assert_eq!(
            range_error("bytes 100-99/100"),
            "invalid Content-Range range: 100-99/100"
        );
        assert_eq!(
            range_error("bytes 5-4/10"),
            "invalid Content-Range range: 5-4/10"
        );
        assert_eq!(
            range_error("bytes 0-100/100"),
            "invalid Content-Range range: 0-100/100"
        );
        assert_eq!(
            range_error("bytes 0-9/5"),
            "invalid Content-Range range: 0-9/5"
        );
    }

    #[test]
    fn cr08_negative_numbers_are_refused() {
        assert_eq!(
            range_error("bytes -1-5/10"),
            "invalid Content-Range start: strconv.ParseInt: parsing \"\": invalid syntax"
        );
        assert_eq!(
            range_error("bytes 0--5/10"),
            "invalid Content-Range range: 0--5/10"
        );
    }

    #[test]
    fn cr09_numbers_beyond_63_bits_are_refused_without_overflow() {
        assert_eq!(
            range_error("bytes 0-18446744073709551615/18446744073709551616"),
            "invalid Content-Range end: strconv.ParseInt: parsing \"18446744073709551615\": value out of range"
        );
        // Go's `end+1` wraps here and accepts; nodegate refuses.
        assert_eq!(
            range_error("bytes 0-9223372036854775807/9223372036854775807"),
            "invalid Content-Range range: 0-9223372036854775807/9223372036854775807"
        );
        let max = parse_content_range(b"bytes 0-9223372036854775806/9223372036854775807").unwrap();
        assert_eq!(max.len(), 9_223_372_036_854_775_807);
    }

    #[test]
    fn cr10_star_forms_are_refused() {
        assert_eq!(
            range_error("bytes 0-99/*"),
            "invalid Content-Range total: strconv.ParseInt: parsing \"*\": invalid syntax"
        );
        assert_eq!(
            range_error("bytes 0-*/200"),
            "invalid Content-Range end: strconv.ParseInt: parsing \"*\": invalid syntax"
        );
        assert_eq!(
            range_error("bytes */200"),
            "invalid Content-Range: missing - separator"
        );
    }

    #[test]
    fn cr11_several_ranges_or_trailing_garbage_are_refused() {
        assert!(parse_content_range(b"bytes 0-1/10, 2-3/10").is_err());
        assert!(parse_content_range(b"bytes 0-1/10x").is_err());
        assert!(parse_content_range(b"bytes 0-1/10/10").is_err());
        assert_eq!(
            range_error("bytes 0-1/1\"0"),
            "invalid Content-Range total: strconv.ParseInt: parsing \"1\\\"0\": invalid syntax"
        );
    }

    #[test]
    fn a_zero_length_file_cannot_be_sent_as_a_range() {
        assert_eq!(
            range_error("bytes 0-0/0"),
            "invalid Content-Range range: 0-0/0"
        );
    }

    #[test]
    fn non_utf8_numbers_are_quoted_with_escapes() {
        let error = parse_content_range(b"bytes \xff-1/2").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid Content-Range start: strconv.ParseInt: parsing \"\\xff\": invalid syntax"
        );
    }

    // ----- X-Content-SHA256 -----

    #[test]
    fn cr14_hash_header_must_be_64_hex_characters() {
        let good = hash(b"x").to_hex();
        assert_eq!(
            parse_sha256_header(&good.as_bytes()[..63]),
            Err(HashHeaderError::WrongLength { len: 63 })
        );
        assert_eq!(
            parse_sha256_header(format!("{good}0").as_bytes()),
            Err(HashHeaderError::WrongLength { len: 65 })
        );
        let mut bad = good.clone().into_bytes();
        bad[10] = b'g';
        assert_eq!(
            parse_sha256_header(&bad),
            Err(HashHeaderError::NotHex { position: 10 })
        );
        assert_eq!(parse_sha256_header(b"  "), Err(HashHeaderError::Empty));
        assert!(
            HashHeaderError::WrongLength { len: 3 }
                .to_string()
                .contains("64 hex characters")
        );
    }

    #[test]
    fn cr15_upper_case_hash_is_accepted_and_equal() {
        let sha = hash(b"weights");
        let upper = format!("  {}\t", sha.to_hex().to_uppercase());
        assert_eq!(parse_sha256_header(upper.as_bytes()), Ok(sha));
        assert_eq!(Sha256::from_hex(sha.to_hex().as_bytes()), Some(sha));
        assert_eq!(sha.to_string(), sha.to_hex());
        assert_eq!(
            hash(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    // ----- Sidecar trust (D6) -----

    #[test]
    fn d6_sidecar_is_trusted_only_when_lowercase_hex_and_fresh() {
        let sha = hash(b"model");
        let hex = sha.to_hex();
        assert_eq!(trusted_sidecar(hex.as_bytes(), 5, 5), Some(sha));
        assert_eq!(
            trusted_sidecar(format!("{hex}\n").as_bytes(), 6, 5),
            Some(sha)
        );
        assert_eq!(
            trusted_sidecar(hex.as_bytes(), 4, 5),
            None,
            "older than the file"
        );
        assert_eq!(trusted_sidecar(hex.to_uppercase().as_bytes(), 6, 5), None);
        assert_eq!(trusted_sidecar(format!("{hex}\n\n").as_bytes(), 6, 5), None);
        assert_eq!(trusted_sidecar(format!(" {hex}").as_bytes(), 6, 5), None);
        assert_eq!(trusted_sidecar(&hex.as_bytes()[..63], 6, 5), None);
        assert_eq!(trusted_sidecar(b"not a hash at all", 6, 5), None);
        assert_eq!(trusted_sidecar(b"", 6, 5), None);
    }

    // ----- Request headers and limits -----

    #[test]
    fn no_upload_headers_is_a_full_upload() {
        let request = UploadRequest::from_headers(&HeaderMap::new(), Some(10)).unwrap();
        assert_eq!(
            request,
            UploadRequest {
                limit: Some(10),
                ..full(None, None)
            }
        );
    }

    #[test]
    fn blank_range_and_hash_headers_count_as_absent_like_localai() {
        let map = headers(&[("content-range", " "), ("x-content-sha256", "")]);
        assert_eq!(
            UploadRequest::from_headers(&map, None).unwrap(),
            full(None, None)
        );
    }

    #[test]
    fn headers_are_read_into_a_request() {
        let sha = hash(b"abc");
        let map = headers(&[
            ("content-range", "bytes 0-2/3"),
            ("x-content-sha256", &sha.to_hex().to_uppercase()),
            ("content-length", "3"),
        ]);
        assert_eq!(
            UploadRequest::from_headers(&map, Some(3)).unwrap(),
            UploadRequest {
                limit: Some(3),
                ..ranged(0, 2, 3, Some(sha))
            }
        );
    }

    #[test]
    fn bad_range_or_hash_headers_are_400_before_writing() {
        let map = headers(&[("content-range", "bytes=0-1/2")]);
        let reply = UploadRequest::from_headers(&map, None).unwrap_err();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body(&reply),
            "invalid Content-Range: missing \"bytes\" prefix\n"
        );
        let map = headers(&[("x-content-sha256", "abc")]);
        let reply = UploadRequest::from_headers(&map, None).unwrap_err();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let map = headers(&[("content-length", "12a")]);
        assert_eq!(
            UploadRequest::parse(&map, None),
            Err(UploadRequestError::ContentLength)
        );
    }

    #[test]
    fn repeated_upload_headers_are_400() {
        let map = headers(&[
            ("content-range", "bytes 0-1/2"),
            ("content-range", "bytes 0-1/2"),
        ]);
        assert_eq!(
            UploadRequest::parse(&map, None),
            Err(UploadRequestError::RepeatedContentRange)
        );
        let hex = hash(b"").to_hex();
        let map = headers(&[("x-content-sha256", &hex), ("x-content-sha256", &hex)]);
        assert_eq!(
            UploadRequest::parse(&map, None),
            Err(UploadRequestError::RepeatedHash)
        );
    }

    #[test]
    fn cr12_content_length_other_than_the_span_is_400() {
        let map = headers(&[
            ("content-range", "bytes 10-19/100"),
            ("content-length", "9"),
        ]);
        let error = UploadRequest::parse(&map, None).unwrap_err();
        assert_eq!(
            error,
            UploadRequestError::SpanMismatch {
                content_length: 9,
                span: 10
            }
        );
        assert_eq!(error.reply().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn hr_m01_content_length_over_the_limit_is_413_and_hr_m06_the_limit_itself_is_accepted() {
        let map = headers(&[("content-length", "101")]);
        let reply = UploadRequest::from_headers(&map, Some(100)).unwrap_err();
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        let map = headers(&[("content-length", "100")]);
        assert!(UploadRequest::from_headers(&map, Some(100)).is_ok());
        assert!(UploadRequest::from_headers(&headers(&[("content-length", "101")]), None).is_ok());
    }

    #[test]
    fn hr_m04_d16_a_declared_total_over_the_limit_is_413() {
        let map = headers(&[("content-range", "bytes 0-9/101"), ("content-length", "10")]);
        let reply = UploadRequest::from_headers(&map, Some(100)).unwrap_err();
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body(&reply),
            "Content-Range total 101 exceeds the upload limit of 100 bytes\n"
        );
        let map = headers(&[("content-range", "bytes 0-9/9223372036854775807")]);
        let reply = UploadRequest::from_headers(&map, Some(50 << 30)).unwrap_err();
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    // ----- HEAD (spec §2.6, INV-1) -----

    #[test]
    fn head_of_a_missing_key_is_404_and_of_a_directory_400() {
        assert_eq!(answer_head(&absent()), HeadAnswer::NotFound);
        let reply = HeadAnswer::NotFound.reply(PATH);
        assert_eq!(
            (reply.status, body(&reply)),
            (StatusCode::NOT_FOUND, "not found\n")
        );
        assert_eq!(answer_head(&directory()), HeadAnswer::IsDirectory);
        let reply = HeadAnswer::IsDirectory.reply(PATH);
        assert_eq!(
            (reply.status, body(&reply)),
            (StatusCode::BAD_REQUEST, "is a directory\n")
        );
    }

    #[test]
    fn head_of_a_complete_file_carries_its_hash_and_size() {
        let sha = hash(b"hello distributed world");
        let answer = answer_head(&complete(23, sha));
        assert_eq!(
            answer,
            HeadAnswer::Complete {
                size: 23,
                sha256: sha
            }
        );
        let reply = answer.reply(PATH);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            header(&reply, &X_CONTENT_SHA256),
            Some(sha.to_hex().as_str())
        );
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("23"));
        assert_eq!(header(&reply, &CONTENT_LENGTH), Some("23"));
        assert_eq!(header(&reply, &X_LOCAL_PATH), Some(PATH));
        assert_eq!(header(&reply, &ACCEPT_RANGES), Some("bytes"));
        assert_eq!(header(&reply, &X_TARGET_SHA256), None);
        assert!(reply.body.is_empty());
    }

    #[test]
    fn head_rehashes_when_the_sidecar_is_missing_stale_or_malformed() {
        let sha = hash(b"legacy");
        let mut state = complete(6, sha);
        state.sidecar = None;
        assert_eq!(answer_head(&state), HeadAnswer::NeedHash);
        let mut stale = complete(6, sha);
        stale.sidecar.as_mut().unwrap().mtime_ns = 9;
        assert_eq!(answer_head(&stale), HeadAnswer::NeedHash);
        let mut upper = complete(6, sha);
        upper.sidecar.as_mut().unwrap().content = sha.to_hex().to_uppercase().into_bytes();
        assert_eq!(answer_head(&upper), HeadAnswer::NeedHash);
        let reply = HeadAnswer::NeedHash.reply(PATH);
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&reply, &X_CONTENT_SHA256), None);
    }

    #[test]
    fn head_of_an_unhashable_file_is_200_without_a_hash() {
        let reply = HeadAnswer::Unverified { size: 7 }.reply(PATH);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("7"));
        assert_eq!(header(&reply, &X_CONTENT_SHA256), None);
        assert_eq!(header(&reply, &X_TARGET_SHA256), None);
    }

    /// Spec §7.1 item 9: HEAD on a partial (60/200) shows the received size and the target.
    #[test]
    fn head_of_a_partial_shows_the_target_never_the_content_hash() {
        let sha = hash(&[7; 200]);
        let answer = answer_head(&partial(60, Some(sha)));
        assert_eq!(
            answer,
            HeadAnswer::Partial {
                size: 60,
                target: Some(sha)
            }
        );
        let reply = answer.reply(PATH);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("60"));
        assert_eq!(header(&reply, &ACCEPT_RANGES), Some("bytes"));
        assert_eq!(
            header(&reply, &X_TARGET_SHA256),
            Some(sha.to_hex().as_str())
        );
        assert_eq!(header(&reply, &X_CONTENT_SHA256), None);
    }

    #[test]
    fn head_of_a_partial_without_a_readable_target_shows_neither_hash() {
        for target in [None, Some(b"short".to_vec())] {
            let state = FileState {
                target,
                ..partial(5, None)
            };
            let answer = answer_head(&state);
            assert_eq!(
                answer,
                HeadAnswer::Partial {
                    size: 5,
                    target: None
                }
            );
            let reply = answer.reply(PATH);
            assert_eq!(header(&reply, &X_TARGET_SHA256), None);
            assert_eq!(header(&reply, &X_CONTENT_SHA256), None);
        }
    }

    /// D19: while a new upload is in progress over a complete copy, `Content-Length` and
    /// `X-Content-SHA256` describe the complete file (what GET serves), `X-File-Size` and
    /// `X-Target-SHA256` the partial.
    #[test]
    fn d19_head_over_a_complete_file_and_a_partial_describes_both() {
        let old = hash(b"old");
        let new = hash(b"new!");
        let state = with_partial(complete(3, old), 2, Some(new));
        let answer = answer_head(&state);
        assert_eq!(
            answer,
            HeadAnswer::Replacing {
                size: 3,
                sha256: old,
                partial: 2,
                target: Some(new)
            }
        );
        let reply = answer.reply(PATH);
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, &CONTENT_LENGTH), Some("3"));
        assert_eq!(
            header(&reply, &X_CONTENT_SHA256),
            Some(old.to_hex().as_str())
        );
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("2"));
        assert_eq!(
            header(&reply, &X_TARGET_SHA256),
            Some(new.to_hex().as_str())
        );
        assert_eq!(header(&reply, &X_LOCAL_PATH), Some(PATH));
        // The complete file's hash must be trusted first.
        let mut untrusted = state.clone();
        untrusted.sidecar = None;
        assert_eq!(answer_head(&untrusted), HeadAnswer::NeedHash);
    }

    #[test]
    fn head_target_sidecar_without_a_partial_is_ignored() {
        let sha = hash(b"abc");
        let mut state = complete(3, sha);
        state.target = Some(hash(b"other").to_hex().into_bytes());
        assert_eq!(
            answer_head(&state),
            HeadAnswer::Complete {
                size: 3,
                sha256: sha
            }
        );
    }

    #[test]
    fn head_leaves_out_a_local_path_that_cannot_be_a_header() {
        let reply = HeadAnswer::Complete {
            size: 1,
            sha256: hash(b"a"),
        }
        .reply("/m/a\nb");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, &X_LOCAL_PATH), None);
    }

    // ----- PUT planning (spec §2.8, CR-01…CR-19, §7.1 item 9) -----

    #[test]
    fn rule1_cr18_upload_onto_a_directory_is_400() {
        for request in [ranged(0, 9, 10, None), full(None, Some(10))] {
            let plan = plan_upload(&request, &directory());
            let (reply, discard) = refused(plan);
            assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            assert_eq!(body(&reply), "destination is a directory\n");
            assert!(discard.is_nothing());
        }
    }

    #[test]
    fn rule2_a_full_upload_streams_to_a_temp_file_and_leaves_the_partial_alone() {
        let request = UploadRequest {
            limit: Some(1000),
            ..full(None, Some(10))
        };
        let state = with_partial(complete(3, hash(b"old")), 2, Some(hash(b"xyz")));
        assert_eq!(
            plan_upload(&request, &state),
            UploadPlan::WriteFull {
                max_len: Some(1000)
            }
        );
        assert_eq!(
            plan_upload(&full(None, None), &absent()),
            UploadPlan::WriteFull { max_len: None }
        );
    }

    #[test]
    fn d3_full_upload_with_the_wrong_hash_is_400_and_keeps_the_old_file() {
        let declared = hash(b"declared");
        let actual = hash(b"actual");
        match finish_full(&full(Some(declared), Some(6)), actual, 6) {
            Finish::Refuse { reply, discard } => {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST);
                assert_eq!(
                    body(&reply),
                    format!("sha256 mismatch: expected {declared} got {actual}\n")
                );
                assert!(discard.is_nothing(), "only the temp file goes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_upload_with_matching_or_no_hash_is_published() {
        let sha = hash(b"content");
        assert_eq!(
            finish_full(&full(Some(sha), Some(7)), sha, 7),
            Finish::Publish { sha256: sha }
        );
        assert_eq!(
            finish_full(&full(None, None), sha, 7),
            Finish::Publish { sha256: sha }
        );
        let ok = upload_ok(PATH);
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(body(&ok), "{\"local_path\":\"/models/m/w.bin\"}\n");
    }

    #[test]
    fn d2_full_upload_over_the_limit_while_streaming_is_413() {
        let request = UploadRequest {
            limit: Some(5),
            ..full(None, None)
        };
        match finish_full(&request, hash(b"123456"), 6) {
            Finish::Refuse { reply, .. } => assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE),
            other => panic!("{other:?}"),
        }
        assert_eq!(too_large(5).status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn full_upload_shorter_than_its_content_length_is_400() {
        match finish_full(&full(None, Some(10)), hash(b"1234"), 4) {
            Finish::Refuse { reply, .. } => {
                assert_eq!(body(&reply), "short body: got 4 expected 10\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plan_checks_limits_of_requests_built_by_hand() {
        let request = UploadRequest {
            limit: Some(50),
            ..ranged(0, 9, 100, None)
        };
        let (reply, _) = refused(plan_upload(&request, &absent()));
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn cr01_a_single_chunk_onto_nothing_completes() {
        let sha = hash(&[1; 100]);
        let request = ranged(0, 99, 100, Some(sha));
        assert_eq!(
            plan_upload(&request, &absent()),
            UploadPlan::Append {
                discard: Discard::NOTHING,
                offset: 0,
                len: 100,
                write_target: Some(sha),
                write_total: Some(100),
                completes: true
            }
        );
        assert_eq!(after_append(&request, 100), AppendOutcome::Complete);
        assert_eq!(finish_range(&request, sha), Finish::Publish { sha256: sha });
    }

    #[test]
    fn cr02_an_incomplete_chunk_is_308_with_range_and_size_and_no_location() {
        let request = ranged(0, 49, 100, Some(hash(&[1; 100])));
        let plan = plan_upload(&request, &absent());
        assert!(matches!(
            plan,
            UploadPlan::Append {
                completes: false,
                len: 50,
                ..
            }
        ));
        let AppendOutcome::Incomplete { reply } = after_append(&request, 50) else {
            panic!("expected 308");
        };
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&reply, &RANGE), Some("bytes=0-49"));
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("50"));
        assert_eq!(header(&reply, &LOCATION), None);
        assert!(reply.body.is_empty());
    }

    #[test]
    fn cr03_the_next_chunk_appends_and_the_final_hash_is_checked() {
        let sha = hash(&[1; 100]);
        let request = ranged(50, 99, 100, Some(sha));
        assert_eq!(
            plan_upload(&request, &partial(50, Some(sha))),
            UploadPlan::Append {
                discard: Discard::NOTHING,
                offset: 50,
                len: 50,
                write_target: Some(sha),
                write_total: Some(100),
                completes: true
            }
        );
        assert_eq!(after_append(&request, 100), AppendOutcome::Complete);
        assert_eq!(finish_range(&request, sha), Finish::Publish { sha256: sha });
    }

    /// Spec §7.1 item 9: a wrong hash on the only chunk is 400, and the partial goes (LocalAI).
    #[test]
    fn range_upload_with_the_wrong_final_hash_is_400_and_discarded() {
        let declared = hash(b"declared");
        let actual = hash(b"actual");
        match finish_range(&ranged(0, 5, 6, Some(declared)), actual) {
            Finish::Refuse { reply, discard } => {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST);
                assert_eq!(
                    body(&reply),
                    format!("sha256 mismatch: expected {declared} got {actual}\n")
                );
                assert_eq!(discard, Discard::IN_PROGRESS);
            }
            other => panic!("{other:?}"),
        }
    }

    /// CR-04 and spec §7.1 item 9 (skip ahead after 50 bytes).
    #[test]
    fn cr04_skipping_ahead_is_416_and_changes_nothing() {
        let sha = hash(&[1; 100]);
        let plan = plan_upload(&ranged(60, 99, 100, Some(sha)), &partial(50, Some(sha)));
        let (reply, discard) = refused(plan);
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&reply, &CONTENT_RANGE), Some("bytes */100"));
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("50"));
        assert_eq!(
            body(&reply),
            "Content-Range start 60 does not match current file size 50\n"
        );
        assert!(discard.is_nothing());
        let (reply, _) = refused(plan_upload(&ranged(10, 19, 100, None), &absent()));
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("0"));
    }

    #[test]
    fn cr13_a_hash_change_between_chunks_is_409_and_discards_the_partial() {
        let old = hash(b"old");
        let new = hash(b"new");
        let plan = plan_upload(&ranged(50, 99, 100, Some(new)), &partial(50, Some(old)));
        let (reply, discard) = refused(plan);
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert_eq!(
            body(&reply),
            format!(
                "X-Content-SHA256 mismatch with in-progress upload (was {old}, now {new}); restart from byte 0\n"
            )
        );
        assert_eq!(discard, Discard::IN_PROGRESS);
    }

    #[test]
    fn continuing_a_targeted_partial_without_a_hash_is_409_and_keeps_it() {
        let target = hash(b"target");
        let plan = plan_upload(&ranged(50, 99, 100, None), &partial(50, Some(target)));
        let (reply, discard) = refused(plan);
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(body(&reply).contains("X-Content-SHA256 required"));
        assert!(discard.is_nothing());
    }

    #[test]
    fn cr16_start_zero_over_a_complete_file_with_another_hash_starts_a_new_partial() {
        let old = hash(&[1; 10]);
        let new = hash(&[2; 10]);
        let plan = plan_upload(&ranged(0, 9, 10, Some(new)), &complete(10, old));
        assert_eq!(
            plan,
            UploadPlan::Append {
                discard: Discard::NOTHING,
                offset: 0,
                len: 10,
                write_target: Some(new),
                write_total: Some(10),
                completes: true
            }
        );
    }

    #[test]
    fn cr17_start_zero_over_a_partial_with_the_same_target_is_416_at_its_size() {
        let sha = hash(&[3; 200]);
        let upper_case_declared =
            parse_sha256_header(sha.to_hex().to_uppercase().as_bytes()).unwrap();
        let plan = plan_upload(
            &ranged(0, 199, 200, Some(upper_case_declared)),
            &partial(60, Some(sha)),
        );
        let (reply, discard) = refused(plan);
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&reply, &X_FILE_SIZE), Some("60"));
        assert!(discard.is_nothing());
    }

    #[test]
    fn start_zero_over_a_partial_with_another_or_no_hash_restarts_it() {
        let old = hash(b"old");
        for declared in [Some(hash(b"new")), None] {
            let plan = plan_upload(&ranged(0, 9, 100, declared), &partial(60, Some(old)));
            assert_eq!(
                plan,
                UploadPlan::Append {
                    discard: Discard::IN_PROGRESS,
                    offset: 0,
                    len: 10,
                    write_target: declared,
                    write_total: Some(100),
                    completes: false
                }
            );
        }
    }

    #[test]
    fn start_zero_over_a_partial_holding_every_byte_restarts_instead_of_looping_on_416() {
        // A crash between the last append and the publish leaves a full-size partial. The
        // client resumes only below the full size, so a 416 here would repeat forever.
        let sha = hash(&[7; 100]);
        let plan = plan_upload(&ranged(0, 99, 100, Some(sha)), &partial(100, Some(sha)));
        assert_eq!(
            plan,
            UploadPlan::Append {
                discard: Discard::IN_PROGRESS,
                offset: 0,
                len: 100,
                write_target: Some(sha),
                write_total: Some(100),
                completes: true
            }
        );
    }

    #[test]
    fn cr19_d9_start_zero_over_the_same_complete_file_is_200_without_writing() {
        let sha = hash(&[4; 100]);
        let plan = plan_upload(&ranged(0, 99, 100, Some(sha)), &complete(100, sha));
        assert_eq!(
            plan,
            UploadPlan::AlreadyComplete {
                discard: Discard::NOTHING
            }
        );
        // Any chunk of the same file, and a partial of it, end the same way.
        let state = with_partial(complete(100, sha), 40, Some(sha));
        let plan = plan_upload(&ranged(40, 99, 100, Some(sha)), &state);
        assert_eq!(
            plan,
            UploadPlan::AlreadyComplete {
                discard: Discard::IN_PROGRESS
            }
        );
    }

    #[test]
    fn d9_needs_a_trusted_hash_of_the_complete_file() {
        let sha = hash(&[4; 100]);
        let mut state = complete(100, sha);
        state.sidecar.as_mut().unwrap().mtime_ns = 0;
        assert_eq!(
            plan_upload(&ranged(0, 99, 100, Some(sha)), &state),
            UploadPlan::NeedHash
        );
        state.sidecar.as_mut().unwrap().mtime_ns = 10;
        assert_eq!(
            plan_upload(&ranged(0, 99, 100, Some(sha)), &state),
            UploadPlan::AlreadyComplete {
                discard: Discard::NOTHING
            }
        );
    }

    #[test]
    fn d9_does_not_apply_to_another_size_or_over_another_upload_in_progress() {
        let sha = hash(&[4; 100]);
        let plan = plan_upload(&ranged(0, 49, 101, Some(sha)), &complete(100, sha));
        assert!(matches!(plan, UploadPlan::Append { offset: 0, .. }));
        let state = with_partial(complete(100, sha), 40, Some(hash(b"other")));
        let plan = plan_upload(&ranged(0, 99, 100, Some(sha)), &state);
        assert!(matches!(
            plan,
            UploadPlan::Append {
                discard: Discard::IN_PROGRESS,
                offset: 0,
                ..
            }
        ));
        // Without a declared hash nothing is known: the upload proceeds.
        let plan = plan_upload(&ranged(0, 99, 100, None), &complete(100, sha));
        assert!(matches!(plan, UploadPlan::Append { .. }));
    }

    #[test]
    fn rule4_a_range_upload_without_a_hash_keeps_a_partial_without_target() {
        let plan = plan_upload(&ranged(0, 9, 20, None), &absent());
        assert!(matches!(
            plan,
            UploadPlan::Append {
                write_target: None,
                ..
            }
        ));
        let plan = plan_upload(&ranged(10, 19, 20, None), &partial(10, None));
        assert_eq!(
            plan,
            UploadPlan::Append {
                discard: Discard::NOTHING,
                offset: 10,
                len: 10,
                write_target: None,
                write_total: Some(20),
                completes: true
            }
        );
        let request = ranged(10, 19, 20, None);
        assert_eq!(
            finish_range(&request, hash(b"any")),
            Finish::Publish {
                sha256: hash(b"any")
            }
        );
    }

    #[test]
    fn a_hash_declared_later_becomes_the_target() {
        let sha = hash(b"whole");
        let plan = plan_upload(&ranged(10, 19, 20, Some(sha)), &partial(10, None));
        assert!(
            matches!(plan, UploadPlan::Append { write_target: Some(t), discard: Discard::NOTHING, .. } if t == sha)
        );
    }

    #[test]
    fn a_leftover_target_without_partial_is_discarded_by_a_new_upload() {
        let state = FileState {
            target: Some(hash(b"stale").to_hex().into_bytes()),
            ..absent()
        };
        let plan = plan_upload(&ranged(0, 9, 20, None), &state);
        assert!(matches!(
            plan,
            UploadPlan::Append {
                discard: Discard {
                    partial: false,
                    target: true
                },
                ..
            }
        ));
        // A leftover target does not make a 409 either: the offset decides.
        let (reply, _) = refused(plan_upload(&ranged(10, 19, 20, Some(hash(b"x"))), &state));
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn an_unreadable_target_is_replaced_or_discarded() {
        let state = FileState {
            target: Some(b"garbage".to_vec()),
            ..partial(10, None)
        };
        let plan = plan_upload(&ranged(10, 19, 20, None), &state);
        assert!(matches!(
            plan,
            UploadPlan::Append {
                discard: Discard {
                    partial: false,
                    target: true
                },
                offset: 10,
                ..
            }
        ));
        let sha = hash(b"whole");
        let plan = plan_upload(&ranged(10, 19, 20, Some(sha)), &state);
        assert!(matches!(
            plan,
            UploadPlan::Append {
                discard: Discard::NOTHING,
                write_target: Some(_),
                offset: 10,
                ..
            }
        ));
    }

    #[test]
    fn d18_a_chunk_with_another_total_is_409_and_discards_the_partial() {
        // Without X-Content-SHA256, `bytes 0-4/10` then `bytes 5-11/12` used to publish a mix
        // of two files (AAAAABBBBBBB).
        let state = with_total(partial(5, None), 10);
        let (reply, discard) = refused(plan_upload(&ranged(5, 11, 12, None), &state));
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(body(&reply).contains("was 10, now 12"), "{}", body(&reply));
        assert!(
            discard.partial,
            "the partial of the other file is discarded"
        );
        // With a hash too: the total decides even when the hashes agree.
        let sha = hash(b"whole");
        let state = with_total(partial(5, Some(sha)), 10);
        let (reply, discard) = refused(plan_upload(&ranged(5, 11, 12, Some(sha)), &state));
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert_eq!(discard, Discard::IN_PROGRESS);
    }

    #[test]
    fn d18_the_same_total_continues_and_records_nothing_new() {
        let state = with_total(partial(5, None), 10);
        assert_eq!(
            plan_upload(&ranged(5, 9, 10, None), &state),
            UploadPlan::Append {
                discard: Discard::NOTHING,
                offset: 5,
                len: 5,
                write_target: None,
                write_total: None,
                completes: true
            }
        );
    }

    #[test]
    fn d18_a_fresh_partial_records_its_total_and_a_legacy_one_adopts_the_next() {
        assert!(matches!(
            plan_upload(&ranged(0, 4, 10, None), &absent()),
            UploadPlan::Append {
                write_total: Some(10),
                ..
            }
        ));
        // A partial from before D18 (no total recorded) takes the total of the next chunk.
        assert!(matches!(
            plan_upload(&ranged(5, 9, 12, None), &partial(5, None)),
            UploadPlan::Append {
                offset: 5,
                write_total: Some(12),
                ..
            }
        ));
        // A leftover total sidecar without a partial means nothing.
        let leftover = with_total(absent(), 3);
        assert_eq!(leftover.partial_total(), None);
        assert!(matches!(
            plan_upload(&ranged(0, 4, 10, None), &leftover),
            UploadPlan::Append {
                write_total: Some(10),
                ..
            }
        ));
    }

    #[test]
    fn d18_a_restart_with_the_same_hash_but_another_total_starts_over() {
        let sha = hash(b"whole");
        let state = with_total(partial(5, Some(sha)), 10);
        // Same total: the partial is kept and 416 says where to resume.
        let (reply, _) = refused(plan_upload(&ranged(0, 9, 10, Some(sha)), &state));
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
        // Another total: the partial cannot be this upload's; it restarts.
        assert!(matches!(
            plan_upload(&ranged(0, 11, 12, Some(sha)), &state),
            UploadPlan::Append {
                discard: Discard::IN_PROGRESS,
                offset: 0,
                write_total: Some(12),
                ..
            }
        ));
    }

    #[test]
    fn a_full_disk_discards_the_partial_a_file_size_limit_keeps_it() {
        assert_eq!(after_append_failed(NoRoom::DiskFull), Discard::IN_PROGRESS);
        assert!(after_append_failed(NoRoom::FileTooLarge).is_nothing());
    }

    #[test]
    fn short_body_keeps_the_bytes_and_says_how_many_arrived() {
        let reply = short_body(3, 10);
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(body(&reply), "short body: got 3 expected 10\n");
    }

    // ----- Properties (security.md §6.2 FZ-3, FZ-4) -----

    fn arbitrary_state() -> impl Strategy<Value = FileState> {
        let hashes = prop::sample::select(vec![hash(b"a"), hash(b"b"), hash(b"c")]);
        let entry = prop_oneof![
            Just(Entry::Missing),
            Just(Entry::Directory),
            (0_u64..8, -2_i128..3).prop_map(|(size, mtime_ns)| Entry::File { size, mtime_ns }),
        ];
        let sidecar =
            prop::option::of(
                (hashes.clone(), -2_i128..3).prop_map(|(h, mtime_ns)| Sidecar {
                    content: h.to_hex().into_bytes(),
                    mtime_ns,
                }),
            );
        let target = prop::option::of(prop_oneof![
            hashes.prop_map(|h| h.to_hex().into_bytes()),
            Just(b"junk".to_vec()),
        ]);
        let total = prop::option::of(prop_oneof![
            (1_u64..9).prop_map(|t| t.to_string().into_bytes()),
            Just(b"junk".to_vec()),
        ]);
        (entry, sidecar, prop::option::of(0_u64..8), target, total).prop_map(
            |(entry, sidecar, partial, target, total)| FileState {
                entry,
                sidecar,
                partial,
                target,
                total,
            },
        )
    }

    fn arbitrary_request() -> impl Strategy<Value = UploadRequest> {
        let hashes = prop::sample::select(vec![hash(b"a"), hash(b"b"), hash(b"c")]);
        let range =
            (0_u64..8, 0_u64..8, 1_u64..9).prop_filter_map("start <= end < total", |(s, e, t)| {
                (s <= e && e < t).then_some(ContentRange {
                    start: s,
                    end: e,
                    total: t,
                })
            });
        (
            prop::option::of(range),
            prop::option::of(hashes),
            prop::option::of(Just(8_u64)),
        )
            .prop_map(|(range, expected, limit)| UploadRequest {
                range,
                expected,
                content_length: range.map(|r| r.len()),
                limit,
            })
    }

    #[test]
    fn a_failed_body_answers_413_408_or_400_with_localai_texts() {
        let mut request = full(None, Some(10));
        request.limit = Some(5);
        let min = MinRate {
            bytes_per_second: 1024,
            window: std::time::Duration::from_secs(30),
        };
        let cases = [
            (BodyFailure::TooLarge, 413, "the upload limit is 5 bytes"),
            (
                BodyFailure::Stalled,
                408,
                "request body stalled; resume the upload",
            ),
            (
                BodyFailure::TooSlow(min),
                408,
                "under 1024 bytes/s over 30 s",
            ),
            (BodyFailure::Broken, 400, "request body ended early"),
        ];
        for (failure, status, text) in cases {
            let reply = failure.reply(&request);
            assert_eq!(reply.status.as_u16(), status, "{failure:?}");
            assert!(body(&reply).contains(text), "{failure:?}: {}", body(&reply));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// FZ-3: parsing never panics, and whatever is accepted satisfies start <= end < total.
        #[test]
        fn content_range_parser_never_panics(value in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(range) = parse_content_range(&value) {
                prop_assert!(range.start <= range.end && range.end < range.total);
                prop_assert_eq!(range.len(), range.end - range.start + 1);
            }
        }

        /// FZ-3: near-miss inputs built from the grammar never panic either.
        #[test]
        fn content_range_parser_survives_near_misses(
            parts in prop::collection::vec(prop_oneof![
                Just("bytes ".to_owned()), Just("-".to_owned()), Just("/".to_owned()),
                Just("*".to_owned()), Just(" ".to_owned()), Just("+".to_owned()),
                any::<u64>().prop_map(|n| n.to_string()), any::<i64>().prop_map(|n| n.to_string()),
            ], 0..8)
        ) {
            let value = parts.concat();
            if let Ok(range) = parse_content_range(value.as_bytes()) {
                prop_assert!(range.start <= range.end && range.end < range.total);
            }
        }

        /// Every valid range up to 2^63-1 round-trips through its text form.
        #[test]
        fn content_range_round_trips(a in 0_u64..=i64::MAX as u64, b in 0_u64..=i64::MAX as u64, c in 0_u64..=i64::MAX as u64) {
            let mut v = [a, b, c];
            v.sort_unstable();
            prop_assume!(v[1] < v[2]);
            let text = format!("bytes {}-{}/{}", v[0], v[1], v[2]);
            let range = parse_content_range(text.as_bytes()).unwrap();
            prop_assert_eq!((range.start, range.end, range.total), (v[0], v[1], v[2]));
        }

        /// FZ-4: the hash parser never panics, and what it accepts is the trimmed input in hex.
        #[test]
        fn hash_header_parser_never_panics(value in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(sha) = parse_sha256_header(&value) {
                let trimmed = String::from_utf8(trim_ascii(&value).to_vec()).unwrap();
                prop_assert_eq!(sha.to_hex(), trimmed.to_lowercase());
            }
        }

        /// Hex encoding round-trips, in either case.
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            let sha = Sha256(bytes);
            prop_assert_eq!(Sha256::from_hex(sha.to_hex().as_bytes()), Some(sha));
            prop_assert_eq!(Sha256::from_hex(sha.to_hex().to_uppercase().as_bytes()), Some(sha));
        }

        /// A trusted sidecar is always the lowercase hex of the hash it yields.
        #[test]
        fn trusted_sidecar_never_panics(content in prop::collection::vec(any::<u8>(), 0..80), s in any::<i128>(), f in any::<i128>()) {
            if let Some(sha) = trusted_sidecar(&content, s, f) {
                prop_assert!(s >= f);
                let hex = sha.to_hex();
                prop_assert_eq!(&content[..64], hex.as_bytes());
            }
        }

        /// Reading upload headers never panics, whatever bytes they hold.
        #[test]
        fn request_headers_never_panic(
            range in prop::collection::vec(any::<u8>(), 0..40),
            sha in prop::collection::vec(any::<u8>(), 0..70),
            length in prop::collection::vec(any::<u8>(), 0..25),
            limit in prop::option::of(any::<u64>()),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in [(CONTENT_RANGE, range), (X_CONTENT_SHA256, sha), (CONTENT_LENGTH, length)] {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.insert(name, value);
                }
            }
            match UploadRequest::parse(&map, limit) {
                Ok(request) => prop_assert!(request.check().is_ok()),
                Err(error) => prop_assert!(error.status().is_client_error()),
            }
        }

        /// plan_upload never loses acknowledged bytes: a partial is discarded only by a request
        /// that restarts from byte 0, declares another hash or another total (409), or finds the
        /// file complete.
        #[test]
        fn plans_discard_a_partial_only_when_the_client_restarts(req in arbitrary_request(), state in arbitrary_state()) {
            let plan = plan_upload(&req, &state);
            match &plan {
                UploadPlan::Refuse { reply, discard } => {
                    if discard.partial {
                        prop_assert_eq!(reply.status, StatusCode::CONFLICT);
                        let other_hash = req.expected.is_some() && req.expected != state.target_hash();
                        let other_total = state.partial_total().is_some_and(|t| Some(t) != req.range.map(|r| r.total));
                        prop_assert!(other_hash || other_total);
                    }
                    if reply.status == StatusCode::RANGE_NOT_SATISFIABLE {
                        prop_assert!(discard.is_nothing(), "INV-2: 416 changes nothing");
                    }
                }
                UploadPlan::Append { discard, offset, len, write_total, .. } => {
                    let range = req.range.unwrap();
                    prop_assert_eq!((*offset, *len), (range.start, range.len()));
                    if discard.partial {
                        prop_assert_eq!(*offset, 0);
                    } else {
                        prop_assert_eq!(*offset, state.partial.unwrap_or(0));
                    }
                    // D18: a partial is only ever continued by a chunk of its own total, and
                    // afterwards records the total it is continued with.
                    if !discard.partial && state.partial.is_some() {
                        prop_assert!(state.partial_total().is_none_or(|t| t == range.total));
                    }
                    prop_assert!(write_total.is_none_or(|t| t == range.total));
                    let recorded = if discard.partial || state.partial.is_none() { None } else { state.partial_total() };
                    prop_assert_eq!(write_total.or(recorded), Some(range.total));
                }
                UploadPlan::AlreadyComplete { .. } => {
                    prop_assert!(req.expected.is_some());
                    prop_assert_eq!(req.expected, state.complete_hash());
                }
                UploadPlan::NeedHash => {
                    prop_assert!(matches!(state.entry, Entry::File { .. }), "NeedHash without a file");
                    prop_assert!(state.complete_hash().is_none());
                }
                UploadPlan::WriteFull { .. } => prop_assert!(req.range.is_none()),
            }
            if state.entry == Entry::Directory {
                prop_assert!(matches!(plan, UploadPlan::Refuse { .. }), "a directory is refused");
            }
        }
    }

    #[test]
    fn a_trickling_body_is_too_slow_after_one_window() {
        let min = MinRate {
            bytes_per_second: 1000,
            window: Duration::from_secs(2),
        };
        let ms = Duration::from_millis;
        let mut check = RateCheck::new(min, ms(0));
        // One byte every 200 ms: fine inside the first window, too slow when it ends.
        for i in 1..10 {
            assert_eq!(check.handle_progress(ms(i * 200), i), RateVerdict::KeepsUp);
        }
        assert_eq!(check.handle_progress(ms(2000), 10), RateVerdict::TooSlow);
        // A fast body passes window after window.
        let mut check = RateCheck::new(min, ms(0));
        for i in 1..=10 {
            assert_eq!(
                check.handle_progress(ms(i * 1000), i * 1000),
                RateVerdict::KeepsUp
            );
        }
        // Zero disables.
        let off = MinRate {
            bytes_per_second: 0,
            ..min
        };
        assert_eq!(
            RateCheck::new(off, ms(0)).handle_progress(ms(100_000), 0),
            RateVerdict::KeepsUp
        );
    }
}
