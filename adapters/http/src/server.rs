//! The file-transfer server: accept loop, limits, and dispatch of the core's commands.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use nodegate_core::connections::{ConnId, ConnectionLimits, UpgradeDecision};
use nodegate_core::keys::Roots;
use nodegate_core::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, RouteLabel};
use nodegate_core::refusal_log;
use nodegate_core::request::{self as proto, Command, MetricsAccess, RefusalReason, ServerPolicy};
use nodegate_core::response::Reply;
use nodegate_core::upload::MinRate;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::access::{AccessBody, Record, Subject};
use crate::body::ResponseBody;
use crate::compat::TokioCompat;
use crate::files::{BodyLimits, Files};
use crate::linger::{Linger, Lingering};
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::refusals::Refusals;
use crate::runtime::{self, Runtime};
use crate::sendfile::{Link, SendfileIo};
use crate::shedding::{ClosedGuard, Connections, TrackedBody};
use crate::tasks::Tasks;

/// First pause after a failed accept; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A readiness probe: `Ok` when the worker can take work, else the reason.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Limits that protect the server from slow or greedy clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed to receive a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Longest pause allowed between two pieces of a request body. Not a total timeout:
    /// multi-gigabyte uploads are legitimate.
    pub body_idle_timeout: Duration,
    /// Most connections served at once (upgraded log streams not counted). At the cap, a new
    /// connection sheds the oldest one still sending its first head or idle between requests;
    /// only when every connection is busy do further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a new connection has to send its first complete request head (shorter than
    /// `header_read_timeout`, which applies to every head).
    pub first_head_timeout: Duration,
    /// Connections one remote address may hold while they send their first head; past it,
    /// its own oldest is closed.
    pub max_head_per_remote: usize,
    /// Most log WebSockets (`/v1/backend-logs/{model}/ws`) open at once, outside
    /// `max_connections`; further upgrades are answered 503.
    pub max_log_streams: usize,
    /// Time given to in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// After an answer sent before the request body was read (401, 413, 400, 409...), how long
    /// the connection keeps reading and discarding the body after shutting down its write side,
    /// so the client hears the answer instead of a reset (Go's server waits 500 ms too).
    pub early_answer_linger: Duration,
    /// Most body bytes read and discarded during that time.
    pub early_answer_drain: u64,
    /// Slowest average an upload body may keep up, in bytes per second over
    /// `body_rate_window` (zero disables): a trickle never trips `body_idle_timeout`.
    pub min_body_rate: u64,
    /// The window `min_body_rate` is averaged over.
    pub body_rate_window: Duration,
    /// Refused requests are logged in full once per reason and remote address, then counted:
    /// one summary line per key and interval (a 401 flood is not a log flood). Zero logs
    /// every refusal.
    pub refusal_log_interval: Duration,
    /// Whether `GET /metrics` needs the registration token (the default) or is public.
    pub metrics_access: MetricsAccess,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            first_head_timeout: Duration::from_secs(5),
            max_head_per_remote: 128,
            max_log_streams: 128,
            shutdown_grace: Duration::from_secs(5),
            early_answer_linger: Duration::from_millis(500),
            early_answer_drain: 16 * 1024 * 1024,
            min_body_rate: 1024,
            body_rate_window: Duration::from_secs(60),
            refusal_log_interval: refusal_log::DEFAULT_INTERVAL,
            metrics_access: MetricsAccess::Protected,
        }
    }
}

/// Everything the server needs to run.
pub struct ServerConfig {
    /// Who may call the authenticated routes, and the upload limit.
    pub policy: ServerPolicy,
    /// The three roots (models, staging, data), absolute paths.
    pub roots: Roots,
    /// Timeouts and the connection cap.
    pub limits: Limits,
    /// Backend log store served under `/v1/backend-logs`.
    pub logs: LogStore,
    /// Readiness probe for `/readyz`; `None` reports ready (LocalAI's fail-open default).
    pub readiness: Option<Readiness>,
}

