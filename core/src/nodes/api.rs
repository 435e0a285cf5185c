//! The frontend's node routes (spec §4.1, §4.2) as one pure function: a request in, a
//! [`Reply`] and the registry changes to store out.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::registry::{HeartbeatBody, Node, NodeError, RegisterBody, Registry};
use crate::auth::{self, AuthDecision, AuthPolicy, RejectReason, TokenSet};
use crate::config::Secret;
use crate::jwt::NodeType;
use crate::response::Reply;

/// How the node routes are protected.
#[derive(Debug, Clone)]
pub struct FrontendPolicy {
    /// The registration token(s) guarding `/api/node/*` (anonymous: no check, LocalAI's
    /// fail-open default, loudly reported by the posture).
    pub nodes: AuthPolicy,
    /// The admin token guarding `/api/nodes/*`; `None` disables the admin routes (never the
    /// registration token).
    pub admin: Option<TokenSet>,
    /// `LOCALAI_AUTO_APPROVE_NODES`.
    pub auto_approve: bool,
}

/// Mints NATS credentials for an approved node: a fresh user key signed by the account key
/// (the adapter holds the keys and the randomness).
pub trait Minter {
    /// A user JWT and its seed for `node_id`, or `None` when minting failed (the reply then
    /// carries no credentials, as LocalAI does).
    fn mint(&mut self, node_id: &str, node_type: NodeType, now: u64) -> Option<(Secret, Secret)>;
}

/// A change for the adapter's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace this node.
    Upsert(Node),
    /// Remove the node with this id.
    Delete(String),
}

/// The outcome of [`handle`].
#[derive(Debug)]
pub struct Handled {
    /// The answer.
    pub reply: Reply,
    /// What to store before answering.
    pub changes: Vec<Change>,
    /// A short, secret-free description for the log (`None` for reads).
    pub event: Option<String>,
    /// A file to stage to a worker before answering (`POST /api/nodes/:id/stage`); the adapter
    /// pushes it with the staging client and answers with [`staged_reply`].
    pub stage: Option<StageRequest>,
}

/// A file the frontend must push to a registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRequest {
    /// The node.
    pub node_id: String,
    /// The worker's file-transfer base URL (`http://<http_address>`).
    pub base_url: String,
    /// The file on the frontend.
    pub file: String,
    /// The key on the worker.
    pub key: String,
}

/// The answer to a staging request once the push finished: `{"local_path", "skipped",
/// "resumed_from"}`, or 502 with the error (a secret-free text) when the push failed.
#[must_use]
pub fn staged_reply(result: Result<(String, bool, u64), String>) -> Reply {
    match result {
        Ok((local_path, skipped, resumed_from)) => Reply::json(
            StatusCode::OK,
            &json!({"local_path": local_path, "skipped": skipped, "resumed_from": resumed_from}),
        ),
        Err(error) => flat_error(StatusCode::BAD_GATEWAY, &format!("staging failed: {error}")),
    }
}

/// What the request is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Register,
    Heartbeat(String),
    Drain(String),
    Resume(String),
    Deregister(String),
    Models(String),
    Offline(String),
    AdminList,
    AdminApprove(String),
    AdminDelete(String),
    AdminStage(String),
}

/// Answers one request to `/api/node/*` or `/api/nodes/*`. `None` when the path is not one of
/// those routes (the adapter answers 404 itself, or serves its other routes).
#[allow(
    clippy::too_many_arguments,
    reason = "one request and its context: splitting it would only move the list"
)]
pub fn handle(
    registry: &mut Registry,
    policy: &FrontendPolicy,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
    new_id: &mut dyn FnMut() -> String,
    minter: Option<&mut dyn Minter>,
) -> Option<Handled> {
    let route = match route(method, path)? {
        Ok(route) => route,
        Err(reply) => return Some(answer(reply)),
    };
    let admin = matches!(
        route,
        Route::AdminList | Route::AdminApprove(_) | Route::AdminDelete(_) | Route::AdminStage(_)
    );
    let check = if admin {
        admin_check(policy.admin.as_ref(), headers)
    } else {
        node_check(&policy.nodes, headers)
    };
    if let Err(reply) = check {
        return Some(answer(reply));
    }
    Some(match route {
        Route::Register => register(registry, policy, body, now, new_id, minter),
        Route::Heartbeat(id) => {
            let hb: HeartbeatBody = serde_json::from_slice(body).unwrap_or_default();
            match registry.heartbeat(&id, &hb, now) {
                Ok(node) => Handled {
                    changes: vec![Change::Upsert(node.clone())],
                    reply: message(StatusCode::OK, "heartbeat received"),
                    event: None,
                    stage: None,
                },
                Err(e) => answer(node_error(&e)),
            }
        }
        Route::Drain(id) => status_change(registry.drain(&id), "node set to draining"),
        Route::Resume(id) => status_change(registry.resume(&id), "node resumed"),
        Route::Deregister(id) | Route::Offline(id) => {
            status_change(registry.deregister(&id), "node set to offline")
        }
        Route::Models(id) => match registry.get(&id) {
            // The reference frontend runs no models: nothing is ever in flight.
            Some(_) => answer(Reply::json(StatusCode::OK, &json!([]))),
            None => answer(node_error(&NodeError::NotFound)),
        },
        Route::AdminList => {
            let nodes: Vec<Value> = registry.nodes().map(node_json).collect();
            answer(Reply::json(StatusCode::OK, &Value::Array(nodes)))
        }
        Route::AdminApprove(id) => match registry.approve(&id) {
            Ok(node) => {
                let node = node.clone();
                let mut value = node_json(&node);
                value["message"] = json!("node approved");
                add_credentials(&mut value, &node, now, minter);
                Handled {
                    event: Some(format!("node {} ({}) approved", node.id, node.name)),
                    changes: vec![Change::Upsert(node)],
                    reply: Reply::json(StatusCode::OK, &value),
                    stage: None,
                }
            }
            Err(e) => answer(node_error(&e)),
        },
        Route::AdminStage(id) => stage(registry, &id, body),
        Route::AdminDelete(id) => match registry.delete(&id) {
            Ok(node) => Handled {
                event: Some(format!("node {} ({}) deleted", node.id, node.name)),
                changes: vec![Change::Delete(node.id)],
                reply: message(StatusCode::OK, "node deleted"),
                stage: None,
            },
            Err(e) => answer(node_error(&e)),
        },
    })
}

