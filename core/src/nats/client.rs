//! The client machine: one connection's handshake, keepalive, subscriptions and requests.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::encode::{ClientOp, Connect};
use super::error::ServerError;
use super::parse::{Limits, ParseError, Parser, ServerOp};
use super::types::{HeaderError, Headers, Msg, NameError, QueueGroup, ServerInfo, Sid, Subject};
use crate::config::Secret;
use crate::jwt::Signer;
use crate::startup::Time;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// How the connection authenticates in `CONNECT`.
pub enum Credential {
    /// No credential.
    Anonymous,
    /// `auth_token`.
    Token(Secret),
    /// `user` + `pass`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `nkey` (the signer's public key) + `sig` (its signature of the server nonce).
    Nkey(Box<dyn Signer + Send>),
    /// `jwt` + `sig` (the user key's signature of the server nonce).
    Jwt {
        /// The user JWT.
        jwt: Secret,
        /// The user nkey (the JWT's subject).
        signer: Box<dyn Signer + Send>,
    },
}

/// Whether and how the connection runs on TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext. A server whose `INFO` says `tls_required` is refused
    /// ([`CloseReason::TlsRequiredByServer`]), never talked to in plaintext.
    Disabled,
    /// Upgrade after `INFO` (the standard NATS flow): the machine emits [`Event::StartTls`],
    /// the adapter runs the handshake and calls [`NatsClient::handle_tls_established`]. A
    /// server offering no TLS is refused ([`CloseReason::TlsNotOffered`]).
    Upgrade,
    /// The transport is already TLS (the server's `handshake_first`).
    Established,
}

/// The settings of a [`NatsClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The connection's name in `CONNECT`.
    pub name: Option<String>,
    /// TLS.
    pub tls: TlsMode,
    /// The prefix of request inboxes, `_INBOX.<nonce>`: replies arrive on `<prefix>.<id>`
    /// through one `<prefix>.*` subscription. The nonce must be unpredictable and unique per
    /// connection; the core has no randomness, so the adapter chooses it.
    pub inbox_prefix: String,
    /// From construction (or reset) to the first `PONG`: `INFO`, TLS, `CONNECT`, `PING`.
    pub connect_timeout: Duration,
    /// A keepalive `PING` this long after the last one.
    pub ping_interval: Duration,
    /// Close as stale when this many keepalive `PING`s are unanswered at the next interval.
    pub max_pings_out: u32,
    /// A request without a reply in this time fails with [`RequestFailure::TimedOut`].
    pub request_timeout: Duration,
    /// The first reconnect delay (doubled at each failed attempt).
    pub reconnect_backoff_start: Duration,
    /// The largest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Give up after this many reconnects without a connection (`None`: never).
    pub max_reconnects: Option<u32>,
    /// Deliver this connection's own publications to its subscriptions.
    pub echo: bool,
    /// Parser bounds.
    pub limits: Limits,
}

/// Why a [`ClientConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The inbox prefix is not a subject, or holds a wildcard.
    #[error("the inbox prefix must be a subject without wildcards (e.g. `_INBOX.<random nonce>`)")]
    InvalidInbox,
}

/// A request, for matching [`Event::Reply`] and [`Event::RequestFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A flush, for matching [`Event::Flushed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlushId(pub u64);

/// What the machine reports. Drain with [`NatsClient::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ([`TlsMode::Upgrade`]) Run the TLS handshake on the socket now, then call
    /// [`NatsClient::handle_tls_established`]; write nothing before.
    StartTls,
    /// The server answered the handshake's `PING`: the connection is up and every live
    /// subscription has been (re)sent.
    Connected {
        /// The server's `INFO`.
        server_info: Box<ServerInfo>,
    },
    /// A message for one of [`NatsClient::subscribe`]'s subscriptions.
    Message(Msg),
    /// The reply to a [`NatsClient::request`].
    Reply {
        /// The request.
        request: RequestId,
        /// The reply.
        msg: Msg,
    },
    /// A request got no reply.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        reason: RequestFailure,
    },
    /// The server has processed everything sent before the [`NatsClient::flush`].
    Flushed(FlushId),
    /// A `-ERR` that leaves the connection up (a permission violation, an unknown text).
    ServerError(ServerError),
    /// A message with malformed headers was dropped (another client published them).
    Dropped {
        /// Its subscription.
        sid: Sid,
        /// What was wrong.
        error: HeaderError,
    },
    /// The connection is over: close the socket (after writing what
    /// [`NatsClient::poll_transmit`] still returns). Ask [`NatsClient::should_reconnect`].
    Closed(CloseReason),
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// Nobody subscribes to the subject (the server's 503 status).
    NoResponders,
    /// No reply within [`ClientConfig::request_timeout`].
    TimedOut,
    /// The connection closed first.
    ConnectionClosed,
}

