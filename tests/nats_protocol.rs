//! The core's sans-IO NATS client ([`nodegate_core::nats::NatsClient`]) driven over a
//! **blocking `std::net::TcpStream`** — no async runtime anywhere — against a real
//! `nats-server` per test, in every authentication mode: the proof that the core's protocol
//! runs on any I/O. Each mode connects, and is rejected with a typed
//! `AuthorizationViolation` when the credential is wrong; messages with headers, request-reply,
//! "no responders", permission violations, TLS refusal, keepalive and a reconnect that
//! re-subscribes run against the same servers. Every wait is bounded ([`STEP_LIMIT`]).

mod common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::nats::{Auth, NatsServer, Operator, Tls};
use nkeys::KeyPair;
use nodegate::config::Secret;
use nodegate::jwt::{NodeType, Signer};
use nodegate_core::nats::{
    ClientConfig, CloseReason, ConnectionState, Credential, Event, Headers, NatsClient, Permission,
    RequestFailure, ServerError,
};

/// Bound on any one wait for an event.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// How long one blocking read may sleep before the loop looks at its timers.
const READ_SLICE: Duration = Duration::from_millis(20);

/// An nkey pair the connection owns (the core only sees `public_key` and `sign`).
struct OwnedSigner(KeyPair);

impl Signer for OwnedSigner {
    fn public_key(&self) -> String {
        self.0.public_key()
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(data).expect("a pair with a seed signs")
    }
}

fn signer_from_seed(seed: &str) -> Box<OwnedSigner> {
    Box::new(OwnedSigner(KeyPair::from_seed(seed).expect("a valid seed")))
}

/// The adapter's clock (the harness may read it; the core may not).
fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

/// The whole driver: a blocking socket and the machine, run by the drain contract.
struct Connection {
    stream: TcpStream,
    client: NatsClient,
    events: VecDeque<Event>,
}

impl Connection {
    fn open(server: &NatsServer, credential: Credential) -> Self {
        Self::open_with(server, credential, config())
    }

    fn open_with(server: &NatsServer, credential: Credential, config: ClientConfig) -> Self {
        let stream = connect_tcp(server);
        let client = NatsClient::new(config, credential, now()).expect("a valid config");
        let mut connection = Self {
            stream,
            client,
            events: VecDeque::new(),
        };
        connection.drain();
        connection
    }

    /// Writes every pending byte, then collects every event.
    fn drain(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            if self.stream.write_all(&bytes).is_err() {
                self.client.handle_disconnected();
            }
        }
        while let Some(event) = self.client.poll_event() {
            self.events.push_back(event);
        }
    }

    /// One turn of the run loop: wait (bounded) for bytes or the machine's timer.
    fn turn(&mut self) {
        if self.client.state() != ConnectionState::Closed {
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => self.client.handle_disconnected(),
                Ok(n) => self.client.handle_input(&buf[..n], now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.client.handle_disconnected(),
            }
            if self.client.poll_timeout().is_some_and(|at| now() >= at) {
                self.client.handle_timeout(now());
            }
        }
        self.drain();
    }

    /// Runs the loop until an event matches; returns it (earlier events stay queued in order
    /// for `next_event`, except the match). Panics after [`STEP_LIMIT`].
    fn wait_for(&mut self, what: &str, mut matches: impl FnMut(&Event) -> bool) -> Event {
        let start = Instant::now();
        loop {
            if let Some(i) = self.events.iter().position(&mut matches) {
                return self.events.remove(i).expect("found just above");
            }
            assert!(
                !self.events.iter().any(|e| matches!(e, Event::Closed(_))),
                "closed while waiting for {what}; events: {:?}",
                self.events
            );
            assert!(
                start.elapsed() < STEP_LIMIT,
                "no {what} within {STEP_LIMIT:?}; events: {:?}",
                self.events
            );
            self.turn();
        }
    }

    fn wait_connected(&mut self) {
        self.wait_for("Connected", |e| matches!(e, Event::Connected { .. }));
    }

    fn wait_closed(&mut self) -> CloseReason {
        match self.wait_for("Closed", |e| matches!(e, Event::Closed(_))) {
            Event::Closed(reason) => reason,
            _ => unreachable!("matched Closed"),
        }
    }

    /// A server round trip: everything sent before has been processed.
    fn flush(&mut self) {
        let id = self.client.flush().expect("connected");
        self.drain();
        self.wait_for("Flushed", |e| *e == Event::Flushed(id));
    }

    /// Runs the loop for `span` without expecting anything.
    fn idle(&mut self, span: Duration) {
        let start = Instant::now();
        while start.elapsed() < span {
            self.turn();
        }
    }
}

fn connect_tcp(server: &NatsServer) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect to nats-server");
    stream
        .set_read_timeout(Some(READ_SLICE))
        .expect("set a read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new(&format!("T{}", now().as_nanos()));
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(5);
    config
}

/// Connects and checks that `credential` is accepted.
fn assert_connects(server: &NatsServer, credential: Credential) -> Connection {
    let mut connection = Connection::open(server, credential);
    connection.wait_connected();
    assert!(connection.client.is_connected());
    connection
}

