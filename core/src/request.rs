//! Classification of request heads into commands.
//!
//! [`classify`] turns the head of an HTTP request (`http::request::Parts`) into a closed
//! [`Command`] for every route of the worker's file-transfer server, or into a [`Refusal`] that
//! carries the exact response to send. The order of checks is part of the contract:
//!
//! 1. framing: a `Transfer-Encoding` other than one `chunked` is refused (hyper accepts
//!    `gzip, chunked` and hands the still-encoded bytes over);
//! 2. routing on the raw path: unknown paths are `404 page not found`, the probes are public;
//! 3. **authentication**, before anything about the request is looked at further, so an
//!    unauthenticated client learns nothing about methods or keys (a malicious key without a
//!    token gets 401, not 400);
//! 4. method (405 after auth, as LocalAI does);
//! 5. the key: percent-decoded once, validated and routed by [`crate::keys`];
//! 6. for uploads, the `Content-Range`, `X-Content-SHA256` and size checks of
//!    [`crate::upload`], all before a byte of the body is read.
//!
//! ```text
//!  /healthz /readyz ──────────────────────────────▶ Healthz / Readyz (no auth)
//!  /metrics ─▶ auth (unless public) ─▶ GET ───────▶ Metrics
//!  /v1/files/{key}  ─▶ auth ─▶ method ─▶ key ─▶ Head / Get / Put (upload checks) / AllocTemp
//!  /v1/files-list/{key} ─▶ auth ─▶ GET ─▶ key ─▶ List
//!  /v1/backend-logs[/{id}[/ws]] ─▶ auth ─▶ GET ─▶ LogsIndex / LogsModel / LogsWatch (upgrade, origin)
//!  anything else ─────────────────────────────────▶ 404 page not found
//! ```

use http::header::{
    CONNECTION, HOST, HeaderValue, LOCATION, ORIGIN, RANGE, TRANSFER_ENCODING, UPGRADE,
};
use std::fmt;

use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};

use crate::auth::{AuthDecision, AuthPolicy, RejectReason, authorize};
use crate::keys::{
    KeyError, ListTarget, Target, percent_decode_once, resolve_key, resolve_list_key,
};
use crate::response::Reply;
use crate::upload::UploadRequest;

/// Route prefix of the file routes.
pub const FILES_PREFIX: &str = "/v1/files/";
/// Route prefix of the recursive listing.
pub const FILES_LIST_PREFIX: &str = "/v1/files-list/";
/// Exact path of the backend-log index.
pub const LOGS_INDEX: &str = "/v1/backend-logs";
/// Route prefix of per-model backend logs.
pub const LOGS_PREFIX: &str = "/v1/backend-logs/";
/// Liveness probe.
pub const HEALTHZ: &str = "/healthz";
/// Readiness probe.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics ([`crate::metrics`]); behind the token unless [`MetricsAccess::Public`].
pub const METRICS: &str = "/metrics";
/// The key that, with `POST`, allocates an output temp file in the staging root.
pub const TEMP_KEY: &str = "temp";

/// What the server must do for a request that passed every check.
#[derive(Debug)]
pub enum Command {
    /// `HEAD /v1/files/{key}`: probe size, hash or resumable state.
    Head {
        /// Where the key lives.
        target: Target,
    },
    /// `GET /v1/files/{key}`: download, whole or one byte range.
    Get {
        /// Where the key lives.
        target: Target,
        /// The `Range` header, resolved once the size is known ([`crate::range`]).
        range: Option<HeaderValue>,
    },
    /// `PUT /v1/files/{key}`: full or resumable upload.
    Put {
        /// Where the key lives.
        target: Target,
        /// The parsed upload headers.
        upload: UploadRequest,
    },
    /// `POST /v1/files/temp`: allocate an empty output file at the top of staging.
    AllocTemp,
    /// `GET /v1/files-list/{key}`: recursive listing of a directory.
    List {
        /// The directory to list.
        target: ListTarget,
    },
    /// `GET /v1/backend-logs`: the model IDs that have logs.
    LogsIndex,
    /// `GET /v1/backend-logs/{model}`: the buffered lines of one model.
    LogsModel {
        /// Model ID, or process key `<model>#<replica>`.
        model: String,
    },
    /// `GET /v1/backend-logs/{model}/ws`: WebSocket stream of the lines (handshake validated).
    LogsWatch {
        /// Model ID, or process key.
        model: String,
    },
    /// `GET`/`HEAD /healthz`.
    Healthz,
    /// `GET`/`HEAD /readyz`.
    Readyz,
    /// `GET /metrics`: the counters in Prometheus text format.
    Metrics,
}

