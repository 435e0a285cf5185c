//! Shared harness of the integration tests: a server on a loopback port over temp
//! directories, on the runtime of the test's choosing ([`Runtime`], with
//! [`per_runtime_tests!`] to run a test once per runtime), a raw HTTP/1.1 client (so request
//! targets go out byte for byte, never normalised), and helpers to spawn the reference worker
//! binary.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![allow(
    unreachable_pub,
    reason = "the harness is shared by several test binaries"
)]

pub mod cluster;
pub mod frontend;
pub mod nats;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nodegate::auth::{AuthPolicy, Token};
use nodegate::keys::Roots;
use nodegate::request::ServerPolicy;
use nodegate::tokio_adapter::{Limits, LogStore, Readiness, Server, ServerConfig};
use nodegate_http::SmolRuntime;
use sha2::Digest as _;

/// The token configured on protected test servers.
pub const TOKEN: &str = "s3cr3t-Token_for.tests~";

/// How long a raw client waits for an answer before failing the test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Instantiates tests written once as `fn name(rt: Runtime)` for every runtime: `tokio::name`
/// and `smol::name`, each a `#[test]` calling `name` with its [`Runtime`]. A test function left
/// out of the list is never called, and the dead-code lint says so.
#[allow(
    unused_macros,
    reason = "test binaries without in-process servers share the harness"
)]
macro_rules! per_runtime_tests {
    ($($test:ident),* $(,)?) => {
        mod tokio {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::common::Runtime::Tokio);
                }
            )*
        }
        mod smol {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::common::Runtime::Smol);
                }
            )*
        }
    };
}
#[allow(unused_imports, reason = "see the macro")]
pub(crate) use per_runtime_tests;

/// A file-transfer server running on its own runtime threads, over a temp tree:
/// `<tmp>/outside` (must never change), `<tmp>/root/models`, `<tmp>/root/staging`,
/// `<tmp>/root/data`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub tmp: tempfile::TempDir,
    pub roots: Roots,
    pub logs: LogStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Options of a [`TestServer`].
#[derive(Clone)]
pub struct Options {
    pub token: Option<&'static str>,
    pub previous: Option<&'static str>,
    pub max_upload: Option<u64>,
    pub limits: Limits,
    pub readiness: Option<Readiness>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: Some(TOKEN),
            previous: None,
            max_upload: Some(50 << 30),
            limits: Limits::default(),
            readiness: None,
        }
    }
}

impl TestServer {
    /// A protected server with default limits.
    pub fn start(rt: Runtime) -> Self {
        Self::with(rt, Options::default())
    }

    /// An anonymous server.
    pub fn anonymous(rt: Runtime) -> Self {
        Self::with(
            rt,
            Options {
                token: None,
                ..Options::default()
            },
        )
    }

    pub fn with(rt: Runtime, options: Options) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let base = tmp.path().join("root");
        std::fs::create_dir_all(tmp.path().join("outside")).expect("outside dir");
        std::fs::write(tmp.path().join("outside/secret.txt"), b"outside secret").expect("secret");
        let roots = Roots {
            models: base.join("models"),
            staging: base.join("staging"),
            data: base.join("data"),
        };
        let token = options.token.map(|t| Token::parse(t).expect("valid token"));
        let previous = options
            .previous
            .map(|t| Token::parse(t).expect("valid token"));
        let policy = ServerPolicy {
            auth: AuthPolicy::from_tokens(token.as_ref(), previous.as_ref()),
            max_upload: options.max_upload,
        };
        let logs = LogStore::new();
        let config = ServerConfig {
            policy,
            roots: roots.clone(),
            limits: options.limits.clone(),
            logs: logs.clone(),
            readiness: options.readiness.clone(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async {
            let _ = stop_rx.await;
        };
        let thread = match rt {
            Runtime::Tokio => std::thread::spawn(move || {
                on_tokio(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let server = Server::new(config, listener).expect("server starts");
                    addr_tx
                        .send(server.local_addr().expect("addr"))
                        .expect("send addr");
                    server.serve(stop).await;
                });
            }),
            Runtime::Smol => std::thread::spawn(move || {
                on_smol(|runtime| async move {
                    let listener = smol::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let server = nodegate_http::Server::with_runtime(runtime, config, listener)
                        .expect("server starts");
                    addr_tx
                        .send(server.local_addr().expect("addr"))
                        .expect("send addr");
                    server.serve(stop).await;
                });
            }),
        };
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server address");
        Self {
            addr,
            tmp,
            roots,
            logs,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Sends raw bytes and reads one response.
    pub fn raw(&self, request: &[u8]) -> RawResponse {
        send_raw(self.addr, request)
    }

    /// Sends a request with the test token (when `auth`), `extra` header lines and a body.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        auth: bool,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if auth {
            head.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
        }
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "PUT" || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    pub fn get(&self, target: &str) -> RawResponse {
        self.request("GET", target, true, &[], b"")
    }

    pub fn head(&self, target: &str) -> RawResponse {
        self.request("HEAD", target, true, &[], b"")
    }

    pub fn put(&self, target: &str, body: &[u8]) -> RawResponse {
        self.request("PUT", target, true, &[], body)
    }

    /// Everything under the temp dir outside the roots, with contents: must never change.
    pub fn outside_snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        walk(&self.tmp.path().join("outside"), &mut out);
        out
    }

