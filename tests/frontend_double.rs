//! The frontend double of `tests/common/frontend.rs`, driven with a plain HTTP client so the
//! tests that put a worker in front of it can trust its answers: the two-layer token check of
//! `localai-wire.md` §4.2 / §7.10, the validation order of §4.3, approval and minting of §4.4
//! (without LocalAI's approval bypass, D12), heartbeats (§4.5), drain / deregister and
//! `in_flight` (§4.6), failure injection, recording, and HTTP/1.1 keep-alive.

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::frontend::{Fault, Frontend, FrontendOptions, NodeStatus, Route};
use common::{CLIENT_TIMEOUT, RawResponse, TOKEN, read_response, request_to};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A backend registration body carrying `token`.
fn backend(name: &str, token: Option<&str>) -> Vec<u8> {
    let mut body = json!({
        "name": name,
        "address": "127.0.0.1:50051",
        "http_address": "127.0.0.1:50050",
        "labels": { "zone": "a" },
    });
    if let Some(token) = token {
        body["token"] = Value::String(token.to_owned());
    }
    body.to_string().into_bytes()
}

/// `POST /api/node/register` with the header token `bearer` and `body` as JSON.
fn register(frontend: &Frontend, bearer: Option<&str>, body: &[u8]) -> RawResponse {
    request_to(
        frontend.addr(),
        "POST",
        "/api/node/register",
        bearer,
        &[JSON],
        body,
    )
}

/// Registers `name` with the test token in header and body; expects 201.
fn register_ok(frontend: &Frontend, name: &str) -> Value {
    let response = register(frontend, Some(TOKEN), &backend(name, Some(TOKEN)));
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()
}

fn post(frontend: &Frontend, target: &str, bearer: Option<&str>) -> RawResponse {
    request_to(frontend.addr(), "POST", target, bearer, &[], b"")
}

fn node_error(code: u16, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "type": "node_error" } })
}

/// A minter that names the node it minted for.
fn minter() -> common::frontend::Minter {
    Arc::new(|id: &str, node_type: &str| Some((format!("jwt-{id}-{node_type}"), "SU-seed".into())))
}

#[test]
fn register_without_bearer_header_is_the_flat_missing_header_401() {
    let frontend = Frontend::start(FrontendOptions::default());
    // §7.10: body token but no header.
    let response = register(&frontend, None, &backend("w1", Some(TOKEN)));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({ "error": "missing or invalid Authorization header" })
    );
    // The scheme is matched case-sensitively, as LocalAI does.
    let response = request_to(
        frontend.addr(),
        "POST",
        "/api/node/register",
        None,
        &[JSON, ("Authorization", &format!("bearer {TOKEN}"))],
        &backend("w1", Some(TOKEN)),
    );
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({ "error": "missing or invalid Authorization header" })
    );
    assert!(frontend.node("w1").is_none());
}

#[test]
fn register_with_a_wrong_header_token_is_the_flat_invalid_token_401() {
    let frontend = Frontend::start(FrontendOptions::default());
    let response = register(&frontend, Some("wrong"), &backend("w1", Some(TOKEN)));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({ "error": "invalid registration token" })
    );
    assert!(frontend.node("w1").is_none());
}

#[test]
fn register_body_token_checks_answer_node_errors() {
    let frontend = Frontend::start(FrontendOptions::default());
    // §7.10: header token but no body token.
    let response = register(&frontend, Some(TOKEN), &backend("w1", None));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        node_error(401, "registration token required")
    );
    let response = register(&frontend, Some(TOKEN), &backend("w1", Some("")));
    assert_eq!(
        response.json(),
        node_error(401, "registration token required")
    );
    let response = register(&frontend, Some(TOKEN), &backend("w1", Some("wrong")));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        node_error(401, "invalid registration token")
    );
    assert!(frontend.node("w1").is_none());
}

