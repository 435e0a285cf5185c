//! The NATS harness and async-nats 0.51 against real `nats-server` processes, one per test, in
//! each authentication mode (security.md §5.5: NA-01…NA-07, NA-09, NA-10, NA-12…NA-16) and with
//! the worker permissions the frontend mints (spec §5.5).
//!
//! # How async-nats 0.51 surfaces each failure (observed with nats-server 2.15.1)
//!
//! Clients here connect with `ConnectOptions` *without* `retry_on_initial_connect`, so
//! `connect()` returns the first attempt's error. `ConnectError`'s `Display` includes its source.
//!
//! | Situation | `connect()` error: kind, then `Display` |
//! |---|---|
//! | no / wrong token, token prefix or suffix (NA-01, NA-02), wrong password (NA-04), unlisted nkey or token on an nkey server (NA-05), JWT nonce signed by another key (NA-07), JWT with an empty or forged signature (NA-09), expired JWT (NA-10), user signed by an unknown account, operator mode without a JWT | `AuthorizationViolation`, `authorization violation: nats: authorization violation` — returned at once, never retried. The server logs only `authentication error` at its default level (no reason, no credential). |
//! | TLS server, `nats://` client without the CA (NA-13) | `Io`, `IO error: invalid peer certificate: UnknownIssuer` (async-nats upgrades because INFO says `tls_required`). A raw plaintext CONNECT gets no reply at all; the server logs `TLS handshake error`. |
//! | `require_tls(true)` against a plaintext server (NA-14) | `Io`, `IO error: received corrupt message of type InvalidContentType` |
//! | server certificate from an unknown CA (NA-15) | `Io`, `IO error: invalid peer certificate: UnknownIssuer` |
//! | server `verify: true`, client without a certificate (NA-16) | `Io`, `IO error: received fatal alert: CertificateRequired` (TLS 1.3: the alert arrives on the first read after the handshake) |
//! | server stopped | `Io`, `IO error: Connection refused (os error 111)` |
//!
//! Note: `ConnectErrorKind::Tls` is **not** what a failed handshake gives — rustls errors come
//! through `tokio_rustls` as `io::Error` and become `Io`. `Tls` is only for a TLS *setup* error
//! (unreadable PEM file, host not valid as a server name). Classify TLS failures by text.
//!
//! After connecting, a permission violation is **not** an error of `subscribe()`/`publish()`
//! (both return `Ok`): the server sends `-ERR 'Permissions Violation for Subscription to
//! "<subject>"'` (or `… for Publish to "<subject>"`), which arrives through `event_callback` as
//! `Event::ServerError(ServerError::Other(text))`, `text` being exactly
//! `Permissions Violation for Subscription to "nodes.n2.>"` (no surrounding quotes, case
//! preserved). The connection stays up.
//!
//! **`Client::flush()` is not a round trip** in async-nats 0.51: it resolves once the bytes are
//! written to the socket, without PING/PONG (nats.go's `Flush` does PING). To "confirm" a
//! subscription as LocalAI does, follow it with a real round trip — `common::nats::round_trip` sends a
//! request to a fresh inbox and waits for the server's "no responders" status
//! (`RequestErrorKind::NoResponders`); by then the server has processed the SUB and sent any
//! violation. The event callback runs on its own task, so the event may land a moment after the
//! round trip returns: wait for it with a short timeout.

mod common;

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use common::nats::{Auth, NatsServer, Operator, Tls, round_trip, unix_now, user_nkey};
use nodegate::jwt::{self, NodeType, Permissions};
use tokio::sync::mpsc;

/// Bound on every test body.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one connect attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test finished within its time bound");
}

fn options(base: ConnectOptions) -> ConnectOptions {
    base.connection_timeout(CONNECT_TIMEOUT)
}

/// Connects and returns the client, or the error kind (the error itself is printed by
/// `{:?}` in assertion messages: it carries no credential).
async fn connect(
    base: ConnectOptions,
    url: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    options(base).connect(url).await
}

fn expect_kind(result: Result<async_nats::Client, async_nats::ConnectError>) -> ConnectErrorKind {
    expect_error(result).0
}

