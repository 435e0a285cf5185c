//! HTTP robustness of the file-transfer server (security.md §4.1 slowloris and body stalls,
//! §4.2 request framing, §4.3 upload size limit, §4.6 concurrent uploads), against the real
//! hyper server over loopback with raw bytes, timeouts scaled down to about a second.
//!
//! Every socket has a read and write timeout, every loop is bounded, and every assertion on a
//! refused upload also looks at the disk: no final file, no hidden temp or partial file, no
//! sidecar.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Options, RawResponse, Runtime, TOKEN, TestServer, read_response, sha256_hex};
use nodegate::tokio_adapter::Limits;

/// A server with short header and body timeouts and a small connection cap.
fn server_with(
    rt: Runtime,
    header: Duration,
    idle: Duration,
    max_upload: Option<u64>,
) -> TestServer {
    TestServer::with(
        rt,
        Options {
            max_upload,
            limits: Limits {
                header_read_timeout: header,
                body_idle_timeout: idle,
                max_connections: 64,
                ..Limits::default()
            },
            ..Options::default()
        },
    )
}

/// The upload limit of the size tests (HR-M*).
const LIMIT: u64 = 1024;

fn limited(rt: Runtime) -> TestServer {
    server_with(
        rt,
        Duration::from_secs(5),
        Duration::from_secs(5),
        Some(LIMIT),
    )
}

/// A connected socket with read and write timeouts.
fn connect(server: &TestServer, read_timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    stream
}

/// The head of an authenticated request; `extra` lines are added verbatim (each without CRLF).
fn head(server: &TestServer, method: &str, target: &str, extra: &[&str]) -> Vec<u8> {
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n",
        server.addr
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Reads until the peer closes (EOF or reset) and returns what arrived, or `None` when the
/// connection is still open after `deadline`.
fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while start.elapsed() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(received),
        }
    }
    None
}

/// `GET /healthz` on a fresh connection answers 200 `ok`.
fn assert_still_serving(server: &TestServer) {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let response = server.raw(request.as_bytes());
    assert_eq!(response.status, 200, "a fresh request is not served");
    assert_eq!(response.text(), "ok");
}

/// Every file under the roots (hidden temp and partial files included).
fn files(server: &TestServer) -> Vec<String> {
    let mut files = server.root_files();
    files.sort();
    files
}

fn assert_no_files(server: &TestServer, what: &str) {
    assert_eq!(
        files(server),
        Vec::<String>::new(),
        "{what}: files left behind"
    );
}

fn read_file(server: &TestServer, rel: &str) -> Vec<u8> {
    std::fs::read(server.roots.models.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn sidecar(server: &TestServer, rel: &str) -> String {
    String::from_utf8(read_file(server, &format!("{rel}.sha256"))).expect("hex sidecar")
}

/// Distinct bytes for upload number `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// §4.1 Slowloris and body stalls.

/// HR-S01: a request head trickled one byte per 200 ms is cut off by the 1 s header timeout;
/// a fresh request is still served.
fn hr_s01_slow_header_is_closed_by_header_timeout(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(1), Duration::from_secs(5), None);
    let mut stream = connect(&server, Duration::from_millis(200));
    let start = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("request line");
    let header = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut received = Vec::new();
    let mut closed = None;
    let mut buf = [0u8; 1024];
    // At most 50 bytes, one per 200 ms read timeout: 10 s.
    for byte in header.iter().take(50) {
        if stream.write_all(&[*byte]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = Some(start.elapsed());
                break;
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let closed = closed.expect("the slow connection was never closed");
    assert!(
        closed >= Duration::from_millis(800),
        "closed before the timeout: {closed:?}"
    );
    assert!(
        closed < Duration::from_secs(6),
        "closed too late: {closed:?}"
    );
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
        "unexpected answer to a stalled head: {}",
        received.escape_ascii()
    );
    assert_still_serving(&server);
}

/// HR-S02 (scaled): 50 connections that each sent a request line and one header byte. Under
/// the cap of 64 a fresh request is served meanwhile; all 50 are closed by the 1 s header
/// timeout; the server still answers afterwards.
fn hr_s02_many_slow_connections_are_all_closed(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(1), Duration::from_secs(5), None);
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = connect(&server, Duration::from_millis(100));
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nH")
                .expect("partial head");
            stream
        })
        .collect();
    let start = Instant::now();
    assert_still_serving(&server);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(10).saturating_sub(start.elapsed());
        let received = read_until_closed(stream, left)
            .unwrap_or_else(|| panic!("slow connection {i} still open after 10 s"));
        assert!(
            received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
            "connection {i}: {}",
            received.escape_ascii()
        );
    }
    assert_still_serving(&server);
}

