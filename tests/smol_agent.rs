//! The smol adapter's agent worker ([`nodegate::smol_adapter::member::start_agent`]) in this
//! process, against the frontend double and a real operator-mode `nats-server`: it registers
//! as an agent, connects with the JWT the frontend minted, confirms its subscriptions and hands
//! them over (a job published on `agent.execute` arrives, heartbeats go on); a minted JWT that
//! denies `agent.execute` fails the start with exit code 1. Every wait is bounded.

#![cfg(feature = "smol")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{Bus, REG_TOKEN, Secrets, custom_minter, recording_minter};
use common::frontend::{Frontend, FrontendOptions};
use common::nats::{NatsServer, Operator, unix_now};
use nodegate::config::{Config, FileContents, Host, Role, Vars};
use nodegate::jwt::Permissions;
use nodegate::smol_adapter::member::start_agent;
use nodegate::smol_adapter::rt;

/// Bound on the start and on each wait.
const STEP: Duration = Duration::from_secs(20);

fn agent_config(name: &str, frontend: &Frontend, nats: &NatsServer) -> (Config, Host) {
    let host = Host {
        hostname: Some("smol-test".into()),
        pid: std::process::id(),
    };
    let vars = Vars::from_pairs([
        ("LOCALAI_REGISTER_TO", frontend.url()),
        ("LOCALAI_REGISTRATION_TOKEN", REG_TOKEN.to_owned()),
        ("LOCALAI_NATS_URL", nats.url()),
        ("LOCALAI_NATS_REQUIRE_AUTH", "true".to_owned()),
        ("LOCALAI_NODE_NAME", name.to_owned()),
        ("LOCALAI_HEARTBEAT_INTERVAL", "1s".to_owned()),
    ]);
    let config = Config::parse(Role::AgentWorker, &vars, &FileContents::new(), &host)
        .expect("valid agent settings");
    (config, host)
}

#[test]
fn the_agent_registers_connects_with_its_minted_jwt_and_receives_agent_execute() {
    let secrets = Secrets::new();
    let operator = Arc::new(Operator::new());
    let nats = NatsServer::start(&operator.auth());
    let (minter, mints) = recording_minter(&operator, 3600, &secrets);
    let frontend = Frontend::start(FrontendOptions {
        token: REG_TOKEN.to_owned(),
        minter: Some(minter),
        ..FrontendOptions::default()
    });
    let (config, host) = agent_config("smol-agent", &frontend, &nats);
    let mut agent = rt::block_on(rt::timeout(STEP, start_agent(config, host)))
        .expect("started in time")
        .unwrap_or_else(|code| panic!("the agent stopped with {code}"));
    let node = frontend.node("smol-agent").expect("registered");
    assert_eq!(node.node_type, "agent");
    assert_eq!(agent.node_id(), node.id);
    assert_eq!(mints.last().map(|m| m.node_type), Some("agent".to_owned()));

    let subscriptions = agent.take_subscriptions();
    let (_, execute) = subscriptions
        .iter()
        .find(|(s, _)| s.subject == "agent.execute")
        .expect("subscribed to agent.execute");
    let (jwt, seed) = operator.mint_user_with(
        Permissions {
            publish: vec!["agent.>".to_owned(), "_INBOX.>".to_owned()],
            subscribe: vec!["_INBOX.>".to_owned()],
        },
        Some(unix_now() + 600),
    );
    let bus = Bus::connect_jwt(&nats.url(), &jwt, &seed);
    bus.publish("agent.execute", br#"{"job":"smol"}"#);
    let msg = rt::block_on(rt::timeout(STEP, execute.next()))
        .expect("a job in time")
        .expect("the connection is open");
    assert_eq!(&msg.payload[..], br#"{"job":"smol"}"#);
    assert!(
        frontend.wait_for(
            |f| f.node("smol-agent").is_some_and(|n| n.heartbeats >= 2),
            STEP
        ),
        "heartbeats go on"
    );
    assert!(
        frontend
            .requests()
            .iter()
            .all(|r| r.bearer() == Some(REG_TOKEN)),
        "every request carried the token"
    );
}

#[test]
fn a_minted_jwt_that_denies_agent_execute_fails_the_start() {
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
    let (config, host) = agent_config("smol-agent-denied", &frontend, &nats);
    let started = rt::block_on(rt::timeout(STEP, start_agent(config, host))).expect("bounded");
    assert_eq!(started.err(), Some(1));
}
