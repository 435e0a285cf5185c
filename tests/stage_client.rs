//! The staging client and the `stage` CLI against a real worker file server on loopback, through
//! a small HTTP-aware proxy that counts requests and bytes and injects faults.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Runtime, TOKEN, TestServer, request_to};
use nodegate_core::staging::Policy;
use nodegate_tokio::stage::{NoProgress, Stager};

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// A counting, fault-injecting proxy (one upstream connection per client connection; requests
// handled in order, bodies framed by Content-Length as the worker always sends it).

#[derive(Default, Clone)]
struct Faults {
    /// Answer the first HEAD with 503 without forwarding it.
    fail_first_head: bool,
    /// Forward the first HEAD but drop `X-Content-SHA256` from its answer.
    strip_hash_first_head: bool,
    /// Answer the first PUT as LocalAI does over a complete file (416, `X-File-Size: total`).
    fake_416_first_put: bool,
    /// Close both connections after forwarding this many body bytes of the first PUT.
    cut_first_put_after: Option<u64>,
    /// Stop forwarding every PUT body after this many bytes (discarding the rest until the
    /// client goes away, then closing the upstream connection).
    hold_puts_after: Option<u64>,
}

#[derive(Default)]
struct Stats {
    heads: AtomicU64,
    puts: AtomicU64,
    gets: AtomicU64,
    others: AtomicU64,
    /// PUT body bytes forwarded to the worker.
    put_bytes: AtomicU64,
    /// Bytes the client sent through the proxy, headers included.
    client_bytes: AtomicU64,
}

impl Stats {
    fn requests(&self) -> u64 {
        self.heads.load(Ordering::SeqCst)
            + self.puts.load(Ordering::SeqCst)
            + self.gets.load(Ordering::SeqCst)
            + self.others.load(Ordering::SeqCst)
    }
}

struct Proxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            faults,
            first_head: AtomicBool::new(true),
            first_put: AtomicBool::new(true),
        });
        {
            let stats = Arc::clone(&stats);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let stats = Arc::clone(&stats);
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream, &shared, &stats);
                    });
                }
            });
        }
        Self { addr, stats, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Shared {
    faults: Faults,
    first_head: AtomicBool,
    first_put: AtomicBool,
}

fn read_head(stream: &mut TcpStream, stats: Option<&Stats>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    if let Some(stats) = stats {
        stats
            .client_bytes
            .fetch_add(head.len() as u64, Ordering::SeqCst);
    }
    Ok(Some(head))
}

fn header_of(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: &Shared,
    stats: &Stats,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Some(head) = read_head(&mut client, Some(stats))? else {
            return Ok(());
        };
        let method = String::from_utf8_lossy(&head)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_owned();
        let len: u64 = header_of(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let counter = match method.as_str() {
            "HEAD" => &stats.heads,
            "PUT" => &stats.puts,
            "GET" => &stats.gets,
            _ => &stats.others,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let first_head = method == "HEAD" && shared.first_head.swap(false, Ordering::SeqCst);
        let first_put = method == "PUT" && shared.first_put.swap(false, Ordering::SeqCst);
        let faults = &shared.faults;
        if first_head && faults.fail_first_head {
            client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n",
            )?;
            continue;
        }
        if first_put && faults.fake_416_first_put {
            discard(&mut client, len, &mut buf, stats)?;
            let total = header_of(&head, "content-range")
                .and_then(|v| v.rsplit('/').next().map(str::to_owned))
                .unwrap_or_default();
            let body = "Content-Range start 0 does not match current file size\n";
            let answer = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\n\
                 X-File-Size: {total}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes())?;
            continue;
        }
        server.write_all(&head)?;
        // The body.
        let limit = match method.as_str() {
            "PUT" if first_put && faults.cut_first_put_after.is_some() => {
                faults.cut_first_put_after
            }
            "PUT" => faults.hold_puts_after,
            _ => None,
        };
        let mut left = len;
        let mut forwarded = 0u64;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).expect("small");
            let want = match limit {
                Some(limit) => want.min(usize::try_from(limit - forwarded).expect("small")),
                None => want,
            };
            if want == 0 {
                break;
            }
            let n = client.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(());
            }
            stats.client_bytes.fetch_add(n as u64, Ordering::SeqCst);
            server.write_all(&buf[..n])?;
            if method == "PUT" {
                stats.put_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
            forwarded += n as u64;
            left -= n as u64;
        }
        if left > 0 {
            if first_put && faults.cut_first_put_after.is_some() {
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            // Hold: swallow the rest until the client goes away, then hang up on the worker.
            let _ = discard(&mut client, left, &mut buf, stats);
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        // The answer.
        let Some(answer) = read_head(&mut server, None)? else {
            return Ok(());
        };
        let mut answer = answer;
        if first_head && faults.strip_hash_first_head {
            let text = String::from_utf8_lossy(&answer).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("x-content-sha256:"))
                .collect();
            answer = kept.join("\r\n").into_bytes();
        }
        client.write_all(&answer)?;
        if method != "HEAD" {
            let mut left: u64 = header_of(&answer, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).expect("small");
                let n = server.read(&mut buf[..want])?;
                if n == 0 {
                    return Ok(());
                }
                client.write_all(&buf[..n])?;
                left -= n as u64;
            }
        }
        if header_of(&answer, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

fn discard(
    client: &mut TcpStream,
    mut left: u64,
    buf: &mut [u8],
    stats: &Stats,
) -> std::io::Result<()> {
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).expect("small");
        let n = client.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(());
        }
        stats.client_bytes.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Deterministic pseudo-random bytes (xorshift), fast enough for 64 MiB.