/// A request refused before any effect, with the response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The response.
    pub reply: Reply,
    /// Why, for structured logs (never contains a secret).
    pub reason: RefusalReason,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// No route at this path.
    NotFound,
    /// Redirect to the canonical form of a route prefix (`/v1/files` → `/v1/files/`).
    Redirect,
    /// Authentication failed.
    Unauthorized(RejectReason),
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// The key is missing or invalid.
    BadKey(KeyError),
    /// A write to a name the server manages itself (a sidecar).
    ReservedKey,
    /// Upload headers refused (bad `Content-Range`, bad hash, size over the limit).
    BadUpload,
    /// Framing this server does not accept (`Transfer-Encoding`).
    BadFraming,
    /// The backend-log path names no model.
    MissingModel,
    /// A `/ws` path without a valid WebSocket handshake.
    NotWebSocket,
    /// A WebSocket handshake from a foreign `Origin`.
    ForeignOrigin,
}

impl RefusalReason {
    /// A short, stable, secret-free label for logs and for grouping refusals
    /// ([`crate::refusal_log`]).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Redirect => "redirect",
            Self::Unauthorized(_) => "unauthorized",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadKey(_) => "bad_key",
            Self::ReservedKey => "reserved_key",
            Self::BadUpload => "bad_upload",
            Self::BadFraming => "bad_framing",
            Self::MissingModel => "missing_model",
            Self::NotWebSocket => "not_websocket",
            Self::ForeignOrigin => "foreign_origin",
        }
    }
}

impl fmt::Display for RefusalReason {
    /// The reason in words, for logs: never `Debug` text, never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such route"),
            Self::Redirect => f.write_str("redirected to the route with a trailing slash"),
            Self::Unauthorized(why) => write!(f, "unauthorized: {}", why.describe()),
            Self::MethodNotAllowed => f.write_str("method not allowed on this route"),
            Self::BadKey(error) => write!(f, "bad key: {}", key_words(error)),
            Self::ReservedKey => {
                f.write_str("the key names a hash sidecar, which only the server writes")
            }
            Self::BadUpload => f.write_str("upload headers refused"),
            Self::BadFraming => f.write_str("Transfer-Encoding other than a single chunked"),
            Self::MissingModel => f.write_str("the backend-log path names no valid model"),
            Self::NotWebSocket => f.write_str("a /ws path without a WebSocket handshake"),
            Self::ForeignOrigin => f.write_str("a WebSocket handshake from a foreign Origin"),
        }
    }
}

/// A key error in words for an operator (the client's text says what to do instead).
fn key_words(error: &KeyError) -> String {
    match error {
        KeyError::DotSegment { segment } => format!("the key has a `{segment}` segment"),
        KeyError::Empty => "the key is empty".to_owned(),
        other => other
            .to_string()
            .strip_prefix("invalid key: ")
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}

/// Which routes are public besides the probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// `/metrics` needs the token, like every route but the probes (the default).
    #[default]
    Protected,
    /// `/metrics` is answered without a token (a scraper on a trusted network).
    Public,
}

/// What the server enforces on requests.
#[derive(Debug, Clone)]
pub struct ServerPolicy {
    /// Who may call the authenticated routes.
    pub auth: AuthPolicy,
    /// Largest accepted upload in bytes (`None`: unlimited).
    pub max_upload: Option<u64>,
}

/// Classifies a request head. See the module documentation for the order of checks.
///
/// # Errors
/// A [`Refusal`] carrying the response to send as is.
pub fn classify(parts: &Parts, policy: &ServerPolicy) -> Result<Command, Refusal> {
    classify_with(parts, policy, MetricsAccess::Protected)
}

