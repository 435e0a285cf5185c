//! NATS through async-nats: one connection attempt per [`Effect::ConnectNats`] with the
//! credential the core chose, subscriptions confirmed by a server round trip, and the worker's
//! request-reply handlers.
//!
//! [`Effect::ConnectNats`]: nodegate_core::startup::Effect::ConnectNats

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, Subscriber};
use futures_util::StreamExt as _;
use nodegate_core::config::{NatsCredentials, NatsTls};
use nodegate_core::node_files;
use nodegate_core::startup::{
    Handler, NatsConnectError, NatsCredential, NatsEvent, NatsServerInfo, StopReason, Subscription,
};
use nodegate_http::NatsRoots;
use tokio::sync::{broadcast, mpsc};
use tracing::warn;

/// Time allowed for one connection attempt (TCP, TLS, INFO, CONNECT and the first PONG).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the round trip that confirms subscriptions.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long server errors are collected after the confirming round trip.
const CONFIRM_SETTLE: Duration = Duration::from_millis(300);

/// The credential used by every (re)connect of the live connection; the core replaces it when
/// minted credentials are refreshed.
pub(crate) type CredentialCell = Arc<RwLock<NatsCredential>>;

/// What the NATS side reports back to the driver.
#[derive(Debug)]
pub(crate) enum Report {
    /// A connection event.
    Event(NatsEvent),
    /// A stop request arrived on `nodes.<id>.stop`.
    Stop(StopReason),
}

/// Connects once with the cell's credential. Events go to `reports`; server errors are also
/// broadcast on `errors` (subscription confirmation reads them).
pub(crate) async fn connect(
    url: &str,
    tls: &NatsTls,
    cell: CredentialCell,
    reports: mpsc::UnboundedSender<Report>,
    errors: broadcast::Sender<String>,
) -> Result<(NatsServerInfo, Client), NatsConnectError> {
    let credential = cell
        .read()
        .map_err(|_| NatsConnectError::Other("credential lock poisoned".into()))?
        .clone();
    let mut options = match &credential {
        NatsCredential::Static(NatsCredentials::Jwt { .. }) | NatsCredential::Jwt { .. } => {
            jwt_options(cell.clone())
        }
        _ => ConnectOptions::new(),
    };
    options = match credential {
        NatsCredential::Anonymous
        | NatsCredential::Static(NatsCredentials::None)
        | NatsCredential::Static(NatsCredentials::Jwt { .. })
        | NatsCredential::Jwt { .. } => options,
        NatsCredential::Static(NatsCredentials::Token(token)) => {
            options.token(token.expose().to_owned())
        }
        NatsCredential::Static(NatsCredentials::UserPassword { user, password }) => {
            options.user_and_password(user, password.expose().to_owned())
        }
        NatsCredential::Static(NatsCredentials::Nkey { seed }) => {
            options.nkey(seed.expose().to_owned())
        }
        NatsCredential::Static(NatsCredentials::CredsFile { path }) => options
            .credentials_file(&path)
            .await
            .map_err(|e| NatsConnectError::Other(format!("LOCALAI_NATS_CREDS_FILE: {e}")))?,
    };
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(PathBuf::from(ca));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.add_client_certificate(PathBuf::from(cert), PathBuf::from(key));
    }
    if tls.ca.is_some() || tls.cert.is_some() || url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    let events = reports.clone();
    options = options
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .event_callback(move |event| {
            let events = events.clone();
            let errors = errors.clone();
            async move {
                let report = match event {
                    Event::Connected => NatsEvent::Reconnected,
                    Event::Disconnected => NatsEvent::Disconnected,
                    Event::ServerError(error) => {
                        // The server's own `-ERR` text, for the core to read (async-nats'
                        // `Display` prefixes it with "nats: ").
                        let text = match error {
                            async_nats::ServerError::AuthorizationViolation => {
                                "Authorization Violation".to_owned()
                            }
                            async_nats::ServerError::Other(text) => text,
                            other => other.to_string(),
                        };
                        let _ = errors.send(text.clone());
                        NatsEvent::ServerError(text)
                    }
                    other => {
                        warn!("NATS: {other}");
                        return;
                    }
                };
                let _ = events.send(Report::Event(report));
            }
        });
    let attempt = tokio::time::timeout(
        CONNECT_TIMEOUT + Duration::from_secs(2),
        options.connect(url),
    );
    let client = match attempt.await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return Err(classify(&error)),
        Err(_) => {
            return Err(NatsConnectError::Unreachable(format!(
                "no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let info = NatsServerInfo {
        auth_required: client.server_info().auth_required,
    };
    Ok((info, client))
}

/// Options whose auth callback reads the JWT and signs the nonce with the seed held in the
/// cell at each (re)connect, so refreshed credentials are used without a new client.
fn jwt_options(cell: CredentialCell) -> ConnectOptions {
    ConnectOptions::with_auth_callback(move |nonce| {
        let cell = cell.clone();
        async move {
            let (jwt, seed) = match &*cell.read().map_err(|_| auth_error("lock poisoned"))? {
                NatsCredential::Jwt { jwt, seed, .. }
                | NatsCredential::Static(NatsCredentials::Jwt { jwt, seed }) => {
                    (jwt.expose().to_owned(), seed.expose().to_owned())
                }
                _ => return Err(auth_error("no NATS user JWT available")),
            };
            let pair = nkeys::KeyPair::from_seed(&seed)
                .map_err(|_| auth_error("the NATS user seed is not a valid nkey seed"))?;
            let signature = pair
                .sign(&nonce)
                .map_err(|_| auth_error("signing the server nonce failed"))?;
            let mut auth = async_nats::Auth::new();
            auth.jwt = Some(jwt);
            auth.signature = Some(signature);
            Ok(auth)
        }
    })
}

fn auth_error(text: &str) -> async_nats::AuthError {
    async_nats::AuthError::new(text.to_owned())
}

/// Maps async-nats' connect errors onto the core's kinds (no secret in the texts: async-nats
/// does not echo credentials).
fn classify(error: &async_nats::ConnectError) -> NatsConnectError {
    let text = error.to_string();
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            NatsConnectError::AuthorizationViolation(text)
        }
        ConnectErrorKind::Tls => NatsConnectError::Tls(text),
        // rustls handshake failures reach async-nats as I/O errors: tell them by their text.
        ConnectErrorKind::Io if is_tls_failure(&text) => NatsConnectError::Tls(text),
        ConnectErrorKind::TimedOut | ConnectErrorKind::Io | ConnectErrorKind::Dns => {
            NatsConnectError::Unreachable(text)
        }
        _ => NatsConnectError::Other(text),
    }
}

