//! A small in-test frontend that answers LocalAI's `/api/node/*` routes.
//!
//! [`Frontend`] is a test double of the node endpoints of a LocalAI frontend
//! (`localai-wire.md` §4): a worker under test registers with it over HTTP/1.1 on loopback,
//! heartbeats, drains and deregisters, and the test reads back everything that arrived
//! ([`Frontend::requests`], [`Frontend::node`]) and steers the answers (approval, minted NATS
//! credentials, injected failures, in-flight counts).
//!
//! It answers like LocalAI on the wire (routes, status codes, JSON bodies, validation order of
//! §4.3, the two-layer token check of §4.2), with one deliberate difference (D12 of the spec): a
//! pending node never becomes healthy through `resume` or re-registration, only through
//! approval ([`Frontend::approve`], [`FrontendOptions::auto_approve`],
//! [`FrontendOptions::pending_rounds`]).
//!
//! It is a test double: state lives in one mutex, nothing persists, and it stops when dropped.
//! The server runs on a thread of its own with a single-threaded tokio runtime and hyper's
//! HTTP/1.1 server, so keep-alive clients (hyper's pooled client, a raw socket sending two
//! requests) are served as they expect.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Mints NATS credentials for a node: called with the node id and its `node_type`, returns
/// `Some((jwt, user_seed))`, or `None` to play a mint failure (the fields are then omitted, as
/// LocalAI does after `Failed to mint NATS JWT for node`).
pub type Minter = Arc<dyn Fn(&str, &str) -> Option<(String, String)> + Send + Sync>;

/// How a [`Frontend`] behaves.
#[derive(Clone)]
pub struct FrontendOptions {
    /// The registration token (`LOCALAI_REGISTRATION_TOKEN`). Empty: no check at all, header or
    /// body (LocalAI's fail-open mode).
    pub token: String,
    /// `LOCALAI_AUTO_APPROVE_NODES`: a node is healthy from its first registration (unless
    /// [`pending_rounds`](Self::pending_rounds) holds it back).
    pub auto_approve: bool,
    /// The first `pending_rounds` register calls of each node answer `pending`; the ones after
    /// approve it and answer `healthy`, whatever `auto_approve` says. `0` with `auto_approve`
    /// off: pending until [`Frontend::approve`].
    pub pending_rounds: usize,
    /// Mints `nats_jwt` / `nats_user_seed` for registrations that are not pending
    /// (`LOCALAI_NATS_ACCOUNT_SEED` set on a LocalAI frontend). `None`: the fields are never sent.
    pub minter: Option<Minter>,
}

impl Default for FrontendOptions {
    /// The test token of the harness ([`super::TOKEN`]), auto-approve on, no pending rounds, no
    /// minter.
    fn default() -> Self {
        Self {
            token: super::TOKEN.to_owned(),
            auto_approve: true,
            pending_rounds: 0,
            minter: None,
        }
    }
}

/// The routes of §4.1, as used to aim a [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /api/node/register`.
    Register,
    /// `POST /api/node/:id/heartbeat`.
    Heartbeat,
    /// `POST /api/node/:id/drain`.
    Drain,
    /// `POST /api/node/:id/resume`.
    Resume,
    /// `POST /api/node/:id/deregister`.
    Deregister,
    /// `GET /api/node/:id/models`.
    Models,
    /// `DELETE /api/node/:id`.
    Delete,
}

/// A failure injected into the next calls of one [`Route`]. It applies before authentication
/// and validation; a request answered by a `Status` or `Close` fault changes no state (it never
/// reached the registry) and does not count as a register round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and the node_error body `failed to register node` (any route).
    Status(u16),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Close,
}

/// The lifecycle status of a node, as the frontend stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Registered, waiting for approval.
    Pending,
    /// Approved and serving.
    Healthy,
    /// Set by `drain`.
    Draining,
    /// Set by `deregister` or `DELETE` (the row is kept).
    Offline,
}