fn stage(registry: &Registry, id: &str, body: &[u8]) -> Handled {
    #[derive(serde::Deserialize)]
    struct StageBody {
        file: String,
        key: String,
    }
    let Ok(request) = serde_json::from_slice::<StageBody>(body) else {
        return answer(flat_error(
            StatusCode::BAD_REQUEST,
            "invalid request body: expected {\"file\": \"<path on the frontend>\", \"key\": \"models/...\"}",
        ));
    };
    if crate::keys::resolve_key(request.key.as_bytes()).is_err() {
        return answer(flat_error(StatusCode::BAD_REQUEST, "invalid key"));
    }
    let Some(node) = registry.get(id) else {
        return answer(node_error(&NodeError::NotFound));
    };
    if node.status != super::registry::NodeStatus::Healthy || node.http_address.is_empty() {
        return answer(flat_error(
            StatusCode::CONFLICT,
            "node is not healthy or has no HTTP address for file transfer",
        ));
    }
    Handled {
        reply: Reply::empty(StatusCode::ACCEPTED),
        changes: Vec::new(),
        event: Some(format!(
            "staging {} to node {} ({})",
            request.key, node.id, node.name
        )),
        stage: Some(StageRequest {
            node_id: node.id.clone(),
            base_url: format!("http://{}", node.http_address),
            file: request.file,
            key: request.key,
        }),
    }
}

fn register(
    registry: &mut Registry,
    policy: &FrontendPolicy,
    body: &[u8],
    now: u64,
    new_id: &mut dyn FnMut() -> String,
    minter: Option<&mut dyn Minter>,
) -> Handled {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return answer(node_error_text(400, "invalid request body"));
    };
    let Ok(request) = serde_json::from_value::<RegisterBody>(value.clone()) else {
        return answer(node_error_text(400, "invalid request body"));
    };
    // The body token, in addition to the header (spec §4.2).
    if let AuthPolicy::Bearer(tokens) = &policy.nodes {
        match value.get("token").and_then(Value::as_str) {
            None | Some("") => {
                return answer(node_error_text(401, "registration token required"));
            }
            Some(token) if !tokens.accepts(token.as_bytes()) => {
                return answer(node_error_text(401, "invalid registration token"));
            }
            Some(_) => {}
        }
    }
    match registry.register(&request, now, policy.auto_approve, new_id) {
        Ok(registered) => {
            let node = registered.node;
            let mut value = node_json(&node);
            if !registered.created {
                // LocalAI answers a re-registration with Go's zero time.
                value["created_at"] = json!("0001-01-01T00:00:00Z");
            }
            add_credentials(&mut value, &node, now, minter);
            Handled {
                event: Some(format!(
                    "node {} ({}) registered: {}",
                    node.id,
                    node.name,
                    node.status.as_str()
                )),
                changes: vec![Change::Upsert(node)],
                reply: Reply::json(StatusCode::CREATED, &value),
                stage: None,
            }
        }
        Err(e) => answer(node_error(&e)),
    }
}

fn add_credentials(value: &mut Value, node: &Node, now: u64, minter: Option<&mut dyn Minter>) {
    let Some(minter) = minter else {
        return;
    };
    if node.status == super::registry::NodeStatus::Pending || !node.approved {
        return;
    }
    let node_type = node.node_type.parse().unwrap_or(NodeType::Backend);
    if let Some((jwt, seed)) = minter.mint(&node.id, node_type, now) {
        value["nats_jwt"] = json!(jwt.expose());
        value["nats_user_seed"] = json!(seed.expose());
    }
}

