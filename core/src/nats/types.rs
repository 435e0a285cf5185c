//! The values of the NATS protocol that can only hold valid contents: subjects, queue groups,
//! subscription ids, header blocks, the server's `INFO` and a delivered message.

use std::fmt;

use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};
use thiserror::Error;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A subject: not empty, no whitespace, no control byte (the protocol splits its lines on
/// spaces and tabs, so such a byte would change the meaning of the line). Wildcards (`*`, `>`)
/// are allowed; the server judges where they may appear.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

/// A queue group name: the same rules as a [`Subject`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueGroup(String);

/// Why a subject or queue group name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the {what} is empty: give a subject such as `nodes.n1.stop`")]
    Empty {
        /// `subject` or `queue group`.
        what: &'static str,
    },
    /// The name holds a space, a tab, a line break or another control byte.
    #[error("the {what} holds whitespace or a control byte: NATS names are single tokens")]
    Whitespace {
        /// `subject` or `queue group`.
        what: &'static str,
    },
}

/// A subscription id, chosen by the client and echoed by the server in `MSG`/`HMSG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub u64);

/// A header block (`NATS/1.0[ status [description]]\r\nName: value\r\n...\r\n`): an optional
/// status line and ordered `(name, value)` pairs, names case-preserved (NATS header names are
/// case-sensitive), repeated names allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    status: Option<u16>,
    description: Option<String>,
    entries: Vec<(String, String)>,
}

/// Why a header name, value or block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// A name is empty, or holds `:`, whitespace or a byte outside visible ASCII.
    #[error("a header name must be visible ASCII without `:` or whitespace")]
    InvalidName,
    /// A value holds a carriage return or a line feed (it would inject a header line).
    #[error("a header value must not hold a carriage return or a line feed")]
    InvalidValue,
    /// A status is not three digits.
    #[error("a header status must be three digits (e.g. 503)")]
    InvalidStatus,
    /// A description was given without a status, or holds a line break.
    #[error("a header description needs a status and must not hold a line break")]
    InvalidDescription,
    /// The block does not start with `NATS/1.0`.
    #[error("a header block must start with `NATS/1.0`")]
    MissingVersion,
    /// The block does not end with an empty line (`\r\n\r\n`).
    #[error("a header block must end with an empty line")]
    Unterminated,
    /// A header line has no `:`.
    #[error("a header line has no `:`")]
    MissingColon,
}

/// What the server says about itself in `INFO` (the fields a client acts on; others are
/// ignored). Missing fields take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    /// The server's unique id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_id: String,
    /// The server's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// The server's version (`2.15.1`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The protocol level the server speaks.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub proto: i64,
    /// The host the server listens on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The port the server listens on.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// The server accepts `HPUB` and delivers `HMSG`.
    #[serde(skip_serializing_if = "is_false")]
    pub headers: bool,
    /// The client must authenticate in `CONNECT`.
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    /// The client must upgrade the connection to TLS before `CONNECT`.
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    /// The client may upgrade the connection to TLS.
    #[serde(skip_serializing_if = "is_false")]
    pub tls_available: bool,
    /// The largest payload (headers included) the server accepts and delivers, in bytes.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub max_payload: u64,
    /// The challenge an nkey or JWT user signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The id the server gave this connection.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub client_id: u64,
    /// The address the server sees this client at.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    /// Other servers of the cluster a client may reconnect to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// The server is in lame duck mode: it is about to shut down, clients should move.
    #[serde(skip_serializing_if = "is_false")]
    pub ldm: bool,
    /// JetStream is enabled.
    #[serde(skip_serializing_if = "is_false")]
    pub jetstream: bool,
}

/// A message the server delivered (`MSG` or, with headers, `HMSG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The subject it was published to.
    pub subject: Subject,
    /// The subscription it was delivered for.
    pub sid: Sid,
    /// Where the publisher wants a reply.
    pub reply: Option<Subject>,
    /// Its headers (`HMSG`), or `None` (`MSG`).
    pub headers: Option<Headers>,
    /// Its payload.
    pub payload: Bytes,
}

impl Subject {
    /// Validates a subject.
    ///
    /// # Errors
    /// [`NameError`] when it is empty or holds whitespace or a control byte.
    pub fn new(subject: impl Into<String>) -> Result<Self, NameError> {
        let subject = subject.into();
        check_name(&subject, "subject")?;
        Ok(Self(subject))
    }