/// Why the connection closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    /// The server sent a `-ERR` after which it closes, or any `-ERR` during the handshake.
    #[error("{0}")]
    ServerError(ServerError),
    /// The server's bytes are not NATS.
    #[error("protocol error: {0}")]
    Protocol(ParseError),
    /// The first operation was not `INFO`.
    #[error("the server did not start with INFO: is this a NATS server?")]
    NoInfo,
    /// The server requires TLS and the client was configured without it.
    #[error(
        "the NATS server requires TLS: use a tls:// URL (or configure a CA) instead of plaintext"
    )]
    TlsRequiredByServer,
    /// The client requires TLS and the server offers none.
    #[error("TLS is configured but the NATS server offers none: check the server's tls block")]
    TlsNotOffered,
    /// No `PONG` to the handshake within [`ClientConfig::connect_timeout`].
    #[error("the NATS handshake did not finish in time")]
    HandshakeTimeout,
    /// Keepalive `PING`s went unanswered.
    #[error("the NATS server stopped answering PINGs (stale connection)")]
    StaleConnection,
    /// ([`TlsMode::Upgrade`]) Bytes came after `INFO` before the TLS handshake finished: a
    /// man in the middle may be injecting plaintext that would be read as if it came over TLS.
    #[error("the NATS server sent plaintext after INFO, before the TLS handshake: refused")]
    PlaintextBeforeTls,
    /// The adapter reported the end of the connection ([`NatsClient::handle_disconnected`]).
    #[error("the connection to the NATS server was lost")]
    ConnectionLost,
    /// [`NatsClient::close`].
    #[error("closed on request")]
    Requested,
}

impl CloseReason {
    /// Whether reconnecting with the same settings and credential can succeed: not after an
    /// authorization violation or an expired JWT, a TLS mismatch or a requested close.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ServerError(error) => error.is_retryable(),
            Self::TlsRequiredByServer | Self::TlsNotOffered | Self::Requested => false,
            Self::Protocol(_)
            | Self::NoInfo
            | Self::HandshakeTimeout
            | Self::PlaintextBeforeTls
            | Self::StaleConnection
            | Self::ConnectionLost => true,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// A subject, reply subject or queue group is invalid.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Publishing needs a connection: wait for [`Event::Connected`].
    #[error("not connected to NATS yet: wait for Connected")]
    NotConnected,
    /// The connection is closed: see [`NatsClient::should_reconnect`].
    #[error("the NATS connection is closed")]
    Closed,
    /// Headers plus payload exceed the server's `max_payload`.
    #[error("a {size}-byte message exceeds the server's max_payload of {limit} bytes")]
    PayloadTooLarge {
        /// Headers plus payload.
        size: usize,
        /// The server's bound.
        limit: usize,
    },
    /// The server does not support headers (`INFO` without `headers: true`).
    #[error("the NATS server does not support headers")]
    HeadersNotSupported,
    /// No such live subscription.
    #[error("no subscription {0}")]
    UnknownSid(Sid),
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Waiting for the server's `INFO`.
    AwaitingInfo,
    /// Waiting for the adapter's TLS handshake.
    AwaitingTls,
    /// `CONNECT` and `PING` sent, waiting for `PONG` (or `-ERR`).
    AwaitingPong,
    /// Connected.
    Connected,
    /// Closed.
    Closed,
}

/// The language sent in `CONNECT`.
pub const LANG: &str = "rust";
/// The version sent in `CONNECT`.
pub const VERSION: &str = concat!("nodegate-core-", env!("CARGO_PKG_VERSION"));

