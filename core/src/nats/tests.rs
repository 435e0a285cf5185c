//! Tests of the NATS protocol: byte sequences captured from nats-server 2.15.1, split at every
//! byte; the client machine on a simulated clock; property tests of the round trip and of the
//! parser on arbitrary bytes.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::Secret;
use crate::jwt::Signer;

const T0: Duration = Duration::from_secs(1_800_000_000);

// --- captured from nats-server v2.15.1 (plain TCP, `nc`-style clients) ------------------------

/// The first `INFO` of an anonymous server (note the space before CRLF).
const INFO_ANON: &[u8] = br#"INFO {"server_id":"NCQ3VLWXFSPQP7TRHJL5LZJRMHADNVMOBWDMHB7YE27J73USCQSZF2RS","server_name":"NCQ3VLWXFSPQP7TRHJL5LZJRMHADNVMOBWDMHB7YE27J73USCQSZF2RS","version":"2.15.1","proto":1,"git_commit":"b2fd3ef","go":"go1.27.2","host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"client_id":6,"client_ip":"127.0.0.1","api_lvl":5,"xkey":"XBWRNOWEUWOWESHPTT7ZNF7YPRPOONPSSIWHNAYCBDKX7CNZQQ7W4UCY"} 
"#;

/// The server's answer to `CONNECT` + `PING`, then the `INFO` update it sends once connected.
const PONG_THEN_INFO: &[u8] = b"PONG\r\nINFO {\"server_id\":\"NCQ3VLWXFSPQP7TRHJL5LZJRMHADNVMOBWDMHB7YE27J73USCQSZF2RS\",\"version\":\"2.15.1\",\"proto\":1,\"headers\":true,\"max_payload\":1048576,\"client_id\":6,\"connect_info\":true,\"remote_account\":\"$G\"} \r\n";

/// `SUB foo 1`, `SUB foo q 2`, `PUB foo reply 5`, an `HPUB foo` with `A: b`, a request to a
/// subject nobody listens to, `PING`, then `BLAH`.
const DELIVERIES: &[u8] = b"MSG foo 1 reply 5\r\nhello\r\nMSG foo 2 reply 5\r\nhello\r\nHMSG foo 1 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\nHMSG foo 2 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\nHMSG _INBOX.rep 3 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n";

/// A token server: `INFO` with `auth_required`, then the answer to a wrong token.
const TOKEN_REJECTED: &[u8] = b"INFO {\"server_id\":\"NAQMNHTRVURGX6XZWK34KVHLGVEV4X6B4LO57VJLUOPYDU4BYNDEXBGO\",\"version\":\"2.15.1\",\"proto\":1,\"headers\":true,\"auth_required\":true,\"max_payload\":1048576,\"client_id\":5} \r\n-ERR 'Authorization Violation'\r\n";

/// `verbose: true`: `+OK` after `CONNECT` and `PUB`.
const VERBOSE: &[u8] = b"+OK\r\nPONG\r\n+OK\r\n";

/// A user with allow lists: `SUB nope.x`, `PUB nope.y`, then `PING`, then a 2 MB `PUB`.
const PERMISSIONS: &[u8] = b"-ERR 'Permissions Violation for Subscription to \"nope.x\"'\r\n-ERR 'Permissions Violation for Publish to \"nope.y\"'\r\nPONG\r\n-ERR 'Maximum Payload Violation'\r\n";

/// No `CONNECT` within the server's `authorization { timeout }`.
const AUTH_TIMEOUT: &[u8] = b"-ERR 'Authentication Timeout'\r\n";

/// An nkey server's `INFO` (with a nonce).
const INFO_NONCE: &[u8] = b"INFO {\"server_id\":\"NB\",\"version\":\"2.15.1\",\"proto\":1,\"headers\":true,\"auth_required\":true,\"max_payload\":1048576,\"nonce\":\"9DK0vTxkDMy6GUQ\"} \r\n";

const ALL_CAPTURES: &[&[u8]] = &[
    INFO_ANON,
    PONG_THEN_INFO,
    DELIVERIES,
    TOKEN_REJECTED,
    VERBOSE,
    PERMISSIONS,
    AUTH_TIMEOUT,
    INFO_NONCE,
];

// --- helpers ----------------------------------------------------------------------------------

/// Every operation (and the first error) of `chunks` fed in order to one parser.
fn parse_chunks<'a>(
    limits: Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ServerOp>, Option<ParseError>) {
    let mut parser = Parser::new(limits);
    let mut ops = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        loop {
            match parser.next_op() {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) if e.is_fatal() => return (ops, Some(e)),
                Err(_) => {}
            }
        }
    }
    (ops, None)
}

fn parse_all(bytes: &[u8]) -> Vec<ServerOp> {
    let (ops, error) = parse_chunks(Limits::default(), [bytes]);
    assert_eq!(error, None, "{}", String::from_utf8_lossy(bytes));
    ops
}

fn subject(s: &str) -> Subject {
    Subject::new(s).expect("a valid subject")
}

fn msg(subject_: &str, sid: u64, reply: Option<&str>, payload: &'static [u8]) -> ServerOp {
    ServerOp::Msg(Msg {
        subject: subject(subject_),
        sid: Sid(sid),
        reply: reply.map(subject),
        headers: None,
        payload: Bytes::from_static(payload),
    })
}

/// A deterministic stand-in for an nkey pair: the "signature" is the data reversed.
struct FakeSigner(&'static str);

impl Signer for FakeSigner {
    fn public_key(&self) -> String {
        self.0.to_owned()
    }
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        data.iter().rev().copied().collect()
    }
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new("T3ST");
    config.ping_interval = Duration::from_secs(10);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn client(credential: Credential) -> NatsClient {
    NatsClient::new(config(), credential, T0).expect("valid config")
}

fn transmitted(client: &mut NatsClient) -> String {
    let mut out = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
    String::from_utf8(out).expect("the client writes text here")
}

fn events(client: &mut NatsClient) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// A machine past the handshake (anonymous, `INFO_ANON`), its output drained.
fn connected() -> NatsClient {
    let mut c = client(Credential::Anonymous);
    c.handle_input(INFO_ANON, T0);
    c.handle_input(b"PONG\r\n", T0);
    assert!(c.is_connected());
    transmitted(&mut c);
    events(&mut c);
    c
}

fn connect_json(written: &str) -> serde_json::Value {
    let line = written
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("CONNECT "))
        .expect("CONNECT first");
    serde_json::from_str(line).expect("CONNECT carries JSON")
}

// --- parser: captured sequences ---------------------------------------------------------------

#[test]
fn parses_the_servers_first_info() {
    let ops = parse_all(INFO_ANON);
    let [ServerOp::Info(info)] = ops.as_slice() else {
        panic!("{ops:?}")
    };
    assert_eq!(info.version, "2.15.1");
    assert_eq!(info.max_payload, 1_048_576);
    assert!(info.headers);
    assert!(!info.auth_required && !info.tls_required);
    assert_eq!(info.nonce, None);
}

