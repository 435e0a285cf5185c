//! Request paths, downloads, listings and temp files: pure planners and answer classifiers.

use http::HeaderMap;
use http::header::CONTENT_RANGE;
use serde::Deserialize;

use super::{TransferError, header_text, message};
use crate::upload::{Sha256, X_CONTENT_SHA256, X_FILE_SIZE, X_LOCAL_PATH, X_TARGET_SHA256};

/// The path of `POST /v1/files/temp`.
pub const TEMP_PATH: &str = "/v1/files/temp";

/// `/v1/files/<key>` with the key percent-encoded (every byte but `A-Z a-z 0-9 - . _ ~ /`),
/// so `%`, `?`, `#` and spaces reach the worker as part of the key (LocalAI's client sends keys
/// unescaped, §8.13).
///
/// # Errors
/// [`TransferError::BadKey`] for an empty key, one starting with `/`, or one holding a control
/// character.
pub fn files_path(key: &str) -> Result<String, TransferError> {
    Ok(format!("/v1/files/{}", encode_key(key)?))
}

/// `/v1/files-list/<prefix>` (the prefix encoded like a key, a trailing `/` allowed).
///
/// # Errors
/// [`TransferError::BadKey`] as for [`files_path`].
pub fn list_path(prefix: &str) -> Result<String, TransferError> {
    Ok(format!("/v1/files-list/{}", encode_key(prefix)?))
}

fn encode_key(key: &str) -> Result<String, TransferError> {
    if key.is_empty() || key.starts_with('/') || key.chars().any(char::is_control) {
        return Err(TransferError::BadKey {
            key: key.escape_debug().to_string(),
        });
    }
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(out)
}

/// Classifies the common refusals of every route: 401/403, 400, 404, 5xx, other.
fn refusal(status: u16, body: &[u8]) -> TransferError {
    let message = message(body);
    match status {
        401 | 403 => TransferError::Unauthorized { status },
        400 => TransferError::BadRequest { message },
        404 => TransferError::NotFound { message },
        413 => TransferError::TooLarge { message },
        507 => TransferError::NoRoom { message },
        500..=599 => TransferError::Transient(format!("the worker answered {status}: {message}")),
        _ => TransferError::Refused { status, message },
    }
}

/// Decodes the `{"local_path": …}` of a 200 (`PUT`, `POST /v1/files/temp`).
///
/// # Errors
/// The refusal for a status other than 200; [`TransferError::BadAnswer`] for a body without a
/// non-empty `local_path`.
pub fn parse_local_path(status: u16, body: &[u8]) -> Result<String, TransferError> {
    #[derive(Deserialize)]
    struct LocalPath {
        local_path: String,
    }
    if status != 200 {
        return Err(refusal(status, body));
    }
    match serde_json::from_slice::<LocalPath>(body) {
        Ok(LocalPath { local_path }) if !local_path.is_empty() => Ok(local_path),
        Ok(_) => Err(TransferError::BadAnswer("an empty local_path".to_owned())),
        Err(error) => Err(TransferError::BadAnswer(format!(
            "expected {{\"local_path\": …}}: {error}"
        ))),
    }
}

/// Decodes the `{"files": [...]}` of `GET /v1/files-list/<prefix>` (`null` is an empty list).
///
/// # Errors
/// The refusal for a status other than 200 (404: no such directory);
/// [`TransferError::BadAnswer`] for another body.
pub fn parse_list(status: u16, body: &[u8]) -> Result<Vec<String>, TransferError> {
    #[derive(Deserialize)]
    struct Files {
        files: Option<Vec<String>>,
    }
    if status != 200 {
        return Err(refusal(status, body));
    }
    serde_json::from_slice::<Files>(body)
        .map(|f| f.files.unwrap_or_default())
        .map_err(|e| TransferError::BadAnswer(format!("expected {{\"files\": [...]}}: {e}")))
}

/// What a `HEAD` says about a file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its size (`Content-Length`, else `X-File-Size`).
    pub size: u64,
    /// Its hash, when the worker announced one.
    pub sha256: Option<Sha256>,
    /// Its path on the worker, when given.
    pub local_path: Option<String>,
}

