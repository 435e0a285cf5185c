//! NATS on async-io, driven by the core's sans-IO client ([`nodegate_core::nats::NatsClient`]):
//! this module opens sockets, runs TLS when the core asks for it (futures-rustls), turns the
//! start-up machine's credential into signers, and carries bytes and timers. Every protocol
//! decision — the handshake for each credential mode, keepalive, what a `-ERR` means, whether
//! and when to reconnect — is the core's.
//!
//! [`connect`] makes one bounded attempt and, once the server has accepted the credential,
//! hands back a [`Client`]; the connection then lives in a task of its own that reconnects
//! (re-sending every subscription) with the credential the [`CredentialCell`] holds at that
//! moment, and reports [`NatsEvent`]s (down, back, server errors) to the member.

mod credential;
mod link;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use nodegate_core::config::NatsTls;
use nodegate_core::nats::{
    ClientConfig, Msg, NatsClient, RequestFailure, ServerError, Sid, TlsMode,
};
use nodegate_core::startup::{
    NatsConnectError, NatsCredential, NatsEvent, NatsServerInfo, Subscription, denied_subscription,
};
use smol::channel::{Receiver, Sender};

use crate::rt;
use crate::tls;
use link::{Command, Link, Target};

/// Time allowed for one connection attempt (TCP, TLS, INFO, CONNECT and the first PONG).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the round trip that confirms subscriptions.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// The default port of `nats://` URLs.
const DEFAULT_PORT: u16 = 4222;

/// The credential used by every (re)connect of a live connection; the member replaces it when
/// minted credentials are refreshed.
pub type CredentialCell = Arc<RwLock<NatsCredential>>;

/// A live NATS connection (cheap to clone; the connection closes when every clone is dropped
/// or [`Client::close`] is called).
#[derive(Clone)]
pub struct Client {
    commands: Sender<Command>,
}

/// The messages of one subscription.
pub struct Subscriber {
    sid: Sid,
    messages: Receiver<Msg>,
}

/// Where to connect, and with which TLS settings.
#[derive(Clone)]
pub struct NatsOptions {
    /// `nats://host:port`, `tls://host:port` or `host:port` (user info is ignored).
    pub url: String,
    /// CA, client certificate and key files.
    pub tls: NatsTls,
    /// The connection's name in `CONNECT`.
    pub name: Option<String>,
}