/// Errors that stop the server from starting.
#[derive(Debug)]
pub enum StartError {
    /// A root directory could not be created or opened.
    Root {
        /// Which root (`models`, `staging`, `data`).
        name: &'static str,
        /// The absolute path.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The roots are refused as a set (one is `/`, or one lies inside another).
    Roots(nodegate_core::roots::RootsRefusal),
    /// A root exists but does not take writes: serving it would report ready and then fail
    /// every upload.
    NotWritable {
        /// Which root (`models`, `staging`, `data`).
        name: &'static str,
        /// The absolute path.
        path: std::path::PathBuf,
        /// Why the write probe failed.
        error: nodegate_store::StoreError,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root { name, path, error } => {
                write!(
                    f,
                    "cannot prepare the {name} directory {}: {error}",
                    path.display()
                )
            }
            Self::Roots(refusal) => write!(f, "refusing the storage directories: {refusal}"),
            Self::NotWritable { name, path, error } => write!(
                f,
                "the {name} directory {} does not take writes ({error}); make it writable, or \
                 set {} to a writable directory",
                path.display(),
                nodegate_core::config::MODELS_PATH
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// A file-transfer server on runtime `R`, over a bound listener.
pub struct Server<R: Runtime> {
    shared: Arc<Shared<R>>,
    listener: R::Listener,
}

pub(crate) struct Shared<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) policy: ServerPolicy,
    pub(crate) files: Files<R>,
    pub(crate) logs: LogStore,
    pub(crate) readiness: Option<Readiness>,
    pub(crate) limits: Limits,
    pub(crate) refusals: Refusals,
    pub(crate) metrics: Arc<Metrics>,
}

impl<R: Runtime + Default> Server<R> {
    /// [`Server::with_runtime`] on the runtime's default instance (the tokio runtime the
    /// caller runs in; smol's global executor).
    ///
    /// # Errors
    /// [`StartError`] when a root cannot be prepared.
    pub fn new(config: ServerConfig, listener: R::Listener) -> Result<Self, StartError> {
        Self::with_runtime(R::default(), config, listener)
    }
}

impl<R: Runtime> Server<R> {
    /// Prepares the roots (creating them with mode 0750 and removing orphaned temp files left
    /// by an interrupted upload) and wraps an already bound listener; the server's tasks and
    /// blocking work run on `runtime`.
    ///
    /// # Errors
    /// [`StartError`] when a root cannot be prepared.
    pub fn with_runtime(
        runtime: R,
        config: ServerConfig,
        listener: R::Listener,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let files = Files::open(runtime.clone(), &config.roots, metrics.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                runtime,
                policy: config.policy,
                files,
                logs: config.logs,
                readiness: config.readiness,
                refusals: Refusals::new(config.limits.refusal_log_interval),
                limits: config.limits,
                metrics,
            }),
            listener,
        })
    }

    /// The address the server listens on.
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        R::local_addr(&self.listener)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// for the grace period and returns.
    pub async fn serve<F>(self, shutdown: F)
    where
        F: std::future::Future<Output = ()>,
    {
        let Self { shared, listener } = self;
        let runtime = shared.runtime.clone();
        let connections_table = Connections::new(ConnectionLimits {
            max_connections: shared.limits.max_connections,
            max_head_per_remote: shared.limits.max_head_per_remote,
            max_upgraded: shared.limits.max_log_streams,
            first_head_timeout: shared.limits.first_head_timeout,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = Tasks::new();
        // Aborted when the server returns (the set is dropped).
        let summaries = Tasks::new();
        summaries.spawn(&runtime, {
            let shared = shared.clone();
            async move { shared.refusals.run(&shared.runtime).await }
        });
        let mut backoff = ACCEPT_BACKOFF_MIN;
        tokio::pin!(shutdown);
        loop {
            // Accept never stalls while a slot can be reclaimed; it waits only while every
            // connection is busy (further clients then wait in the listen backlog).
            tokio::select! {
                () = &mut shutdown => break,
                () = connections_table.wait_admit() => {}
            }
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                accepted = runtime.accept(&listener) => match accepted {
                    Ok(accepted) => {
                        backoff = ACCEPT_BACKOFF_MIN;
                        accepted
                    }
                    Err(error) => {
                        let exhausted = matches!(
                            error.raw_os_error(),
                            Some(libc::EMFILE | libc::ENFILE)
                        );
                        // Out of descriptors: close an idle or head-phase connection to free
                        // one and retry soon; with nothing to reclaim, back off.
                        let freed = exhausted && connections_table.descriptors_exhausted();
                        let reason = if exhausted { "accept_no_descriptors" } else { "accept_failed" };
                        shared.metrics.refusal(reason);
                        if shared.refusals.record(reason, std::net::Ipv4Addr::UNSPECIFIED.into()) {
                            warn!(%error, freed, "accept failed; repeats are counted, one line per interval");
                        }
                        let pause = if freed { ACCEPT_BACKOFF_MIN } else { backoff };
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        runtime.sleep(pause).await;
                        continue;
                    }
                },
            };
            let (id, shed) = connections_table.accept(remote.ip());
            let open = shared.metrics.connection_opened();
            let shared = shared.clone();
            let table = connections_table.clone();
            let header_timeout = shared.limits.header_read_timeout;
            let linger = Linger {
                time: shared.limits.early_answer_linger,
                bytes: shared.limits.early_answer_drain,
            };
            // Shared by this connection's downloads and its stream (`crate::sendfile`).
            let link = R::SENDFILE.then(|| Link::new(shared.metrics.clone()));
            let mut stop_rx = stop_rx.clone();
            let task_runtime = runtime.clone();
            connections.spawn(&runtime, async move {
                let runtime = task_runtime;
                let _open = open;
                let closed = ClosedGuard {
                    connections: table.clone(),
                    id,
                };
                let first_head = runtime.sleep(table.first_head_timeout());
                let service_link = link.clone();
                let service = service_fn(move |request| {
                    let shared = shared.clone();
                    let table = table.clone();
                    let link = service_link.clone();
                    async move {
                        table.request(id);
                        let conn = Conn {
                            remote,
                            id,
                            table: table.clone(),
                            link,
                        };
                        let (response, record) = handle(&shared, request, &conn).await;
                        let status = response.status().as_u16();
                        let metrics = shared.metrics.clone();
                        Ok::<_, Infallible>(response.map(|body| {
                            AccessBody::new(
                                TrackedBody::new(body, table, id),
                                status,
                                record,
                                metrics,
                            )
                        }))
                    }
                });
                let mut builder = http1::Builder::new();
                builder
                    .timer(runtime.timer())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true)
                    // max_buf_size alone is soft (one read may overshoot it), so a head of
                    // about twice the size would be accepted; max_header_size is exact.
                    .max_header_size(64 * 1024)
                    .max_buf_size(64 * 1024)
                    // Body buffers are written in place, by address: what lets a download's
                    // stand-ins become `sendfile` calls (checked per connection all the same).
                    .writev(true);
                let stream = Lingering::new(stream, runtime.clone(), linger);
                let connection = builder
                    .serve_connection(SendfileIo::new(stream, link), service)
                    .with_upgrades();
                tokio::pin!(connection);
                tokio::pin!(first_head);
                tokio::pin!(shed);
                let mut first_head_checked = false;
                let mut shed_dropped = false;
                loop {
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(error) = result {
                                debug!(%remote, %error, "connection ended with an error");
                            }
                            break;
                        }
                        // Shed to make room: close now.
                        fired = shed.as_mut(), if !shed_dropped => {
                            if fired.is_ok() {
                                break;
                            }
                            shed_dropped = true;
                        }
                        () = first_head.as_mut(), if !first_head_checked => {
                            first_head_checked = true;
                            if closed.connections.first_head_deadline(id) {
                                debug!(%remote, "no complete request head in time; closed");
                                break;
                            }
                        }
                        () = async { let _ = stop_rx.wait_for(|stop| *stop).await; } => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                            break;
                        }
                    }
                }
            });
            // Let the new connection read its head before the next accept can shed it.
            runtime::yield_now().await;
        }
        let _ = stop_tx.send(true);
        connections
            .shutdown(&runtime, shared.limits.shutdown_grace)
            .await;
        drop(summaries);
        info!("file transfer server stopped");
    }
}

