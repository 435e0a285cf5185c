//! Responses described as data.
//!
//! Every answer the core decides on (an error, a redirect, a 308 or 416 during an upload, the
//! JSON bodies of successful calls) is a [`Reply`]: status, extra headers and a body. Adapters
//! turn it into their HTTP library's response type with [`Reply::into_http`] and never build
//! status codes or bodies themselves.

use bytes::Bytes;
use http::header::{
    CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use http::{Response, StatusCode};

/// `Content-Type` of plain-text bodies (what Go's `http.Error` sends).
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// `Content-Type` of JSON bodies.
pub const APPLICATION_JSON: &str = "application/json";

/// A response decided by the core: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// Headers to send, in order, besides the framing headers the HTTP library adds.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for `HEAD` and for bodiless statuses).
    pub body: Bytes,
}

impl Reply {
    /// An empty response with `status`.
    #[must_use]
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A plain-text error in the shape of Go's `http.Error`: the message plus a newline,
    /// `text/plain; charset=utf-8` and `X-Content-Type-Options: nosniff`.
    #[must_use]
    pub fn error(status: StatusCode, message: &str) -> Self {
        let mut body = String::with_capacity(message.len() + 1);
        body.push_str(message);
        body.push('\n');
        Self {
            status,
            headers: vec![
                (CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN)),
                (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            body: Bytes::from(body),
        }
    }

    /// A plain-text body without a trailing newline (the probes' `ok`).
    #[must_use]
    pub fn text(status: StatusCode, text: &str) -> Self {
        Self {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
            body: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    /// A JSON body followed by a newline, as Go's `json.Encoder` writes it.
    #[must_use]
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        let mut body = value.to_string();
        body.push('\n');
        Self {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON))],
            body: Bytes::from(body),
        }
    }

    /// `401 unauthorized` with `WWW-Authenticate: Bearer`. The same response whatever was wrong
    /// (missing, malformed or mismatching token), so it is no oracle.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::error(StatusCode::UNAUTHORIZED, "unauthorized")
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a header whose value is a number.
    #[must_use]
    pub fn with_number(self, name: HeaderName, value: u64) -> Self {
        self.with_header(name, HeaderValue::from(value))
    }

    /// The value of the first header called `name`, if any.
    #[must_use]
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Converts into an `http::Response` with the body as `Bytes`.
    #[must_use]
    pub fn into_http(self) -> Response<Bytes> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_look_like_go_http_error() {
        let reply = Reply::error(StatusCode::BAD_REQUEST, "key is required");
        assert_eq!(reply.body, Bytes::from_static(b"key is required\n"));
        assert_eq!(reply.header(&CONTENT_TYPE).unwrap(), TEXT_PLAIN);
        assert_eq!(reply.header(&X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = Reply::unauthorized().into_http();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(response.body(), &Bytes::from_static(b"unauthorized\n"));
    }

    #[test]
    fn json_ends_with_a_newline() {
        let reply = Reply::json(StatusCode::OK, &serde_json::json!({"local_path": "/m/x"}));
        assert_eq!(
            reply.body,
            Bytes::from_static(b"{\"local_path\":\"/m/x\"}\n")
        );
    }
}