impl ClientConfig {
    /// Defaults (plaintext, 5 s handshake, keepalive every 2 min with 2 misses allowed, 10 s
    /// requests, reconnect backoff 500 ms doubling to 30 s, 60 attempts) with the inbox
    /// `_INBOX.<nonce>`.
    #[must_use]
    pub fn new(inbox_nonce: &str) -> Self {
        Self {
            name: None,
            tls: TlsMode::Disabled,
            inbox_prefix: format!("_INBOX.{inbox_nonce}"),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            request_timeout: Duration::from_secs(10),
            reconnect_backoff_start: Duration::from_millis(500),
            reconnect_backoff_max: Duration::from_secs(30),
            max_reconnects: Some(60),
            echo: true,
            limits: Limits::default(),
        }
    }
}

/// One NATS client connection as a state machine. See the [module docs](super) for the state
/// graph and the drain contract.
pub struct NatsClient {
    config: ClientConfig,
    credential: Credential,
    inbox: Subject,
    parser: Parser,
    state: State,
    info: Option<Box<ServerInfo>>,
    out: BytesMut,
    events: VecDeque<Event>,
    /// What each `PING` in flight is for, oldest first (the server answers in order).
    pongs: VecDeque<PingFor>,
    pings_out: u32,
    next_ping: Option<Time>,
    subscriptions: BTreeMap<Sid, (Subject, Option<QueueGroup>)>,
    inbox_sid: Option<Sid>,
    requests: BTreeMap<RequestId, Time>,
    next_sid: u64,
    next_request: u64,
    next_flush: u64,
    reconnects: u32,
    /// One handshake of this machine has succeeded.
    was_connected: bool,
}

impl NatsClient {
    /// A machine for a connection just opened at `now` (the server's `INFO` is next).
    ///
    /// # Errors
    /// [`ConfigError`] when the inbox prefix is not a wildcard-free subject.
    pub fn new(
        config: ClientConfig,
        credential: Credential,
        now: Time,
    ) -> Result<Self, ConfigError> {
        let inbox = Subject::new(config.inbox_prefix.clone())
            .ok()
            .filter(|s| {
                !s.as_str()
                    .split('.')
                    .any(|t| t.is_empty() || t == "*" || t == ">")
            })
            .ok_or(ConfigError::InvalidInbox)?;
        Ok(Self {
            parser: Parser::new(config.limits),
            state: State::AwaitingInfo {
                deadline: now + config.connect_timeout,
            },
            config,
            credential,
            inbox,
            info: None,
            out: BytesMut::new(),
            events: VecDeque::new(),
            pongs: VecDeque::new(),
            pings_out: 0,
            next_ping: None,
            subscriptions: BTreeMap::new(),
            inbox_sid: None,
            requests: BTreeMap::new(),
            next_sid: 1,
            next_request: 1,
            next_flush: 1,
            reconnects: 0,
            was_connected: false,
        })
    }

    // --- getters ------------------------------------------------------------------------------

    /// Where the machine is.
    #[must_use]
    pub fn state(&self) -> ConnectionState {
        match self.state {
            State::AwaitingInfo { .. } => ConnectionState::AwaitingInfo,
            State::AwaitingTls { .. } => ConnectionState::AwaitingTls,
            State::AwaitingPong { .. } => ConnectionState::AwaitingPong,
            State::Connected => ConnectionState::Connected,
            State::Closed(_) => ConnectionState::Closed,
        }
    }

