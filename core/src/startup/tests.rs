//! Tests of the startup machine: scenarios on a simulated clock, and property tests that drive
//! it with arbitrary configurations and arbitrary answers from the world.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{FileContents, Vars};

const T0: Duration = Duration::from_secs(1_800_000_000);
const TOKEN: &str = "tok-SECRET-marker";
const FRONTEND: (&str, &str) = ("LOCALAI_REGISTER_TO", "http://frontend:8080/");
const NATS: (&str, &str) = ("LOCALAI_NATS_URL", "nats://nats:4222");

fn host() -> Host {
    Host {
        hostname: Some("gpu1".to_owned()),
        pid: 1,
    }
}

fn machine(role: Role, pairs: &[(&str, &str)]) -> Startup {
    let vars = Vars::from_pairs(pairs.iter().copied());
    let config = Config::parse(role, &vars, &FileContents::new(), &host()).expect("valid config");
    Startup::new(config, host(), T0)
}

/// Drains the machine: every effect up to the idle marker.
fn drain(m: &mut Startup) -> (Vec<Effect>, Effect) {
    let mut effects = Vec::new();
    loop {
        match m.poll_output() {
            idle @ (Effect::SleepUntil(_) | Effect::Wait) => return (effects, idle),
            effect => effects.push(effect),
        }
    }
}

fn ok(status: u16, body: &str) -> HttpResult {
    HttpResult::Response {
        status,
        body: body.as_bytes().to_vec(),
    }
}

fn approved(id: &str) -> HttpResult {
    ok(201, &format!(r#"{{"id":"{id}","status":"healthy"}}"#))
}

fn minted(id: &str, jwt: &str) -> HttpResult {
    ok(
        201,
        &format!(
            r#"{{"id":"{id}","status":"healthy","nats_jwt":"{jwt}","nats_user_seed":"SUSEED-SECRET-marker"}}"#
        ),
    )
}

fn jwt_expiring_at(exp: u64) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = engine.encode(format!(
        r#"{{"exp":{exp},"iat":1,"iss":"AABC","sub":"UABC","name":"jwt-SECRET","nats":{{"type":"user","version":2}}}}"#
    ));
    format!("{header}.{payload}.c2ln")
}

fn has(effects: &[Effect], f: impl Fn(&Effect) -> bool) -> bool {
    effects.iter().any(f)
}

fn exit_of(effects: &[Effect]) -> Option<(u8, String)> {
    effects.iter().find_map(|e| match e {
        Effect::Exit { code, reason } => Some((*code, reason.clone())),
        _ => None,
    })
}

// -- posture at start -----------------------------------------------------------------------

#[test]
fn refusal_exits_before_anything_else() {
    let mut m = machine(
        Role::Worker,
        &[("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true")],
    );
    let (effects, idle) = drain(&mut m);
    assert_eq!(idle, Effect::Wait);
    let (code, reason) = exit_of(&effects).expect("exit");
    assert_eq!(code, 1);
    assert!(reason.contains("LOCALAI_REGISTRATION_TOKEN"), "{reason}");
    assert!(!has(&effects, |e| matches!(
        e,
        Effect::StartFileServer | Effect::Register { .. } | Effect::ConnectNats { .. }
    )));
    assert!(m.is_done());
}

#[test]
fn standalone_worker_starts_the_file_server_and_is_ready() {
    let mut m = machine(Role::Worker, &[("LOCALAI_REGISTRATION_TOKEN", TOKEN)]);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::StartFileServer));
    assert!(!has(&effects, |e| matches!(e, Effect::Register { .. })));
    m.handle_file_server(T0, Ok(()));
    let (effects, idle) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::SetReady(true)));
    assert_eq!(idle, Effect::Wait, "no timers without a frontend");
    assert!(m.is_ready());
}

#[test]
fn anonymous_start_warns_once_naming_the_token() {
    let mut m = machine(Role::Worker, &[]);
    let (effects, _) = drain(&mut m);
    let warnings: Vec<&String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log {
                level: Level::Warn,
                message,
            } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("LOCALAI_REGISTRATION_TOKEN"));
}

#[test]
fn standalone_worker_with_a_nats_url_says_it_does_not_connect() {
    let mut m = machine(Role::Worker, &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), NATS]);
    let (effects, _) = drain(&mut m);
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Log { level: Level::Warn, message } if message.contains("does not connect to NATS"))
    ));
    m.handle_file_server(T0, Ok(()));
    let (effects, _) = drain(&mut m);
    assert!(!has(&effects, |e| matches!(e, Effect::ConnectNats { .. })));
}

