//! Hardening of the HTTP layer (issue 12): early answers that clients hear. Real sockets over
//! loopback, every socket with timeouts, every loop bounded.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{Options, TOKEN, TestServer};

/// How many times each early answer is tried: a reset is a race, so one lucky run proves little.
const ATTEMPTS: usize = 10;

/// Sends `head`, then streams `sent` bytes of a body that the head declares much larger (a
/// client that has not noticed the answer yet), then reads. Returns the status line, or the
/// error the client saw (`connection reset`, `broken pipe`).
fn early_answer(server: &TestServer, head: &str, sent: usize) -> Result<String, String> {
    let mut stream = TcpStream::connect(server.addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        // A write error is what LocalAI's client reports as "broken pipe": fail like it does.
        stream
            .write_all(&chunk[..n])
            .map_err(|e| format!("write: {e}"))?;
        left -= n;
    }
    let mut response = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if response.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn put_head(server: &TestServer, token: &str, length: u64) -> String {
    format!(
        "PUT /v1/files/models/early.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {length}\r\n\r\n",
        server.addr
    )
}

/// "Early answers are heard": a 401 sent before the body was read reaches a client that is
/// still sending (it used to be lost to a connection reset: LocalAI's client then retried for
/// up to an hour).
#[test]
fn early_401_reaches_a_client_still_sending_its_body() {
    let server = TestServer::start();
    for attempt in 0..ATTEMPTS {
        let head = put_head(&server, "wrong-token", 64 << 20);
        let answer = early_answer(&server, &head, 2 << 20);
        assert_eq!(
            answer.as_deref(),
            Ok("HTTP/1.1 401 Unauthorized"),
            "attempt {attempt}"
        );
    }
}

/// The same for a 413 decided from `Content-Length` before anything is read.
#[test]
fn early_413_reaches_a_client_still_sending_its_body() {
    let server = TestServer::with(Options {
        max_upload: Some(1024),
        ..Options::default()
    });
    for attempt in 0..ATTEMPTS {
        let head = put_head(&server, TOKEN, 64 << 20);
        let answer = early_answer(&server, &head, 2 << 20);
        assert_eq!(
            answer.as_deref(),
            Ok("HTTP/1.1 413 Payload Too Large"),
            "attempt {attempt}"
        );
    }
}

/// An early answer says `Connection: close`, so the client does not reuse the connection.
#[test]
fn early_answers_say_connection_close() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = put_head(&server, "wrong-token", 1 << 20);
    stream.write_all(head.as_bytes()).expect("head");
    let response = common::read_response(&mut stream, false).expect("a response");
    assert_eq!(response.status, 401);
    assert_eq!(
        response
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
}
