//! # embed: the nodegate core on plain `std` threads
//!
//! A complete, if small, LocalAI worker file server — `HEAD`, `GET` and `PUT` of
//! `/v1/files/{key}`, full and resumable uploads — written against `nodegate-core` and
//! `nodegate-store` with blocking `std::net` sockets and one thread per connection. No async
//! runtime is anywhere in its dependency tree (`.ci/run` checks it with `cargo tree`). It is the
//! pattern to follow to link the core into a runtime of your own: the core makes every decision
//! (settings, posture, classification and authentication of a request, key validation, the
//! upload plan, every reply), the store performs every file effect beneath its root, and this
//! program only moves bytes between the two and a socket.
//!
//! ```text
//! LOCALAI_REGISTRATION_TOKEN=change-me LOCALAI_HTTP_ADDR=127.0.0.1:50050 \
//! LOCALAI_MODELS_PATH=./models cargo run -p nodegate-embed
//!
//! curl -T model.gguf -H "Authorization: Bearer change-me" \
//!      http://127.0.0.1:50050/v1/files/models/m/model.gguf
//! ```
//!
//! It reads the worker's settings (`nodegate worker --help`) from the environment; the ones a
//! file server honours apply: the token (and its rotation), the models path and its siblings,
//! the bind address, the upload limit, the header and body-idle timeouts, the minimum body rate
//! and the connection cap. It is deliberately smaller than `nodegate worker`: no registration
//! or NATS (with `LOCALAI_REGISTER_TO` set it stops with exit code 2), no listing, temp files,
//! logs or metrics routes (501), no connection shedding (at the cap new clients wait in the
//! listen backlog), no signal handling.
//!
//! Reading order: [`main`] drives the start-up machine; [`Server`] accepts connections;
//! [`serve_connection`] is one HTTP/1.1 connection and hands each command the core classified
//! to [`Files`] (`embed/files.rs`: the file effects of `HEAD`, `GET` and `PUT`), over the
//! framing of `embed/http1.rs` (request heads, bodies, answers). The package's manifest is
//! `examples/embed/Cargo.toml`, its black-box test `examples/embed/tests/embed.rs`.

#[path = "embed/files.rs"]
mod files;
#[path = "embed/http1.rs"]
mod http1;

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header;
use http::request::Parts;
use http::{Method, StatusCode, Version};
use nodegate_core::config::{self, Config, FileContents, Host, Role, Vars, WorkerConfig};
use nodegate_core::request::{self, Command, ServerPolicy};
use nodegate_core::response::Reply;
use nodegate_core::startup::{Effect, Level, Startup};
use nodegate_core::upload::MinRate;

use files::Files;
use http1::{Answer, Body, Conn, framing, read_head, write_answer};

// ---------------------------------------------------------------------------------------------
// 1. Start-up: the core's machine decides, the program carries out its effects
// ---------------------------------------------------------------------------------------------

/// Parses the settings, then runs the start-up machine's canonical loop: drain
/// [`Startup::poll_output`] until it says `Wait` or `SleepUntil`, carrying out each effect and
/// feeding its result back. The machine evaluates the posture first, so a refused configuration
/// (`LOCALAI_REGISTRATION_REQUIRE_AUTH` without a token) exits 1 before anything is bound.
fn main() -> ExitCode {
    let vars = Vars::from_pairs(
        config::known_variables(Role::Worker)
            .iter()
            .filter_map(|setting| std::env::var(setting.name).ok().map(|v| (setting.name, v))),
    );
    let mut files = FileContents::new();
    for (variable, path) in vars.files_to_read() {
        files.insert(variable, std::fs::read(path).map_err(|e| e.to_string()));
    }
    let host = Host {
        hostname: None,
        pid: std::process::id(),
    };
    let config = match Config::parse(Role::Worker, &vars, &files, &host) {
        Ok(config) => config,
        Err(error) => return stop(2, &error.to_string()),
    };
    let Some(worker) = config.worker.clone() else {
        return stop(2, "no worker settings");
    };
    let policy = ServerPolicy {
        auth: config.auth_policy(),
        max_upload: worker.max_upload_size,
    };
    let ready = Arc::new(AtomicBool::new(false));
    let mut server = None;
    let mut machine = Startup::new(config, host, wall_clock());
    loop {
        match machine.poll_output() {
            Effect::Log { level, message } => log(level, &message),
            Effect::StartFileServer => {
                let started = Server::start(&worker, policy.clone(), ready.clone());
                let result = started.as_ref().map(|_| ()).map_err(Clone::clone);
                server = started.ok();
                machine.handle_file_server(wall_clock(), result);
            }
            Effect::SetReady(now_ready) => ready.store(now_ready, Ordering::Relaxed),
            Effect::Exit { code, reason } => return stop(code, &reason),
            Effect::SleepUntil(at) => {
                thread::sleep(at.saturating_sub(wall_clock()));
                machine.handle_timeout(wall_clock());
            }
            // Nothing more to do until an input arrives; this program has no further inputs
            // (no frontend, no NATS, no signals), so it serves until the server thread ends.
            Effect::Wait => {
                if let Some(server) = server.take() {
                    let _ = server.join();
                }
                return stop(1, "the file server stopped");
            }
            _ => {
                return stop(
                    2,
                    "this embedding serves files only: registration and NATS need `nodegate \
                     worker` (unset LOCALAI_REGISTER_TO)",
                );
            }
        }
    }
}

/// The adapter's clock, as the core wants it: the time since the Unix epoch.
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    };
    eprintln!("{level} {message}");
}

fn stop(code: u8, reason: &str) -> ExitCode {
    if code != 0 {
        eprintln!("embed: {reason}");
    }
    ExitCode::from(code)
}

