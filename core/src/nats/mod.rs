//! The NATS client protocol, sans I/O: a parser of server operations, an encoder of client
//! operations, and [`NatsClient`], one connection as a state machine that an adapter drives
//! over any byte stream (tokio, smol, blocking standard-library sockets, …). It follows the
//! NATS client protocol (docs.nats.io, "Client Protocol").
//!
//! # In scope
//! - Parsing `INFO`, `MSG`, `HMSG` (headers `NATS/1.0[ status [description]]`), `PING`, `PONG`,
//!   `+OK`, `-ERR` from input split at any byte ([`Parser`]): operation names case-insensitive,
//!   control lines bounded by [`Limits::max_line`], payloads by the `max_payload` of the last
//!   `INFO` (capped by [`Limits::max_payload_cap`]); an oversize announcement is a typed error,
//!   never an allocation; "need more bytes" is `Ok(None)`, not an error.
//! - Encoding `CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG` ([`ClientOp`]), and the
//!   server operations in canonical form (round trips, fake servers).
//! - Subjects and queue groups that can only hold valid names ([`Subject`], [`QueueGroup`]).
//! - The handshake for every credential mode ([`Credential`]): anonymous, token,
//!   user + password, nkey and user JWT, both signing the server nonce through the caller's
//!   [`Signer`](crate::jwt::Signer) (the core never sees a seed); TLS decided, never skipped
//!   ([`TlsMode`]).
//! - Keepalive (`PING` every [`ClientConfig::ping_interval`], stale after
//!   [`ClientConfig::max_pings_out`] misses), answers to the server's `PING`s, flushes.
//! - Subscriptions that survive reconnects, request-reply on one `_INBOX.<nonce>.*`
//!   subscription with "no responders" and timeouts, `-ERR` texts as [`ServerError`]s.
//! - The `.creds` file format ([`parse_creds`]): the user JWT and seed of a file the adapter read.
//! - Reconnect decisions as data ([`NatsClient::should_reconnect`],
//!   [`NatsClient::reset_for_reconnect`]).
//!
//! # Out of scope
//! Sockets, DNS, TLS itself (the adapter runs the handshake when told), clocks, randomness (the
//! inbox nonce is an argument), reading `.creds` files or seeds, choosing among cluster URLs,
//! JetStream, `UNSUB` with a message count from the machine, lame duck handling beyond keeping
//! the `INFO`, and the server side of the protocol.
//!
//! # States
//!
//! ```text
//!  new / reset_for_reconnect
//!        │
//!        ▼
//!  AwaitingInfo ──INFO says tls_required, TlsMode::Disabled──▶ Closed(TlsRequiredByServer)
//!        │  ──TlsMode::Upgrade, server offers no TLS──────────▶ Closed(TlsNotOffered)
//!        │  ──anything but INFO / -ERR────────────────────────▶ Closed(NoInfo)
//!        │  ──bytes after INFO before TLS is up────────────────▶ Closed(PlaintextBeforeTls)
//!        │ INFO (TlsMode::Upgrade: Event::StartTls ─▶ AwaitingTls ─handle_tls_established─┐)
//!        ▼                                                                               │
//!  send CONNECT + PING ◀────────────────────────────────────────────────────────────────┘
//!        │
//!        ▼
//!  AwaitingPong ──-ERR (any)──▶ Closed(ServerError(AuthorizationViolation | …))
//!        │  PONG                                  (connect_timeout passed: HandshakeTimeout)
//!        ▼
//!  Connected: Event::Connected, live SUBs re-sent; PING every ping_interval
//!        │  ──max_pings_out missed──▶ Closed(StaleConnection)
//!        │  ──-ERR that closes (expired, …)──▶ Closed(ServerError(..))
//!        │  ──permission violation──▶ Event::ServerError, stays Connected
//!        │  ──handle_disconnected──▶ Closed(ConnectionLost)
//!        ▼
//!  Closed(reason) ──should_reconnect(reason) = Some(delay)──▶ (new socket) reset_for_reconnect
//! ```
//!
//! # The drain contract
//! After [`NatsClient::new`] and after **every** `handle_*` call or command: write every buffer
//! [`NatsClient::poll_transmit`] returns, in order; handle every [`NatsClient::poll_event`]
//! until `None`; then wait for input or until [`NatsClient::poll_timeout`] and call
//! [`NatsClient::handle_timeout`]. Bytes read go to [`NatsClient::handle_input`] as they come;
//! EOF or an I/O error is [`NatsClient::handle_disconnected`]. After [`Event::Closed`] the
//! machine ignores input; ask [`NatsClient::should_reconnect`].
//!
//! The canonical run loop, here against a canned server:
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::Duration;
//! use nodegate_core::config::Secret;
//! use nodegate_core::nats::{ClientConfig, Credential, Event, NatsClient};
//!
//! // What a real nats-server (token mode) sends, one read at a time.
//! let mut reads: VecDeque<&[u8]> = VecDeque::from([
//!     &br#"INFO {"server_id":"N1","version":"2.15.1","proto":1,"headers":true,"auth_required":true,"max_payload":1048576} "#[..],
//!     &b"\r\n"[..],
//!     &b"PONG\r\nMSG jobs.1 1 5\r\nhel"[..],
//!     &b"lo\r\nPING\r\n"[..],
//! ]);
//! let mut written = Vec::new(); // the socket's write side
//! let mut now = Duration::from_secs(1_700_000_000); // the adapter's clock
//!
//! let credential = Credential::Token(Secret::new("s3cret"));
//! let mut client = NatsClient::new(ClientConfig::new("nonce42"), credential, now).unwrap();
//! let sid = client.subscribe("jobs.>", Some("workers")).unwrap();
//! let mut got = Vec::new();
//! loop {
//!     // Drain: transmit, then events.
//!     while let Some(bytes) = client.poll_transmit() {
//!         written.extend_from_slice(&bytes); // socket.write_all(&bytes)
//!     }
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             Event::Connected { server_info } => assert_eq!(server_info.version, "2.15.1"),
//!             Event::Message(msg) => got.push((msg.sid, msg.payload)),
//!             Event::Closed(reason) => panic!("closed: {reason}"),
//!             _ => {}
//!         }
//!     }
//!     // Wait for input or the timer (here: the next canned read, or the end).
//!     match reads.pop_front() {
//!         Some(bytes) => client.handle_input(bytes, now),
//!         None => break,
//!     }
//!     if client.poll_timeout().is_some_and(|at| now >= at) {
//!         client.handle_timeout(now);
//!     }
//!     now += Duration::from_millis(1);
//! }
//! assert_eq!(got, [(sid, bytes::Bytes::from_static(b"hello"))]);
//! let written = String::from_utf8(written).unwrap();
//! assert!(written.starts_with("CONNECT {\"verbose\":false,\"pedantic\":false,"));
//! assert!(written.contains("\"auth_token\":\"s3cret\""));
//! assert!(written.ends_with("PING\r\nSUB jobs.> workers 1\r\nPONG\r\n"));
//! ```

mod client;
mod creds;
mod encode;
mod error;
mod parse;
#[cfg(test)]
mod tests;
mod types;

pub use client::{
    ClientConfig, CloseReason, CommandError, ConfigError, ConnectionState, Credential, Event,
    FlushId, LANG, NatsClient, RequestFailure, RequestId, TlsMode, VERSION,
};
pub use creds::{CredsError, UserCreds, parse_creds};
pub use encode::{ClientOp, Connect};
pub use error::{Permission, ServerError};
pub use parse::{
    DEFAULT_MAX_LINE, DEFAULT_MAX_PAYLOAD, Limits, MAX_PAYLOAD_CAP, ParseError, Parser, ServerOp,
};
pub use types::{
    HeaderError, Headers, Msg, NameError, QueueGroup, STATUS_NO_RESPONDERS, ServerInfo, Sid,
    Subject,
};
