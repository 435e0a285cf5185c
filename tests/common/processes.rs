//! Real processes for the cluster end-to-end tests: the example binaries (`frontend`,
//! `nats-setup`, `worker`) and `nats-server`, each spawned with a clean environment, its
//! stdout and stderr captured to files, and killed and reaped on drop (so a failing assertion
//! never leaves a process behind). Also a small client that speaks to the frontend's node
//! routes exactly as LocalAI's supervisor worker does (spec §4.3: token in the header **and**
//! in the body), the admin routes, and the secret scan every test ends with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{RawResponse, request_to, wait_listening};

/// How long a process may take to start serving, or to exit after a refusal or a signal.
pub const STARTUP: Duration = Duration::from_secs(20);

/// Path of an example binary built next to the test binaries (`cargo build --examples`, or
/// `cargo test`, which builds the examples too).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = debug_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example `{name}` not built at {} (run `cargo build --examples`)",
        path.display()
    );
    path
}

/// A command for an example binary with an empty environment except `PATH`.
pub fn example_command(name: &str) -> Command {
    let mut command = Command::new(example_binary(name));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// A spawned process, its output captured to files; SIGKILLed and reaped on drop.
pub struct Proc {
    /// What the process is, for messages (`frontend`, `worker`, `nats-server`).
    pub name: String,
    child: Child,
    logs: tempfile::TempDir,
}

impl Proc {
    /// Spawns `command` with stdin closed and stdout/stderr captured.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let logs = tempfile::tempdir().expect("log dir");
        let out = std::fs::File::create(logs.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(logs.path().join("stderr")).expect("stderr file");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            logs,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    /// stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM to this process only (by its pid).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {} failed", self.name);
    }

    /// SIGTERM, then the exit status (panics with the output when it keeps running).
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        match self.wait_exit(STARTUP) {
            Some(status) => status,
            None => panic!(
                "{} kept running after SIGTERM:\n{}",
                self.name,
                self.output()
            ),
        }
    }

    /// Waits up to `deadline` until the output contains `needle`; panics with the output when
    /// the process exits first.
    pub fn wait_for_output(&mut self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            if start.elapsed() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// -- nats-setup and nats-server ------------------------------------------------------------

/// The output of one `nats-setup DIR PORT` run.
pub struct SetupRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `nats-setup DIR PORT` to its end (bounded).
pub fn run_nats_setup(dir: &Path, port: u16) -> SetupRun {
    let mut command = example_command("nats-setup");
    command.arg(dir).arg(port.to_string());
    let mut proc = Proc::spawn("nats-setup", command);
    let status = proc
        .wait_exit(STARTUP)
        .unwrap_or_else(|| panic!("nats-setup did not finish:\n{}", proc.output()));
    SetupRun {
        status,
        stdout: proc.stdout(),
        stderr: proc.stderr(),
    }
}

/// The files `nats-setup` wrote, read back.
pub struct NatsFiles {
    pub dir: PathBuf,
    pub port: u16,
    /// `LOCALAI_NATS_ACCOUNT_SEED`.
    pub account_seed: String,
    pub operator_seed: String,
    /// `LOCALAI_NATS_SERVICE_JWT`.
    pub service_jwt: String,
    /// `LOCALAI_NATS_SERVICE_SEED`.
    pub service_seed: String,
}

impl NatsFiles {
    /// Runs `nats-setup` into `<parent>/nats` for a free port and reads the files.
    pub fn create(parent: &Path) -> Self {
        let dir = parent.join("nats");
        let port = super::free_port();
        let run = run_nats_setup(&dir, port);
        assert!(
            run.status.success(),
            "nats-setup failed ({}):\n{}{}",
            run.status,
            run.stdout,
            run.stderr
        );
        Self::read(&dir, port)
    }

    /// Reads the files of a set-up in `dir`.
    pub fn read(dir: &Path, port: u16) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .trim()
                .to_owned()
        };
        Self {
            dir: dir.to_path_buf(),
            port,
            account_seed: read("account.nk"),
            operator_seed: read("operator.nk"),
            service_jwt: read("frontend-service.jwt"),
            service_seed: read("frontend-service.nk"),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Every secret of the set-up.
    pub fn secrets(&self) -> Vec<String> {
        vec![
            self.account_seed.clone(),
            self.operator_seed.clone(),
            self.service_jwt.clone(),
            self.service_seed.clone(),
        ]
    }

    /// `nats-server -c DIR/nats-server.conf`, ready to accept clients. When the port was taken
    /// in the meantime (`free_port` only probes it, and loopback clients use ephemeral ports),
    /// `nats-setup` runs again for a fresh port — keeping the keys — and the server is
    /// started again.
    pub fn start_server(&mut self) -> Proc {
        for _ in 0..5 {
            let mut command = Command::new(super::nats::NATS_SERVER);
            command.arg("-c").arg(self.dir.join("nats-server.conf"));
            let mut server = Proc::spawn("nats-server", command);
            let start = Instant::now();
            loop {
                let output = server.output();
                if output.contains("Server is ready") {
                    return server;
                }
                if let Some(status) = server.exited() {
                    assert!(
                        output.contains("address already in use"),
                        "nats-server exited ({status}):\n{output}"
                    );
                    break;
                }
                assert!(
                    start.elapsed() < STARTUP,
                    "nats-server not ready:\n{output}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let port = super::free_port();
            let run = run_nats_setup(&self.dir, port);
            assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
            *self = Self::read(&self.dir, port);
        }
        panic!("nats-server found no free port in 5 attempts");
    }
}

// -- The frontend ----------------------------------------------------------------------------

/// A frontend command on `127.0.0.1:<port>` with its registry at `registry` (a path, or
/// `:memory:`); tests add LocalAI's variables.
pub fn frontend_command(port: u16, registry: &str) -> Command {
    let mut command = example_command("frontend");
    command
        .env("LOCALAI_ADDRESS", format!("127.0.0.1:{port}"))
        .env("NODEGATE_REGISTRY", registry);
    command
}

/// Spawns the frontend and waits until `/readyz` answers 200 (with NATS: connected).
pub fn start_frontend(command: Command, port: u16) -> Proc {
    let mut frontend = Proc::spawn("frontend", command);
    let addr = loopback(port);
    let start = Instant::now();
    loop {
        if let Some(status) = frontend.exited() {
            panic!("the frontend exited ({status}):\n{}", frontend.output());
        }
        if wait_listening(addr, Duration::from_millis(100))
            && request_to(addr, "GET", "/readyz", None, &[], b"").status == 200
        {
            return frontend;
        }
        if start.elapsed() >= STARTUP {
            panic!(
                "the frontend is not ready on {addr}:\n{}",
                frontend.output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The body LocalAI's supervisor worker sends (spec §4.3 `registrationBody`).
pub fn worker_body(name: &str, token: Option<&str>) -> Value {
    let mut body = json!({
        "name": name,
        "address": "127.0.0.1:50051",
        "http_address": "127.0.0.1:50050",
        "total_vram": 25_769_803_776_u64,
        "available_vram": 25_769_803_776_u64,
        "gpu_vendor": "nvidia",
        "gpu_compute_capability": "8.9",
        "capability": "cuda12",
        "max_replicas_per_model": 1,
        "total_disk": 1_000_000_000_u64,
        "available_disk": 500_000_000_u64,
        "labels": {"zone": "a", "node.replica-slots": "1"},
    });
    if let Some(token) = token {
        body["token"] = json!(token);
    }
    body
}

/// The body LocalAI's agent worker sends.
pub fn agent_body(name: &str, token: Option<&str>) -> Value {
    let mut body = json!({"name": name, "node_type": "agent"});
    if let Some(token) = token {
        body["token"] = json!(token);
    }
    body
}

/// A client of the frontend's routes.
#[derive(Clone, Copy)]
pub struct FrontendClient<'a> {
    pub addr: SocketAddr,
    /// The registration token the "worker" holds.
    pub token: Option<&'a str>,
    /// The administrator's token.
    pub admin: Option<&'a str>,
}

impl FrontendClient<'_> {
    /// `POST /api/node/register` as LocalAI's worker sends it: JSON, bearer header = `header`.
    pub fn register_raw(&self, header: Option<&str>, body: &Value) -> RawResponse {
        request_to(
            self.addr,
            "POST",
            "/api/node/register",
            header,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Registers a backend worker called `name` with the client's token (header and body);
    /// asserts 201 and returns the JSON answer.
    pub fn register(&self, name: &str) -> Value {
        self.register_body(&worker_body(name, self.token))
    }

    /// Registers an agent worker.
    pub fn register_agent(&self, name: &str) -> Value {
        self.register_body(&agent_body(name, self.token))
    }

    fn register_body(&self, body: &Value) -> Value {
        let response = self.register_raw(self.token, body);
        assert_eq!(response.status, 201, "register: {}", response.text());
        response.json()
    }

    /// `POST /api/node/<id>/<verb>` with the client's token (heartbeat, drain, resume,
    /// deregister), body `{}` as the agent worker sends.
    pub fn node(&self, id: &str, verb: &str) -> RawResponse {
        request_to(
            self.addr,
            "POST",
            &format!("/api/node/{id}/{verb}"),
            self.token,
            &[("Content-Type", "application/json")],
            b"{}",
        )
    }

    /// `POST /api/nodes/<id>/approve` with `token` as the bearer.
    pub fn approve_with(&self, id: &str, token: Option<&str>) -> RawResponse {
        request_to(
            self.addr,
            "POST",
            &format!("/api/nodes/{id}/approve"),
            token,
            &[],
            b"",
        )
    }

    /// Approves with the admin token; asserts 200 `node approved`.
    pub fn approve(&self, id: &str) -> Value {
        let response = self.approve_with(id, self.admin);
        assert_eq!(response.status, 200, "approve: {}", response.text());
        let value = response.json();
        assert_eq!(value["message"], "node approved", "{value}");
        value
    }

    /// `POST /api/nodes/<id>/stage` with the admin token: the frontend pushes `file` to `key`
    /// on the node's worker.
    pub fn stage(&self, id: &str, file: &Path, key: &str) -> RawResponse {
        let body = serde_json::json!({ "file": file, "key": key }).to_string();
        request_to(
            self.addr,
            "POST",
            &format!("/api/nodes/{id}/stage"),
            self.admin,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// `GET /api/nodes` with the admin token.
    pub fn list(&self) -> Vec<Value> {
        let response = request_to(self.addr, "GET", "/api/nodes", self.admin, &[], b"");
        assert_eq!(response.status, 200, "list: {}", response.text());
        response.json().as_array().cloned().expect("an array")
    }

    /// The status of node `id` as `GET /api/nodes` shows it.
    pub fn status_of(&self, id: &str) -> Option<String> {
        self.list()
            .into_iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["status"].as_str().map(str::to_owned))
    }

    /// Polls `GET /api/nodes` until node `id` has `status`, for at most `deadline`.
    pub fn wait_status(&self, id: &str, status: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.status_of(id).as_deref() == Some(status) {
                return true;
            }
            if start.elapsed() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// -- No secret in any output (issue 10 acceptance) -------------------------------------------

/// Asserts that no secret appears in any captured output: none of `secrets` literally, and
/// nothing shaped like an nkey seed (`S` + `U`/`A`/`O` + 56 base32 characters) or a JWT
/// (`eyJ…`), so that credentials a test never saw (a worker's minted JWT) are caught too.
/// `outputs` are (name, text) pairs.
pub fn assert_no_secret_in(outputs: &[(String, String)], secrets: &[String]) {
    for (name, text) in outputs {
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            assert!(
                !text.contains(secret.as_str()),
                "a secret ({}…) appears in the output of {name}:\n{text}",
                &secret[..4]
            );
        }
        if let Some(found) = secret_shaped(text) {
            panic!("something shaped like a {found} appears in the output of {name}:\n{text}");
        }
    }
}

/// The outputs of `procs`, for [`assert_no_secret_in`].
pub fn outputs_of(procs: &[&Proc]) -> Vec<(String, String)> {
    procs
        .iter()
        .map(|p| (format!("{} (pid {})", p.name, p.pid()), p.output()))
        .collect()
}

/// `Some(kind)` when `text` holds something shaped like an nkey seed or a JWT.
pub fn secret_shaped(text: &str) -> Option<&'static str> {
    let jwt_like = |w: &str| {
        w.starts_with("eyJ")
            && w.split('.').count() == 3
            && w.split('.').all(|part| part.len() >= 2)
    };
    for word in text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '.')
    {
        if jwt_like(word) {
            return Some("JWT");
        }
        let bytes = word.trim_matches('.').as_bytes();
        if bytes.len() == 58
            && bytes[0] == b'S'
            && matches!(bytes[1], b'U' | b'A' | b'O')
            && bytes
                .iter()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(b))
        {
            return Some("nkey seed");
        }
    }
    None
}
