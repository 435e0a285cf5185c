//! The std-only embedding (`examples/embed.rs`) as a black box: the `embed` program runs as a
//! process on a free 127.0.0.1 port over a temp tree, and a raw HTTP/1.1 client (request
//! targets go out byte for byte) checks an authenticated round trip, `HEAD`, ranges, resumable
//! and chunked uploads, the 401s, traversal and symlink escapes, and the start-up refusal.
//!
//! The workspace's shared harness (`tests/common`) is built on the tokio adapter; this package
//! must stay free of any async runtime, even among its dev-dependencies' users, so the few
//! helpers it needs are here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

const TOKEN: &str = "embed-Token_for.tests~";
/// How long a process may take to start, and a client to get its answer.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The `embed` program on a free port over `<tmp>/root/{models,staging,data}`, with
/// `<tmp>/outside` beside the roots (it must never change); killed on drop.
struct Embed {
    addr: SocketAddr,
    tmp: tempfile::TempDir,
    child: Child,
}

impl Embed {
    fn start() -> Self {
        Self::start_with(&[("LOCALAI_REGISTRATION_TOKEN", TOKEN)])
    }

    fn start_with(env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tmp.path().join("outside")).expect("outside dir");
        std::fs::write(tmp.path().join("outside/secret"), b"do not serve").expect("secret");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = command(tmp.path(), addr, env)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn embed");
        let mut embed = Self { addr, tmp, child };
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(
                embed.child.try_wait().expect("wait").is_none(),
                "embed exited before listening"
            );
            assert!(Instant::now() < deadline, "embed did not listen in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        embed
    }

    fn models(&self) -> PathBuf {
        self.tmp.path().join("root/models")
    }

    /// Sends `head` (CRLF line endings added, `Host` and `Connection: close` included) and
    /// `body`, and reads the answer.
    fn send(&self, head: &str, body: &[u8]) -> Answer {
        let mut stream = connect(self.addr);
        write_request(&mut stream, head, body, true);
        read_answer(&mut stream, head.starts_with("HEAD "))
    }
}

impl Drop for Embed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `embed` command with a clean environment: only `PATH` and `env`.
fn command(tmp: &Path, addr: SocketAddr, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_embed"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOCALAI_MODELS_PATH", tmp.join("root/models"))
        .env("LOCALAI_HTTP_ADDR", addr.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    stream
}

fn write_request(stream: &mut TcpStream, head: &str, body: &[u8], close: bool) {
    let mut out = String::new();
    for line in head.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Host: 127.0.0.1\r\n");
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
}

/// A response: status, headers (names lower case) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response: the head, then `Content-Length` bytes of body (none for `HEAD`).
/// Interim `100 Continue` answers are skipped.
fn read_answer(stream: &mut TcpStream, is_head: bool) -> Answer {
    loop {
        let answer = read_one(stream, is_head);
        if answer.status != 100 {
            return answer;
        }
    }
}