// ---------------------------------------------------------------------------------------------
// 2. The server: bind, then one thread per connection, at most `max_connections` at once
// ---------------------------------------------------------------------------------------------

/// What every connection thread shares.
struct Server {
    policy: ServerPolicy,
    files: Files,
    ready: Arc<AtomicBool>,
    header_timeout: Duration,
    body_idle: Duration,
    min_rate: MinRate,
}

impl Server {
    /// Prepares the roots, binds the address and starts the accept thread.
    fn start(
        worker: &WorkerConfig,
        policy: ServerPolicy,
        ready: Arc<AtomicBool>,
    ) -> Result<JoinHandle<()>, String> {
        let files = Files::open(worker)?;
        let bind = worker.http_bind();
        let listener = TcpListener::bind(&bind).map_err(|e| format!("binding {bind}: {e}"))?;
        log(Level::Info, &format!("file transfer server on {bind}"));
        let server = Arc::new(Self {
            policy,
            files,
            ready,
            header_timeout: worker.header_timeout,
            body_idle: worker.body_idle_timeout,
            min_rate: MinRate {
                bytes_per_second: worker.min_body_rate,
                window: worker.body_rate_window,
            },
        });
        let slots = Arc::new(Slots::new(worker.max_connections));
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(&server, &listener, &slots))
            .map_err(|e| format!("starting the accept thread: {e}"))
    }
}

fn accept_loop(server: &Arc<Server>, listener: &TcpListener, slots: &Arc<Slots>) {
    loop {
        // Take a slot before accepting: at the cap, new clients wait in the listen backlog.
        let slot = Slots::take(slots);
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was accepted: pause.
                log(Level::Warn, &format!("accept failed: {error}"));
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let server = server.clone();
        let spawned = thread::Builder::new().spawn(move || {
            let _slot = slot;
            serve_connection(&server, stream);
        });
        if let Err(error) = spawned {
            log(
                Level::Warn,
                &format!("cannot start a connection thread: {error}"),
            );
        }
    }
}

/// A counting semaphore over the open connections.
struct Slots {
    open: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// One open connection; frees its slot when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    fn new(max: usize) -> Self {
        Self {
            open: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn take(slots: &Arc<Self>) -> Slot {
        let mut open = lock(&slots.open);
        while *open >= slots.max {
            open = slots
                .freed
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *open += 1;
        Slot(slots.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *lock(&self.0.open) -= 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// 3. One connection: read a head, let the core classify it, carry out the command, answer
// ---------------------------------------------------------------------------------------------

/// Serves requests on one connection until the client closes it or it cannot be reused.
fn serve_connection(server: &Server, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let remote = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut conn = Conn::new(stream);
    loop {
        let head = match read_head(&mut conn, server.header_timeout) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(Some(reply)) => {
                let _ = write_answer(&mut conn.stream, Answer::Reply(reply), false, true);
                return;
            }
            Err(None) => return,
        };
        let framing = match framing(&head) {
            Ok(framing) => framing,
            Err(reply) => {
                let _ = write_answer(&mut conn.stream, Answer::Reply(reply), false, true);
                return;
            }
        };
        let _ = conn.stream.set_read_timeout(Some(server.body_idle));
        let _ = conn.stream.set_write_timeout(Some(server.body_idle));
        let mut body = Body::new(&mut conn, framing, &head);
        // Every decision about the request — route, token, method, key, upload headers — is
        // the core's; a refusal carries the exact reply to send.
        let answer = match request::classify(&head, &server.policy) {
            Ok(command) => server.run(command, &mut body),
            Err(refusal) => Answer::Reply(refusal.reply),
        };
        let body_done = body.is_done();
        // An answer sent while the body is still unread ends the connection (the rest of the
        // body cannot be told apart from a next request without reading it).
        let keep_alive = body_done && wants_keep_alive(&head);
        let written = write_answer(
            &mut conn.stream,
            answer,
            head.method == Method::HEAD,
            !keep_alive,
        );
        match &written {
            Ok(status) => eprintln!(
                "INFO {remote} {} {} {}",
                head.method,
                head.uri.path().escape_debug(),
                status.as_u16()
            ),
            Err(error) => eprintln!("INFO {remote} {} answer cut off: {error}", head.method),
        }
        if written.is_err() || !keep_alive {
            if !body_done {
                conn.linger();
            }
            return;
        }
    }
}

/// Whether the client lets the connection be reused (HTTP/1.1 without `Connection: close`).
fn wants_keep_alive(head: &Parts) -> bool {
    let close = head.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    });
    head.version == Version::HTTP_11 && !close
}

impl Server {
    /// Carries out one command the core classified.
    fn run(&self, command: Command, body: &mut Body<'_>) -> Answer {
        match command {
            Command::Head { target } => Answer::Reply(self.files.head(&target)),
            Command::Get { target, range } => self.files.get(&target, range.as_ref()),
            Command::Put { target, upload } => {
                let limits = (self.body_idle, self.min_rate);
                Answer::Reply(self.files.put(&target, &upload, body, limits))
            }
            Command::Healthz => Answer::Reply(Reply::text(StatusCode::OK, "ok")),
            Command::Readyz if self.ready.load(Ordering::Relaxed) => {
                Answer::Reply(Reply::text(StatusCode::OK, "ok"))
            }
            Command::Readyz => Answer::Reply(Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: starting",
            )),
            _ => Answer::Reply(Reply::error(
                StatusCode::NOT_IMPLEMENTED,
                "not served by this embedding (examples/embed.rs); `nodegate worker` serves it",
            )),
        }
    }
}
