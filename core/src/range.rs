//! `Range` on `GET /v1/files/{key}` (D5; LocalAI ignores it).
//!
//! One byte range is served as 206 with `Content-Range: bytes <first>-<last>/<size>`; a range that
//! starts past the end (or a suffix of zero bytes, or any range of an empty file) is 416 with
//! `Content-Range: bytes */<size>`. Everything else (no header, another unit, several ranges,
//! syntax errors, an `If-Range`) is answered with the whole file, which RFC 9110 §14.2 allows: a
//! server may ignore `Range`. The worker sends no validators (`ETag`, `Last-Modified`), so an
//! `If-Range` can never match, and the whole file is the right answer (RFC 9110 §13.1.5).

use http::StatusCode;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, HeaderName, HeaderValue, IF_RANGE, RANGE,
};

use crate::response::Reply;

/// How to answer a `GET` of a file of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end` ([`partial_headers`]). Invariant: `start <= end < size`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// 416 ([`unsatisfiable`]).
    Unsatisfiable,
}

impl RangeAnswer {
    /// 200, 206 or 416.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Full => StatusCode::OK,
            Self::Partial { .. } => StatusCode::PARTIAL_CONTENT,
            Self::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }
}

/// Resolves one `Range` value against a file of `size` bytes. Accepts a single `bytes=a-b`,
/// `bytes=a-` or `bytes=-n` (unit case-insensitive, optional whitespace and empty list elements
/// around it); a last position past the end is clamped, a suffix longer than the file is the
/// whole file. Several ranges or anything unparsable → [`RangeAnswer::Full`].
#[must_use]
pub fn resolve_range(header: Option<&HeaderValue>, size: u64) -> RangeAnswer {
    let Some(value) = header else {
        return RangeAnswer::Full;
    };
    let Some(spec) = single_spec(value.as_bytes()) else {
        return RangeAnswer::Full;
    };
    let Some((first, last)) = spec
        .iter()
        .position(|&b| b == b'-')
        .map(|at| spec.split_at(at))
    else {
        return RangeAnswer::Full;
    };
    let last = last.get(1..).unwrap_or_default();
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match digits(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: size - n.min(size),
                end: size - 1,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match digits(first) {
            None => RangeAnswer::Full,
            Some(start) if start >= size => RangeAnswer::Unsatisfiable,
            Some(start) => RangeAnswer::Partial {
                start,
                end: size - 1,
            },
        },
        // `a-b`.
        (false, false) => match (digits(first), digits(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// [`resolve_range`] for a request's headers: several `Range` fields, or any `If-Range` (no
/// validator is ever sent, so it cannot match), give [`RangeAnswer::Full`].
#[must_use]
pub fn resolve_request_range(headers: &HeaderMap, size: u64) -> RangeAnswer {
    if headers.contains_key(IF_RANGE) {
        return RangeAnswer::Full;
    }
    let mut values = headers.get_all(RANGE).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => resolve_range(Some(value), size),
        _ => RangeAnswer::Full,
    }
}

/// Headers of a 206 for bytes `start..=end` of a file of `size` bytes: `Content-Range` and
/// `Content-Length`.
#[must_use]
pub fn partial_headers(start: u64, end: u64, size: u64) -> [(HeaderName, HeaderValue); 2] {
    let length = end.saturating_sub(start).saturating_add(1);
    [
        (CONTENT_RANGE, ascii(format!("bytes {start}-{end}/{size}"))),
        (CONTENT_LENGTH, HeaderValue::from(length)),
    ]
}

/// 416 `range not satisfiable` with `Content-Range: bytes */<size>`.
#[must_use]
pub fn unsatisfiable(size: u64) -> Reply {
    Reply::error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
        .with_header(CONTENT_RANGE, ascii(format!("bytes */{size}")))
}

// ---------------------------------------------------------------------------------------------

/// The one non-empty range-spec of a `bytes=` value, or `None` for another unit, zero or several
/// specs.
fn single_spec(value: &[u8]) -> Option<&[u8]> {
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, specs) = value.split_at(eq);
    if !trim_ows(unit).eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = specs
        .get(1..)?
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty());
    match (specs.next(), specs.next()) {
        (Some(spec), None) => Some(spec),
        _ => None,
    }
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX` (a huge position is still past the
/// end, a huge suffix still the whole file).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0_u64, |n, &b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

fn ascii(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits, `bytes`, `-`, `*` and `/` are valid header bytes")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn resolve(value: &str, size: u64) -> RangeAnswer {
        resolve_range(Some(&HeaderValue::from_str(value).unwrap()), size)
    }

    fn part(start: u64, end: u64) -> RangeAnswer {
        RangeAnswer::Partial { start, end }
    }

    #[test]
    fn no_range_header_is_the_whole_file() {
        assert_eq!(resolve_range(None, 100), RangeAnswer::Full);
        assert_eq!(RangeAnswer::Full.status(), StatusCode::OK);
    }

    #[test]
    fn d5_single_ranges_are_206() {
        assert_eq!(resolve("bytes=0-9", 100), part(0, 9));
        assert_eq!(resolve("bytes=90-", 100), part(90, 99));
        assert_eq!(resolve("bytes=-10", 100), part(90, 99));
        assert_eq!(resolve("bytes=0-0", 1), part(0, 0));
        assert_eq!(part(0, 0).status(), StatusCode::PARTIAL_CONTENT);
    }

    #[test]
    fn ranges_past_the_end_are_clamped_and_long_suffixes_are_the_whole_file() {
        assert_eq!(resolve("bytes=50-1000", 100), part(50, 99));
        assert_eq!(resolve("bytes=-1000", 100), part(0, 99));
        assert_eq!(resolve("bytes=0-99999999999999999999999", 100), part(0, 99));
    }

    #[test]
    fn d5_ranges_starting_past_the_end_are_416() {
        assert_eq!(resolve("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve("bytes=100-200", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(
            resolve("bytes=99999999999999999999999-", 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(resolve("bytes=-0", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(
            RangeAnswer::Unsatisfiable.status(),
            StatusCode::RANGE_NOT_SATISFIABLE
        );
    }

    #[test]
    fn every_range_of_an_empty_file_is_416() {
        for value in ["bytes=0-", "bytes=0-0", "bytes=-5"] {
            assert_eq!(resolve(value, 0), RangeAnswer::Unsatisfiable, "{value}");
        }
    }

    #[test]
    fn unit_is_case_insensitive_and_empty_list_elements_are_skipped() {
        assert_eq!(resolve("BYTES=0-1", 10), part(0, 1));
        assert_eq!(resolve("bytes= 0-1 ,", 10), part(0, 1));
        assert_eq!(resolve("bytes=, 2-3", 10), part(2, 3));
    }

    #[test]
    fn several_ranges_or_bad_syntax_are_ignored() {
        for value in [
            "bytes=0-1,2-3",
            "bytes=0-1, -5",
            "items=0-1",
            "bytes 0-1",
            "bytes=",
            "bytes=-",
            "bytes=5-4",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0x10-",
            "bytes=--1",
        ] {
            assert_eq!(resolve(value, 100), RangeAnswer::Full, "{value}");
        }
    }

    #[test]
    fn request_headers_with_if_range_or_several_ranges_get_the_whole_file() {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, HeaderValue::from_static("bytes=0-9"));
        assert_eq!(resolve_request_range(&headers, 100), part(0, 9));
        headers.insert(IF_RANGE, HeaderValue::from_static("\"etag\""));
        assert_eq!(resolve_request_range(&headers, 100), RangeAnswer::Full);
        headers.remove(IF_RANGE);
        headers.append(RANGE, HeaderValue::from_static("bytes=10-19"));
        assert_eq!(resolve_request_range(&headers, 100), RangeAnswer::Full);
        assert_eq!(
            resolve_request_range(&HeaderMap::new(), 100),
            RangeAnswer::Full
        );
    }

    #[test]
    fn partial_and_unsatisfiable_headers() {
        let [(range_name, range), (length_name, length)] = partial_headers(90, 99, 100);
        assert_eq!(
            (range_name, range),
            (CONTENT_RANGE, HeaderValue::from_static("bytes 90-99/100"))
        );
        assert_eq!(
            (length_name, length),
            (CONTENT_LENGTH, HeaderValue::from(10_u64))
        );
        let reply = unsatisfiable(100);
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(reply.header(&CONTENT_RANGE).unwrap(), "bytes */100");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Resolving never panics, and a partial answer always lies inside the file.
        #[test]
        fn resolution_never_panics_and_stays_inside_the_file(
            value in prop::collection::vec(any::<u8>(), 0..40),
            size in prop_oneof![Just(0_u64), Just(1), 0_u64..200, Just(u64::MAX)],
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&value)
                && let RangeAnswer::Partial { start, end } = resolve_range(Some(&value), size)
            {
                prop_assert!(start <= end && end < size);
            }
        }

        /// Every well-formed single range resolves to the bytes RFC 9110 §14.1.2 names.
        #[test]
        fn well_formed_ranges_resolve_as_the_rfc_says(first in 0_u64..300, len in 0_u64..300, size in 0_u64..200) {
            let last = first + len;
            let expected = if first >= size {
                RangeAnswer::Unsatisfiable
            } else {
                part(first, last.min(size - 1))
            };
            prop_assert_eq!(resolve(&format!("bytes={first}-{last}"), size), expected);
        }
    }
}