/// The error kind and its `Display` (which already includes the source, e.g.
/// `IO error: invalid peer certificate: UnknownIssuer`).
fn expect_error(
    result: Result<async_nats::Client, async_nats::ConnectError>,
) -> (ConnectErrorKind, String) {
    match result {
        Ok(_) => panic!("connected, but the server should have refused"),
        Err(e) => (e.kind(), e.to_string()),
    }
}

async fn expect_connected(result: Result<async_nats::Client, async_nats::ConnectError>) {
    let client = result.unwrap_or_else(|e| panic!("should connect: {e} ({:?})", e.kind()));
    round_trip(&client).await;
}

/// A JWT user: signs the server nonce with `seed`.
fn jwt_options(jwt: String, seed: String) -> ConnectOptions {
    let pair = std::sync::Arc::new(nkeys::KeyPair::from_seed(&seed).expect("user seed"));
    ConnectOptions::with_jwt(jwt, move |nonce| {
        let pair = pair.clone();
        async move { pair.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
}

/// Options whose event callback forwards server errors to a channel.
fn with_server_errors(base: ConnectOptions) -> (ConnectOptions, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let base = base.event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let Event::ServerError(err) = event {
                let text = match err {
                    ServerError::Other(text) => text,
                    other => other.to_string(),
                };
                let _ = tx.send(text);
            }
        }
    });
    (base, rx)
}

async fn next_error(rx: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .ok()
        .flatten()
}

// -- Anonymous and token -------------------------------------------------------------------

#[tokio::test]
async fn anonymous_server_accepts_a_client_without_credentials() {
    bounded(async {
        let server = NatsServer::start(&Auth::Anonymous);
        assert!(server.url().starts_with("nats://127.0.0.1:"));
        expect_connected(connect(ConnectOptions::new(), &server.url()).await).await;
    })
    .await;
}

#[tokio::test]
async fn na01_token_server_refuses_a_client_without_credentials() {
    bounded(async {
        let server = NatsServer::start(&Auth::Token("s3cr3t".into()));
        let kind = expect_kind(connect(ConnectOptions::new(), &server.url()).await);
        assert_eq!(kind, ConnectErrorKind::AuthorizationViolation);
    })
    .await;
}

#[tokio::test]
async fn na02_wrong_token_prefix_and_suffix_are_violations() {
    bounded(async {
        let server = NatsServer::start(&Auth::Token("s3cr3t".into()));
        for wrong in ["nope", "s3cr3", "s3cr3tX"] {
            let kind =
                expect_kind(connect(ConnectOptions::with_token(wrong.into()), &server.url()).await);
            assert_eq!(
                kind,
                ConnectErrorKind::AuthorizationViolation,
                "token variant #{}",
                wrong.len()
            );
        }
        assert!(
            !server.log().contains("s3cr3t"),
            "the server does not log tokens"
        );
    })
    .await;
}

#[tokio::test]
async fn na03_right_token_connects() {
    bounded(async {
        let server = NatsServer::start(&Auth::Token("s3cr3t".into()));
        expect_connected(connect(ConnectOptions::with_token("s3cr3t".into()), &server.url()).await)
            .await;
    })
    .await;
}

// -- User/password and nkey ----------------------------------------------------------------

