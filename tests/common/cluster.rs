//! Cluster harness: the real `worker` and `agent-worker` example binaries spawned as members of
//! a cluster made of a [`Frontend`] double and a real [`NatsServer`] on loopback.
//!
//! - [`Secrets`] collects every secret a test configures (registration token, NATS token,
//!   password, seeds, JWTs — minted ones included, through [`recording_minter`]); a [`Member`]
//!   checks on drop (and on [`Member::assert_no_secrets`]) that none of them appears in what its
//!   process wrote to stdout or stderr, so every test that spawns a process checks it.
//! - [`MemberCommand`] builds the command line of a member with LocalAI's variables, from a
//!   cleared environment (`PATH` only), with `LOCALAI_HEARTBEAT_INTERVAL=1s` to keep tests fast.
//! - [`Member`] is the running process: readiness/health probes that never panic on a closed
//!   port, log waits, exit waits; the process is killed on drop.
//! - [`Bus`] is a test NATS client on its own small runtime (the tests themselves are
//!   synchronous), with server errors (permission violations) collected.
//! - [`TcpCounter`] is a loopback TCP forwarder that counts the connections made through it: the
//!   worker's `LOCALAI_NATS_URL` points at it to prove that no NATS connection was opened.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event, ServerError};
use nodegate::jwt::{self, NodeType};
use serde_json::Value;

use super::frontend::{Frontend, Minter};
use super::nats::{NatsServer, Operator};
use super::{WorkerProcess, free_port, read_response};

/// The registration token of cluster tests (a secret: never in any output).
pub const REG_TOKEN: &str = "reg-Cluster_token.e2e~9f3a7c";

/// The heartbeat period given to every member.
pub const HEARTBEAT: &str = "1s";

/// Secrets configured by one test, shared with its minter and members.
#[derive(Clone, Default)]
pub struct Secrets(Arc<Mutex<Vec<(String, String)>>>);

impl Secrets {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `value` under `label` (the label, never the value, is printed on a leak). A JWT
    /// is also recorded by its claims and signature parts, so a partial leak is caught too.
    pub fn add(&self, label: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "secret {label} too short to be searched for"
        );
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.push((label.to_owned(), value.to_owned()));
        let parts: Vec<&str> = value.split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| p.len() >= 16) {
            list.push((format!("{label} (claims part)"), parts[1].to_owned()));
            list.push((format!("{label} (signature part)"), parts[2].to_owned()));
        }
    }

    /// Every recorded secret with its label.
    pub fn all(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many values are recorded.
    pub fn len(&self) -> usize {
        self.all().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Panics (naming the secret's label and `what`, never the value) if any secret appears in
    /// `output`.
    pub fn assert_absent(&self, what: &str, output: &str) {
        for (label, value) in self.all() {
            assert!(
                !output.contains(&value),
                "secret {label} appears in the output of {what}"
            );
        }
    }
}

/// One credential the frontend minted.
#[derive(Clone)]
pub struct Minted {
    /// The node id it was minted for.
    pub node_id: String,
    /// `backend` or `agent`.
    pub node_type: String,
    /// The user JWT.
    pub jwt: String,
    /// The user seed.
    pub seed: String,
    /// The JWT's `exp` (Unix seconds).
    pub exp: Option<u64>,
    /// Unix seconds when it was minted.
    pub minted_at: u64,
    /// When it was minted.
    pub at: Instant,
}

/// Everything a [`recording_minter`] minted, in order.
#[derive(Clone, Default)]
pub struct MintLog(Arc<Mutex<Vec<Minted>>>);

impl MintLog {
    /// The credentials minted so far.
    pub fn all(&self) -> Vec<Minted> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last credential minted.
    pub fn last(&self) -> Option<Minted> {
        self.all().pop()
    }
}

/// A minter that mints like LocalAI's frontend with `operator` (`ttl_secs` lifetime, per-node
/// permissions of the node's type), records every JWT and seed in `secrets` and in the
/// returned log.
pub fn recording_minter(
    operator: &Arc<Operator>,
    ttl_secs: u64,
    secrets: &Secrets,
) -> (Minter, MintLog) {
    let log = MintLog::default();
    let (operator, secrets, record) = (Arc::clone(operator), secrets.clone(), log.clone());
    let minter: Minter = Arc::new(move |node_id: &str, node_type: &str| {
        let kind = if node_type == "agent" {
            NodeType::Agent
        } else {
            NodeType::Backend
        };
        let minted_at = super::nats::unix_now();
        let (jwt, seed) = operator.mint_user(node_id, kind, ttl_secs);
        secrets.add("minted NATS JWT", &jwt);
        secrets.add("minted NATS user seed", &seed);
        record
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Minted {
                node_id: node_id.to_owned(),
                node_type: node_type.to_owned(),
                exp: jwt::expiry(&jwt),
                jwt: jwt.clone(),
                seed: seed.clone(),
                minted_at,
                at: Instant::now(),
            });
        Some((jwt, seed))
    });
    (minter, log)
}

/// A minter that hands out whatever `mint` returns (recorded as secrets), for edge cases:
/// users of unknown accounts, narrowed permissions.
pub fn custom_minter(
    secrets: &Secrets,
    mint: impl Fn(&str, &str) -> (String, String) + Send + Sync + 'static,
) -> Minter {
    let secrets = secrets.clone();
    Arc::new(move |node_id: &str, node_type: &str| {
        let (jwt, seed) = mint(node_id, node_type);
        secrets.add("minted NATS JWT", &jwt);
        secrets.add("minted NATS user seed", &seed);
        Some((jwt, seed))
    })
}

/// Which example binary a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// The supervisor worker of the current [`Runtime`](super::Runtime) (`examples/worker.rs`
    /// or `examples/worker-smol.rs`).
    Worker,
    /// `examples/agent-worker.rs`: the agent worker.
    Agent,
}

