//! A minimal reader of raw HTTP/1 request heads for the `classify` target.
//!
//! It accepts what an HTTP/1 parser such as httparse would hand over (request line, then
//! `name: value` lines up to an empty line; values without surrounding spaces and tabs) and
//! refuses the rest, as such a parser answers 400 before the core sees anything. What follows
//! the empty line (a body) is ignored.

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::util::lines;

/// The head as `http::request::Parts`, or `None` when an HTTP parser would refuse it.
pub(crate) fn parse_head(data: &[u8]) -> Option<Parts> {
    let mut lines = lines(data);
    let request_line = lines.next()?;
    let mut words = request_line.split(|&b| b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let version = match words.next() {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(b"HTTP/1.1") | None => Version::HTTP_11,
        Some(_) => return None,
    };
    if words.next().is_some() {
        return None;
    }
    let mut builder = Request::builder().method(method).uri(uri).version(version);
    for line in lines {
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        let value = trim_ows(value.get(1..).unwrap_or_default());
        builder = builder.header(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
    }
    builder.body(()).ok().map(|request| request.into_parts().0)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_localai_head() {
        let parts = parse_head(
            b"PUT /v1/files/models/m/w.bin HTTP/1.1\r\nHost: w:50050\r\nContent-Range:  bytes 0-9/10 \r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(parts.method, Method::PUT);
        assert_eq!(parts.uri.path(), "/v1/files/models/m/w.bin");
        assert_eq!(parts.headers["content-range"], "bytes 0-9/10");
    }

    #[test]
    fn refuses_what_a_parser_refuses() {
        assert!(parse_head(b"GET /a b HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.1\r\nx: a\x00b\r\n\r\n").is_none());
    }
}