    /// Every file under the roots, relative to `<tmp>/root`.
    pub fn root_files(&self) -> Vec<String> {
        let base = self.tmp.path().join("root");
        let mut out = Vec::new();
        walk(&base, &mut out);
        out.into_iter()
            .map(|(p, _)| {
                p.strip_prefix(&base)
                    .expect("under base")
                    .display()
                    .to_string()
            })
            .collect()
    }
}

/// Why the server refuses to start over `config` on `rt` (`None` when it starts).
pub fn start_error(rt: Runtime, config: ServerConfig) -> Option<String> {
    match rt {
        Runtime::Tokio => on_tokio(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            Server::new(config, listener).err().map(|e| e.to_string())
        }),
        Runtime::Smol => on_smol(|runtime| async move {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            nodegate_http::Server::with_runtime(runtime, config, listener)
                .err()
                .map(|e| e.to_string())
        }),
    }
}

/// Runs `main` to completion on a tokio multi-thread runtime with two workers.
fn on_tokio<T>(main: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(main)
}

/// Runs the future `main` makes to completion on a smol executor driven by two threads (this
/// one and a helper that stops once `main` is done).
fn on_smol<T, F>(main: impl FnOnce(SmolRuntime) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let executor = Arc::new(smol::Executor::new());
    let (done, finished) = smol::channel::bounded::<()>(1);
    let helper = {
        let executor = executor.clone();
        std::thread::spawn(move || {
            smol::block_on(executor.run(async {
                let _ = finished.recv().await;
            }));
        })
    };
    let output = smol::block_on(executor.run(main(SmolRuntime::new(executor.clone()))));
    drop(done);
    let _ = helper.join();
    output
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            walk(&path, out);
        } else if meta.file_type().is_symlink() {
            out.push((
                path.clone(),
                std::fs::read_link(&path)
                    .expect("link")
                    .into_os_string()
                    .into_encoded_bytes(),
            ));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` on a fresh connection and reads one response. A response to `HEAD` has no
/// body whatever its `Content-Length` says.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    // A server may answer and close before the whole body is sent (413 on a declared size):
    // a failed write is fine as long as a response comes back.
    let _ = stream.write_all(request);
    let is_head = request.starts_with(b"HEAD ");
    read_response(&mut stream, is_head).expect("a complete HTTP response")
}

/// Reads one response from `stream`.
pub fn read_response(stream: &mut TcpStream, is_head: bool) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        body.clear();
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            if let Some(decoded) = decode_chunked(&body) {
                body = decoded;
                break;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let _ = stream.read_to_end(&mut body);
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The runtime a test runs on, as rustls instantiates its suites once per crypto provider:
/// - an in-process [`TestServer`] takes it as an argument ([`per_runtime_tests!`] writes
///   `tokio::name` and `smol::name` for every `fn name(rt: Runtime)`);
/// - the worker helpers ([`worker_program`], [`cluster::Binary::path`]) spawn the program of the
///   runtime selected for the running test ([`per_runtime!`] selects it per instantiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// In process: a tokio multi-thread runtime with two workers. As a program:
    /// `examples/worker.rs`, or `$NODEGATE_WORKER_BIN worker`.
    Tokio,
    /// In process: a smol executor run by two threads, async-io for sockets and timers, the
    /// `blocking` pool for files (`nodegate_http::Server<SmolRuntime>`). As a program:
    /// `examples/worker-smol.rs`.
    Smol,
}

thread_local! {
    static RUNTIME: std::cell::Cell<Runtime> = const { std::cell::Cell::new(Runtime::Tokio) };
}

impl Runtime {
    /// The runtime of the test running on this thread (tokio outside [`per_runtime!`]).
    pub fn current() -> Self {
        RUNTIME.with(std::cell::Cell::get)
    }

    /// Makes `self` the runtime of this thread's test until the guard is dropped.
    pub fn select(self) -> RuntimeGuard {
        let previous = RUNTIME.with(|r| r.replace(self));
        RuntimeGuard(previous)
    }

    /// The worker example of this runtime.
    pub fn worker_example(self) -> &'static str {
        match self {
            Self::Tokio => "worker",
            Self::Smol => "worker-smol",
        }
    }
}

/// Restores the previous runtime on drop.
pub struct RuntimeGuard(Runtime);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        RUNTIME.with(|r| r.set(self.0));
    }
}

/// Writes a test file's items once and instantiates them per runtime: `mod tokio { … }` and
/// `mod smol { … }`, each with every item, and every `fn name() { … }` (the tests) run with
/// its runtime selected ([`Runtime::select`]). Items see the file's root through `super::*`.
#[macro_export]
macro_rules! per_runtime {
    (@items [$runtime:expr]) => {};
    (@items [$runtime:expr] $(#[$meta:meta])* fn $name:ident() $body:block $($rest:tt)*) => {
        $(#[$meta])*
        fn $name() {
            let _runtime = $runtime.select();
            $body
        }
        $crate::per_runtime!(@items [$runtime] $($rest)*);
    };
    (@items [$runtime:expr] $item:item $($rest:tt)*) => {
        $item
        $crate::per_runtime!(@items [$runtime] $($rest)*);
    };
    ($($items:tt)*) => {
        mod tokio {
            #[allow(unused_imports, reason = "each instantiation uses what its file imports")]
            use super::*;
            $crate::per_runtime!(@items [$crate::common::Runtime::Tokio] $($items)*);
        }
        mod smol {
            #[allow(unused_imports, reason = "each instantiation uses what its file imports")]
            use super::*;
            $crate::per_runtime!(@items [$crate::common::Runtime::Smol] $($items)*);
        }
    };
}

/// Path of the current runtime's worker example, built by `cargo test` (examples are built
/// with the tests, next to the test binaries).
pub fn worker_binary() -> PathBuf {
    let name = Runtime::current().worker_example();
    let exe = std::env::current_exe().expect("test exe");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = debug_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{name} example not built at {}",
        path.display()
    );
    path
}

/// The worker program and the arguments that precede its settings: the current runtime's
/// reference example or, for tokio, `<NODEGATE_WORKER_BIN> worker` when that variable names an
/// installed `nodegate` (CI runs the start-up tests against `cargo install`'s binary that way;
/// the smol worker is the example in every run).
pub fn worker_program() -> (PathBuf, Vec<&'static str>) {
    match (Runtime::current(), std::env::var_os("NODEGATE_WORKER_BIN")) {
        (Runtime::Tokio, Some(bin)) => (PathBuf::from(bin), vec!["worker"]),
        _ => (worker_binary(), Vec::new()),
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until something accepts connections on `addr`, or the deadline passes.
pub fn wait_listening(addr: SocketAddr, deadline: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A spawned worker process; killed (SIGKILL) and reaped on drop. Its stdout and stderr go to
/// files in a temp dir of its own, so a chatty child never blocks on a full pipe.
pub struct WorkerProcess {
    pub child: std::process::Child,
    logs: tempfile::TempDir,
}

impl WorkerProcess {
    /// Spawns `command` with stdout/stderr captured to files.
    pub fn spawn(mut command: std::process::Command) -> Self {
        let logs = tempfile::tempdir().expect("log dir");
        let out = std::fs::File::create(logs.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(logs.path().join("stderr")).expect("stderr file");
        command
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().expect("spawn the worker");
        Self { child, logs }
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.wait_exit(Duration::from_secs(10));
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.wait_exit(Duration::from_secs(10));
    }
}

/// The worker binary with an empty environment except `PATH`, `LOCALAI_MODELS_PATH=models`,
/// `LOCALAI_HTTP_ADDR=http_addr` and short server timeouts.
pub fn worker_command(models: &Path, http_addr: &str) -> std::process::Command {
    let (program, args) = worker_program();
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOCALAI_MODELS_PATH", models)
        .env("LOCALAI_HTTP_ADDR", http_addr)
        .env("NODEGATE_HEADER_TIMEOUT", "10s")
        .env("NODEGATE_BODY_IDLE_TIMEOUT", "10s");
    command
}

/// Waits until `GET /healthz` on `addr` answers 200.
pub fn wait_healthy(addr: SocketAddr, deadline: Duration) -> bool {
    if !wait_listening(addr, deadline) {
        return false;
    }
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    send_raw(addr, request.as_bytes()).status == 200
}

/// Sends one request to `addr` with `Authorization: Bearer <token>` when `token` is given,
/// `extra` header lines and a body (with `Content-Length`); reads one response.
pub fn request_to(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes)
}

/// Real frontend, nats-setup, nats-server and worker processes for the cluster tests.
pub mod processes;