impl Binary {
    /// The path of the built example.
    pub fn path(self) -> PathBuf {
        let name = match self {
            Self::Worker => super::Runtime::current().worker_example(),
            Self::Agent => "agent-worker",
        };
        let exe = std::env::current_exe().expect("test exe");
        let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
        let path = debug_dir.join("examples").join(name);
        assert!(
            path.exists(),
            "the {name} example is not built at {} (run `cargo build --examples`)",
            path.display()
        );
        path
    }
}

/// The command line of a cluster member, from a cleared environment.
pub struct MemberCommand {
    binary: Binary,
    command: Command,
    tmp: tempfile::TempDir,
    http: Option<SocketAddr>,
    secrets: Secrets,
    name: String,
}

impl MemberCommand {
    /// A supervisor worker named `name`: `LOCALAI_MODELS_PATH=<tmp>/root/models`,
    /// `LOCALAI_HTTP_ADDR=127.0.0.1:<free port>`, heartbeat 1 s, short server timeouts.
    pub fn worker(name: &str, secrets: &Secrets) -> Self {
        let mut member = Self::new(Binary::Worker, name, secrets);
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let models = member.tmp.path().join("root/models");
        member
            .command
            .env("LOCALAI_MODELS_PATH", models)
            .env("LOCALAI_HTTP_ADDR", http.to_string())
            .env("NODEGATE_HEADER_TIMEOUT", "10s")
            .env("NODEGATE_BODY_IDLE_TIMEOUT", "10s");
        member.http = Some(http);
        member
    }

    /// An agent worker named `name` (heartbeat 1 s).
    pub fn agent(name: &str, secrets: &Secrets) -> Self {
        Self::new(Binary::Agent, name, secrets)
    }

    fn new(binary: Binary, name: &str, secrets: &Secrets) -> Self {
        let tmp = tempfile::tempdir().expect("member temp dir");
        let mut command = Command::new(binary.path());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("LOCALAI_NODE_NAME", name)
            .env("LOCALAI_HEARTBEAT_INTERVAL", HEARTBEAT)
            .current_dir(tmp.path());
        Self {
            binary,
            command,
            tmp,
            http: None,
            secrets: secrets.clone(),
            name: name.to_owned(),
        }
    }