#[test]
fn parses_deliveries_headers_and_no_responders() {
    let ops = parse_all(DELIVERIES);
    assert_eq!(ops.len(), 7);
    assert_eq!(ops[0], msg("foo", 1, Some("reply"), b"hello"));
    assert_eq!(ops[1], msg("foo", 2, Some("reply"), b"hello"));
    let ServerOp::Msg(hmsg) = &ops[2] else {
        panic!()
    };
    let headers = hmsg.headers.as_ref().expect("HMSG has headers");
    assert_eq!(headers.get("A"), Some("b"));
    assert_eq!(headers.status(), None);
    assert_eq!(hmsg.payload, Bytes::from_static(b"hello"));
    assert!(!hmsg.is_no_responders());
    let ServerOp::Msg(no_responders) = &ops[4] else {
        panic!()
    };
    assert!(no_responders.is_no_responders());
    assert_eq!(
        no_responders
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Subject")),
        Some("nobody")
    );
    assert_eq!(ops[5], ServerOp::Pong);
    assert_eq!(
        ops[6],
        ServerOp::Err("Unknown Protocol Operation".to_owned())
    );
}

#[test]
fn parses_verbose_acks_and_errors() {
    assert_eq!(
        parse_all(VERBOSE),
        [ServerOp::Ok, ServerOp::Pong, ServerOp::Ok]
    );
    let errors: Vec<ServerError> = parse_all(PERMISSIONS)
        .into_iter()
        .filter_map(|op| match op {
            ServerOp::Err(text) => Some(ServerError::parse(&text)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            ServerError::PermissionViolation {
                kind: Permission::Subscribe,
                subject: "nope.x".to_owned()
            },
            ServerError::PermissionViolation {
                kind: Permission::Publish,
                subject: "nope.y".to_owned()
            },
            ServerError::MaxPayloadViolation,
        ]
    );
}

#[test]
fn every_split_of_every_capture_gives_the_same_ops() {
    for capture in ALL_CAPTURES {
        let whole = parse_chunks(Limits::default(), [*capture]);
        for at in 0..=capture.len() {
            let (a, b) = capture.split_at(at);
            assert_eq!(
                parse_chunks(Limits::default(), [a, b]),
                whole,
                "split at {at}"
            );
        }
        let bytewise = parse_chunks(Limits::default(), capture.chunks(1));
        assert_eq!(bytewise, whole);
    }
}

#[test]
fn the_whole_session_fed_byte_by_byte_gives_the_same_ops() {
    let session: Vec<u8> = ALL_CAPTURES.concat();
    let whole = parse_chunks(Limits::default(), [session.as_slice()]);
    assert_eq!(whole.1, None);
    assert_eq!(parse_chunks(Limits::default(), session.chunks(1)), whole);
    assert_eq!(parse_chunks(Limits::default(), session.chunks(7)), whole);
}

#[test]
fn operation_names_are_case_insensitive_and_tabs_separate_arguments() {
    let ops = parse_all(b"ping\r\nPong\r\n+ok\r\n-err 'x'\r\nmsg\ta\t1\t\t2\r\nhi\r\nhMsG a 1 12 12\r\nNATS/1.0\r\n\r\n\r\ninfo {}\r\n");
    assert_eq!(
        ops,
        [
            ServerOp::Ping,
            ServerOp::Pong,
            ServerOp::Ok,
            ServerOp::Err("x".to_owned()),
            msg("a", 1, None, b"hi"),
            ServerOp::Msg(Msg {
                subject: subject("a"),
                sid: Sid(1),
                reply: None,
                headers: Some(Headers::new()),
                payload: Bytes::new(),
            }),
            ServerOp::Info(Box::default()),
        ]
    );
}

#[test]
fn a_bare_line_feed_ends_a_line() {
    assert_eq!(
        parse_all(b"PING\nMSG a 1 2\nhi\r\n"),
        [ServerOp::Ping, msg("a", 1, None, b"hi")]
    );
}

#[test]
fn need_more_bytes_is_not_an_error() {
    let mut parser = Parser::default();
    for partial in [&b"MS"[..], b"G a 1 5\r", b"\nhel", b"lo\r"] {
        parser.push(partial);
        assert_eq!(parser.next_op(), Ok(None));
    }
    parser.push(b"\n");
    assert_eq!(parser.next_op(), Ok(Some(msg("a", 1, None, b"hello"))));
    assert_eq!(parser.next_op(), Ok(None));
    assert_eq!(parser.buffered(), 0);
}

#[test]
fn a_control_line_longer_than_the_bound_is_refused_whatever_the_split() {
    let limits = Limits {
        max_line: 16,
        ..Limits::default()
    };
    // 16 bytes, CRLF included: accepted.
    let fits = b"-ERR '0123456'\r\n";
    assert_eq!(fits.len(), 16);
    let (ops, _) = parse_chunks(limits, [&fits[..]]);
    assert_eq!(ops, [ServerOp::Err("0123456".to_owned())]);
    // 17 bytes: refused as soon as 16 bytes hold no line end, in any split.
    let long = b"-ERR '01234567'\r\n";
    for at in 0..=long.len() {
        let (a, b) = long.split_at(at);
        assert_eq!(
            parse_chunks(limits, [a, b]),
            (vec![], Some(ParseError::LineTooLong { limit: 16 }))
        );
    }
    let mut parser = Parser::new(limits);
    parser.push(&[b'x'; 16]);
    assert_eq!(parser.next_op(), Err(ParseError::LineTooLong { limit: 16 }));
    assert_eq!(parser.buffered(), 0, "a broken stream holds nothing");
}

#[test]
fn a_payload_over_the_servers_max_payload_is_refused_before_it_arrives() {
    let mut parser = Parser::default();
    parser.push(b"INFO {\"max_payload\":1024}\r\nMSG a 1 1024\r\n");
    assert!(matches!(parser.next_op(), Ok(Some(ServerOp::Info(_)))));
    assert_eq!(parser.max_payload(), 1024);
    assert_eq!(parser.next_op(), Ok(None), "1024 bytes are allowed");
    let mut parser = Parser::default();
    parser.push(b"INFO {\"max_payload\":1024}\r\nHMSG a 1 12 1025\r\n");
    parser.next_op().expect("INFO").expect("an op");
    assert_eq!(
        parser.next_op(),
        Err(ParseError::PayloadTooLarge {
            size: 1025,
            limit: 1024
        })
    );
    // Sticky: the stream is broken.
    parser.push(b"PING\r\n");
    assert!(parser.next_op().is_err());
}

#[test]
fn a_server_announcing_a_huge_max_payload_is_held_to_the_cap() {
    let mut parser = Parser::default();
    parser.push(b"INFO {\"max_payload\":99999999999999}\r\nMSG a 1 99999999999\r\n");
    parser.next_op().expect("INFO").expect("an op");
    assert_eq!(parser.max_payload(), MAX_PAYLOAD_CAP);
    assert!(matches!(
        parser.next_op(),
        Err(ParseError::PayloadTooLarge { .. })
    ));
}

#[test]
fn malformed_framing_is_a_typed_error() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"HELLO\r\n", ParseError::UnknownOperation),
        (b"\r\n", ParseError::UnknownOperation),
        (b"INFO\r\n", ParseError::UnknownOperation),
        (b"INFO {\r\n", ParseError::InvalidInfo { column: 1 }),
        (
            b"MSG a 1\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "wrong number of arguments",
            },
        ),
        (
            b"MSG a b c d e f\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "too many arguments",
            },
        ),
        (
            b"MSG a x 1\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "invalid sid",
            },
        ),
        (
            b"MSG a 1 -1\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "invalid size",
            },
        ),
        (
            b"MSG a 1 99999999999999999999\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "invalid size",
            },
        ),
        (
            b"MSG a\x01b 1 1\r\n",
            ParseError::InvalidArguments {
                op: "MSG",
                what: "invalid subject",
            },
        ),
        (
            b"HMSG a 1 5 4\r\n",
            ParseError::InvalidArguments {
                op: "HMSG",
                what: "header size over total size",
            },
        ),
        (
            b"MSG a 1 2\r\nhiX\r\n",
            ParseError::MissingPayloadTerminator,
        ),
    ];
    for (bytes, expected) in cases {
        let (_, error) = parse_chunks(Limits::default(), [*bytes]);
        assert_eq!(
            error.as_ref(),
            Some(expected),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn malformed_headers_drop_one_message_and_the_stream_goes_on() {
    let mut parser = Parser::default();
    parser.push(b"HMSG a 7 12 12\r\nHTTP/1.1\r\n\r\n\r\nPING\r\n");
    assert_eq!(
        parser.next_op(),
        Err(ParseError::InvalidHeaders {
            sid: Sid(7),
            subject: subject("a"),
            error: HeaderError::MissingVersion
        })
    );
    assert_eq!(parser.next_op(), Ok(Some(ServerOp::Ping)));
}

#[test]
fn header_blocks_parse_status_description_and_repeated_names() {
    let headers =
        Headers::parse(b"NATS/1.0 408 Request Timeout\r\nX: 1\r\nX:2\r\nK:  a: b \r\n\r\n")
            .expect("valid");
    assert_eq!(headers.status(), Some(408));
    assert_eq!(headers.description(), Some("Request Timeout"));
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [("X", "1"), ("X", "2"), ("K", "a: b")]
    );
    assert_eq!(headers.get("X"), Some("1"));
    assert_eq!(headers.get("x"), None, "names are case-sensitive");
    assert_eq!(
        headers.to_bytes(),
        b"NATS/1.0 408 Request Timeout\r\nX: 1\r\nX: 2\r\nK: a: b\r\n\r\n"
    );
    assert_eq!(headers.encoded_len(), headers.to_bytes().len());
    for (bad, error) in [
        (&b"NATS/1.0\r\n"[..], HeaderError::Unterminated),
        (b"NATS/2.0\r\n\r\n", HeaderError::MissingVersion),
        (b"NATS/1.0 50\r\n\r\n", HeaderError::InvalidStatus),
        (b"NATS/1.0 503x\r\n\r\n", HeaderError::InvalidStatus),
        (b"NATS/1.0\r\nnocolon\r\n\r\n", HeaderError::MissingColon),
        (b"NATS/1.0\r\nA B: c\r\n\r\n", HeaderError::InvalidName),
        (b"NATS/1.0\r\n: c\r\n\r\n", HeaderError::InvalidName),
        (b"NATS/1.0\r\nA: b\rc\r\n\r\n", HeaderError::InvalidValue),
    ] {
        assert_eq!(
            Headers::parse(bad),
            Err(error),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn header_values_cannot_inject_lines() {
    let mut headers = Headers::new();
    assert_eq!(
        headers.append("A", "b\r\nEvil: 1"),
        Err(HeaderError::InvalidValue)
    );
    assert_eq!(headers.append("A:B", "c"), Err(HeaderError::InvalidName));
    assert_eq!(headers.append("", "c"), Err(HeaderError::InvalidName));
    assert_eq!(
        Headers::with_status(1000, None),
        Err(HeaderError::InvalidStatus)
    );
    assert_eq!(
        Headers::with_status(503, Some("a\nb")),
        Err(HeaderError::InvalidDescription)
    );
    assert!(headers.is_empty());
}

#[test]
fn error_texts_are_unquoted_once() {
    for (line, text) in [
        (
            &b"-ERR 'Authorization Violation'\r\n"[..],
            "Authorization Violation",
        ),
        (b"-ERR   'spaced'  \r\n", "spaced"),
        (b"-ERR unquoted\r\n", "unquoted"),
        (b"-ERR 'it''\r\n", "it'"),
        (b"-ERR '\r\n", "'"),
        (b"-ERR\r\n", ""),
    ] {
        assert_eq!(parse_all(line), [ServerOp::Err(text.to_owned())]);
    }
}

#[test]
fn server_error_texts_have_types() {
    let cases = [
        (
            "Authorization Violation",
            ServerError::AuthorizationViolation,
        ),
        (
            "authorization violation",
            ServerError::AuthorizationViolation,
        ),
        (
            "User Authentication Expired",
            ServerError::AuthenticationExpired,
        ),
        ("Authentication Timeout", ServerError::AuthenticationTimeout),
        ("Stale Connection", ServerError::StaleConnection),
        (
            "Maximum Payload Violation",
            ServerError::MaxPayloadViolation,
        ),
        (
            "Permissions Violation for Subscription to \"nodes.n2.>\" using queue \"q\"",
            ServerError::PermissionViolation {
                kind: Permission::Subscribe,
                subject: "nodes.n2.>".to_owned(),
            },
        ),
        (
            "permissions violation for publish to x.y",
            ServerError::PermissionViolation {
                kind: Permission::Publish,
                subject: "x.y".to_owned(),
            },
        ),
        (
            "Unknown Protocol Operation",
            ServerError::Other("Unknown Protocol Operation".to_owned()),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(ServerError::parse(text), expected, "{text}");
    }
    assert!(!ServerError::AuthorizationViolation.is_retryable());
    assert!(ServerError::AuthenticationTimeout.is_retryable());
}

// --- encoder ----------------------------------------------------------------------------------

#[test]
fn client_operations_encode_as_the_protocol_says() {
    let mut headers = Headers::new();
    headers.append("Trace", "abc").expect("valid");
    let cases: Vec<(ClientOp, &[u8])> = vec![
        (
            ClientOp::Pub {
                subject: subject("foo"),
                reply: None,
                headers: None,
                payload: Bytes::from_static(b"hello"),
            },
            b"PUB foo 5\r\nhello\r\n",
        ),
        (
            ClientOp::Pub {
                subject: subject("foo"),
                reply: Some(subject("_INBOX.x.1")),
                headers: None,
                payload: Bytes::new(),
            },
            b"PUB foo _INBOX.x.1 0\r\n\r\n",
        ),
        (
            ClientOp::Pub {
                subject: subject("foo"),
                reply: Some(subject("r")),
                headers: Some(headers),
                payload: Bytes::from_static(b"hi"),
            },
            b"HPUB foo r 24 26\r\nNATS/1.0\r\nTrace: abc\r\n\r\nhi\r\n",
        ),
        (
            ClientOp::Sub {
                subject: subject("nodes.*.stop"),
                queue: None,
                sid: Sid(3),
            },
            b"SUB nodes.*.stop 3\r\n",
        ),
        (
            ClientOp::Sub {
                subject: subject("jobs.>"),
                queue: Some(QueueGroup::new("workers").expect("valid")),
                sid: Sid(4),
            },
            b"SUB jobs.> workers 4\r\n",
        ),
        (
            ClientOp::Unsub {
                sid: Sid(4),
                max: None,
            },
            b"UNSUB 4\r\n",
        ),
        (
            ClientOp::Unsub {
                sid: Sid(4),
                max: Some(1),
            },
            b"UNSUB 4 1\r\n",
        ),
        (ClientOp::Ping, b"PING\r\n"),
        (ClientOp::Pong, b"PONG\r\n"),
    ];
    for (op, bytes) in cases {
        assert_eq!(
            op.to_bytes(),
            bytes,
            "{}",
            String::from_utf8_lossy(&op.to_bytes())
        );
    }
}

#[test]
fn subjects_and_queue_groups_are_single_non_empty_tokens() {
    for bad in ["", "a b", "a\tb", "a\r\nPUB x 1", "a\u{7f}", "\0"] {
        assert!(Subject::new(bad).is_err(), "{bad:?}");
        assert!(QueueGroup::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Subject::new(""), Err(NameError::Empty { what: "subject" }));
    assert_eq!(
        QueueGroup::new("a b"),
        Err(NameError::Whitespace {
            what: "queue group"
        })
    );
    for good in ["a", "nodes.n1.>", "*", "_INBOX.abc.1", "ünïcode"] {
        assert!(Subject::new(good).is_ok(), "{good:?}");
    }
}

#[test]
fn connect_has_the_fixed_fields_and_redacts_secrets_in_debug() {
    let mut c = client(Credential::UserPassword {
        user: "u".to_owned(),
        password: Secret::new("pw-SECRET"),
    });
    c.handle_input(
        TOKEN_REJECTED.split(|&b| b == b'\n').next().expect("INFO"),
        T0,
    );
    c.handle_input(b"\n", T0);
    let written = transmitted(&mut c);
    let json = connect_json(&written);
    assert_eq!(json["verbose"], false);
    assert_eq!(json["pedantic"], false);
    assert_eq!(json["tls_required"], false);
    assert_eq!(json["lang"], LANG);
    assert_eq!(json["version"], VERSION);
    assert_eq!(json["protocol"], 1);
    assert_eq!(json["headers"], true);
    assert_eq!(json["no_responders"], true);
    assert_eq!(json["user"], "u");
    assert_eq!(json["pass"], "pw-SECRET");
    assert!(written.ends_with("}\r\nPING\r\n"));
    assert!(!format!("{c:?}").contains("pw-SECRET"));
    let connect = Connect {
        verbose: false,
        pedantic: false,
        tls_required: false,
        name: None,
        lang: LANG.to_owned(),
        version: VERSION.to_owned(),
        protocol: 1,
        echo: true,
        headers: true,
        no_responders: true,
        auth_token: Some(Secret::new("tok-SECRET")),
        user: None,
        pass: Some(Secret::new("pw-SECRET")),
        nkey: None,
        jwt: Some(Secret::new("jwt-SECRET")),
        sig: Some("sig-SECRET".to_owned()),
    };
    assert!(!format!("{connect:?}").contains("SECRET"));
    assert!(!format!("{:?}", ClientOp::Connect(Box::new(connect))).contains("SECRET"));
}

// --- client machine: handshake ----------------------------------------------------------------

#[test]
fn anonymous_handshake_connects_on_the_first_pong() {
    let mut c = client(Credential::Anonymous);
    assert_eq!(c.state(), ConnectionState::AwaitingInfo);
    assert_eq!(transmitted(&mut c), "", "nothing before INFO");
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    c.handle_input(INFO_ANON, T0);
    let written = transmitted(&mut c);
    let json = connect_json(&written);
    for field in ["auth_token", "user", "pass", "nkey", "jwt", "sig"] {
        assert!(json.get(field).is_none(), "{field}");
    }
    assert_eq!(c.state(), ConnectionState::AwaitingPong);
    assert!(events(&mut c).is_empty());
    c.handle_input(PONG_THEN_INFO, T0);
    let events = events(&mut c);
    let [Event::Connected { server_info }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(server_info.max_payload, 1_048_576);
    assert!(c.is_connected());
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(10)));
}

#[test]
fn token_goes_in_auth_token_and_a_wrong_one_is_an_authorization_violation() {
    let mut c = client(Credential::Token(Secret::new("s3cret")));
    let (info, rejection) = TOKEN_REJECTED.split_at(TOKEN_REJECTED.len() - 32);
    c.handle_input(info, T0);
    let json = connect_json(&transmitted(&mut c));
    c.handle_input(rejection, T0);
    assert_eq!(json["auth_token"], "s3cret");
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseReason::ServerError(
            ServerError::AuthorizationViolation
        ))]
    );
    let reason = c.close_reason().expect("closed").clone();
    assert_eq!(
        c.should_reconnect(&reason),
        None,
        "auth violations are final"
    );
    assert_eq!(c.poll_timeout(), None);
    c.handle_input(b"PONG\r\n", T0);
    assert!(events(&mut c).is_empty(), "closed ignores input");
}

#[test]
fn nkey_signs_the_nonce_in_base64url_without_padding() {
    let mut c = client(Credential::Nkey(Box::new(FakeSigner("UNKEYPUBLIC"))));
    c.handle_input(INFO_NONCE, T0);
    let json = connect_json(&transmitted(&mut c));
    assert_eq!(json["nkey"], "UNKEYPUBLIC");
    let expected: Vec<u8> = b"9DK0vTxkDMy6GUQ".iter().rev().copied().collect();
    use base64::Engine as _;
    assert_eq!(
        json["sig"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(expected)
    );
    assert!(json.get("jwt").is_none());
}

#[test]
fn jwt_sends_the_token_and_the_signature_of_the_nonce() {
    let mut c = client(Credential::Jwt {
        jwt: Secret::new("eyJ.jwt-SECRET.sig"),
        signer: Box::new(FakeSigner("UUSER")),
    });
    c.handle_input(INFO_NONCE, T0);
    let json = connect_json(&transmitted(&mut c));
    assert_eq!(json["jwt"], "eyJ.jwt-SECRET.sig");
    assert!(json["sig"].as_str().is_some_and(|s| !s.contains('=')));
    assert!(json.get("nkey").is_none());
    assert!(!format!("{c:?}").contains("jwt-SECRET"));
}

#[test]
fn a_server_requiring_tls_is_refused_in_plaintext_before_any_credential_is_sent() {
    let mut c = client(Credential::Token(Secret::new("s3cret")));
    c.handle_input(
        b"INFO {\"tls_required\":true,\"auth_required\":true}\r\n",
        T0,
    );
    assert_eq!(transmitted(&mut c), "", "no CONNECT in plaintext");
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseReason::TlsRequiredByServer)]
    );
    assert_eq!(c.should_reconnect(&CloseReason::TlsRequiredByServer), None);
}