/// Reads the `HEAD` answer before a download.
///
/// # Errors
/// The refusal for a status other than 200; [`TransferError::Incomplete`] when the key holds
/// only an unfinished upload (`X-Target-SHA256` without `X-Content-SHA256`);
/// [`TransferError::BadAnswer`] without a size.
pub fn probe_download(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<RemoteFile, TransferError> {
    if status != 200 {
        return Err(refusal(status, body));
    }
    let sha256 =
        header_text(headers, &X_CONTENT_SHA256).and_then(|v| Sha256::from_hex(v.as_bytes()));
    if sha256.is_none() && header_text(headers, &X_TARGET_SHA256).is_some() {
        return Err(TransferError::Incomplete);
    }
    let size = header_text(headers, &http::header::CONTENT_LENGTH)
        .or_else(|| header_text(headers, &X_FILE_SIZE))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| TransferError::BadAnswer("a HEAD answer without a size".to_owned()))?;
    Ok(RemoteFile {
        size,
        sha256,
        local_path: header_text(headers, &X_LOCAL_PATH).map(str::to_owned),
    })
}

/// A local partial download left by an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPartial {
    /// Its size.
    pub size: u64,
    /// The worker's hash recorded when it was begun.
    pub sha256: Option<Sha256>,
}

/// Where a download starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadStart {
    /// Discard any partial and fetch everything.
    Fresh,
    /// Keep the partial and fetch from `from` (`Range: bytes=<from>-`).
    Resume {
        /// The partial's size.
        from: u64,
    },
    /// The partial already holds every byte: verify it and finish.
    Verify,
}

/// Decides where a download starts: a partial is resumed only when it was begun for the same
/// content (both hashes known and equal) and is not longer than the file.
#[must_use]
pub fn plan_download(remote: &RemoteFile, partial: Option<LocalPartial>) -> DownloadStart {
    match (partial, remote.sha256) {
        (Some(partial), Some(hash)) if partial.sha256 == Some(hash) => {
            if partial.size == remote.size {
                DownloadStart::Verify
            } else if partial.size > 0 && partial.size < remote.size {
                DownloadStart::Resume { from: partial.size }
            } else {
                DownloadStart::Fresh
            }
        }
        _ => DownloadStart::Fresh,
    }
}

/// The `Range` header of a download starting at `from` (none from byte 0).
#[must_use]
pub fn download_range(from: u64) -> Option<String> {
    (from > 0).then(|| format!("bytes={from}-"))
}

/// How to write the body of a `GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStart {
    /// The body is the file from byte `from`: keep the first `from` bytes of the partial and
    /// append (0: truncate it first — a server without `Range` support answers 200).
    WriteFrom {
        /// Where the body starts in the file.
        from: u64,
    },
    /// The range could not be served (the file changed): discard the partial and start over.
    StartOver,
}

/// Classifies the answer to a `GET` sent with [`download_range`]`(from)`.
///
/// # Errors
/// The refusal for other statuses (5xx are [`TransferError::Transient`]);
/// [`TransferError::BadAnswer`] for a 206 that does not start at `from`.
pub fn classify_get(
    from: u64,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<GetStart, TransferError> {
    match status {
        200 => Ok(GetStart::WriteFrom { from: 0 }),
        206 => {
            let start = headers
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("bytes "))
                .and_then(|v| v.split_once('-'))
                .and_then(|(start, _)| start.trim().parse::<u64>().ok());
            match start {
                Some(start) if start == from => Ok(GetStart::WriteFrom { from }),
                _ => Err(TransferError::BadAnswer(format!(
                    "a 206 that does not start at byte {from}"
                ))),
            }
        }
        416 => Ok(GetStart::StartOver),
        _ => Err(refusal(status, body)),
    }
}

/// Checks a finished download against the worker's hash (nothing to check without one).
///
/// # Errors
/// [`TransferError::HashMismatch`].
pub fn verify_download(expected: Option<Sha256>, actual: Sha256) -> Result<(), TransferError> {
    match expected {
        Some(expected) if expected != actual => {
            Err(TransferError::HashMismatch { expected, actual })
        }
        _ => Ok(()),
    }
}
