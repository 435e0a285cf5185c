//! Hardening of the HTTP layer (issue 12): early answers that clients hear. Real sockets over
//! loopback, every socket with timeouts, every loop bounded.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{Options, Runtime, TOKEN, TestServer};

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
fn early_401_reaches_a_client_still_sending_its_body(rt: Runtime) {
    let server = TestServer::start(rt);
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
fn early_413_reaches_a_client_still_sending_its_body(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            max_upload: Some(1024),
            ..Options::default()
        },
    );
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
fn early_answers_say_connection_close(rt: Runtime) {
    let server = TestServer::start(rt);
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

/// Starts the reference worker (protected by [`TOKEN`]) over a temp tree; waits until healthy.
fn worker(tmp: &std::path::Path) -> (common::WorkerProcess, std::net::SocketAddr) {
    let port = common::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = common::worker_command(&tmp.join("models"), &addr.to_string());
    command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
    let worker = common::WorkerProcess::spawn(command);
    assert!(
        common::wait_healthy(addr, Duration::from_secs(20)),
        "worker not serving:\n{}",
        worker.stderr()
    );
    (worker, addr)
}

/// "Log floods" (issue 12, item 9): 2,000 requests with a wrong token over keep-alive
/// connections used to write 2,000 INFO lines. The first refusal is logged in full, the rest
/// counted, and one summary line per interval (10 s) reports the count.
#[test]
fn a_401_flood_is_logged_once_then_summarised() {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 500;
    let tmp = tempfile::tempdir().expect("tmp");
    let (worker, addr) = worker(tmp.path());
    let floods: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let request = format!(
                    "GET /v1/files/models/x.bin HTTP/1.1\r\nHost: {addr}\r\n\
                     Authorization: Bearer wrong-token\r\n\r\n"
                );
                for _ in 0..PER_CONNECTION {
                    stream.write_all(request.as_bytes()).expect("send");
                    let response = common::read_response(&mut stream, false).expect("answer");
                    assert_eq!(response.status, 401);
                }
            })
        })
        .collect();
    for flood in floods {
        flood.join().expect("flood thread");
    }
    let refused_lines = |log: &str| {
        log.lines()
            .filter(|line| line.contains("request refused"))
            .count()
    };
    let logged = refused_lines(&worker.stderr());
    assert!(
        (1..=3).contains(&logged),
        "{} refusals gave {logged} full log lines (want the first one only)",
        CONNECTIONS * PER_CONNECTION
    );
    // The summary comes within one interval (10 s) plus the one-second tick.
    let start = std::time::Instant::now();
    let summary = loop {
        let log = worker.stderr();
        if let Some(line) = log.lines().find(|l| l.contains("counted not logged")) {
            break line.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no summary line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(summary.contains("reason=\"unauthorized\""), "{summary}");
    assert!(summary.contains("remote=\"127.0.0.1\""), "{summary}");
    let counted: u64 = summary
        .split("count=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count in the summary");
    assert!(
        counted >= (CONNECTIONS * PER_CONNECTION - 3) as u64,
        "the summary counts the refusals not logged: {summary}"
    );
    assert!(
        !worker.stderr().contains("wrong-token"),
        "no secret in logs"
    );
}

common::per_runtime_tests!(
    early_401_reaches_a_client_still_sending_its_body,
    early_413_reaches_a_client_still_sending_its_body,
    early_answers_say_connection_close,
);