fn status_change(result: Result<&Node, NodeError>, text: &str) -> Handled {
    match result {
        Ok(node) => Handled {
            event: Some(format!("node {} ({}): {text}", node.id, node.name)),
            changes: vec![Change::Upsert(node.clone())],
            reply: message(StatusCode::OK, text),
            stage: None,
        },
        Err(e) => answer(node_error(&e)),
    }
}

fn answer(reply: Reply) -> Handled {
    Handled {
        reply,
        changes: Vec::new(),
        event: None,
        stage: None,
    }
}

fn message(status: StatusCode, text: &str) -> Reply {
    Reply::json(status, &json!({ "message": text }))
}

/// The JSON of a node in answers.
#[must_use]
pub fn node_json(node: &Node) -> Value {
    json!({
        "id": node.id,
        "name": node.name,
        "node_type": node.node_type,
        "status": node.status.as_str(),
        "address": node.address,
        "http_address": node.http_address,
        "labels": node.labels,
        "created_at": rfc3339(node.created_at),
        "last_heartbeat": rfc3339(node.last_heartbeat),
    })
}

/// A LocalAI `node_error` body: `{"error":{"code":…,"message":…,"type":"node_error"}}`.
#[must_use]
pub fn node_error_text(status: u16, message: &str) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    Reply::json(
        code,
        &json!({"error": {"code": status, "message": message, "type": "node_error"}}),
    )
}

fn node_error(error: &NodeError) -> Reply {
    node_error_text(error.status(), &error.to_string())
}

fn flat_error(status: StatusCode, message: &str) -> Reply {
    Reply::json(status, &json!({ "error": message }))
}

/// The header check of the node routes (spec §4.2), with nodegate's parsing (any case of
/// `Bearer`, digests compared in constant time).
fn node_check(policy: &AuthPolicy, headers: &HeaderMap) -> Result<(), Reply> {
    match auth::authorize(policy, headers) {
        AuthDecision::Allow => Ok(()),
        AuthDecision::Reject(RejectReason::Mismatch) => Err(flat_error(
            StatusCode::UNAUTHORIZED,
            "invalid registration token",
        )),
        AuthDecision::Reject(_) => Err(flat_error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid Authorization header",
        )),
    }
}

fn admin_check(admin: Option<&TokenSet>, headers: &HeaderMap) -> Result<(), Reply> {
    let Some(tokens) = admin else {
        return Err(flat_error(
            StatusCode::FORBIDDEN,
            "admin routes are disabled: set NODEGATE_ADMIN_TOKEN",
        ));
    };
    match auth::authorize(&AuthPolicy::Bearer(tokens.clone()), headers) {
        AuthDecision::Allow => Ok(()),
        AuthDecision::Reject(_) => Err(flat_error(StatusCode::UNAUTHORIZED, "invalid admin token")),
    }
}

/// `None`: not a node route. `Some(Err)`: a node path with the wrong method (405).
fn route(method: &Method, path: &str) -> Option<Result<Route, Reply>> {
    let wrong_method = || {
        Some(Err(flat_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )))
    };
    if let Some(rest) = path.strip_prefix("/api/nodes") {
        let rest = rest.trim_start_matches('/');
        let parts: Vec<&str> = rest.split('/').collect();
        return match (method, parts.as_slice()) {
            (&Method::GET, [""]) => Some(Ok(Route::AdminList)),
            (&Method::POST, [id, "approve"]) if !id.is_empty() => {
                Some(Ok(Route::AdminApprove(decode(id)?)))
            }
            (&Method::DELETE, [id]) if !id.is_empty() => Some(Ok(Route::AdminDelete(decode(id)?))),
            (&Method::POST, [id, "stage"]) if !id.is_empty() => {
                Some(Ok(Route::AdminStage(decode(id)?)))
            }
            (_, [""] | [_] | [_, "approve" | "stage"]) => wrong_method(),
            _ => None,
        };
    }
    let rest = path.strip_prefix("/api/node/")?;
    if rest == "register" {
        return if method == Method::POST {
            Some(Ok(Route::Register))
        } else {
            wrong_method()
        };
    }
    let (id, verb) = match rest.split_once('/') {
        Some((id, verb)) => (id, Some(verb)),
        None => (rest, None),
    };
    if id.is_empty() {
        return None;
    }
    let id = decode(id)?;
    let route = match (method, verb) {
        (&Method::POST, Some("heartbeat")) => Route::Heartbeat(id),
        (&Method::POST, Some("drain")) => Route::Drain(id),
        (&Method::POST, Some("resume")) => Route::Resume(id),
        (&Method::POST, Some("deregister")) => Route::Deregister(id),
        (&Method::GET, Some("models")) => Route::Models(id),
        (&Method::DELETE, None) => Route::Offline(id),
        (_, Some("heartbeat" | "drain" | "resume" | "deregister" | "models") | None) => {
            return wrong_method();
        }
        _ => return None,
    };
    Some(Ok(route))
}

fn decode(segment: &str) -> Option<String> {
    crate::keys::percent_decode_once(segment.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Unix seconds as RFC 3339 UTC (`2026-12-01T08:00:00Z`).
#[must_use]
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