#[tokio::test]
async fn na04_user_password_wrong_is_a_violation_right_connects() {
    bounded(async {
        let server = NatsServer::start(&Auth::UserPassword {
            user: "derek".into(),
            password: "s3cr3t".into(),
        });
        let wrong = ConnectOptions::with_user_and_password("derek".into(), "nope".into());
        assert_eq!(
            expect_kind(connect(wrong, &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
        let right = ConnectOptions::with_user_and_password("derek".into(), "s3cr3t".into());
        expect_connected(connect(right, &server.url()).await).await;
    })
    .await;
}

#[tokio::test]
async fn na05_nkey_server_accepts_only_the_listed_key() {
    bounded(async {
        let (public_key, seed) = user_nkey();
        let server = NatsServer::start(&Auth::Nkey { public_key });
        expect_connected(connect(ConnectOptions::with_nkey(seed), &server.url()).await).await;

        let (_, other_seed) = user_nkey();
        assert_eq!(
            expect_kind(connect(ConnectOptions::with_nkey(other_seed), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation,
            "another user's seed"
        );
        assert_eq!(
            expect_kind(connect(ConnectOptions::with_token("tok".into()), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation,
            "a token instead of an nkey"
        );
    })
    .await;
}

// -- Operator mode (JWT) -------------------------------------------------------------------

#[tokio::test]
async fn na06_minted_worker_jwt_with_its_seed_connects() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
        let decoded = jwt::decode_unverified(&jwt).expect("decodes");
        assert!(!decoded.bearer_token, "NA-08: never a bearer token");
        expect_connected(connect(jwt_options(jwt.clone(), seed.clone()), &server.url()).await)
            .await;

        // The same credentials through a standard .creds file.
        let creds = operator.creds_file(&jwt, &seed);
        let from_file = ConnectOptions::with_credentials_file(&creds)
            .await
            .expect("creds file parses");
        expect_connected(connect(from_file, &server.url()).await).await;
    })
    .await;
}

#[tokio::test]
async fn operator_mode_refuses_a_client_without_a_jwt() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        assert_eq!(
            expect_kind(connect(ConnectOptions::new(), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
    })
    .await;
}

#[tokio::test]
async fn na07_jwt_with_nonce_signed_by_another_key_is_a_violation() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let (jwt, _seed) = operator.mint_user("n1", NodeType::Backend, 3600);
        let (_, other_seed) = user_nkey();
        assert_eq!(
            expect_kind(connect(jwt_options(jwt, other_seed), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
    })
    .await;
}

#[tokio::test]
async fn na09_jwt_without_signature_is_a_violation() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
        let (unsigned, _) = jwt.rsplit_once('.').expect("three segments");
        let unsigned = format!("{unsigned}.");
        assert_eq!(
            expect_kind(connect(jwt_options(unsigned.clone(), seed.clone()), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation,
            "empty signature segment"
        );
        // A signature by the wrong key (the user's own, not the account's).
        let (signed_part, _) = jwt.rsplit_once('.').expect("three segments");
        let user = nkeys::KeyPair::from_seed(&seed).expect("seed");
        let forged_sig = user.sign(signed_part.as_bytes()).expect("sign");
        use base64::Engine as _;
        let forged = format!(
            "{signed_part}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_sig)
        );
        assert_eq!(
            expect_kind(connect(jwt_options(forged, seed), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation,
            "signature by a key other than the issuer"
        );
    })
    .await;
}

#[tokio::test]
async fn na10_expired_jwt_is_a_violation_at_connect() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let expired = unix_now() - 60;
        let (jwt, seed) = operator.mint_user_with(
            jwt::worker_permissions(NodeType::Backend, "n1"),
            Some(expired),
        );
        assert_eq!(jwt::expiry(&jwt), Some(expired));
        assert_eq!(
            expect_kind(connect(jwt_options(jwt, seed), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
        // At the default log level the server says only `authentication error` (the reason,
        // `user JWT has expired`, is a debug line).
        assert!(
            server.wait_for_log("authentication error", Duration::from_secs(2)),
            "the server logs the refusal: {}",
            server.log()
        );
    })
    .await;
}

#[tokio::test]
async fn user_signed_by_an_unknown_account_is_a_violation() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let stranger = nkeys::KeyPair::new_account();
        let (jwt, seed) = operator.mint_user_signed_by(
            &stranger,
            jwt::worker_permissions(NodeType::Backend, "n1"),
            Some(unix_now() + 3600),
        );
        assert_eq!(
            expect_kind(connect(jwt_options(jwt, seed), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
    })
    .await;
}

// -- Permissions (NA-12 and spec §5.5) -----------------------------------------------------

#[tokio::test]
async fn na12_forbidden_subscription_is_reported_after_a_round_trip() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let (jwt, seed) = operator.mint_user_without_node_subscribe("n1");
        let (opts, mut errors) = with_server_errors(jwt_options(jwt, seed));
        let client = connect(opts, &server.url()).await.expect("connects");
        let _sub = client
            .subscribe("nodes.n1.>")
            .await
            .expect("subscribe is not refused locally");
        round_trip(&client).await;
        assert_eq!(
            next_error(&mut errors).await.as_deref(),
            Some(r#"Permissions Violation for Subscription to "nodes.n1.>""#)
        );
        // The connection survives the violation.
        round_trip(&client).await;
    })
    .await;
}

#[tokio::test]
async fn backend_worker_jwt_is_confined_to_its_own_node_subjects() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start(&operator.auth());
        let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
        let (opts, mut errors) = with_server_errors(jwt_options(jwt, seed).no_echo());
        let worker = connect(opts, &server.url()).await.expect("worker connects");

        // A frontend-like observer on the same account, allowed everything under nodes.>.
        let (fjwt, fseed) = operator.mint_user_with(
            Permissions {
                publish: vec!["nodes.>".into(), "_INBOX.>".into()],
                subscribe: vec!["nodes.>".into(), "_INBOX.>".into()],
            },
            Some(unix_now() + 3600),
        );
        let frontend = connect(jwt_options(fjwt, fseed).no_echo(), &server.url())
            .await
            .expect("frontend connects");
        let mut seen = frontend.subscribe("nodes.>").await.expect("subscribe");
        round_trip(&frontend).await;

        // Allowed: its own subscription and its own files subjects.
        let mut own = worker.subscribe("nodes.n1.>").await.expect("subscribe");
        round_trip(&worker).await;
        worker
            .publish("nodes.n1.files.x", "ok".into())
            .await
            .expect("publish");
        round_trip(&worker).await;
        let got = tokio::time::timeout(
            Duration::from_secs(3),
            futures_util::StreamExt::next(&mut seen),
        )
        .await
        .expect("the frontend sees the worker's publish")
        .expect("message");
        assert_eq!(got.subject.as_str(), "nodes.n1.files.x");
        frontend
            .publish("nodes.n1.backend.list", "{}".into())
            .await
            .expect("publish");
        round_trip(&frontend).await;
        let got = tokio::time::timeout(
            Duration::from_secs(3),
            futures_util::StreamExt::next(&mut own),
        )
        .await
        .expect("the worker receives on its own subjects")
        .expect("message");
        assert_eq!(got.subject.as_str(), "nodes.n1.backend.list");
        assert_eq!(next_error(&mut errors).await, None, "no violation so far");

        // Forbidden: another node's subjects, both ways.
        worker
            .publish("nodes.n2.files.x", "no".into())
            .await
            .expect("publish is not refused locally");
        round_trip(&worker).await;
        assert_eq!(
            next_error(&mut errors).await.as_deref(),
            Some(r#"Permissions Violation for Publish to "nodes.n2.files.x""#)
        );
        let _other = worker.subscribe("nodes.n2.>").await.expect("subscribe");
        round_trip(&worker).await;
        assert_eq!(
            next_error(&mut errors).await.as_deref(),
            Some(r#"Permissions Violation for Subscription to "nodes.n2.>""#)
        );
        // Its own node, but not a subject it may publish to.
        worker
            .publish("nodes.n1.backend.install", "no".into())
            .await
            .expect("publish");
        round_trip(&worker).await;
        assert_eq!(
            next_error(&mut errors).await.as_deref(),
            Some(r#"Permissions Violation for Publish to "nodes.n1.backend.install""#)
        );
        // Nothing from the forbidden publishes reached the observer.
        let stray = tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut seen),
        )
        .await;
        assert!(
            stray.is_err(),
            "forbidden publishes are dropped by the server"
        );
    })
    .await;
}

// -- TLS (NA-13…NA-16) ---------------------------------------------------------------------

#[tokio::test]
async fn na13_tls_server_never_talks_plaintext() {
    bounded(async {
        let server = NatsServer::start_with(
            &Auth::Anonymous,
            Some(Tls {
                verify_client: false,
            }),
        );
        assert!(server.url().starts_with("tls://"));
        // async-nats upgrades on `tls_required`, then fails without the CA.
        let (kind, text) = expect_error(connect(ConnectOptions::new(), &server.plain_url()).await);
        assert_eq!(kind, ConnectErrorKind::Io, "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");

        // A raw plaintext client gets no PONG.
        let port = server.port();
        let reply = tokio::task::spawn_blocking(move || raw_plaintext_probe(port))
            .await
            .expect("probe thread");
        assert!(
            !reply.contains("PONG") && !reply.contains("+OK"),
            "plaintext session: {reply:?}"
        );
        assert!(
            server.wait_for_log("TLS handshake error", Duration::from_secs(2)),
            "the server refuses the plaintext CONNECT: {}",
            server.log()
        );
    })
    .await;
}

/// Reads INFO, sends `CONNECT {}` + `PING` in the clear, returns what came back (until close or
/// 2 s).
fn raw_plaintext_probe(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let info = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(info.contains("\"tls_required\":true"), "INFO: {info}");
    let _ = stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn na14_client_requiring_tls_refuses_a_plaintext_server() {
    bounded(async {
        let server = NatsServer::start(&Auth::Anonymous);
        let (kind, text) =
            expect_error(connect(ConnectOptions::new().require_tls(true), &server.url()).await);
        assert_eq!(kind, ConnectErrorKind::Io, "{text}");
        assert!(text.contains("corrupt message"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn na15_server_cert_from_an_unknown_ca_is_a_tls_error() {
    bounded(async {
        let server = NatsServer::start_with(
            &Auth::Anonymous,
            Some(Tls {
                verify_client: false,
            }),
        );
        let files = server.tls_files().expect("tls files").clone();
        let opts = ConnectOptions::new().add_root_certificates(files.unknown_ca.clone());
        let (kind, text) = expect_error(connect(opts, &server.url()).await);
        assert_eq!(kind, ConnectErrorKind::Io, "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
        // Control: the right CA connects.
        let opts = ConnectOptions::new().add_root_certificates(files.ca.clone());
        expect_connected(connect(opts, &server.url()).await).await;
    })
    .await;
}

#[tokio::test]
async fn na16_mutual_tls_needs_a_client_certificate() {
    bounded(async {
        let server = NatsServer::start_with(
            &Auth::Anonymous,
            Some(Tls {
                verify_client: true,
            }),
        );
        let files = server.tls_files().expect("tls files").clone();
        let without = ConnectOptions::new().add_root_certificates(files.ca.clone());
        // TLS 1.3: the client's handshake completes, the server's alert arrives on the first
        // read (observed: `IO error: received fatal alert: CertificateRequired`).
        let (kind, text) = expect_error(connect(without, &server.url()).await);
        assert_eq!(kind, ConnectErrorKind::Io, "{text}");
        let with = ConnectOptions::new()
            .add_root_certificates(files.ca.clone())
            .add_client_certificate(files.client_cert.clone(), files.client_key.clone());
        expect_connected(connect(with, &server.url()).await).await;
    })
    .await;
}

#[tokio::test]
async fn tls_combines_with_operator_mode() {
    bounded(async {
        let operator = Operator::new();
        let server = NatsServer::start_with(
            &operator.auth(),
            Some(Tls {
                verify_client: true,
            }),
        );
        let files = server.tls_files().expect("tls files").clone();
        let (jwt, seed) = operator.mint_user("n1", NodeType::Agent, 3600);
        let opts = jwt_options(jwt, seed)
            .add_root_certificates(files.ca.clone())
            .add_client_certificate(files.client_cert.clone(), files.client_key.clone());
        expect_connected(connect(opts, &server.url()).await).await;
    })
    .await;
}

// -- Harness behaviour ---------------------------------------------------------------------

#[tokio::test]
async fn restart_with_other_credentials_keeps_the_port_and_refuses_old_ones() {
    bounded(async {
        let mut server = NatsServer::start(&Auth::Token("first".into()));
        let port = server.port();
        expect_connected(connect(ConnectOptions::with_token("first".into()), &server.url()).await)
            .await;
        server.restart_with(&Auth::Token("second".into()));
        assert_eq!(server.port(), port, "same port after restart");
        assert_eq!(
            expect_kind(connect(ConnectOptions::with_token("first".into()), &server.url()).await),
            ConnectErrorKind::AuthorizationViolation
        );
        expect_connected(connect(ConnectOptions::with_token("second".into()), &server.url()).await)
            .await;
        server.stop();
        let kind =
            expect_kind(connect(ConnectOptions::with_token("second".into()), &server.url()).await);
        assert_ne!(
            kind,
            ConnectErrorKind::AuthorizationViolation,
            "stopped: {kind:?}"
        );
    })
    .await;
}