fn read_one(stream: &mut TcpStream, is_head: bool) -> Answer {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "connection closed inside the response head");
        raw.push(byte[0]);
    }
    let text = String::from_utf8(raw).expect("ascii head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if !is_head && status != 100 {
        let len: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        answer.body = vec![0; len];
        stream.read_exact(&mut answer.body).expect("read body");
    }
    answer
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes that differ from chunk to chunk, so a misplaced chunk is noticed.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[test]
fn authenticated_put_then_get_returns_the_same_bytes() {
    let embed = Embed::start();
    let data = pattern(3 * 1024 * 1024 + 17);
    let hash = sha256_hex(&data);
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/llama/model.gguf HTTP/1.1\n{}\nContent-Length: {}\nX-Content-SHA256: {hash}\nExpect: 100-continue",
            auth(),
            data.len()
        ),
        &data,
    );
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let local = embed.models().join("llama/model.gguf");
    let expected = format!("{{\"local_path\":\"{}\"}}\n", local.display());
    assert_eq!(String::from_utf8_lossy(&put.body), expected);
    assert_eq!(std::fs::read(&local).expect("published file"), data);

    let get = embed.send(
        &format!("GET /v1/files/models/llama/model.gguf HTTP/1.1\n{}", auth()),
        b"",
    );
    assert_eq!(get.status, 200);
    assert_eq!(get.header("content-type"), Some("application/octet-stream"));
    assert!(get.body == data, "GET returned other bytes than were PUT");

    let head = embed.send(
        &format!(
            "HEAD /v1/files/models/llama/model.gguf HTTP/1.1\n{}",
            auth()
        ),
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-content-sha256"), Some(hash.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(
        head.header("x-local-path"),
        Some(local.display().to_string().as_str())
    );

    let range = embed.send(
        &format!(
            "GET /v1/files/models/llama/model.gguf HTTP/1.1\n{}\nRange: bytes=10-19",
            auth()
        ),
        b"",
    );
    assert_eq!(range.status, 206);
    assert_eq!(
        range.header("content-range"),
        Some(&*format!("bytes 10-19/{}", data.len()))
    );
    assert_eq!(range.body, &data[10..20]);
}

#[test]
fn a_wrong_hash_is_refused_and_the_previous_copy_stays() {
    let embed = Embed::start();
    let put = |body: &[u8], hash: &str| {
        embed.send(
            &format!(
                "PUT /v1/files/data/out.bin HTTP/1.1\n{}\nContent-Length: {}\nX-Content-SHA256: {hash}",
                auth(),
                body.len()
            ),
            body,
        )
    };
    assert_eq!(put(b"first copy", &sha256_hex(b"first copy")).status, 200);
    let refused = put(b"second copy", &sha256_hex(b"something else"));
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("sha256 mismatch"));
    let data = embed.tmp.path().join("root/data/out.bin");
    assert_eq!(std::fs::read(data).expect("kept"), b"first copy");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let embed = Embed::start();
    let mut stream = connect(embed.addr);
    let head = format!(
        "PUT /v1/files/staging/a.txt HTTP/1.1\n{}\nContent-Length: 5",
        auth()
    );
    write_request(&mut stream, &head, b"hello", false);
    assert_eq!(read_answer(&mut stream, false).status, 200);
    let head = format!("GET /v1/files/staging/a.txt HTTP/1.1\n{}", auth());
    write_request(&mut stream, &head, b"", false);
    let get = read_answer(&mut stream, false);
    assert_eq!((get.status, get.body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn resumable_upload_in_two_chunks_is_published_whole() {
    let embed = Embed::start();
    let data = pattern(200_000);
    let hash = sha256_hex(&data);
    let chunk = |start: usize, end: usize| {
        embed.send(
            &format!(
                "PUT /v1/files/models/r/big.bin HTTP/1.1\n{}\nContent-Length: {}\nContent-Range: bytes {start}-{}/{}\nX-Content-SHA256: {hash}",
                auth(),
                end - start,
                end - 1,
                data.len()
            ),
            &data[start..end],
        )
    };
    let first = chunk(0, 120_000);
    assert_eq!(first.status, 308);
    assert_eq!(first.header("x-file-size"), Some("120000"));
    let head = embed.send(
        &format!("HEAD /v1/files/models/r/big.bin HTTP/1.1\n{}", auth()),
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-file-size"), Some("120000"));
    assert_eq!(head.header("x-target-sha256"), Some(hash.as_str()));
    assert_eq!(head.header("x-content-sha256"), None);
    // A chunk that skips ahead is told where to resume, and changes nothing.
    let skipped = chunk(150_000, 200_000);
    assert_eq!(skipped.status, 416);
    assert_eq!(skipped.header("x-file-size"), Some("120000"));
    assert_eq!(chunk(120_000, 200_000).status, 200);
    assert_eq!(
        std::fs::read(embed.models().join("r/big.bin")).expect("published"),
        data
    );
}

#[test]
fn chunked_upload_is_decoded() {
    let embed = Embed::start();
    let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/c.txt HTTP/1.1\n{}\nTransfer-Encoding: chunked\nX-Content-SHA256: {}",
            auth(),
            sha256_hex(b"hello, world")
        ),
        body,
    );
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(
        std::fs::read(embed.models().join("c.txt")).expect("published"),
        b"hello, world"
    );
}

#[test]
fn an_upload_over_the_limit_is_413_before_its_body_is_read() {
    let embed = Embed::start_with(&[
        ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
        ("LOCALAI_MAX_UPLOAD_SIZE", "1K"),
    ]);
    let body = pattern(4096);
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/big.bin HTTP/1.1\n{}\nContent-Length: {}",
            auth(),
            body.len()
        ),
        &body,
    );
    assert_eq!(put.status, 413);
    assert_eq!(put.header("connection"), Some("close"));
    assert!(!embed.models().join("big.bin").exists());
    // Streamed without a length, it is cut off at the limit and nothing is published.
    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/big.bin HTTP/1.1\n{}\nTransfer-Encoding: chunked",
            auth()
        ),
        &chunked,
    );
    assert_eq!(put.status, 413);
    assert!(!embed.models().join("big.bin").exists());
}