#[test]
fn tls_upgrade_waits_for_the_adapters_handshake() {
    let mut cfg = config();
    cfg.tls = TlsMode::Upgrade;
    let mut c = NatsClient::new(cfg.clone(), Credential::Anonymous, T0).expect("valid");
    c.handle_input(b"INFO {\"tls_required\":true}\r\n", T0);
    assert_eq!(events(&mut c), [Event::StartTls]);
    assert_eq!(transmitted(&mut c), "");
    assert_eq!(c.state(), ConnectionState::AwaitingTls);
    c.handle_tls_established(T0);
    let json = connect_json(&transmitted(&mut c));
    assert_eq!(json["tls_required"], true);
    // A server that offers no TLS at all.
    let mut c = NatsClient::new(cfg, Credential::Anonymous, T0).expect("valid");
    c.handle_input(b"INFO {}\r\n", T0);
    assert_eq!(events(&mut c), [Event::Closed(CloseReason::TlsNotOffered)]);
    assert_eq!(transmitted(&mut c), "");
}

#[test]
fn plaintext_after_info_is_never_read_as_if_it_came_over_tls() {
    let mut cfg = config();
    cfg.tls = TlsMode::Upgrade;
    // Injected in the same read as INFO.
    let mut c = NatsClient::new(cfg.clone(), Credential::Anonymous, T0).expect("valid");
    c.handle_input(b"INFO {\"tls_required\":true}\r\nPONG\r\n", T0);
    assert_eq!(
        events(&mut c),
        [
            Event::StartTls,
            Event::Closed(CloseReason::PlaintextBeforeTls)
        ]
    );
    assert_eq!(transmitted(&mut c), "");
    // Injected in a later read, before the handshake finished.
    let mut c = NatsClient::new(cfg, Credential::Anonymous, T0).expect("valid");
    c.handle_input(b"INFO {\"tls_required\":true}\r\n", T0);
    c.handle_input(b"PING\r\n", T0);
    assert_eq!(
        events(&mut c),
        [
            Event::StartTls,
            Event::Closed(CloseReason::PlaintextBeforeTls)
        ]
    );
    c.handle_tls_established(T0);
    assert_eq!(transmitted(&mut c), "", "no CONNECT after a refusal");
}

