//! The reference frontend: LocalAI's node endpoints (`/api/node/*`), nodegate's admin routes
//! (`/api/nodes/*`, behind `NODEGATE_ADMIN_TOKEN`), the health monitor, minted NATS
//! credentials and the frontend's own NATS connection. Every answer comes from
//! [`nodegate_core::nodes::api::handle`]; this module reads requests, stores the changes it
//! returns, and runs the timers.

mod mint;
pub mod setup;
pub mod store;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use nodegate_core::config::{Config, Secret};
use nodegate_core::nodes::api::{self, FrontendPolicy};
use nodegate_core::nodes::registry::Registry;
use nodegate_core::posture::Posture;
use nodegate_core::response::Reply;
use nodegate_core::startup::{self, Level, NatsVerdict};
use tokio::net::TcpListener;
use tracing::{error, info, warn};

pub use mint::{KeySigner, MintError, NkeyMinter};
use store::RegistryStore;

/// Largest request body read by the frontend.
const MAX_BODY: usize = 1 << 20;
/// Time allowed to receive a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the frontend needs besides its configuration.
pub struct FrontendSetup {
    /// Token checks and approval policy of the node routes.
    pub policy: FrontendPolicy,
    /// Where nodes are kept.
    pub store: Arc<dyn RegistryStore>,
    /// Mints worker credentials (`LOCALAI_NATS_ACCOUNT_SEED`), if configured.
    pub minter: Option<NkeyMinter>,
    /// A node silent for longer is marked offline.
    pub stale_after: Duration,
    /// How often the health monitor runs.
    pub sweep_every: Duration,
}

struct Shared {
    registry: Mutex<Registry>,
    /// The registration token, sent to workers when staging files to them.
    worker_token: Option<String>,
    policy: FrontendPolicy,
    store: Arc<dyn RegistryStore>,
    minter: Option<Mutex<NkeyMinter>>,
    nats_ready: AtomicBool,
    nats_used: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the frontend until SIGTERM or SIGINT and returns the exit code: evaluates the posture
/// (refusing before anything is bound), loads the registry, binds `bind`, connects to NATS when
/// `LOCALAI_NATS_URL` is set, and serves.
pub async fn run_frontend(config: Config, setup: FrontendSetup, bind: &str) -> u8 {
    let posture = Posture::evaluate(&config);
    match &posture {
        Posture::Refused { error: refusal } => {
            error!(
                variable = refusal.variable(),
                "refusing to start: {refusal}"
            );
            return 1;
        }
        Posture::Anonymous { warnings, .. } => {
            let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            warn!("SECURITY WARNING: {}", text.join(" | "));
        }
        Posture::Protected { .. } => {}
    }
    let nodes = match setup.store.load() {
        Ok(nodes) => nodes,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let listener = match TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(e) => {
            error!("starting the frontend: listen {bind}: {e} (check LOCALAI_ADDRESS)");
            return 1;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| bind.to_owned(), |a| a.to_string());
    let shared = Arc::new(Shared {
        registry: Mutex::new(Registry::from_nodes(nodes)),
        worker_token: config
            .registration
            .token
            .as_ref()
            .map(|t| t.expose().to_owned()),
        policy: setup.policy,
        store: setup.store,
        minter: setup.minter.map(Mutex::new),
        nats_ready: AtomicBool::new(false),
        nats_used: config.nats.url.is_some(),
    });
    info!(
        addr,
        nodes = shared.registry.lock().map_or(0, |r| r.nodes().count()),
        minting = shared.minter.is_some(),
        "frontend started"
    );
    let mut nats = None;
    if let Some(url) = config.nats.url.clone() {
        match connect_nats(&config, &url).await {
            Ok(client) => {
                shared.nats_ready.store(true, Ordering::SeqCst);
                nats = Some(client);
            }
            Err(reason) => {
                error!("{reason}");
                return 1;
            }
        }
    }
    let monitor = tokio::spawn(health_monitor(
        shared.clone(),
        setup.stale_after,
        setup.sweep_every,
    ));
    let code = serve(listener, shared.clone(), nats.clone()).await;
    monitor.abort();
    if let Some(client) = nats {
        let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    }
    code
}

async fn connect_nats(config: &Config, url: &str) -> Result<async_nats::Client, String> {
    let credential = startup::frontend_credential(config);
    let cell = Arc::new(std::sync::RwLock::new(credential.clone()));
    let (reports, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (errors, _) = tokio::sync::broadcast::channel(16);
    let mut delay = startup::BACKOFF_START;
    loop {
        let result = crate::member::nats_connect(
            url,
            &config.nats.tls,
            cell.clone(),
            reports.clone(),
            errors.clone(),
        )
        .await;
        let info = result.as_ref().map(|(info, _)| *info).map_err(Clone::clone);
        match startup::judge_connection(
            config.nats_auth_required(),
            config.registration.distributed_require_auth,
            &credential,
            &info,
        ) {
            NatsVerdict::Connected(logs) => {
                for (level, message) in logs {
                    match level {
                        Level::Info => info!("{message}"),
                        Level::Warn => warn!("{message}"),
                        Level::Error => error!("{message}"),
                    }
                }
                tokio::spawn(async move {
                    while let Some(report) = events.recv().await {
                        crate::member::log_report(&report);
                    }
                });
                return result.map(|(_, client)| client).map_err(|_| String::new());
            }
            NatsVerdict::Fatal(reason) => return Err(reason),
            NatsVerdict::Retry(detail) => {
                warn!(
                    "connecting to NATS failed ({detail}); retrying in {}s (check LOCALAI_NATS_URL)",
                    delay.as_secs()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(startup::BACKOFF_MAX);
            }
        }
    }
}

async fn health_monitor(shared: Arc<Shared>, stale_after: Duration, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let now = unix_now();
        let changes = {
            let Ok(mut registry) = shared.registry.lock() else {
                return;
            };
            let transitions = registry.sweep(now, stale_after.as_secs());
            for t in &transitions {
                info!(
                    node = t.id,
                    "health monitor: node {} {} → {}",
                    t.id,
                    t.from.as_str(),
                    t.to.as_str()
                );
            }
            transitions
                .iter()
                .filter_map(|t| registry.get(&t.id).cloned())
                .map(api::Change::Upsert)
                .collect::<Vec<_>>()
        };
        if !changes.is_empty()
            && let Err(e) = shared.store.apply(&changes)
        {
            error!("health monitor: {e}");
        }
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    _nats: Option<async_nats::Client>,
) -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(answer(&shared, request, remote).await) }
                        });
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(()) = crate::member::recv_signal(&mut term) => {
                info!("SIGTERM received: shutting down");
                break;
            }
            Some(()) = crate::member::recv_signal(&mut int) => {
                info!("SIGINT received: shutting down");
                break;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let grace = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            next = connections.join_next() => if next.is_none() { break },
        }
    }
    connections.abort_all();
    0
}

