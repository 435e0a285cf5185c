//! The worker file-transfer API over real sockets against the in-process server:
//! - localai-wire.md §7.1 (LocalAI's `file_transfer_server_test.go`, items 1–7, 9, 11; items 8
//!   and 10 are client-side, so instead the exact request shapes of LocalAI's `EnsureRemote`
//!   (§3.2) are replayed: HEAD probe, range PUT of the whole remainder, resume after a partial);
//! - §7.2 readiness; §7.10 cases derived from LocalAI's code, with nodegate's pinned deviations
//!   (307 instead of 301, 413 instead of 500, 400 for GET on a directory, `WWW-Authenticate`);
//! - the deviations observable over HTTP: D3, D5, D6, D9;
//! - security.md §4.7 CR-01…CR-19 end to end;
//! - files-list, `POST /v1/files/temp`, backend logs (REST and a hand-parsed WebSocket), AH-27.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    CLIENT_TIMEOUT, Options, RawResponse, Runtime, TOKEN, TestServer, read_response, sha256_hex,
};
use nodegate::logs::Stream;

/// The readiness error LocalAI's worker reports while NATS is down (§2.11).
const NATS_DOWN: &str = "NATS connection is down: worker cannot receive work";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A range `PUT` shaped like LocalAI's client (§3.2): `Content-Type: application/octet-stream`,
/// `Content-Range` and, when given, `X-Content-SHA256`.
fn put_range(
    server: &TestServer,
    key: &str,
    range: &str,
    sha: Option<&str>,
    body: &[u8],
) -> RawResponse {
    let mut headers = vec![
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", range),
    ];
    if let Some(sha) = sha {
        headers.push(("X-Content-SHA256", sha));
    }
    server.request("PUT", &format!("/v1/files/{key}"), true, &headers, body)
}

/// A full `PUT` (no `Content-Range`) declaring `sha`.
fn put_full(server: &TestServer, key: &str, sha: &str, body: &[u8]) -> RawResponse {
    server.request(
        "PUT",
        &format!("/v1/files/{key}"),
        true,
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Content-SHA256", sha),
        ],
        body,
    )
}

/// `{"local_path": ...}` of a 200 upload answer.
fn local_path_of(response: &RawResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert!(response.body.ends_with(b"\n"), "JSON ends with a newline");
    response.json()["local_path"]
        .as_str()
        .expect("local_path is a string")
        .to_owned()
}

/// Asserts a Go `http.Error`-shaped answer: status, `text\n`, `text/plain; charset=utf-8`.
#[track_caller]
fn assert_error(response: &RawResponse, status: u16, text: &str) {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert_eq!(response.text(), format!("{text}\n"));
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

/// Asserts a status and that the body starts with `prefix`.
#[track_caller]
fn assert_status_prefix(response: &RawResponse, status: u16, prefix: &str) {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert!(
        response.text().starts_with(prefix),
        "body {:?} should start with {prefix:?}",
        response.text()
    );
}

/// The hidden partial file of a key whose parent directory is `dir` and file name `name`.
fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.partial"))
}

/// Every entry under `dir` (recursively) whose file name starts with `.`.
fn hidden_entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                out.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out
}