    /// Sets a variable that holds no secret.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    /// Sets a variable that holds a secret, and records the secret.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.add(name, value);
        self.command.env(name, value);
        self
    }

    /// `LOCALAI_REGISTER_TO` = the frontend.
    pub fn register_to(self, frontend: &Frontend) -> Self {
        let url = frontend.url();
        self.env("LOCALAI_REGISTER_TO", url)
    }

    /// `LOCALAI_REGISTRATION_TOKEN` = [`REG_TOKEN`].
    pub fn token(self) -> Self {
        self.secret("LOCALAI_REGISTRATION_TOKEN", REG_TOKEN)
    }

    /// `LOCALAI_NATS_URL` = the server's URL.
    pub fn nats(self, server: &NatsServer) -> Self {
        let url = server.url();
        self.env("LOCALAI_NATS_URL", url)
    }

    /// `LOCALAI_NATS_REQUIRE_AUTH=true`.
    pub fn nats_require_auth(self) -> Self {
        self.env("LOCALAI_NATS_REQUIRE_AUTH", "true")
    }

    /// `LOCALAI_DISTRIBUTED_REQUIRE_AUTH=true`.
    pub fn umbrella(self) -> Self {
        self.env("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true")
    }

    /// The file server address the worker will bind (`None` for an agent).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The models root the worker will serve.
    pub fn models_dir(&self) -> PathBuf {
        self.tmp.path().join("root/models")
    }

    /// Spawns the process.
    pub fn spawn(self) -> Member {
        let process = WorkerProcess::spawn(self.command);
        Member {
            binary: self.binary,
            process: Some(process),
            http: self.http,
            secrets: self.secrets,
            name: self.name,
            started: Instant::now(),
            tmp: self.tmp,
        }
    }
}

/// A running cluster member; killed on drop, after which its output is checked for secrets
/// (unless the test is already failing).
pub struct Member {
    binary: Binary,
    process: Option<WorkerProcess>,
    http: Option<SocketAddr>,
    secrets: Secrets,
    name: String,
    started: Instant,
    tmp: tempfile::TempDir,
}

impl Member {
    fn process(&self) -> &WorkerProcess {
        self.process.as_ref().expect("process present until drop")
    }

    fn process_mut(&mut self) -> &mut WorkerProcess {
        self.process.as_mut().expect("process present until drop")
    }