/// HR-S03: a PUT that declares 10^9 bytes and stalls after a few is answered 408 after the
/// 1 s body idle timeout and closed; no final file, no temp file, no sidecar.
fn hr_s03_stalled_body_times_out_and_leaves_nothing(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(5), Duration::from_secs(1), None);
    let mut stream = connect(&server, Duration::from_secs(15));
    let mut request = head(
        &server,
        "PUT",
        "/v1/files/models/big.bin",
        &["Content-Length: 1000000000"],
    );
    request.extend_from_slice(&pattern(1, 1000));
    stream.write_all(&request).expect("head and first bytes");
    let start = Instant::now();
    let response = read_response(&mut stream, false).expect("a response to the stall");
    let waited = start.elapsed();
    assert_eq!(response.status, 408, "{:?}", response.text());
    assert!(waited < Duration::from_secs(8), "answered after {waited:?}");
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(5)).is_some(),
        "connection kept open after the body timed out"
    );
    assert_no_files(&server, "stalled upload");
    assert_still_serving(&server);
}

/// HR-S04: one byte every 300 ms for 3 s with a 1 s idle timeout succeeds: the timeout is
/// idle, not total.
fn hr_s04_trickled_body_is_idle_not_total(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(5), Duration::from_secs(1), None);
    let body = b"0123456789";
    let mut stream = connect(&server, Duration::from_secs(15));
    stream
        .write_all(&head(
            &server,
            "PUT",
            "/v1/files/models/trickle.bin",
            &["Content-Length: 10", "Connection: close"],
        ))
        .expect("head");
    let start = Instant::now();
    for byte in body {
        std::thread::sleep(Duration::from_millis(300));
        stream.write_all(&[*byte]).expect("a trickled byte");
    }
    assert!(start.elapsed() >= Duration::from_secs(3));
    let response = read_response(&mut stream, false).expect("a response");
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(read_file(&server, "trickle.bin"), body);
    assert_eq!(sidecar(&server, "trickle.bin"), sha256_hex(body));
}

// ---------------------------------------------------------------------------------------------
// §4.3 Maximum upload size.

/// HR-M01: a `Content-Length` over the limit is 413 from the head alone (no body byte sent),
/// and nothing is created.
fn hr_m01_content_length_over_limit_is_413_before_writing(rt: Runtime) {
    let server = limited(rt);
    for length in [LIMIT + 1, 1 << 40] {
        let mut stream = connect(&server, Duration::from_secs(10));
        let line = format!("Content-Length: {length}");
        stream
            .write_all(&head(&server, "PUT", "/v1/files/models/big.bin", &[&line]))
            .expect("head");
        let response = read_response(&mut stream, false).expect("413 without the body");
        assert_eq!(response.status, 413, "{:?}", response.text());
        assert!(
            response.text().contains("too large"),
            "{:?}",
            response.text()
        );
        assert_no_files(&server, "declared oversize upload");
    }
}

/// HR-M02: with `Expect: 100-continue` the 413 is the first and only answer: no
/// `100 Continue` invites the body first.
fn hr_m02_expect_continue_over_limit_gets_413_not_100(rt: Runtime) {
    let server = limited(rt);
    let mut stream = connect(&server, Duration::from_secs(10));
    let line = format!("Content-Length: {}", LIMIT + 1);
    stream
        .write_all(&head(
            &server,
            "PUT",
            "/v1/files/models/big.bin",
            &[&line, "Expect: 100-continue"],
        ))
        .expect("head");
    let received = read_until_closed(&mut stream, Duration::from_secs(10))
        .expect("the connection is closed after the refusal");
    assert!(
        received.starts_with(b"HTTP/1.1 413"),
        "first answer: {}",
        received.escape_ascii()
    );
    assert!(
        !received.windows(12).any(|w| w == b"HTTP/1.1 100"),
        "a 100 Continue was sent: {}",
        received.escape_ascii()
    );
    assert_no_files(&server, "refused 100-continue upload");
}

