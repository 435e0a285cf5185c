//! `nats_parse`: the sans-IO NATS protocol of the core (issue 14). Input: raw bytes from a
//! "server" — the seeds are real nats-server 2.15.1 byte sequences.

use nodegate_core::config::Secret;
use nodegate_core::nats::{
    ClientConfig, Credential, Event, Limits, NatsClient, ParseError, Parser, ServerError, ServerOp,
};

use crate::util::assert_printable;

/// Oracle of the `nats_parse` target. Panics when:
///
/// - the parser panics, or the ops (and the first fatal error) of the input fed whole differ
///   from those of the input fed byte by byte, or split at a third and at two thirds — with the
///   default bounds and with small ones derived from the input (so the line and payload bounds
///   are hit);
/// - fed byte by byte, the parser ever buffers more than one control line or one announced
///   payload (an oversize announcement must be an error, not an allocation);
/// - a parsed op does not round-trip: `parse(encode(op)) == [op]`, and `encode` is a fixpoint
///   (`encode(parse(encode(op))) == encode(op)`);
/// - the client machine, fed the input after a handshake, panics, or transmits or reports
///   anything different when the input is split byte by byte;
/// - an error message (parse errors, `-ERR` meanings, close reasons) carries a control or
///   bidirectional character (they may reach a log).
pub fn nats_parse(data: &[u8]) {
    let small = Limits {
        max_line: 8 + data.first().map_or(0, |&b| usize::from(b) % 64),
        default_max_payload: 16 + data.last().map_or(0, |&b| usize::from(b) % 256),
        max_payload_cap: 512,
    };
    for limits in [Limits::default(), small] {
        let whole = parse(limits, &[data]);
        let third = data.len() / 3;
        let (a, rest) = data.split_at(third);
        let (b, c) = rest.split_at(third);
        assert_eq!(parse(limits, &[a, b, c]), whole, "split in thirds");
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(parse(limits, &bytes), whole, "fed byte by byte");
        for op in &whole.ops {
            round_trip(op);
        }
        if let Some(error) = &whole.error {
            assert_printable("parse error", &error.to_string());
        }
    }
    client_split_invariance(data);
}

/// What a parser made of a stream.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    ops: Vec<ServerOp>,
    /// Non-fatal errors (dropped messages), in order.
    dropped: Vec<ParseError>,
    error: Option<ParseError>,
}

fn parse(limits: Limits, chunks: &[&[u8]]) -> Parsed {
    let mut parser = Parser::new(limits);
    let mut parsed = Parsed {
        ops: Vec::new(),
        dropped: Vec::new(),
        error: None,
    };
    for chunk in chunks {
        parser.push(chunk);
        loop {
            match parser.next_op() {
                Ok(Some(op)) => parsed.ops.push(op),
                Ok(None) => break,
                Err(error) if error.is_fatal() => {
                    assert_eq!(parser.next_op(), Err(error.clone()), "errors are sticky");
                    parsed.error = Some(error);
                    return parsed;
                }
                Err(error) => parsed.dropped.push(error),
            }
        }
        if chunk.len() == 1 {
            let bound = limits.max_line.max(parser.max_payload() + 2);
            assert!(
                parser.buffered() <= bound,
                "{} bytes buffered, over the {bound}-byte bound",
                parser.buffered()
            );
        }
    }
    parsed
}

fn round_trip(op: &ServerOp) {
    let bytes = op.to_bytes();
    let again = parse(Limits::default(), &[&bytes]);
    assert_eq!(again.error, None, "{op:?} encodes to unparseable bytes");
    assert_eq!(again.dropped, [], "{op:?} encodes to malformed headers");
    assert_eq!(again.ops, [op.clone()], "{op:?} does not round-trip");
    assert_eq!(again.ops[0].to_bytes(), bytes, "encoding is not canonical");
    if let ServerOp::Err(text) = op {
        assert_printable("-ERR meaning", &ServerError::parse(text).to_string());
    }
}

/// The machine after an anonymous handshake, fed `data` in `chunks`: what it wrote and reported.
fn client_run(data: &[u8], chunk: usize) -> (Vec<u8>, Vec<Event>) {
    let now = std::time::Duration::from_secs(1_800_000_000);
    let mut config = ClientConfig::new("FUZZ");
    config.limits.max_line = 4096;
    let mut client =
        NatsClient::new(config, Credential::Token(Secret::new("t")), now).expect("a valid config");
    client.subscribe("foo", None).expect("a valid subject");
    client
        .subscribe("bar.>", Some("q"))
        .expect("a valid subject");
    client.handle_input(
        b"INFO {\"headers\":true,\"max_payload\":4096}\r\nPONG\r\n",
        now,
    );
    let _ = client.request("svc", b"x", now);
    let mut written = Vec::new();
    let mut events = Vec::new();
    let mut drain = |client: &mut NatsClient| {
        while let Some(bytes) = client.poll_transmit() {
            written.extend_from_slice(&bytes);
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
    };
    drain(&mut client);
    for piece in data.chunks(chunk.max(1)) {
        client.handle_input(piece, now);
        drain(&mut client);
    }
    client.handle_timeout(now + std::time::Duration::from_secs(3600));
    drain(&mut client);
    (written, events)
}

fn client_split_invariance(data: &[u8]) {
    let whole = client_run(data, data.len());
    assert_eq!(
        client_run(data, 1),
        whole,
        "the machine depends on the split"
    );
    for event in &whole.1 {
        match event {
            Event::ServerError(error) => assert_printable("server error", &error.to_string()),
            Event::Closed(reason) => assert_printable("close reason", &reason.to_string()),
            _ => {}
        }
    }
}