#[test]
fn an_already_tls_transport_connects_at_once() {
    let mut cfg = config();
    cfg.tls = TlsMode::Established;
    let mut c = NatsClient::new(cfg, Credential::Anonymous, T0).expect("valid");
    c.handle_input(b"INFO {\"tls_required\":true}\r\n", T0);
    assert_eq!(connect_json(&transmitted(&mut c))["tls_required"], true);
}

#[test]
fn any_error_during_the_handshake_closes_with_its_type() {
    for (text, error) in [
        (AUTH_TIMEOUT, ServerError::AuthenticationTimeout),
        (
            &b"-ERR 'User Authentication Expired'\r\n"[..],
            ServerError::AuthenticationExpired,
        ),
        (
            b"-ERR 'maximum connections exceeded'\r\n",
            ServerError::Other("maximum connections exceeded".to_owned()),
        ),
    ] {
        let mut c = client(Credential::Anonymous);
        c.handle_input(INFO_ANON, T0);
        c.handle_input(text, T0);
        assert_eq!(
            events(&mut c),
            [Event::Closed(CloseReason::ServerError(error))]
        );
    }
}

#[test]
fn a_peer_that_does_not_start_with_info_is_not_nats() {
    let mut c = client(Credential::Anonymous);
    c.handle_input(b"HTTP/1.1 400 Bad Request\r\n", T0);
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseReason::Protocol(
            ParseError::UnknownOperation
        ))]
    );
    let mut c = client(Credential::Anonymous);
    c.handle_input(b"PONG\r\n", T0);
    assert_eq!(events(&mut c), [Event::Closed(CloseReason::NoInfo)]);
}

