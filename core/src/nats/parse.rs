//! The parser of server operations: bytes in any split, operations out, "need more bytes" as
//! `Ok(None)`, every bound checked before anything is buffered on its behalf.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::types::{HeaderError, Headers, Msg, ServerInfo, Sid, Subject};

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// An operation the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO {json}`: the server's facts, first on every connection and again when they change.
    Info(Box<ServerInfo>),
    /// `MSG` or `HMSG`: a delivered message.
    Msg(Msg),
    /// `PING`: answer with `PONG`.
    Ping,
    /// `PONG`: the answer to one of our `PING`s.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR '<text>'`: the text without its quotes.
    Err(String),
}

/// The bounds of a [`Parser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest control line, its `\r\n` included (`INFO` lines are the long ones).
    pub max_line: usize,
    /// The payload bound (headers included) before the first `INFO` says `max_payload`.
    pub default_max_payload: usize,
    /// The payload bound whatever the server says: a server announcing more is held to this.
    pub max_payload_cap: usize,
}

/// The longest control line accepted by default: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// The payload bound before `INFO`: the server's default `max_payload`, 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest payload ever accepted: 64 MiB, the largest `max_payload` nats-server allows.
pub const MAX_PAYLOAD_CAP: usize = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            default_max_payload: DEFAULT_MAX_PAYLOAD,
            max_payload_cap: MAX_PAYLOAD_CAP,
        }
    }
}

/// Why the server's bytes are not NATS. All but [`ParseError::InvalidHeaders`] break the stream:
/// the parser returns the same error from then on ([`ParseError::is_fatal`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// No line end within [`Limits::max_line`] bytes.
    #[error("a control line from the server is longer than {limit} bytes")]
    LineTooLong {
        /// The bound.
        limit: usize,
    },
    /// The line starts with no known operation name.
    #[error("the server sent an unknown operation: is this a NATS server?")]
    UnknownOperation,
    /// The JSON of `INFO` does not parse.
    #[error("the server's INFO is not valid JSON (column {column})")]
    InvalidInfo {
        /// Where the JSON parser stopped.
        column: usize,
    },
    /// `MSG`/`HMSG` has the wrong number of arguments, or an invalid subject, sid or size.
    #[error("the server sent a malformed {op} line: {what}")]
    InvalidArguments {
        /// `MSG` or `HMSG`.
        op: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// The announced size exceeds the server's `max_payload` (or the local cap).
    #[error("the server announced a {size}-byte message, over the {limit}-byte bound")]
    PayloadTooLarge {
        /// The announced size.
        size: usize,
        /// The bound in force.
        limit: usize,
    },
    /// The payload is not followed by `\r\n`.
    #[error("a message payload from the server is not followed by CRLF")]
    MissingPayloadTerminator,
    /// The header block of an `HMSG` is malformed. The message is consumed and the stream
    /// goes on (the framing is intact): another client published bad headers.
    #[error("a message for subscription {sid} has malformed headers: {error}")]
    InvalidHeaders {
        /// The subscription it was delivered for.
        sid: Sid,
        /// Its subject.
        subject: Subject,
        /// What is wrong.
        error: HeaderError,
    },
}

impl ParseError {
    /// Whether the stream is broken (every error but [`ParseError::InvalidHeaders`]).
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::InvalidHeaders { .. })
    }
}

/// The incremental parser of server operations.
///
/// Push bytes with [`Parser::push`] as they arrive (split anywhere), then call
/// [`Parser::next_op`] until it returns `Ok(None)` ("need more bytes"). The same bytes give the
/// same operations whatever the split. Control lines are bounded by [`Limits::max_line`] and
/// payloads by the `max_payload` of the last `INFO` (capped by [`Limits::max_payload_cap`]):
/// an oversize announcement is an error at once, never an allocation. Lines end in `\r\n` (a
/// bare `\n` is accepted); operation names are case-insensitive; arguments are separated by
/// spaces or tabs.
#[derive(Debug, Clone)]
pub struct Parser {
    buf: BytesMut,
    /// Bytes at the start of `buf` known to hold no `\n` (so trickled lines are scanned once).
    scanned: usize,
    limits: Limits,
    max_payload: usize,
    pending: Option<MsgHead>,
    failed: Option<ParseError>,
}