fn pseudo_random(len: u64, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(usize::try_from(len).expect("fits"));
    while (out.len() as u64) < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(usize::try_from(len).expect("fits"));
    out
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write local file");
    path
}

fn stage_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("examples").join("stage");
    assert!(
        path.exists(),
        "stage example not built at {}",
        path.display()
    );
    path
}

fn stage(args: &[&str], token: Option<&str>) -> Command {
    let mut command = Command::new(stage_binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("LOCALAI_REGISTRATION_TOKEN", token);
    }
    command
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn run(args: &[&str], token: Option<&str>) -> Run {
    let start = Instant::now();
    let mut child = stage(args, token).spawn().expect("spawn stage");
    let deadline = start + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stage {args:?} did not finish in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: start.elapsed(),
    };
    for secret in [TOKEN, "wrong-token-value"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a token leaked into the output of {args:?}"
        );
    }
    run
}

/// The worker's `X-File-Size` for `key`, if the key is known.
fn remote_size(server: &TestServer, key: &str) -> Option<u64> {
    let response = request_to(
        server.addr,
        "HEAD",
        &format!("/v1/files/{key}"),
        Some(TOKEN),
        &[],
        b"",
    );
    (response.status == 200)
        .then(|| response.header("x-file-size")?.parse().ok())
        .flatten()
}