    /// Whether the connection is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    /// Why the connection closed, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match &self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// The server's latest `INFO` on this connection.
    #[must_use]
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.info.as_deref()
    }

    /// The live subscriptions made with [`NatsClient::subscribe`] (re-sent after a reconnect).
    pub fn subscriptions(&self) -> impl Iterator<Item = (Sid, &Subject, Option<&QueueGroup>)> {
        self.subscriptions
            .iter()
            .map(|(sid, (subject, queue))| (*sid, subject, queue.as_ref()))
    }

    /// The inbox prefix of requests (`_INBOX.<nonce>`).
    #[must_use]
    pub fn inbox_prefix(&self) -> &Subject {
        &self.inbox
    }

    // --- inputs -------------------------------------------------------------------------------

    /// Bytes read from the connection (any split).
    pub fn handle_input(&mut self, bytes: &[u8], now: Time) {
        if self.is_closed() || bytes.is_empty() {
            return;
        }
        if matches!(self.state, State::AwaitingTls { .. }) {
            self.close_with(CloseReason::PlaintextBeforeTls);
            return;
        }
        self.parser.push(bytes);
        while !self.is_closed() {
            match self.parser.next_op() {
                Ok(None) => break,
                Ok(Some(op)) => {
                    self.on_op(op, now);
                    if matches!(self.state, State::AwaitingTls { .. }) && self.parser.buffered() > 0
                    {
                        self.close_with(CloseReason::PlaintextBeforeTls);
                    }
                }
                Err(ParseError::InvalidHeaders { sid, error, .. }) => {
                    self.events.push_back(Event::Dropped { sid, error });
                }
                Err(error) => self.close_with(CloseReason::Protocol(error)),
            }
        }
    }

    /// ([`TlsMode::Upgrade`]) The TLS handshake asked for by [`Event::StartTls`] succeeded
    /// (a failed one is [`NatsClient::handle_disconnected`]); from now on
    /// [`NatsClient::handle_input`] takes the decrypted bytes. Plaintext that arrived in
    /// between closes the connection ([`CloseReason::PlaintextBeforeTls`]).
    pub fn handle_tls_established(&mut self, now: Time) {
        if let State::AwaitingTls { deadline } = self.state {
            if now >= deadline {
                self.close_with(CloseReason::HandshakeTimeout);
            } else {
                self.parser = Parser::new(self.config.limits);
                self.send_connect(deadline);
            }
        }
    }

    /// The time returned by [`NatsClient::poll_timeout`] has come.
    pub fn handle_timeout(&mut self, now: Time) {
        match self.state {
            State::Closed(_) => return,
            State::AwaitingInfo { deadline }
            | State::AwaitingTls { deadline }
            | State::AwaitingPong { deadline } => {
                if now >= deadline {
                    self.close_with(CloseReason::HandshakeTimeout);
                    return;
                }
            }
            State::Connected => {
                if self.next_ping.is_some_and(|at| now >= at) {
                    if self.pings_out >= self.config.max_pings_out {
                        self.close_with(CloseReason::StaleConnection);
                        return;
                    }
                    self.pings_out += 1;
                    self.pongs.push_back(PingFor::Keepalive);
                    ClientOp::Ping.encode(&mut self.out);
                    self.next_ping = Some(now + self.config.ping_interval);
                }
            }
        }
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, deadline)| now >= **deadline)
            .map(|(id, _)| *id)
            .collect();
        for request in expired {
            self.requests.remove(&request);
            self.events.push_back(Event::RequestFailed {
                request,
                reason: RequestFailure::TimedOut,
            });
        }
    }

    /// The connection ended (EOF, a read or write error, a failed TLS handshake, or no
    /// connection at all).
    pub fn handle_disconnected(&mut self) {
        if !self.is_closed() {
            self.close_with(CloseReason::ConnectionLost);
        }
    }

    // --- commands -----------------------------------------------------------------------------

    /// Subscribes (at once when connected, otherwise when the connection comes up); the
    /// subscription lives until [`NatsClient::unsubscribe`], across reconnects.
    ///
    /// # Errors
    /// [`CommandError::InvalidName`].
    pub fn subscribe(&mut self, subject: &str, queue: Option<&str>) -> Result<Sid, CommandError> {
        let subject = Subject::new(subject)?;
        let queue = queue.map(QueueGroup::new).transpose()?;
        let sid = self.allocate_sid();
        if self.is_connected() {
            ClientOp::Sub {
                subject: subject.clone(),
                queue: queue.clone(),
                sid,
            }
            .encode(&mut self.out);
        }
        self.subscriptions.insert(sid, (subject, queue));
        Ok(sid)
    }

    /// Ends a subscription.
    ///
    /// # Errors
    /// [`CommandError::UnknownSid`].
    pub fn unsubscribe(&mut self, sid: Sid) -> Result<(), CommandError> {
        self.subscriptions
            .remove(&sid)
            .ok_or(CommandError::UnknownSid(sid))?;
        if self.is_connected() {
            ClientOp::Unsub { sid, max: None }.encode(&mut self.out);
        }
        Ok(())
    }

    /// Publishes (`HPUB` with headers, `PUB` without).
    ///
    /// # Errors
    /// [`CommandError`]: not connected, invalid subject, too large, headers unsupported.
    pub fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        let subject = Subject::new(subject)?;
        let reply = reply.map(Subject::new).transpose()?;
        self.publish_op(subject, reply, headers, payload)
    }

    /// Publishes `payload` to `subject` with a reply subject on this connection's inbox; the
    /// answer comes as [`Event::Reply`], or [`Event::RequestFailed`] (no responders, timeout).
    ///
    /// # Errors
    /// As [`NatsClient::publish`].
    pub fn request(
        &mut self,
        subject: &str,
        payload: &[u8],
        now: Time,
    ) -> Result<RequestId, CommandError> {
        let subject = Subject::new(subject)?;
        self.check_connected()?;
        let request = RequestId(self.next_request);
        let reply = Subject::new(format!("{}.{}", self.inbox, request.0))
            .expect("an inbox prefix and a number make a subject");
        if self.inbox_sid.is_none() {
            let sid = self.allocate_sid();
            self.inbox_sid = Some(sid);
            self.encode_inbox_sub(sid);
        }
        self.publish_op(subject, Some(reply), None, payload)?;
        self.next_request += 1;
        self.requests
            .insert(request, now + self.config.request_timeout);
        Ok(request)
    }

    /// Sends a `PING`: [`Event::Flushed`] comes when the server has processed everything sent
    /// before (so any permission violation for it has arrived).
    ///
    /// # Errors
    /// [`CommandError::NotConnected`] or [`CommandError::Closed`].
    pub fn flush(&mut self) -> Result<FlushId, CommandError> {
        self.check_connected()?;
        let id = FlushId(self.next_flush);
        self.next_flush += 1;
        self.pongs.push_back(PingFor::Flush(id));
        ClientOp::Ping.encode(&mut self.out);
        Ok(id)
    }

    /// Closes the connection ([`CloseReason::Requested`]); what [`NatsClient::poll_transmit`]
    /// still holds should be written first.
    pub fn close(&mut self) {
        if !self.is_closed() {
            self.close_with(CloseReason::Requested);
        }
    }

    /// Replaces the credential used by the next handshake (a refreshed JWT).
    pub fn set_credential(&mut self, credential: Credential) {
        self.credential = credential;
    }

    /// Whether to reconnect after `reason`, and after how long: `None` when it cannot help
    /// ([`CloseReason::is_retryable`]) or [`ClientConfig::max_reconnects`] attempts have failed;
    /// otherwise the backoff, doubling with every attempt that did not connect.
    ///
    /// A rejected credential ([`ServerError::is_rejection`]) is final on a machine that never
    /// connected; once one handshake of this machine has succeeded, a later rejection is
    /// retried with the backoff like a lost link: the credential was accepted before, and the
    /// server's configuration may come back, or the adapter may set a refreshed credential
    /// ([`NatsClient::set_credential`]) — as established NATS clients keep reconnecting.
    #[must_use]
    pub fn should_reconnect(&self, reason: &CloseReason) -> Option<Duration> {
        let rejected_after_connect = self.was_connected
            && matches!(reason, CloseReason::ServerError(error) if error.is_rejection());
        if !(reason.is_retryable() || rejected_after_connect)
            || self
                .config
                .max_reconnects
                .is_some_and(|max| self.reconnects >= max)
        {
            return None;
        }
        let factor = 1u32.checked_shl(self.reconnects).unwrap_or(u32::MAX);
        Some(
            self.config
                .reconnect_backoff_start
                .saturating_mul(factor)
                .min(self.config.reconnect_backoff_max),
        )
    }

    /// Starts over on a new connection opened at `now`: the handshake runs again and, once
    /// connected, every live subscription is sent again with its old [`Sid`]. Pending requests
    /// fail ([`RequestFailure::ConnectionClosed`]); nothing queued for the old connection is
    /// sent.
    pub fn reset_for_reconnect(&mut self, now: Time) {
        self.fail_requests();
        self.reconnects = self.reconnects.saturating_add(1);
        self.parser = Parser::new(self.config.limits);
        self.state = State::AwaitingInfo {
            deadline: now + self.config.connect_timeout,
        };
        self.info = None;
        self.out.clear();
        self.pongs.clear();
        self.pings_out = 0;
        self.next_ping = None;
    }

    // --- outputs ------------------------------------------------------------------------------

    /// Bytes to write to the connection, all of them, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`NatsClient::handle_timeout`] (`None`: only on input).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let state = match self.state {
            State::Closed(_) => return None,
            State::AwaitingInfo { deadline }
            | State::AwaitingTls { deadline }
            | State::AwaitingPong { deadline } => Some(deadline),
            State::Connected => self.next_ping,
        };
        let request = self.requests.values().min().copied();
        match (state, request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsClient")
            .field("state", &self.state)
            .field("credential", &self.credential)
            .field("subscriptions", &self.subscriptions.len())
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Token(_) => f.write_str("Token(***)"),
            Self::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: *** }}")
            }
            Self::Nkey(signer) => write!(f, "Nkey({:?})", signer.public_key()),
            Self::Jwt { signer, .. } => {
                write!(f, "Jwt {{ jwt: ***, user: {:?} }}", signer.public_key())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum State {
    AwaitingInfo { deadline: Time },
    AwaitingTls { deadline: Time },
    AwaitingPong { deadline: Time },
    Connected,
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy)]
enum PingFor {
    Handshake,
    Keepalive,
    Flush(FlushId),
}