/// The connection a request arrived on.
struct Conn {
    remote: SocketAddr,
    id: ConnId,
    table: Arc<Connections>,
    /// The connection's `sendfile` link, where the runtime has one.
    link: Option<Link>,
}

async fn handle<R: Runtime>(
    shared: &Shared<R>,
    request: Request<Incoming>,
    conn: &Conn,
) -> (Response<ResponseBody>, Record) {
    use hyper::body::Body as _;
    let mut record = Record {
        started: std::time::Instant::now(),
        method: request.method().clone(),
        route: RouteLabel::of_path(request.uri().path()),
        remote: conn.remote,
        subject: None,
        received: 0,
    };
    // An error answered while the body may be unread ends the connection: say so, and the
    // lingering close makes sure the client hears it ("Early answers are heard").
    let body_pending = !request.body().is_end_stream();
    let mut response = dispatch(shared, request, conn, &mut record).await;
    if body_pending && (response.status().is_client_error() || response.status().is_server_error())
    {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    (response, record)
}

/// What the access log names a command by (see [`crate::access`]).
fn subject(command: &Command, path: &str) -> Subject {
    let key = |target: &nodegate_core::keys::Target| Subject::Key(target.key().as_str().to_owned());
    match command {
        Command::Head { target } | Command::Get { target, .. } | Command::Put { target, .. } => {
            key(target)
        }
        Command::List {
            target: nodegate_core::keys::ListTarget::Dir(target),
        } => key(target),
        Command::List {
            target: nodegate_core::keys::ListTarget::Root(root),
        } => Subject::Key(format!("{}/", root.name())),
        Command::Healthz => Subject::Path(proto::HEALTHZ.into()),
        Command::Readyz => Subject::Path(proto::READYZ.into()),
        Command::Metrics => Subject::Path(proto::METRICS.into()),
        Command::LogsIndex => Subject::Path(proto::LOGS_INDEX.into()),
        Command::AllocTemp | Command::LogsModel { .. } | Command::LogsWatch { .. } => {
            Subject::Path(path.to_owned().into())
        }
    }
}

async fn dispatch<R: Runtime>(
    shared: &Shared<R>,
    request: Request<Incoming>,
    conn: &Conn,
    record: &mut Record,
) -> Response<ResponseBody> {
    let remote = conn.remote;
    let (parts, body) = request.into_parts();
    let command = match proto::classify_with(&parts, &shared.policy, shared.limits.metrics_access) {
        Ok(command) => command,
        Err(refusal) => {
            log_refusal(shared, &parts, remote, &refusal.reason, &refusal.reply);
            return reply(refusal.reply, &parts.method);
        }
    };
    record.subject = Some(subject(&command, parts.uri.path()));
    match command {
        Command::Metrics => {
            let mut response =
                Response::new(ResponseBody::full(Bytes::from(shared.metrics.render())));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        Command::Healthz => reply(Reply::text(StatusCode::OK, "ok"), &parts.method),
        Command::Readyz => {
            let answer = match shared.readiness.as_ref().map(|probe| probe()) {
                None | Some(Ok(())) => Reply::text(StatusCode::OK, "ok"),
                Some(Err(reason)) => Reply::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {reason}"),
                ),
            };
            reply(answer, &parts.method)
        }
        Command::LogsIndex => reply(
            Reply::json(StatusCode::OK, &serde_json::json!(shared.logs.models())),
            &parts.method,
        ),
        Command::LogsModel { model } => reply(
            Reply::json(
                StatusCode::OK,
                &serde_json::json!(shared.logs.lines(&model)),
            ),
            &parts.method,
        ),
        Command::LogsWatch { model } => {
            upgrade_logs(shared, Request::from_parts(parts, body), model, conn)
        }
        Command::Head { target } => reply(shared.files.head(&target).await, &parts.method),
        Command::Get { target, range } => {
            shared
                .files
                .get(&target, range.as_ref(), conn.link.clone())
                .await
        }
        Command::Put { target, upload } => {
            let (answer, received) = shared
                .files
                .put(
                    &target,
                    &upload,
                    body,
                    BodyLimits {
                        idle: shared.limits.body_idle_timeout,
                        min_rate: MinRate {
                            bytes_per_second: shared.limits.min_body_rate,
                            window: shared.limits.body_rate_window,
                        },
                    },
                    remote,
                )
                .await;
            record.received = received;
            reply(answer, &parts.method)
        }
        Command::AllocTemp => reply(shared.files.alloc_temp().await, &parts.method),
        Command::List { target } => reply(shared.files.list(&target).await, &parts.method),
    }
}

fn upgrade_logs<R: Runtime>(
    shared: &Shared<R>,
    request: Request<Incoming>,
    model: String,
    conn: &Conn,
) -> Response<ResponseBody> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

    let Some(key) = request
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .cloned()
    else {
        return reply(
            Reply::error(StatusCode::BAD_REQUEST, "Bad Request"),
            request.method(),
        );
    };
    if conn.table.upgrade(conn.id) == UpgradeDecision::Refuse {
        shared.metrics.refusal("log_streams_full");
        if shared.refusals.record("log_streams_full", conn.remote.ip()) {
            info!(remote = %conn.remote, "log stream refused: too many open; repeats are counted");
        }
        let mut response = reply(
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many log streams open; retry later",
            ),
            request.method(),
        );
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return response;
    }
    let accept = derive_accept_key(key.as_bytes());
    let logs = shared.logs.clone();
    let table = conn.table.clone();
    let id = conn.id;
    let runtime = shared.runtime.clone();
    shared.runtime.spawn(async move {
        // The stream counts against the log-stream cap until it ends, however it ends.
        struct Release(Arc<Connections>, ConnId);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.upgrade_closed(self.1);
            }
        }
        let _release = Release(table, id);
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(4096))
                    .max_frame_size(Some(4096));
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioCompat(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                logs.watch(&runtime, model, socket).await;
            }
            Err(error) => debug!(%error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Turns a core reply into a hyper response; `HEAD` answers keep their headers and drop the
/// body.
pub(crate) fn reply(answer: Reply, method: &http::Method) -> Response<ResponseBody> {
    let is_head = method == http::Method::HEAD;
    let response = answer.into_http();
    let (parts, body) = response.into_parts();
    let body = if is_head { Bytes::new() } else { body };
    Response::from_parts(parts, ResponseBody::full(body))
}

/// Counts every refusal and logs it through the aggregation: in full (with the reason in
/// words and what the client was told) once per reason and remote, then as summary lines.
fn log_refusal<R: Runtime>(
    shared: &Shared<R>,
    parts: &http::request::Parts,
    remote: SocketAddr,
    reason: &RefusalReason,
    answer: &Reply,
) {
    shared.metrics.refusal(reason.label());
    if !shared.refusals.record(reason.label(), remote.ip()) {
        return;
    }
    let method = parts.method.as_str();
    let status = answer.status.as_u16();
    // The path is logged escaped so a key cannot inject control characters into the log.
    let path = parts.uri.path().escape_debug().to_string();
    // Quoted in the plain format: the words have spaces.
    let words = reason.to_string();
    let words = words.as_str();
    match reason {
        RefusalReason::Unauthorized(_) => {
            info!(%remote, method, path, status, reason = words, "request refused: unauthorized");
        }
        RefusalReason::NotFound | RefusalReason::Redirect => {
            debug!(%remote, method, path, status, reason = words, "no such route");
        }
        _ => {
            // The client's answer says exactly what was wrong (which header, which limit).
            let told = String::from_utf8_lossy(&answer.body);
            let told = told.trim_end();
            info!(%remote, method, path, status, reason = words, told, "request refused");
        }
    }
}
