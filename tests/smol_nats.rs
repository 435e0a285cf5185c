//! The smol adapter's NATS driver ([`nodegate::smol_adapter::nats`]: the core's sans-IO client
//! over async-io sockets) against a real `nats-server` per test, in every credential mode the
//! start-up machine hands it: each connects, and each wrong credential is refused as the
//! start-up machine reads a rejection (`NatsConnectError::AuthorizationViolation`). TLS (with
//! and without a client certificate, and a TLS server met in plaintext), confirmed
//! subscriptions and a denied one, request-reply, "no responders", and a restarted server that
//! gets the live subscriptions again run against the same servers. Every wait is bounded.

#![cfg(feature = "smol")]

mod common;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::nats::{Auth, NatsServer, Operator, Tls, user_nkey};
use nodegate::config::{NatsCredentials, NatsTls, Secret};
use nodegate::jwt::NodeType;
use nodegate::nats::RequestFailure;
use nodegate::smol_adapter::nats::{
    self, Client, CredentialCell, NatsOptions, Subscriber, subscribe_all,
};
use nodegate::smol_adapter::rt;
use nodegate::startup::{
    CredentialSource, Handler, NatsConnectError, NatsCredential, NatsEvent, Subscription,
};
use smol::channel::{Receiver, unbounded};

/// Bound on any one wait.
const STEP: Duration = Duration::from_secs(15);

fn cell(credential: NatsCredential) -> CredentialCell {
    Arc::new(RwLock::new(credential))
}

fn options(server: &NatsServer) -> NatsOptions {
    NatsOptions {
        url: server.url(),
        tls: NatsTls::default(),
        name: Some("smol-test".into()),
    }
}

/// One bounded connection attempt.
fn attempt(
    options: &NatsOptions,
    credential: NatsCredential,
) -> (
    Result<(nodegate::startup::NatsServerInfo, Client), NatsConnectError>,
    Receiver<NatsEvent>,
) {
    let (events, events_rx) = unbounded();
    let result = rt::block_on(async {
        rt::timeout(STEP, nats::connect(options, cell(credential), events))
            .await
            .expect("a connection attempt is bounded")
    });
    (result, events_rx)
}

fn connects(server: &NatsServer, credential: NatsCredential) -> Client {
    let (result, _) = attempt(&options(server), credential);
    let (info, client) = result.unwrap_or_else(|e| panic!("not connected: {e:?}"));
    assert!(info.auth_required, "this server requires authentication");
    client
}

fn rejected(server: &NatsServer, credential: NatsCredential) {
    let (result, _) = attempt(&options(server), credential);
    match result {
        Err(NatsConnectError::AuthorizationViolation(text)) => {
            assert!(text.contains("Authorization Violation"), "{text}");
        }
        Err(other) => panic!("expected an authorization violation, got {other:?}"),
        Ok(_) => panic!("a wrong credential connected"),
    }
}

fn statik(credentials: NatsCredentials) -> NatsCredential {
    NatsCredential::Static(credentials)
}

/// Publishes to itself through a confirmed subscription and reads the message back.
fn round_trip(client: &Client, subject: &str) {
    rt::block_on(async {
        let subscriptions = [Subscription {
            subject: subject.to_owned(),
            queue: Some("workers".into()),
            handler: Handler::Agent,
        }];
        let mut subscribed = subscribe_all(client, &subscriptions)
            .await
            .expect("subscriptions confirmed");
        let (_, subscriber) = subscribed.pop().expect("one subscriber");
        client
            .publish(subject, Some("reply.here"), &b"payload"[..])
            .await
            .expect("published");
        let msg = next(&subscriber).await;
        assert_eq!(msg.subject.as_str(), subject);
        assert_eq!(msg.reply.as_ref().map(|r| r.as_str()), Some("reply.here"));
        assert_eq!(&msg.payload[..], b"payload");
    });
}

async fn next(subscriber: &Subscriber) -> nodegate::nats::Msg {
    rt::timeout(STEP, subscriber.next())
        .await
        .expect("a message in time")
        .expect("the connection is open")
}

#[test]
fn anonymous_connects_and_round_trips() {
    let server = NatsServer::start(&Auth::Anonymous);
    let (result, _) = attempt(&options(&server), NatsCredential::Anonymous);
    let (info, client) = result.expect("connected");
    assert!(!info.auth_required);
    round_trip(&client, "smol.anonymous");
}