impl NatsClient {
    fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    fn check_connected(&self) -> Result<(), CommandError> {
        match self.state {
            State::Connected => Ok(()),
            State::Closed(_) => Err(CommandError::Closed),
            _ => Err(CommandError::NotConnected),
        }
    }

    fn allocate_sid(&mut self) -> Sid {
        let sid = Sid(self.next_sid);
        self.next_sid += 1;
        sid
    }

    fn encode_inbox_sub(&mut self, sid: Sid) {
        ClientOp::Sub {
            subject: Subject::new(format!("{}.*", self.inbox))
                .expect("an inbox prefix and a wildcard make a subject"),
            queue: None,
            sid,
        }
        .encode(&mut self.out);
    }

    fn publish_op(
        &mut self,
        subject: Subject,
        reply: Option<Subject>,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), CommandError> {
        self.check_connected()?;
        let info = self.info.as_deref().expect("connected after an INFO");
        if headers.is_some() && !info.headers {
            return Err(CommandError::HeadersNotSupported);
        }
        let size = headers.map_or(0, Headers::encoded_len) + payload.len();
        let limit = usize::try_from(info.max_payload).unwrap_or(usize::MAX);
        if limit > 0 && size > limit {
            return Err(CommandError::PayloadTooLarge { size, limit });
        }
        ClientOp::Pub {
            subject,
            reply,
            headers: headers.cloned(),
            payload: Bytes::copy_from_slice(payload),
        }
        .encode(&mut self.out);
        Ok(())
    }

