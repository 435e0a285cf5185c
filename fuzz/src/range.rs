//! `range`: `Range` on downloads (spec D5, RFC 9110 §14.1.2, §14.2). Input: the raw `Range`
//! value, resolved against files of several sizes.

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, StatusCode};
use nodegate_core::range::{
    RangeAnswer, partial_headers, resolve_range, resolve_request_range, unsatisfiable,
};

/// File sizes every value is resolved against: empty, tiny, ordinary, and the extremes.
const SIZES: &[u64] = &[0, 1, 2, 10, 100, 1 << 40, u64::MAX - 1, u64::MAX];

/// Oracle of the `range` target. Panics when:
///
/// - a 206 lies outside the file (`start ≤ end < size` broken) or its headers do not describe
///   exactly those bytes;
/// - the answer differs from a reference reading of RFC 9110 with the server's policy (one
///   `bytes` range-spec or the whole file; 416 only for a first position past the end, a zero
///   suffix, or any range of an empty file);
/// - a request with `If-Range` or with two `Range` fields gets anything but the whole file;
/// - a 416 does not carry `Content-Range: bytes */<size>`.
pub fn range(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    for &size in SIZES {
        let answer = resolve_range(Some(&value), size);
        assert_eq!(
            answer,
            reference(data, size),
            "Range {:?} on {size} bytes",
            String::from_utf8_lossy(data)
        );
        match answer {
            RangeAnswer::Partial { start, end } => {
                assert!(start <= end && end < size, "{answer:?} outside {size}");
                assert_eq!(answer.status(), StatusCode::PARTIAL_CONTENT);
                let [(range_name, range), (length_name, length)] =
                    partial_headers(start, end, size);
                assert_eq!(range_name, CONTENT_RANGE);
                assert_eq!(range, format!("bytes {start}-{end}/{size}").as_str());
                assert_eq!(length_name, CONTENT_LENGTH);
                assert_eq!(length, (end - start + 1).to_string().as_str());
            }
            RangeAnswer::Unsatisfiable => {
                let reply = unsatisfiable(size);
                assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
                let expected = format!("bytes */{size}");
                assert_eq!(
                    reply.header(&CONTENT_RANGE).map(HeaderValue::as_bytes),
                    Some(expected.as_bytes())
                );
            }
            RangeAnswer::Full => assert_eq!(answer.status(), StatusCode::OK),
        }

        let mut headers = HeaderMap::new();
        headers.insert(RANGE, value.clone());
        assert_eq!(resolve_request_range(&headers, size), answer);
        headers.append(RANGE, value.clone());
        assert_eq!(resolve_request_range(&headers, size), RangeAnswer::Full);
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, value.clone());
        headers.insert(IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert_eq!(resolve_request_range(&headers, size), RangeAnswer::Full);
    }
    assert_eq!(resolve_range(None, 5), RangeAnswer::Full);
}

/// RFC 9110 §14.1.2 with the server's policy, written as a specification.
fn reference(value: &[u8], size: u64) -> RangeAnswer {
    let text = String::from_utf8_lossy(value);
    let Some((unit, set)) = text.split_once('=') else {
        return RangeAnswer::Full;
    };
    if !unit.trim_matches([' ', '\t']).eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return RangeAnswer::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |digits: &str| -> Option<u64> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Saturating: a position too big for u64 is past any end, a suffix that big covers all.
        Some(digits.parse::<u64>().unwrap_or(u64::MAX))
    };
    match (number(first), number(last)) {
        // suffix-range: the last n bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        // int-range without a last position.
        (Some(start), None) if last.is_empty() => {
            if start >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start,
                    end: size - 1,
                }
            }
        }
        // int-range; last < first is invalid, so the header is ignored.
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
    }
}
