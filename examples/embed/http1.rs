//! HTTP/1.1 framing for `examples/embed.rs`: request heads parsed by `httparse` into the
//! `http::request::Parts` the core classifies, request bodies delimited by `Content-Length` or
//! chunked coding and read straight from the socket, and answers written back. Nothing here
//! decides anything about the file API; it only moves bytes.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{StatusCode, Version};
use nodegate_core::response::Reply;

/// Largest request head (request line and headers) read from a client.
const MAX_HEAD: usize = 64 * 1024;
/// Largest line of chunked framing (a chunk size, a trailer).
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines after the last chunk.
const MAX_TRAILER_LINES: usize = 64;
/// After an answer sent before the request body was read, how long and how much of the body
/// is read and discarded so the client hears the answer instead of a reset.
const LINGER: (Duration, u64) = (Duration::from_millis(500), 16 * 1024 * 1024);

/// A connection and the bytes read from it but not consumed yet (at most one head's worth).
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into `buf`; 0 at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + 16 * 1024, 0);
        let read = self.stream.read(&mut self.buf[len..]);
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Reads body bytes: what is buffered first, then straight from the socket.
    fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            return self.stream.read(out);
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        Ok(n)
    }

    /// Reads one line of chunked framing, without its line ending.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_CHUNK_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk line too long",
                ));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// After an early answer: stop writing, then read and discard the rest of the body for a
    /// moment, so that closing does not reset the connection before the client read the answer.
    pub(crate) fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let (time, max) = LINGER;
        let until = Instant::now() + time;
        let mut drained = 0u64;
        let mut sink = [0u8; 16 * 1024];
        while drained < max {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    }
}

/// Reads one request head within `timeout`. `Ok(None)`: the client closed the connection
/// between requests. `Err(Some(reply))`: a head that cannot be served; `Err(None)`: a timeout
/// or a broken connection, closed without an answer.
pub(crate) fn read_head(
    conn: &mut Conn,
    timeout: Duration,
) -> Result<Option<Parts>, Option<Reply>> {
    let deadline = Instant::now() + timeout;
    loop {
        if !conn.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = to_parts(&parsed);
                    conn.buf.drain(..len);
                    return head.map(Some).map_err(Some);
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                    let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                    return Err(Some(Reply::error(status, "request head too large")));
                }
                Err(_) => return Err(Some(bad_request("malformed request head"))),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.stream.set_read_timeout(Some(left)).is_err() {
            return Err(None);
        }
        match conn.fill() {
            Ok(0) if conn.buf.is_empty() => return Ok(None),
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The head as the core reads it: `http::request::Parts`.
fn to_parts(parsed: &httparse::Request<'_, '_>) -> Result<Parts, Reply> {
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or_default())
        .uri(parsed.path.unwrap_or_default())
        .version(match parsed.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        });
    for field in parsed.headers.iter() {
        builder = builder.header(field.name, field.value);
    }
    match builder.body(()) {
        Ok(request) => Ok(request.into_parts().0),
        Err(_) => Err(bad_request("malformed request head")),
    }
}

/// How the request body is delimited (RFC 9112 §6). The core refuses any `Transfer-Encoding`
/// but one `chunked`; both framings at once, or several lengths, are refused here as a
/// request smuggling attempt would be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    /// `Content-Length` bytes still to read (0 without a body).
    Length(u64),
    /// Chunked, with this many bytes left in the current chunk.
    Chunked(u64),
    /// A `Transfer-Encoding` the core will refuse: unreadable.
    Unknown,
    /// The chunked body has ended.
    Done,
}

pub(crate) fn framing(head: &Parts) -> Result<Framing, Reply> {
    let lengths: Vec<&HeaderValue> = head
        .headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .collect();
    let codings: Vec<&HeaderValue> = head
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .collect();
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(Framing::Length(0)),
        ([length], []) => std::str::from_utf8(length.as_bytes())
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| bad_request("invalid Content-Length")),
        ([], [coding])
            if coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked") =>
        {
            Ok(Framing::Chunked(0))
        }
        ([], _) => Ok(Framing::Unknown),
        _ => Err(bad_request("Content-Length and Transfer-Encoding conflict")),
    }
}