#[test]
fn token_connects_and_a_wrong_token_is_rejected() {
    let server = NatsServer::start(&Auth::Token("smol-Token.1".into()));
    let client = connects(
        &server,
        statik(NatsCredentials::Token(Secret::new("smol-Token.1"))),
    );
    round_trip(&client, "smol.token");
    rejected(
        &server,
        statik(NatsCredentials::Token(Secret::new("smol-Token.2"))),
    );
    rejected(&server, NatsCredential::Anonymous);
}

#[test]
fn user_password_connects_and_a_wrong_password_is_rejected() {
    let server = NatsServer::start(&Auth::UserPassword {
        user: "smol".into(),
        password: "pa55 word".into(),
    });
    let user = |password: &str| {
        statik(NatsCredentials::UserPassword {
            user: "smol".into(),
            password: Secret::new(password),
        })
    };
    round_trip(&connects(&server, user("pa55 word")), "smol.user");
    rejected(&server, user("pa55word"));
}

#[test]
fn nkey_signs_the_nonce_and_an_unknown_key_is_rejected() {
    let (public, seed) = user_nkey();
    let server = NatsServer::start(&Auth::Nkey { public_key: public });
    let nkey = |seed: String| {
        statik(NatsCredentials::Nkey {
            seed: Secret::new(seed),
        })
    };
    round_trip(&connects(&server, nkey(seed)), "smol.nkey");
    rejected(&server, nkey(user_nkey().1));
}

#[test]
fn minted_static_and_creds_file_jwts_connect_and_foreign_keys_are_rejected() {
    let operator = Operator::new();
    let server = NatsServer::start(&operator.auth());
    let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
    let minted = |jwt: &str, seed: &str| NatsCredential::Jwt {
        jwt: Secret::new(jwt),
        seed: Secret::new(seed),
        source: CredentialSource::Minted,
    };
    round_trip(
        &connects(&server, minted(&jwt, &seed)),
        "nodes.n1.files.probe",
    );
    let static_jwt = statik(NatsCredentials::Jwt {
        jwt: Secret::new(jwt.clone()),
        seed: Secret::new(seed.clone()),
    });
    connects(&server, static_jwt);
    let creds = operator.creds_file(&jwt, &seed);
    connects(
        &server,
        statik(NatsCredentials::CredsFile {
            path: creds.display().to_string(),
        }),
    );
    // The JWT is right but the nonce is signed by another user key.
    rejected(&server, minted(&jwt, &user_nkey().1));
    rejected(&server, NatsCredential::Anonymous);
}

#[test]
fn a_denied_subscription_is_named_and_other_subjects_stay_usable() {
    let operator = Operator::new();
    let server = NatsServer::start(&operator.auth());
    let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
    let client = connects(
        &server,
        NatsCredential::Jwt {
            jwt: Secret::new(jwt),
            seed: Secret::new(seed),
            source: CredentialSource::Minted,
        },
    );
    let subscription = |subject: &str| Subscription {
        subject: subject.to_owned(),
        queue: None,
        handler: Handler::FilesTemp,
    };
    let denied = rt::block_on(subscribe_all(
        &client,
        &[
            subscription("nodes.n1.files.temp"),
            subscription("nodes.n2.>"),
        ],
    ))
    .err()
    .expect("another node's subjects are denied");
    assert!(
        denied.starts_with("subscription to nodes.n2.> denied by the NATS server"),
        "{denied}"
    );
    round_trip(&client, "nodes.n1.files.listdir");
}