// -- registration ---------------------------------------------------------------------------

#[test]
fn registers_with_header_and_body_token_at_the_register_route() {
    let mut m = machine(
        Role::Worker,
        &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND],
    );
    let (effects, idle) = drain(&mut m);
    let Some(Effect::Register { url, body }) = effects
        .iter()
        .find(|e| matches!(e, Effect::Register { .. }))
    else {
        panic!("register expected: {effects:?}");
    };
    assert_eq!(url, "http://frontend:8080/api/node/register");
    assert_eq!(body.token.as_ref().map(|t| t.expose()), Some(TOKEN));
    assert_eq!(idle, Effect::Wait, "waiting for the answer");
    assert!(!has(&effects, |e| *e == Effect::StartFileServer));
}

#[test]
fn full_worker_life_with_minted_credentials() {
    let exp = T0.as_secs() + 3600;
    let mut m = machine(
        Role::Worker,
        &[
            ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
            FRONTEND,
            NATS,
            ("LOCALAI_NATS_REQUIRE_AUTH", "true"),
        ],
    );
    drain(&mut m);
    m.handle_register(T0, minted("n.1", &jwt_expiring_at(exp)));
    let (effects, _) = drain(&mut m);
    assert_eq!(effects.last(), Some(&Effect::StartFileServer));
    m.handle_file_server(T0, Ok(()));
    let (effects, _) = drain(&mut m);
    let Some(Effect::ConnectNats { credential }) = effects.last() else {
        panic!("connect expected: {effects:?}");
    };
    assert!(matches!(
        credential,
        NatsCredential::Jwt {
            source: CredentialSource::Minted,
            ..
        }
    ));
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    let (effects, _) = drain(&mut m);
    let Some(Effect::Subscribe { subscriptions }) = effects.last() else {
        panic!("subscribe expected: {effects:?}");
    };
    let subjects: Vec<&str> = subscriptions.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "nodes.n-1.files.temp",
            "nodes.n-1.files.listdir",
            "nodes.n-1.stop"
        ]
    );
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Log { message, .. } if message.contains("NATS bus: protected"))
    ));
    m.handle_subscribed(T0, Ok(()));
    let (effects, idle) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::SetReady(true)));
    assert!(m.is_ready());
    assert_eq!(
        idle,
        Effect::SleepUntil(T0 + Duration::from_secs(10)),
        "first heartbeat"
    );

    // Heartbeat every interval.
    let t = T0 + Duration::from_secs(10);
    m.handle_timeout(t);
    let (effects, _) = drain(&mut m);
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Heartbeat { url, .. } if url == "http://frontend:8080/api/node/n.1/heartbeat")
    ));
    m.handle_heartbeat(t, ok(200, "{}"));

    // Refresh at 75 % of the lifetime: 2700 s after T0.
    let refresh_at = T0 + Duration::from_secs(2700);
    m.handle_timeout(refresh_at - Duration::from_secs(1));
    let (effects, _) = drain(&mut m);
    assert!(!has(&effects, |e| matches!(e, Effect::Register { .. })));
    m.handle_heartbeat(refresh_at, ok(200, "{}"));
    m.handle_timeout(refresh_at);
    let (effects, _) = drain(&mut m);
    assert!(
        has(&effects, |e| matches!(e, Effect::Register { .. })),
        "{effects:?}"
    );
    m.handle_register(refresh_at, minted("n.1", &jwt_expiring_at(exp + 3600)));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(
        e,
        Effect::UpdateNatsCredential { .. }
    )));

    // SIGTERM: drain, poll in-flight until 0, deregister, exit 0.
    let stop = refresh_at + Duration::from_secs(1);
    m.handle_stop(stop, StopReason::Signal);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::SetReady(false)));
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Drain { url } if url.ends_with("/api/node/n.1/drain"))
    ));
    m.handle_drain(stop, ok(200, r#"{"message":"node set to draining"}"#));
    let (effects, _) = drain(&mut m);
    assert!(has(
        &effects,
        |e| matches!(e, Effect::PollInFlight { url } if url.ends_with("/models"))
    ));
    m.handle_in_flight(stop, ok(200, r#"[{"in_flight":2}]"#));
    let (_, idle) = drain(&mut m);
    assert_eq!(idle, Effect::SleepUntil(stop + IN_FLIGHT_POLL));
    m.handle_timeout(stop + IN_FLIGHT_POLL);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(e, Effect::PollInFlight { .. })));
    m.handle_in_flight(stop + IN_FLIGHT_POLL, ok(200, r#"[{"in_flight":0}]"#));
    let (effects, _) = drain(&mut m);
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Deregister { url } if url.ends_with("/deregister"))
    ));
    m.handle_deregister(stop, ok(200, "{}"));
    let (effects, idle) = drain(&mut m);
    assert_eq!(exit_of(&effects).map(|(c, _)| c), Some(0));
    assert_eq!(idle, Effect::Wait);
}