#[test]
fn an_empty_configured_token_checks_nothing() {
    let frontend = Frontend::start(FrontendOptions {
        token: String::new(),
        ..FrontendOptions::default()
    });
    let response = register(&frontend, None, &backend("w1", None));
    assert_eq!(response.status, 201, "{}", response.text());
    let response = request_to(
        frontend.addr(),
        "POST",
        "/api/node/register",
        None,
        &[JSON, ("Authorization", "garbage")],
        &backend("w1", Some("anything")),
    );
    assert_eq!(response.status, 201, "{}", response.text());
}

#[test]
fn register_validates_in_localai_order_with_its_texts() {
    let frontend = Frontend::start(FrontendOptions::default());
    let cases: Vec<(Vec<u8>, &str)> =
        vec![
        // Binding comes first, before the body token.
        (b"{not json".to_vec(), "invalid request body"),
        (br#"{"name":"w","total_vram":"lots"}"#.to_vec(), "invalid request body"),
        (
            json!({"token": TOKEN, "node_type": "gpu"}).to_string().into_bytes(),
            r#"invalid node_type "gpu"; must be "backend" or "agent""#,
        ),
        (
            json!({"token": TOKEN, "address": "a:1"}).to_string().into_bytes(),
            "name is required",
        ),
        (
            json!({"token": TOKEN, "name": "w"}).to_string().into_bytes(),
            "address is required for backend workers",
        ),
        (
            json!({"token": TOKEN, "name": "n".repeat(256), "address": "a:1"})
                .to_string()
                .into_bytes(),
            "name exceeds 255 characters",
        ),
        (
            json!({"token": TOKEN, "name": "w", "address": "a".repeat(513)})
                .to_string()
                .into_bytes(),
            "address exceeds 512 characters",
        ),
        (
            json!({"token": TOKEN, "name": "w", "address": "a:1", "http_address": "h".repeat(513)})
                .to_string()
                .into_bytes(),
            "http_address exceeds 512 characters",
        ),
    ];
    for (body, message) in cases {
        let response = register(&frontend, Some(TOKEN), &body);
        assert_eq!(response.status, 400, "{message}: {}", response.text());
        assert_eq!(response.json(), node_error(400, message));
    }
    // A body that is not JSON by its content type does not bind either.
    let response = request_to(
        frontend.addr(),
        "POST",
        "/api/node/register",
        Some(TOKEN),
        &[("Content-Type", "text/plain")],
        &backend("w", Some(TOKEN)),
    );
    assert_eq!(response.json(), node_error(400, "invalid request body"));
    // Limits are inclusive, and an agent needs no address.
    let body = json!({"token": TOKEN, "name": "n".repeat(255), "address": "a".repeat(512)});
    assert_eq!(
        register(&frontend, Some(TOKEN), body.to_string().as_bytes()).status,
        201
    );
    let body = json!({"token": TOKEN, "name": "agent-1", "node_type": "agent"});
    let response = register(&frontend, Some(TOKEN), body.to_string().as_bytes());
    assert_eq!(response.status, 201);
    assert_eq!(response.json()["node_type"], "agent");
    assert_eq!(
        frontend.nodes().len(),
        2,
        "invalid requests register nothing"
    );
}

#[test]
fn pending_rounds_answer_pending_then_healthy_with_one_id_and_credentials_only_when_healthy() {
    let frontend = Frontend::start(FrontendOptions {
        auto_approve: false,
        pending_rounds: 2,
        minter: Some(minter()),
        ..FrontendOptions::default()
    });
    let first = register_ok(&frontend, "w1");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["name"], "w1");
    assert_eq!(first["node_type"], "backend");
    let created_at = first["created_at"].as_str().expect("created_at");
    let year: u32 = created_at[..4].parse().expect("a year");
    assert!(year >= 2025 && created_at.ends_with('Z'), "{created_at}");
    assert_eq!(&created_at[4..5], "-");
    assert_eq!(&created_at[10..11], "T");
    assert!(first.get("nats_jwt").is_none() && first.get("nats_user_seed").is_none());
    let id = first["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 36, "UUID-shaped: {id}");

    let second = register_ok(&frontend, "w1");
    assert_eq!(second["status"], "pending");
    assert_eq!(second["id"], id.as_str());
    assert_eq!(second["created_at"], "0001-01-01T00:00:00Z");
    assert!(second.get("nats_jwt").is_none());

    let third = register_ok(&frontend, "w1");
    assert_eq!(third["status"], "healthy");
    assert_eq!(third["id"], id.as_str());
    assert_eq!(third["nats_jwt"], format!("jwt-{id}-backend"));
    assert_eq!(third["nats_user_seed"], "SU-seed");

    let node = frontend.node("w1").expect("registered");
    assert_eq!(node.status, NodeStatus::Healthy);
    assert_eq!(node.registrations, 3);
    assert_eq!(node.credentials_minted, 1);
    assert!(node.approved && node.approved_at.is_some());
    assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(node.last_body["token"], TOKEN);
}

#[test]
fn only_approval_makes_a_pending_node_healthy() {
    let frontend = Frontend::start(FrontendOptions {
        auto_approve: false,
        minter: Some(minter()),
        ..FrontendOptions::default()
    });
    let id = register_ok(&frontend, "w1")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // D12: neither resume nor drain-then-re-register un-pends it.
    let response = post(&frontend, &format!("/api/node/{id}/resume"), Some(TOKEN));
    assert_eq!(response.json(), json!({ "message": "node resumed" }));
    assert_eq!(
        frontend.node("w1").expect("node").status,
        NodeStatus::Pending
    );
    post(&frontend, &format!("/api/node/{id}/drain"), Some(TOKEN));
    let again = register_ok(&frontend, "w1");
    assert_eq!(again["status"], "pending");
    assert!(again.get("nats_jwt").is_none());

    assert!(frontend.approve("w1"));
    let node = frontend.node("w1").expect("node");
    assert_eq!(node.status, NodeStatus::Healthy);
    let approved_at = node.approved_at.expect("approval instant");
    let after = register_ok(&frontend, "w1");
    assert_eq!(after["status"], "healthy");
    assert_eq!(after["nats_jwt"], format!("jwt-{id}-backend"));
    let node = frontend.node("w1").expect("node");
    assert!(node.first_healthy_at.expect("healthy answer") >= approved_at);

    // Approving a name before it registers takes effect at its first registration.
    assert!(!frontend.approve("w2"));
    assert_eq!(register_ok(&frontend, "w2")["status"], "healthy");
}

#[test]
fn auto_approve_is_healthy_at_once_and_a_failing_minter_omits_the_fields() {
    let frontend = Frontend::start(FrontendOptions {
        minter: Some(Arc::new(|_: &str, _: &str| None)),
        ..FrontendOptions::default()
    });
    let response = register_ok(&frontend, "w1");
    assert_eq!(response["status"], "healthy");
    assert!(response.get("nats_jwt").is_none() && response.get("nats_user_seed").is_none());

    let plain = Frontend::start(FrontendOptions::default());
    let response = register_ok(&plain, "w1");
    assert_eq!(response["status"], "healthy");
    assert!(response.get("nats_jwt").is_none());
}

#[test]
fn heartbeats_need_the_header_and_a_known_id() {
    let frontend = Frontend::start(FrontendOptions::default());
    let response = post(&frontend, "/api/node/nope/heartbeat", Some(TOKEN));
    assert_eq!(response.status, 404);
    assert_eq!(response.json(), node_error(404, "node not found"));

    let id = register_ok(&frontend, "w1")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let target = format!("/api/node/{id}/heartbeat");
    let response = post(&frontend, &target, None);
    assert_eq!(response.status, 401);
    let response = request_to(
        frontend.addr(),
        "POST",
        &target,
        Some(TOKEN),
        &[JSON],
        br#"{"available_vram":7}"#,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({ "message": "heartbeat received" }));
    let node = frontend.node("w1").expect("node");
    assert_eq!(node.heartbeats, 1);
    assert!(node.last_heartbeat.is_some());
    assert_eq!(
        node.last_heartbeat_body,
        Some(json!({ "available_vram": 7 }))
    );
}

#[test]
fn drain_resume_deregister_and_delete_answer_localai_messages_and_are_recorded_in_order() {
    let frontend = Frontend::start(FrontendOptions::default());
    let id = register_ok(&frontend, "w1")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let steps = [
        (
            "POST",
            "drain",
            "node set to draining",
            NodeStatus::Draining,
        ),
        ("POST", "resume", "node resumed", NodeStatus::Healthy),
        (
            "POST",
            "deregister",
            "node set to offline",
            NodeStatus::Offline,
        ),
    ];
    for (method, action, message, status) in steps {
        let response = request_to(
            frontend.addr(),
            method,
            &format!("/api/node/{id}/{action}"),
            Some(TOKEN),
            &[],
            b"",
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.json(), json!({ "message": message }));
        assert_eq!(frontend.node("w1").expect("node").status, status);
    }
    post(&frontend, &format!("/api/node/{id}/resume"), Some(TOKEN));
    let response = request_to(
        frontend.addr(),
        "DELETE",
        &format!("/api/node/{id}"),
        Some(TOKEN),
        &[],
        b"",
    );
    assert_eq!(response.json(), json!({ "message": "node set to offline" }));
    let node = frontend.node("w1").expect("the row is kept");
    assert_eq!(node.status, NodeStatus::Offline);

    let paths: Vec<String> = frontend
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "POST /api/node/register".to_owned(),
            format!("POST /api/node/{id}/drain"),
            format!("POST /api/node/{id}/resume"),
            format!("POST /api/node/{id}/deregister"),
            format!("POST /api/node/{id}/resume"),
            format!("DELETE /api/node/{id}"),
        ]
    );
    let drain = &frontend.requests_to("/drain")[0];
    let deregister = &frontend.requests_to("/deregister")[0];
    assert!(drain.at <= deregister.at);
    assert_eq!(drain.status, Some(200));
    assert_eq!(drain.bearer(), Some(TOKEN));
}