#[test]
fn request_reply_and_no_responders() {
    let server = NatsServer::start(&Auth::Anonymous);
    let (responder, _) = attempt(&options(&server), NatsCredential::Anonymous);
    let (_, responder) = responder.expect("connected");
    let (requester, _) = attempt(&options(&server), NatsCredential::Anonymous);
    let (_, requester) = requester.expect("connected");
    rt::block_on(async {
        let subscriptions = [Subscription {
            subject: "svc.echo".into(),
            queue: Some("echoers".into()),
            handler: Handler::Agent,
        }];
        let (_, subscriber) = subscribe_all(&responder, &subscriptions)
            .await
            .expect("subscribed")
            .pop()
            .expect("one");
        let echo = rt::spawn(async move {
            let msg = next(&subscriber).await;
            let mut answer = b"echo: ".to_vec();
            answer.extend_from_slice(&msg.payload);
            let to = msg.reply.expect("a request carries a reply subject");
            responder
                .publish(to.as_str(), None, answer)
                .await
                .expect("replied");
        });
        let reply = requester
            .request("svc.echo", &b"hello"[..])
            .await
            .expect("a reply");
        assert_eq!(&reply.payload[..], b"echo: hello");
        echo.await;
        let nobody = requester.request("svc.nobody", Vec::new()).await;
        assert_eq!(nobody.err(), Some(RequestFailure::NoResponders));
    });
}

#[test]
fn tls_with_a_client_certificate_connects_and_without_one_fails_as_tls() {
    let server = NatsServer::start_with(
        &Auth::Token("smol-tls".into()),
        Some(Tls {
            verify_client: true,
        }),
    );
    let files = server.tls_files().expect("TLS files").clone();
    let token = || statik(NatsCredentials::Token(Secret::new("smol-tls")));
    let path = |p: &Path| Some(p.display().to_string());
    let mut with_cert = options(&server);
    with_cert.tls = NatsTls {
        ca: path(&files.ca),
        cert: path(&files.client_cert),
        key: path(&files.client_key),
    };
    let (result, _) = attempt(&with_cert, token());
    let (_, client) = result.expect("mutual TLS connects");
    round_trip(&client, "smol.tls");

    let mut without_cert = options(&server);
    without_cert.tls.ca = path(&files.ca);
    let (result, _) = attempt(&without_cert, token());
    assert!(
        matches!(result, Err(NatsConnectError::Tls(_))),
        "{:?}",
        result.err()
    );

    let mut unknown_ca = with_cert.clone();
    unknown_ca.tls.ca = path(&files.unknown_ca);
    let (result, _) = attempt(&unknown_ca, token());
    assert!(
        matches!(result, Err(NatsConnectError::Tls(_))),
        "{:?}",
        result.err()
    );

    let mut plaintext = options(&server);
    plaintext.url = server.plain_url();
    let (result, _) = attempt(&plaintext, token());
    assert!(
        matches!(&result, Err(NatsConnectError::Tls(text)) if text.contains("requires TLS")),
        "{:?}",
        result.err()
    );
}

#[test]
fn an_unreachable_server_is_retryable() {
    let mut server = NatsServer::start(&Auth::Anonymous);
    let opts = options(&server);
    server.stop();
    let (result, _) = attempt(&opts, NatsCredential::Anonymous);
    assert!(
        matches!(result, Err(NatsConnectError::Unreachable(_))),
        "{:?}",
        result.err()
    );
}

#[test]
fn a_restarted_server_gets_the_subscriptions_again_and_the_member_is_told() {
    let auth = Auth::Token("smol-restart".into());
    let mut server = NatsServer::start(&auth);
    let credential = || statik(NatsCredentials::Token(Secret::new("smol-restart")));
    let (result, events) = attempt(&options(&server), credential());
    let (_, client) = result.expect("connected");
    let subscriptions = [Subscription {
        subject: "jobs.>".into(),
        queue: Some("workers".into()),
        handler: Handler::Agent,
    }];
    let (_, subscriber) = rt::block_on(subscribe_all(&client, &subscriptions))
        .expect("subscribed")
        .pop()
        .expect("one");

    server.restart_with(&auth);
    let event = |what: NatsEvent| {
        rt::block_on(async {
            loop {
                let got = rt::timeout(STEP, events.recv())
                    .await
                    .expect("an event in time")
                    .expect("events open");
                if got == what {
                    break;
                }
            }
        });
    };
    event(NatsEvent::Disconnected);
    event(NatsEvent::Reconnected);
    rt::block_on(client.flush()).expect("a round trip on the new link");

    let publisher = connects(&server, credential());
    rt::block_on(async {
        publisher
            .publish("jobs.42", None, &b"after restart"[..])
            .await
            .expect("published");
        let msg = next(&subscriber).await;
        assert_eq!(&msg.payload[..], b"after restart");
    });
}
