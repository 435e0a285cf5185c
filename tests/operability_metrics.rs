//! `GET /metrics` (issue 11, item 5): Prometheus text exposition behind the registration token,
//! parsed here by a small strict parser of the text format (version 0.0.4); counters move
//! with requests, and the upload gauges reflect a partial upload.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use common::{Options, Runtime, TOKEN, TestServer};
use nodegate::request::MetricsAccess;
use nodegate::tokio_adapter::Limits;

/// Series (`name{labels}` with labels sorted) to value.
type Series = BTreeMap<String, f64>;

fn is_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses the text format strictly: every sample belongs to a family declared by `# TYPE`
/// before it, names and label names are valid, label values are quoted with only `\\`, `\"`
/// and `\n` escapes, values are numbers, no series appears twice, counters end in `_total`,
/// and the text ends with a newline.
fn parse(text: &str) -> Result<Series, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut series = Series::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, value) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(name), Some(value)) = (kind, name, value) else {
                return Err(fail("short comment"));
            };
            if !is_name(name, true) {
                return Err(fail("bad metric name"));
            }
            match kind {
                "HELP" => {
                    if !helped.insert(name.to_owned()) {
                        return Err(fail("second HELP"));
                    }
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&value) {
                        return Err(fail("unknown type"));
                    }
                    if value == "counter" && !name.ends_with("_total") {
                        return Err(fail("a counter not named _total"));
                    }
                    if types.insert(name.to_owned(), value.to_owned()).is_some() {
                        return Err(fail("second TYPE"));
                    }
                }
                _ => return Err(fail("unknown comment")),
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            return Err(fail("blank line or bare comment"));
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(fail("no value")),
        };
        if !is_name(name, true) || !types.contains_key(name) {
            return Err(fail("sample without a declared family"));
        }
        let mut labels = Vec::new();
        let value_text = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let start = chars.peek().map(|(i, _)| *i).ok_or_else(|| fail("open"))?;
                if body[start..].starts_with('}') {
                    break start + 1;
                }
                let eq = body[start..]
                    .find('=')
                    .ok_or_else(|| fail("label without ="))?
                    + start;
                let label = &body[start..eq];
                if !is_name(label, false) {
                    return Err(fail("bad label name"));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(fail("unquoted label value"));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(fail("bad escape")),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => return Err(fail("unterminated label value")),
                    }
                }
                labels.push(format!("{label}={value:?}"));
                match chars.next() {
                    Some((_, ',')) => {}
                    Some((i, '}')) => break i + 1,
                    _ => return Err(fail("expected , or }")),
                }
            };
            &body[end..]
        } else {
            rest
        };
        let value_text = value_text
            .strip_prefix(' ')
            .ok_or_else(|| fail("no space before the value"))?;
        let value: f64 = value_text
            .split(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| fail("value is not a number"))?;
        labels.sort();
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        if series.insert(key, value).is_some() {
            return Err(fail("duplicate series"));
        }
    }
    Ok(series)
}

fn scrape(server: &TestServer) -> Series {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&response.text()).unwrap_or_else(|e| panic!("{e}\n{}", response.text()))
}

/// Scrapes until `ready` holds (a request is counted when its response body ends, which may
/// be just after the client read it), or gives up after two seconds and returns the last.
fn scrape_until(server: &TestServer, ready: impl Fn(&Series) -> bool) -> Series {
    let mut series = scrape(server);
    for _ in 0..100 {
        if ready(&series) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        series = scrape(server);
    }
    series
}

fn value(series: &Series, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

fn requests(route: &str, method: &str, status: &str) -> String {
    format!("nodegate_requests_total{{method={method:?},route={route:?},status={status:?}}}")
}

fn metrics_needs_the_token_by_default(rt: Runtime) {
    let server = TestServer::start(rt);
    assert_eq!(
        server.request("GET", "/metrics", false, &[], b"").status,
        401
    );
    assert_eq!(
        server
            .request(
                "GET",
                "/metrics",
                false,
                &[("Authorization", "Bearer nope")],
                b""
            )
            .status,
        401
    );
    assert_eq!(
        server.request("PUT", "/metrics", true, &[], b"").status,
        405
    );
    let series = scrape(&server);
    assert!(series.contains_key("nodegate_open_connections"));
    assert!(value(&series, "nodegate_refusals_total{reason=\"unauthorized\"}") >= 2.0);
}

fn metrics_can_be_made_public(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            limits: Limits {
                metrics_access: MetricsAccess::Public,
                ..Limits::default()
            },
            ..Options::default()
        },
    );
    let response = server.request("GET", "/metrics", false, &[], b"");
    assert_eq!(response.status, 200);
    parse(&response.text()).expect("valid exposition");
    assert_eq!(
        server
            .request("GET", "/v1/files/models/x", false, &[], b"")
            .status,
        401,
        "only /metrics becomes public"
    );
}