#[test]
fn unauthorized_registration_gives_up_well_under_a_minute_naming_the_token() {
    let mut m = machine(
        Role::Worker,
        &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND],
    );
    drain(&mut m);
    let mut now = T0;
    for attempt in 1..=MAX_UNAUTHORIZED {
        m.handle_register(now, ok(401, r#"{"error":"invalid registration token"}"#));
        let (effects, idle) = drain(&mut m);
        if attempt == MAX_UNAUTHORIZED {
            let (code, reason) = exit_of(&effects).expect("exit");
            assert_eq!(code, 1);
            assert!(reason.contains("LOCALAI_REGISTRATION_TOKEN"), "{reason}");
            assert!(!reason.contains(TOKEN));
            break;
        }
        let Effect::SleepUntil(at) = idle else {
            panic!("backoff expected")
        };
        now = at;
        m.handle_timeout(now);
        let (effects, _) = drain(&mut m);
        assert!(has(&effects, |e| matches!(e, Effect::Register { .. })));
    }
    assert!(now - T0 < Duration::from_secs(60));
}

#[test]
fn pending_keeps_registering_with_backoff_and_opens_nothing() {
    let mut m = machine(
        Role::Worker,
        &[
            ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
            FRONTEND,
            NATS,
            ("LOCALAI_HEARTBEAT_INTERVAL", "60s"),
        ],
    );
    drain(&mut m);
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..3 {
        m.handle_register(now, ok(201, r#"{"id":"n1","status":"pending"}"#));
        let (effects, idle) = drain(&mut m);
        assert!(!has(&effects, |e| matches!(
            e,
            Effect::ConnectNats { .. } | Effect::StartFileServer
        )));
        let Effect::SleepUntil(at) = idle else {
            panic!("sleep expected")
        };
        waits.push(at - now);
        now = at;
        m.handle_timeout(now);
        let (effects, _) = drain(&mut m);
        assert!(has(&effects, |e| matches!(e, Effect::Register { .. })));
    }
    assert_eq!(
        waits,
        [2, 4, 8].map(Duration::from_secs),
        "backoff doubles from 2 s"
    );
    m.handle_register(now, approved("n1"));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::StartFileServer));
}

#[test]
fn backoff_doubles_to_thirty_seconds() {
    let got: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(got, [2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn approved_without_minted_credentials_under_nats_auth_is_an_error() {
    let mut m = machine(
        Role::Worker,
        &[
            ("LOCALAI_REGISTRATION_TOKEN", TOKEN),
            FRONTEND,
            NATS,
            ("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true"),
        ],
    );
    drain(&mut m);
    m.handle_register(T0, approved("n1"));
    let (effects, _) = drain(&mut m);
    let (code, reason) = exit_of(&effects).expect("exit");
    assert_eq!(code, 1);
    assert!(reason.contains("LOCALAI_NATS_ACCOUNT_SEED"), "{reason}");
    assert!(!has(&effects, |e| matches!(e, Effect::ConnectNats { .. })));
}

#[test]
fn bad_request_from_the_frontend_is_final() {
    let mut m = machine(
        Role::Worker,
        &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND],
    );
    drain(&mut m);
    m.handle_register(T0, ok(400, r#"{"error":"name is required"}"#));
    let (effects, _) = drain(&mut m);
    assert_eq!(exit_of(&effects).map(|(c, _)| c), Some(1));
}

#[test]
fn unreachable_frontend_is_retried() {
    let mut m = machine(
        Role::Worker,
        &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND],
    );
    drain(&mut m);
    m.handle_register(T0, HttpResult::Failed("connection refused".into()));
    let (effects, idle) = drain(&mut m);
    assert!(exit_of(&effects).is_none());
    assert_eq!(idle, Effect::SleepUntil(T0 + BACKOFF_START));
}

// -- NATS -----------------------------------------------------------------------------------

fn connected_worker(pairs: &[(&str, &str)]) -> Startup {
    let mut all = vec![("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND, NATS];
    all.extend_from_slice(pairs);
    let mut m = machine(Role::Worker, &all);
    drain(&mut m);
    m.handle_register(T0, approved("n1"));
    drain(&mut m);
    m.handle_file_server(T0, Ok(()));
    drain(&mut m);
    m
}

#[test]
fn wrong_nats_credentials_exit_naming_the_variable() {
    let mut m = connected_worker(&[("LOCALAI_NATS_TOKEN", "nats-SECRET-marker")]);
    m.handle_nats_connected(
        T0,
        Err(NatsConnectError::AuthorizationViolation(
            "authorization violation".into(),
        )),
    );
    let (effects, _) = drain(&mut m);
    let (code, reason) = exit_of(&effects).expect("exit");
    assert_eq!(code, 1);
    assert!(reason.contains("LOCALAI_NATS_TOKEN"), "{reason}");
    assert!(!reason.contains("nats-SECRET-marker"));
}

#[test]
fn anonymous_accepting_server_under_nats_auth_warns_and_under_the_umbrella_refuses() {
    let mut m = connected_worker(&[
        ("LOCALAI_NATS_TOKEN", "t"),
        ("LOCALAI_NATS_REQUIRE_AUTH", "true"),
    ]);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: false,
        }),
    );
    let (effects, _) = drain(&mut m);
    assert!(exit_of(&effects).is_none());
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Log { level: Level::Warn, message } if message.contains("accepts anonymous clients"))
    ));

    let mut m = connected_worker(&[
        ("LOCALAI_NATS_TOKEN", "t"),
        ("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", "true"),
    ]);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: false,
        }),
    );
    let (effects, _) = drain(&mut m);
    let (code, reason) = exit_of(&effects).expect("refused");
    assert_eq!(code, 1);
    assert!(reason.contains("accepts anonymous clients"), "{reason}");
}