/// [`classify`], with `/metrics` public when `metrics` says so. `/metrics` is `GET` only;
/// protected, it is checked exactly like the other authenticated routes (401 before 405).
///
/// # Errors
/// A [`Refusal`] carrying the response to send as is.
pub fn classify_with(
    parts: &Parts,
    policy: &ServerPolicy,
    metrics: MetricsAccess,
) -> Result<Command, Refusal> {
    check_framing(&parts.headers)?;
    let path = parts.uri.path();
    let method = &parts.method;

    if path == METRICS && metrics == MetricsAccess::Public {
        require_get(method)?;
        return Ok(Command::Metrics);
    }

    if path == HEALTHZ || path == READYZ {
        return if method == Method::GET || method == Method::HEAD {
            Ok(if path == HEALTHZ {
                Command::Healthz
            } else {
                Command::Readyz
            })
        } else {
            Err(method_not_allowed())
        };
    }
    if path == "/v1/files" || path == "/v1/files-list" {
        return Err(redirect(&format!("{path}/")));
    }

    let route = if let Some(raw) = path.strip_prefix(FILES_PREFIX) {
        Route::Files(raw)
    } else if let Some(raw) = path.strip_prefix(FILES_LIST_PREFIX) {
        Route::List(raw)
    } else if path == LOGS_INDEX {
        Route::LogsIndex
    } else if let Some(raw) = path.strip_prefix(LOGS_PREFIX) {
        Route::Logs(raw)
    } else if path == METRICS {
        Route::Metrics
    } else {
        return Err(refuse(
            Reply::error(StatusCode::NOT_FOUND, "404 page not found"),
            RefusalReason::NotFound,
        ));
    };

    if let AuthDecision::Reject(reason) = authorize(&policy.auth, &parts.headers) {
        return Err(refuse(
            Reply::unauthorized(),
            RefusalReason::Unauthorized(reason),
        ));
    }

    match route {
        Route::Files(raw) => classify_files(method, raw, parts, policy),
        Route::List(raw) => {
            require_get(method)?;
            let target = resolve_list_key(raw.as_bytes()).map_err(bad_key)?;
            Ok(Command::List { target })
        }
        Route::LogsIndex => {
            require_get(method)?;
            Ok(Command::LogsIndex)
        }
        Route::Logs(raw) => {
            require_get(method)?;
            classify_logs(raw, &parts.headers)
        }
        Route::Metrics => {
            require_get(method)?;
            Ok(Command::Metrics)
        }
    }
}

enum Route<'a> {
    Files(&'a str),
    List(&'a str),
    LogsIndex,
    Logs(&'a str),
    Metrics,
}

fn classify_files(
    method: &Method,
    raw: &str,
    parts: &Parts,
    policy: &ServerPolicy,
) -> Result<Command, Refusal> {
    match *method {
        Method::POST if raw == TEMP_KEY => Ok(Command::AllocTemp),
        Method::POST => Err(refuse(
            Reply::error(StatusCode::NOT_FOUND, "not found"),
            RefusalReason::NotFound,
        )),
        Method::HEAD => Ok(Command::Head {
            target: resolve_key(raw.as_bytes()).map_err(bad_key)?,
        }),
        Method::GET => Ok(Command::Get {
            target: resolve_key(raw.as_bytes()).map_err(bad_key)?,
            range: parts.headers.get(RANGE).cloned(),
        }),
        Method::PUT => {
            let target = resolve_key(raw.as_bytes()).map_err(bad_key)?;
            if target.key().is_sidecar() {
                return Err(refuse(
                    Reply::error(
                        StatusCode::BAD_REQUEST,
                        "invalid key: names ending in .sha256 or .sha256.target are managed by the server",
                    ),
                    RefusalReason::ReservedKey,
                ));
            }
            let upload = UploadRequest::from_headers(&parts.headers, policy.max_upload)
                .map_err(|reply| refuse(reply, RefusalReason::BadUpload))?;
            Ok(Command::Put { target, upload })
        }
        _ => Err(method_not_allowed()),
    }
}

fn classify_logs(raw: &str, headers: &HeaderMap) -> Result<Command, Refusal> {
    let (raw_model, watch) = match raw.strip_suffix("/ws") {
        Some(model) => (model, true),
        None => (raw, false),
    };
    let model = percent_decode_once(raw_model.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            refuse(
                Reply::error(StatusCode::BAD_REQUEST, "invalid model ID"),
                RefusalReason::MissingModel,
            )
        })?;
    if model.is_empty() || model.chars().any(char::is_control) {
        return Err(refuse(
            Reply::error(StatusCode::BAD_REQUEST, "model ID required"),
            RefusalReason::MissingModel,
        ));
    }
    if !watch {
        return Ok(Command::LogsModel { model });
    }
    if !is_websocket_handshake(headers) {
        return Err(refuse(
            Reply::error(StatusCode::BAD_REQUEST, "Bad Request"),
            RefusalReason::NotWebSocket,
        ));
    }
    if !origin_allowed(headers) {
        return Err(refuse(
            Reply::error(StatusCode::FORBIDDEN, "Forbidden"),
            RefusalReason::ForeignOrigin,
        ));
    }
    Ok(Command::LogsWatch { model })
}

/// Whether the headers carry a WebSocket version 13 upgrade handshake (RFC 6455 §4.2.1).
#[must_use]
pub fn is_websocket_handshake(headers: &HeaderMap) -> bool {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value: &HeaderValue| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(CONNECTION, "upgrade")
        && has_token(UPGRADE, "websocket")
        && headers
            .get(http::header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && headers
            .get(http::header::SEC_WEBSOCKET_KEY)
            .is_some_and(|v| !v.is_empty())
}

/// The origin rule of LocalAI's log WebSocket: no `Origin` header is allowed (non-browser
/// clients such as the frontend's proxy); otherwise the origin's host must equal `Host`.
#[must_use]
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), headers.get(HOST).map(|h| h.to_str()))
    else {
        return false;
    };
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    !authority.is_empty() && authority.eq_ignore_ascii_case(host.trim())
}