/// HR-M03: a chunked body that crosses the limit is cut with 413 and its temp file removed.
fn hr_m03_chunked_body_crossing_limit_is_413_and_temp_removed(rt: Runtime) {
    let server = limited(rt);
    let mut stream = connect(&server, Duration::from_secs(10));
    stream
        .write_all(&head(
            &server,
            "PUT",
            "/v1/files/models/chunked.bin",
            &["Transfer-Encoding: chunked"],
        ))
        .expect("head");
    // Two 600-byte chunks (1200 > 1024), and no terminating chunk: the server must decide on
    // its own.
    for seed in [1, 2] {
        let mut chunk = b"258\r\n".to_vec();
        chunk.extend_from_slice(&pattern(seed, 600));
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).expect("chunk");
    }
    let response = read_response(&mut stream, false).expect("a response");
    assert_eq!(response.status, 413, "{:?}", response.text());
    assert_no_files(&server, "oversize chunked upload");
}

/// HR-M04: a `Content-Range` whose declared total is over the limit is 413 from the head
/// alone; no partial and no target sidecar appear (D16).
fn hr_m04_declared_total_over_limit_is_413_before_writing(rt: Runtime) {
    let server = limited(rt);
    let mut stream = connect(&server, Duration::from_secs(10));
    let range = format!("Content-Range: bytes 0-9/{}", LIMIT + 1);
    let hash = format!("X-Content-SHA256: {}", sha256_hex(b"whatever"));
    stream
        .write_all(&head(
            &server,
            "PUT",
            "/v1/files/models/ranged.bin",
            &[&range, "Content-Length: 10", &hash],
        ))
        .expect("head");
    let response = read_response(&mut stream, false).expect("413 without the body");
    assert_eq!(response.status, 413, "{:?}", response.text());
    assert_no_files(&server, "oversize declared total");
}

/// HR-M05: a resumable upload whose chunks declare a total over the limit is refused at its
/// first chunk, body included; a chunk reaching past its own declared total is 400.
fn hr_m05_range_chunks_over_limit_are_refused_at_first_chunk(rt: Runtime) {
    let server = limited(rt);
    let chunk = pattern(5, 100);
    let hash = sha256_hex(b"the 2000-byte file");
    let response = server.request(
        "PUT",
        "/v1/files/models/ranged.bin",
        true,
        &[
            ("Content-Range", "bytes 0-99/2000"),
            ("X-Content-SHA256", &hash),
        ],
        &chunk,
    );
    assert_eq!(response.status, 413, "{:?}", response.text());
    assert_no_files(&server, "first chunk of an oversize upload");

    let past_total = server.request(
        "PUT",
        "/v1/files/models/ranged.bin",
        true,
        &[("Content-Range", "bytes 1000-1099/1024")],
        &chunk,
    );
    assert_eq!(past_total.status, 400, "{:?}", past_total.text());
    assert_no_files(&server, "chunk past its total");
}

/// HR-M06: exactly the limit is accepted: as a full body with `Content-Length`, as a chunked
/// body, and as a resumable upload in four chunks.
fn hr_m06_exactly_the_limit_is_accepted(rt: Runtime) {
    let server = limited(rt);
    let content = pattern(6, LIMIT as usize);
    let full = server.put("/v1/files/models/full.bin", &content);
    assert_eq!(full.status, 200, "{:?}", full.text());
    assert_eq!(read_file(&server, "full.bin"), content);

    let mut chunked = head(
        &server,
        "PUT",
        "/v1/files/models/chunked.bin",
        &["Transfer-Encoding: chunked", "Connection: close"],
    );
    for piece in content.chunks(256) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = server.raw(&chunked);
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(read_file(&server, "chunked.bin"), content);

    let hash = sha256_hex(&content);
    for (i, piece) in content.chunks(256).enumerate() {
        let start = i * 256;
        let range = format!("bytes {start}-{}/{LIMIT}", start + piece.len() - 1);
        let response = server.request(
            "PUT",
            "/v1/files/models/ranged.bin",
            true,
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
            piece,
        );
        let expected = if i == 3 { 200 } else { 308 };
        assert_eq!(
            response.status,
            expected,
            "chunk {i}: {:?}",
            response.text()
        );
    }
    assert_eq!(read_file(&server, "ranged.bin"), content);
    assert_eq!(sidecar(&server, "ranged.bin"), hash);
}

// ---------------------------------------------------------------------------------------------
// §4.2 Request smuggling and framing.

