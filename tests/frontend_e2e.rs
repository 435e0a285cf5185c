//! The reference frontend as a real process on loopback (issue 10), with `nats-server` in
//! operator mode started from the files `nats-setup` wrote, a small in-test client that speaks
//! as LocalAI's worker does (spec §4.3: token in the header **and** the body), and the real
//! `worker` binary.
//!
//! Every test bounds each wait, kills its processes on every path (`Proc` kills on drop, also
//! when an assertion panics), and ends by scanning every captured stdout/stderr for secrets
//! (`assert_no_secret_in`: the tokens, the seeds, the JWTs it saw, and anything shaped like a
//! seed or a JWT).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use base64::Engine as _;
use common::nats::round_trip;
use common::processes::{
    FrontendClient, NatsFiles, Proc, STARTUP, assert_no_secret_in, frontend_command, loopback,
    outputs_of, run_nats_setup, secret_shaped, start_frontend, worker_body,
};
use common::{free_port, request_to};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The registration token of the cluster (every worker holds it).
const TOKEN: &str = "e2e-registration-Token_1";
/// The administrator's token (never the registration token).
const ADMIN: &str = "e2e-admin-Token_2";

fn base_secrets() -> Vec<String> {
    vec![TOKEN.to_owned(), ADMIN.to_owned()]
}

/// The lines logged at WARN level (plain format: `<time>  WARN <target>: <message>`).
fn warn_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("WARN"))
        .collect()
}

/// A frontend with the registration and admin tokens, minting from the nats-setup account
/// and connected to its nats-server with the service user, everything required
/// (`LOCALAI_DISTRIBUTED_REQUIRE_AUTH=true`).
fn protected_frontend(nats: &NatsFiles, port: u16, registry: &str) -> Proc {
    let mut command = frontend_command(port, registry);
    command
        .env("LOCALAI_DISTRIBUTED", "true")
        .env("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true")
        .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
        .env("NODEGATE_ADMIN_TOKEN", ADMIN)
        .env("LOCALAI_NATS_URL", nats.url())
        .env("LOCALAI_NATS_SERVICE_JWT", &nats.service_jwt)
        .env("LOCALAI_NATS_SERVICE_SEED", &nats.service_seed)
        .env("LOCALAI_NATS_ACCOUNT_SEED", &nats.account_seed);
    start_frontend(command, port)
}

/// A frontend without NATS: tokens, an optional account seed (minting works without a bus),
/// and extra variables.
fn plain_frontend(
    port: u16,
    registry: &str,
    account_seed: Option<&str>,
    extra: &[(&str, &str)],
) -> Proc {
    let mut command = frontend_command(port, registry);
    command
        .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
        .env("NODEGATE_ADMIN_TOKEN", ADMIN);
    if let Some(seed) = account_seed {
        command.env("LOCALAI_NATS_ACCOUNT_SEED", seed);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    start_frontend(command, port)
}

fn client(port: u16) -> FrontendClient<'static> {
    FrontendClient {
        addr: loopback(port),
        token: Some(TOKEN),
        admin: Some(ADMIN),
    }
}

fn is_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// The claims of a NATS JWT (its payload, not verified: the server verifies it below).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v.as_str().expect("a subject").to_owned())
        .collect()
}

fn account_public_key(seed: &str) -> String {
    nkeys::KeyPair::from_seed(seed)
        .expect("account seed")
        .public_key()
}

// -- NATS clients ----------------------------------------------------------------------------

/// [`round_trip`] for the frontend's service user, whose publish allow list has no
/// `_INBOX.>` (spec §5.5): a request on `state.<inbox>` (allowed, and nobody listens there),
/// answered by the server's "no responders".
async fn service_round_trip(service: &async_nats::Client) {
    let subject = format!(
        "state.roundtrip.{}",
        service.new_inbox().replace("_INBOX.", "")
    );
    match service.request(subject, bytes::Bytes::new()).await {
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
        Err(e) => panic!("service round trip: expected `no responders`, got {e}"),
        Ok(_) => panic!("service round trip: nobody should answer"),
    }
}

/// What the service user sees of the subjects workers may publish on (its subscribe allow
/// list has no `>`, so one subscription per prefix).
async fn observe(
    service: &async_nats::Client,
) -> futures_util::stream::SelectAll<async_nats::Subscriber> {
    let mut subs = Vec::new();
    for prefix in ["nodes.>", "agent.>", "jobs.>", "gallery.>", "mcp.>"] {
        subs.push(
            service
                .subscribe(prefix)
                .await
                .expect("observer subscription"),
        );
    }
    service_round_trip(service).await;
    futures_util::stream::select_all(subs)
}

type Observer = futures_util::stream::SelectAll<async_nats::Subscriber>;