#[test]
fn the_handshake_times_out() {
    let mut c = client(Credential::Anonymous);
    c.handle_timeout(T0 + Duration::from_secs(4));
    assert!(events(&mut c).is_empty());
    c.handle_timeout(T0 + Duration::from_secs(5));
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseReason::HandshakeTimeout)]
    );
    assert_eq!(
        c.should_reconnect(&CloseReason::HandshakeTimeout),
        Some(Duration::from_millis(500))
    );
}

#[test]
fn handshake_split_at_every_byte_gives_the_same_transcript() {
    let server: Vec<u8> = [INFO_ANON, PONG_THEN_INFO, DELIVERIES].concat();
    let run = |chunks: &[&[u8]]| {
        let mut c = client(Credential::Anonymous);
        c.subscribe("foo", None).expect("valid");
        let mut written = String::new();
        let mut seen = Vec::new();
        for chunk in chunks {
            c.handle_input(chunk, T0);
            written.push_str(&transmitted(&mut c));
            seen.extend(events(&mut c));
        }
        (written, seen)
    };
    let whole = run(&[&server]);
    assert!(matches!(whole.1[0], Event::Connected { .. }));
    assert!(whole.1.contains(&Event::ServerError(ServerError::Other(
        "Unknown Protocol Operation".to_owned()
    ))));
    for at in 0..=server.len() {
        let (a, b) = server.split_at(at);
        assert_eq!(run(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = server.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

// --- client machine: connected ----------------------------------------------------------------

#[test]
fn server_pings_are_answered_with_pongs() {
    let mut c = client(Credential::Anonymous);
    c.handle_input(INFO_ANON, T0);
    transmitted(&mut c);
    c.handle_input(b"PING\r\n", T0);
    assert_eq!(transmitted(&mut c), "PONG\r\n", "even during the handshake");
    let mut c = connected();
    c.handle_input(b"PING\r\nPING\r\n", T0);
    assert_eq!(transmitted(&mut c), "PONG\r\nPONG\r\n");
}

#[test]
fn output_queued_before_a_close_is_still_written_whatever_the_split() {
    // Found by the `nats_parse` fuzzer: the PONG was dropped when the PING and the garbage
    // after it came in one read, and written when they came in two.
    for chunks in [
        &[&b"PING\r\nHELLO\r\n"[..]][..],
        &[b"PING\r\n", b"HELLO\r\n"],
    ] {
        let mut c = connected();
        for chunk in chunks {
            c.handle_input(chunk, T0);
        }
        assert_eq!(transmitted(&mut c), "PONG\r\n");
        assert_eq!(
            events(&mut c),
            [Event::Closed(CloseReason::Protocol(
                ParseError::UnknownOperation
            ))]
        );
    }
}

#[test]
fn keepalive_pings_at_the_interval_and_closes_a_stale_connection() {
    let mut c = connected();
    let interval = Duration::from_secs(10);
    assert_eq!(c.poll_timeout(), Some(T0 + interval));
    c.handle_timeout(T0 + interval - Duration::from_millis(1));
    assert_eq!(transmitted(&mut c), "");
    c.handle_timeout(T0 + interval);
    assert_eq!(transmitted(&mut c), "PING\r\n");
    c.handle_input(b"PONG\r\n", T0 + interval);
    // Two unanswered PINGs are allowed; the third interval closes.
    c.handle_timeout(T0 + interval * 2);
    c.handle_timeout(T0 + interval * 3);
    assert_eq!(transmitted(&mut c), "PING\r\nPING\r\n");
    assert!(events(&mut c).is_empty());
    c.handle_timeout(T0 + interval * 4);
    assert_eq!(
        events(&mut c),
        [Event::Closed(CloseReason::StaleConnection)]
    );
    assert_eq!(transmitted(&mut c), "");
    assert!(c.should_reconnect(&CloseReason::StaleConnection).is_some());
}

#[test]
fn messages_reach_live_subscriptions_only() {
    let mut c = connected();
    let foo = c.subscribe("foo", None).expect("valid");
    let bar = c.subscribe("bar", Some("q")).expect("valid");
    assert_eq!(transmitted(&mut c), "SUB foo 1\r\nSUB bar q 2\r\n");
    c.unsubscribe(bar).expect("live");
    assert_eq!(transmitted(&mut c), "UNSUB 2\r\n");
    assert_eq!(c.unsubscribe(bar), Err(CommandError::UnknownSid(bar)));
    c.handle_input(b"MSG bar 2 1\r\nx\r\nMSG foo 1 r 1\r\ny\r\n", T0);
    let events = events(&mut c);
    let [Event::Message(m)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((m.sid, m.subject.as_str()), (foo, "foo"));
    assert_eq!(m.reply.as_ref().map(Subject::as_str), Some("r"));
    assert_eq!(m.payload, Bytes::from_static(b"y"));
}

#[test]
fn publish_with_and_without_headers() {
    let mut c = connected();
    c.publish("a.b", None, None, b"hi").expect("valid");
    let mut headers = Headers::new();
    headers.append("K", "v").expect("valid");
    c.publish("a.b", Some("r.1"), Some(&headers), b"")
        .expect("valid");
    assert_eq!(
        transmitted(&mut c),
        "PUB a.b 2\r\nhi\r\nHPUB a.b r.1 18 18\r\nNATS/1.0\r\nK: v\r\n\r\n\r\n"
    );
    assert_eq!(
        c.publish("a b", None, None, b""),
        Err(CommandError::InvalidName(NameError::Whitespace {
            what: "subject"
        }))
    );
    assert_eq!(
        c.publish("a", Some(""), None, b""),
        Err(CommandError::InvalidName(NameError::Empty {
            what: "subject"
        }))
    );
    assert_eq!(
        c.subscribe("a", Some("q q")),
        Err(CommandError::InvalidName(NameError::Whitespace {
            what: "queue group"
        }))
    );
}

#[test]
fn publish_is_bounded_by_the_servers_max_payload_and_needs_headers_support() {
    let mut c = client(Credential::Anonymous);
    assert_eq!(
        c.publish("a", None, None, b""),
        Err(CommandError::NotConnected)
    );
    c.handle_input(b"INFO {\"max_payload\":16}\r\nPONG\r\n", T0);
    transmitted(&mut c);
    c.publish("a", None, None, &[0; 16]).expect("fits");
    assert_eq!(
        c.publish("a", None, None, &[0; 17]),
        Err(CommandError::PayloadTooLarge {
            size: 17,
            limit: 16
        })
    );
    assert_eq!(
        c.publish("a", None, Some(&Headers::new()), b""),
        Err(CommandError::HeadersNotSupported)
    );
    c.close();
    assert_eq!(c.publish("a", None, None, b""), Err(CommandError::Closed));
}

#[test]
fn a_permission_violation_is_typed_and_keeps_the_connection() {
    let mut c = connected();
    c.handle_input(PERMISSIONS, T0);
    let events = events(&mut c);
    assert_eq!(
        events[..2],
        [
            Event::ServerError(ServerError::PermissionViolation {
                kind: Permission::Subscribe,
                subject: "nope.x".to_owned()
            }),
            Event::ServerError(ServerError::PermissionViolation {
                kind: Permission::Publish,
                subject: "nope.y".to_owned()
            }),
        ]
    );
    assert_eq!(
        events[2],
        Event::Closed(CloseReason::ServerError(ServerError::MaxPayloadViolation))
    );
}

#[test]
fn flush_completes_in_ping_order() {
    let mut c = connected();
    let first = c.flush().expect("connected");
    let second = c.flush().expect("connected");
    assert_eq!(transmitted(&mut c), "PING\r\nPING\r\n");
    c.handle_input(b"PONG\r\n", T0);
    assert_eq!(events(&mut c), [Event::Flushed(first)]);
    c.handle_input(b"PONG\r\n", T0);
    assert_eq!(events(&mut c), [Event::Flushed(second)]);
}

#[test]
fn requests_use_one_inbox_subscription_and_match_replies() {
    let mut c = connected();
    let r1 = c.request("svc.echo", b"ping", T0).expect("connected");
    let r2 = c.request("svc.none", b"", T0).expect("connected");
    assert_eq!(
        transmitted(&mut c),
        "SUB _INBOX.T3ST.* 1\r\nPUB svc.echo _INBOX.T3ST.1 4\r\nping\r\nPUB svc.none _INBOX.T3ST.2 0\r\n\r\n"
    );
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(2)));
    c.handle_input(
        b"HMSG _INBOX.T3ST.2 1 40 40\r\nNATS/1.0 503\r\nNats-Subject: svc.none\r\n\r\n\r\nMSG _INBOX.T3ST.1 1 4\r\npong\r\nMSG _INBOX.T3ST.1 1 4\r\ndupe\r\nMSG _INBOX.T3ST.x 1 1\r\n?\r\n",
        T0,
    );
    let events = events(&mut c);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        Event::RequestFailed {
            request: r2,
            reason: RequestFailure::NoResponders
        }
    );
    let Event::Reply { request, msg } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(*request, r1);
    assert_eq!(msg.payload, Bytes::from_static(b"pong"));
    assert!(c.subscriptions().next().is_none(), "the inbox is internal");
}

#[test]
fn a_request_without_reply_times_out_and_a_late_reply_is_ignored() {
    let mut c = connected();
    let r = c.request("svc", b"", T0).expect("connected");
    transmitted(&mut c);
    c.handle_timeout(T0 + Duration::from_secs(2));
    assert_eq!(
        events(&mut c),
        [Event::RequestFailed {
            request: r,
            reason: RequestFailure::TimedOut
        }]
    );
    c.handle_input(b"MSG _INBOX.T3ST.1 1 1\r\nx\r\n", T0);
    assert!(events(&mut c).is_empty());
}

#[test]
fn closing_fails_pending_requests() {
    let mut c = connected();
    let r = c.request("svc", b"", T0).expect("connected");
    c.handle_disconnected();
    assert_eq!(
        events(&mut c),
        [
            Event::RequestFailed {
                request: r,
                reason: RequestFailure::ConnectionClosed
            },
            Event::Closed(CloseReason::ConnectionLost)
        ]
    );
}

#[test]
fn a_malformed_message_is_dropped_and_reported() {
    let mut c = connected();
    c.subscribe("a", None).expect("valid");
    c.handle_input(b"HMSG a 1 5 5\r\nJUNK\n\r\nPING\r\n", T0);
    assert_eq!(
        events(&mut c),
        [Event::Dropped {
            sid: Sid(1),
            error: HeaderError::Unterminated
        }]
    );
    assert!(transmitted(&mut c).ends_with("PONG\r\n"));
    assert!(c.is_connected());
}

#[test]
fn an_info_update_keeps_the_connection_and_its_facts() {
    let mut c = connected();
    c.handle_input(b"INFO {\"max_payload\":8,\"ldm\":true}\r\n", T0);
    assert!(events(&mut c).is_empty());
    assert!(c.server_info().is_some_and(|i| i.ldm && i.max_payload == 8));
    assert!(matches!(
        c.publish("a", None, None, &[0; 9]),
        Err(CommandError::PayloadTooLarge { .. })
    ));
}

// --- reconnect ---------------------------------------------------------------------------------

#[test]
fn reconnect_resends_live_subscriptions_with_their_sids() {
    let mut c = connected();
    let keep = c.subscribe("keep", Some("q")).expect("valid");
    let gone = c.subscribe("gone", None).expect("valid");
    c.unsubscribe(gone).expect("live");
    c.request("svc", b"", T0).expect("connected");
    transmitted(&mut c);
    events(&mut c);
    c.handle_disconnected();
    let reason = c.close_reason().expect("closed").clone();
    assert_eq!(reason, CloseReason::ConnectionLost);
    assert!(matches!(
        events(&mut c)[..],
        [
            Event::RequestFailed {
                reason: RequestFailure::ConnectionClosed,
                ..
            },
            Event::Closed(CloseReason::ConnectionLost)
        ]
    ));
    let delay = c.should_reconnect(&reason).expect("retryable");
    assert_eq!(delay, Duration::from_millis(500));
    let later = T0 + delay;
    c.reset_for_reconnect(later);
    assert_eq!(c.state(), ConnectionState::AwaitingInfo);
    c.handle_input(INFO_ANON, later);
    let handshake = transmitted(&mut c);
    assert!(
        !handshake.contains("SUB"),
        "subscriptions wait for the PONG"
    );
    c.handle_input(b"PONG\r\n", later);
    assert!(matches!(events(&mut c)[..], [Event::Connected { .. }]));
    assert_eq!(
        transmitted(&mut c),
        format!("SUB keep q {}\r\nSUB _INBOX.T3ST.* 3\r\n", keep.0)
    );
}

#[test]
fn reconnect_backoff_doubles_and_gives_up() {
    let mut cfg = config();
    cfg.max_reconnects = Some(3);
    let mut c = NatsClient::new(cfg, Credential::Anonymous, T0).expect("valid");
    let lost = CloseReason::ConnectionLost;
    let mut delays = Vec::new();
    for _ in 0..4 {
        c.handle_disconnected();
        delays.push(c.should_reconnect(&lost));
        c.reset_for_reconnect(T0);
    }
    assert_eq!(
        delays,
        [
            Some(Duration::from_millis(500)),
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(2)),
            None
        ]
    );
    // A successful connection resets the count.
    let mut c = NatsClient::new(config(), Credential::Anonymous, T0).expect("valid");
    for _ in 0..20 {
        c.reset_for_reconnect(T0);
    }
    assert_eq!(c.should_reconnect(&lost), Some(Duration::from_secs(30)));
    c.handle_input(INFO_ANON, T0);
    c.handle_input(b"PONG\r\n", T0);
    assert_eq!(c.should_reconnect(&lost), Some(Duration::from_millis(500)));
    assert_eq!(c.should_reconnect(&CloseReason::Requested), None);
}

#[test]
fn a_refreshed_credential_is_used_by_the_next_handshake() {
    let mut c = connected();
    c.set_credential(Credential::Token(Secret::new("fresh")));
    c.reset_for_reconnect(T0);
    c.handle_input(INFO_ANON, T0);
    assert_eq!(connect_json(&transmitted(&mut c))["auth_token"], "fresh");
}

#[test]
fn the_inbox_prefix_must_be_a_plain_subject() {
    for bad in [
        "",
        "_INBOX.a b",
        "_INBOX.*",
        "_INBOX.>",
        "_INBOX..x",
        "_INBOX.",
    ] {
        let mut cfg = config();
        cfg.inbox_prefix = bad.to_owned();
        assert_eq!(
            NatsClient::new(cfg, Credential::Anonymous, T0).err(),
            Some(ConfigError::InvalidInbox),
            "{bad:?}"
        );
    }
}

// --- properties ---------------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[!-~\u{a1}-\u{2ff}]{1,24}"
}