fn counters_move_with_requests_and_no_key_becomes_a_label(rt: Runtime) {
    let server = TestServer::start(rt);
    let before = scrape(&server);
    let body = b"twelve bytes";
    assert_eq!(
        server.put("/v1/files/models/secret-name.bin", body).status,
        200
    );
    for _ in 0..3 {
        assert_eq!(server.get("/v1/files/models/secret-name.bin").body, body);
    }
    assert_eq!(server.get("/v1/files/models/missing.bin").status, 404);
    assert_eq!(
        server
            .request("GET", "/v1/files/models/x", false, &[], b"")
            .status,
        401
    );
    assert_eq!(server.get("/nowhere").status, 404);
    let response = server.get("/metrics");
    assert!(
        !response.text().contains("secret-name"),
        "a key became a label"
    );
    let after = scrape_until(&server, |after| {
        value(after, &requests("other", "GET", "404"))
            > value(&before, &requests("other", "GET", "404"))
    });
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(moved(&requests("files", "GET", "200")), 3.0);
    assert_eq!(moved(&requests("files", "GET", "404")), 1.0);
    assert_eq!(moved(&requests("files", "PUT", "200")), 1.0);
    assert_eq!(moved(&requests("files", "GET", "401")), 1.0);
    assert_eq!(moved(&requests("other", "GET", "404")), 1.0);
    assert_eq!(
        moved("nodegate_refusals_total{reason=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(moved("nodegate_refusals_total{reason=\"not_found\"}"), 1.0);
    assert_eq!(moved("nodegate_uploads_total{outcome=\"published\"}"), 1.0);
    assert_eq!(moved("nodegate_received_bytes_total"), body.len() as f64);
    assert!(moved("nodegate_sent_bytes_total") >= 3.0 * body.len() as f64);
    assert!(value(&after, "nodegate_open_connections") >= 1.0);
}

fn upload_gauges_reflect_a_partial_upload(rt: Runtime) {
    let server = TestServer::start(rt);
    let chunk = |range: &str, bytes: &[u8]| {
        server
            .request(
                "PUT",
                "/v1/files/models/p.bin",
                true,
                &[("Content-Range", range)],
                bytes,
            )
            .status
    };
    assert_eq!(chunk("bytes 0-9/20", b"0123456789"), 308);
    let series = scrape_until(&server, |s| {
        value(s, &requests("files", "PUT", "308")) == 1.0
    });
    assert_eq!(value(&series, "nodegate_partial_upload_bytes"), 10.0);
    assert_eq!(value(&series, "nodegate_uploads_in_progress"), 0.0);
    assert_eq!(
        value(&series, "nodegate_uploads_total{outcome=\"partial\"}"),
        1.0
    );
    assert_eq!(value(&series, &requests("files", "PUT", "308")), 1.0);

    // An upload still sending its body is in progress.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let head = format!(
        "PUT /v1/files/models/slow.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(&[b'x'; 10]).expect("part of the body");
    let mut in_progress = 0.0;
    for _ in 0..100 {
        in_progress = value(&scrape(&server), "nodegate_uploads_in_progress");
        if in_progress == 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(in_progress, 1.0);
    assert!(value(&scrape(&server), "nodegate_open_connections") >= 2.0);
    stream.write_all(&[b'x'; 90]).expect("the rest");
    let response = common::read_response(&mut stream, false).expect("an answer");
    assert_eq!(response.status, 200);
    drop(stream);

    assert_eq!(chunk("bytes 10-19/20", b"abcdefghij"), 200);
    let series = scrape(&server);
    assert_eq!(value(&series, "nodegate_partial_upload_bytes"), 0.0);
    assert_eq!(value(&series, "nodegate_uploads_in_progress"), 0.0);
    assert_eq!(
        value(&series, "nodegate_uploads_total{outcome=\"published\"}"),
        2.0
    );
}

#[test]
fn the_parser_is_strict() {
    for bad in [
        "x 1\n",
        "# TYPE x counter\nx 1\n",
        "# TYPE x_total counter\nx_total{a=b} 1\n",
        "# TYPE x_total counter\nx_total 1\nx_total 2\n",
        "# TYPE x gauge\nx one\n",
        "# TYPE x gauge\nx 1",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let good = "# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\"} 2\n";
    assert_eq!(parse(good).expect("valid").len(), 1);
}

common::per_runtime_tests!(
    metrics_needs_the_token_by_default,
    metrics_can_be_made_public,
    counters_move_with_requests_and_no_key_becomes_a_label,
    upload_gauges_reflect_a_partial_upload,
);