/// The request body, read straight from the connection.
pub(crate) struct Body<'c> {
    conn: &'c mut Conn,
    framing: Framing,
    /// The client waits for `100 Continue` before it sends the body (curl does for uploads).
    expect_continue: bool,
}

impl<'c> Body<'c> {
    /// The body of the request `head`, framed by `framing`.
    pub(crate) fn new(conn: &'c mut Conn, framing: Framing, head: &Parts) -> Self {
        let expect_continue = head
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Self {
            conn,
            framing,
            expect_continue,
        }
    }

    /// Whether the whole body has been read (so the connection can carry a next request).
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Length(0) | Framing::Done)
    }

    /// Reads body bytes into `out`; `Ok(0)` at its end. A body cut short is `UnexpectedEof`,
    /// a stalled one `WouldBlock`/`TimedOut` (the socket's read timeout).
    pub(crate) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.expect_continue) && !self.is_done() {
            self.conn
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let left = match self.framing {
            Framing::Length(0) | Framing::Done => return Ok(0),
            Framing::Unknown => return Err(io::ErrorKind::InvalidData.into()),
            Framing::Length(left) => left,
            Framing::Chunked(0) => match self.next_chunk()? {
                0 => return Ok(0),
                size => size,
            },
            Framing::Chunked(left) => left,
        };
        let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.conn.read_some(&mut out[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let left = left - n as u64;
        self.framing = match self.framing {
            Framing::Chunked(_) if left == 0 => {
                // Each chunk's data ends with its own line ending.
                if !self.conn.read_line()?.is_empty() {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                Framing::Chunked(0)
            }
            Framing::Chunked(_) => Framing::Chunked(left),
            _ => Framing::Length(left),
        };
        Ok(n)
    }

    /// Reads a chunk-size line; at the last chunk also the trailer section, and ends the body.
    fn next_chunk(&mut self) -> io::Result<u64> {
        let line = self.conn.read_line()?;
        let size = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 15)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(io::ErrorKind::InvalidData)?;
        if size == 0 {
            for _ in 0..MAX_TRAILER_LINES {
                if self.conn.read_line()?.is_empty() {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many trailers",
            ));
        }
        Ok(size)
    }
}

/// What to send back: a reply the core built, or a file (a `GET`).
pub(crate) enum Answer {
    Reply(Reply),
    File {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        file: std::fs::File,
        start: u64,
        len: u64,
    },
}

/// Writes the answer; `HEAD` answers keep their headers and drop the body.
pub(crate) fn write_answer(
    stream: &mut TcpStream,
    answer: Answer,
    is_head: bool,
    close: bool,
) -> io::Result<StatusCode> {
    match answer {
        Answer::Reply(reply) => {
            let mut out =
                status_and_headers(reply.status, &reply.headers, reply.body.len() as u64, close);
            if !is_head {
                out.extend_from_slice(&reply.body);
            }
            stream.write_all(&out)?;
            Ok(reply.status)
        }
        Answer::File {
            status,
            headers,
            mut file,
            start,
            len,
        } => {
            stream.write_all(&status_and_headers(status, &headers, len, close))?;
            file.seek(SeekFrom::Start(start))?;
            // `io::copy` moves the bytes in bounded steps (in the kernel, on Linux).
            if io::copy(&mut file.take(len), stream)? < len {
                // The file shrank under us: the promised length cannot be kept.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(status)
        }
    }
}

fn status_and_headers(
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body_len: u64,
    close: bool,
) -> Vec<u8> {
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers
        .iter()
        .any(|(name, _)| name == header::CONTENT_LENGTH)
    {
        out.extend_from_slice(format!("content-length: {body_len}\r\n").as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn bad_request(message: &str) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, message)
}

// ---------------------------------------------------------------------------------------------