#[test]
fn unreachable_nats_is_retried_and_readiness_waits() {
    let mut m = connected_worker(&[]);
    m.handle_nats_connected(T0, Err(NatsConnectError::Unreachable("refused".into())));
    let (effects, idle) = drain(&mut m);
    assert!(exit_of(&effects).is_none());
    assert!(!m.is_ready());
    let Effect::SleepUntil(at) = idle else {
        panic!("retry timer expected")
    };
    m.handle_timeout(at);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(e, Effect::ConnectNats { .. })));
}

#[test]
fn denied_subscription_fails_the_start() {
    let mut m = connected_worker(&[]);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    drain(&mut m);
    m.handle_subscribed(
        T0,
        Err("subscription to nodes.n1.stop denied by the NATS server".into()),
    );
    let (effects, _) = drain(&mut m);
    assert_eq!(exit_of(&effects).map(|(c, _)| c), Some(1));
}

#[test]
fn readiness_follows_the_nats_link_and_heartbeats_skip_while_down() {
    let mut m = connected_worker(&[]);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    drain(&mut m);
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    m.handle_nats_event(T0, NatsEvent::Disconnected);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::SetReady(false)));
    assert!(!m.is_ready());
    m.handle_timeout(T0 + Duration::from_secs(10));
    let (effects, _) = drain(&mut m);
    assert!(!has(&effects, |e| matches!(e, Effect::Heartbeat { .. })));
    m.handle_nats_event(T0, NatsEvent::Reconnected);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| *e == Effect::SetReady(true)));
    m.handle_timeout(T0 + Duration::from_secs(20));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(e, Effect::Heartbeat { .. })));
}