#[test]
fn models_report_the_in_flight_the_test_sets() {
    let frontend = Frontend::start(FrontendOptions::default());
    let id = register_ok(&frontend, "w1")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let target = format!("/api/node/{id}/models");
    let models = |frontend: &Frontend| {
        let response = request_to(frontend.addr(), "GET", &target, Some(TOKEN), &[], b"");
        assert_eq!(response.status, 200);
        response.json()
    };
    assert_eq!(models(&frontend), json!([]));
    assert!(frontend.set_in_flight("w1", 3));
    let rows = models(&frontend);
    assert_eq!(rows[0]["model_name"], "m");
    assert_eq!(rows[0]["in_flight"], 3);
    assert_eq!(rows[0]["node_id"], id.as_str());
    assert!(frontend.set_models_in_flight("w1", &[2, 5]));
    let sum: u64 = models(&frontend)
        .as_array()
        .expect("an array")
        .iter()
        .map(|row| row["in_flight"].as_u64().expect("a count"))
        .sum();
    assert_eq!(sum, 7);
    assert!(!frontend.set_in_flight("unknown", 1));
    let response = request_to(
        frontend.addr(),
        "GET",
        "/api/node/unknown/models",
        Some(TOKEN),
        &[],
        b"",
    );
    assert_eq!(response.json(), json!([]));
}