fn headers() -> impl Strategy<Value = Headers> {
    (
        proptest::option::of((0u16..1000, proptest::option::of("[ -~]{0,12}"))),
        proptest::collection::vec(("[!-9;-~]{1,12}", "[ -~\u{a1}-\u{2ff}]{0,16}"), 0..4),
    )
        .prop_map(|(status, entries)| {
            let mut headers = match status {
                Some((code, description)) => {
                    Headers::with_status(code, description.as_deref()).expect("valid status")
                }
                None => Headers::new(),
            };
            for (name, value) in entries {
                headers.append(&name, &value).expect("valid header");
            }
            headers
        })
}

fn server_msg() -> impl Strategy<Value = Msg> {
    (
        name(),
        any::<u64>(),
        proptest::option::of(name()),
        proptest::option::of(headers()),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(subject_, sid, reply, headers, payload)| Msg {
            subject: subject(&subject_),
            sid: Sid(sid),
            reply: reply.as_deref().map(subject),
            headers,
            payload: Bytes::from(payload),
        })
}

proptest! {
    /// Any MSG or HMSG, encoded and fed to a parser split at any point, parses back to itself.
    #[test]
    fn msg_round_trips_through_encode_and_parse(msg in server_msg(), split in any::<prop::sample::Index>()) {
        let op = ServerOp::Msg(msg);
        let bytes = op.to_bytes();
        let at = split.index(bytes.len() + 1);
        let (ops, error) = parse_chunks(Limits::default(), [&bytes[..at], &bytes[at..]]);
        prop_assert_eq!(error, None);
        prop_assert_eq!(ops, vec![op]);
    }

    /// A client PUB/HPUB is framed exactly like the MSG the server would deliver for it.
    #[test]
    fn pub_frames_like_msg(msg in server_msg()) {
        let publish = ClientOp::Pub {
            subject: msg.subject.clone(),
            reply: msg.reply.clone(),
            headers: msg.headers.clone(),
            payload: msg.payload.clone(),
        }.to_bytes();
        let delivered = ServerOp::Msg(msg.clone()).to_bytes();
        let strip = |b: &[u8], skip: usize| b[skip..].to_vec();
        let op_len = if msg.headers.is_some() { 4 } else { 3 };
        let sid = format!(" {}", msg.sid);
        let mut expected = strip(&delivered, op_len + 1 + msg.subject.as_str().len());
        expected.drain(..sid.len());
        prop_assert_eq!(strip(&publish, op_len + 1 + msg.subject.as_str().len()), expected);
    }

    /// The parser never panics, and arbitrary bytes give the same ops whatever the split.
    #[test]
    fn parser_is_split_invariant_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        max_line in 1usize..64,
    ) {
        let limits = Limits { max_line, default_max_payload: 64, max_payload_cap: 128 };
        let whole = parse_chunks(limits, [bytes.as_slice()]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        prop_assert_eq!(parse_chunks(limits, chunks), whole.clone());
        prop_assert_eq!(parse_chunks(limits, bytes.chunks(1)), whole);
    }

    /// Protocol-shaped noise never panics the parser, and every op it yields re-encodes to
    /// bytes that parse back to the same op.
    #[test]
    fn parsed_ops_round_trip(lines in proptest::collection::vec(
        prop_oneof![
            Just("PING\r\n".to_owned()), Just("pong\n".to_owned()), Just("+OK\r\n".to_owned()),
            "-ERR [ -~]{0,20}\r\n",
            "INFO \\{\"max_payload\":[0-9]{1,4},\"nonce\":\"[ -~&&[^\"\\\\]]{0,8}\"\\}\r\n",
            "MSG [a-z.]{1,5} [0-9]{1,3}( [a-z]{1,3})? [0-9]\r\n[a-z\r\n]{0,10}",
            "HMSG [a-z]{1,3} 1 [0-9]{1,2} [0-9]{1,2}\r\nNATS/1.0( [0-9]{3})?\r\n[A-Za-z]{1,3}: [a-z ]{0,4}\r\n\r\n[a-z]{0,4}\r\n",
        ], 0..8))
    {
        let bytes = lines.concat();
        let (ops, _) = parse_chunks(Limits::default(), [bytes.as_bytes()]);
        for op in ops {
            let (again, error) = parse_chunks(Limits::default(), [op.to_bytes().as_slice()]);
            prop_assert_eq!(error, None);
            prop_assert_eq!(again, vec![op]);
        }
    }

    /// The client machine never panics on arbitrary server bytes at any point of its life,
    /// and never transmits a CONNECT after it closed.
    #[test]
    fn client_never_panics_on_arbitrary_input(
        prefix in 0usize..3,
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut c = client(Credential::Token(Secret::new("t")));
        let preludes: [&[u8]; 3] = [b"", INFO_ANON, b"INFO {}\r\nPONG\r\n"];
        c.handle_input(preludes[prefix], T0);
        c.handle_input(&bytes, T0);
        c.handle_timeout(T0 + Duration::from_secs(3600));
        transmitted(&mut c);
        let _ = events(&mut c);
        if c.state() == ConnectionState::Closed {
            c.handle_input(b"PING\r\n", T0);
            prop_assert_eq!(transmitted(&mut c), "");
        }
    }
}