/// Connects and checks that `credential` is refused as an authorization violation, for good.
fn assert_rejected(server: &NatsServer, credential: Credential) {
    let mut connection = Connection::open(server, credential);
    let reason = connection.wait_closed();
    assert_eq!(
        reason,
        CloseReason::ServerError(ServerError::AuthorizationViolation)
    );
    assert_eq!(
        connection.client.should_reconnect(&reason),
        None,
        "an authorization violation is not retried"
    );
}

/// Publishes a message with headers to itself and checks what comes back.
fn assert_pub_sub_with_headers(connection: &mut Connection, subject: &str) {
    let sid = connection.client.subscribe(subject, None).expect("valid");
    connection.flush();
    let mut headers = Headers::new();
    headers.append("Nodegate-Trace", "abc-123").expect("valid");
    headers.append("X-Repeated", "1").expect("valid");
    headers.append("X-Repeated", "2").expect("valid");
    connection
        .client
        .publish(
            subject,
            Some("reply.here"),
            Some(&headers),
            b"payload bytes",
        )
        .expect("connected");
    connection.drain();
    let Event::Message(msg) = connection.wait_for("Message", |e| matches!(e, Event::Message(_)))
    else {
        unreachable!("matched Message")
    };
    assert_eq!(msg.sid, sid);
    assert_eq!(msg.subject.as_str(), subject);
    assert_eq!(msg.reply.as_ref().map(|r| r.as_str()), Some("reply.here"));
    assert_eq!(&msg.payload[..], b"payload bytes");
    let got = msg.headers.expect("HMSG carries the headers");
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        [
            ("Nodegate-Trace", "abc-123"),
            ("X-Repeated", "1"),
            ("X-Repeated", "2")
        ]
    );
}

#[test]
fn anonymous_connects_and_round_trips_a_message_with_headers() {
    let server = NatsServer::start(&Auth::Anonymous);
    let mut connection = assert_connects(&server, Credential::Anonymous);
    let info = connection.client.server_info().expect("INFO").clone();
    assert!(info.headers && !info.auth_required);
    assert_pub_sub_with_headers(&mut connection, "nodegate.test.headers");
}

#[test]
fn token_connects_and_a_wrong_token_is_an_authorization_violation() {
    let server = NatsServer::start(&Auth::Token("s3cr3t-token".into()));
    let mut connection = assert_connects(&server, Credential::Token(Secret::new("s3cr3t-token")));
    assert!(
        connection
            .client
            .server_info()
            .is_some_and(|i| i.auth_required)
    );
    assert_pub_sub_with_headers(&mut connection, "t.x");
    assert_rejected(&server, Credential::Token(Secret::new("s3cr3t-toke")));
    assert_rejected(&server, Credential::Anonymous);
}

#[test]
fn user_password_connects_and_a_wrong_password_is_an_authorization_violation() {
    let server = NatsServer::start(&Auth::UserPassword {
        user: "worker".into(),
        password: "pa55 word".into(),
    });
    let user = |password: &str| Credential::UserPassword {
        user: "worker".to_owned(),
        password: Secret::new(password),
    };
    assert_connects(&server, user("pa55 word"));
    assert_rejected(&server, user("pa55word"));
}

#[test]
fn nkey_signs_the_nonce_and_an_unknown_key_is_an_authorization_violation() {
    let pair = KeyPair::new_user();
    let server = NatsServer::start(&Auth::Nkey {
        public_key: pair.public_key(),
    });
    let mut connection = Connection::open(&server, Credential::Nkey(Box::new(OwnedSigner(pair))));
    let Event::Connected { server_info } =
        connection.wait_for("Connected", |e| matches!(e, Event::Connected { .. }))
    else {
        unreachable!("matched Connected")
    };
    // The INFO the handshake answered carried the nonce that was signed (the update the
    // server sends once connected does not).
    assert!(server_info.nonce.is_some() && server_info.auth_required);
    assert_rejected(
        &server,
        Credential::Nkey(Box::new(OwnedSigner(KeyPair::new_user()))),
    );
}

#[test]
fn operator_mode_jwt_connects_and_a_foreign_key_is_an_authorization_violation() {
    let operator = Operator::new();
    let server = NatsServer::start(&operator.auth());
    let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
    let mut connection = assert_connects(
        &server,
        Credential::Jwt {
            jwt: Secret::new(jwt.clone()),
            signer: signer_from_seed(&seed),
        },
    );
    assert_pub_sub_with_headers(&mut connection, "nodes.n1.files.probe");
    // The JWT is right but the nonce is signed by another user key.
    assert_rejected(
        &server,
        Credential::Jwt {
            jwt: Secret::new(jwt),
            signer: Box::new(OwnedSigner(KeyPair::new_user())),
        },
    );
    assert_rejected(&server, Credential::Anonymous);
}