/// No temp file of a full upload is left anywhere under the roots.
#[track_caller]
fn assert_no_temp_files(server: &TestServer) {
    let temps: Vec<_> = hidden_entries(&server.tmp.path().join("root"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

fn read_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Deterministic test bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// What a run of the replayed client did.
#[derive(Debug, PartialEq, Eq)]
enum Ensured {
    /// The HEAD probe matched: nothing was uploaded; the remote path.
    Skipped(String),
    /// Uploaded in `attempts` PUTs, the first one starting at `first_offset`; the remote path.
    Uploaded {
        path: String,
        attempts: usize,
        first_offset: u64,
    },
}

/// LocalAI's `EnsureRemote` (§3.2), request for request: HEAD probe (skip iff 200 with a
/// non-empty `X-Local-Path` and an `X-Content-SHA256` equal, case-sensitively, to the local
/// hash), then attempts of {HEAD for the resume offset, PUT of the whole remainder with
/// `Content-Range: bytes <off>-<size-1>/<size>` when the file is not empty}. 308 and 416 are
/// retried (at most 5 attempts here, no backoff); any other non-200 fails the test.
fn ensure_remote(server: &TestServer, local: &[u8], key: &str) -> Ensured {
    let url = format!("/v1/files/{key}");
    let hash = sha256_hex(local);
    let size = local.len() as u64;
    let probe = server.head(&url);
    if probe.status == 200
        && let (Some(path), Some(remote_hash)) = (
            probe.header("X-Local-Path"),
            probe.header("X-Content-SHA256"),
        )
        && !path.is_empty()
        && remote_hash == hash
    {
        return Ensured::Skipped(path.to_owned());
    }
    let mut first_offset = None;
    for attempt in 1..=5 {
        let head = server.head(&url);
        let offset = match head
            .header("X-File-Size")
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(remote)
                if size > 0
                    && head.status == 200
                    && remote > 0
                    && remote < size
                    && head
                        .header("X-Target-SHA256")
                        .is_some_and(|t| t.eq_ignore_ascii_case(&hash)) =>
            {
                remote
            }
            _ => 0,
        };
        first_offset.get_or_insert(offset);
        let range = format!("bytes {offset}-{}/{size}", size.saturating_sub(1));
        let mut headers = vec![
            ("Content-Type", "application/octet-stream"),
            ("X-Content-SHA256", hash.as_str()),
        ];
        if offset > 0 || size > 0 {
            headers.push(("Content-Range", range.as_str()));
        }
        let response = server.request("PUT", &url, true, &headers, &local[offset as usize..]);
        match response.status {
            200 => {
                return Ensured::Uploaded {
                    path: local_path_of(&response),
                    attempts: attempt,
                    first_offset: first_offset.unwrap_or(0),
                };
            }
            308 | 416 => continue,
            other => panic!("upload failed with status {other}: {}", response.text()),
        }
    }
    panic!("no success within 5 attempts")
}

/// Sends the head of a range PUT of `whole[offset..]` plus only `sent` bytes of the body, then
/// half-closes the connection (a client that died mid-upload) and reads whatever comes back.
fn interrupted_range_put(
    server: &TestServer,
    key: &str,
    whole: &[u8],
    sent: usize,
) -> Option<RawResponse> {
    let size = whole.len();
    let head = format!(
        "PUT /v1/files/{key} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/octet-stream\r\nX-Content-SHA256: {}\r\n\
         Content-Range: bytes 0-{}/{size}\r\nContent-Length: {size}\r\n\r\n",
        server.addr,
        sha256_hex(whole),
        size - 1
    );
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&whole[..sent]).expect("some body");
    stream.flush().expect("flush");
    stream.shutdown(Shutdown::Write).expect("half-close");
    read_response(&mut stream, false)
}

/// Polls `HEAD` until `X-File-Size` equals `want` (bounded: 10 s).
fn wait_head_size(server: &TestServer, url: &str, want: u64) -> RawResponse {
    let start = Instant::now();
    loop {
        let head = server.head(url);
        if head.header("X-File-Size") == Some(&want.to_string())
            || start.elapsed() > Duration::from_secs(10)
        {
            return head;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// §7.1 LocalAI's file_transfer_server_test.go

fn t7_1_1_put_then_get_round_trips_the_bytes(rt: Runtime) {
    let server = TestServer::start(rt);
    let content = b"hello distributed world";
    let put = server.put("/v1/files/myfile.txt", content);
    let path = local_path_of(&put);
    assert_eq!(
        path,
        server
            .roots
            .staging
            .join("myfile.txt")
            .display()
            .to_string()
    );
    let get = server.get("/v1/files/myfile.txt");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, content);
    assert_eq!(get.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        std::fs::read(server.roots.staging.join("myfile.txt")).unwrap(),
        content
    );
}

fn t7_1_2_body_over_the_limit_is_413_and_leaves_nothing(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            max_upload: Some(100),
            ..Options::default()
        },
    );
    // Declared by Content-Length: refused before a byte is read.
    let put = server.put("/v1/files/big.bin", &[7u8; 200]);
    assert_status_prefix(&put, 413, "request body too large");
    // Undeclared (chunked): refused while streaming.
    let mut raw = format!(
        "PUT /v1/files/big2.bin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for _ in 0..4 {
        raw.extend_from_slice(b"32\r\n");
        raw.extend_from_slice(&[9u8; 50]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let chunked = server.raw(&raw);
    assert_status_prefix(&chunked, 413, "request body too large");
    // Exactly at the limit is fine.
    local_path_of(&server.put("/v1/files/ok.bin", &[1u8; 100]));
    assert_eq!(
        server.root_files(),
        vec![
            "staging/ok.bin".to_owned(),
            "staging/ok.bin.sha256".to_owned()
        ]
    );
}

fn t7_1_3_path_validation_rejects_escapes_and_accepts_new_subdirs(rt: Runtime) {
    let server = TestServer::start(rt);
    let before = server.outside_snapshot();
    // `staging/../../etc/passwd`-style keys never resolve.
    for key in [
        "../../etc/passwd",
        "../outside/secret.txt",
        "a/../../x",
        "%2e%2e/%2e%2e/etc/passwd",
    ] {
        let get = server.get(&format!("/v1/files/{key}"));
        assert_eq!(get.status, 400, "GET {key}: {}", get.text());
        let put = server.put(&format!("/v1/files/{key}"), b"x");
        assert_eq!(put.status, 400, "PUT {key}: {}", put.text());
    }
    // A not-yet-existing subdirectory is fine.
    let put = server.put("/v1/files/subdir/file.txt", b"nested");
    assert_eq!(
        local_path_of(&put),
        server
            .roots
            .staging
            .join("subdir/file.txt")
            .display()
            .to_string()
    );
    // A symlink in staging pointing outside: never read, never written through.
    let outside = server.tmp.path().join("outside");
    std::os::unix::fs::symlink(
        outside.join("secret.txt"),
        server.roots.staging.join("link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, server.roots.staging.join("linkdir")).unwrap();
    let get = server.get("/v1/files/link");
    assert_error(&get, 404, "file not found");
    assert!(!get.text().contains("outside secret"));
    assert_eq!(server.head("/v1/files/link").status, 404);
    for key in ["link", "linkdir/new.txt", "linkdir/secret.txt"] {
        let put = server.put(&format!("/v1/files/{key}"), b"overwritten");
        assert_eq!(put.status, 400, "PUT {key}: {}", put.text());
        let range = put_range(
            &server,
            key,
            "bytes 0-10/11",
            Some(&sha256_hex(b"overwritten")),
            b"overwritten",
        );
        assert_eq!(range.status, 400, "range PUT {key}: {}", range.text());
    }
    assert_eq!(server.get("/v1/files/linkdir/secret.txt").status, 404);
    assert_eq!(
        server.outside_snapshot(),
        before,
        "nothing outside the roots changed"
    );
}

fn t7_1_4_keys_route_to_their_root(rt: Runtime) {
    let server = TestServer::start(rt);
    let cases = [
        ("models/foo", server.roots.models.join("foo")),
        (
            "models/subdir/bar.bin",
            server.roots.models.join("subdir/bar.bin"),
        ),
        ("data/bar", server.roots.data.join("bar")),
        (
            "data/nested/file.txt",
            server.roots.data.join("nested/file.txt"),
        ),
        ("other", server.roots.staging.join("other")),
        (
            "random/path/file.gguf",
            server.roots.staging.join("random/path/file.gguf"),
        ),
        ("models", server.roots.staging.join("models")),
    ];
    for (key, expected) in cases {
        let body = format!("content of {key}");
        let put = server.put(&format!("/v1/files/{key}"), body.as_bytes());
        assert_eq!(local_path_of(&put), expected.display().to_string(), "{key}");
        assert_eq!(std::fs::read(&expected).unwrap(), body.as_bytes(), "{key}");
        let head = server.head(&format!("/v1/files/{key}"));
        assert_eq!(
            head.header("X-Local-Path"),
            Some(expected.display().to_string().as_str()),
            "{key}"
        );
    }
}

fn t7_1_5_bearer_gate_on_get(rt: Runtime) {
    let server = TestServer::start(rt);
    std::fs::write(server.roots.staging.join("f.txt"), b"content").unwrap();
    let missing = server.request("GET", "/v1/files/f.txt", false, &[], b"");
    assert_error(&missing, 401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = server.request(
        "GET",
        "/v1/files/f.txt",
        false,
        &[("Authorization", "Bearer wrong-token")],
        b"",
    );
    assert_error(&wrong, 401, "unauthorized");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let right = server.get("/v1/files/f.txt");
    assert_eq!(right.status, 200);
    assert_eq!(right.body, b"content");
}

fn t7_1_6_head_probe(rt: Runtime) {
    let server = TestServer::start(rt);
    // Missing.
    assert_eq!(server.head("/v1/files/nothing.bin").status, 404);
    // After an upload: hash, size, local path, Accept-Ranges, Content-Length = size, no body.
    let content = b"hello distributed world";
    local_path_of(&server.put("/v1/files/hello.txt", content));
    let head = server.head("/v1/files/hello.txt");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("X-Content-SHA256"),
        Some(sha256_hex(content).as_str())
    );
    assert_eq!(head.header("X-File-Size"), Some("23"));
    assert_eq!(head.header("Content-Length"), Some("23"));
    assert_eq!(head.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(
        head.header("X-Local-Path"),
        Some(
            server
                .roots
                .staging
                .join("hello.txt")
                .display()
                .to_string()
                .as_str()
        )
    );
    assert!(head.header("X-Target-SHA256").is_none());
    assert!(head.body.is_empty());
    // A models key reports a path inside the models dir.
    local_path_of(&server.put("/v1/files/models/test/w.bin", b"weights"));
    let head = server.head("/v1/files/models/test/w.bin");
    assert!(
        head.header("X-Local-Path")
            .unwrap()
            .starts_with(&server.roots.models.display().to_string())
    );
    // A file put there behind the server's back (no sidecar): hashed, and the sidecar written.
    std::fs::write(server.roots.staging.join("legacy.bin"), b"legacy bytes").unwrap();
    let head = server.head("/v1/files/legacy.bin");
    assert_eq!(
        head.header("X-Content-SHA256"),
        Some(sha256_hex(b"legacy bytes").as_str())
    );
    assert_eq!(
        read_string(&server.roots.staging.join("legacy.bin.sha256")),
        sha256_hex(b"legacy bytes")
    );
    // Re-upload with new content: new hash.
    local_path_of(&server.put("/v1/files/hello.txt", b"new content"));
    assert_eq!(
        server
            .head("/v1/files/hello.txt")
            .header("X-Content-SHA256"),
        Some(sha256_hex(b"new content").as_str())
    );
    // HEAD without or with a wrong token.
    for auth in [None, Some("Bearer nope")] {
        let extra: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let head = server.request("HEAD", "/v1/files/hello.txt", false, &extra, b"");
        assert_eq!(head.status, 401);
        assert_eq!(head.header("www-authenticate"), Some("Bearer"));
        assert!(head.header("X-Content-SHA256").is_none());
    }
    // Traversal: 400 (LocalAI: 400 or 404).
    assert_eq!(server.head("/v1/files/../escape.txt").status, 400);
}

fn t7_1_7_sidecar_is_written_next_to_the_file(rt: Runtime) {
    let server = TestServer::start(rt);
    local_path_of(&server.put("/v1/files/sidecar.txt", b"sidecar content"));
    let sidecar = server.roots.staging.join("sidecar.txt.sha256");
    assert_eq!(read_string(&sidecar), sha256_hex(b"sidecar content"));
    assert_eq!(
        std::fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777,
        0o640
    );
    local_path_of(&server.put("/v1/files/models/m1/w.bin", b"w"));
    assert_eq!(
        read_string(&server.roots.models.join("m1/w.bin.sha256")),
        sha256_hex(b"w")
    );
    // Sidecars are readable keys but never writable ones.
    assert_eq!(
        server.get("/v1/files/sidecar.txt.sha256").body,
        sha256_hex(b"sidecar content").as_bytes()
    );
    assert_eq!(
        server.put("/v1/files/sidecar.txt.sha256", b"0000").status,
        400
    );
    assert_eq!(
        server
            .put("/v1/files/sidecar.txt.sha256.target", b"0000")
            .status,
        400
    );
    assert_eq!(read_string(&sidecar), sha256_hex(b"sidecar content"));
}

fn t7_1_9_resumable_upload_state_machine(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(200, 1);
    let hash = sha256_hex(&data);
    // Two chunks: 308 then 200.
    let first = put_range(
        &server,
        "r.bin",
        "bytes 0-99/200",
        Some(&hash),
        &data[..100],
    );
    assert_eq!(first.status, 308, "{}", first.text());
    assert_eq!(first.header("X-File-Size"), Some("100"));
    assert_eq!(first.header("Range"), Some("bytes=0-99"));
    assert!(first.header("Location").is_none());
    assert!(first.body.is_empty());
    assert!(
        !server.roots.staging.join("r.bin").exists(),
        "a partial is never visible under the key"
    );
    let second = put_range(
        &server,
        "r.bin",
        "bytes 100-199/200",
        Some(&hash),
        &data[100..],
    );
    local_path_of(&second);
    assert_eq!(
        std::fs::read(server.roots.staging.join("r.bin")).unwrap(),
        data
    );
    assert_eq!(
        read_string(&server.roots.staging.join("r.bin.sha256")),
        hash
    );
    assert!(!server.roots.staging.join("r.bin.sha256.target").exists());
    assert!(!partial_path(&server.roots.staging, "r.bin").exists());

    // Skip ahead after 50 bytes: 416 with X-File-Size 50.
    let data2 = bytes(200, 2);
    let hash2 = sha256_hex(&data2);
    assert_eq!(
        put_range(
            &server,
            "s.bin",
            "bytes 0-49/200",
            Some(&hash2),
            &data2[..50]
        )
        .status,
        308
    );
    let skip = put_range(
        &server,
        "s.bin",
        "bytes 100-199/200",
        Some(&hash2),
        &data2[100..],
    );
    assert_status_prefix(
        &skip,
        416,
        "Content-Range start 100 does not match current file size 50",
    );
    assert_eq!(skip.header("X-File-Size"), Some("50"));
    assert_eq!(skip.header("Content-Range"), Some("bytes */200"));

    // Hash change between chunks: 409, partial discarded.
    let other = sha256_hex(b"something else");
    let drift = put_range(
        &server,
        "s.bin",
        "bytes 50-99/200",
        Some(&other),
        &data2[50..100],
    );
    assert_status_prefix(
        &drift,
        409,
        "X-Content-SHA256 mismatch with in-progress upload",
    );
    assert!(!partial_path(&server.roots.staging, "s.bin").exists());
    assert!(!server.roots.staging.join("s.bin.sha256.target").exists());
    assert_eq!(server.head("/v1/files/s.bin").status, 404);

    // Wrong final hash on a single chunk: 400, nothing published.
    let wrong = put_range(
        &server,
        "w.bin",
        "bytes 0-9/10",
        Some(&other),
        b"0123456789",
    );
    assert_status_prefix(&wrong, 400, "sha256 mismatch: expected");
    assert!(!server.roots.staging.join("w.bin").exists());
    assert!(!partial_path(&server.roots.staging, "w.bin").exists());
    assert!(!server.roots.staging.join("w.bin.sha256").exists());

    // HEAD on a partial (60 of 200).
    let data3 = bytes(200, 3);
    let hash3 = sha256_hex(&data3);
    assert_eq!(
        put_range(
            &server,
            "p.bin",
            "bytes 0-59/200",
            Some(&hash3),
            &data3[..60]
        )
        .status,
        308
    );
    let head = server.head("/v1/files/p.bin");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("X-File-Size"), Some("60"));
    assert_eq!(head.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(head.header("X-Target-SHA256"), Some(hash3.as_str()));
    assert!(head.header("X-Content-SHA256").is_none());

    // Overwrite the finished r.bin from byte 0 with a new hash: replaced.
    let data4 = bytes(120, 4);
    let hash4 = sha256_hex(&data4);
    local_path_of(&put_range(
        &server,
        "r.bin",
        "bytes 0-119/120",
        Some(&hash4),
        &data4,
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("r.bin")).unwrap(),
        data4
    );
    let head = server.head("/v1/files/r.bin");
    assert_eq!(head.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(head.header("Content-Length"), Some("120"));
    assert_eq!(head.header("X-Content-SHA256"), Some(hash4.as_str()));
}

fn t7_1_11_anonymous_and_protected_servers_and_public_healthz(rt: Runtime) {
    let anonymous = TestServer::anonymous(rt);
    assert_error(
        &anonymous.request("GET", "/v1/files/missing.txt", false, &[], b""),
        404,
        "file not found",
    );
    let protected = TestServer::start(rt);
    assert_error(
        &protected.request("GET", "/v1/files/missing.txt", false, &[], b""),
        401,
        "unauthorized",
    );
    let health = protected.request("GET", "/healthz", false, &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(health.body, b"ok");
}

// ---------------------------------------------------------------------------------------------
// §3.2 the request shapes of LocalAI's client (replacing §7.1 items 8 and 10)

fn t3_2_first_upload_uses_the_range_path_then_the_probe_skips(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = bytes(1000, 5);
    // HEAD probe 404 → resume HEAD 404 → PUT `bytes 0-999/1000` with the hash → 200.
    let first = ensure_remote(&server, &local, "models/m/w.gguf");
    let expected = server.roots.models.join("m/w.gguf").display().to_string();
    assert_eq!(
        first,
        Ensured::Uploaded {
            path: expected.clone(),
            attempts: 1,
            first_offset: 0
        }
    );
    assert_eq!(
        std::fs::read(server.roots.models.join("m/w.gguf")).unwrap(),
        local
    );
    assert_eq!(
        read_string(&server.roots.models.join("m/w.gguf.sha256")),
        sha256_hex(&local)
    );
    // Second run: the probe's X-Content-SHA256 equals the local hash byte for byte → skipped.
    assert_eq!(
        ensure_remote(&server, &local, "models/m/w.gguf"),
        Ensured::Skipped(expected.clone())
    );
    // The local file changed: the probe does not match, the upload from byte 0 replaces it.
    let changed = bytes(800, 6);
    assert!(matches!(
        ensure_remote(&server, &changed, "models/m/w.gguf"),
        Ensured::Uploaded {
            first_offset: 0,
            ..
        }
    ));
    assert_eq!(
        std::fs::read(server.roots.models.join("m/w.gguf")).unwrap(),
        changed
    );
    // A zero-byte file goes as a full upload (no Content-Range).
    assert!(matches!(
        ensure_remote(&server, b"", "empty.bin"),
        Ensured::Uploaded { .. }
    ));
    let head = server.head("/v1/files/empty.bin");
    assert_eq!(head.header("X-File-Size"), Some("0"));
    assert_eq!(
        head.header("X-Content-SHA256"),
        Some(sha256_hex(b"").as_str())
    );
}

fn t3_2_resume_from_a_partial_left_by_an_earlier_run(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = bytes(500, 7);
    let hash = sha256_hex(&local);
    // Pre-seeded like LocalAI's test: 200 of 500 bytes and the target sidecar.
    std::fs::write(
        partial_path(&server.roots.staging, "seeded.bin"),
        &local[..200],
    )
    .unwrap();
    std::fs::write(server.roots.staging.join("seeded.bin.sha256.target"), &hash).unwrap();
    let head = server.head("/v1/files/seeded.bin");
    assert_eq!(head.header("X-File-Size"), Some("200"));
    assert_eq!(head.header("X-Target-SHA256"), Some(hash.as_str()));
    let ensured = ensure_remote(&server, &local, "seeded.bin");
    let expected = server
        .roots
        .staging
        .join("seeded.bin")
        .display()
        .to_string();
    assert_eq!(
        ensured,
        Ensured::Uploaded {
            path: expected,
            attempts: 1,
            first_offset: 200
        }
    );
    assert_eq!(
        std::fs::read(server.roots.staging.join("seeded.bin")).unwrap(),
        local
    );
    assert_eq!(
        read_string(&server.roots.staging.join("seeded.bin.sha256")),
        hash
    );
    assert!(
        !server
            .roots
            .staging
            .join("seeded.bin.sha256.target")
            .exists()
    );
    assert!(hidden_entries(&server.roots.staging).is_empty());
}

fn t3_2_resume_after_a_connection_died_mid_upload(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = bytes(4096, 8);
    let hash = sha256_hex(&local);
    // The first attempt dies after 1500 bytes: the server keeps what it received.
    let answer = interrupted_range_put(&server, "cut.bin", &local, 1500);
    if let Some(answer) = answer {
        assert_eq!(answer.status, 400, "{}", answer.text());
    }
    let head = wait_head_size(&server, "/v1/files/cut.bin", 1500);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("X-File-Size"), Some("1500"));
    assert_eq!(head.header("X-Target-SHA256"), Some(hash.as_str()));
    assert!(head.header("X-Content-SHA256").is_none());
    assert!(!server.roots.staging.join("cut.bin").exists());
    // The client's next attempt resumes at 1500 with `bytes 1500-4095/4096`.
    let ensured = ensure_remote(&server, &local, "cut.bin");
    assert!(
        matches!(
            ensured,
            Ensured::Uploaded {
                attempts: 1,
                first_offset: 1500,
                ..
            }
        ),
        "{ensured:?}"
    );
    assert_eq!(
        std::fs::read(server.roots.staging.join("cut.bin")).unwrap(),
        local
    );
    assert_eq!(
        server.head("/v1/files/cut.bin").header("X-Content-SHA256"),
        Some(hash.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// §7.2 readiness

fn t7_2_failing_probe_is_503_and_healthz_stays_200(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            readiness: Some(Arc::new(|| Err(NATS_DOWN.into()))),
            ..Options::default()
        },
    );
    for method in ["GET", "HEAD"] {
        let ready = server.request(method, "/readyz", false, &[], b"");
        assert_eq!(ready.status, 503, "{method}");
        assert_eq!(
            ready.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let health = server.request(method, "/healthz", false, &[], b"");
        assert_eq!(health.status, 200, "{method}");
    }
    let ready = server.request("GET", "/readyz", false, &[], b"");
    assert_eq!(ready.text(), format!("not ready: {NATS_DOWN}"));
    assert_eq!(
        server.request("GET", "/healthz", false, &[], b"").body,
        b"ok"
    );
}

fn t7_2_no_probe_is_ready_and_a_probe_tracks_the_link(rt: Runtime) {
    let plain = TestServer::start(rt);
    let ready = plain.request("GET", "/readyz", false, &[], b"");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, b"ok");
    assert_eq!(
        ready.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let up = Arc::new(AtomicBool::new(true));
    let probe = up.clone();
    let server = TestServer::with(
        rt,
        Options {
            readiness: Some(Arc::new(move || {
                if probe.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(NATS_DOWN.into())
                }
            })),
            ..Options::default()
        },
    );
    assert_eq!(
        server.request("GET", "/readyz", false, &[], b"").status,
        200
    );
    up.store(false, Ordering::SeqCst);
    assert_eq!(
        server.request("GET", "/readyz", false, &[], b"").status,
        503
    );
    up.store(true, Ordering::SeqCst);
    assert_eq!(
        server.request("GET", "/readyz", false, &[], b"").status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// §7.10 cases derived from LocalAI's code

fn t7_10_auth_precedes_method(rt: Runtime) {
    let server = TestServer::start(rt);
    for (method, target) in [
        ("DELETE", "/v1/files/x"),
        ("PATCH", "/v1/files/x"),
        ("POST", "/v1/files-list/x"),
        ("DELETE", "/v1/backend-logs"),
    ] {
        let anonymous = server.request(method, target, false, &[], b"");
        assert_error(&anonymous, 401, "unauthorized");
        assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
        assert_error(
            &server.request(method, target, true, &[], b""),
            405,
            "method not allowed",
        );
    }
}

fn t7_10_post_temp_allocates_an_output_file_and_other_posts_are_404(rt: Runtime) {
    let server = TestServer::start(rt);
    assert_error(
        &server.request("POST", "/v1/files/other", true, &[], b""),
        404,
        "not found",
    );
    let mut names = Vec::new();
    for _ in 0..2 {
        let post = server.request("POST", "/v1/files/temp", true, &[], b"ignored body");
        let path = PathBuf::from(local_path_of(&post));
        assert_eq!(
            path.parent(),
            Some(server.roots.staging.as_path()),
            "at the top of staging"
        );
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let digits = name
            .strip_prefix("localai-output-")
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .unwrap_or_else(|| panic!("name {name}"));
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The frontend downloads it by its basename.
        let get = server.get(&format!("/v1/files/{name}"));
        assert_eq!(get.status, 200);
        assert!(get.body.is_empty());
        names.push(name);
    }
    assert_ne!(names[0], names[1]);
    assert_error(
        &server.request("GET", "/v1/files/temp", true, &[], b""),
        404,
        "file not found",
    );
}

fn t7_10_redirects_and_non_canonical_paths(rt: Runtime) {
    let server = TestServer::start(rt);
    for (path, location) in [
        ("/v1/files", "/v1/files/"),
        ("/v1/files-list", "/v1/files-list/"),
    ] {
        let answer = server.request("GET", path, true, &[], b"");
        assert_eq!(answer.status, 307, "{path}");
        assert_eq!(answer.header("location"), Some(location));
    }
    std::fs::create_dir_all(server.roots.staging.join("a")).unwrap();
    std::fs::write(server.roots.staging.join("a/x"), b"x").unwrap();
    // LocalAI cleans these with a redirect; nodegate refuses non-canonical keys outright.
    for target in [
        "/v1/files//x",
        "/v1/files/a//x",
        "/v1/files/./a/x",
        "/v1/files/a/./x",
        "/v1/files/a/x/",
        "/v1/files/%2e%2e/x",
        "/v1/files/a/%2e%2e/a/x",
    ] {
        let answer = server.get(target);
        assert_eq!(answer.status, 400, "{target}: {}", answer.text());
        assert!(
            answer.text().starts_with("invalid key"),
            "{target}: {}",
            answer.text()
        );
        assert!(
            !answer
                .text()
                .contains(&server.tmp.path().display().to_string()),
            "no absolute paths in errors"
        );
    }
    assert_error(&server.get("/v1/files/"), 400, "key is required");
    assert_error(&server.get("/nope"), 404, "404 page not found");
    assert_error(
        &server.request("GET", "/healthz/", false, &[], b""),
        404,
        "404 page not found",
    );
    assert_error(
        &server.request("GET", "/readyz/", false, &[], b""),
        404,
        "404 page not found",
    );
}

fn t7_10_over_limit_is_413_full_upload_leaves_nothing_range_keeps_partial(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            max_upload: Some(100),
            ..Options::default()
        },
    );
    let data = bytes(100, 9);
    let hash = sha256_hex(&data);
    assert_eq!(
        put_range(
            &server,
            "keep.bin",
            "bytes 0-49/100",
            Some(&hash),
            &data[..50]
        )
        .status,
        308
    );
    // A declared total over the limit (D16): 413, nothing touched.
    let over = put_range(
        &server,
        "keep.bin",
        "bytes 50-99/200",
        Some(&hash),
        &data[50..],
    );
    assert_status_prefix(
        &over,
        413,
        "Content-Range total 200 exceeds the upload limit of 100 bytes",
    );
    let huge = put_range(
        &server,
        "keep.bin",
        "bytes 0-0/9223372036854775807",
        Some(&hash),
        b"x",
    );
    assert_eq!(huge.status, 413);
    assert_eq!(
        std::fs::read(partial_path(&server.roots.staging, "keep.bin")).unwrap(),
        &data[..50]
    );
    assert_eq!(
        server.head("/v1/files/keep.bin").header("X-File-Size"),
        Some("50")
    );
    // A full upload over the limit: 413, no file, no temp file.
    assert_eq!(server.put("/v1/files/full.bin", &[0u8; 101]).status, 413);
    assert!(!server.roots.staging.join("full.bin").exists());
    assert_no_temp_files(&server);
    // The partial still completes.
    local_path_of(&put_range(
        &server,
        "keep.bin",
        "bytes 50-99/100",
        Some(&hash),
        &data[50..],
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("keep.bin")).unwrap(),
        data
    );
}

fn t7_10_full_upload_with_wrong_hash_is_400_and_writes_nothing(rt: Runtime) {
    let server = TestServer::start(rt);
    let wrong = sha256_hex(b"not the body");
    let put = put_full(&server, "bad.bin", &wrong, b"the body");
    assert_error(
        &put,
        400,
        &format!(
            "sha256 mismatch: expected {wrong} got {}",
            sha256_hex(b"the body")
        ),
    );
    assert!(!server.roots.staging.join("bad.bin").exists());
    assert!(!server.roots.staging.join("bad.bin.sha256").exists());
    assert_no_temp_files(&server);
    // The right hash, in upper case (CR-15), is accepted.
    let upper = sha256_hex(b"the body").to_uppercase();
    local_path_of(&put_full(&server, "bad.bin", &upper, b"the body"));
    assert_eq!(
        read_string(&server.roots.staging.join("bad.bin.sha256")),
        sha256_hex(b"the body")
    );
}

fn t7_10_malformed_content_range_is_400_with_localai_texts(rt: Runtime) {
    let server = TestServer::start(rt);
    let cases = [
        ("bytes */200", "invalid Content-Range: missing - separator"),
        (
            "bytes 0-*/200",
            "invalid Content-Range end: strconv.ParseInt: parsing \"*\": invalid syntax",
        ),
        ("bytes 5-4/10", "invalid Content-Range range: 5-4/10"),
        ("bytes 0-9/5", "invalid Content-Range range: 0-9/5"),
        (
            "items 0-1/2",
            "invalid Content-Range: missing \"bytes\" prefix",
        ),
        ("bytes 0-0/0", "invalid Content-Range range: 0-0/0"),
    ];
    for (range, text) in cases {
        // The body length equals what the range would claim where that makes sense.
        let put = put_range(&server, "cr.bin", range, None, b"x");
        assert_error(&put, 400, text);
    }
    assert!(server.root_files().is_empty(), "{:?}", server.root_files());
    assert!(hidden_entries(&server.roots.staging).is_empty());
}

fn t7_10_files_list_shapes(rt: Runtime) {
    let server = TestServer::start(rt);
    // Empty directory: {"files":null}.
    let empty = server.get("/v1/files-list/data/");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("content-type"), Some("application/json"));
    assert_eq!(empty.text(), "{\"files\":null}\n");
    // Missing directory, or a file: 404.
    assert_error(
        &server.get("/v1/files-list/models/nothing"),
        404,
        "directory not found",
    );
    local_path_of(&server.put("/v1/files/models/m/x.bin", b"x"));
    assert_error(
        &server.get("/v1/files-list/models/m/x.bin"),
        404,
        "directory not found",
    );
    // Invalid keys: 400.
    assert_eq!(server.get("/v1/files-list/..").status, 400);
    assert_error(&server.get("/v1/files-list/"), 400, "key is required");
}

fn t7_10_get_and_head_on_a_directory_are_400(rt: Runtime) {
    let server = TestServer::start(rt);
    std::fs::create_dir_all(server.roots.staging.join("dir/inner")).unwrap();
    assert_error(&server.get("/v1/files/dir"), 400, "is a directory");
    assert_eq!(server.head("/v1/files/dir").status, 400);
    assert_eq!(server.head("/v1/files/dir/inner").status, 400);
    // CR-18 and its full-upload twin: a directory is never replaced.
    let put = put_range(&server, "dir", "bytes 0-0/1", Some(&sha256_hex(b"x")), b"x");
    assert_error(&put, 400, "destination is a directory");
    let full = server.put("/v1/files/dir", b"x");
    assert_error(&full, 400, "destination is a directory");
    assert!(server.roots.staging.join("dir/inner").is_dir());
    assert_no_temp_files(&server);
}

fn t7_10_probe_methods(rt: Runtime) {
    let server = TestServer::start(rt);
    assert_error(
        &server.request("POST", "/readyz", false, &[], b""),
        405,
        "method not allowed",
    );
    assert_error(
        &server.request("PUT", "/healthz", false, &[], b""),
        405,
        "method not allowed",
    );
    let head = server.request("HEAD", "/readyz", false, &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

// ---------------------------------------------------------------------------------------------
// D3, D5, D6, D9

fn d3_a_failed_full_upload_keeps_the_previous_good_file_and_sidecar(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            max_upload: Some(4096),
            ..Options::default()
        },
    );
    let good = bytes(1000, 10);
    local_path_of(&put_full(
        &server,
        "models/keep.bin",
        &sha256_hex(&good),
        &good,
    ));
    let file = server.roots.models.join("keep.bin");
    let sidecar = server.roots.models.join("keep.bin.sha256");
    let check = |why: &str| {
        assert_eq!(std::fs::read(&file).unwrap(), good, "{why}");
        assert_eq!(read_string(&sidecar), sha256_hex(&good), "{why}");
        assert_eq!(
            server
                .head("/v1/files/models/keep.bin")
                .header("X-Content-SHA256"),
            Some(sha256_hex(&good).as_str()),
            "{why}"
        );
        assert_no_temp_files(&server);
    };
    // Wrong X-Content-SHA256.
    let bad = bytes(900, 11);
    assert_eq!(
        put_full(&server, "models/keep.bin", &sha256_hex(b"other"), &bad).status,
        400
    );
    check("hash mismatch");
    // Over the limit while streaming (chunked).
    let mut raw = format!(
        "PUT /v1/files/models/keep.bin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n1000\r\n",
        server.addr
    )
    .into_bytes();
    raw.extend_from_slice(&[3u8; 4096]);
    raw.extend_from_slice(b"\r\n1\r\nx\r\n0\r\n\r\n");
    assert_eq!(server.raw(&raw).status, 413);
    check("over the limit");
    // A client that dies mid-body.
    let head = format!(
        "PUT /v1/files/models/keep.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&bad[..300]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    drop(stream);
    // The server deletes its temp file after answering; wait for that (bounded).
    let start = Instant::now();
    while !hidden_entries(&server.roots.models).is_empty()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    check("client disconnect");
}

fn d5_get_supports_one_range_and_always_sends_content_length(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(3 << 20, 12);
    local_path_of(&server.put("/v1/files/big.bin", &data));
    let whole = server.get("/v1/files/big.bin");
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.header("Content-Length"),
        Some((3u64 << 20).to_string().as_str())
    );
    assert!(whole.header("Transfer-Encoding").is_none());
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(whole.body, data);
    let size = data.len();
    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-4", 0, 4),
        ("bytes=100-", 100, size - 1),
        ("bytes=-3", size - 3, size - 1),
        ("bytes=10-99999999", 10, size - 1),
    ];
    for (range, first, last) in cases {
        let answer = server.request("GET", "/v1/files/big.bin", true, &[("Range", range)], b"");
        assert_eq!(answer.status, 206, "{range}");
        assert_eq!(
            answer.header("Content-Range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{range}"
        );
        assert_eq!(
            answer.header("Content-Length"),
            Some((last - first + 1).to_string().as_str()),
            "{range}"
        );
        assert_eq!(answer.body, &data[first..=last], "{range}");
    }
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 10),
        "bytes=-0".to_owned(),
    ] {
        let answer = server.request("GET", "/v1/files/big.bin", true, &[("Range", &range)], b"");
        assert_eq!(answer.status, 416, "{range}");
        assert_eq!(
            answer.header("Content-Range"),
            Some(format!("bytes */{size}").as_str()),
            "{range}"
        );
        assert!(answer.header("Content-Length").is_some());
    }
    // Several ranges or another unit: the whole file.
    for range in ["bytes=0-1,5-6", "items=0-1", "bytes=abc"] {
        let answer = server.request("GET", "/v1/files/big.bin", true, &[("Range", range)], b"");
        assert_eq!(answer.status, 200, "{range}");
        assert_eq!(answer.body.len(), size, "{range}");
    }
    // An empty file: 200 with Content-Length 0; any range is unsatisfiable.
    local_path_of(&server.put("/v1/files/empty.bin", b""));
    let empty = server.get("/v1/files/empty.bin");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("Content-Length"), Some("0"));
    let ranged = server.request(
        "GET",
        "/v1/files/empty.bin",
        true,
        &[("Range", "bytes=0-0")],
        b"",
    );
    assert_eq!(ranged.status, 416);
    assert_eq!(ranged.header("Content-Range"), Some("bytes */0"));
}

/// `HEAD` reuses a state read earlier only while nothing it depends on changed
/// (`nodegate_core::state_cache`): files old enough to be kept are answered twice, then each is
/// changed a different way behind the server's back, and every change shows in the next
/// answer — an in-place rewrite of the file or of its sidecar, an upload's partial appearing
/// beside it, the sidecar replaced by a link out of the root, the file removed.
fn head_reuses_settled_states_only_while_nothing_changed(rt: Runtime) {
    let server = TestServer::start(rt);
    let models = &server.roots.models;
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(models.join("sub")).unwrap();
    let names = [
        "rewrite",
        "sidecar",
        "partial",
        "linked",
        "removed",
        "sub/nested",
    ];
    let content = |name: &str| format!("the content of {name}").into_bytes();
    for name in names {
        std::fs::write(models.join(format!("{name}.bin")), content(name)).unwrap();
        std::fs::write(
            models.join(format!("{name}.bin.sha256")),
            sha256_hex(&content(name)),
        )
        .unwrap();
    }
    // Older than the cache's settle window (5 s), so the first answers are kept.
    std::thread::sleep(Duration::from_millis(5_500));
    let head = |name: &str| server.head(&format!("/v1/files/models/{name}.bin"));
    for name in names {
        for round in 0..2 {
            let answer = head(name);
            assert_eq!(answer.status, 200, "{name} round {round}");
            assert_eq!(
                answer.header("X-Content-SHA256"),
                Some(sha256_hex(&content(name)).as_str()),
                "{name} round {round}"
            );
        }
    }

    // The file rewritten in place (same inode, longer): its sidecar is older now, so the
    // answer is the new content's hash and size.
    let longer = b"a longer content, rewritten in place".to_vec();
    std::fs::write(models.join("rewrite.bin"), &longer).unwrap();
    let answer = head("rewrite");
    assert_eq!(
        answer.header("X-Content-SHA256"),
        Some(sha256_hex(&longer).as_str())
    );
    assert_eq!(
        answer.header("Content-Length"),
        Some(longer.len().to_string().as_str())
    );

    // The sidecar rewritten in place with another well-formed hash, newer than the file: it
    // is trusted as without the cache.
    let other = sha256_hex(b"another hash");
    std::fs::write(models.join("sidecar.bin.sha256"), &other).unwrap();
    assert_eq!(
        head("sidecar").header("X-Content-SHA256"),
        Some(other.as_str())
    );

    // A partial appearing beside the file: the answer reports the upload in progress.
    std::fs::write(models.join(".partial.bin.partial"), b"12345").unwrap();
    assert_eq!(head("partial").header("X-File-Size"), Some("5"));

    // The sidecar replaced by a link out of the root: never trusted.
    let fake = sha256_hex(b"outside");
    std::fs::write(outside.path().join("fake"), &fake).unwrap();
    std::fs::remove_file(models.join("linked.bin.sha256")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("fake"),
        models.join("linked.bin.sha256"),
    )
    .unwrap();
    let answer = head("linked");
    assert_ne!(answer.header("X-Content-SHA256"), Some(fake.as_str()));

    // The file removed, and the nested one too.
    std::fs::remove_file(models.join("removed.bin")).unwrap();
    assert_eq!(head("removed").status, 404);
    std::fs::remove_file(models.join("sub/nested.bin")).unwrap();
    assert_eq!(head("sub/nested").status, 404);
}

fn d6_an_untrustworthy_sidecar_is_rehashed(rt: Runtime) {
    let server = TestServer::start(rt);
    let content = b"trust but verify";
    let good = sha256_hex(content);
    local_path_of(&server.put("/v1/files/t.bin", content));
    let file = server.roots.staging.join("t.bin");
    let sidecar = server.roots.staging.join("t.bin.sha256");
    let lie = sha256_hex(b"a different file");
    let file_mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let tampered: [(&str, Vec<u8>, bool); 5] = [
        ("non-hex of the right length", vec![b'z'; 64], false),
        ("upper-case hex", good.to_uppercase().into_bytes(), false),
        ("too short", good.as_bytes()[..63].to_vec(), false),
        (
            "with trailing garbage",
            format!("{good}  x").into_bytes(),
            false,
        ),
        (
            "valid hex, older than the file",
            lie.clone().into_bytes(),
            true,
        ),
    ];
    for (why, content_of_sidecar, stale) in tampered {
        std::fs::write(&sidecar, &content_of_sidecar).unwrap();
        if stale {
            let handle = std::fs::File::options().write(true).open(&sidecar).unwrap();
            handle
                .set_modified(file_mtime - Duration::from_secs(60))
                .unwrap();
        }
        let head = server.head("/v1/files/t.bin");
        assert_eq!(head.status, 200, "{why}");
        assert_eq!(
            head.header("X-Content-SHA256"),
            Some(good.as_str()),
            "{why}"
        );
        assert_eq!(
            read_string(&sidecar),
            good,
            "{why}: the sidecar is rewritten"
        );
    }
    // A fresh, well-formed sidecar is trusted (that is the cache): no rehash.
    std::fs::write(&sidecar, &lie).unwrap();
    assert_eq!(
        server.head("/v1/files/t.bin").header("X-Content-SHA256"),
        Some(lie.as_str())
    );
}

fn d9_range_put_over_an_identical_complete_file_is_200(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(300, 13);
    let hash = sha256_hex(&data);
    local_path_of(&server.put("/v1/files/done.bin", &data));
    let before = std::fs::metadata(server.roots.staging.join("done.bin"))
        .unwrap()
        .modified()
        .unwrap();
    // CR-19: LocalAI answers 416 here and its client loops; nodegate finishes with 200.
    let again = put_range(&server, "done.bin", "bytes 0-299/300", Some(&hash), &data);
    assert_eq!(
        local_path_of(&again),
        server.roots.staging.join("done.bin").display().to_string()
    );
    // Upper-case hash too, and nothing was rewritten.
    let upper = put_range(
        &server,
        "done.bin",
        "bytes 0-299/300",
        Some(&hash.to_uppercase()),
        &data,
    );
    local_path_of(&upper);
    assert_eq!(
        std::fs::metadata(server.roots.staging.join("done.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert!(hidden_entries(&server.roots.staging).is_empty());
    assert!(!server.roots.staging.join("done.bin.sha256.target").exists());
}

// ---------------------------------------------------------------------------------------------
// security.md §4.7 CR-01…CR-19

fn cr_01_to_03_single_and_two_chunk_uploads(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(100, 14);
    let hash = sha256_hex(&data);
    // CR-01: one chunk covering the file.
    local_path_of(&put_range(
        &server,
        "one.bin",
        "bytes 0-99/100",
        Some(&hash),
        &data,
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("one.bin")).unwrap(),
        data
    );
    // CR-02: the first half.
    let half = put_range(
        &server,
        "two.bin",
        "bytes 0-49/100",
        Some(&hash),
        &data[..50],
    );
    assert_eq!(half.status, 308);
    assert_eq!(half.header("Range"), Some("bytes=0-49"));
    assert_eq!(half.header("X-File-Size"), Some("50"));
    assert!(half.header("Location").is_none());
    assert_eq!(
        read_string(&server.roots.staging.join("two.bin.sha256.target")),
        hash
    );
    // CR-03: the second half, verified against the declared hash.
    local_path_of(&put_range(
        &server,
        "two.bin",
        "bytes 50-99/100",
        Some(&hash),
        &data[50..],
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("two.bin")).unwrap(),
        data
    );
    assert_eq!(
        read_string(&server.roots.staging.join("two.bin.sha256")),
        hash
    );
    assert!(hidden_entries(&server.roots.staging).is_empty());
}

fn cr_04_skip_ahead_is_416_with_content_range_and_size(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(100, 15);
    let hash = sha256_hex(&data);
    assert_eq!(
        put_range(
            &server,
            "gap.bin",
            "bytes 0-49/100",
            Some(&hash),
            &data[..50]
        )
        .status,
        308
    );
    let gap = put_range(
        &server,
        "gap.bin",
        "bytes 60-99/100",
        Some(&hash),
        &data[60..],
    );
    assert_error(
        &gap,
        416,
        "Content-Range start 60 does not match current file size 50",
    );
    assert_eq!(gap.header("Content-Range"), Some("bytes */100"));
    assert_eq!(gap.header("X-File-Size"), Some("50"));
    // Nothing changed: the right next chunk still completes.
    local_path_of(&put_range(
        &server,
        "gap.bin",
        "bytes 50-99/100",
        Some(&hash),
        &data[50..],
    ));
    // With no partial at all, a start > 0 reports size 0.
    let fresh = put_range(
        &server,
        "fresh.bin",
        "bytes 10-19/100",
        Some(&hash),
        &data[10..20],
    );
    assert_eq!(fresh.status, 416);
    assert_eq!(fresh.header("X-File-Size"), Some("0"));
}

fn cr_05_to_11_malformed_ranges_are_400_and_write_nothing(rt: Runtime) {
    let server = TestServer::start(rt);
    let hash = sha256_hex(b"x");
    let cases = [
        ("CR-05", "bytes=0-99/100"),
        ("CR-06", "bytes 100-99/100"),
        ("CR-07", "bytes 0-100/100"),
        ("CR-08", "bytes -1-5/10"),
        ("CR-08", "bytes 0--5/10"),
        ("CR-09", "bytes 0-18446744073709551615/18446744073709551616"),
        ("CR-10", "bytes 0-99/*"),
        ("CR-11", "bytes 0-9/10, bytes 10-19/20"),
        ("CR-11", "bytes 0-9/10x"),
        ("CR-11", "bytes 0-9/10/11"),
    ];
    for (id, range) in cases {
        let put = put_range(&server, "bad.bin", range, Some(&hash), b"x");
        assert_eq!(put.status, 400, "{id} {range}: {}", put.text());
        assert!(
            put.text().starts_with("invalid Content-Range")
                || put.text().starts_with("Content-Length"),
            "{id}: {}",
            put.text()
        );
    }
    // CR-11: two Content-Range fields.
    let raw = format!(
        "PUT /v1/files/bad.bin HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Range: bytes 0-0/1\r\nContent-Range: bytes 0-0/1\r\nContent-Length: 1\r\n\r\nx",
        server.addr
    );
    assert_error(
        &server.raw(raw.as_bytes()),
        400,
        "invalid Content-Range: send a single Content-Range header",
    );
    assert!(server.root_files().is_empty(), "{:?}", server.root_files());
    assert!(hidden_entries(&server.roots.staging).is_empty());
}

fn cr_12_content_length_must_equal_the_span(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(100, 16);
    let hash = sha256_hex(&data);
    for body in [&data[..40], &data[..60]] {
        let put = put_range(&server, "span.bin", "bytes 0-49/100", Some(&hash), body);
        assert_error(
            &put,
            400,
            &format!(
                "Content-Length {} does not match Content-Range span 50; send exactly end-start+1 bytes",
                body.len()
            ),
        );
    }
    assert!(
        hidden_entries(&server.roots.staging).is_empty(),
        "nothing written before the check"
    );
    assert!(!server.roots.staging.join("span.bin.sha256.target").exists());
}

fn cr_13_hash_change_between_chunks_is_409_and_discards_the_partial(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(100, 17);
    let hash = sha256_hex(&data);
    assert_eq!(
        put_range(
            &server,
            "drift.bin",
            "bytes 0-49/100",
            Some(&hash),
            &data[..50]
        )
        .status,
        308
    );
    let other = sha256_hex(b"other");
    let drift = put_range(
        &server,
        "drift.bin",
        "bytes 50-99/100",
        Some(&other),
        &data[50..],
    );
    assert_error(
        &drift,
        409,
        &format!(
            "X-Content-SHA256 mismatch with in-progress upload (was {hash}, now {other}); restart from byte 0"
        ),
    );
    assert!(hidden_entries(&server.roots.staging).is_empty());
    assert!(
        !server
            .roots
            .staging
            .join("drift.bin.sha256.target")
            .exists()
    );
    // The client restarts from byte 0.
    local_path_of(&put_range(
        &server,
        "drift.bin",
        "bytes 0-99/100",
        Some(&hash),
        &data,
    ));
}

fn cr_14_hash_header_must_be_64_hex_and_cr_15_upper_case_is_fine(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = b"0123456789";
    let hash = sha256_hex(data);
    for bad in ["abc", &format!("{}g", &hash[..63]), &format!("{hash}00")] {
        let put = put_range(&server, "h.bin", "bytes 0-9/10", Some(bad), data);
        assert_status_prefix(&put, 400, "invalid X-Content-SHA256");
        let full = put_full(&server, "h.bin", bad, data);
        assert_status_prefix(&full, 400, "invalid X-Content-SHA256");
    }
    assert!(server.root_files().is_empty());
    assert!(hidden_entries(&server.roots.staging).is_empty());
    // CR-15.
    local_path_of(&put_range(
        &server,
        "h.bin",
        "bytes 0-9/10",
        Some(&hash.to_uppercase()),
        data,
    ));
    assert_eq!(
        read_string(&server.roots.staging.join("h.bin.sha256")),
        hash
    );
}

fn cr_16_restart_from_zero_with_a_new_hash_replaces_the_file_once_verified(rt: Runtime) {
    let server = TestServer::start(rt);
    let old = bytes(100, 18);
    local_path_of(&server.put("/v1/files/swap.bin", &old));
    let new = bytes(100, 19);
    let hash = sha256_hex(&new);
    assert_eq!(
        put_range(
            &server,
            "swap.bin",
            "bytes 0-49/100",
            Some(&hash),
            &new[..50]
        )
        .status,
        308
    );
    // D3: the old copy stays readable until the new one is verified.
    assert_eq!(server.get("/v1/files/swap.bin").body, old);
    local_path_of(&put_range(
        &server,
        "swap.bin",
        "bytes 50-99/100",
        Some(&hash),
        &new[50..],
    ));
    assert_eq!(server.get("/v1/files/swap.bin").body, new);
    assert_eq!(
        read_string(&server.roots.staging.join("swap.bin.sha256")),
        hash
    );
}

fn cr_17_restart_from_zero_over_a_same_hash_partial_is_416_at_its_size(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(100, 20);
    let hash = sha256_hex(&data);
    assert_eq!(
        put_range(
            &server,
            "again.bin",
            "bytes 0-29/100",
            Some(&hash),
            &data[..30]
        )
        .status,
        308
    );
    let restart = put_range(&server, "again.bin", "bytes 0-99/100", Some(&hash), &data);
    assert_eq!(restart.status, 416, "{}", restart.text());
    assert_eq!(restart.header("X-File-Size"), Some("30"));
    assert_eq!(restart.header("Content-Range"), Some("bytes */100"));
    assert_eq!(
        std::fs::read(partial_path(&server.roots.staging, "again.bin")).unwrap(),
        &data[..30]
    );
    // A different hash from byte 0 restarts instead.
    let other = bytes(100, 21);
    local_path_of(&put_range(
        &server,
        "again.bin",
        "bytes 0-99/100",
        Some(&sha256_hex(&other)),
        &other,
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("again.bin")).unwrap(),
        other
    );
}

fn cr_18_range_put_onto_a_directory_is_400(rt: Runtime) {
    let server = TestServer::start(rt);
    std::fs::create_dir_all(server.roots.data.join("d/sub")).unwrap();
    let put = put_range(
        &server,
        "data/d",
        "bytes 0-0/1",
        Some(&sha256_hex(b"x")),
        b"x",
    );
    assert_error(&put, 400, "destination is a directory");
    assert!(server.roots.data.join("d/sub").is_dir());
    assert!(hidden_entries(&server.roots.data).is_empty());
}

fn cr_19_range_put_of_an_identical_complete_file_is_200_per_d9(rt: Runtime) {
    let server = TestServer::start(rt);
    let data = bytes(64, 22);
    let hash = sha256_hex(&data);
    local_path_of(&put_range(
        &server,
        "same.bin",
        "bytes 0-63/64",
        Some(&hash),
        &data,
    ));
    // The file was complete before; the same upload again (LocalAI: 416 with the full size).
    local_path_of(&put_range(
        &server,
        "same.bin",
        "bytes 0-63/64",
        Some(&hash),
        &data,
    ));
    // Its sidecar missing: the server rehashes and still answers 200.
    std::fs::remove_file(server.roots.staging.join("same.bin.sha256")).unwrap();
    local_path_of(&put_range(
        &server,
        "same.bin",
        "bytes 0-63/64",
        Some(&hash),
        &data,
    ));
    assert_eq!(
        std::fs::read(server.roots.staging.join("same.bin")).unwrap(),
        data
    );
}

// ---------------------------------------------------------------------------------------------
// files-list

fn files_list_orders_names_bytewise_depth_first_and_includes_sidecars(rt: Runtime) {
    let server = TestServer::start(rt);
    let base = server.roots.models.join("m");
    std::fs::create_dir_all(base.join("b")).unwrap();
    std::fs::write(base.join("b.txt"), b"1").unwrap();
    std::fs::write(base.join("b/c.txt"), b"2").unwrap();
    std::fs::write(base.join("a.txt"), b"3").unwrap();
    let list = server.get("/v1/files-list/models/m");
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json(),
        serde_json::json!({ "files": ["a.txt", "b/c.txt", "b.txt"] })
    );
    // An upload adds its sidecar; an in-progress upload shows its target, never its partial.
    local_path_of(&server.put("/v1/files/models/m/x.bin", b"x"));
    let data = bytes(10, 23);
    assert_eq!(
        put_range(
            &server,
            "models/m/y.bin",
            "bytes 0-4/10",
            Some(&sha256_hex(&data)),
            &data[..5]
        )
        .status,
        308
    );
    // Hidden files of every kind are never listed, nor are hidden directories descended.
    std::fs::write(base.join(".z.bin.0123456789abcdef.tmp"), b"temp").unwrap();
    std::fs::create_dir_all(base.join(".hidden")).unwrap();
    std::fs::write(base.join(".hidden/inside.txt"), b"h").unwrap();
    let list = server.get("/v1/files-list/models/m");
    assert_eq!(
        list.json(),
        serde_json::json!({ "files": ["a.txt", "b/c.txt", "b.txt", "x.bin", "x.bin.sha256", "y.bin.sha256.target"] })
    );
    assert!(partial_path(&base, "y.bin").exists());
    // `models/` lists the whole models dir, paths relative to it.
    local_path_of(&server.put("/v1/files/models/top.bin", b"t"));
    let all = server.get("/v1/files-list/models/");
    assert_eq!(
        all.json(),
        serde_json::json!({ "files": ["m/a.txt", "m/b/c.txt", "m/b.txt", "m/x.bin", "m/x.bin.sha256", "m/y.bin.sha256.target", "top.bin", "top.bin.sha256"] })
    );
    // Every listed name can be fetched (the frontend's model export).
    for name in all.json()["files"].as_array().unwrap() {
        let get = server.get(&format!("/v1/files/models/{}", name.as_str().unwrap()));
        assert_eq!(get.status, 200, "{name}");
    }
    // Staging and data lists work the same way.
    local_path_of(&server.put("/v1/files/data/d.txt", b"d"));
    assert_eq!(
        server.get("/v1/files-list/data/").json(),
        serde_json::json!({ "files": ["d.txt", "d.txt.sha256"] })
    );
    std::fs::create_dir_all(server.roots.staging.join("empty")).unwrap();
    assert_eq!(
        server.get("/v1/files-list/empty").text(),
        "{\"files\":null}\n"
    );
}

// ---------------------------------------------------------------------------------------------
// backend logs

fn backend_logs_rest_routes(rt: Runtime) {
    let server = TestServer::start(rt);
    assert_eq!(server.get("/v1/backend-logs").json(), serde_json::json!([]));
    server.logs.push("m#0", Stream::Stdout, "hello");
    server.logs.push("m#1", Stream::Stderr, "from replica one");
    server.logs.push("a", Stream::Stdout, "bare");
    let index = server.get("/v1/backend-logs");
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    assert_eq!(index.json(), serde_json::json!(["a", "m"]));
    let lines = server.get("/v1/backend-logs/m").json();
    let lines = lines.as_array().expect("an array");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["stream"], "stdout");
    assert_eq!(lines[0]["text"], "hello");
    assert_eq!(lines[1]["stream"], "stderr");
    assert_eq!(lines[1]["text"], "from replica one");
    for line in lines {
        let object = line.as_object().unwrap();
        let mut keys: Vec<_> = object.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["stream", "text", "timestamp"]);
        let stamp = object["timestamp"].as_str().unwrap();
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
            "RFC 3339: {stamp}"
        );
    }
    // An exact process key (the `#` percent-encoded).
    let one = server.get("/v1/backend-logs/m%230").json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["text"], "hello");
    assert_eq!(
        server.get("/v1/backend-logs/m%239").json(),
        serde_json::json!([])
    );
    assert_eq!(
        server.get("/v1/backend-logs/unknown").json(),
        serde_json::json!([])
    );
    assert_error(&server.get("/v1/backend-logs/"), 400, "model ID required");
    // A /ws path without an upgrade: gorilla's 400.
    assert_error(&server.get("/v1/backend-logs/m/ws"), 400, "Bad Request");
    // Only GET.
    assert_error(
        &server.request("POST", "/v1/backend-logs/m", true, &[], b""),
        405,
        "method not allowed",
    );
}

/// Opens a WebSocket to `/v1/backend-logs/{model}/ws`; returns the stream, the handshake
/// response and any bytes read past it.
fn ws_connect(
    server: &TestServer,
    model: &str,
    origin: Option<&str>,
) -> (TcpStream, RawResponse, Vec<u8>) {
    let mut request = format!(
        "GET /v1/backend-logs/{model}/ws HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n",
        server.addr
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("handshake");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).expect("read handshake");
        assert!(n > 0, "connection closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = buf[head_end + 4..].to_vec();
    (
        stream,
        RawResponse {
            status,
            headers,
            body: Vec::new(),
        },
        rest,
    )
}

/// Parses one complete WebSocket frame at the start of `buf`: (FIN, opcode, payload, bytes used).
/// Server frames must not be masked (RFC 6455 §5.1).
fn parse_frame(buf: &[u8]) -> Option<(bool, u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
    let (len, at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let end = at + usize::try_from(len).ok()?;
    let payload = buf.get(at..end)?.to_vec();
    Some((b0 & 0x80 != 0, b0 & 0x0f, payload, end))
}

/// Reads the next text frame (skipping pings) and returns its raw text; bounded by the socket's
/// read timeout.
fn read_text_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        if let Some((fin, opcode, payload, used)) = parse_frame(buf) {
            buf.drain(..used);
            match opcode {
                0x1 => {
                    assert!(fin, "log frames are never fragmented");
                    return String::from_utf8(payload).expect("a UTF-8 text frame");
                }
                0x9 | 0xA => continue,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        let n = stream.read(&mut chunk).expect("read a frame");
        assert!(n > 0, "connection closed before a frame arrived");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no text frame")
}

fn backend_logs_websocket_initial_frame_then_live_lines(rt: Runtime) {
    let server = TestServer::start(rt);
    server.logs.push("m#0", Stream::Stdout, "hello");
    let (mut stream, handshake, mut buf) = ws_connect(&server, "m", None);
    assert_eq!(handshake.status, 101);
    assert_eq!(
        handshake.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(
        handshake
            .header("Upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    );
    assert!(
        handshake
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade"))
    );
    let raw = read_text_frame(&mut stream, &mut buf);
    // Keys in Go's map-encoding order (sorted), as LocalAI sends them.
    assert!(
        raw.starts_with("{\"lines\":[") && raw.ends_with("],\"type\":\"initial\"}"),
        "{raw}"
    );
    let initial: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(initial["type"], "initial");
    let lines = initial["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["text"], "hello");
    assert_eq!(lines[0]["stream"], "stdout");
    assert!(lines[0]["timestamp"].is_string());
    // A line of another model is not delivered; the next line of this one is.
    server.logs.push("other#0", Stream::Stdout, "not for you");
    server.logs.push("m#0", Stream::Stderr, "second");
    let raw = read_text_frame(&mut stream, &mut buf);
    assert!(
        raw.starts_with("{\"line\":{") && raw.ends_with("},\"type\":\"line\"}"),
        "{raw}"
    );
    let line: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(line["type"], "line");
    assert_eq!(line["line"]["text"], "second");
    assert_eq!(line["line"]["stream"], "stderr");
    assert!(line["line"]["timestamp"].is_string());
}

fn backend_logs_websocket_of_an_unknown_model_starts_empty(rt: Runtime) {
    let server = TestServer::start(rt);
    let (mut stream, handshake, mut buf) =
        ws_connect(&server, "ghost", Some(&format!("http://{}", server.addr)));
    assert_eq!(handshake.status, 101, "a same-host Origin is allowed");
    assert_eq!(
        read_text_frame(&mut stream, &mut buf),
        r#"{"lines":[],"type":"initial"}"#
    );
    server.logs.push("ghost", Stream::Stdout, "boo");
    let line: serde_json::Value =
        serde_json::from_str(&read_text_frame(&mut stream, &mut buf)).unwrap();
    assert_eq!(line["line"]["text"], "boo");
}

fn ah_27_websocket_from_a_foreign_origin_is_403(rt: Runtime) {
    let server = TestServer::start(rt);
    server.logs.push("m#0", Stream::Stdout, "secret log line");
    for origin in [
        "https://evil.example",
        "http://127.0.0.1.evil.example",
        "null",
    ] {
        let (_stream, handshake, rest) = ws_connect(&server, "m", Some(origin));
        assert_eq!(handshake.status, 403, "{origin}");
        assert!(
            handshake.header("Sec-WebSocket-Accept").is_none(),
            "{origin}"
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains("secret log line"),
            "{origin}"
        );
    }
    // The upgrade needs the bearer token too.
    let raw = format!(
        "GET /v1/backend-logs/m/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let answer = server.raw(raw.as_bytes());
    assert_error(&answer, 401, "unauthorized");
}

fn d15_awkward_keys_are_4xx_never_5xx_and_errors_carry_no_paths(rt: Runtime) {
    let server = TestServer::start(rt);
    local_path_of(&server.put("/v1/files/file.bin", b"f"));
    let fifo = server.roots.staging.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let long = "a".repeat(300);
    let targets = [
        "/v1/files/a%00b".to_owned(),
        format!("/v1/files/{long}"),
        "/v1/files/file.bin/child".to_owned(),
        "/v1/files/fifo".to_owned(),
        "/v1/files/%ff%fe".to_owned(),
        "/v1/files/a%2fb%5c..%5cc".to_owned(),
        "/v1/files/%".to_owned(),
    ];
    let root = server.tmp.path().display().to_string();
    for target in &targets {
        for method in ["GET", "HEAD", "PUT"] {
            let answer = server.request(method, target, true, &[], b"x");
            assert!(
                (400..500).contains(&answer.status),
                "{method} {target}: {} {}",
                answer.status,
                answer.text()
            );
            assert!(
                !answer.text().contains(&root),
                "{method} {target}: {}",
                answer.text()
            );
        }
    }
    let list = server.get("/v1/files-list/file.bin");
    assert_error(&list, 404, "directory not found");
    // A FIFO under a key (put there on disk, not by a client): missing for readers, refused for
    // writers, never opened for a blocking read, and left alone.
    assert_error(&server.get("/v1/files/fifo"), 404, "file not found");
    assert_eq!(server.head("/v1/files/fifo").status, 404);
    let hash = sha256_hex(b"x");
    for range in [None, Some("bytes 0-0/1")] {
        let mut headers = vec![("X-Content-SHA256", hash.as_str())];
        headers.extend(range.map(|r| ("Content-Range", r)));
        let put = server.request("PUT", "/v1/files/fifo", true, &headers, b"x");
        assert_error(
            &put,
            400,
            "destination is not a regular file (a FIFO, socket or device)",
        );
    }
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_no_temp_files(&server);
}

/// Files whose pages are not in the page cache are read on the blocking pool (the connection's
/// thread reads only cached pages, `RWF_NOWAIT`): a cold small body, a cold large body and a
/// cold range all come back whole and right. The pages are dropped with
/// `posix_fadvise(DONTNEED)` after a sync, so on Linux file systems the cold path really runs.
fn cold_files_are_served_whole_from_the_blocking_pool(rt: Runtime) {
    let server = TestServer::start(rt);
    std::fs::create_dir_all(&server.roots.models).expect("models");
    let small: Vec<u8> = (0..4096_u32).map(|i| (i % 251) as u8).collect();
    let large: Vec<u8> = (0..(3 << 20) + 17_u32).map(|i| (i % 253) as u8).collect();
    for (name, bytes) in [("cold-small.bin", &small), ("cold-large.bin", &large)] {
        let path = server.roots.models.join(name);
        std::fs::write(&path, bytes).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        file.sync_all().expect("sync");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
    let get = server.get("/v1/files/models/cold-small.bin");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, small, "cold small body");
    let get = server.get("/v1/files/models/cold-large.bin");
    assert_eq!(get.status, 200);
    assert!(
        get.body == large,
        "cold large body ({} bytes)",
        get.body.len()
    );
    let file = std::fs::File::open(server.roots.models.join("cold-large.bin")).expect("open");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    let ranged = server.request(
        "GET",
        "/v1/files/models/cold-large.bin",
        true,
        &[("Range", "bytes=1000000-2999999")],
        b"",
    );
    assert_eq!(ranged.status, 206);
    assert!(ranged.body == large[1_000_000..3_000_000], "cold range");
}

/// Hot downloads go out with `sendfile` (counted in `nodegate_sendfile_bytes_total`) and stay
/// byte-exact: two whole downloads and a range crossing chunk edges on one keep-alive
/// connection, and a reader slow enough that the socket fills and the send waits.
fn hot_downloads_are_sent_with_sendfile_and_stay_byte_exact(rt: Runtime) {
    let server = TestServer::start(rt);
    std::fs::create_dir_all(&server.roots.models).expect("models");
    let large: Vec<u8> = (0..(5 << 20) + 123_u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(server.roots.models.join("hot.bin"), &large).expect("write");
    let get = |extra: &str| {
        format!(
            "GET /v1/files/models/hot.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{extra}\r\n",
            common::TOKEN
        )
    };

    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for round in 0..2 {
        stream.write_all(get("").as_bytes()).unwrap();
        let whole = common::read_response(&mut stream, false).expect("a response");
        assert_eq!(whole.status, 200, "round {round}");
        assert!(
            whole.body == large,
            "round {round}: {} bytes",
            whole.body.len()
        );
    }
    stream
        .write_all(get("Range: bytes=200000-4500000\r\n").as_bytes())
        .unwrap();
    let ranged = common::read_response(&mut stream, false).expect("a response");
    assert_eq!(ranged.status, 206);
    assert!(ranged.body == large[200_000..=4_500_000], "range");

    // A slow reader: the server's sends wait for room in the socket, then go on.
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(get("Connection: close\r\n").as_bytes())
        .unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = slow.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        if received.len() < (1 << 20) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let body_at = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert!(received[body_at..] == large[..], "slow reader's body");

    let metrics = server.get("/metrics").text();
    let sendfile: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("nodegate_sendfile_bytes_total "))
        .expect("the sendfile counter")
        .parse()
        .unwrap();
    // Every chunk after each connection's first (its proof that hyper writes in place).
    assert!(
        sendfile >= 3.0 * 4.0 * 1024.0 * 1024.0,
        "only {sendfile} bytes went out with sendfile"
    );
}

common::per_runtime_tests!(
    t7_1_1_put_then_get_round_trips_the_bytes,
    cold_files_are_served_whole_from_the_blocking_pool,
    hot_downloads_are_sent_with_sendfile_and_stay_byte_exact,
    t7_1_2_body_over_the_limit_is_413_and_leaves_nothing,
    t7_1_3_path_validation_rejects_escapes_and_accepts_new_subdirs,
    t7_1_4_keys_route_to_their_root,
    t7_1_5_bearer_gate_on_get,
    t7_1_6_head_probe,
    t7_1_7_sidecar_is_written_next_to_the_file,
    t7_1_9_resumable_upload_state_machine,
    t7_1_11_anonymous_and_protected_servers_and_public_healthz,
    t3_2_first_upload_uses_the_range_path_then_the_probe_skips,
    t3_2_resume_from_a_partial_left_by_an_earlier_run,
    t3_2_resume_after_a_connection_died_mid_upload,
    t7_2_failing_probe_is_503_and_healthz_stays_200,
    t7_2_no_probe_is_ready_and_a_probe_tracks_the_link,
    t7_10_auth_precedes_method,
    t7_10_post_temp_allocates_an_output_file_and_other_posts_are_404,
    t7_10_redirects_and_non_canonical_paths,
    t7_10_over_limit_is_413_full_upload_leaves_nothing_range_keeps_partial,
    t7_10_full_upload_with_wrong_hash_is_400_and_writes_nothing,
    t7_10_malformed_content_range_is_400_with_localai_texts,
    t7_10_files_list_shapes,
    t7_10_get_and_head_on_a_directory_are_400,
    t7_10_probe_methods,
    d3_a_failed_full_upload_keeps_the_previous_good_file_and_sidecar,
    d5_get_supports_one_range_and_always_sends_content_length,
    d6_an_untrustworthy_sidecar_is_rehashed,
    head_reuses_settled_states_only_while_nothing_changed,
    d9_range_put_over_an_identical_complete_file_is_200,
    cr_01_to_03_single_and_two_chunk_uploads,
    cr_04_skip_ahead_is_416_with_content_range_and_size,
    cr_05_to_11_malformed_ranges_are_400_and_write_nothing,
    cr_12_content_length_must_equal_the_span,
    cr_13_hash_change_between_chunks_is_409_and_discards_the_partial,
    cr_14_hash_header_must_be_64_hex_and_cr_15_upper_case_is_fine,
    cr_16_restart_from_zero_with_a_new_hash_replaces_the_file_once_verified,
    cr_17_restart_from_zero_over_a_same_hash_partial_is_416_at_its_size,
    cr_18_range_put_onto_a_directory_is_400,
    cr_19_range_put_of_an_identical_complete_file_is_200_per_d9,
    files_list_orders_names_bytewise_depth_first_and_includes_sidecars,
    backend_logs_rest_routes,
    backend_logs_websocket_initial_frame_then_live_lines,
    backend_logs_websocket_of_an_unknown_model_starts_empty,
    ah_27_websocket_from_a_foreign_origin_is_403,
    d15_awkward_keys_are_4xx_never_5xx_and_errors_carry_no_paths,
);