async fn answer(
    shared: &Shared,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let reply = match path.as_str() {
        "/healthz" => Reply::text(StatusCode::OK, "ok"),
        "/readyz" if shared.nats_used && !shared.nats_ready.load(Ordering::SeqCst) => Reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NATS is not connected",
        ),
        "/readyz" => Reply::text(StatusCode::OK, "ok"),
        _ => {
            let body = match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return into_response(api::node_error_text(413, "request body too large"));
                }
            };
            let (reply, stage) = route(shared, &parts, &body, remote);
            match stage {
                Some(request) => stage_file(shared, request).await,
                None => reply,
            }
        }
    };
    into_response(reply)
}

/// Pushes a file to a registered worker with the staging client (resumable, skipped when the
/// worker already holds it) and answers with the outcome.
async fn stage_file(shared: &Shared, request: api::StageRequest) -> Reply {
    let result = match crate::stage::Stager::new(&request.base_url, shared.worker_token.as_deref())
    {
        Ok(stager) => stager
            .push(
                std::path::Path::new(&request.file),
                &request.key,
                &crate::stage::NoProgress,
            )
            .await
            .map(|p| (p.local_path, p.skipped, p.resumed_from))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match &result {
        Ok((path, skipped, _)) => info!(
            node = request.node_id,
            key = request.key,
            skipped,
            "staged to the worker at {path}"
        ),
        Err(error) => warn!(
            node = request.node_id,
            key = request.key,
            "staging failed: {error}"
        ),
    }
    api::staged_reply(result)
}

fn route(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    remote: SocketAddr,
) -> (Reply, Option<api::StageRequest>) {
    let Ok(mut registry) = shared.registry.lock() else {
        return (api::node_error_text(500, "registry unavailable"), None);
    };
    let mut ids = new_id;
    let mut guard = shared.minter.as_ref().and_then(|m| m.lock().ok());
    let minter = guard
        .as_deref_mut()
        .map(|m| m as &mut dyn nodegate_core::nodes::api::Minter);
    let before = registry.clone();
    let Some(handled) = api::handle(
        &mut registry,
        &shared.policy,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        body,
        unix_now(),
        &mut ids,
        minter,
    ) else {
        return (
            Reply::error(StatusCode::NOT_FOUND, "404 page not found"),
            None,
        );
    };
    if !handled.changes.is_empty()
        && let Err(e) = shared.store.apply(&handled.changes)
    {
        // Nothing is answered as done that was not stored.
        *registry = before;
        error!("{e}");
        return (api::node_error_text(500, "failed to register node"), None);
    }
    if let Some(event) = &handled.event {
        info!(remote = %remote, status = handled.reply.status.as_u16(), "{event}");
    } else if handled.reply.status.is_client_error() {
        info!(
            remote = %remote,
            status = handled.reply.status.as_u16(),
            path = parts.uri.path(),
            "node route refused"
        );
    }
    (handled.reply, handled.stage)
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let (parts, body) = reply.into_http().into_parts();
    Response::from_parts(parts, Full::new(body))
}

/// A fresh node id: a random UUID v4.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Builds the minter from `LOCALAI_NATS_ACCOUNT_SEED`, if set.
///
/// # Errors
/// A seed that is not an account nkey seed (LocalAI only fails at the first registration).
pub fn minter_from(seed: Option<&Secret>, ttl: Duration) -> Result<Option<NkeyMinter>, MintError> {
    seed.map(|seed| NkeyMinter::new(seed, ttl)).transpose()
}