#[test]
fn missing_or_wrong_tokens_are_401_and_write_nothing() {
    let embed = Embed::start();
    let none = embed.send("GET /v1/files/models/x HTTP/1.1", b"");
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = embed.send(
        "HEAD /v1/files/models/x HTTP/1.1\nAuthorization: Bearer not-the-token",
        b"",
    );
    assert_eq!(wrong.status, 401);
    // A refused upload is heard (not reset) although its body is never read.
    let body = pattern(512 * 1024);
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/x HTTP/1.1\nAuthorization: Bearer not-the-token\nContent-Length: {}",
            body.len()
        ),
        &body,
    );
    assert_eq!(put.status, 401);
    assert!(!embed.models().join("x").exists());
    // The probes need no token.
    assert_eq!(embed.send("GET /healthz HTTP/1.1", b"").status, 200);
}

#[test]
fn traversal_and_symlink_escapes_are_refused() {
    let embed = Embed::start();
    let outside = embed.tmp.path().join("outside");
    for target in [
        "/v1/files/models/../../outside/secret",
        "/v1/files/models/..%2f..%2foutside%2fsecret",
        "/v1/files/models/%2e%2e/%2e%2e/outside/secret",
        "/v1/files/models/a%00b",
    ] {
        let get = embed.send(&format!("GET {target} HTTP/1.1\n{}", auth()), b"");
        assert_eq!(get.status, 400, "GET {target}");
        let put = embed.send(
            &format!("PUT {target} HTTP/1.1\n{}\nContent-Length: 4", auth()),
            b"evil",
        );
        assert_eq!(put.status, 400, "PUT {target}");
    }
    // A symbolic link inside a root that points out of it is refused when opened.
    std::os::unix::fs::symlink(&outside, embed.models().join("link")).expect("symlink");
    let get = embed.send(
        &format!("GET /v1/files/models/link/secret HTTP/1.1\n{}", auth()),
        b"",
    );
    assert_eq!(get.status, 404);
    let put = embed.send(
        &format!(
            "PUT /v1/files/models/link/planted HTTP/1.1\n{}\nContent-Length: 4",
            auth()
        ),
        b"evil",
    );
    assert_eq!(put.status, 400);
    let mut names: Vec<_> = std::fs::read_dir(&outside)
        .expect("outside")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"], "nothing was written outside the roots");
    assert_eq!(
        std::fs::read(outside.join("secret")).expect("secret"),
        b"do not serve"
    );
}

#[test]
fn required_auth_without_a_token_refuses_to_start_before_binding() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut child = command(
        tmp.path(),
        addr,
        &[("LOCALAI_REGISTRATION_REQUIRE_AUTH", "true")],
    )
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn embed");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "embed did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("LOCALAI_REGISTRATION_TOKEN"), "{stderr}");
    assert!(
        !tmp.path().join("root").exists(),
        "no directory was created"
    );
}