    fn on_op(&mut self, op: ServerOp, now: Time) {
        match op {
            ServerOp::Info(info) => self.on_info(info),
            ServerOp::Ping => ClientOp::Pong.encode(&mut self.out),
            ServerOp::Pong => self.on_pong(now),
            ServerOp::Ok => {}
            ServerOp::Err(text) => {
                let error = ServerError::parse(&text);
                if !self.is_connected() || error.closes_connection() {
                    self.close_with(CloseReason::ServerError(error));
                } else {
                    self.events.push_back(Event::ServerError(error));
                }
            }
            ServerOp::Msg(msg) => self.on_msg(msg),
        }
        if matches!(self.state, State::AwaitingInfo { .. }) && !self.is_closed() {
            // Only INFO (which moves on) or -ERR (which closes) may come first.
            self.close_with(CloseReason::NoInfo);
        }
    }

    fn on_info(&mut self, info: Box<ServerInfo>) {
        let State::AwaitingInfo { deadline } = self.state else {
            // An update (cluster changes, `connect_info`, lame duck mode): keep the facts.
            self.info = Some(info);
            return;
        };
        let tls = self.config.tls;
        let offered = info.tls_required || info.tls_available;
        let required = info.tls_required;
        self.info = Some(info);
        match tls {
            TlsMode::Disabled if required => self.close_with(CloseReason::TlsRequiredByServer),
            TlsMode::Upgrade if !offered => self.close_with(CloseReason::TlsNotOffered),
            TlsMode::Upgrade => {
                self.state = State::AwaitingTls { deadline };
                self.events.push_back(Event::StartTls);
            }
            TlsMode::Disabled | TlsMode::Established => self.send_connect(deadline),
        }
    }

