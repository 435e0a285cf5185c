//! `content_range` and `sha256_header`: the upload headers (security.md §4.7, FZ-3, FZ-4).
//! Input: the raw header value.

use http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use http::{HeaderMap, HeaderValue, StatusCode};
use nodegate_core::upload::{
    ContentRange, Entry, FileState, HashHeaderError, Sha256, UploadRequest, UploadRequestError,
    X_CONTENT_SHA256, parse_content_range, parse_sha256_header, trusted_sidecar,
};

use crate::util::assert_printable;

/// Oracle of the `content_range` target. Panics when:
///
/// - an accepted value breaks `0 ≤ start ≤ end < total ≤ i64::MAX`, or `len`/`completes`
///   overflow or lie;
/// - it does not round-trip through `bytes <start>-<end>/<total>`;
/// - acceptance or the numbers differ from a reference written with `str::parse::<i64>` (Go's
///   `strconv.ParseInt` accepts the same signs and digits) — CR-05…CR-11;
/// - an error message carries a control character (they quote the input, Go-style);
/// - `UploadRequest::parse` reads the header differently, or its span and limit checks
///   (CR-12, HR-M04) do not follow the parsed range.
pub fn content_range(data: &[u8]) {
    let parsed = parse_content_range(data);
    assert_eq!(
        parsed.as_ref().ok().copied(),
        reference_content_range(data),
        "parse_content_range({:?})",
        String::from_utf8_lossy(data)
    );
    match &parsed {
        Ok(range) => check_range(*range),
        Err(error) => assert_printable("Content-Range error", &error.to_string()),
    }

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_RANGE, value);
    let request = UploadRequest::parse(&headers, None);
    let blank = data.trim_ascii().is_empty();
    match (&parsed, &request) {
        (_, Ok(request)) if blank => assert_eq!(request.range, None, "blank = full upload"),
        (Ok(range), Ok(request)) => assert_eq!(request.range, Some(*range)),
        (Err(error), Err(UploadRequestError::ContentRange(got))) => assert_eq!(error, got),
        (parsed, request) => panic!("parse_content_range {parsed:?} but UploadRequest {request:?}"),
    }
    let Ok(range) = parsed else {
        return;
    };
    // CR-12: Content-Length must equal the span; HR-M04/M06: the total against the limit.
    for (length, limit, expected) in [
        (range.len(), Some(range.total), None),
        (range.len(), None, None),
        (range.len() + 1, None, Some(StatusCode::BAD_REQUEST)),
        (range.len() - 1, None, Some(StatusCode::BAD_REQUEST)),
        (
            range.len(),
            Some(range.total - 1),
            Some(StatusCode::PAYLOAD_TOO_LARGE),
        ),
    ] {
        let mut headers = headers.clone();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        let got = UploadRequest::parse(&headers, limit)
            .map_err(|e| e.status())
            .err();
        assert_eq!(
            got, expected,
            "Content-Length {length}, limit {limit:?}, {range:?}"
        );
    }
}

fn check_range(range: ContentRange) {
    let ContentRange { start, end, total } = range;
    assert!(start <= end && end < total, "{range:?}");
    assert!(i64::try_from(total).is_ok(), "{range:?}");
    assert_eq!(range.len(), end - start + 1);
    assert_eq!(range.completes(), end + 1 == total);
    assert!(!range.is_empty());
    let text = format!("bytes {start}-{end}/{total}");
    assert_eq!(
        parse_content_range(text.as_bytes()),
        Ok(range),
        "round trip"
    );
}