/// Connects once with the cell's credential: `Ok` once the server has answered the
/// handshake's `PING` (so it accepted the credential). Events of the live connection go to
/// `events`.
///
/// # Errors
/// The attempt's failure as the start-up machine reads it (rejected credential, TLS,
/// unreachable, other); no secret in the text.
pub async fn connect(
    options: &NatsOptions,
    cell: CredentialCell,
    events: Sender<NatsEvent>,
) -> Result<(NatsServerInfo, Client), NatsConnectError> {
    let (host, port, tls_url) = parse_url(&options.url)
        .ok_or_else(|| NatsConnectError::Other("LOCALAI_NATS_URL is not a NATS URL".into()))?;
    let wants_tls = tls_url || options.tls.ca.is_some() || options.tls.cert.is_some();
    let tls = if wants_tls {
        let identity = options
            .tls
            .cert
            .as_deref()
            .zip(options.tls.key.as_deref())
            .map(|(c, k)| (std::path::Path::new(c), std::path::Path::new(k)));
        let ca = options.tls.ca.as_deref().map(std::path::Path::new);
        Some(tls::client_config(ca, identity).map_err(NatsConnectError::Tls)?)
    } else {
        None
    };
    let credential = {
        let held = cell
            .read()
            .map_err(|_| NatsConnectError::Other("credential lock poisoned".into()))?;
        credential::for_core(&held)?
    };
    let mut config = ClientConfig::new(&inbox_nonce());
    config.name.clone_from(&options.name);
    config.tls = if tls.is_some() {
        TlsMode::Upgrade
    } else {
        TlsMode::Disabled
    };
    config.connect_timeout = CONNECT_TIMEOUT;
    // A member keeps its link for life: reconnect for as long as the core says it can help.
    config.max_reconnects = None;
    let stream = tls::connect_tcp(&host, port, CONNECT_TIMEOUT)
        .await
        .map_err(|e| NatsConnectError::Unreachable(format!("{host}:{port}: {e}")))?;
    let client = NatsClient::new(config, credential, link::now())
        .map_err(|e| NatsConnectError::Other(e.to_string()))?;
    let target = Target {
        host,
        port,
        tls,
        connect_timeout: CONNECT_TIMEOUT,
    };
    let (first_tx, first_rx) = smol::channel::bounded(1);
    let (commands_tx, commands_rx) = smol::channel::unbounded();
    let link = Link::new(
        client,
        tls::Stream::Plain(stream),
        target,
        cell,
        events,
        first_tx,
    );
    rt::spawn(link.run(commands_rx)).detach();
    let answer = rt::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), first_rx.recv()).await;
    match answer {
        Some(Ok(Ok(info))) => Ok((
            info,
            Client {
                commands: commands_tx,
            },
        )),
        Some(Ok(Err(error))) => Err(error),
        Some(Err(_)) => Err(NatsConnectError::Other(
            "the NATS connection task ended".into(),
        )),
        None => {
            let (done, _) = smol::channel::bounded(1);
            let _ = commands_tx.try_send(Command::Close { done });
            Err(NatsConnectError::Unreachable(format!(
                "no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
    }
}

impl Client {
    async fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = smol::channel::bounded(1);
        self.commands.send(command(tx)).await.ok()?;
        rx.recv().await.ok()
    }

    /// Subscribes to every `(subject, queue group)` and confirms with a server round trip:
    /// the subscribers, and every server error (permission violations) that arrived before
    /// the round trip ended.
    ///
    /// # Errors
    /// Not connected, an invalid subject, or the connection closed first.
    pub async fn subscribe_confirmed(
        &self,
        subjects: Vec<(String, Option<String>)>,
    ) -> Result<(Vec<Subscriber>, Vec<ServerError>), String> {
        self.ask(|reply| Command::Subscribe { subjects, reply })
            .await
            .unwrap_or_else(|| Err("the NATS connection is closed".into()))
    }

    /// Publishes `payload` to `subject`, with `reply_to` as its reply subject when given.
    ///
    /// # Errors
    /// Not connected, an invalid subject or a payload over the server's limit.
    pub async fn publish(
        &self,
        subject: &str,
        reply_to: Option<&str>,
        payload: impl Into<Bytes>,
    ) -> Result<(), String> {
        let (subject, reply_to, payload) = (
            subject.to_owned(),
            reply_to.map(str::to_owned),
            payload.into(),
        );
        self.ask(|done| Command::Publish {
            subject,
            reply_to,
            payload,
            done,
        })
        .await
        .unwrap_or_else(|| Err("the NATS connection is closed".into()))
    }

    /// Sends a request and waits for its reply (bounded by the core's request timeout).
    ///
    /// # Errors
    /// No responders, no reply in time, or the connection closed.
    pub async fn request(
        &self,
        subject: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Msg, RequestFailure> {
        let (subject, payload) = (subject.to_owned(), payload.into());
        self.ask(|reply| Command::Request {
            subject,
            payload,
            reply,
        })
        .await
        .unwrap_or(Err(RequestFailure::ConnectionClosed))
    }

    /// A server round trip: everything sent before has been processed.
    ///
    /// # Errors
    /// Not connected, or the connection closed first.
    pub async fn flush(&self) -> Result<(), String> {
        self.ask(|reply| Command::Flush { reply })
            .await
            .unwrap_or_else(|| Err("the NATS connection is closed".into()))
    }

    /// Closes the connection (what was published before is written first).
    pub async fn close(&self) {
        let _ = self.ask(|done| Command::Close { done }).await;
    }
}

impl Subscriber {
    /// The subscription's id on its connection.
    #[must_use]
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The next message; `None` once the connection is closed.
    pub async fn next(&self) -> Option<Msg> {
        self.messages.recv().await.ok()
    }
}

/// Subscribes to every subject the start-up machine asked for and confirms them: a
/// permission violation quoting one of them is an error (LocalAI's confirmed subscriptions).
///
/// # Errors
/// A text for [`Startup::handle_subscribed`](nodegate_core::startup::Startup::handle_subscribed).
pub async fn subscribe_all(
    client: &Client,
    subscriptions: &[Subscription],
) -> Result<Vec<(Subscription, Subscriber)>, String> {
    let subjects = subscriptions
        .iter()
        .map(|s| (s.subject.clone(), s.queue.clone()))
        .collect();
    let confirmed = rt::timeout(CONFIRM_TIMEOUT, client.subscribe_confirmed(subjects)).await;
    let (subscribers, errors) = match confirmed {
        Some(result) => result?,
        None => return Err("confirming subscriptions: no answer from the server".into()),
    };
    let texts: Vec<String> = errors.iter().map(ServerError::server_text).collect();
    if let Some(denied) = denied_subscription(&texts, subscriptions) {
        return Err(denied);
    }
    Ok(subscriptions.iter().cloned().zip(subscribers).collect())
}

/// `(host, port, tls)` of `nats://[user@]host[:port]`, `tls://…` or `host[:port]`.
fn parse_url(url: &str) -> Option<(String, u16, bool)> {
    let url = url.trim();
    let (tls, rest) = match url.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "nats" => (false, rest),
            "tls" => (true, rest),
            _ => return None,
        },
        None => (false, url),
    };
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (hostport.to_owned(), DEFAULT_PORT),
        }
    };
    (!host.is_empty()).then_some((host, port, tls))
}

/// An unpredictable inbox nonce for this connection (from a fresh nkey's random bytes: the
/// core has no randomness).
fn inbox_nonce() -> String {
    nkeys::KeyPair::new_user().public_key()[1..23].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        let cases = [
            ("nats://127.0.0.1:4222", Some(("127.0.0.1", 4222, false))),
            (
                "tls://nats.example:7422",
                Some(("nats.example", 7422, true)),
            ),
            ("nats://user:pass@host", Some(("host", 4222, false))),
            ("host:1", Some(("host", 1, false))),
            ("nats://[::1]:4223", Some(("::1", 4223, false))),
            ("http://host:1", None),
            ("nats://host:port", None),
            ("nats://", None),
        ];
        for (url, expected) in cases {
            let got = parse_url(url);
            assert_eq!(
                got.as_ref().map(|(h, p, t)| (h.as_str(), *p, *t)),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn inbox_nonces_differ_and_make_a_subject_token() {
        let (a, b) = (inbox_nonce(), inbox_nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