/// The server disconnects a connection when the JWT it authenticated with expires, even after
/// the machine refreshed it: that is expected (the reconnect uses the new JWT) and must not be
/// reported as rejected credentials. Once the credential in use has itself expired, it is.
#[test]
fn expiry_of_a_replaced_jwt_is_not_reported_as_rejected_credentials() {
    let first = T0.as_secs() + 8;
    let mut all = vec![("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND, NATS];
    all.push(("LOCALAI_NATS_REQUIRE_AUTH", "true"));
    let mut m = machine(Role::Worker, &all);
    drain(&mut m);
    m.handle_register(T0, minted("n1", &jwt_expiring_at(first)));
    drain(&mut m);
    m.handle_file_server(T0, Ok(()));
    drain(&mut m);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    drain(&mut m);
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    // Refresh at 6 s: a new JWT valid for 8 s more.
    let refresh = T0 + Duration::from_secs(6);
    m.handle_timeout(refresh);
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(e, Effect::Register { .. })));
    m.handle_register(refresh, minted("n1", &jwt_expiring_at(first + 8)));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(
        e,
        Effect::UpdateNatsCredential { .. }
    )));

    let expired = "User Authentication Expired".to_owned();
    let at = T0 + Duration::from_secs(8);
    m.handle_nats_event(at, NatsEvent::ServerError(expired.clone()));
    let (effects, _) = drain(&mut m);
    let logs: Vec<&Effect> = effects
        .iter()
        .filter(|e| matches!(e, Effect::Log { .. }))
        .collect();
    assert!(
        matches!(logs.as_slice(), [Effect::Log { level: Level::Info, message }]
            if message.contains("previous JWT") && !message.contains("LOCALAI_NATS_ACCOUNT_SEED")),
        "{logs:?}"
    );

    // The refreshed JWT itself expired: a credential problem again.
    let late = T0 + Duration::from_secs(17);
    m.handle_nats_event(late, NatsEvent::ServerError(expired));
    let (effects, _) = drain(&mut m);
    assert!(
        has(
            &effects,
            |e| matches!(e, Effect::Log { level: Level::Error, message }
            if message.contains("rejected this node's credentials"))
        ),
        "{effects:?}"
    );
}

#[test]
fn nats_stop_drains_and_a_failed_drain_still_deregisters() {
    let mut m = connected_worker(&[]);
    m.handle_nats_connected(T0, Ok(NatsServerInfo::default()));
    drain(&mut m);
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    m.handle_stop(T0, StopReason::NatsStop);
    drain(&mut m);
    m.handle_drain(T0, HttpResult::Failed("timeout".into()));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(e, Effect::Deregister { .. })));
    m.handle_deregister(T0, ok(500, "boom"));
    let (effects, _) = drain(&mut m);
    assert_eq!(exit_of(&effects).map(|(c, _)| c), Some(0));
}