    fn send_connect(&mut self, deadline: Time) {
        let nonce = self.info.as_deref().and_then(|i| i.nonce.clone());
        let sign = |signer: &(dyn Signer + Send)| {
            nonce
                .as_ref()
                .map(|n| URL_SAFE_NO_PAD.encode(signer.sign(n.as_bytes())))
        };
        let mut connect = Connect {
            verbose: false,
            pedantic: false,
            tls_required: self.config.tls != TlsMode::Disabled,
            name: self.config.name.clone(),
            lang: LANG.to_owned(),
            version: VERSION.to_owned(),
            protocol: 1,
            echo: self.config.echo,
            headers: true,
            no_responders: true,
            auth_token: None,
            user: None,
            pass: None,
            nkey: None,
            jwt: None,
            sig: None,
        };
        match &self.credential {
            Credential::Anonymous => {}
            Credential::Token(token) => connect.auth_token = Some(token.clone()),
            Credential::UserPassword { user, password } => {
                connect.user = Some(user.clone());
                connect.pass = Some(password.clone());
            }
            Credential::Nkey(signer) => {
                connect.nkey = Some(signer.public_key());
                connect.sig = sign(signer.as_ref());
            }
            Credential::Jwt { jwt, signer } => {
                connect.jwt = Some(jwt.clone());
                connect.sig = sign(signer.as_ref());
            }
        }
        ClientOp::Connect(Box::new(connect)).encode(&mut self.out);
        ClientOp::Ping.encode(&mut self.out);
        self.pongs.push_back(PingFor::Handshake);
        self.state = State::AwaitingPong { deadline };
    }

    fn on_pong(&mut self, now: Time) {
        self.pings_out = 0;
        match self.pongs.pop_front() {
            Some(PingFor::Handshake) => {
                self.state = State::Connected;
                self.reconnects = 0;
                self.was_connected = true;
                self.next_ping = Some(now + self.config.ping_interval);
                let server_info = self.info.clone().unwrap_or_default();
                self.events.push_back(Event::Connected { server_info });
                let subscriptions: Vec<ClientOp> = self
                    .subscriptions
                    .iter()
                    .map(|(sid, (subject, queue))| ClientOp::Sub {
                        subject: subject.clone(),
                        queue: queue.clone(),
                        sid: *sid,
                    })
                    .collect();
                for op in subscriptions {
                    op.encode(&mut self.out);
                }
                if let Some(sid) = self.inbox_sid {
                    self.encode_inbox_sub(sid);
                }
            }
            Some(PingFor::Flush(id)) => self.events.push_back(Event::Flushed(id)),
            Some(PingFor::Keepalive) | None => {}
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        if !self.is_connected() {
            return;
        }
        if Some(msg.sid) == self.inbox_sid {
            let request = msg
                .subject
                .as_str()
                .strip_prefix(self.inbox.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|id| id.parse::<u64>().ok())
                .map(RequestId);
            let Some(request) = request.filter(|r| self.requests.remove(r).is_some()) else {
                return; // a late reply (timed out) or a stray message
            };
            let event = if msg.is_no_responders() {
                Event::RequestFailed {
                    request,
                    reason: RequestFailure::NoResponders,
                }
            } else {
                Event::Reply { request, msg }
            };
            self.events.push_back(event);
        } else if self.subscriptions.contains_key(&msg.sid) {
            self.events.push_back(Event::Message(msg));
        }
    }

    /// Output queued before the close stays (the adapter writes it, then closes the socket):
    /// dropping it would make what is written depend on how the input was split.
    fn close_with(&mut self, reason: CloseReason) {
        self.pongs.clear();
        self.next_ping = None;
        self.fail_requests();
        self.events.push_back(Event::Closed(reason.clone()));
        self.state = State::Closed(reason);
    }

    fn fail_requests(&mut self) {
        for request in std::mem::take(&mut self.requests).into_keys() {
            self.events.push_back(Event::RequestFailed {
                request,
                reason: RequestFailure::ConnectionClosed,
            });
        }
    }
}