/// Sends raw bytes on a fresh connection and reads one response (`None`: closed without one).
fn exchange(server: &TestServer, bytes: &[u8]) -> Option<RawResponse> {
    let mut stream = connect(server, Duration::from_secs(10));
    let _ = stream.write_all(bytes);
    read_response(&mut stream, bytes.starts_with(b"HEAD "))
}

fn put_with(server: &TestServer, key: &str, lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut all = vec!["Connection: close"];
    all.extend_from_slice(lines);
    let mut bytes = head(server, "PUT", &format!("/v1/files/models/{key}"), &all);
    bytes.extend_from_slice(body);
    bytes
}

/// HR-R01, HR-R02, HR-R04: a signed, conflicting or listed `Content-Length` is 400 and
/// nothing is written.
fn hr_r01_r02_r04_malformed_content_length_is_400(rt: Runtime) {
    let server = limited(rt);
    for lines in [
        &["Content-Length: +5"][..],
        &["Content-Length: 5", "Content-Length: 6"],
        &["Content-Length: 5, 6"],
        &["Content-Length: 5, 5"],
        &["Content-Length: -5"],
        &["Content-Length: 0x5"],
    ] {
        let response = exchange(&server, &put_with(&server, "cl.bin", lines, b"hello"))
            .unwrap_or_else(|| panic!("{lines:?}: no response"));
        assert_eq!(response.status, 400, "{lines:?}: {:?}", response.text());
        assert_no_files(&server, &format!("{lines:?}"));
    }
    assert_still_serving(&server);
}

/// HR-R03: two identical `Content-Length` lines are accepted.
fn hr_r03_repeated_equal_content_length_is_accepted(rt: Runtime) {
    let server = limited(rt);
    let response = exchange(
        &server,
        &put_with(
            &server,
            "cl.bin",
            &["Content-Length: 5", "Content-Length: 5"],
            b"hello",
        ),
    )
    .expect("a response");
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(read_file(&server, "cl.bin"), b"hello");
}

/// HR-R05: `Transfer-Encoding: chunked` with `Content-Length` is read as chunked, and the
/// connection is closed after the response (RFC 9112 §6.1) even though the client asked for
/// keep-alive.
fn hr_r05_chunked_wins_over_content_length_and_closes(rt: Runtime) {
    let server = limited(rt);
    let mut stream = connect(&server, Duration::from_secs(10));
    let mut bytes = head(
        &server,
        "PUT",
        "/v1/files/models/te-cl.bin",
        &["Transfer-Encoding: chunked", "Content-Length: 3"],
    );
    bytes.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    stream.write_all(&bytes).expect("request");
    let response = read_response(&mut stream, false).expect("a response");
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(read_file(&server, "te-cl.bin"), b"hello");
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(5)).is_some(),
        "connection kept alive after a request with both TE and CL"
    );
}

/// HR-R06, HR-R07, HR-R10: any `Transfer-Encoding` other than one `chunked` is 400, and so is
/// chunked on HTTP/1.0; nothing is written.
fn hr_r06_r07_r10_unsupported_transfer_encodings_are_400(rt: Runtime) {
    let server = limited(rt);
    let chunked_hello = b"5\r\nhello\r\n0\r\n\r\n";
    for lines in [
        &["Transfer-Encoding: gzip"][..],
        &["Transfer-Encoding: gzip, chunked"],
        &["Transfer-Encoding: chunked, chunked"],
        &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: identity"],
    ] {
        let response = exchange(&server, &put_with(&server, "te.bin", lines, chunked_hello))
            .unwrap_or_else(|| panic!("{lines:?}: no response"));
        assert_eq!(response.status, 400, "{lines:?}: {:?}", response.text());
        assert_no_files(&server, &format!("{lines:?}"));
    }
    let mut http10 = format!(
        "PUT /v1/files/models/te.bin HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        server.addr
    )
    .into_bytes();
    http10.extend_from_slice(chunked_hello);
    let response = exchange(&server, &http10).expect("a response to HTTP/1.0 chunked");
    assert_eq!(response.status, 400, "{:?}", response.text());
    assert_no_files(&server, "HTTP/1.0 chunked");
    assert_still_serving(&server);
}

/// A refused body: either a 4xx answer or a closed connection, never 2xx or 5xx.
fn assert_4xx_or_closed(response: Option<&RawResponse>, what: &str) {
    if let Some(response) = response {
        assert!(
            (400..500).contains(&response.status),
            "{what}: got {} {:?}",
            response.status,
            response.text()
        );
    }
}