fn jwt_options(jwt: &str, seed: &str) -> ConnectOptions {
    let pair = std::sync::Arc::new(nkeys::KeyPair::from_seed(seed).expect("user seed"));
    ConnectOptions::with_jwt(jwt.to_owned(), move |nonce| {
        let pair = pair.clone();
        async move { pair.sign(&nonce).map_err(async_nats::AuthError::new) }
    })
    .connection_timeout(Duration::from_secs(3))
}

/// Connects with `jwt` + `seed`; server errors (permission violations) go to the receiver.
async fn connect_observed(
    url: &str,
    jwt: &str,
    seed: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = jwt_options(jwt, seed).event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let Event::ServerError(err) = event {
                let text = match err {
                    ServerError::Other(text) => text,
                    other => other.to_string(),
                };
                let _ = tx.send(text);
            }
        }
    });
    let client = options
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect with the minted JWT: {e} ({:?})", e.kind()));
    (client, rx)
}

/// The next server error within a short bound (`None`: there was none).
async fn next_error(rx: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_millis(1500), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn no_more_errors(rx: &mut mpsc::UnboundedReceiver<String>) {
    let stray = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(
        !matches!(stray, Ok(Some(_))),
        "unexpected server error: {stray:?}"
    );
}

async fn expect_message(sub: &mut async_nats::Subscriber, subject: &str) {
    let got = tokio::time::timeout(Duration::from_secs(3), sub.next())
        .await
        .unwrap_or_else(|_| panic!("no message on {subject}"))
        .expect("subscription open");
    assert_eq!(got.subject.as_str(), subject);
}

async fn expect_observed(observer: &mut Observer, subject: &str) {
    let got = tokio::time::timeout(Duration::from_secs(3), observer.next())
        .await
        .unwrap_or_else(|_| panic!("the observer saw nothing on {subject}"))
        .expect("subscriptions open");
    assert_eq!(got.subject.as_str(), subject);
}

async fn expect_silence(sub: &mut Observer) {
    let stray = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    if let Ok(Some(message)) = stray {
        panic!("a forbidden publish got through: {}", message.subject);
    }
}

/// A publish the server must refuse: a `Permissions Violation for Publish` event, nothing
/// delivered to `observer`.
async fn publish_denied(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    observer: &mut Observer,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), "no".into())
        .await
        .expect("publish is not refused locally");
    round_trip(client).await;
    assert_eq!(
        next_error(errors).await.as_deref(),
        Some(format!(r#"Permissions Violation for Publish to "{subject}""#).as_str()),
        "publish to {subject}"
    );
    expect_silence(observer).await;
}

/// A publish the server must allow: delivered to `observer`, no violation.
async fn publish_allowed(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    observer: &mut Observer,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), "ok".into())
        .await
        .expect("publish");
    round_trip(client).await;
    expect_observed(observer, subject).await;
    no_more_errors(errors).await;
}

