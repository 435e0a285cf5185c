//! `classify`: request heads into commands, auth first (security.md §1.4 step 1, §2.3 AH-24…
//! AH-27, §4.2 HR-R10, §4.3). Input: a raw HTTP/1 request head, as a client sends it.

use http::header::{
    AUTHORIZATION, CONNECTION, HOST, LOCATION, ORIGIN, RANGE, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use nodegate_core::auth::{AuthPolicy, Token};
use nodegate_core::keys::{percent_decode_once, resolve_key, resolve_list_key};
use nodegate_core::request::{
    Command, Refusal, RefusalReason, ServerPolicy, classify as core_classify,
};
use nodegate_core::response::Reply;
use nodegate_core::upload::UploadRequest;

use crate::auth::reference_bearer;
use crate::head::parse_head;
use crate::util::{assert_printable, twin, twin_bytes};

/// The token the server is configured with (security.md §2.3 uses `tok`).
pub(crate) const TOKEN: &str = "tok";
/// The previous token, still accepted during a rotation.
pub(crate) const PREVIOUS_TOKEN: &str = "old-T0ken";
/// The upload limit of the server under test.
pub(crate) const LIMIT: u64 = 1000;

/// Oracle of the `classify` target. The head is classified under a token policy (`tok`, with
/// `old-T0ken` rotating out) and under anonymous mode. Panics when:
///
/// - framing: anything but one `chunked` `Transfer-Encoding` is not refused first (HR-R10);
/// - the probes are not public (AH-24), the route prefixes do not redirect, an unknown path is
///   not `404 page not found`;
/// - on a protected route, a head without exactly one `Authorization: Bearer <tok|old-T0ken>`
///   gets anything but the one 401 response, whatever its method, key or upload headers
///   (AH-01…AH-13, AH-17, AH-19, AH-25, AH-26): auth comes before everything else;
/// - with a valid token the result differs from anonymous mode: auth is orthogonal to routing;
/// - anonymous mode ever answers 401;
/// - a command disagrees with the route, the method, `resolve_key`/`resolve_list_key` or
///   `UploadRequest::parse`; a write targets a sidecar; a log socket opens without a WebSocket
///   handshake or from a foreign `Origin` (AH-27);
/// - a refusal has the wrong status for its reason, a 5xx, or a body with control characters;
/// - the result depends on the content of the configured secret (twin tokens and twin
///   `Authorization` values give the same result).
pub fn classify(data: &[u8]) {
    let Some(parts) = parse_head(data) else {
        return;
    };
    let protected = policy(TOKEN, PREVIOUS_TOKEN);
    let open = ServerPolicy {
        auth: AuthPolicy::Anonymous,
        max_upload: Some(LIMIT),
    };
    let with_token = core_classify(&parts, &protected);
    let anonymous = core_classify(&parts, &open);
    check_result(&parts, &with_token);
    check_result(&parts, &anonymous);
    if let Err(refusal) = &anonymous {
        assert!(
            !matches!(refusal.reason, RefusalReason::Unauthorized(_)),
            "anonymous mode answered 401"
        );
    }

    let path = parts.uri.path();
    let framing_ok = framing_ok(&parts.headers);
    let route_protected = path.starts_with("/v1/files/")
        || path.starts_with("/v1/files-list/")
        || path == "/v1/backend-logs"
        || path.starts_with("/v1/backend-logs/")
        || path == "/metrics";
    for result in [&with_token, &anonymous] {
        if !framing_ok {
            assert_eq!(reason(result), Some(&RefusalReason::BadFraming), "HR-R10");
        } else if path == "/healthz" || path == "/readyz" {
            let probe = parts.method == Method::GET || parts.method == Method::HEAD;
            match result {
                Ok(Command::Healthz) => assert!(probe && path == "/healthz"),
                Ok(Command::Readyz) => assert!(probe && path == "/readyz"),
                Err(refusal) => {
                    assert!(!probe);
                    assert_eq!(refusal.reason, RefusalReason::MethodNotAllowed);
                }
                Ok(other) => panic!("probe classified as {other:?}"),
            }
        } else if path == "/v1/files" || path == "/v1/files-list" {
            assert_eq!(reason(result), Some(&RefusalReason::Redirect));
        } else if !route_protected {
            let refusal = result.as_ref().expect_err("unknown path");
            assert_eq!(refusal.reason, RefusalReason::NotFound);
            assert_eq!(refusal.reply.body, "404 page not found\n");
        }
    }
    if framing_ok && route_protected {
        if authorized(&parts.headers) {
            assert_eq!(
                format!("{with_token:?}"),
                format!("{anonymous:?}"),
                "a valid token changed more than the auth decision"
            );
        } else {
            let refusal = with_token
                .as_ref()
                .expect_err("AH-25: auth before everything");
            assert!(
                matches!(refusal.reason, RefusalReason::Unauthorized(_)),
                "AH-25: {:?} before auth",
                refusal.reason
            );
            assert_eq!(
                refusal.reply,
                Reply::unauthorized(),
                "one 401 for every reason"
            );
        }
    }

    // Auth is orthogonal: the head with one valid Authorization line under the token policy is
    // classified exactly as the head under anonymous mode.
    let mut authed = parts.clone();
    authed.headers.remove(AUTHORIZATION);
    authed
        .headers
        .insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
    assert_eq!(
        format!("{:?}", core_classify(&authed, &protected)),
        format!("{:?}", core_classify(&parts, &open)),
        "the Authorization header influenced more than auth"
    );

    // Non-interference: twin secrets and twin Authorization values give the same result.
    let twin_policy = policy(&twin(TOKEN), &twin(PREVIOUS_TOKEN));
    let mut twin_parts = parts.clone();
    let values: Vec<HeaderValue> = parts
        .headers
        .get_all(AUTHORIZATION)
        .iter()
        .cloned()
        .collect();
    twin_parts.headers.remove(AUTHORIZATION);
    for value in values {
        let twin_value = HeaderValue::from_bytes(&twin_credentials(value.as_bytes()))
            .expect("the twin of a header value is a header value");
        twin_parts.headers.append(AUTHORIZATION, twin_value);
    }
    assert_eq!(
        format!("{:?}", core_classify(&twin_parts, &twin_policy)),
        format!("{with_token:?}"),
        "the result depends on the secret"
    );
}

/// An `Authorization` value with everything after the scheme replaced by its twin: the scheme
/// stays as it is (the twin of `adzqdq` is `bearer`), so the decision only sees the twins of the
/// credentials.
fn twin_credentials(value: &[u8]) -> Vec<u8> {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let split = value[start..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(value.len(), |at| start + at);
    let (scheme, credentials) = value.split_at(split);
    [scheme, &twin_bytes(credentials)].concat()
}

fn policy(current: &str, previous: &str) -> ServerPolicy {
    let current = Token::parse(current).expect("a b64token");
    let previous = Token::parse(previous).expect("a b64token");
    ServerPolicy {
        auth: AuthPolicy::from_tokens(Some(&current), Some(&previous)),
        max_upload: Some(LIMIT),
    }
}

fn reason(result: &Result<Command, Refusal>) -> Option<&RefusalReason> {
    result.as_ref().err().map(|refusal| &refusal.reason)
}

/// Exactly one `Authorization` line whose bearer token is `tok` or `old-T0ken`.
fn authorized(headers: &HeaderMap) -> bool {
    let mut lines = headers.get_all(AUTHORIZATION).iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => matches!(
            reference_bearer(line.as_bytes()),
            Ok(token) if token == TOKEN.as_bytes() || token == PREVIOUS_TOKEN.as_bytes()
        ),
        _ => false,
    }
}

/// No `Transfer-Encoding`, or exactly one that is `chunked` (any case, spaces around).
fn framing_ok(headers: &HeaderMap) -> bool {
    let codings: Vec<&HeaderValue> = headers.get_all(TRANSFER_ENCODING).iter().collect();
    match codings.as_slice() {
        [] => true,
        [one] => one
            .to_str()
            .is_ok_and(|v| v.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked")),
        _ => false,
    }
}

/// Checks one result against the head it came from.
fn check_result(parts: &Parts, result: &Result<Command, Refusal>) {
    let path = parts.uri.path();
    let method = &parts.method;
    let files_key = path.strip_prefix("/v1/files/");
    let list_key = path.strip_prefix("/v1/files-list/");
    let logs = path.strip_prefix("/v1/backend-logs/");
    match result {
        Ok(command) => match command {
            Command::Head { target } => {
                assert_eq!(method, Method::HEAD);
                let raw = files_key.expect("a files route");
                assert_eq!(resolve_key(raw.as_bytes()).as_ref(), Ok(target));
            }
            Command::Get { target, range } => {
                assert_eq!(method, Method::GET);
                let raw = files_key.expect("a files route");
                assert_eq!(resolve_key(raw.as_bytes()).as_ref(), Ok(target));
                assert_eq!(range.as_ref(), parts.headers.get(RANGE));
            }
            Command::Put { target, upload } => {
                assert_eq!(method, Method::PUT);
                let raw = files_key.expect("a files route");
                assert_eq!(resolve_key(raw.as_bytes()).as_ref(), Ok(target));
                assert!(!target.key().is_sidecar(), "a client writes a sidecar");
                assert_eq!(
                    UploadRequest::parse(&parts.headers, Some(LIMIT)).as_ref(),
                    Ok(upload)
                );
                if let Some(length) = upload.content_length {
                    assert!(length <= LIMIT, "HR-M01");
                }
                if let Some(range) = upload.range {
                    assert!(range.total <= LIMIT, "HR-M04");
                }
            }
            Command::AllocTemp => {
                assert_eq!(method, Method::POST);
                assert_eq!(path, "/v1/files/temp");
            }
            Command::List { target } => {
                assert_eq!(method, Method::GET);
                let raw = list_key.expect("a listing route");
                assert_eq!(resolve_list_key(raw.as_bytes()).as_ref(), Ok(target));
            }
            Command::LogsIndex => {
                assert_eq!(method, Method::GET);
                assert_eq!(path, "/v1/backend-logs");
            }
            Command::LogsModel { model } => {
                assert_eq!(method, Method::GET);
                let raw = logs.expect("a logs route");
                assert_eq!(decoded(raw).as_deref(), Some(model.as_str()));
                check_model(model);
            }
            Command::LogsWatch { model } => {
                assert_eq!(method, Method::GET);
                let raw = logs
                    .and_then(|r| r.strip_suffix("/ws"))
                    .expect("a /ws route");
                assert_eq!(decoded(raw).as_deref(), Some(model.as_str()));
                check_model(model);
                assert!(
                    handshake(&parts.headers),
                    "socket without a WebSocket handshake"
                );
                check_origin(&parts.headers);
            }
            Command::Healthz | Command::Readyz => {
                assert!(path == "/healthz" || path == "/readyz");
            }
            Command::Metrics => {
                assert_eq!(method, Method::GET);
                assert_eq!(path, "/metrics");
            }
        },
        Err(refusal) => {
            let status = refusal.reply.status;
            assert!(!status.is_server_error(), "{status} for a client's request");
            assert_printable(
                "refusal body",
                &String::from_utf8_lossy(&refusal.reply.body),
            );
            let expected = match &refusal.reason {
                RefusalReason::NotFound => vec![StatusCode::NOT_FOUND],
                RefusalReason::Redirect => {
                    let location = format!("{path}/");
                    assert_eq!(
                        refusal.reply.header(&LOCATION).map(HeaderValue::as_bytes),
                        Some(location.as_bytes())
                    );
                    vec![StatusCode::TEMPORARY_REDIRECT]
                }
                RefusalReason::Unauthorized(_) => vec![StatusCode::UNAUTHORIZED],
                RefusalReason::MethodNotAllowed => vec![StatusCode::METHOD_NOT_ALLOWED],
                RefusalReason::BadKey(error) => {
                    let expected = match (files_key, list_key) {
                        (Some(raw), _) => resolve_key(raw.as_bytes()).err(),
                        (_, Some(raw)) => resolve_list_key(raw.as_bytes()).err(),
                        _ => None,
                    };
                    assert_eq!(expected.as_ref(), Some(error), "key refusal");
                    vec![StatusCode::BAD_REQUEST]
                }
                RefusalReason::ReservedKey => {
                    assert_eq!(method, Method::PUT);
                    vec![StatusCode::BAD_REQUEST]
                }
                RefusalReason::BadUpload => {
                    let error = UploadRequest::parse(&parts.headers, Some(LIMIT))
                        .expect_err("an upload refusal has a reason");
                    assert_eq!(refusal.reply, error.reply());
                    vec![StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE]
                }
                RefusalReason::BadFraming
                | RefusalReason::MissingModel
                | RefusalReason::NotWebSocket => vec![StatusCode::BAD_REQUEST],
                RefusalReason::ForeignOrigin => vec![StatusCode::FORBIDDEN],
            };
            assert!(
                expected.contains(&status),
                "{status} for {:?}",
                refusal.reason
            );
        }
    }
}

fn decoded(raw: &str) -> Option<String> {
    String::from_utf8(percent_decode_once(raw.as_bytes()).ok()?).ok()
}

/// A model ID that reaches the log layer: non-empty, no control character.
fn check_model(model: &str) {
    assert!(!model.is_empty());
    assert!(!model.chars().any(char::is_control), "{model:?}");
}

/// RFC 6455 §4.2.1: `Connection` has the `upgrade` token, `Upgrade` the `websocket` token,
/// version 13 and a key.
fn handshake(headers: &HeaderMap) -> bool {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .any(|part| part.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
        })
    };
    has_token(CONNECTION, "upgrade")
        && has_token(UPGRADE, "websocket")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            == Some(b"13")
        && headers
            .get(SEC_WEBSOCKET_KEY)
            .is_some_and(|key| !key.is_empty())
}

/// AH-27: a log socket opened with an `Origin` whose authority parses must name the `Host`.
fn check_origin(headers: &HeaderMap) {
    let Some(origin) = headers.get(ORIGIN) else {
        return;
    };
    let host = headers
        .get(HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).trim().to_owned());
    let host = host.expect("an Origin is only accepted next to a Host");
    if let Ok(uri) = Uri::try_from(origin.as_bytes())
        && let Some(authority) = uri.authority()
    {
        let origin_host = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        assert!(
            origin_host.eq_ignore_ascii_case(&host),
            "AH-27: socket opened from {origin:?} on host {host:?}"
        );
    }
}