/// HR-R08: a chunk size that overflows 64 bits is an error, never a panic or a file.
fn hr_r08_chunk_size_overflow_is_an_error_without_file(rt: Runtime) {
    let server = limited(rt);
    let mut bytes = put_with(
        &server,
        "overflow.bin",
        &["Transfer-Encoding: chunked"],
        b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    );
    let response = exchange(&server, &bytes);
    assert_4xx_or_closed(response.as_ref(), "chunk size overflow");
    bytes.clear();
    assert_no_files(&server, "chunk size overflow");
    assert_still_serving(&server);
}

/// HR-R09: a body cut short (client half-closes) never produces a final file, with
/// `Content-Length` or chunked, including a final chunk missing its last digit.
fn hr_r09_truncated_bodies_leave_no_file(rt: Runtime) {
    let server = limited(rt);
    let cases: [(&str, &[&str], &[u8]); 3] = [
        ("short.bin", &["Content-Length: 100"], &[7u8; 50]),
        (
            "chunks.bin",
            &["Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n",
        ),
        ("digit.bin", &["Transfer-Encoding: chunked"], b"1\r\nZ\r\n0"),
    ];
    for (key, lines, body) in cases {
        let mut stream = connect(&server, Duration::from_secs(10));
        stream
            .write_all(&put_with(&server, key, lines, body))
            .expect("request");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let response = read_response(&mut stream, false);
        assert_4xx_or_closed(response.as_ref(), key);
        assert_no_files(&server, key);
    }
    assert_still_serving(&server);
}

/// HR-R11: a 100 KiB header line and 1 000 header lines are refused (431/400 or a closed
/// connection), and the server keeps serving.
fn hr_r11_oversized_heads_are_refused(rt: Runtime) {
    let server = limited(rt);
    let long = format!("X-Long: {}", "a".repeat(100 * 1024));
    let many: Vec<String> = (0..1000).map(|i| format!("X-H{i}: v")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    for (what, lines) in [
        ("long line", vec![long.as_str()]),
        ("many headers", many_refs),
    ] {
        let mut all = vec!["Connection: close"];
        all.extend(lines);
        let response = exchange(
            &server,
            &head(&server, "GET", "/v1/files/models/x.bin", &all),
        );
        if let Some(response) = &response {
            assert!(
                response.status == 431 || response.status == 400,
                "{what}: got {}",
                response.status
            );
        }
    }
    assert_still_serving(&server);
}

/// HR-R12: a request pipelined behind an upload refused for its size (body never read) is not
/// processed: no second response and no side effect.
fn hr_r12_request_pipelined_after_refused_body_is_not_processed(rt: Runtime) {
    let server = limited(rt);
    let smuggled = head(
        &server,
        "PUT",
        "/v1/files/models/smuggled.bin",
        &["Content-Length: 5"],
    );
    let mut bytes = head(
        &server,
        "PUT",
        "/v1/files/models/big.bin",
        &[&format!("Content-Length: {}", LIMIT + 1)],
    );
    bytes.extend_from_slice(&smuggled);
    bytes.extend_from_slice(b"hello");
    let mut stream = connect(&server, Duration::from_secs(10));
    stream.write_all(&bytes).expect("request");
    let received = read_until_closed(&mut stream, Duration::from_secs(10))
        .expect("the connection is closed after the refusal");
    let answers = received
        .windows(9)
        .filter(|w| w.starts_with(b"HTTP/1.1 "))
        .count();
    assert!(
        answers <= 1,
        "more than one answer: {}",
        received.escape_ascii()
    );
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 413"),
        "{}",
        received.escape_ascii()
    );
    assert_no_files(&server, "smuggled request");
}

/// HR-R13: `GET` and `HEAD` with a body are handled without desync: a pipelined request that
/// follows is either answered correctly or the connection is closed, never misparsed.
fn hr_r13_get_and_head_with_body_never_desync(rt: Runtime) {
    let server = limited(rt);
    assert_eq!(server.put("/v1/files/models/x.bin", b"0123").status, 200);
    for method in ["GET", "HEAD"] {
        let mut bytes = head(
            &server,
            method,
            "/v1/files/models/x.bin",
            &["Content-Length: 5"],
        );
        bytes.extend_from_slice(b"hello");
        bytes.extend_from_slice(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.addr
            )
            .as_bytes(),
        );
        let mut stream = connect(&server, Duration::from_secs(10));
        stream.write_all(&bytes).expect("request");
        let first = read_response(&mut stream, method == "HEAD").expect("first answer");
        assert_eq!(first.status, 200, "{method} with a body");
        if method == "GET" {
            assert_eq!(first.body, b"0123");
        }
        if let Some(second) = read_response(&mut stream, false) {
            assert_eq!(second.status, 200, "{method}: pipelined request misparsed");
            assert_eq!(second.text(), "ok");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §4.6 Concurrent uploads.

/// Sends a PUT whose body goes out in `pieces` with `pause` between them, and reads the
/// answer.
fn slow_put(
    server: &TestServer,
    key: &str,
    extra: &[&str],
    body: &[u8],
    pieces: usize,
    pause: Duration,
) -> RawResponse {
    let mut lines = vec!["Connection: close".to_owned()];
    lines.push(format!("Content-Length: {}", body.len()));
    lines.extend(extra.iter().map(|l| (*l).to_owned()));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut stream = connect(server, Duration::from_secs(20));
    stream
        .write_all(&head(server, "PUT", &format!("/v1/files/{key}"), &refs))
        .expect("head");
    for piece in body.chunks(body.len().div_ceil(pieces).max(1)) {
        std::thread::sleep(pause);
        stream.write_all(piece).expect("body piece");
    }
    read_response(&mut stream, false).expect("a response")
}

/// HR-K01: 8 concurrent full PUTs of different contents to one key: each is 200 (or 409 if
/// the key is busy), never 5xx; the final file is exactly one of the inputs, its sidecar
/// matches it, and no temp file is left.
fn hr_k01_concurrent_full_puts_leave_exactly_one_input(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let inputs: Vec<Vec<u8>> = (0..8u8).map(|i| pattern(i * 17 + 1, 256 * 1024)).collect();
    let barrier = Barrier::new(inputs.len());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|input| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    slow_put(
                        server,
                        "models/race.bin",
                        &[],
                        input,
                        4,
                        Duration::from_millis(20),
                    )
                    .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "statuses: {statuses:?}"
    );
    assert!(statuses.contains(&200), "statuses: {statuses:?}");
    let last = read_file(&server, "race.bin");
    assert!(
        inputs.contains(&last),
        "final content is not one of the inputs"
    );
    assert_eq!(sidecar(&server, "race.bin"), sha256_hex(&last));
    assert_eq!(
        files(&server),
        vec!["models/race.bin", "models/race.bin.sha256"]
    );
}

/// HR-K02: GETs during a slow full PUT return the old complete version, never a mix; after
/// the PUT they return the new one.
fn hr_k02_get_during_slow_put_sees_a_complete_version(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let old = pattern(1, 128 * 1024);
    let new = pattern(2, 128 * 1024);
    assert_eq!(server.put("/v1/files/models/k.bin", &old).status, 200);
    let (half_sent_tx, half_sent_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (during, put_status) = std::thread::scope(|scope| {
        let (server_ref, new_ref) = (&server, &new);
        let putter = scope.spawn(move || {
            let (server, new) = (server_ref, new_ref);
            let mut stream = connect(server, Duration::from_secs(20));
            let length = format!("Content-Length: {}", new.len());
            stream
                .write_all(&head(
                    server,
                    "PUT",
                    "/v1/files/models/k.bin",
                    &[&length, "Connection: close"],
                ))
                .expect("head");
            let (first, rest) = new.split_at(new.len() / 2);
            stream.write_all(first).expect("first half");
            half_sent_tx.send(()).expect("signal");
            go_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("go signal");
            for piece in rest.chunks(rest.len() / 4) {
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(piece).expect("body piece");
            }
            read_response(&mut stream, false)
                .expect("a response")
                .status
        });
        half_sent_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("half sent");
        // The upload is provably unfinished: half of its body has not been sent.
        let mut during = Vec::new();
        for _ in 0..3 {
            let get = server.get("/v1/files/models/k.bin");
            assert_eq!(get.status, 200);
            assert!(
                get.body == old,
                "a read during the upload is not the old version"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        go_tx.send(()).expect("go");
        // 5 more reads while the second half trickles in (about 400 ms) and after.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            let get = server.get("/v1/files/models/k.bin");
            assert_eq!(get.status, 200);
            during.push(get.body);
        }
        (during, putter.join().expect("putter"))
    });
    assert_eq!(put_status, 200);
    for body in &during {
        assert!(*body == old || *body == new, "a read returned a torn mix");
    }
    assert_eq!(server.get("/v1/files/models/k.bin").body, new);
    assert_eq!(sidecar(&server, "k.bin"), sha256_hex(&new));
    assert_eq!(files(&server), vec!["models/k.bin", "models/k.bin.sha256"]);
}

/// HR-K03: two concurrent range PUTs of the same first chunk: each answer is one of
/// 200/308/409/416, the partial holds the chunk once (never twice), and resuming from the size
/// HEAD reports completes the intended content with a matching sidecar.
fn hr_k03_concurrent_range_puts_at_same_offset_never_corrupt(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let content = pattern(3, 200);
    let hash = sha256_hex(&content);
    let range = "Content-Range: bytes 0-99/200".to_owned();
    let hash_line = format!("X-Content-SHA256: {hash}");
    let barrier = Barrier::new(2);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (server, barrier, content) = (&server, &barrier, &content);
                let extra = [range.as_str(), hash_line.as_str()];
                scope.spawn(move || {
                    barrier.wait();
                    slow_put(
                        server,
                        "models/ranged.bin",
                        &extra,
                        &content[..100],
                        4,
                        Duration::from_millis(100),
                    )
                    .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(
        statuses.iter().all(|s| [200, 308, 409, 416].contains(s)),
        "statuses: {statuses:?}"
    );
    assert!(statuses.contains(&308), "statuses: {statuses:?}");
    let probe = server.head("/v1/files/models/ranged.bin");
    assert_eq!(probe.status, 200);
    assert_eq!(
        probe.header("x-file-size"),
        Some("100"),
        "the chunk landed twice or not at all"
    );
    assert_eq!(probe.header("x-target-sha256"), Some(hash.as_str()));
    assert!(
        probe.header("x-content-sha256").is_none(),
        "a partial looks complete"
    );
    let rest = server.request(
        "PUT",
        "/v1/files/models/ranged.bin",
        true,
        &[
            ("Content-Range", "bytes 100-199/200"),
            ("X-Content-SHA256", &hash),
        ],
        &content[100..],
    );
    assert_eq!(rest.status, 200, "{:?}", rest.text());
    assert_eq!(read_file(&server, "ranged.bin"), content);
    assert_eq!(sidecar(&server, "ranged.bin"), hash);
    assert_eq!(
        files(&server),
        vec!["models/ranged.bin", "models/ranged.bin.sha256"]
    );
}

/// HR-K06: the same object uploaded under two keys at once: independent, both complete.
fn hr_k06_same_object_under_two_keys_both_complete(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let object = Arc::new(pattern(9, 512 * 1024));
    let keys = ["models/a/object.bin", "models/b/object.bin"];
    let barrier = Barrier::new(keys.len());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .map(|key| {
                let (server, barrier, object) = (&server, &barrier, object.clone());
                scope.spawn(move || {
                    barrier.wait();
                    slow_put(server, key, &[], &object, 8, Duration::from_millis(30)).status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(statuses, vec![200, 200]);
    for rel in ["a/object.bin", "b/object.bin"] {
        assert_eq!(read_file(&server, rel), *object, "{rel}");
        assert_eq!(sidecar(&server, rel), sha256_hex(&object), "{rel}");
    }
}

/// HR-K04: a full PUT racing a resumable upload of another content on the same key. Pinned
/// winner: whichever publishes last; the visible file is always exactly one of the two inputs
/// with a matching sidecar, never a mix.
fn hr_k04_full_put_racing_a_range_upload_never_interleaves(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let full = pattern(3, 256 * 1024);
    let ranged = pattern(9, 256 * 1024);
    let ranged_hash = sha256_hex(&ranged);
    let total = ranged.len();
    let range_line = format!("Content-Range: bytes 0-{}/{total}", total - 1);
    let hash_line = format!("X-Content-SHA256: {ranged_hash}");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            slow_put(
                &server,
                "models/k4.bin",
                &[],
                &full,
                8,
                Duration::from_millis(10),
            )
            .status
        });
        let b = scope.spawn(|| {
            slow_put(
                &server,
                "models/k4.bin",
                &[&range_line, &hash_line],
                &ranged,
                8,
                Duration::from_millis(10),
            )
            .status
        });
        vec![a.join().expect("full"), b.join().expect("range")]
    });
    assert!(statuses.iter().all(|s| *s == 200), "statuses: {statuses:?}");
    let visible = read_file(&server, "k4.bin");
    assert!(
        visible == full || visible == ranged,
        "the visible file mixes two uploads"
    );
    assert_eq!(sidecar(&server, "k4.bin"), sha256_hex(&visible));
    assert_eq!(
        files(&server),
        vec!["models/k4.bin", "models/k4.bin.sha256"]
    );
}

/// HR-K05: listings taken while uploads are in flight never show temp or partial names, only
/// keys a client can fetch.
fn hr_k05_listing_during_uploads_never_shows_temp_names(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(10), Duration::from_secs(10), None);
    let body = pattern(5, 512 * 1024);
    let hash = sha256_hex(&body);
    let total = body.len();
    let (server, body) = (&server, &body);
    let listings: Vec<serde_json::Value> = std::thread::scope(|scope| {
        scope.spawn(move || {
            slow_put(
                server,
                "models/dir/full.bin",
                &[],
                body,
                16,
                Duration::from_millis(15),
            )
        });
        let range_line = format!("Content-Range: bytes 0-{}/{total}", total - 1);
        let hash_line = format!("X-Content-SHA256: {hash}");
        scope.spawn(move || {
            slow_put(
                server,
                "models/dir/part.bin",
                &[&range_line, &hash_line],
                body,
                16,
                Duration::from_millis(15),
            )
        });
        (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(12));
                server.get("/v1/files-list/models/dir").json()
            })
            .collect()
    });
    for listing in &listings {
        if let Some(names) = listing["files"].as_array() {
            for name in names {
                let name = name.as_str().expect("string entry");
                assert!(
                    !name.split('/').any(|s| s.starts_with('.')),
                    "hidden name listed: {name}"
                );
            }
        }
    }
    let done = server.get("/v1/files-list/models/dir").json();
    assert_eq!(
        done["files"],
        serde_json::json!(["full.bin", "full.bin.sha256", "part.bin", "part.bin.sha256"])
    );
}

/// HR-S05: an idle keep-alive connection is closed once the header timeout passes without a
/// new request.
fn hr_s05_idle_keep_alive_connection_is_closed(rt: Runtime) {
    let server = server_with(rt, Duration::from_secs(1), Duration::from_secs(10), None);
    let mut stream = connect(&server, Duration::from_secs(10));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    stream.write_all(request.as_bytes()).expect("request");
    let first = read_response(&mut stream, false).expect("first response");
    assert_eq!(first.status, 200);
    let started = Instant::now();
    let rest = read_until_closed(&mut stream, Duration::from_secs(8));
    assert!(rest.is_some(), "idle connection was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed only after {:?}",
        started.elapsed()
    );
    assert_still_serving(&server);
}

common::per_runtime_tests!(
    hr_s01_slow_header_is_closed_by_header_timeout,
    hr_s02_many_slow_connections_are_all_closed,
    hr_s03_stalled_body_times_out_and_leaves_nothing,
    hr_s04_trickled_body_is_idle_not_total,
    hr_m01_content_length_over_limit_is_413_before_writing,
    hr_m02_expect_continue_over_limit_gets_413_not_100,
    hr_m03_chunked_body_crossing_limit_is_413_and_temp_removed,
    hr_m04_declared_total_over_limit_is_413_before_writing,
    hr_m05_range_chunks_over_limit_are_refused_at_first_chunk,
    hr_m06_exactly_the_limit_is_accepted,
    hr_r01_r02_r04_malformed_content_length_is_400,
    hr_r03_repeated_equal_content_length_is_accepted,
    hr_r05_chunked_wins_over_content_length_and_closes,
    hr_r06_r07_r10_unsupported_transfer_encodings_are_400,
    hr_r08_chunk_size_overflow_is_an_error_without_file,
    hr_r09_truncated_bodies_leave_no_file,
    hr_r11_oversized_heads_are_refused,
    hr_r12_request_pipelined_after_refused_body_is_not_processed,
    hr_r13_get_and_head_with_body_never_desync,
    hr_k01_concurrent_full_puts_leave_exactly_one_input,
    hr_k02_get_during_slow_put_sees_a_complete_version,
    hr_k03_concurrent_range_puts_at_same_offset_never_corrupt,
    hr_k06_same_object_under_two_keys_both_complete,
    hr_k04_full_put_racing_a_range_upload_never_interleaves,
    hr_k05_listing_during_uploads_never_shows_temp_names,
    hr_s05_idle_keep_alive_connection_is_closed,
);
