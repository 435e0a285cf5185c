//! Tests of the node routes as a whole (spec §4.2, §4.3, §7.9, §7.10).

use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use super::api::{self, Change, FrontendPolicy, Handled, Minter};
use super::registry::{NodeStatus, Registry};
use crate::auth::{AuthPolicy, Token, TokenSet};
use crate::config::Secret;
use crate::jwt::NodeType;

const TOKEN: &str = "reg-token-SECRET";
const ADMIN: &str = "admin-token-SECRET";

fn policy(auto_approve: bool) -> FrontendPolicy {
    let token = Token::parse(TOKEN).unwrap();
    let admin = Token::parse(ADMIN).unwrap();
    FrontendPolicy {
        nodes: AuthPolicy::from_tokens(Some(&token), None),
        admin: Some(TokenSet::new(&admin, None)),
        auto_approve,
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

struct FakeMinter(u32);

impl Minter for FakeMinter {
    fn mint(&mut self, node_id: &str, node_type: NodeType, _now: u64) -> Option<(Secret, Secret)> {
        self.0 += 1;
        Some((
            Secret::new(format!("jwt-{node_id}-{node_type}")),
            Secret::new("SUSEED"),
        ))
    }
}

struct Frontend {
    registry: Registry,
    policy: FrontendPolicy,
    minter: FakeMinter,
    next: u32,
}

impl Frontend {
    fn new(auto_approve: bool) -> Self {
        Self {
            registry: Registry::new(),
            policy: policy(auto_approve),
            minter: FakeMinter(0),
            next: 0,
        }
    }

    fn call(&mut self, method: Method, path: &str, headers: &HeaderMap, body: &str) -> Handled {
        let next = &mut self.next;
        let mut ids = || {
            *next += 1;
            format!("id-{next}")
        };
        api::handle(
            &mut self.registry,
            &self.policy,
            &method,
            path,
            headers,
            body.as_bytes(),
            1_000,
            &mut ids,
            Some(&mut self.minter),
        )
        .expect("a node route")
    }

    fn register(&mut self, name: &str) -> (u16, Value) {
        let body = format!(r#"{{"name":"{name}","address":"a:1","token":"{TOKEN}"}}"#);
        let h = self.call(Method::POST, "/api/node/register", &bearer(TOKEN), &body);
        (h.reply.status.as_u16(), json(&h))
    }
}

fn json(h: &Handled) -> Value {
    serde_json::from_slice(&h.reply.body).expect("json body")
}

#[test]
fn header_and_body_token_errors_have_localai_bodies() {
    let mut f = Frontend::new(true);
    let body_with_token = format!(r#"{{"name":"n","address":"a:1","token":"{TOKEN}"}}"#);
    let h = f.call(
        Method::POST,
        "/api/node/register",
        &HeaderMap::new(),
        &body_with_token,
    );
    assert_eq!(h.reply.status, 401);
    assert_eq!(json(&h)["error"], "missing or invalid Authorization header");
    let h = f.call(
        Method::POST,
        "/api/node/register",
        &bearer("wrong"),
        &body_with_token,
    );
    assert_eq!(json(&h)["error"], "invalid registration token");
    let h = f.call(
        Method::POST,
        "/api/node/register",
        &bearer(TOKEN),
        r#"{"name":"n","address":"a:1"}"#,
    );
    assert_eq!(json(&h)["error"]["message"], "registration token required");
    assert_eq!(json(&h)["error"]["type"], "node_error");
    let h = f.call(
        Method::POST,
        "/api/node/register",
        &bearer(TOKEN),
        r#"{"name":"n","address":"a:1","token":"nope"}"#,
    );
    assert_eq!(json(&h)["error"]["message"], "invalid registration token");
    assert!(f.registry.by_name("n").is_none(), "nothing registered");
    let shown = format!("{:?}", h.reply);
    assert!(!shown.contains(TOKEN));
}

#[test]
fn bad_json_is_invalid_request_body() {
    let mut f = Frontend::new(true);
    let h = f.call(Method::POST, "/api/node/register", &bearer(TOKEN), "{nope");
    assert_eq!(h.reply.status, 400);
    assert_eq!(json(&h)["error"]["message"], "invalid request body");
}

#[test]
fn pending_nodes_get_no_credentials_until_the_admin_approves() {
    let mut f = Frontend::new(false);
    let (status, body) = f.register("gpu1");
    assert_eq!(status, 201);
    assert_eq!(body["status"], "pending");
    assert!(body.get("nats_jwt").is_none());
    let id = body["id"].as_str().unwrap().to_owned();

    // The registration token is not an admin token.
    let h = f.call(
        Method::POST,
        &format!("/api/nodes/{id}/approve"),
        &bearer(TOKEN),
        "",
    );
    assert_eq!(h.reply.status, 401);
    // Resume is no bypass.
    let h = f.call(
        Method::POST,
        &format!("/api/node/{id}/resume"),
        &bearer(TOKEN),
        "",
    );
    assert_eq!(h.reply.status, 409);
    assert_eq!(f.registry.get(&id).unwrap().status, NodeStatus::Pending);

    let h = f.call(
        Method::POST,
        &format!("/api/nodes/{id}/approve"),
        &bearer(ADMIN),
        "",
    );
    assert_eq!(h.reply.status, 200);
    assert_eq!(json(&h)["message"], "node approved");
    assert_eq!(json(&h)["nats_jwt"], format!("jwt-{id}-backend"));
    assert!(matches!(&h.changes[..], [Change::Upsert(n)] if n.status == NodeStatus::Healthy));

    let (_, body) = f.register("gpu1");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["created_at"], "0001-01-01T00:00:00Z");
    assert_eq!(body["nats_user_seed"], "SUSEED");
}

#[test]
fn node_routes_answer_like_localai() {
    let mut f = Frontend::new(true);
    let (_, body) = f.register("gpu1");
    let id = body["id"].as_str().unwrap().to_owned();
    for (method, verb, text) in [
        (Method::POST, "heartbeat", "heartbeat received"),
        (Method::POST, "drain", "node set to draining"),
        (Method::POST, "resume", "node resumed"),
        (Method::POST, "deregister", "node set to offline"),
    ] {
        let h = f.call(
            method,
            &format!("/api/node/{id}/{verb}"),
            &bearer(TOKEN),
            "{}",
        );
        assert_eq!(h.reply.status, 200, "{verb}");
        assert_eq!(json(&h)["message"], text);
    }
    let h = f.call(
        Method::GET,
        &format!("/api/node/{id}/models"),
        &bearer(TOKEN),
        "",
    );
    assert_eq!(json(&h), serde_json::json!([]));
    let h = f.call(
        Method::POST,
        "/api/node/nope/heartbeat",
        &bearer(TOKEN),
        "{}",
    );
    assert_eq!(h.reply.status, 404);
    assert_eq!(json(&h)["error"]["message"], "node not found");
    let h = f.call(Method::GET, "/api/node/register", &bearer(TOKEN), "");
    assert_eq!(h.reply.status, 405);
    let h = f.call(
        Method::DELETE,
        &format!("/api/node/{id}"),
        &bearer(TOKEN),
        "",
    );
    assert_eq!(json(&h)["message"], "node set to offline");
    assert!(f.registry.get(&id).is_some(), "the row is kept");
    let h = f.call(Method::GET, "/api/nodes", &bearer(ADMIN), "");
    assert_eq!(json(&h).as_array().map(Vec::len), Some(1));
    let h = f.call(
        Method::DELETE,
        &format!("/api/nodes/{id}"),
        &bearer(ADMIN),
        "",
    );
    assert_eq!(h.changes, vec![Change::Delete(id.clone())]);
    assert!(f.registry.get(&id).is_none());
}

#[test]
fn other_paths_are_not_node_routes() {
    let mut f = Frontend::new(true);
    let mut ids = || "x".to_owned();
    for path in ["/", "/healthz", "/api/other", "/api/node/"] {
        assert!(
            api::handle(
                &mut f.registry,
                &f.policy,
                &Method::GET,
                path,
                &HeaderMap::new(),
                b"",
                0,
                &mut ids,
                None,
            )
            .is_none(),
            "{path}"
        );
    }
}

#[test]
fn admin_routes_are_disabled_without_an_admin_token() {
    let mut f = Frontend::new(true);
    f.policy.admin = None;
    let h = f.call(Method::GET, "/api/nodes", &bearer(TOKEN), "");
    assert_eq!(h.reply.status, 403);
    assert!(
        json(&h)["error"]
            .as_str()
            .unwrap()
            .contains("NODEGATE_ADMIN_TOKEN")
    );
}

#[test]
fn anonymous_frontend_checks_nothing() {
    let mut f = Frontend::new(true);
    f.policy.nodes = AuthPolicy::Anonymous;
    let h = f.call(
        Method::POST,
        "/api/node/register",
        &HeaderMap::new(),
        r#"{"name":"n","address":"a:1"}"#,
    );
    assert_eq!(h.reply.status, 201);
}

#[test]
fn agent_nodes_are_minted_agent_credentials() {
    let mut f = Frontend::new(true);
    let body = format!(r#"{{"name":"agent-1","node_type":"agent","token":"{TOKEN}"}}"#);
    let h = f.call(Method::POST, "/api/node/register", &bearer(TOKEN), &body);
    let v = json(&h);
    assert_eq!(v["node_type"], "agent");
    assert!(v["nats_jwt"].as_str().unwrap().ends_with("-agent"));
}

#[test]
fn rfc3339_formats_unix_seconds() {
    assert_eq!(api::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(api::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(api::rfc3339(1_764_576_000), "2025-12-01T08:00:00Z");
}

#[test]
fn stage_requests_name_a_healthy_worker_and_a_valid_key() {
    let mut f = Frontend::new(true);
    let body = format!(
        r#"{{"name":"gpu1","address":"a:1","http_address":"10.0.0.5:50050","token":"{TOKEN}"}}"#
    );
    let h = f.call(Method::POST, "/api/node/register", &bearer(TOKEN), &body);
    let id = json(&h)["id"].as_str().unwrap().to_owned();
    let path = format!("/api/nodes/{id}/stage");
    let h = f.call(Method::POST, &path, &bearer(TOKEN), "{}");
    assert_eq!(
        h.reply.status, 401,
        "the registration token is no admin token"
    );
    let h = f.call(
        Method::POST,
        &path,
        &bearer(ADMIN),
        r#"{"file":"/srv/m.gguf","key":"models/../x"}"#,
    );
    assert_eq!(h.reply.status, 400);
    assert!(h.stage.is_none());
    let h = f.call(
        Method::POST,
        &path,
        &bearer(ADMIN),
        r#"{"file":"/srv/m.gguf","key":"models/m/m.gguf"}"#,
    );
    let stage = h.stage.expect("a stage request");
    assert_eq!(stage.base_url, "http://10.0.0.5:50050");
    assert_eq!(stage.key, "models/m/m.gguf");
    f.call(
        Method::POST,
        &format!("/api/node/{id}/drain"),
        &bearer(TOKEN),
        "",
    );
    let h = f.call(
        Method::POST,
        &path,
        &bearer(ADMIN),
        r#"{"file":"/srv/m.gguf","key":"models/m/m.gguf"}"#,
    );
    assert_eq!(h.reply.status, 409, "a draining node gets no files");
}