#[test]
fn subjects_outside_the_jwt_allow_lists_are_permission_violations() {
    let operator = Operator::new();
    let server = NatsServer::start(&operator.auth());
    let (jwt, seed) = operator.mint_user("n1", NodeType::Backend, 3600);
    let mut connection = assert_connects(
        &server,
        Credential::Jwt {
            jwt: Secret::new(jwt),
            signer: signer_from_seed(&seed),
        },
    );
    connection
        .client
        .subscribe("nodes.n2.>", None)
        .expect("valid");
    connection
        .client
        .publish("nodes.n2.stop", None, None, b"")
        .expect("valid");
    connection.flush();
    let errors: Vec<ServerError> = connection
        .events
        .drain(..)
        .filter_map(|e| match e {
            Event::ServerError(error) => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            ServerError::PermissionViolation {
                kind: Permission::Subscribe,
                subject: "nodes.n2.>".to_owned()
            },
            ServerError::PermissionViolation {
                kind: Permission::Publish,
                subject: "nodes.n2.stop".to_owned()
            },
        ]
    );
    assert!(
        connection.client.is_connected(),
        "a violation keeps the link"
    );
}

#[test]
fn request_reply_between_two_connections_and_no_responders() {
    let server = NatsServer::start(&Auth::Anonymous);
    let mut responder = assert_connects(&server, Credential::Anonymous);
    responder
        .client
        .subscribe("svc.echo", Some("echoers"))
        .expect("valid");
    responder.flush();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                responder.turn();
                while let Some(event) = responder.events.pop_front() {
                    if let Event::Message(msg) = event {
                        let mut answer = b"echo: ".to_vec();
                        answer.extend_from_slice(&msg.payload);
                        let reply = msg.reply.expect("a request carries a reply subject");
                        responder
                            .client
                            .publish(reply.as_str(), None, None, &answer)
                            .expect("connected");
                        responder.drain();
                    }
                }
            }
        })
    };

    let mut requester = assert_connects(&server, Credential::Anonymous);
    let request = requester
        .client
        .request("svc.echo", b"hello", now())
        .expect("connected");
    requester.drain();
    let reply = requester.wait_for("Reply", |e| matches!(e, Event::Reply { .. }));
    let Event::Reply { request: id, msg } = reply else {
        unreachable!("matched Reply")
    };
    assert_eq!(id, request);
    assert_eq!(&msg.payload[..], b"echo: hello");

    let nobody = requester
        .client
        .request("svc.nobody", b"", now())
        .expect("connected");
    requester.drain();
    let failed = requester.wait_for("RequestFailed", |e| {
        matches!(e, Event::RequestFailed { .. })
    });
    assert_eq!(
        failed,
        Event::RequestFailed {
            request: nobody,
            reason: RequestFailure::NoResponders
        }
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("the responder thread ends cleanly");
}

#[test]
fn a_tls_server_is_refused_in_plaintext_without_sending_credentials() {
    let server = NatsServer::start_with(
        &Auth::Token("tls-token".into()),
        Some(Tls {
            verify_client: false,
        }),
    );
    let mut connection = Connection::open(&server, Credential::Token(Secret::new("tls-token")));
    let reason = connection.wait_closed();
    assert_eq!(reason, CloseReason::TlsRequiredByServer);
    assert_eq!(connection.client.should_reconnect(&reason), None);
}

#[test]
fn keepalive_pings_are_answered_by_a_real_server() {
    let server = NatsServer::start(&Auth::Anonymous);
    let mut config = config();
    config.ping_interval = Duration::from_millis(100);
    config.max_pings_out = 1;
    let mut connection = Connection::open_with(&server, Credential::Anonymous, config);
    connection.wait_connected();
    connection.idle(Duration::from_millis(800));
    assert!(connection.client.is_connected(), "{:?}", connection.events);
}

#[test]
fn a_restarted_server_gets_the_live_subscriptions_again() {
    let auth = Auth::Token("restart-token".into());
    let mut server = NatsServer::start(&auth);
    let credential = || Credential::Token(Secret::new("restart-token"));
    let mut connection = assert_connects(&server, credential());
    let sid = connection
        .client
        .subscribe("jobs.>", Some("workers"))
        .expect("valid");
    connection.flush();

    server.restart_with(&auth);
    let reason = connection.wait_closed();
    assert_eq!(reason, CloseReason::ConnectionLost);
    let delay = connection
        .client
        .should_reconnect(&reason)
        .expect("a lost connection is retried");
    std::thread::sleep(delay);
    connection.stream = connect_tcp(&server);
    connection.client.reset_for_reconnect(now());
    connection.drain();
    connection.wait_connected();
    connection.flush();

    let mut publisher = assert_connects(&server, credential());
    publisher
        .client
        .publish("jobs.42", None, None, b"after restart")
        .expect("connected");
    publisher.flush();
    let Event::Message(msg) = connection.wait_for("Message", |e| matches!(e, Event::Message(_)))
    else {
        unreachable!("matched Message")
    };
    assert_eq!(msg.sid, sid, "the subscription kept its id");
    assert_eq!(&msg.payload[..], b"after restart");
}