impl NodeStatus {
    /// The wire spelling (`pending`, `healthy`, `draining`, `offline`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Healthy => "healthy",
            Self::Draining => "draining",
            Self::Offline => "offline",
        }
    }
}

/// One request as it arrived, and the answer it got.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When the request head arrived (before its body was read).
    pub at: Instant,
    /// The client's address: requests sharing it came over one (kept-alive) connection.
    pub peer: SocketAddr,
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path of the request target, without the query.
    pub path: String,
    /// The query of the request target, if any.
    pub query: Option<String>,
    /// Every header line in order; names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The status answered; `None` while the request is being handled, or when a
    /// [`Fault::Close`] dropped the connection.
    pub status: Option<u16>,
    /// The response body answered (empty until answered).
    pub response: Vec<u8>,
}

impl Recorded {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header, if the request carried one.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The request body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The response body as JSON, if it is JSON.
    pub fn response_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.response).ok()
    }
}

/// A snapshot of one registered node.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// The id the frontend gave it (kept across re-registrations).
    pub id: String,
    /// Its name (the registry key).
    pub name: String,
    /// `backend` or `agent`.
    pub node_type: String,
    /// Its current status.
    pub status: NodeStatus,
    /// Its labels, merged over every registration.
    pub labels: BTreeMap<String, String>,
    /// The JSON body of its last accepted registration.
    pub last_body: Value,
    /// Accepted (201) register calls.
    pub registrations: usize,
    /// Heartbeats received (any status of the node).
    pub heartbeats: usize,
    /// When the last heartbeat arrived.
    pub last_heartbeat: Option<Instant>,
    /// The JSON body of the last heartbeat (`None` without one or when it was not JSON).
    pub last_heartbeat_body: Option<Value>,
    /// Whether the node is approved (by option or by [`Frontend::approve`]).
    pub approved: bool,
    /// When it was approved.
    pub approved_at: Option<Instant>,
    /// When a register call first answered `healthy` for it.
    pub first_healthy_at: Option<Instant>,
    /// Register answers that carried `nats_jwt` and `nats_user_seed`.
    pub credentials_minted: usize,
    /// The `in_flight` of each model row `GET /api/node/:id/models` returns (empty: `[]`).
    pub models_in_flight: Vec<u64>,
}