#[test]
fn unknown_routes_are_404() {
    let frontend = Frontend::start(FrontendOptions::default());
    for (method, target) in [
        ("GET", "/api/node/register"),
        ("POST", "/api/node/x/unknown"),
        ("POST", "/api/nodes/x/approve"),
        ("GET", "/"),
    ] {
        let response = request_to(frontend.addr(), method, target, Some(TOKEN), &[], b"");
        assert_eq!(response.status, 404, "{method} {target}");
    }
}

#[test]
fn injected_failures_answer_then_clear_and_do_not_count_as_rounds() {
    let frontend = Frontend::start(FrontendOptions {
        auto_approve: false,
        pending_rounds: 1,
        ..FrontendOptions::default()
    });
    frontend.fail_next_registers(2, 503);
    for _ in 0..2 {
        let response = register(&frontend, Some(TOKEN), &backend("w1", Some(TOKEN)));
        assert_eq!(response.status, 503);
    }
    assert!(frontend.node("w1").is_none());
    assert_eq!(register_ok(&frontend, "w1")["status"], "pending");
    assert_eq!(register_ok(&frontend, "w1")["status"], "healthy");

    // A dropped connection gets no answer at all, and is recorded without a status.
    frontend.inject(Route::Register, Fault::Close, 1);
    let mut stream = TcpStream::connect(frontend.addr()).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    let body = backend("w1", Some(TOKEN));
    let head = format!(
        "POST /api/node/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(&body).expect("write body");
    assert!(read_response(&mut stream, false).is_none());
    let last = frontend.requests().pop().expect("recorded");
    assert_eq!(last.status, None);

    // A delay answers normally, late.
    frontend.inject(
        Route::Heartbeat,
        Fault::Delay(Duration::from_millis(200)),
        1,
    );
    let start = Instant::now();
    let response = post(&frontend, "/api/node/nope/heartbeat", Some(TOKEN));
    assert_eq!(response.status, 404);
    assert!(start.elapsed() >= Duration::from_millis(200));

    // A token the worker does not hold makes register 401 from then on.
    frontend.set_token("another-token");
    let response = register(&frontend, Some(TOKEN), &backend("w1", Some(TOKEN)));
    assert_eq!(response.status, 401);
}

#[test]
fn registrations_are_recorded_with_header_and_body_token() {
    let frontend = Frontend::start(FrontendOptions::default());
    let before = Instant::now();
    register_ok(&frontend, "w1");
    assert!(frontend.wait_for_requests("/api/node/register", 1, Duration::from_secs(2)));
    assert!(frontend.wait_for(|f| f.node("w1").is_some(), Duration::from_secs(2)));
    assert!(!frontend.wait_for(|f| f.node("w2").is_some(), Duration::from_millis(60)));
    let recorded = frontend.requests_to("/api/node/register");
    assert_eq!(recorded.len(), 1);
    let recorded = &recorded[0];
    assert!(recorded.at >= before);
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.bearer(), Some(TOKEN));
    assert_eq!(recorded.header("Content-Type"), Some("application/json"));
    assert_eq!(recorded.json().expect("JSON body")["token"], TOKEN);
    assert_eq!(recorded.status, Some(201));
    assert_eq!(
        recorded.response_json().expect("JSON answer")["status"],
        "healthy"
    );
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let frontend = Frontend::start(FrontendOptions::default());
    let mut stream = TcpStream::connect(frontend.addr()).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    let body = backend("w1", Some(TOKEN));
    let request = format!(
        "POST /api/node/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(&body);
    stream.write_all(&bytes).expect("first request");
    let first = read_response(&mut stream, false).expect("first answer");
    assert_eq!(first.status, 201);
    let id = first.json()["id"].as_str().expect("id").to_owned();
    let second = format!(
        "POST /api/node/{id}/heartbeat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(second.as_bytes()).expect("second request");
    let second = read_response(&mut stream, false).expect("second answer");
    assert_eq!(second.status, 200);
    assert_eq!(frontend.node("w1").expect("node").heartbeats, 1);
    let requests = frontend.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].peer, requests[1].peer);
}

#[test]
fn a_pooled_hyper_client_reuses_its_connection() {
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let frontend = Frontend::start(FrontendOptions::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client: Client<_, Full<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        for round in 0..3 {
            let request = http::Request::post(format!("{}/api/node/register", frontend.url()))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(backend("w1", Some(TOKEN)))))
                .expect("request");
            let response = tokio::time::timeout(CLIENT_TIMEOUT, client.request(request))
                .await
                .expect("answered in time")
                .expect("a response");
            assert_eq!(response.status(), 201, "round {round}");
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let json: Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(json["status"], "healthy");
        }
    });
    assert_eq!(frontend.node("w1").expect("node").registrations, 3);
    let peers: Vec<_> = frontend.requests().iter().map(|r| r.peer).collect();
    assert!(
        peers.windows(2).all(|w| w[0] == w[1]),
        "one connection: {peers:?}"
    );
}