fn is_tls_failure(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "corrupt message",
        "fatal alert",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Subscribes to every subject, flushes, and reports a permission violation quoting one of
/// them as an error (LocalAI's "confirmed subscriptions").
pub(crate) async fn subscribe_all(
    client: &Client,
    subscriptions: &[Subscription],
    errors: &broadcast::Sender<String>,
) -> Result<Vec<(Subscription, Subscriber)>, String> {
    let mut seen = errors.subscribe();
    let mut out = Vec::with_capacity(subscriptions.len());
    for subscription in subscriptions {
        let subject = subscription.subject.clone();
        let subscriber = match &subscription.queue {
            Some(queue) => client.queue_subscribe(subject, queue.clone()).await,
            None => client.subscribe(subject).await,
        }
        .map_err(|e| format!("subscribing to {}: {e}", subscription.subject))?;
        out.push((subscription.clone(), subscriber));
    }
    // async-nats' `flush` only writes the socket; a request to a fresh inbox is a real round
    // trip (the server answers "no responders" after it has processed every SUB before it).
    let probe = format!("{}.confirm", client.new_inbox());
    match tokio::time::timeout(CONFIRM_TIMEOUT, client.request(probe, bytes::Bytes::new())).await {
        Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(format!("confirming subscriptions: {error}")),
        Err(_) => return Err("confirming subscriptions: no answer from the server".into()),
    }
    // Event callbacks run on their own task: give a violation a moment to arrive.
    tokio::time::sleep(CONFIRM_SETTLE).await;
    let mut texts = Vec::new();
    while let Ok(text) = seen.try_recv() {
        texts.push(text);
    }
    if let Some(denied) = nodegate_core::startup::denied_subscription(&texts, subscriptions) {
        return Err(denied);
    }
    Ok(out)
}

/// Serves the worker's subscriptions until each subscription ends.
pub(crate) fn serve_worker(
    client: &Client,
    subscriptions: Vec<(Subscription, Subscriber)>,
    roots: Option<Arc<NatsRoots>>,
    reports: mpsc::UnboundedSender<Report>,
) {
    for (subscription, mut subscriber) in subscriptions {
        let client = client.clone();
        let roots = roots.clone();
        let reports = reports.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let reply = match (subscription.handler, &roots) {
                    (Handler::NodeStop, _) => {
                        let _ = reports.send(Report::Stop(StopReason::NatsStop));
                        None
                    }
                    (Handler::FilesListDir, Some(roots)) => {
                        let roots = roots.clone();
                        let payload = message.payload.to_vec();
                        tokio::task::spawn_blocking(move || roots.listdir(&payload))
                            .await
                            .ok()
                    }
                    (Handler::FilesTemp, Some(roots)) => {
                        let roots = roots.clone();
                        tokio::task::spawn_blocking(move || roots.temp()).await.ok()
                    }
                    _ => Some(node_files::error_reply("not served by this node")),
                };
                if let (Some(reply), Some(to)) = (reply, message.reply)
                    && let Err(error) = client.publish(to, reply.into()).await
                {
                    warn!("NATS reply failed: {error}");
                }
            }
        });
    }
}