    /// The subject as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl QueueGroup {
    /// Validates a queue group name.
    ///
    /// # Errors
    /// [`NameError`] when it is empty or holds whitespace or a control byte.
    pub fn new(queue: impl Into<String>) -> Result<Self, NameError> {
        let queue = queue.into();
        check_name(&queue, "queue group")?;
        Ok(Self(queue))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for QueueGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The status of a "no responders" answer to a request.
pub const STATUS_NO_RESPONDERS: u16 = 503;

impl Headers {
    /// An empty block (`NATS/1.0\r\n\r\n`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A block with a status line (`NATS/1.0 503`), as the server sends for "no responders".
    ///
    /// # Errors
    /// [`HeaderError::InvalidStatus`] when `status` has more than three digits;
    /// [`HeaderError::InvalidDescription`] when `description` holds a line break.
    pub fn with_status(status: u16, description: Option<&str>) -> Result<Self, HeaderError> {
        if status > 999 {
            return Err(HeaderError::InvalidStatus);
        }
        let description =
            match description.map(|d| d.trim_matches(|c: char| c.is_ascii_whitespace())) {
                Some("") | None => None,
                Some(d) if d.contains(['\r', '\n']) => return Err(HeaderError::InvalidDescription),
                Some(d) => Some(d.to_owned()),
            };
        Ok(Self {
            status: Some(status),
            description,
            entries: Vec::new(),
        })
    }

    /// Appends `name: value` (after any header of the same name). Leading and trailing spaces
    /// and tabs of the value are dropped, as a reader would drop them.
    ///
    /// # Errors
    /// [`HeaderError::InvalidName`] or [`HeaderError::InvalidValue`].
    pub fn append(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        if !is_header_name(name.as_bytes()) {
            return Err(HeaderError::InvalidName);
        }
        if value.contains(['\r', '\n']) {
            return Err(HeaderError::InvalidValue);
        }
        self.entries.push((name.to_owned(), trim(value).to_owned()));
        Ok(())
    }

    /// The status of the status line (`503`), if any.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The description of the status line (`No Responders`), if any.
    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The first value of `name` (exact, case-sensitive match).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether the block has no header line (a status line may still be there).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parses a whole header block, `NATS/1.0` through the closing empty line.
    ///
    /// # Errors
    /// A [`HeaderError`] naming what is wrong.
    pub fn parse(block: &[u8]) -> Result<Self, HeaderError> {
        let body = block
            .strip_suffix(b"\r\n\r\n")
            .ok_or(HeaderError::Unterminated)?;
        let mut lines = split_crlf(body);
        let version = lines.next().unwrap_or_default();
        let rest = version
            .strip_prefix(b"NATS/1.0")
            .ok_or(HeaderError::MissingVersion)?;
        let mut headers = Self::default();
        if !rest.is_empty() {
            if !matches!(rest.first(), Some(b' ' | b'\t')) {
                return Err(HeaderError::MissingVersion);
            }
            let rest = rest.trim_ascii();
            if !rest.is_empty() {
                let (code, description) = rest.split_at(rest.len().min(3));
                let status = parse_status(code)?;
                if !description.is_empty() && !matches!(description[0], b' ' | b'\t') {
                    return Err(HeaderError::InvalidStatus);
                }
                let description = String::from_utf8_lossy(description.trim_ascii());
                headers = Self::with_status(status, Some(&description))?;
            }
        }
        for line in lines {
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(HeaderError::MissingColon)?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if !is_header_name(name) {
                return Err(HeaderError::InvalidName);
            }
            let name = std::str::from_utf8(name).map_err(|_| HeaderError::InvalidName)?;
            headers.append(name, &String::from_utf8_lossy(value))?;
        }
        Ok(headers)
    }

    /// Writes the block in its canonical form.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(b"NATS/1.0");
        if let Some(status) = self.status {
            out.put_slice(format!(" {status:03}").as_bytes());
            if let Some(description) = &self.description {
                out.put_u8(b' ');
                out.put_slice(description.as_bytes());
            }
        }
        out.put_slice(b"\r\n");
        for (name, value) in &self.entries {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }

    /// The length of the encoded block.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let status = self.status.map_or(0, |_| {
            4 + self.description.as_ref().map_or(0, |d| 1 + d.len())
        });
        let entries: usize = self
            .entries
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum();
        8 + status + 2 + entries + 2
    }

    /// The encoded block.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl Msg {
    /// Whether this is the server's "no responders" answer to a request: status 503, no
    /// payload.
    #[must_use]
    pub fn is_no_responders(&self) -> bool {
        self.payload.is_empty()
            && self
                .headers
                .as_ref()
                .is_some_and(|h| h.status() == Some(STATUS_NO_RESPONDERS))
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

fn check_name(name: &str, what: &'static str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(NameError::Whitespace { what });
    }
    Ok(())
}

fn is_header_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':')
}

fn parse_status(code: &[u8]) -> Result<u16, HeaderError> {
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(HeaderError::InvalidStatus);
    }
    Ok(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

fn trim(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// Splits on `\r\n` (a lone `\r` or `\n` stays inside its line).
fn split_crlf(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                rest = Some(&current[i + 2..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(value: &bool) -> bool {
    !*value
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}