/// LocalAI's reading, from its description (spec §2.8): `strings.TrimSpace`, the `bytes `
/// prefix, split at the first `/` and then the first `-`, each part trimmed and parsed as a
/// signed 64-bit decimal, then `0 <= start <= end < total`.
fn reference_content_range(value: &[u8]) -> Option<ContentRange> {
    let value = go_trim(value);
    let rest = value.strip_prefix(b"bytes ")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (range, total) = (&rest[..slash], &rest[slash + 1..]);
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (&range[..dash], &range[dash + 1..]);
    let number = |field: &[u8]| {
        std::str::from_utf8(go_trim(field))
            .ok()?
            .parse::<i64>()
            .ok()
    };
    let (start, end, total) = (number(start)?, number(end)?, number(total)?);
    (0 <= start && start <= end && end < total).then_some(ContentRange {
        start: start as u64,
        end: end as u64,
        total: total as u64,
    })
}

/// Go's `strings.TrimSpace` on ASCII input: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn go_trim(value: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Oracle of the `sha256_header` target. Panics when:
///
/// - `parse_sha256_header` accepts anything but exactly 64 hex digits of either case (after
///   trimming), or refuses those (CR-14, CR-15), or its error names the wrong length or position;
/// - an accepted hash does not print back as the lower-case input, or `from_hex` disagrees;
/// - D6: a sidecar is trusted when it is not exactly 64 lower-case hex (one `\n` allowed), or
///   when it is older than the file, or vouches for another hash;
/// - the target sidecar of a partial reads differently from the header;
/// - `UploadRequest::parse` reads the header differently.
pub fn sha256_header(data: &[u8]) {
    let trimmed = go_trim(data);
    let parsed = parse_sha256_header(data);
    let is_hex = trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit);
    match &parsed {
        Ok(hash) => {
            assert!(is_hex, "accepted {:?}", String::from_utf8_lossy(data));
            assert_eq!(hash.to_hex().as_bytes(), trimmed.to_ascii_lowercase());
            assert_eq!(Sha256::from_hex(hash.to_hex().as_bytes()), Some(*hash));
            assert_eq!(Sha256::from_hex(trimmed), Some(*hash));
        }
        Err(HashHeaderError::Empty) => assert!(trimmed.is_empty()),
        Err(HashHeaderError::WrongLength { len }) => {
            assert!(!trimmed.is_empty() && trimmed.len() != 64 && *len == trimmed.len());
        }
        Err(HashHeaderError::NotHex { position }) => {
            assert_eq!(trimmed.len(), 64);
            let first = trimmed.iter().position(|b| !b.is_ascii_hexdigit());
            assert_eq!(first, Some(*position));
        }
    }
    if let Err(error) = &parsed {
        assert_printable("hash error", &error.to_string());
    }

    // D6: trusted sidecars.
    let content = data.strip_suffix(b"\n").unwrap_or(data);
    let lower_hex = content.len() == 64
        && content
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    for (sidecar_mtime, file_mtime) in [(0, 0), (1, 0), (0, 1), (i128::MIN, i128::MAX)] {
        let trusted = trusted_sidecar(data, sidecar_mtime, file_mtime);
        let expected = (lower_hex && sidecar_mtime >= file_mtime)
            .then(|| Sha256::from_hex(content).expect("64 hex digits"));
        assert_eq!(
            trusted, expected,
            "trusted_sidecar at {sidecar_mtime} vs {file_mtime}"
        );
    }

    // The target sidecar is read only next to a partial, trimmed, either case.
    let state = |partial| FileState {
        entry: Entry::Missing,
        sidecar: None,
        partial,
        target: Some(data.to_vec()),
        total: None,
    };
    let expected_target = is_hex.then(|| Sha256::from_hex(trimmed).expect("64 hex digits"));
    assert_eq!(state(Some(3)).target_hash(), expected_target);
    assert_eq!(state(None).target_hash(), None);

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(X_CONTENT_SHA256, value);
    match (UploadRequest::parse(&headers, None), &parsed) {
        (Ok(request), _) if trimmed.is_empty() => assert_eq!(request.expected, None),
        (Ok(request), Ok(hash)) => assert_eq!(request.expected, Some(*hash)),
        (Err(UploadRequestError::Hash(got)), Err(error)) => assert_eq!(&got, error),
        (request, parsed) => panic!("parse_sha256_header {parsed:?} but UploadRequest {request:?}"),
    }
}