async fn subscribe_denied(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    subject: &str,
) {
    let _sub = client
        .subscribe(subject.to_owned())
        .await
        .expect("subscribe is not refused locally");
    round_trip(client).await;
    assert_eq!(
        next_error(errors).await.as_deref(),
        Some(format!(r#"Permissions Violation for Subscription to "{subject}""#).as_str()),
        "subscribe to {subject}"
    );
}

/// Subscribes to `subject` (no violation) and receives what the service user publishes on
/// `concrete` (a subject it matches).
async fn subscribe_allowed(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    service: &async_nats::Client,
    subject: &str,
    concrete: &str,
) {
    let mut sub = client
        .subscribe(subject.to_owned())
        .await
        .expect("subscribe");
    round_trip(client).await;
    no_more_errors(errors).await;
    service
        .publish(concrete.to_owned(), "{}".into())
        .await
        .expect("service publish");
    expect_message(&mut sub, concrete).await;
}

/// Registers `name` (pending), approves it with the admin route, re-registers: returns the
/// healthy answer with minted credentials. Checks the pending answers carry none.
fn approved_credentials(client: FrontendClient<'_>, name: &str, agent: bool) -> Value {
    let register = || {
        if agent {
            client.register_agent(name)
        } else {
            client.register(name)
        }
    };
    let first = register();
    assert_eq!(first["status"], "pending", "{first}");
    assert!(
        first.get("nats_jwt").is_none() && first.get("nats_user_seed").is_none(),
        "a pending node gets no credentials: {first}"
    );
    let id = first["id"].as_str().expect("id").to_owned();
    assert!(is_uuid(&id), "{id}");
    let again = register();
    assert_eq!(
        (again["id"].as_str(), again["status"].as_str()),
        (Some(id.as_str()), Some("pending"))
    );
    assert!(again.get("nats_jwt").is_none(), "{again}");
    // The registration token is not an admin token; no token at all neither.
    for token in [Some(TOKEN), None] {
        let refused = client.approve_with(&id, token);
        assert_eq!(
            refused.status,
            401,
            "approve with {token:?}: {}",
            refused.text()
        );
        assert_eq!(refused.json(), json!({"error": "invalid admin token"}));
    }
    assert_eq!(client.status_of(&id).as_deref(), Some("pending"));
    let approved = client.approve(&id);
    assert_eq!(approved["status"], "healthy", "{approved}");
    let healthy = register();
    assert_eq!(healthy["id"], id.as_str(), "re-registration keeps the id");
    assert_eq!(healthy["status"], "healthy", "{healthy}");
    healthy
}

/// Checks the claims of a minted JWT against §5.5 and returns them.
fn check_minted(answer: &Value, account_seed: &str, node_type: &str) -> Value {
    let id = answer["id"].as_str().expect("id");
    let jwt = answer["nats_jwt"].as_str().expect("nats_jwt in the answer");
    let seed = answer["nats_user_seed"]
        .as_str()
        .expect("nats_user_seed in the answer");
    assert!(seed.starts_with("SU"), "a user seed");
    let user = nkeys::KeyPair::from_seed(seed).expect("user seed");
    let c = claims(jwt);
    let account = account_public_key(account_seed);
    assert_eq!(
        c["sub"],
        user.public_key().as_str(),
        "subject = the user key"
    );
    assert_eq!(c["iss"], account.as_str(), "signed by the account");
    assert_eq!(c["nats"]["issuer_account"], account.as_str());
    assert_eq!(c["name"], format!("localai-{node_type}-{id}").as_str());
    assert_eq!(c["nats"]["type"], "user");
    assert!(
        c["nats"].get("bearer_token").is_none_or(|b| b == false),
        "never a bearer token (NA-08): {c}"
    );
    let exp = c["exp"].as_u64().expect("exp");
    let now = common::nats::unix_now();
    assert!(
        (now + 23 * 3600..=now + 24 * 3600 + 60).contains(&exp),
        "exp = now + 24h (LOCALAI_NATS_WORKER_JWT_TTL default): {exp} vs {now}"
    );
    c
}

// -- 1. nats-setup ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_setup_twice_gives_the_same_keys_private_files_no_seed_printed_and_a_server_that_starts()
 {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("nats");
    let port = free_port();
    let first = run_nats_setup(&dir, port);
    assert!(first.status.success(), "{}{}", first.stdout, first.stderr);
    let keys = ["operator.nk", "account.nk", "frontend-service.nk"];
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let before: Vec<String> = keys.iter().map(|k| read(k)).collect();
    let second = run_nats_setup(&dir, port);
    assert!(
        second.status.success(),
        "{}{}",
        second.stdout,
        second.stderr
    );
    let after: Vec<String> = keys.iter().map(|k| read(k)).collect();
    assert_eq!(before, after, "a second run keeps every key");
    for key in keys {
        assert!(
            first
                .stdout
                .contains(&format!("created {}/{key}", dir.display())),
            "{}",
            first.stdout
        );
        assert!(
            second
                .stdout
                .contains(&format!("kept    {}/{key}", dir.display())),
            "{}",
            second.stdout
        );
    }
    let mut nats = NatsFiles::read(&dir, port);
    assert!(nats.account_seed.starts_with("SA") && nats.operator_seed.starts_with("SO"));
    assert!(nats.service_seed.starts_with("SU"));
    // The account the server will trust is the one the frontend mints with.
    assert!(
        second
            .stdout
            .contains(&account_public_key(&nats.account_seed)),
        "{}",
        second.stdout
    );
    // Every file 0600, the directory 0700.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in [
        "account.jwt",
        "account.nk",
        "frontend-service.jwt",
        "frontend-service.nk",
        "nats-server.conf",
        "operator.jwt",
        "operator.nk",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    for name in &names {
        let mode = std::fs::metadata(dir.join(name))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the directory");
    // The environment lines name the variables and read the seeds from the files.
    for var in [
        "LOCALAI_NATS_ACCOUNT_SEED",
        "LOCALAI_NATS_SERVICE_JWT",
        "LOCALAI_NATS_SERVICE_SEED",
    ] {
        assert!(second.stdout.contains(var), "{}", second.stdout);
    }
    let runs = vec![
        (
            "nats-setup #1".to_owned(),
            format!("{}{}", first.stdout, first.stderr),
        ),
        (
            "nats-setup #2".to_owned(),
            format!("{}{}", second.stdout, second.stderr),
        ),
    ];
    assert_no_secret_in(&runs, &nats.secrets());

    // nats-server starts from those files, in operator mode.
    let server = nats.start_server();
    let anonymous = ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats.url())
        .await;
    assert_eq!(
        anonymous.err().map(|e| e.kind()),
        Some(ConnectErrorKind::AuthorizationViolation),
        "operator mode refuses anonymous clients"
    );
    let service = tokio::time::timeout(
        Duration::from_secs(5),
        jwt_options(&nats.service_jwt, &nats.service_seed).connect(nats.url()),
    )
    .await
    .expect("bounded")
    .expect("the service user connects");
    assert!(
        service.server_info().auth_required,
        "the server requires auth"
    );
    service_round_trip(&service).await;
    let mut outputs = runs;
    outputs.extend(outputs_of(&[&server]));
    assert_no_secret_in(&outputs, &nats.secrets());
}

#[test]
fn the_secret_scan_catches_seeds_and_jwts() {
    let seed = nkeys::KeyPair::new_user().seed().expect("seed");
    assert_eq!(secret_shaped(&format!("x={seed}.\n")), Some("nkey seed"));
    let account = nkeys::KeyPair::new_account().seed().expect("seed");
    assert_eq!(secret_shaped(&format!("\"{account}\"")), Some("nkey seed"));
    let public = nkeys::KeyPair::new_user().public_key();
    assert_eq!(
        secret_shaped(&format!("user {public}")),
        None,
        "public keys are fine"
    );
    assert_eq!(
        secret_shaped("jwt=eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig end"),
        Some("JWT")
    );
    assert_eq!(
        secret_shaped("node 5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab healthy"),
        None
    );
}

// -- 2. Registration, approval, minted permissions ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_backend_and_agent_get_exactly_the_5_5_permissions_enforced_by_nats_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut nats = NatsFiles::create(tmp.path());
    let server = nats.start_server();
    let port = free_port();
    let registry = tmp.path().join("registry.sqlite");
    let frontend = protected_frontend(&nats, port, &registry.display().to_string());
    let log = frontend.output();
    assert!(
        log.contains("NATS bus: protected"),
        "the frontend reports the bus protected:\n{log}"
    );
    assert!(
        warn_lines(&log).is_empty(),
        "no warning when everything is protected:\n{log}"
    );
    let client = client(port);
    let mut secrets = base_secrets();
    secrets.extend(nats.secrets());

    // The frontend's own service user observes the bus.
    let (service, mut service_errors) =
        connect_observed(&nats.url(), &nats.service_jwt, &nats.service_seed).await;

    // --- backend
    let backend = tokio::task::block_in_place(|| approved_credentials(client, "gpu-e2e-1", false));
    let c = check_minted(&backend, &nats.account_seed, "backend");
    let id = backend["id"].as_str().expect("id").to_owned();
    assert_eq!(
        strings(&c["nats"]["sub"]["allow"]),
        [format!("nodes.{id}.>"), "_INBOX.>".to_owned()]
    );
    assert_eq!(
        strings(&c["nats"]["pub"]["allow"]),
        [
            format!("nodes.{id}.backend.install.*.progress"),
            format!("nodes.{id}.files.>"),
            "_INBOX.>".to_owned()
        ]
    );
    assert!(c["nats"]["sub"].get("deny").is_none() && c["nats"]["pub"].get("deny").is_none());
    let jwt = backend["nats_jwt"].as_str().expect("jwt");
    let seed = backend["nats_user_seed"].as_str().expect("seed");
    secrets.extend([jwt.to_owned(), seed.to_owned()]);
    let (worker, mut errors) = connect_observed(&nats.url(), jwt, seed).await;
    assert!(worker.server_info().auth_required);
    let mut observer = observe(&service).await;
    // Inside the allow lists.
    publish_allowed(
        &worker,
        &mut errors,
        &mut observer,
        &format!("nodes.{id}.files.x"),
    )
    .await;
    publish_allowed(
        &worker,
        &mut errors,
        &mut observer,
        &format!("nodes.{id}.backend.install.op1.progress"),
    )
    .await;
    subscribe_allowed(
        &worker,
        &mut errors,
        &service,
        &format!("nodes.{id}.>"),
        &format!("nodes.{id}.backend.list"),
    )
    .await;
    let _ = next_error(&mut service_errors)
        .await
        .map(|e| panic!("service: {e}"));
    // Drain what the observer saw of the service's own publish.
    while tokio::time::timeout(Duration::from_millis(200), observer.next())
        .await
        .is_ok()
    {}
    // Outside them.
    let other = "5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab";
    for subject in [
        format!("nodes.{id}.backend.install"),
        format!("nodes.{id}.backend.install.op1.other"),
        format!("nodes.{other}.files.x"),
        "agent.execute".to_owned(),
        "jobs.j1.result".to_owned(),
    ] {
        publish_denied(&worker, &mut errors, &mut observer, &subject).await;
    }
    for subject in [
        format!("nodes.{other}.>"),
        "nodes.>".to_owned(),
        "agent.execute".to_owned(),
        ">".to_owned(),
    ] {
        subscribe_denied(&worker, &mut errors, &subject).await;
    }

    // --- agent
    let agent = tokio::task::block_in_place(|| approved_credentials(client, "agent-e2e-1", true));
    let c = check_minted(&agent, &nats.account_seed, "agent");
    let aid = agent["id"].as_str().expect("id").to_owned();
    let agent_subs = [
        "agent.execute",
        "agent.*.cancel",
        "gallery.*.cancel",
        "gallery.*.progress",
        "jobs.*.cancel",
        "jobs.*.progress",
        "jobs.*.result",
        "jobs.mcp-ci.new",
        "mcp.tools.execute",
        "mcp.discovery",
        &format!("nodes.{aid}.backend.stop"),
        "staging.*.progress",
        "_INBOX.>",
    ]
    .map(str::to_owned);
    assert_eq!(strings(&c["nats"]["sub"]["allow"]), agent_subs);
    assert_eq!(
        strings(&c["nats"]["pub"]["allow"]),
        ["agent.>", "jobs.>", "_INBOX.>"]
    );
    let jwt = agent["nats_jwt"].as_str().expect("jwt");
    let seed = agent["nats_user_seed"].as_str().expect("seed");
    secrets.extend([jwt.to_owned(), seed.to_owned()]);
    let (agent_client, mut errors) = connect_observed(&nats.url(), jwt, seed).await;
    for subject in &agent_subs[..agent_subs.len() - 1] {
        let concrete = subject.replace('*', "x1");
        subscribe_allowed(&agent_client, &mut errors, &service, subject, &concrete).await;
    }
    while tokio::time::timeout(Duration::from_millis(200), observer.next())
        .await
        .is_ok()
    {}
    publish_allowed(&agent_client, &mut errors, &mut observer, "agent.a1.event").await;
    publish_allowed(&agent_client, &mut errors, &mut observer, "jobs.j1.result").await;
    for subject in [
        format!("nodes.{aid}.files.x"),
        "gallery.g1.progress".to_owned(),
        "mcp.tools.execute".to_owned(),
    ] {
        publish_denied(&agent_client, &mut errors, &mut observer, &subject).await;
    }
    for subject in [
        format!("nodes.{aid}.>"),
        format!("nodes.{aid}.backend.install"),
        format!("nodes.{id}.backend.stop"),
        "jobs.>".to_owned(),
    ] {
        subscribe_denied(&agent_client, &mut errors, &subject).await;
    }
    assert_eq!(
        next_error(&mut service_errors).await,
        None,
        "the service user was never refused"
    );

    drop((worker, agent_client, service));
    assert_no_secret_in(&outputs_of(&[&frontend, &server]), &secrets);
}

// -- 3. Wrong or missing tokens ----------------------------------------------------------------

#[test]
fn wrong_or_missing_tokens_get_401_with_localai_bodies_and_change_nothing() {
    let port = free_port();
    let frontend = plain_frontend(port, ":memory:", None, &[]);
    let addr = loopback(port);
    let client = client(port);
    let flat = |text: &str| json!({"error": text});
    let node_error =
        |text: &str| json!({"error": {"code": 401, "message": text, "type": "node_error"}});
    let missing_header = flat("missing or invalid Authorization header");
    let wrong_header = flat("invalid registration token");
    let cases: [(&str, Option<&str>, Option<&str>, Value); 9] = [
        (
            "no header, body token",
            None,
            Some(TOKEN),
            missing_header.clone(),
        ),
        (
            "wrong header, body token",
            Some("wrong-token"),
            Some(TOKEN),
            wrong_header.clone(),
        ),
        (
            "header, no body token",
            Some(TOKEN),
            None,
            node_error("registration token required"),
        ),
        (
            "header, empty body token",
            Some(TOKEN),
            Some(""),
            node_error("registration token required"),
        ),
        (
            "header, wrong body token",
            Some(TOKEN),
            Some("wrong-token"),
            node_error("invalid registration token"),
        ),
        (
            "header, admin token in body",
            Some(TOKEN),
            Some(ADMIN),
            node_error("invalid registration token"),
        ),
        ("neither", None, None, missing_header.clone()),
        (
            "both wrong",
            Some("wrong-token"),
            Some("wrong-token"),
            wrong_header.clone(),
        ),
        (
            "admin token as header",
            Some(ADMIN),
            Some(TOKEN),
            wrong_header.clone(),
        ),
    ];
    for (what, header, body_token, expected) in cases {
        let response = client.register_raw(header, &worker_body("intruder", body_token));
        assert_eq!(response.status, 401, "{what}: {}", response.text());
        assert_eq!(response.json(), expected, "{what}");
    }
    // Other schemes are no bearer.
    let response = request_to(
        addr,
        "POST",
        "/api/node/register",
        None,
        &[
            ("Authorization", &format!("Basic {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        worker_body("intruder", Some(TOKEN)).to_string().as_bytes(),
    );
    assert_eq!(
        (response.status, response.json()),
        (401, missing_header.clone())
    );
    assert!(
        client.list().is_empty(),
        "no refused request registered anything"
    );

    // The other node routes check the header only, and change nothing when it is wrong.
    let id = client.register("gpu-token")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for verb in ["heartbeat", "drain", "resume", "deregister"] {
        for (token, expected) in [
            (None, &missing_header),
            (Some("wrong-token"), &wrong_header),
        ] {
            let response = request_to(
                addr,
                "POST",
                &format!("/api/node/{id}/{verb}"),
                token,
                &[],
                b"{}",
            );
            assert_eq!(
                (response.status, &response.json()),
                (401, expected),
                "{verb} with {token:?}"
            );
        }
    }
    for (method, target) in [
        ("GET", format!("/api/node/{id}/models")),
        ("DELETE", format!("/api/node/{id}")),
    ] {
        let response = request_to(addr, method, &target, Some("wrong-token"), &[], b"");
        assert_eq!(
            (response.status, response.json()),
            (401, wrong_header.clone()),
            "{method} {target}"
        );
    }
    assert_eq!(client.status_of(&id).as_deref(), Some("pending"));
    // With the token, the same routes answer.
    assert_eq!(
        client.node(&id, "heartbeat").json(),
        json!({"message": "heartbeat received"})
    );
    assert_no_secret_in(&outputs_of(&[&frontend]), &base_secrets());
}

// -- 4. No approval bypass (D12) ----------------------------------------------------------------

#[test]
fn resume_drain_deregister_and_re_registration_never_bypass_approval() {
    let tmp = tempfile::tempdir().expect("tmp");
    let account = nkeys::KeyPair::new_account().seed().expect("seed");
    let port = free_port();
    let frontend = plain_frontend(port, ":memory:", Some(&account), &[]);
    let client = client(port);
    let addr = loopback(port);
    let first = client.register("gpu-d12");
    let id = first["id"].as_str().expect("id").to_owned();
    let pending = |answer: &Value| {
        assert_eq!(answer["status"], "pending", "{answer}");
        assert_eq!(answer["id"], id.as_str());
        assert!(
            answer.get("nats_jwt").is_none(),
            "no credentials while pending: {answer}"
        );
    };
    pending(&first);
    let awaiting = json!({"error": {"code": 409, "message": "node is pending admin approval", "type": "node_error"}});
    let resume = client.node(&id, "resume");
    assert_eq!((resume.status, resume.json()), (409, awaiting.clone()));
    assert_eq!(
        client.status_of(&id).as_deref(),
        Some("pending"),
        "resume did not un-pend"
    );
    assert_eq!(client.node(&id, "heartbeat").status, 200);
    assert_eq!(
        client.status_of(&id).as_deref(),
        Some("pending"),
        "a heartbeat does not approve"
    );
    assert_eq!(
        client.node(&id, "drain").json(),
        json!({"message": "node set to draining"})
    );
    assert_eq!(client.status_of(&id).as_deref(), Some("draining"));
    assert_eq!(
        client.node(&id, "resume").status,
        409,
        "resume from draining"
    );
    pending(&client.register("gpu-d12"));
    assert_eq!(
        client.node(&id, "deregister").json(),
        json!({"message": "node set to offline"})
    );
    assert_eq!(client.status_of(&id).as_deref(), Some("offline"));
    assert_eq!(
        client.node(&id, "resume").status,
        409,
        "resume from offline"
    );
    pending(&client.register("gpu-d12"));
    let delete = request_to(
        addr,
        "DELETE",
        &format!("/api/node/{id}"),
        Some(TOKEN),
        &[],
        b"",
    );
    assert_eq!(delete.json(), json!({"message": "node set to offline"}));
    pending(&client.register("gpu-d12"));
    assert_eq!(client.list().len(), 1, "one node, one id");

    // Only approval makes it healthy; then resume works as LocalAI's.
    client.approve(&id);
    let healthy = client.register("gpu-d12");
    assert_eq!(healthy["status"], "healthy");
    assert!(healthy["nats_jwt"].is_string(), "credentials once approved");
    assert_eq!(client.node(&id, "drain").status, 200);
    assert_eq!(
        client.node(&id, "resume").json(),
        json!({"message": "node resumed"})
    );
    assert_eq!(client.status_of(&id).as_deref(), Some("healthy"));
    let again = client.approve_with(&id, Some(ADMIN));
    assert_eq!(
        again.status,
        400,
        "approval only from pending: {}",
        again.text()
    );
    let mut secrets = base_secrets();
    secrets.push(account);
    secrets
        .extend(["nats_jwt", "nats_user_seed"].map(|k| healthy[k].as_str().expect(k).to_owned()));
    assert_no_secret_in(&outputs_of(&[&frontend]), &secrets);
    drop(tmp);
}

// -- 5. Stale node → offline ---------------------------------------------------------------

#[test]
fn a_silent_node_goes_offline_and_a_fresh_heartbeat_brings_an_approved_one_back() {
    let port = free_port();
    let frontend = plain_frontend(
        port,
        ":memory:",
        None,
        &[
            ("NODEGATE_STALE_AFTER", "2s"),
            ("NODEGATE_HEALTH_CHECK_INTERVAL", "1s"),
        ],
    );
    let client = client(port);
    let live = client.register("gpu-live")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let silent = client.register("gpu-silent")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let pending = client.register("gpu-pending")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for id in [&live, &silent] {
        client.approve(id);
    }
    assert_eq!(client.status_of(&silent).as_deref(), Some("healthy"));
    // `live` heartbeats every 500 ms; the others stay silent.
    let start = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beating = {
        let (stop, live) = (stop.clone(), live.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(client.node(&live, "heartbeat").status, 200);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let offline_in_time = client.wait_status(&silent, "offline", Duration::from_secs(8));
    let took = start.elapsed();
    assert!(
        client.wait_status(&pending, "offline", Duration::from_secs(3)),
        "a silent pending node goes offline too"
    );
    // Keep watching past twice the threshold: the heartbeating node never leaves healthy.
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            client.status_of(&live).as_deref(),
            Some("healthy"),
            "a heartbeating node stays healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    beating.join().expect("heartbeat thread");
    assert!(
        offline_in_time,
        "the silent node is offline within 8 s:\n{}",
        frontend.output()
    );
    assert!(
        took >= Duration::from_secs(2),
        "not before the threshold: {took:?}"
    );
    // A fresh heartbeat: the approved node is healthy again, the pending one is not (D12).
    assert_eq!(client.node(&silent, "heartbeat").status, 200);
    assert_eq!(client.node(&pending, "heartbeat").status, 200);
    assert!(
        client.wait_status(&silent, "healthy", Duration::from_secs(3)),
        "{:?}",
        client.list()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        client.status_of(&pending).as_deref(),
        Some("offline"),
        "a heartbeat is no approval"
    );
    assert_no_secret_in(&outputs_of(&[&frontend]), &base_secrets());
}

// -- 6. Restart keeps approvals ----------------------------------------------------------------

#[test]
fn a_restarted_frontend_keeps_ids_and_approvals_from_its_sqlite_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = tmp.path().join("registry.sqlite").display().to_string();
    let account = nkeys::KeyPair::new_account().seed().expect("seed");
    let port = free_port();
    let mut frontend = plain_frontend(port, &registry, Some(&account), &[]);
    let client = client(port);
    let approved = client.register("gpu-kept")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    client.approve(&approved);
    assert_eq!(client.register("gpu-kept")["status"], "healthy");
    let waiting = client.register("gpu-waiting")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let status = frontend.terminate();
    assert!(
        status.success(),
        "SIGTERM → exit 0, got {status}:\n{}",
        frontend.output()
    );
    assert!(
        !common::wait_listening(loopback(port), Duration::from_millis(300)),
        "the first frontend is gone"
    );

    let second = plain_frontend(port, &registry, Some(&account), &[]);
    let nodes = client.list();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let again = client.register("gpu-kept");
    assert_eq!(again["id"], approved.as_str(), "same id after the restart");
    assert_eq!(
        again["status"], "healthy",
        "no new approval needed: {again}"
    );
    assert!(again["nats_jwt"].is_string() && again["nats_user_seed"].is_string());
    let still = client.register("gpu-waiting");
    assert_eq!(
        (still["id"].as_str(), still["status"].as_str()),
        (Some(waiting.as_str()), Some("pending"))
    );
    assert!(still.get("nats_jwt").is_none());
    let mut secrets = base_secrets();
    secrets.push(account);
    secrets.extend(["nats_jwt", "nats_user_seed"].map(|k| again[k].as_str().expect(k).to_owned()));
    assert_no_secret_in(&outputs_of(&[&frontend, &second]), &secrets);
}

// -- 8. The whole cluster with the real worker --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_setup_frontend_and_worker_pending_approved_ready_then_offline() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut nats = NatsFiles::create(tmp.path());
    let server = nats.start_server();
    let port = free_port();
    let frontend = protected_frontend(
        &nats,
        port,
        &tmp.path().join("reg.sqlite").display().to_string(),
    );
    let client = client(port);
    let worker_port = free_port();
    let worker_addr = loopback(worker_port);
    let mut command = common::processes::example_command("worker");
    command
        .env("LOCALAI_REGISTER_TO", format!("http://127.0.0.1:{port}"))
        .env("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true")
        .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
        .env("LOCALAI_NATS_URL", nats.url())
        .env("LOCALAI_HEARTBEAT_INTERVAL", "1s")
        .env("LOCALAI_HTTP_ADDR", format!("127.0.0.1:{worker_port}"))
        .env(
            "LOCALAI_ADVERTISE_HTTP_ADDR",
            format!("127.0.0.1:{worker_port}"),
        )
        .env("LOCALAI_MODELS_PATH", tmp.path().join("models"))
        .env("LOCALAI_NODE_NAME", "gpu-cluster-1");
    let mut worker = Proc::spawn("worker", command);
    // 0 while nothing listens (a pending worker serves nothing).
    let readyz = || {
        if std::net::TcpStream::connect_timeout(&worker_addr, Duration::from_millis(200)).is_err() {
            return 0;
        }
        request_to(worker_addr, "GET", "/readyz", None, &[], b"").status
    };

    // Pending: listed by the frontend, the worker not ready.
    let start = Instant::now();
    let id = loop {
        if let Some(node) = tokio::task::block_in_place(|| client.list())
            .into_iter()
            .find(|n| n["name"] == "gpu-cluster-1")
        {
            break node["id"].as_str().expect("id").to_owned();
        }
        assert!(
            worker.exited().is_none(),
            "the worker exited:\n{}",
            worker.output()
        );
        assert!(
            start.elapsed() < STARTUP,
            "the worker never registered:\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(client.status_of(&id).as_deref(), Some("pending"));
    assert!(
        !common::wait_listening(worker_addr, Duration::from_millis(200)),
        "a pending worker serves no files (and no /readyz):\n{}",
        worker.output()
    );

    tokio::task::block_in_place(|| client.approve(&id));
    let start = Instant::now();
    while readyz() != 200 {
        assert!(
            worker.exited().is_none(),
            "the worker exited:\n{}",
            worker.output()
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the worker is not ready after approval:\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.status_of(&id).as_deref(), Some("healthy"));
    // The worker is on the bus with its minted credentials: it answers its node subjects.
    let (service, _errors) =
        connect_observed(&nats.url(), &nats.service_jwt, &nats.service_seed).await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        service.request(format!("nodes.{id}.files.temp"), "{}".into()),
    )
    .await
    .expect("bounded")
    .expect("the worker replies on nodes.<id>.files.temp");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert!(reply["local_path"].is_string(), "{reply}");
    drop(service);

    // The frontend stages a file to the worker with the staging client, through the address
    // the worker registered; a second request finds it already there.
    let model = tmp.path().join("model.bin");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&model, &bytes).expect("model file");
    let staged = tokio::task::block_in_place(|| client.stage(&id, &model, "models/m/model.bin"));
    assert_eq!(staged.status, 200, "stage: {}", staged.text());
    let staged = staged.json();
    assert_eq!(staged["skipped"], false, "{staged}");
    let on_worker = tmp.path().join("models/m/model.bin");
    assert_eq!(std::fs::read(&on_worker).expect("staged file"), bytes);
    assert_eq!(
        staged["local_path"].as_str(),
        Some(on_worker.to_str().expect("utf-8 path"))
    );
    let again = tokio::task::block_in_place(|| client.stage(&id, &model, "models/m/model.bin"));
    assert_eq!(again.status, 200, "stage again: {}", again.text());
    assert_eq!(again.json()["skipped"], true);
    let refused = tokio::task::block_in_place(|| client.stage(&id, &model, "models/../x"));
    assert_eq!(refused.status, 400, "{}", refused.text());

    let status = tokio::task::block_in_place(|| worker.terminate());
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM → exit 0:\n{}",
        worker.output()
    );
    assert_eq!(
        client.status_of(&id).as_deref(),
        Some("offline"),
        "deregistered on SIGTERM"
    );
    let mut secrets = base_secrets();
    secrets.extend(nats.secrets());
    assert_no_secret_in(&outputs_of(&[&frontend, &worker, &server]), &secrets);
}