#[test]
fn in_flight_wait_is_bounded() {
    let mut m = connected_worker(&[]);
    m.handle_nats_connected(T0, Ok(NatsServerInfo::default()));
    drain(&mut m);
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    m.handle_stop(T0, StopReason::Signal);
    drain(&mut m);
    m.handle_drain(T0, ok(200, "{}"));
    drain(&mut m);
    let mut now = T0;
    for _ in 0..100 {
        m.handle_in_flight(now, ok(200, r#"[{"in_flight":1}]"#));
        let (effects, idle) = drain(&mut m);
        if has(&effects, |e| matches!(e, Effect::Deregister { .. })) {
            assert!(now - T0 <= DRAIN_WAIT + IN_FLIGHT_POLL);
            return;
        }
        let Effect::SleepUntil(at) = idle else {
            panic!("poll timer expected: {effects:?} {idle:?}")
        };
        now = at;
        m.handle_timeout(now);
        let (effects, _) = drain(&mut m);
        if has(&effects, |e| matches!(e, Effect::Deregister { .. })) {
            assert!(now - T0 <= DRAIN_WAIT + IN_FLIGHT_POLL);
            return;
        }
    }
    panic!("never deregistered");
}

#[test]
fn refresh_failures_drain_and_exit_non_zero() {
    let exp = T0.as_secs() + 400;
    let mut all = vec![("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND, NATS];
    all.push(("LOCALAI_NATS_REQUIRE_AUTH", "true"));
    let mut m = machine(Role::Worker, &all);
    drain(&mut m);
    m.handle_register(T0, minted("n1", &jwt_expiring_at(exp)));
    drain(&mut m);
    m.handle_file_server(T0, Ok(()));
    drain(&mut m);
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    drain(&mut m);
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    let mut now = T0;
    for _ in 0..200 {
        let (effects, idle) = drain(&mut m);
        if has(&effects, |e| matches!(e, Effect::Drain { .. })) {
            m.handle_drain(now, HttpResult::Failed("down".into()));
            drain(&mut m);
            m.handle_deregister(now, HttpResult::Failed("down".into()));
            let (effects, _) = drain(&mut m);
            let (code, reason) = exit_of(&effects).expect("exit");
            assert_eq!(code, 1);
            assert!(reason.contains("NATS credentials unavailable"), "{reason}");
            assert!(now.as_secs() <= exp + REFRESH_RETRY.as_secs());
            return;
        }
        for e in &effects {
            match e {
                Effect::Register { .. } => {
                    m.handle_register(now, HttpResult::Failed("refused".into()));
                }
                Effect::Heartbeat { .. } => m.handle_heartbeat(now, ok(200, "{}")),
                _ => {}
            }
        }
        if let Effect::SleepUntil(at) = idle {
            now = at;
            m.handle_timeout(now);
        }
    }
    panic!("refresh failures never ended the program");
}

#[test]
fn agent_worker_registers_as_agent_and_subscribes_to_agent_subjects() {
    let mut m = machine(
        Role::AgentWorker,
        &[("LOCALAI_REGISTRATION_TOKEN", TOKEN), FRONTEND, NATS],
    );
    let (effects, _) = drain(&mut m);
    let Some(Effect::Register { body, .. }) = effects
        .iter()
        .find(|e| matches!(e, Effect::Register { .. }))
    else {
        panic!("register expected")
    };
    assert_eq!(body.node_type.as_deref(), Some("agent"));
    m.handle_register(T0, approved("a1"));
    let (effects, _) = drain(&mut m);
    assert!(
        !has(&effects, |e| *e == Effect::StartFileServer),
        "agents serve no files"
    );
    assert!(has(&effects, |e| matches!(e, Effect::ConnectNats { .. })));
    m.handle_nats_connected(
        T0,
        Ok(NatsServerInfo {
            auth_required: true,
        }),
    );
    let (effects, _) = drain(&mut m);
    let Some(Effect::Subscribe { subscriptions }) = effects.last() else {
        panic!("subscribe expected")
    };
    let subjects: Vec<&str> = subscriptions.iter().map(|s| s.subject.as_str()).collect();
    assert!(subjects.contains(&"agent.execute"));
    assert!(subjects.contains(&"nodes.a1.backend.stop"));
    assert_eq!(
        subscriptions
            .iter()
            .find(|s| s.subject == "agent.execute")
            .and_then(|s| s.queue.as_deref()),
        Some("agent-workers")
    );
    m.handle_subscribed(T0, Ok(()));
    drain(&mut m);
    // The agent heartbeats even while NATS is down.
    m.handle_nats_event(T0, NatsEvent::Disconnected);
    drain(&mut m);
    m.handle_timeout(T0 + Duration::from_secs(10));
    let (effects, _) = drain(&mut m);
    assert!(has(
        &effects,
        |e| matches!(e, Effect::Heartbeat { body, .. } if *body == HeartbeatRequest::default())
    ));
}

#[test]
fn agent_service_credentials_are_used_when_nothing_else_is_set() {
    let mut m = machine(
        Role::AgentWorker,
        &[
            FRONTEND,
            NATS,
            ("LOCALAI_NATS_SERVICE_JWT", "svc-jwt-SECRET-marker"),
            ("LOCALAI_NATS_SERVICE_SEED", "svc-seed-SECRET-marker"),
        ],
    );
    drain(&mut m);
    m.handle_register(T0, approved("a1"));
    let (effects, _) = drain(&mut m);
    assert!(has(&effects, |e| matches!(
        e,
        Effect::ConnectNats {
            credential: NatsCredential::Jwt {
                source: CredentialSource::Service,
                ..
            }
        }
    )));
}

// -- properties -----------------------------------------------------------------------------

/// One answer of the world to whatever the machine asks next.
#[derive(Debug, Clone)]
enum World {
    Registered(u8),
    FileServer(bool),
    Nats(u8),
    Subscribed(bool),
    Event(u8),
    Heartbeat(u16),
    Stop,
    Time(u16),
}

fn arb_world() -> impl Strategy<Value = World> {
    prop_oneof![
        (0u8..6).prop_map(World::Registered),
        any::<bool>().prop_map(World::FileServer),
        (0u8..5).prop_map(World::Nats),
        any::<bool>().prop_map(World::Subscribed),
        (0u8..3).prop_map(World::Event),
        prop_oneof![Just(200u16), Just(404), Just(500)].prop_map(World::Heartbeat),
        Just(World::Stop),
        (0u16..4000).prop_map(World::Time),
    ]
}

fn arb_pairs() -> impl Strategy<Value = (Role, Vec<(&'static str, &'static str)>)> {
    let role = prop_oneof![Just(Role::Worker), Just(Role::AgentWorker)];
    let flag = || prop_oneof![Just("true"), Just("false")];
    let creds = prop_oneof![
        Just(None),
        Just(Some(("LOCALAI_NATS_TOKEN", "nats-tok-SECRET-marker"))),
        Just(Some(("LOCALAI_NATS_NKEY_SEED", "SUNKEY-SECRET-marker"))),
    ];
    (
        role,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        flag(),
        flag(),
        flag(),
        creds,
    )
        .prop_map(
            |(role, token, frontend, nats, reg, dist, nats_req, creds)| {
                let mut pairs = vec![
                    ("LOCALAI_REGISTRATION_REQUIRE_AUTH", reg),
                    ("LOCALAI_DISTRIBUTED_REQUIRE_AUTH", dist),
                    ("LOCALAI_NATS_REQUIRE_AUTH", nats_req),
                ];
                if role == Role::AgentWorker {
                    pairs.remove(0);
                }
                if token {
                    pairs.push(("LOCALAI_REGISTRATION_TOKEN", TOKEN));
                }
                if frontend {
                    pairs.push(FRONTEND);
                }
                if nats {
                    pairs.push(NATS);
                }
                if let Some(c) = creds {
                    pairs.push(c);
                }
                (role, pairs)
            },
        )
}

/// Runs the machine against a script of answers; returns every effect it produced.
fn run(m: &mut Startup, script: &[World]) -> Vec<Effect> {
    let mut all = Vec::new();
    let mut now = T0;
    let mut pending: Vec<Effect> = Vec::new();
    let mut answers = script.iter().cycle().take(script.len() * 4);
    for _ in 0..400 {
        let (effects, idle) = drain(m);
        all.extend(effects.iter().cloned());
        pending.extend(effects.into_iter().filter(|e| {
            matches!(
                e,
                Effect::Register { .. }
                    | Effect::StartFileServer
                    | Effect::ConnectNats { .. }
                    | Effect::Subscribe { .. }
                    | Effect::Heartbeat { .. }
                    | Effect::Drain { .. }
                    | Effect::PollInFlight { .. }
                    | Effect::Deregister { .. }
            )
        }));
        if m.is_done() {
            break;
        }
        let Some(answer) = answers.next() else {
            break;
        };
        let exp = T0.as_secs() + 600;
        let jwt = jwt_expiring_at(exp);
        let take = |pending: &mut Vec<Effect>, f: &dyn Fn(&Effect) -> bool| {
            pending.iter().position(f).map(|i| pending.remove(i))
        };
        match answer {
            World::Registered(kind) => {
                if take(&mut pending, &|e| matches!(e, Effect::Register { .. })).is_some() {
                    let result = match kind {
                        0 => approved("n1"),
                        1 => minted("n1", &jwt),
                        2 => ok(201, r#"{"id":"n1","status":"pending"}"#),
                        3 => ok(401, r#"{"error":"invalid registration token"}"#),
                        4 => ok(503, "down"),
                        _ => HttpResult::Failed("refused".into()),
                    };
                    m.handle_register(now, result);
                }
            }
            World::FileServer(up) => {
                if take(&mut pending, &|e| *e == Effect::StartFileServer).is_some() {
                    m.handle_file_server(now, if *up { Ok(()) } else { Err("in use".into()) });
                }
            }
            World::Nats(kind) => {
                if take(&mut pending, &|e| matches!(e, Effect::ConnectNats { .. })).is_some() {
                    let result = match kind {
                        0 => Ok(NatsServerInfo {
                            auth_required: true,
                        }),
                        1 => Ok(NatsServerInfo {
                            auth_required: false,
                        }),
                        2 => Err(NatsConnectError::AuthorizationViolation("nope".into())),
                        3 => Err(NatsConnectError::Tls("handshake".into())),
                        _ => Err(NatsConnectError::Unreachable("refused".into())),
                    };
                    m.handle_nats_connected(now, result);
                }
            }
            World::Subscribed(good) => {
                if take(&mut pending, &|e| matches!(e, Effect::Subscribe { .. })).is_some() {
                    m.handle_subscribed(now, if *good { Ok(()) } else { Err("denied".into()) });
                }
            }
            World::Event(kind) => m.handle_nats_event(
                now,
                match kind {
                    0 => NatsEvent::Disconnected,
                    1 => NatsEvent::Reconnected,
                    _ => NatsEvent::ServerError("Authorization Violation".into()),
                },
            ),
            World::Heartbeat(status) => {
                if take(&mut pending, &|e| matches!(e, Effect::Heartbeat { .. })).is_some() {
                    m.handle_heartbeat(now, ok(*status, "{}"));
                }
                if take(&mut pending, &|e| matches!(e, Effect::Drain { .. })).is_some() {
                    m.handle_drain(now, ok(*status, "{}"));
                }
                if take(&mut pending, &|e| matches!(e, Effect::PollInFlight { .. })).is_some() {
                    m.handle_in_flight(now, ok(200, r#"[{"in_flight":0}]"#));
                }
                if take(&mut pending, &|e| matches!(e, Effect::Deregister { .. })).is_some() {
                    m.handle_deregister(now, ok(*status, "{}"));
                }
            }
            World::Stop => m.handle_stop(now, StopReason::Signal),
            World::Time(secs) => {
                now += Duration::from_secs(u64::from(*secs));
                if let Effect::SleepUntil(at) = idle {
                    now = now.max(at);
                }
                m.handle_timeout(now);
            }
        }
    }
    all
}

fn config_of(role: Role, pairs: &[(&str, &str)]) -> Config {
    let vars = Vars::from_pairs(pairs.iter().copied());
    Config::parse(role, &vars, &FileContents::new(), &host()).expect("valid config")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// No path through the machine connects to NATS anonymously when NATS auth applies.
    #[test]
    fn never_connects_anonymously_when_nats_auth_applies(
        (role, pairs) in arb_pairs(),
        script in proptest::collection::vec(arb_world(), 1..40),
    ) {
        let config = config_of(role, &pairs);
        let required = config.nats_auth_required();
        let mut m = Startup::new(config, host(), T0);
        for effect in run(&mut m, &script) {
            if let Effect::ConnectNats { credential } = &effect {
                prop_assert!(!(required && credential.is_anonymous()), "{effect:?}");
            }
        }
    }

    /// No NATS connection is opened before the frontend approved the node (and never without a
    /// frontend).
    #[test]
    fn no_nats_before_approval(
        (role, pairs) in arb_pairs(),
        script in proptest::collection::vec(arb_world(), 1..40),
    ) {
        let mut m = Startup::new(config_of(role, &pairs), host(), T0);
        let mut approved = false;
        let mut script = script;
        // Record approvals by watching the log of the machine.
        for effect in run(&mut m, &std::mem::take(&mut script)) {
            if let Effect::Log { message, .. } = &effect
                && message.contains("(approved)")
            {
                approved = true;
            }
            if matches!(effect, Effect::ConnectNats { .. }) {
                prop_assert!(approved, "NATS before approval");
            }
        }
    }

    /// Every exit that follows a refusal happens before the file server starts, and nothing
    /// else is asked for after an exit.
    #[test]
    fn refusals_exit_before_the_file_server(
        (role, pairs) in arb_pairs(),
        script in proptest::collection::vec(arb_world(), 1..40),
    ) {
        let config = config_of(role, &pairs);
        let refused = Posture::evaluate(&config).refusal().is_some();
        let mut m = Startup::new(config, host(), T0);
        let effects = run(&mut m, &script);
        if refused {
            let first_action = effects.iter().find(|e| !matches!(e, Effect::Log { .. }));
            prop_assert!(matches!(first_action, Some(Effect::Exit { code: 1, .. })), "{first_action:?}");
        }
        if let Some(at) = effects.iter().position(|e| matches!(e, Effect::Exit { .. })) {
            prop_assert_eq!(at + 1, effects.len(), "effects after exit");
        }
    }

    /// No secret (registration token, NATS token, nkey seed, minted JWT and seed) appears in
    /// the `Debug` output of the machine or of any effect.
    #[test]
    fn secrets_never_appear_in_debug(
        (role, pairs) in arb_pairs(),
        script in proptest::collection::vec(arb_world(), 1..40),
    ) {
        let jwt = jwt_expiring_at(T0.as_secs() + 600);
        let payload = jwt.split('.').nth(1).expect("payload");
        let mut m = Startup::new(config_of(role, &pairs), host(), T0);
        for effect in run(&mut m, &script) {
            let shown = format!("{effect:?}");
            prop_assert!(!shown.contains("SECRET") && !shown.contains(payload), "{shown}");
        }
        let shown = format!("{m:?}");
        prop_assert!(!shown.contains("SECRET") && !shown.contains(payload), "{shown}");
    }
}
