//! The encoder of client operations (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`),
//! and of server operations in their canonical form (for fake servers, tests and the round-trip
//! fuzz oracle).

use std::fmt;

use bytes::{BufMut, Bytes};
use serde::Serialize;

use super::parse::ServerOp;
use super::types::{Headers, Msg, QueueGroup, Sid, Subject};
use crate::config::Secret;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The fields of `CONNECT`. Secrets are [`Secret`]s: `Debug` never prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// `verbose`: `+OK` after every operation (the client machine sends `false`).
    pub verbose: bool,
    /// `pedantic`: strict subject checks by the server.
    pub pedantic: bool,
    /// `tls_required`: the client runs on TLS.
    pub tls_required: bool,
    /// `name`: the connection's name in the server's monitoring.
    pub name: Option<String>,
    /// `lang`: the client's implementation language.
    pub lang: String,
    /// `version`: the client's version.
    pub version: String,
    /// `protocol`: 1 (dynamic reconfiguration, `INFO` updates).
    pub protocol: u8,
    /// `echo`: deliver this connection's own publications to its subscriptions.
    pub echo: bool,
    /// `headers`: the client understands `HMSG` and sends `HPUB`.
    pub headers: bool,
    /// `no_responders`: the server answers a request nobody listens to with a 503 status.
    pub no_responders: bool,
    /// `auth_token`.
    pub auth_token: Option<Secret>,
    /// `user`.
    pub user: Option<String>,
    /// `pass`.
    pub pass: Option<Secret>,
    /// `nkey`: the public key (`U…`) of an nkey user.
    pub nkey: Option<String>,
    /// `jwt`: a user JWT.
    pub jwt: Option<Secret>,
    /// `sig`: base64url (no padding) of the ed25519 signature of the server nonce.
    pub sig: Option<String>,
}

/// An operation the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`.
    Connect(Box<Connect>),
    /// `PUB` (no headers) or `HPUB` (headers).
    Pub {
        /// Where to publish.
        subject: Subject,
        /// Where replies should go.
        reply: Option<Subject>,
        /// Headers: `HPUB` when present.
        headers: Option<Headers>,
        /// The payload.
        payload: Bytes,
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        /// The subject (wildcards allowed).
        subject: Subject,
        /// The queue group, for load-balanced delivery.
        queue: Option<QueueGroup>,
        /// The id messages will carry.
        sid: Sid,
    },
    /// `UNSUB <sid> [max_msgs]`.
    Unsub {
        /// The subscription.
        sid: Sid,
        /// Unsubscribe after this many more messages.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

impl ClientOp {
    /// Writes the operation, `\r\n` included.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Self::Connect(connect) => {
                out.put_slice(b"CONNECT ");
                out.put_slice(connect.to_json().as_bytes());
                out.put_slice(b"\r\n");
            }
            Self::Pub {
                subject,
                reply,
                headers,
                payload,
            } => encode_message(
                out,
                (b"PUB", b"HPUB"),
                subject,
                None,
                reply.as_ref(),
                headers.as_ref(),
                payload,
            ),
            Self::Sub {
                subject,
                queue,
                sid,
            } => {
                let line = match queue {
                    Some(queue) => format!("SUB {subject} {queue} {sid}\r\n"),
                    None => format!("SUB {subject} {sid}\r\n"),
                };
                out.put_slice(line.as_bytes());
            }
            Self::Unsub { sid, max } => {
                let line = match max {
                    Some(max) => format!("UNSUB {sid} {max}\r\n"),
                    None => format!("UNSUB {sid}\r\n"),
                };
                out.put_slice(line.as_bytes());
            }
            Self::Ping => out.put_slice(b"PING\r\n"),
            Self::Pong => out.put_slice(b"PONG\r\n"),
        }
    }

    /// The encoded bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl ServerOp {
    /// Writes the operation in its canonical form (`INFO` re-serialised, `-ERR` text quoted),
    /// `\r\n` included. Parsing the result gives the operation back.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Self::Info(info) => {
                out.put_slice(b"INFO ");
                out.put_slice(
                    serde_json::to_string(info)
                        .expect("ServerInfo holds only strings, numbers and bools")
                        .as_bytes(),
                );
                out.put_slice(b"\r\n");
            }
            Self::Msg(Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            }) => encode_message(
                out,
                (b"MSG", b"HMSG"),
                subject,
                Some(*sid),
                reply.as_ref(),
                headers.as_ref(),
                payload,
            ),
            Self::Ping => out.put_slice(b"PING\r\n"),
            Self::Pong => out.put_slice(b"PONG\r\n"),
            Self::Ok => out.put_slice(b"+OK\r\n"),
            Self::Err(text) => {
                out.put_slice(b"-ERR '");
                out.put_slice(text.as_bytes());
                out.put_slice(b"'\r\n");
            }
        }
    }

    /// The encoded bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl Connect {
    /// The JSON object of `CONNECT` (it holds the credential: never log it).
    #[must_use]
    pub fn to_json(&self) -> String {
        let json = ConnectJson {
            verbose: self.verbose,
            pedantic: self.pedantic,
            tls_required: self.tls_required,
            auth_token: self.auth_token.as_ref().map(Secret::expose),
            user: self.user.as_deref(),
            pass: self.pass.as_ref().map(Secret::expose),
            name: self.name.as_deref(),
            lang: &self.lang,
            version: &self.version,
            protocol: self.protocol,
            echo: self.echo,
            sig: self.sig.as_deref(),
            jwt: self.jwt.as_ref().map(Secret::expose),
            nkey: self.nkey.as_deref(),
            headers: self.headers,
            no_responders: self.no_responders,
        };
        serde_json::to_string(&json).expect("CONNECT holds only strings, numbers and bools")
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("verbose", &self.verbose)
            .field("pedantic", &self.pedantic)
            .field("tls_required", &self.tls_required)
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .field("protocol", &self.protocol)
            .field("echo", &self.echo)
            .field("headers", &self.headers)
            .field("no_responders", &self.no_responders)
            .field("auth_token", &self.auth_token)
            .field("user", &self.user)
            .field("pass", &self.pass)
            .field("nkey", &self.nkey)
            .field("jwt", &self.jwt)
            .field("sig", &self.sig.as_ref().map(|_| "***"))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ConnectJson<'a> {
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    lang: &'a str,
    version: &'a str,
    protocol: u8,
    echo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nkey: Option<&'a str>,
    headers: bool,
    no_responders: bool,
}

/// `PUB`/`MSG` (`<op> <subject> [sid] [reply] <size>`) or, with headers, `HPUB`/`HMSG`
/// (`... <header size> <total size>`), then the payload and `\r\n`.
fn encode_message(
    out: &mut impl BufMut,
    (plain, with_headers): (&[u8], &[u8]),
    subject: &Subject,
    sid: Option<Sid>,
    reply: Option<&Subject>,
    headers: Option<&Headers>,
    payload: &[u8],
) {
    out.put_slice(if headers.is_some() {
        with_headers
    } else {
        plain
    });
    out.put_u8(b' ');
    out.put_slice(subject.as_str().as_bytes());
    if let Some(sid) = sid {
        out.put_slice(format!(" {sid}").as_bytes());
    }
    if let Some(reply) = reply {
        out.put_u8(b' ');
        out.put_slice(reply.as_str().as_bytes());
    }
    match headers {
        Some(headers) => {
            let header_len = headers.encoded_len();
            out.put_slice(format!(" {header_len} {}\r\n", header_len + payload.len()).as_bytes());
            headers.encode(out);
        }
        None => out.put_slice(format!(" {}\r\n", payload.len()).as_bytes()),
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}