    /// The registration name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The file server address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("only a worker has a file server")
    }

    /// The member's temp dir (its working directory; the worker's roots live in `root/`).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// stdout then stderr.
    pub fn output(&self) -> String {
        let process = self.process();
        format!("{}{}", process.stdout(), process.stderr())
    }

    /// The `WARN` lines of the output.
    pub fn warn_lines(&self) -> Vec<String> {
        self.output()
            .lines()
            .filter(|l| l.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process_mut().child.try_wait().expect("try_wait")
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        self.process_mut().wait_exit(deadline)
    }

    /// Waits up to `deadline` for an exit and returns its code; panics (with the output) if it
    /// did not exit or was killed by a signal.
    pub fn expect_exit(&mut self, deadline: Duration) -> i32 {
        let status = self.wait_exit(deadline);
        let output = self.output();
        let status = status.unwrap_or_else(|| {
            panic!(
                "{} did not exit within {deadline:?}; its output:\n{output}",
                self.name
            )
        });
        status
            .code()
            .unwrap_or_else(|| panic!("{} killed by a signal ({status}):\n{output}", self.name))
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        self.process().signal(name);
    }

    /// The status of `GET path` on the file server, or `None` when nothing answers.
    pub fn probe(&self, path: &str) -> Option<u16> {
        probe(self.http_addr(), path)
    }

    /// Waits until `GET path` answers `status`; false after `deadline` or when the process
    /// exits first.
    pub fn wait_status(&mut self, path: &str, status: u16, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if self.probe(path) == Some(status) {
                return true;
            }
            if self.exited().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits until the worker's `/readyz` answers 200 (panics with the output otherwise).
    pub fn expect_ready(&mut self, deadline: Duration) {
        if !self.wait_status("/readyz", 200, deadline) {
            let exit = self.exited();
            panic!(
                "{} not ready within {deadline:?} (exit: {exit:?}); its output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// Waits until the output contains `needle`; false after `deadline` or when the process
    /// exited without writing it.
    pub fn wait_log(&mut self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if self.exited().is_some() {
                return self.output().contains(needle);
            }
            if start.elapsed() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`wait_log`](Self::wait_log), panicking with the output when the line never comes.
    pub fn expect_log(&mut self, needle: &str, deadline: Duration) {
        if !self.wait_log(needle, deadline) {
            panic!(
                "{} never logged {needle:?} within {deadline:?}; its output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// The TCP ports this process listens on right now (from `/proc`: its socket inodes matched
    /// against the `LISTEN` entries of `/proc/net/tcp{,6}`), so another process that happens to
    /// bind the same port never makes this look bound.
    pub fn listening_ports(&self) -> Vec<u16> {
        let pid = self.process().child.id();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let inodes: Vec<String> = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|link| {
                let link = link.to_string_lossy().into_owned();
                link.strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .map(str::to_owned)
            })
            .collect();
        let mut ports = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                    let port = fields[1].rsplit(':').next().unwrap_or_default();
                    if let Ok(port) = u16::from_str_radix(port, 16) {
                        ports.push(port);
                    }
                }
            }
        }
        ports
    }

    /// Checks that no configured secret appears in the output.
    pub fn assert_no_secrets(&self) {
        assert!(
            !self.secrets.is_empty(),
            "a cluster test configures secrets"
        );
        self.secrets
            .assert_absent(&format!("{:?} {}", self.binary, self.name), &self.output());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
            let output = format!("{}{}", process.stdout(), process.stderr());
            if !std::thread::panicking() {
                self.secrets
                    .assert_absent(&format!("{:?} {}", self.binary, self.name), &output);
            }
        }
    }
}

/// The status of `GET path` on `addr`, or `None` when nothing answers (connection refused,
/// reset, timeout).
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::Write as _;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    read_response(&mut stream, false).map(|r| r.status)
}

/// Whether anything accepts a TCP connection on `addr` right now.
pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The NATS subject token of a node id, as the worker and the minter compute it.
pub fn subject_token(node_id: &str) -> String {
    jwt::sanitize_subject_token(node_id)
}

/// A test NATS client on a runtime of its own, collecting the server's `-ERR`s.
pub struct Bus {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Bus {
    /// Connects to `url` as the JWT user `jwt` signing with `seed`.
    pub fn connect_jwt(url: &str, jwt: &str, seed: &str) -> Self {
        let pair = Arc::new(nkeys::KeyPair::from_seed(seed).expect("user seed"));
        let options = ConnectOptions::with_jwt(jwt.to_owned(), move |nonce| {
            let pair = pair.clone();
            async move { pair.sign(&nonce).map_err(async_nats::AuthError::new) }
        });
        Self::connect(url, options)
    }

    /// Connects to `url` with `options` (server errors are collected).
    pub fn connect(url: &str, options: ConnectOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("bus runtime");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let options = options
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let sink = Arc::clone(&sink);
                async move {
                    if let Event::ServerError(error) = event {
                        let text = match error {
                            ServerError::Other(text) => text,
                            other => other.to_string(),
                        };
                        sink.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(text);
                    }
                }
            });
        let client = runtime
            .block_on(options.connect(url))
            .unwrap_or_else(|e| panic!("test NATS client cannot connect: {e}"));
        Self {
            runtime,
            client,
            errors,
        }
    }

    /// The raw client, for use inside [`Bus::block_on`].
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Runs `future` on the bus runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A request with a JSON body; the reply parsed as JSON (panics on timeout or no reply).
    pub fn request_json(&self, subject: &str, body: &Value) -> Value {
        let payload = serde_json::to_vec(body).expect("JSON body");
        let reply = self.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                self.client.request(subject.to_owned(), payload.into()),
            )
            .await
        });
        let message = reply
            .unwrap_or_else(|_| panic!("no reply on {subject} within 5 s"))
            .unwrap_or_else(|e| panic!("request on {subject} failed: {e}"));
        serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
            panic!(
                "reply on {subject} is not JSON ({e}): {}",
                String::from_utf8_lossy(&message.payload)
            )
        })
    }

    /// Publishes `payload` on `subject`, then makes a server round trip so the server has
    /// processed it.
    pub fn publish(&self, subject: &str, payload: &[u8]) {
        self.block_on(async {
            self.client
                .publish(subject.to_owned(), payload.to_vec().into())
                .await
                .expect("publish");
            super::nats::round_trip(&self.client).await;
        });
    }

    /// Subscribes to `subject` (the subscriber is kept alive for the bus), then a round trip.
    pub fn subscribe(&self, subject: &str) -> async_nats::Subscriber {
        self.block_on(async {
            let subscriber = self
                .client
                .subscribe(subject.to_owned())
                .await
                .expect("subscribe");
            super::nats::round_trip(&self.client).await;
            subscriber
        })
    }

    /// Waits up to `deadline` for a server error containing `needle`.
    pub fn wait_error(&self, needle: &str, deadline: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            let found = self
                .errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|e| e.contains(needle))
                .cloned();
            if found.is_some() || start.elapsed() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every server error so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A loopback TCP forwarder to `upstream` that counts the connections accepted; stops on drop.
pub struct TcpCounter {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpCounter {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the counter");
        let addr = listener.local_addr().expect("counter address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                pump(&client, &server);
                pump(&server, &client);
            }
        });
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// `nats://127.0.0.1:PORT` of the forwarder.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn pump(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for TcpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