/// The frontend double; stops when dropped.
pub struct Frontend {
    addr: SocketAddr,
    shared: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Frontend {
    /// Starts a frontend on `127.0.0.1:0`, on a thread of its own.
    pub fn start(options: FrontendOptions) -> Self {
        let shared = Arc::new(Mutex::new(State::new(options)));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("test-frontend".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("frontend runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the frontend on loopback");
                    addr_tx
                        .send(listener.local_addr().expect("bound address"))
                        .expect("the starter waits for the address");
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, peer)) = accepted else { continue };
                                let state = Arc::clone(&state);
                                tokio::spawn(async move {
                                    let service = hyper::service::service_fn(move |request| {
                                        serve(Arc::clone(&state), peer, request)
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .timer(hyper_util::rt::TokioTimer::new())
                                        .serve_connection(
                                            hyper_util::rt::TokioIo::new(stream),
                                            service,
                                        )
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("spawn the frontend thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("frontend address");
        Self {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), the worker's `LOCALAI_REGISTER_TO`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The requests whose path ends with `path_suffix` (e.g. `/heartbeat`,
    /// `/api/node/register`), in arrival order.
    pub fn requests_to(&self, path_suffix: &str) -> Vec<Recorded> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    /// The node registered under `name`.
    pub fn node(&self, name: &str) -> Option<NodeView> {
        self.state().nodes.iter().find(|n| n.name == name).cloned()
    }

    /// The node with this id.
    pub fn node_by_id(&self, id: &str) -> Option<NodeView> {
        self.state().nodes.iter().find(|n| n.id == id).cloned()
    }

    /// Every node, in order of first registration.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.state().nodes.clone()
    }

    /// Approves `name` like the admin route `POST /api/nodes/:id/approve`: a pending node becomes
    /// healthy, and its next registrations answer `healthy` (with credentials when a minter is
    /// set). A name not registered yet is approved at its first registration. Returns whether
    /// the node was known.
    pub fn approve(&self, name: &str) -> bool {
        let mut state = self.state();
        let now = Instant::now();
        match state.nodes.iter_mut().find(|n| n.name == name) {
            Some(node) => {
                if !node.approved {
                    node.approved = true;
                    node.approved_at = Some(now);
                }
                if node.status == NodeStatus::Pending {
                    node.status = NodeStatus::Healthy;
                }
                true
            }
            None => {
                state.pre_approved.insert(name.to_owned());
                false
            }
        }
    }

    /// Makes `GET /api/node/:id/models` of `name` answer one model row with `in_flight: n`.
    /// Returns whether the node is known.
    pub fn set_in_flight(&self, name: &str, n: u64) -> bool {
        self.set_models_in_flight(name, &[n])
    }

    /// Makes `GET /api/node/:id/models` of `name` answer one model row per entry, with that
    /// `in_flight` (`&[]`: an empty array). Returns whether the node is known.
    pub fn set_models_in_flight(&self, name: &str, in_flight: &[u64]) -> bool {
        let mut state = self.state();
        match state.nodes.iter_mut().find(|n| n.name == name) {
            Some(node) => {
                node.models_in_flight = in_flight.to_vec();
                true
            }
            None => false,
        }
    }

    /// Answers the next `n` register calls with `status` (e.g. 500, 503).
    pub fn fail_next_registers(&self, n: usize, status: u16) {
        self.inject(Route::Register, Fault::Status(status), n);
    }

    /// Applies `fault` to the next `times` calls of `route`. Faults queued for one route apply
    /// in the order they were injected.
    pub fn inject(&self, route: Route, fault: Fault, times: usize) {
        if times > 0 {
            self.state().faults.push((route, fault, times));
        }
    }

    /// Replaces the configured registration token (empty: no checks). A token the worker does not
    /// hold makes every node call answer 401.
    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.state().token);
    }

    /// Turns auto-approve on or off for the registrations that follow.
    pub fn set_auto_approve(&self, on: bool) {
        self.state().auto_approve = on;
    }

    /// Polls `predicate` every 20 ms until it holds (true) or `timeout` passes (false).
    pub fn wait_for(&self, mut predicate: impl FnMut(&Self) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `count` requests to `path_suffix` were answered.
    pub fn wait_for_requests(&self, path_suffix: &str, count: usize, timeout: Duration) -> bool {
        self.wait_for(
            |f| {
                f.state()
                    .requests
                    .iter()
                    .filter(|r| r.path.ends_with(path_suffix) && r.status.is_some())
                    .count()
                    >= count
            },
            timeout,
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Everything the frontend knows.
struct State {
    token: String,
    auto_approve: bool,
    pending_rounds: usize,
    minter: Option<Minter>,
    nodes: Vec<NodeView>,
    pre_approved: HashSet<String>,
    requests: Vec<Recorded>,
    faults: Vec<(Route, Fault, usize)>,
    minted_ids: u64,
}

impl State {
    fn new(options: FrontendOptions) -> Self {
        Self {
            token: options.token,
            auto_approve: options.auto_approve,
            pending_rounds: options.pending_rounds,
            minter: options.minter,
            nodes: Vec::new(),
            pre_approved: HashSet::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            minted_ids: 0,
        }
    }

    fn take_fault(&mut self, route: Route) -> Option<Fault> {
        let index = self.faults.iter().position(|(r, _, _)| *r == route)?;
        let entry = &mut self.faults[index];
        let fault = entry.1;
        entry.2 -= 1;
        if entry.2 == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }

    /// A UUID-shaped id, unique within this frontend.
    fn new_id(&mut self) -> String {
        self.minted_ids += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let digest = sha2::Sha256::digest(format!("{}:{nanos}", self.minted_ids));
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn node_mut(&mut self, id: &str) -> Option<&mut NodeView> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer: status and JSON body.
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }

    fn message(text: &str) -> Self {
        Self::new(200, json!({ "message": text }))
    }

    /// The handlers' error shape.
    fn node_error(status: u16, message: &str) -> Self {
        Self::new(
            status,
            json!({ "error": { "code": status, "message": message, "type": "node_error" } }),
        )
    }

    /// The middleware's flat error shape.
    fn flat_error(status: u16, message: &str) -> Self {
        Self::new(status, json!({ "error": message }))
    }
}

async fn serve(
    shared: Arc<Mutex<State>>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let at = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    let index = {
        let mut state = lock(&shared);
        state.requests.push(Recorded {
            at,
            peer,
            method: method.to_string(),
            path: path.clone(),
            query,
            headers: headers.clone(),
            body: body.clone(),
            status: None,
            response: Vec::new(),
        });
        state.requests.len() - 1
    };
    let route = route_of(&method, &path);
    let fault = route
        .as_ref()
        .and_then(|(route, _)| lock(&shared).take_fault(*route));
    let reply = match (fault, route) {
        (Some(Fault::Close), _) => {
            return Err(std::io::Error::other("injected fault: connection closed"));
        }
        (Some(Fault::Status(status)), _) => Reply::node_error(status, "failed to register node"),
        (_, None) => Reply::new(404, json!({ "message": "Not Found" })),
        (delay, Some((route, id))) => {
            if let Some(Fault::Delay(pause)) = delay {
                tokio::time::sleep(pause).await;
            }
            handle(&shared, route, &id, &headers, &body)
        }
    };
    let mut bytes = serde_json::to_vec(&reply.body).expect("a JSON value serialises");
    bytes.push(b'\n');
    if let Some(recorded) = lock(&shared).requests.get_mut(index) {
        recorded.status = Some(reply.status);
        recorded.response.clone_from(&bytes);
    }
    Ok(Response::builder()
        .status(reply.status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(bytes)))
        .expect("a valid response"))
}

/// The route and `:id` of a request, or `None` (404).
fn route_of(method: &Method, path: &str) -> Option<(Route, String)> {
    let rest = path.strip_prefix("/api/node/")?;
    if rest == "register" && method == Method::POST {
        return Some((Route::Register, String::new()));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let route = match (method, segments.as_slice()) {
        (&Method::DELETE, [_]) => Route::Delete,
        (&Method::POST, [_, "heartbeat"]) => Route::Heartbeat,
        (&Method::POST, [_, "drain"]) => Route::Drain,
        (&Method::POST, [_, "resume"]) => Route::Resume,
        (&Method::POST, [_, "deregister"]) => Route::Deregister,
        (&Method::GET, [_, "models"]) => Route::Models,
        _ => return None,
    };
    let id = segments[0];
    (!id.is_empty()).then(|| (route, id.to_owned()))
}

/// `nodeTokenAuth`, then the route's handler.
fn handle(
    shared: &Mutex<State>,
    route: Route,
    id: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let token = lock(shared).token.clone();
    if !token.is_empty() {
        let authorization = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map_or("", |(_, v)| v.as_str());
        let Some(presented) = authorization.strip_prefix("Bearer ") else {
            return Reply::flat_error(401, "missing or invalid Authorization header");
        };
        if presented != token {
            return Reply::flat_error(401, "invalid registration token");
        }
    }
    let now = Instant::now();
    match route {
        Route::Register => register(shared, &token, headers, body),
        Route::Heartbeat => {
            let mut state = lock(shared);
            let Some(node) = state.node_mut(id) else {
                return Reply::node_error(404, "node not found");
            };
            node.heartbeats += 1;
            node.last_heartbeat = Some(now);
            node.last_heartbeat_body = serde_json::from_slice(body).ok();
            Reply::message("heartbeat received")
        }
        Route::Drain => {
            if let Some(node) = lock(shared).node_mut(id) {
                node.status = NodeStatus::Draining;
            }
            Reply::message("node set to draining")
        }
        Route::Resume => {
            if let Some(node) = lock(shared).node_mut(id) {
                // D12: resume never un-pends a node that was not approved.
                node.status = if node.approved {
                    NodeStatus::Healthy
                } else {
                    NodeStatus::Pending
                };
            }
            Reply::message("node resumed")
        }
        Route::Deregister | Route::Delete => {
            if let Some(node) = lock(shared).node_mut(id) {
                node.status = NodeStatus::Offline;
            }
            Reply::message("node set to offline")
        }
        Route::Models => {
            let state = lock(shared);
            let stamp = rfc3339(SystemTime::now());
            let rows: Vec<Value> = state
                .nodes
                .iter()
                .find(|n| n.id == id)
                .map(|node| {
                    node.models_in_flight
                        .iter()
                        .enumerate()
                        .map(|(i, in_flight)| {
                            let model = if i == 0 {
                                "m".to_owned()
                            } else {
                                format!("m{i}")
                            };
                            json!({
                                "id": format!("{}-{model}", node.id),
                                "node_id": node.id,
                                "model_name": model,
                                "address": "",
                                "state": "loaded",
                                "in_flight": in_flight,
                                "last_used": stamp,
                                "loading_by": "",
                                "created_at": stamp,
                                "updated_at": stamp,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::new(200, Value::Array(rows))
        }
    }
}

/// `RegisterNodeRequest`: what echo's `Bind` accepts (unknown fields ignored, `null` = absent).
#[derive(serde::Deserialize, Default)]
#[allow(
    dead_code,
    reason = "fields are bound to type-check the body like Go does"
)]
struct RegisterRequest {
    name: Option<String>,
    node_type: Option<String>,
    address: Option<String>,
    http_address: Option<String>,
    token: Option<String>,
    total_vram: Option<u64>,
    available_vram: Option<u64>,
    total_ram: Option<u64>,
    available_ram: Option<u64>,
    total_disk: Option<u64>,
    available_disk: Option<u64>,
    gpu_vendor: Option<String>,
    gpu_compute_capability: Option<String>,
    capability: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    max_replicas_per_model: Option<i64>,
    vram_budget: Option<String>,
}

/// Binds the body as echo does: an empty body binds nothing; otherwise it must be JSON (by
/// `Content-Type`) whose first value decodes into the request.
fn bind(headers: &[(String, String)], body: &[u8]) -> Option<(RegisterRequest, Value)> {
    if body.is_empty() {
        return Some((RegisterRequest::default(), Value::Null));
    }
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map_or("", |(_, v)| v.as_str());
    if !content_type.starts_with("application/json") {
        return None;
    }
    let value = serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    if value.is_null() {
        return Some((RegisterRequest::default(), value));
    }
    let request = serde_json::from_value(value.clone()).ok()?;
    Some((request, value))
}

/// `RegisterNodeEndpoint`, in LocalAI's validation order (§4.3), then the registry (§4.4).
fn register(
    shared: &Mutex<State>,
    token: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let Some((request, raw)) = bind(headers, body) else {
        return Reply::node_error(400, "invalid request body");
    };
    if !token.is_empty() {
        match request.token.as_deref() {
            None | Some("") => return Reply::node_error(401, "registration token required"),
            Some(presented) if presented != token => {
                return Reply::node_error(401, "invalid registration token");
            }
            Some(_) => {}
        }
    }
    let node_type = match request.node_type.as_deref() {
        None | Some("") => "backend".to_owned(),
        Some(kind @ ("backend" | "agent")) => kind.to_owned(),
        Some(other) => {
            let quoted = serde_json::to_string(other).expect("a string serialises");
            return Reply::node_error(
                400,
                &format!(r#"invalid node_type {quoted}; must be "backend" or "agent""#),
            );
        }
    };
    let name = request.name.unwrap_or_default();
    if name.is_empty() {
        return Reply::node_error(400, "name is required");
    }
    let address = request.address.unwrap_or_default();
    if node_type == "backend" && address.is_empty() {
        return Reply::node_error(400, "address is required for backend workers");
    }
    if name.len() > 255 {
        return Reply::node_error(400, "name exceeds 255 characters");
    }
    if address.len() > 512 {
        return Reply::node_error(400, "address exceeds 512 characters");
    }
    if request.http_address.unwrap_or_default().len() > 512 {
        return Reply::node_error(400, "http_address exceeds 512 characters");
    }

    let now = Instant::now();
    let (id, status, created_at, minter) = {
        let mut state = lock(shared);
        let known = state.nodes.iter().position(|n| n.name == name);
        let index = match known {
            Some(index) => index,
            None => {
                let id = state.new_id();
                state.nodes.push(NodeView {
                    id,
                    name: name.clone(),
                    node_type: node_type.clone(),
                    status: NodeStatus::Pending,
                    labels: BTreeMap::new(),
                    last_body: Value::Null,
                    registrations: 0,
                    heartbeats: 0,
                    last_heartbeat: None,
                    last_heartbeat_body: None,
                    approved: false,
                    approved_at: None,
                    first_healthy_at: None,
                    credentials_minted: 0,
                    models_in_flight: Vec::new(),
                });
                state.nodes.len() - 1
            }
        };
        let auto = state.auto_approve || state.pending_rounds > 0;
        let pending_rounds = state.pending_rounds;
        let pre_approved = state.pre_approved.remove(&name);
        let node = &mut state.nodes[index];
        node.registrations += 1;
        if !node.approved && (pre_approved || (auto && node.registrations > pending_rounds)) {
            node.approved = true;
            node.approved_at = Some(now);
        }
        // D12: only approval makes a node healthy; re-registration of a drained or offline
        // node that was never approved stays pending.
        node.status = if node.approved {
            NodeStatus::Healthy
        } else {
            NodeStatus::Pending
        };
        if node.status == NodeStatus::Healthy && node.first_healthy_at.is_none() {
            node.first_healthy_at = Some(now);
        }
        node.node_type.clone_from(&node_type);
        node.labels.extend(request.labels.unwrap_or_default());
        node.last_body = raw;
        let created_at = if known.is_some() {
            "0001-01-01T00:00:00Z".to_owned()
        } else {
            rfc3339(SystemTime::now())
        };
        (
            node.id.clone(),
            node.status,
            created_at,
            state.minter.clone(),
        )
    };

    let mut response = json!({
        "id": id,
        "name": name,
        "node_type": node_type,
        "status": status.as_str(),
        "created_at": created_at,
    });
    if status != NodeStatus::Pending
        && let Some((jwt, seed)) = minter.and_then(|mint| mint(&id, &node_type))
    {
        response["nats_jwt"] = Value::String(jwt);
        response["nats_user_seed"] = Value::String(seed);
        if let Some(node) = lock(shared).node_mut(&id) {
            node.credentials_minted += 1;
        }
    }
    Reply::new(201, response)
}

/// `t` as RFC 3339 in UTC with nanoseconds, like Go's `time.Time` in JSON.
fn rfc3339(t: SystemTime) -> String {
    // The core's formatter (seconds), with LocalAI's nanoseconds.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = nodegate::nodes::api::rfc3339(since.as_secs());
    format!(
        "{}.{:09}Z",
        seconds.trim_end_matches('Z'),
        since.subsec_nanos()
    )
}