impl Parser {
    /// A parser with these bounds.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            limits,
            max_payload: limits.default_max_payload.min(limits.max_payload_cap),
            pending: None,
            failed: None,
        }
    }

    /// Appends bytes read from the connection (ignored once the stream is broken).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete operation: `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// A [`ParseError`]; after a fatal one, every later call returns it again.
    pub fn next_op(&mut self) -> Result<Option<ServerOp>, ParseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.step() {
            Err(error) if error.is_fatal() => {
                self.buf = BytesMut::new();
                self.pending = None;
                self.failed = Some(error.clone());
                Err(error)
            }
            other => other,
        }
    }

    /// The payload bound in force (from the last `INFO`, capped).
    #[must_use]
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// How many bytes are buffered and not yet parsed.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn step(&mut self) -> Result<Option<ServerOp>, ParseError> {
        loop {
            if let Some(head) = &self.pending {
                let need = head.total + 2;
                if self.buf.len() < need {
                    return Ok(None);
                }
                let head = self.pending.take().expect("checked just above");
                let mut data = self.buf.split_to(need).freeze();
                if &data[head.total..] != b"\r\n" {
                    return Err(ParseError::MissingPayloadTerminator);
                }
                data.truncate(head.total);
                return head.finish(data).map(Some);
            }
            let window = self.buf.len().min(self.limits.max_line);
            let Some(newline) = self.buf[self.scanned.min(window)..window]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| i + self.scanned.min(window))
            else {
                if self.buf.len() >= self.limits.max_line {
                    return Err(ParseError::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                self.scanned = window;
                return Ok(None);
            };
            self.scanned = 0;
            let line = self.buf.split_to(newline + 1);
            let line = &line[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match self.parse_line(line)? {
                Line::Op(op) => return Ok(Some(op)),
                Line::Head(head) => self.pending = Some(head),
            }
        }
    }

    fn parse_line(&mut self, line: &[u8]) -> Result<Line, ParseError> {
        let name_end = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
        let (name, rest) = line.split_at(name_end);
        let op = if name.eq_ignore_ascii_case(b"MSG") {
            return self.msg_head(rest, false).map(Line::Head);
        } else if name.eq_ignore_ascii_case(b"HMSG") {
            return self.msg_head(rest, true).map(Line::Head);
        } else if name.eq_ignore_ascii_case(b"PING") {
            ServerOp::Ping
        } else if name.eq_ignore_ascii_case(b"PONG") {
            ServerOp::Pong
        } else if name.eq_ignore_ascii_case(b"+OK") {
            ServerOp::Ok
        } else if name.eq_ignore_ascii_case(b"-ERR") {
            ServerOp::Err(error_text(rest))
        } else if name.eq_ignore_ascii_case(b"INFO") && !rest.is_empty() {
            let info: ServerInfo = serde_json::from_slice(rest.trim_ascii())
                .map_err(|e| ParseError::InvalidInfo { column: e.column() })?;
            self.max_payload = match usize::try_from(info.max_payload) {
                Ok(0) => self.max_payload,
                Ok(n) => n.min(self.limits.max_payload_cap),
                Err(_) => self.limits.max_payload_cap,
            };
            ServerOp::Info(Box::new(info))
        } else {
            return Err(ParseError::UnknownOperation);
        };
        Ok(Line::Op(op))
    }

    fn msg_head(&self, args: &[u8], with_headers: bool) -> Result<MsgHead, ParseError> {
        let op = if with_headers { "HMSG" } else { "MSG" };
        let bad = |what| ParseError::InvalidArguments { op, what };
        let mut fields = [&[][..]; 5];
        let mut count = 0;
        for field in args.split(|&b| is_space(b)).filter(|f| !f.is_empty()) {
            *fields.get_mut(count).ok_or(bad("too many arguments"))? = field;
            count += 1;
        }
        let sizes = if with_headers { 2 } else { 1 };
        if count < 2 + sizes || count > 3 + sizes {
            return Err(bad("wrong number of arguments"));
        }
        let subject = subject_of(fields[0]).ok_or(bad("invalid subject"))?;
        let sid = Sid(number(fields[1]).ok_or(bad("invalid sid"))?);
        let reply = if count == 3 + sizes {
            Some(subject_of(fields[2]).ok_or(bad("invalid reply subject"))?)
        } else {
            None
        };
        let size = |field: &[u8]| {
            number(field)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(bad("invalid size"))
        };
        let total = size(fields[count - 1])?;
        let header_len = if with_headers {
            let header_len = size(fields[count - 2])?;
            if header_len > total {
                return Err(bad("header size over total size"));
            }
            Some(header_len)
        } else {
            None
        };
        if total > self.max_payload {
            return Err(ParseError::PayloadTooLarge {
                size: total,
                limit: self.max_payload,
            });
        }
        Ok(MsgHead {
            subject,
            sid,
            reply,
            header_len,
            total,
        })
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

enum Line {
    Op(ServerOp),
    Head(MsgHead),
}

/// A parsed `MSG`/`HMSG` line waiting for its payload.
#[derive(Debug, Clone)]
struct MsgHead {
    subject: Subject,
    sid: Sid,
    reply: Option<Subject>,
    header_len: Option<usize>,
    total: usize,
}

impl MsgHead {
    fn finish(self, mut payload: Bytes) -> Result<ServerOp, ParseError> {
        let headers = match self.header_len {
            None => None,
            Some(len) => {
                let block = payload.split_to(len);
                match Headers::parse(&block) {
                    Ok(headers) => Some(headers),
                    Err(error) => {
                        return Err(ParseError::InvalidHeaders {
                            sid: self.sid,
                            subject: self.subject,
                            error,
                        });
                    }
                }
            }
        };
        Ok(ServerOp::Msg(Msg {
            subject: self.subject,
            sid: self.sid,
            reply: self.reply,
            headers,
            payload,
        }))
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn subject_of(field: &[u8]) -> Option<Subject> {
    let text = std::str::from_utf8(field).ok()?;
    Subject::new(text).ok()
}

/// A decimal number that fits a `u64` (digits only: no sign).
fn number(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// The text of `-ERR`: trimmed, one pair of surrounding single quotes removed.
fn error_text(rest: &[u8]) -> String {
    let text = rest.trim_ascii();
    let text = match text {
        [b'\'', inner @ .., b'\''] => inner,
        other => other,
    };
    String::from_utf8_lossy(text).into_owned()
}