fn url(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

fn runtime() -> ::tokio::runtime::Runtime {
    ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// A 64 MiB push whose connection is cut after 20 MiB resumes by itself from what the worker
/// kept (sending only the rest), and a pull returns the same bytes.
fn push_cut_mid_transfer_resumes_and_pull_returns_the_same_bytes(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let data = pseudo_random(64 * MIB, 7);
    let file = write_file(local.path(), "model.gguf", &data);
    let cut = 20 * MIB;
    let proxy = Proxy::start(
        server.addr,
        Faults {
            cut_first_put_after: Some(cut),
            ..Faults::default()
        },
    );
    let rt = runtime();
    let stager = Stager::new(&proxy.url(), Some(TOKEN)).expect("stager");
    let pushed = rt
        .block_on(stager.push(&file, "models/big/model.gguf", &NoProgress))
        .expect("push");
    assert!(!pushed.skipped);
    assert_eq!(pushed.resumed_from, cut, "resumed where the worker stopped");
    assert_eq!(
        proxy.stats.put_bytes.load(Ordering::SeqCst),
        cut + (64 * MIB - cut),
        "the second PUT carried only the rest"
    );
    assert_eq!(proxy.stats.puts.load(Ordering::SeqCst), 2);
    assert!(pushed.local_path.ends_with("models/big/model.gguf"));
    assert_eq!(
        std::fs::read(server.roots.models.join("big/model.gguf")).expect("on the worker"),
        data
    );

    let back = local.path().join("back.gguf");
    let direct = Stager::new(&url(&server), Some(TOKEN)).expect("stager");
    let pulled = rt
        .block_on(direct.pull("models/big/model.gguf", &back, &NoProgress))
        .expect("pull");
    assert!(pulled.verified);
    assert_eq!(pulled.size, 64 * MIB);
    assert!(std::fs::read(&back).expect("pulled") == data, "same bytes");
    assert!(!local.path().join("back.gguf.partial").exists());
}

/// The CLI killed mid-transfer: the worker keeps the bytes, and the next `stage push` sends
/// only the rest; `stage pull` then returns the same bytes.
fn a_killed_cli_push_resumes_with_only_the_rest(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let data = pseudo_random(64 * MIB, 11);
    let file = write_file(local.path(), "model.gguf", &data);
    let file_arg = file.to_str().expect("utf-8 path");
    let held = 24 * MIB;
    let key = "models/killed.gguf";
    {
        let holding = Proxy::start(
            server.addr,
            Faults {
                hold_puts_after: Some(held),
                ..Faults::default()
            },
        );
        let mut child = stage(&["push", file_arg, &holding.url(), key], Some(TOKEN))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stage");
        let deadline = Instant::now() + Duration::from_secs(30);
        while remote_size(&server, key) != Some(held) {
            assert!(
                Instant::now() < deadline,
                "the worker never held {held} bytes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("kill stage");
        let _ = child.wait();
    }
    // The proxy hangs up on the worker once the client is gone; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        remote_size(&server, key),
        Some(held),
        "the partial survived"
    );

    let counting = Proxy::start(server.addr, Faults::default());
    let second = run(&["push", file_arg, &counting.url(), key], Some(TOKEN));
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(
        counting.stats.put_bytes.load(Ordering::SeqCst),
        64 * MIB - held,
        "only the rest was sent"
    );
    assert_eq!(counting.stats.heads.load(Ordering::SeqCst), 1);
    assert!(
        second.stderr.contains("resumed at byte 25165824"),
        "{}",
        second.stderr
    );
    assert!(
        second.stdout.trim().ends_with("models/killed.gguf"),
        "{}",
        second.stdout
    );

    let back = local.path().join("back.gguf");
    let pulled = run(
        &["pull", &url(&server), key, back.to_str().expect("utf-8")],
        Some(TOKEN),
    );
    assert_eq!(pulled.code, Some(0), "{}", pulled.stderr);
    assert!(std::fs::read(&back).expect("pulled") == data, "same bytes");
}

/// A file the worker already holds is "already there" after exactly one HEAD.
fn a_file_the_worker_holds_is_already_there_in_one_head(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let data = pseudo_random(3 * MIB + 5, 3);
    let file = write_file(local.path(), "m.bin", &data);
    let file_arg = file.to_str().expect("utf-8");
    let first = run(
        &["push", file_arg, &url(&server), "models/m.bin"],
        Some(TOKEN),
    );
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    let proxy = Proxy::start(server.addr, Faults::default());
    let again = run(
        &["push", file_arg, &proxy.url(), "models/m.bin"],
        Some(TOKEN),
    );
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("already there"), "{}", again.stderr);
    assert_eq!(proxy.stats.requests(), 1, "one request");
    assert_eq!(proxy.stats.heads.load(Ordering::SeqCst), 1, "a HEAD");
    assert_eq!(again.stdout.trim(), first.stdout.trim(), "the same path");
}

/// A wrong or missing token ends the CLI at once with exit code 3, one request, a message
/// naming the variable, and no token in the output.
fn a_refused_token_exits_3_at_once_without_retries(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let file = write_file(local.path(), "m.bin", b"some bytes");
    let file_arg = file.to_str().expect("utf-8");
    for token in [Some("wrong-token-value"), None] {
        let proxy = Proxy::start(server.addr, Faults::default());
        let run = run(&["push", file_arg, &proxy.url(), "models/m.bin"], token);
        assert_eq!(run.code, Some(3), "{}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(2),
            "took {:?}",
            run.elapsed
        );
        assert!(
            run.stderr.contains("LOCALAI_REGISTRATION_TOKEN"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("401"), "{}", run.stderr);
        assert_eq!(proxy.stats.requests(), 1, "no retries");
    }
    let ls = run(&["ls", &url(&server), "models/"], Some("wrong-token-value"));
    assert_eq!(ls.code, Some(3));
    let usage = run(&["push", file_arg], Some(TOKEN));
    assert_eq!(usage.code, Some(2));
    let bad_url = run(&["push", file_arg, "ftp://x", "models/m.bin"], Some(TOKEN));
    assert_eq!(bad_url.code, Some(2), "{}", bad_url.stderr);
    let missing = run(
        &["push", "/nonexistent/file", &url(&server), "models/m.bin"],
        Some(TOKEN),
    );
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
}

/// D9: the worker holds the complete file but the probe misses its hash; the PUT of
/// `bytes 0-…` gets LocalAI's 416, and the next HEAD finds the hash: done, no livelock.
fn a_416_over_a_complete_file_finishes_without_a_livelock(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let data = pseudo_random(MIB, 5);
    let file = write_file(local.path(), "m.bin", &data);
    let rt = runtime();
    let direct = Stager::new(&url(&server), Some(TOKEN)).expect("stager");
    rt.block_on(direct.push(&file, "models/d9.bin", &NoProgress))
        .expect("first push");

    let proxy = Proxy::start(
        server.addr,
        Faults {
            strip_hash_first_head: true,
            fake_416_first_put: true,
            ..Faults::default()
        },
    );
    let stager = Stager::new(&proxy.url(), Some(TOKEN)).expect("stager");
    let start = Instant::now();
    let pushed = rt
        .block_on(stager.push(&file, "models/d9.bin", &NoProgress))
        .expect("push");
    assert!(pushed.skipped, "found by the second HEAD");
    assert_eq!(proxy.stats.heads.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.stats.puts.load(Ordering::SeqCst), 1);
    assert!(start.elapsed() < Duration::from_secs(5));

    // The probe HEAD failing once: one backoff, then the hash is found.
    let proxy = Proxy::start(
        server.addr,
        Faults {
            fail_first_head: true,
            ..Faults::default()
        },
    );
    let stager = Stager::new(&proxy.url(), Some(TOKEN)).expect("stager");
    let pushed = rt
        .block_on(stager.push(&file, "models/d9.bin", &NoProgress))
        .expect("push");
    assert!(pushed.skipped);
    assert_eq!(proxy.stats.heads.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.stats.puts.load(Ordering::SeqCst), 0);
}

/// An unreachable worker is retried within the policy's bounds, then reported.
#[test]
fn an_unreachable_worker_gives_up_within_the_bounds() {
    let port = common::free_port();
    let local = tempfile::tempdir().expect("tmp");
    let file = write_file(local.path(), "m.bin", b"x");
    let policy = Policy {
        max_retries: 2,
        ..Policy::default()
    };
    let stager = Stager::new(&format!("http://127.0.0.1:{port}"), Some(TOKEN))
        .expect("stager")
        .with_policy(policy);
    let start = Instant::now();
    let error = runtime()
        .block_on(stager.push(&file, "models/m.bin", &NoProgress))
        .expect_err("nobody listens");
    assert!(
        error.to_string().contains("gave up after 2 retries"),
        "{error}"
    );
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(10));
}

/// `ls` lists what was pushed (keys with spaces encoded), `alloc_temp` allocates a file in the
/// staging root, and a pull resumes a local partial of the same content.
fn ls_alloc_temp_and_pull_resume_round_trip(rt: Runtime) {
    let server = TestServer::start(rt);
    let local = tempfile::tempdir().expect("tmp");
    let rt = runtime();
    let stager = Stager::new(&url(&server), Some(TOKEN)).expect("stager");
    let a = write_file(local.path(), "a.bin", &pseudo_random(1000, 1));
    let b = write_file(local.path(), "b.bin", b"");
    rt.block_on(stager.push(&a, "models/dir/with space.bin", &NoProgress))
        .expect("push a");
    let empty = rt
        .block_on(stager.push(&b, "models/dir/sub/empty.bin", &NoProgress))
        .expect("push an empty file");
    assert_eq!(empty.size, 0);
    let files = rt.block_on(stager.list("models/dir/")).expect("list");
    assert!(files.contains(&"with space.bin".to_owned()), "{files:?}");
    assert!(files.contains(&"sub/empty.bin".to_owned()), "{files:?}");
    let ls = run(&["ls", &url(&server), "models/dir/"], Some(TOKEN));
    assert_eq!(ls.code, Some(0), "{}", ls.stderr);
    assert!(
        ls.stdout.lines().any(|l| l == "with space.bin"),
        "{}",
        ls.stdout
    );

    let temp = rt.block_on(stager.alloc_temp()).expect("temp");
    let temp_path = Path::new(&temp);
    assert_eq!(temp_path.parent(), Some(server.roots.staging.as_path()));
    assert!(temp_path.exists());
    let cli = run(&["temp", &url(&server)], Some(TOKEN));
    assert_eq!(cli.code, Some(0), "{}", cli.stderr);
    assert!(Path::new(cli.stdout.trim()).exists());

    // A local partial of the same content is resumed.
    let data = std::fs::read(&a).expect("a");
    let dest = local.path().join("out.bin");
    std::fs::write(local.path().join("out.bin.partial"), &data[..400]).expect("partial");
    let hash = common::sha256_hex(&data);
    std::fs::write(local.path().join("out.bin.partial.sha256"), &hash).expect("hash");
    let pulled = rt
        .block_on(stager.pull("models/dir/with space.bin", &dest, &NoProgress))
        .expect("pull");
    assert_eq!(pulled.resumed_from, 400);
    assert_eq!(pulled.received, 600);
    assert_eq!(std::fs::read(&dest).expect("out"), data);
    assert!(!local.path().join("out.bin.partial.sha256").exists());

    let missing = run(
        &[
            "pull",
            &url(&server),
            "models/none.bin",
            dest.to_str().expect("utf-8"),
        ],
        Some(TOKEN),
    );
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);
}

common::per_runtime_tests!(
    push_cut_mid_transfer_resumes_and_pull_returns_the_same_bytes,
    a_killed_cli_push_resumes_with_only_the_rest,
    a_file_the_worker_holds_is_already_there_in_one_head,
    a_refused_token_exits_3_at_once_without_retries,
    a_416_over_a_complete_file_finishes_without_a_livelock,
    ls_alloc_temp_and_pull_resume_round_trip,
);
