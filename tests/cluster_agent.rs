//! The agent worker (`examples/agent-worker.rs`, `member::start_agent`) end to end (issue 9
//! test 11): it registers as `node_type: agent`, gets an agent JWT minted by the frontend,
//! confirms its subscriptions (a JWT that denies one fails the start), logs what arrives on
//! `agent.execute`, heartbeats, and exits 0 on SIGTERM after draining. And the startup matrix of
//! the agent binary: the umbrella switch without NATS credentials refuses (exit 1), no
//! registration token warns once, token + credentials start without a warning. Every output is
//! checked for the secrets configured.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    Bus, MemberCommand, REG_TOKEN, Secrets, TcpCounter, custom_minter, recording_minter,
};
use common::frontend::{Frontend, FrontendOptions, NodeStatus};
use common::nats::{Auth, NatsServer, Operator, unix_now};
use nodegate::jwt::Permissions;
use serde_json::json;

/// How long an agent may take to serve its subjects.
const READY: Duration = Duration::from_secs(20);
/// The line the example logs once `start_agent` handed it the connection.
const SERVING: &str = "agent worker is serving its subjects";

#[test]
fn agent_registers_as_agent_gets_a_minted_jwt_logs_agent_execute_and_exits_0_on_sigterm() {
    let secrets = Secrets::new();
    let operator = Arc::new(Operator::new());
    secrets.add("NATS account seed", &operator.account_seed());
    let nats = NatsServer::start(&operator.auth());
    let (minter, mints) = recording_minter(&operator, 3600, &secrets);
    let frontend = Frontend::start(FrontendOptions {
        token: REG_TOKEN.to_owned(),
        minter: Some(minter),
        ..FrontendOptions::default()
    });
    let name = "agent-e2e";
    let mut agent = MemberCommand::agent(name, &secrets)
        .register_to(&frontend)
        .token()
        .nats(&nats)
        .nats_require_auth()
        .spawn();
    agent.expect_log(SERVING, READY);

    // Registered as an agent, token in header and body, with an agent JWT minted.
    let registers = frontend.requests_to("/api/node/register");
    assert_eq!(registers.len(), 1);
    assert_eq!(registers[0].bearer(), Some(REG_TOKEN));
    let body = registers[0].json().expect("JSON body");
    assert_eq!(body["node_type"], "agent");
    assert_eq!(body["token"], REG_TOKEN);
    assert_eq!(body["name"], name);
    let node = frontend.node(name).expect("registered");
    assert_eq!(node.node_type, "agent");
    let minted = mints.last().expect("minted");
    assert_eq!(
        (minted.node_id.as_str(), minted.node_type.as_str()),
        (node.id.as_str(), "agent")
    );
    agent.expect_log(
        &format!(
            "agent-worker ready: node {}, subscribed to its NATS subjects",
            node.id
        ),
        Duration::from_secs(1),
    );
    agent.expect_log(
        "NATS bus: protected (connected with the user JWT minted by the frontend",
        Duration::from_secs(1),
    );
    assert!(agent.warn_lines().is_empty(), "{:?}", agent.warn_lines());

    // A job published on agent.execute reaches the agent's subscription.
    let (jwt, seed) = operator.mint_user_with(
        Permissions {
            publish: vec!["agent.>".to_owned(), "_INBOX.>".to_owned()],
            subscribe: vec!["_INBOX.>".to_owned()],
        },
        Some(unix_now() + 600),
    );
    let bus = Bus::connect_jwt(&nats.url(), &jwt, &seed);
    bus.publish("agent.execute", br#"{"job":"e2e"}"#);
    agent.expect_log(
        "agent message received on agent.execute",
        Duration::from_secs(5),
    );
    assert!(
        agent.output().contains("subject=agent.execute"),
        "{}",
        agent.output()
    );

    // Heartbeats continue, with the agent's empty body.
    assert!(
        frontend.wait_for(
            |f| f.node(name).is_some_and(|n| n.heartbeats >= 2),
            Duration::from_secs(10)
        ),
        "heartbeats: {:?}",
        frontend.node(name).map(|n| n.heartbeats)
    );
    assert_eq!(
        frontend.node(name).and_then(|n| n.last_heartbeat_body),
        Some(json!({}))
    );

    // SIGTERM: drain, deregister, exit 0.
    let stop = Instant::now();
    agent.signal("TERM");
    let code = agent.expect_exit(Duration::from_secs(15));
    assert_eq!(code, 0, "{}", agent.output());
    let paths: Vec<String> = frontend
        .requests()
        .into_iter()
        .filter(|r| r.at >= stop && !r.path.ends_with("/heartbeat"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths.first().map(String::as_str),
        Some(format!("/api/node/{}/drain", node.id).as_str()),
        "{paths:?}"
    );
    assert_eq!(
        paths.last().map(String::as_str),
        Some(format!("/api/node/{}/deregister", node.id).as_str()),
        "{paths:?}"
    );
    assert_eq!(
        frontend.node(name).map(|n| n.status),
        Some(NodeStatus::Offline)
    );
    agent.assert_no_secrets();
}

/// Subscriptions are confirmed: a minted JWT that may not subscribe to `agent.execute` fails
/// the start (exit 1) naming the subject.
#[test]
fn agent_whose_jwt_denies_agent_execute_fails_its_start() {
    let secrets = Secrets::new();
    let operator = Arc::new(Operator::new());
    let nats = NatsServer::start(&operator.auth());
    let mint = Arc::clone(&operator);
    let minter = custom_minter(&secrets, move |_, _| {
        mint.mint_user_with(
            Permissions {
                subscribe: vec!["_INBOX.>".to_owned()],
                publish: vec!["_INBOX.>".to_owned()],
            },
            Some(unix_now() + 3600),
        )
    });
    let frontend = Frontend::start(FrontendOptions {
        token: REG_TOKEN.to_owned(),
        minter: Some(minter),
        ..FrontendOptions::default()
    });
    let mut agent = MemberCommand::agent("agent-e2e-denied", &secrets)
        .register_to(&frontend)
        .token()
        .nats(&nats)
        .nats_require_auth()
        .spawn();
    let code = agent.expect_exit(Duration::from_secs(30));
    assert_eq!(code, 1);
    let output = agent.output();
    assert!(
        output.contains("denied") && output.contains("agent.execute"),
        "{output}"
    );
    assert!(!output.contains(SERVING), "{output}");
    agent.assert_no_secrets();
}

/// Startup matrix, refuse row: the umbrella switch without NATS credentials. Without
/// `LOCALAI_REGISTER_TO` nothing can provide them: refused at once. With a frontend that mints
/// nothing: refused after approval, without ever opening a NATS connection (no anonymous
/// fallback).
#[test]
fn agent_under_the_umbrella_without_nats_credentials_refuses() {
    let secrets = Secrets::new();
    let nats = NatsServer::start(&Auth::Token("nats-Unused_token.e2e~0005".to_owned()));
    let counter = TcpCounter::start(std::net::SocketAddr::from(([127, 0, 0, 1], nats.port())));
    let frontend = Frontend::start(FrontendOptions {
        token: REG_TOKEN.to_owned(),
        ..FrontendOptions::default()
    });

    let mut alone = MemberCommand::agent("agent-e2e-umbrella-alone", &secrets)
        .token()
        .env("LOCALAI_NATS_URL", counter.nats_url())
        .umbrella()
        .spawn();
    let mut unminted = MemberCommand::agent("agent-e2e-umbrella-unminted", &secrets)
        .register_to(&frontend)
        .token()
        .env("LOCALAI_NATS_URL", counter.nats_url())
        .umbrella()
        .spawn();

    assert_eq!(alone.expect_exit(Duration::from_secs(10)), 1);
    let output = alone.output();
    assert!(
        output.contains("refusing to start")
            && output.contains("LOCALAI_DISTRIBUTED_REQUIRE_AUTH")
            && output.contains("LOCALAI_REGISTER_TO"),
        "{output}"
    );

    assert_eq!(unminted.expect_exit(Duration::from_secs(20)), 1);
    let output = unminted.output();
    assert!(
        output.contains("minted no NATS credentials")
            && output.contains("refusing to connect anonymously"),
        "{output}"
    );
    assert_eq!(
        frontend
            .node("agent-e2e-umbrella-unminted")
            .map(|n| n.registrations),
        Some(1)
    );
    assert_eq!(counter.accepted(), 0, "a NATS connection was opened");
    alone.assert_no_secrets();
    unminted.assert_no_secrets();
}

/// Startup matrix, warn and protected rows: without a registration token the agent starts with
/// exactly one warning naming `LOCALAI_REGISTRATION_TOKEN`; with the token and NATS credentials
/// it starts without any warning.
#[test]
fn agent_without_token_warns_once_and_with_token_and_credentials_does_not_warn() {
    let secrets = Secrets::new();
    let nats_token = "nats-Agent_token.e2e~0006";
    let nats = NatsServer::start(&Auth::Token(nats_token.to_owned()));
    let open_frontend = Frontend::start(FrontendOptions {
        token: String::new(),
        ..FrontendOptions::default()
    });
    let frontend = Frontend::start(FrontendOptions {
        token: REG_TOKEN.to_owned(),
        ..FrontendOptions::default()
    });
    let mut warned = MemberCommand::agent("agent-e2e-notoken", &secrets)
        .register_to(&open_frontend)
        .nats(&nats)
        .secret("LOCALAI_NATS_TOKEN", nats_token)
        .spawn();
    let mut quiet = MemberCommand::agent("agent-e2e-quiet", &secrets)
        .register_to(&frontend)
        .token()
        .nats(&nats)
        .secret("LOCALAI_NATS_TOKEN", nats_token)
        .spawn();

    warned.expect_log(SERVING, READY);
    let warnings = warned.warn_lines();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("LOCALAI_REGISTRATION_TOKEN"),
        "{warnings:?}"
    );
    let body = open_frontend.requests_to("/api/node/register")[0]
        .json()
        .expect("JSON");
    assert!(body.get("token").is_none(), "{body}");
    warned.assert_no_secrets();

    quiet.expect_log(SERVING, READY);
    assert!(quiet.warn_lines().is_empty(), "{:?}", quiet.warn_lines());
    quiet.expect_log(
        "NATS bus: protected (connected with the credential in LOCALAI_NATS_TOKEN;",
        Duration::from_secs(1),
    );
    quiet.assert_no_secrets();
}