#[test]
fn a_rejection_is_final_before_the_first_connect_and_retried_after_it() {
    let rejected = CloseReason::ServerError(ServerError::AuthorizationViolation);
    let expired = CloseReason::ServerError(ServerError::AuthenticationExpired);
    let fresh = client(Credential::Anonymous);
    assert_eq!(fresh.should_reconnect(&rejected), None);
    assert_eq!(fresh.should_reconnect(&expired), None);
    let mut c = connected();
    c.handle_disconnected();
    c.reset_for_reconnect(T0);
    c.handle_input(INFO_ANON, T0);
    c.handle_input(b"-ERR 'Authorization Violation'\r\n", T0);
    assert_eq!(c.close_reason(), Some(&rejected));
    assert_eq!(c.should_reconnect(&rejected), Some(Duration::from_secs(1)));
    assert!(c.should_reconnect(&expired).is_some());
    assert_eq!(c.should_reconnect(&CloseReason::Requested), None);
    assert_eq!(c.should_reconnect(&CloseReason::TlsNotOffered), None);
}

#[test]
fn server_texts_read_back_as_the_same_error() {
    let errors = [
        ServerError::AuthorizationViolation,
        ServerError::AuthenticationExpired,
        ServerError::AuthenticationTimeout,
        ServerError::PermissionViolation {
            kind: Permission::Subscribe,
            subject: "nodes.n2.>".to_owned(),
        },
        ServerError::PermissionViolation {
            kind: Permission::Publish,
            subject: "nodes.n2.stop".to_owned(),
        },
        ServerError::StaleConnection,
        ServerError::MaxPayloadViolation,
        ServerError::Other("Slow Consumer".to_owned()),
    ];
    for error in errors {
        assert_eq!(ServerError::parse(&error.server_text()), error);
    }
    assert!(ServerError::AuthenticationExpired.is_rejection());
    assert!(!ServerError::StaleConnection.is_rejection());
}