fn check_framing(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else {
        return Ok(());
    };
    let single_chunked = codings.next().is_none()
        && first
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    if single_chunked {
        Ok(())
    } else {
        Err(refuse(
            Reply::error(
                StatusCode::BAD_REQUEST,
                "unsupported Transfer-Encoding: only a single chunked coding is accepted",
            ),
            RefusalReason::BadFraming,
        ))
    }
}

fn require_get(method: &Method) -> Result<(), Refusal> {
    if method == Method::GET {
        Ok(())
    } else {
        Err(method_not_allowed())
    }
}

fn method_not_allowed() -> Refusal {
    refuse(
        Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        RefusalReason::MethodNotAllowed,
    )
}

fn redirect(location: &str) -> Refusal {
    let reply = Reply::empty(StatusCode::TEMPORARY_REDIRECT).with_header(
        LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    refuse(reply, RefusalReason::Redirect)
}

fn bad_key(error: KeyError) -> Refusal {
    refuse(
        Reply::error(StatusCode::BAD_REQUEST, &error.to_string()),
        RefusalReason::BadKey(error),
    )
}

fn refuse(reply: Reply, reason: RefusalReason) -> Refusal {
    Refusal { reply, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;
    use http::Request;

    const TOKEN: &str = "tok";

    fn policy() -> ServerPolicy {
        ServerPolicy {
            auth: AuthPolicy::from_tokens(Some(&Token::parse(TOKEN).unwrap()), None),
            max_upload: Some(1000),
        }
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn authed(method: &str, uri: &str, extra: &[(&str, &str)]) -> Result<Command, Refusal> {
        let mut headers = vec![("authorization", "Bearer tok")];
        headers.extend_from_slice(extra);
        classify(&parts(method, uri, &headers), &policy())
    }

    fn anonymous(method: &str, uri: &str) -> Result<Command, Refusal> {
        classify(&parts(method, uri, &[]), &policy())
    }

    fn status(result: Result<Command, Refusal>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(refusal) => refusal.reply.status.as_u16(),
        }
    }

    #[test]
    fn ah26_every_protected_route_needs_the_token() {
        let routes = [
            ("HEAD", "/v1/files/x"),
            ("GET", "/v1/files/x"),
            ("PUT", "/v1/files/x"),
            ("POST", "/v1/files/temp"),
            ("GET", "/v1/files-list/models/x"),
            ("GET", "/v1/backend-logs"),
            ("GET", "/v1/backend-logs/m"),
            ("GET", "/v1/backend-logs/m/ws"),
        ];
        for (method, uri) in routes {
            let refusal = anonymous(method, uri).unwrap_err();
            assert_eq!(
                refusal.reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri}"
            );
            assert_eq!(
                refusal.reason,
                RefusalReason::Unauthorized(RejectReason::Missing)
            );
            assert!(authed(method, uri, &[]).is_ok() || method == "GET" && uri.ends_with("/ws"));
        }
    }

    #[test]
    fn ah25_auth_comes_before_method_and_key() {
        assert_eq!(status(anonymous("DELETE", "/v1/files/x")), 401);
        assert_eq!(status(authed("DELETE", "/v1/files/x", &[])), 405);
        assert_eq!(
            status(anonymous("GET", "/v1/files/..%2f..%2fetc%2fpasswd")),
            401
        );
        assert_eq!(
            status(authed("GET", "/v1/files/..%2f..%2fetc%2fpasswd", &[])),
            400
        );
        let huge = [("content-length", "99999999999")];
        assert_eq!(
            status(classify(&parts("PUT", "/v1/files/x", &huge), &policy())),
            401
        );
    }

    #[test]
    fn ah24_probes_are_public_and_method_checked() {
        assert!(matches!(anonymous("GET", "/healthz"), Ok(Command::Healthz)));
        assert!(matches!(anonymous("HEAD", "/readyz"), Ok(Command::Readyz)));
        assert_eq!(status(anonymous("POST", "/readyz")), 405);
        assert_eq!(status(anonymous("GET", "/healthz/")), 404);
    }

    #[test]
    fn unknown_paths_are_go_style_404() {
        let refusal = anonymous("GET", "/nope").unwrap_err();
        assert_eq!(refusal.reply.status, StatusCode::NOT_FOUND);
        assert_eq!(refusal.reply.body, "404 page not found\n");
    }

    #[test]
    fn route_prefixes_without_slash_redirect() {
        for path in ["/v1/files", "/v1/files-list"] {
            let refusal = anonymous("GET", path).unwrap_err();
            assert_eq!(refusal.reply.status, StatusCode::TEMPORARY_REDIRECT);
            assert_eq!(
                refusal.reply.header(&LOCATION).unwrap(),
                &format!("{path}/")
            );
        }
    }

    #[test]
    fn post_only_allocates_temp() {
        assert!(matches!(
            authed("POST", "/v1/files/temp", &[]),
            Ok(Command::AllocTemp)
        ));
        let refusal = authed("POST", "/v1/files/other", &[]).unwrap_err();
        assert_eq!(refusal.reply.status, StatusCode::NOT_FOUND);
        assert_eq!(refusal.reply.body, "not found\n");
    }

    #[test]
    fn files_routes_classify_with_targets() {
        match authed("GET", "/v1/files/models/m/w.bin", &[("range", "bytes=0-1")]) {
            Ok(Command::Get { target, range }) => {
                assert_eq!(target.rel(), "m/w.bin");
                assert_eq!(range.unwrap(), "bytes=0-1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            authed("HEAD", "/v1/files/data/x", &[]),
            Ok(Command::Head { .. })
        ));
        assert!(matches!(
            authed("PUT", "/v1/files/x", &[("content-length", "3")]),
            Ok(Command::Put { .. })
        ));
    }

    #[test]
    fn empty_key_is_required() {
        let refusal = authed("GET", "/v1/files/", &[]).unwrap_err();
        assert_eq!(refusal.reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal.reply.body, "key is required\n");
    }

    #[test]
    fn writes_to_sidecars_are_refused_but_reads_are_not() {
        let refusal = authed("PUT", "/v1/files/x.sha256", &[("content-length", "1")]).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ReservedKey);
        assert!(authed("GET", "/v1/files/x.sha256", &[]).is_ok());
    }

    #[test]
    fn upload_headers_are_checked_before_the_body() {
        let over = [("content-length", "1001")];
        assert_eq!(status(authed("PUT", "/v1/files/x", &over)), 413);
        let bad_range = [("content-range", "items 0-1/2"), ("content-length", "2")];
        assert_eq!(status(authed("PUT", "/v1/files/x", &bad_range)), 400);
    }

    #[test]
    fn listing_is_get_only() {
        assert!(matches!(
            authed("GET", "/v1/files-list/models/", &[]),
            Ok(Command::List { .. })
        ));
        assert_eq!(status(authed("HEAD", "/v1/files-list/models/x", &[])), 405);
    }

    #[test]
    fn backend_logs_routes() {
        assert!(matches!(
            authed("GET", "/v1/backend-logs", &[]),
            Ok(Command::LogsIndex)
        ));
        let refusal = authed("GET", "/v1/backend-logs/", &[]).unwrap_err();
        assert_eq!(refusal.reply.body, "model ID required\n");
        match authed("GET", "/v1/backend-logs/my%20model%231", &[]) {
            Ok(Command::LogsModel { model }) => assert_eq!(model, "my model#1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(authed("POST", "/v1/backend-logs/m", &[])), 405);
    }

    fn ws_headers(origin: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("host", "worker:50050"),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        headers
    }

    #[test]
    fn websocket_needs_a_handshake() {
        let refusal = authed("GET", "/v1/backend-logs/m/ws", &[]).unwrap_err();
        assert_eq!(refusal.reply.status, StatusCode::BAD_REQUEST);
        assert!(matches!(
            authed("GET", "/v1/backend-logs/m/ws", &ws_headers(None)),
            Ok(Command::LogsWatch { model }) if model == "m"
        ));
    }

    #[test]
    fn ah27_foreign_origins_cannot_open_the_log_socket() {
        assert!(
            authed(
                "GET",
                "/v1/backend-logs/m/ws",
                &ws_headers(Some("http://worker:50050"))
            )
            .is_ok()
        );
        let refusal = authed(
            "GET",
            "/v1/backend-logs/m/ws",
            &ws_headers(Some("https://evil.example")),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ForeignOrigin);
        assert_eq!(refusal.reply.status, StatusCode::FORBIDDEN);
        for origin in ["null", "http://worker:50050.evil", "worker:50050"] {
            let mut headers = ws_headers(None);
            headers.push(("origin", origin));
            assert!(
                authed("GET", "/v1/backend-logs/m/ws", &headers).is_err(),
                "{origin}"
            );
        }
    }

    #[test]
    fn hr_r10_only_a_single_chunked_coding_is_accepted() {
        for te in ["gzip, chunked", "chunked, chunked", "gzip", "identity"] {
            let refusal = authed("PUT", "/v1/files/x", &[("transfer-encoding", te)]).unwrap_err();
            assert_eq!(refusal.reason, RefusalReason::BadFraming, "{te}");
        }
        assert!(authed("PUT", "/v1/files/x", &[("transfer-encoding", "chunked")]).is_ok());
    }

    #[test]
    fn anonymous_mode_skips_the_token_but_not_the_key_rules() {
        let open = ServerPolicy {
            auth: AuthPolicy::Anonymous,
            max_upload: None,
        };
        assert!(classify(&parts("GET", "/v1/files/x", &[]), &open).is_ok());
        let refusal = classify(&parts("GET", "/v1/files/a/%2e%2e/b", &[]), &open).unwrap_err();
        assert_eq!(refusal.reply.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn metrics_is_protected_unless_public() {
        assert_eq!(status(anonymous("GET", "/metrics")), 401);
        assert!(matches!(
            authed("GET", "/metrics", &[]),
            Ok(Command::Metrics)
        ));
        assert_eq!(status(authed("PUT", "/metrics", &[])), 405);
        let public = |method| {
            classify_with(
                &parts(method, "/metrics", &[]),
                &policy(),
                MetricsAccess::Public,
            )
        };
        assert!(matches!(public("GET"), Ok(Command::Metrics)));
        assert_eq!(status(public("POST")), 405);
        let other = classify_with(
            &parts("GET", "/v1/files/x", &[]),
            &policy(),
            MetricsAccess::Public,
        );
        assert_eq!(status(other), 401, "only /metrics becomes public");
    }

    #[test]
    fn refusal_reasons_read_as_words() {
        let refusal = authed("GET", "/v1/files/a/%2e%2e/b", &[]).unwrap_err();
        assert_eq!(
            refusal.reason.to_string(),
            "bad key: the key has a `..` segment"
        );
        let refusal = anonymous("GET", "/v1/files/x").unwrap_err();
        assert_eq!(
            refusal.reason.to_string(),
            "unauthorized: no Authorization header"
        );
        let refusal = authed("GET", "/v1/files/a%00b", &[]).unwrap_err();
        assert!(!refusal.reason.to_string().contains("BadKey"));
    }
}
