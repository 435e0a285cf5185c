//! The bearer-header matrix of security.md §2.3 (AH-01…AH-28) as raw requests over real
//! sockets against the in-process server, with the pinned choices:
//! - AH-03 the scheme is case-insensitive; AH-04 two spaces are accepted (RFC 9110 `1*SP`);
//!   AH-05 a tab is not a space (401);
//! - AH-10/AH-11 two `Authorization` lines are 401 whichever one is valid;
//! - AH-13 obs-text in the token is 401 (never 5xx); AH-14 NUL/CR/LF are refused by the HTTP
//!   layer with 400;
//! - AH-17/AH-18 `?access_token=` never authenticates; AH-19 `Proxy-Authorization` is ignored;
//! - AH-21 a 64 KiB header is 431/400 from the HTTP layer;
//! - AH-22/AH-23 an anonymous server lets everything through (LocalAI semantics);
//! - AH-25 a request without a token is refused before its key is parsed or its body read;
//! - every 401 carries `WWW-Authenticate: Bearer` and is byte-identical (apart from `Date`)
//!   whatever was wrong, so it is no oracle; token rotation accepts the current and the
//!   previous token only.
//!
//! AH-16 (a configured token with SP or non-ASCII is a startup error) is checked on
//! `Token::parse`, which is what the server configuration goes through. The "warning logged
//! once" half of AH-22 is a process-level check of the worker binary, not of this server.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{
    CLIENT_TIMEOUT, Options, RawResponse, Runtime, TOKEN, TestServer, read_response, sha256_hex,
};
use nodegate::auth::Token;

/// The file every "is this request allowed" probe downloads.
const PROBE_KEY: &str = "probe.txt";
const PROBE_BODY: &[u8] = b"probe body";

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 with the probe file.
    Allowed,
    /// The one 401 answer.
    Unauthorized,
    /// 400 from the HTTP layer (malformed request head).
    BadRequest,
}

/// One row of a matrix: its table ID, what it is, the raw `Authorization`-ish header lines
/// (each ending in CRLF) and the expected outcome.
struct Row {
    id: &'static str,
    what: String,
    lines: Vec<u8>,
    expect: Expect,
}

fn row(
    id: &'static str,
    what: impl Into<String>,
    lines: impl Into<Vec<u8>>,
    expect: Expect,
) -> Row {
    Row {
        id,
        what: what.into(),
        lines: lines.into(),
        expect,
    }
}

/// `Authorization: <value>\r\n` as bytes (the value may hold any byte).
fn auth_line(value: impl AsRef<[u8]>) -> Vec<u8> {
    let mut line = b"Authorization: ".to_vec();
    line.extend_from_slice(value.as_ref());
    line.extend_from_slice(b"\r\n");
    line
}

/// A server with the probe file in staging.
fn server_with(rt: Runtime, options: Options) -> TestServer {
    let server = TestServer::with(rt, options);
    std::fs::write(server.roots.staging.join(PROBE_KEY), PROBE_BODY).expect("probe file");
    server
}

/// `GET <target>` with `lines` as extra raw header lines.
fn get_with_lines(server: &TestServer, target: &str, lines: &[u8]) -> RawResponse {
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    )
    .into_bytes();
    request.extend_from_slice(lines);
    request.extend_from_slice(b"\r\n");
    server.raw(&request)
}

/// The 401 every refused request gets: status, challenge, body, content type.
fn unauthorized_problem(response: &RawResponse, has_body: bool) -> Option<String> {
    if response.status != 401 {
        return Some(format!(
            "status {} (body {:?})",
            response.status,
            response.text()
        ));
    }
    if response.header("www-authenticate") != Some("Bearer") {
        return Some(format!(
            "WWW-Authenticate {:?}",
            response.header("www-authenticate")
        ));
    }
    if has_body && response.body != b"unauthorized\n" {
        return Some(format!("body {:?}", response.text()));
    }
    if response.header("content-type") != Some("text/plain; charset=utf-8") {
        return Some(format!(
            "content-type {:?}",
            response.header("content-type")
        ));
    }
    None
}

/// Headers apart from `Date`, sorted, lower-cased names.
fn comparable_headers(response: &RawResponse) -> Vec<(String, String)> {
    let mut headers: Vec<_> = response
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("date"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    headers.sort();
    headers
}

/// Runs every row as `GET /v1/files/probe.txt` and reports all failures at once. Every 401 must
/// equal the 401 of a request without any `Authorization` (AH-01), headers and body.
fn run(server: &TestServer, rows: &[Row]) {
    let target = format!("/v1/files/{PROBE_KEY}");
    let reference = get_with_lines(server, &target, b"");
    let mut failures = Vec::new();
    for row in rows {
        let response = get_with_lines(server, &target, &row.lines);
        let problem = match row.expect {
            Expect::Allowed => (response.status != 200 || response.body != PROBE_BODY)
                .then(|| format!("status {} body {:?}", response.status, response.text())),
            Expect::Unauthorized => unauthorized_problem(&response, true).or_else(|| {
                (comparable_headers(&response) != comparable_headers(&reference)
                    || response.body != reference.body)
                    .then(|| format!("401 differs from the no-token 401: {:?}", response.headers))
            }),
            Expect::BadRequest => {
                (response.status != 400).then(|| format!("status {}", response.status))
            }
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{} {} (expected {:?}): {problem}",
                row.id, row.what, row.expect
            ));
        }
        assert!(response.status < 500, "{} {}: a 5xx", row.id, row.what);
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Minimal standard base64 (for the `Basic` row).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// AH-01 … AH-20: the header itself

fn ah_01_02_missing_is_401_and_the_right_token_is_allowed(rt: Runtime) {
    let server = server_with(rt, Options::default());
    run(
        &server,
        &[
            row(
                "AH-01",
                "no Authorization",
                b"".to_vec(),
                Expect::Unauthorized,
            ),
            row(
                "AH-02",
                "Bearer <token>",
                auth_line(format!("Bearer {TOKEN}")),
                Expect::Allowed,
            ),
        ],
    );
}

fn ah_03_scheme_is_case_insensitive(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let rows: Vec<Row> = ["bearer", "BEARER", "BeArEr", "bEARER"]
        .into_iter()
        .map(|scheme| {
            row(
                "AH-03",
                scheme,
                auth_line(format!("{scheme} {TOKEN}")),
                Expect::Allowed,
            )
        })
        .collect();
    run(&server, &rows);
}

fn ah_04_05_one_or_more_spaces_but_not_a_tab(rt: Runtime) {
    let server = server_with(rt, Options::default());
    run(
        &server,
        &[
            row(
                "AH-04",
                "two spaces",
                auth_line(format!("Bearer  {TOKEN}")),
                Expect::Allowed,
            ),
            row(
                "AH-04",
                "five spaces",
                auth_line(format!("Bearer     {TOKEN}")),
                Expect::Allowed,
            ),
            row(
                "AH-05",
                "tab",
                auth_line(format!("Bearer\t{TOKEN}")),
                Expect::Unauthorized,
            ),
            row(
                "AH-05",
                "space then tab",
                auth_line(format!("Bearer \t{TOKEN}")),
                Expect::Unauthorized,
            ),
            row(
                "AH-05",
                "no separator",
                auth_line(format!("Bearer{TOKEN}")),
                Expect::Unauthorized,
            ),
            // Optional whitespace around the field value is stripped by HTTP parsing; Go does the
            // same, so LocalAI also accepts a trailing space (localai-wire.md §A corrections).
            row(
                "OWS",
                "trailing space",
                auth_line(format!("Bearer {TOKEN} ")),
                Expect::Allowed,
            ),
            row(
                "OWS",
                "leading spaces",
                auth_line(format!("   Bearer {TOKEN}")),
                Expect::Allowed,
            ),
        ],
    );
}

fn ah_06_to_09_incomplete_wrong_or_foreign_credentials_are_401(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let upper = TOKEN.to_uppercase();
    assert_ne!(upper, TOKEN);
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let rows = [
        row("AH-06", "Bearer", auth_line("Bearer"), Expect::Unauthorized),
        row(
            "AH-06",
            "Bearer + space",
            auth_line("Bearer "),
            Expect::Unauthorized,
        ),
        row("AH-06", "empty value", auth_line(""), Expect::Unauthorized),
        row(
            "AH-07",
            "token + x",
            auth_line(format!("Bearer {TOKEN}x")),
            Expect::Unauthorized,
        ),
        row(
            "AH-07",
            "token prefix",
            auth_line(format!("Bearer {prefix}")),
            Expect::Unauthorized,
        ),
        row(
            "AH-07",
            "token twice",
            auth_line(format!("Bearer {TOKEN} {TOKEN}")),
            Expect::Unauthorized,
        ),
        row(
            "AH-08",
            "upper-cased token",
            auth_line(format!("Bearer {upper}")),
            Expect::Unauthorized,
        ),
        row(
            "AH-09",
            "Basic u:token",
            auth_line(format!("Basic {}", base64(format!("u:{TOKEN}").as_bytes()))),
            Expect::Unauthorized,
        ),
        row(
            "AH-09",
            "Token scheme",
            auth_line(format!("Token {TOKEN}")),
            Expect::Unauthorized,
        ),
        row(
            "AH-09",
            "bare token",
            auth_line(TOKEN),
            Expect::Unauthorized,
        ),
        row(
            "§7.10",
            "X-Api-Key only",
            format!("X-Api-Key: {TOKEN}\r\n"),
            Expect::Unauthorized,
        ),
    ];
    run(&server, &rows);
    assert_eq!(base64(b"u:tok"), "dTp0b2s=");
}

fn ah_10_to_12_repeated_or_joined_credentials_are_401(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let good = auth_line(format!("Bearer {TOKEN}"));
    let bad = auth_line("Bearer wrong-token");
    let rows = [
        row(
            "AH-10",
            "two lines, first valid",
            [good.clone(), bad.clone()].concat(),
            Expect::Unauthorized,
        ),
        row(
            "AH-11",
            "two lines, second valid",
            [bad.clone(), good.clone()].concat(),
            Expect::Unauthorized,
        ),
        row(
            "AH-10",
            "the valid line twice",
            [good.clone(), good.clone()].concat(),
            Expect::Unauthorized,
        ),
        row(
            "AH-12",
            "comma-joined",
            auth_line(format!("Bearer {TOKEN}, Bearer {TOKEN}")),
            Expect::Unauthorized,
        ),
        row(
            "AH-12",
            "comma after the token",
            auth_line(format!("Bearer {TOKEN},")),
            Expect::Unauthorized,
        ),
    ];
    run(&server, &rows);
}

fn ah_13_obs_text_in_the_token_is_401_never_5xx(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let all_high: Vec<u8> = (0x80..=0xffu8).collect();
    let mut rows = vec![row(
        "AH-13",
        "0x80..0xff",
        auth_line([b"Bearer ".as_slice(), &all_high].concat()),
        Expect::Unauthorized,
    )];
    for byte in [0x80u8, 0xa0, 0xc3, 0xff] {
        let mut value = format!("Bearer {TOKEN}").into_bytes();
        value.push(byte);
        rows.push(row(
            "AH-13",
            format!("token + {byte:#x}"),
            auth_line(value),
            Expect::Unauthorized,
        ));
    }
    // A UTF-8 encoded look-alike of the token's last character.
    let mut lookalike = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).into_bytes();
    lookalike.extend_from_slice("～".as_bytes());
    rows.push(row(
        "AH-13",
        "full-width tilde",
        auth_line(lookalike),
        Expect::Unauthorized,
    ));
    run(&server, &rows);
}

fn ah_14_nul_cr_lf_in_the_value_are_refused_by_the_http_layer(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let (head, tail) = TOKEN.split_at(4);
    let rows: Vec<Row> = [("NUL", b'\0'), ("CR", b'\r'), ("LF", b'\n')]
        .into_iter()
        .flat_map(|(name, byte)| {
            let inside = [
                format!("Bearer {head}").as_bytes(),
                &[byte],
                tail.as_bytes(),
            ]
            .concat();
            let after = [format!("Bearer {TOKEN}").as_bytes(), &[byte], b"x"].concat();
            [
                row(
                    "AH-14",
                    format!("{name} inside the token"),
                    auth_line(inside),
                    Expect::BadRequest,
                ),
                row(
                    "AH-14",
                    format!("{name} after the token"),
                    auth_line(after),
                    Expect::BadRequest,
                ),
            ]
        })
        .collect();
    run(&server, &rows);
}

fn ah_15_configured_token_with_b64token_punctuation_works(rt: Runtime) {
    let token = "Az09-._~+/==";
    let server = server_with(
        rt,
        Options {
            token: Some(token),
            ..Options::default()
        },
    );
    run(
        &server,
        &[
            row(
                "AH-15",
                "token with ~+/=",
                auth_line(format!("Bearer {token}")),
                Expect::Allowed,
            ),
            row(
                "AH-15",
                "without the padding",
                auth_line("Bearer Az09-._~+/"),
                Expect::Unauthorized,
            ),
            row(
                "AH-15",
                "the default test token",
                auth_line(format!("Bearer {TOKEN}")),
                Expect::Unauthorized,
            ),
        ],
    );
}

#[test]
fn ah_16_configured_token_with_space_or_non_ascii_is_refused() {
    for bad in ["has space", "tab\there", "tökén", "a=b", "", "   "] {
        let error = Token::parse(bad).expect_err(bad);
        let text = error.to_string();
        if !bad.trim().is_empty() {
            assert!(
                !text.contains(bad),
                "the error must not echo the secret: {text}"
            );
        }
    }
    assert!(Token::parse(&"a".repeat(4097)).is_err());
    assert!(Token::parse(&"a".repeat(4096)).is_ok());
}

fn ah_17_18_query_access_token_never_authenticates(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let with_query = format!("/v1/files/{PROBE_KEY}?access_token={TOKEN}");
    let alone = get_with_lines(&server, &with_query, b"");
    assert!(
        unauthorized_problem(&alone, true).is_none(),
        "AH-17: {}",
        alone.status
    );
    let wrong_header = get_with_lines(&server, &with_query, &auth_line("Bearer wrong-token"));
    assert!(
        unauthorized_problem(&wrong_header, true).is_none(),
        "AH-18: {}",
        wrong_header.status
    );
    // The query string is ignored once authenticated (it is not part of the key).
    let right = get_with_lines(
        &server,
        &format!("/v1/files/{PROBE_KEY}?access_token=x"),
        &auth_line(format!("Bearer {TOKEN}")),
    );
    assert_eq!(right.status, 200);
    assert_eq!(right.body, PROBE_BODY);
}

fn ah_19_20_only_the_authorization_field_counts_whatever_its_case(rt: Runtime) {
    let server = server_with(rt, Options::default());
    run(
        &server,
        &[
            row(
                "AH-19",
                "Proxy-Authorization only",
                format!("Proxy-Authorization: Bearer {TOKEN}\r\n"),
                Expect::Unauthorized,
            ),
            row(
                "AH-19",
                "Authorization-Bearer",
                format!("Authorization-Bearer: {TOKEN}\r\n"),
                Expect::Unauthorized,
            ),
            row(
                "AH-20",
                "lower-case name",
                format!("authorization: Bearer {TOKEN}\r\n"),
                Expect::Allowed,
            ),
            row(
                "AH-20",
                "upper-case name",
                format!("AUTHORIZATION: Bearer {TOKEN}\r\n"),
                Expect::Allowed,
            ),
            row(
                "AH-20",
                "no space after the colon",
                format!("Authorization:Bearer {TOKEN}\r\n"),
                Expect::Allowed,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// AH-21 oversized header

/// Writes `request` (ignoring write errors: the server may refuse and close early) and reads a
/// response if one comes.
fn send_lenient(server: &TestServer, request: &[u8]) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .expect("timeout");
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    read_response(&mut stream, false)
}

fn ah_21_a_64_kib_header_is_refused_by_the_http_layer(rt: Runtime) {
    let server = server_with(rt, Options::default());
    for size in [64 << 10, 1 << 20] {
        let value = "a".repeat(size);
        let request = format!(
            "GET /v1/files/{PROBE_KEY} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {value}\r\n\r\n",
            server.addr
        );
        let start = Instant::now();
        let answer = send_lenient(&server, request.as_bytes());
        if size == 64 << 10 {
            let answer = answer.expect("an answer to a 64 KiB header");
            assert!(
                matches!(answer.status, 431 | 400),
                "{size}: {}",
                answer.status
            );
        } else if let Some(answer) = answer {
            // A 1 MiB head is cut off at the buffer limit: refused, or the connection reset.
            assert!(
                matches!(answer.status, 431 | 400),
                "{size}: {}",
                answer.status
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "refused promptly"
        );
    }
    // The server is unharmed.
    let after = get_with_lines(
        &server,
        &format!("/v1/files/{PROBE_KEY}"),
        &auth_line(format!("Bearer {TOKEN}")),
    );
    assert_eq!(after.status, 200);
}

// ---------------------------------------------------------------------------------------------
// AH-22 … AH-26 routes and postures

/// A request template over every route: (method, target, extra raw header lines).
fn every_route() -> Vec<(&'static str, String, String)> {
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        .to_owned();
    vec![
        ("HEAD", format!("/v1/files/{PROBE_KEY}"), String::new()),
        ("GET", format!("/v1/files/{PROBE_KEY}"), String::new()),
        ("GET", "/v1/files/models/x.bin".to_owned(), String::new()),
        ("GET", "/v1/files/data/x.bin".to_owned(), String::new()),
        (
            "PUT",
            "/v1/files/new.bin".to_owned(),
            "Content-Length: 3\r\n".to_owned(),
        ),
        (
            "PUT",
            "/v1/files/new.bin".to_owned(),
            format!(
                "Content-Range: bytes 0-2/3\r\nX-Content-SHA256: {}\r\nContent-Length: 3\r\n",
                sha256_hex(b"abc")
            ),
        ),
        (
            "POST",
            "/v1/files/temp".to_owned(),
            "Content-Length: 0\r\n".to_owned(),
        ),
        (
            "POST",
            "/v1/files/other".to_owned(),
            "Content-Length: 0\r\n".to_owned(),
        ),
        ("DELETE", format!("/v1/files/{PROBE_KEY}"), String::new()),
        ("OPTIONS", format!("/v1/files/{PROBE_KEY}"), String::new()),
        ("GET", "/v1/files-list/models/".to_owned(), String::new()),
        ("GET", "/v1/files-list/x".to_owned(), String::new()),
        (
            "PUT",
            "/v1/files-list/x".to_owned(),
            "Content-Length: 0\r\n".to_owned(),
        ),
        ("GET", "/v1/backend-logs".to_owned(), String::new()),
        ("GET", "/v1/backend-logs/m".to_owned(), String::new()),
        ("GET", "/v1/backend-logs/m/ws".to_owned(), String::new()),
        ("GET", "/v1/backend-logs/m/ws".to_owned(), ws),
    ]
}

fn send_route(
    server: &TestServer,
    method: &str,
    target: &str,
    extra: &str,
    auth: &[u8],
) -> RawResponse {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}",
        server.addr
    )
    .into_bytes();
    request.extend_from_slice(auth);
    request.extend_from_slice(b"\r\n");
    if method == "PUT" && extra.contains("Content-Length: 3") {
        request.extend_from_slice(b"abc");
    }
    server.raw(&request)
}

fn ah_26_every_route_without_or_with_a_wrong_token_is_401(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let mut failures = Vec::new();
    let mut reference: Option<RawResponse> = None;
    for (method, target, extra) in every_route() {
        for auth in [
            Vec::new(),
            auth_line("Bearer wrong-token"),
            auth_line(format!("Basic {}", base64(TOKEN.as_bytes()))),
        ] {
            let response = send_route(&server, method, &target, &extra, &auth);
            if let Some(problem) = unauthorized_problem(&response, method != "HEAD") {
                failures.push(format!(
                    "{method} {target} [{}]: {problem}",
                    String::from_utf8_lossy(&auth).trim()
                ));
            }
            if method != "HEAD" {
                let reference = reference.get_or_insert_with(|| response.clone());
                if comparable_headers(&response) != comparable_headers(reference)
                    || response.body != reference.body
                {
                    failures.push(format!(
                        "{method} {target}: a different 401 {:?}",
                        response.headers
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing was written by any of them.
    assert_eq!(server.root_files(), vec![format!("staging/{PROBE_KEY}")]);
}

fn ah_22_23_anonymous_server_allows_everything(rt: Runtime) {
    let server = server_with(
        rt,
        Options {
            token: None,
            ..Options::default()
        },
    );
    let rows = [
        row("AH-22", "no header", b"".to_vec(), Expect::Allowed),
        row("AH-23", "garbage", auth_line("garbage"), Expect::Allowed),
        row(
            "AH-23",
            "a wrong bearer",
            auth_line("Bearer wrong-token"),
            Expect::Allowed,
        ),
        row(
            "AH-23",
            "two lines",
            [auth_line("Bearer a"), auth_line("Basic b")].concat(),
            Expect::Allowed,
        ),
        row(
            "AH-23",
            "obs-text",
            auth_line([b"Bearer ".as_slice(), &[0xff, 0xfe]].concat()),
            Expect::Allowed,
        ),
    ];
    run(&server, &rows);
    // Every route, without a token, does its job.
    let mut failures = Vec::new();
    for (method, target, extra) in every_route() {
        let response = send_route(&server, method, &target, &extra, b"");
        if response.status == 401 || response.status >= 500 {
            failures.push(format!(
                "{method} {target}: {} {}",
                response.status,
                response.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        server.roots.staging.join("new.bin").exists(),
        "the anonymous PUT was served"
    );
}

fn ah_24_probes_need_no_token_and_reveal_nothing(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let secret_bits = [
        TOKEN.to_owned(),
        server.tmp.path().display().to_string(),
        env!("CARGO_PKG_VERSION").to_owned(),
    ];
    for path in ["/healthz", "/readyz"] {
        for (method, auth) in [
            ("GET", Vec::new()),
            ("HEAD", Vec::new()),
            ("GET", auth_line("Bearer wrong-token")),
        ] {
            let response = send_route(&server, method, path, "", &auth);
            assert_eq!(response.status, 200, "{method} {path}");
            if method == "GET" {
                assert_eq!(
                    response.body, b"ok",
                    "{method} {path}: the body is exactly ok"
                );
            }
            for (name, value) in &response.headers {
                assert!(
                    !name.eq_ignore_ascii_case("server"),
                    "{path}: no Server header"
                );
                for bit in &secret_bits {
                    assert!(
                        !value.contains(bit.as_str()),
                        "{path}: header {name} reveals {bit:?}"
                    );
                }
            }
        }
    }
}

fn ah_25_no_token_is_refused_before_the_key_or_the_body(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let before = server.outside_snapshot();
    // A malicious key without a token: 401, not the 400 a token holder would get.
    for key in [
        "../x",
        "%2e%2e/outside/secret.txt",
        "a//b",
        ".hidden",
        "models/",
    ] {
        let anonymous = send_route(&server, "GET", &format!("/v1/files/{key}"), "", b"");
        assert!(
            unauthorized_problem(&anonymous, true).is_none(),
            "{key}: {}",
            anonymous.status
        );
        let with_token = send_route(
            &server,
            "GET",
            &format!("/v1/files/{key}"),
            "",
            &auth_line(format!("Bearer {TOKEN}")),
        );
        assert_eq!(with_token.status, 400, "{key} with a token");
    }
    // A 1 GiB declared body, headers only: the answer comes without a byte of body sent.
    for (target, extra) in [
        ("/v1/files/huge.bin", String::new()),
        ("/v1/files/../x", String::new()),
        (
            "/v1/files/huge.bin",
            "Content-Range: bytes 0-1073741823/1073741824\r\n".to_owned(),
        ),
    ] {
        let head = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1073741824\r\n{extra}\r\n",
            server.addr
        );
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("head");
        let start = Instant::now();
        let response = read_response(&mut stream, false).expect("an answer before any body byte");
        assert!(
            unauthorized_problem(&response, true).is_none(),
            "{target}: {}",
            response.status
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // The server does not wait for the body either: it closes the connection.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after the 401");
    }
    assert_eq!(server.root_files(), vec![format!("staging/{PROBE_KEY}")]);
    assert_eq!(server.outside_snapshot(), before);
}

// ---------------------------------------------------------------------------------------------
// AH-28 and rotation

fn ah_28_wrong_tokens_of_every_length_are_401(rt: Runtime) {
    let server = server_with(rt, Options::default());
    let n = TOKEN.len();
    let same_length: String = TOKEN.chars().rev().collect();
    assert_ne!(same_length, TOKEN);
    let mut last_flipped = TOKEN[..n - 1].to_owned();
    last_flipped.push(if TOKEN.ends_with('a') { 'b' } else { 'a' });
    let candidates: Vec<(String, String)> = vec![
        ("0".into(), String::new()),
        ("1".into(), TOKEN[..1].to_owned()),
        ("n-1".into(), TOKEN[..n - 1].to_owned()),
        ("n (reversed)".into(), same_length),
        ("n (last char changed)".into(), last_flipped),
        ("n+1".into(), format!("{TOKEN}a")),
        ("4096".into(), "a".repeat(4096)),
        (
            "4096 starting with the token".into(),
            format!("{TOKEN}{}", "a".repeat(4096 - n)),
        ),
    ];
    let rows: Vec<Row> = candidates
        .into_iter()
        .map(|(what, token)| {
            row(
                "AH-28",
                what,
                auth_line(format!("Bearer {token}")),
                Expect::Unauthorized,
            )
        })
        .collect();
    run(&server, &rows);
}

fn rotation_accepts_the_current_and_the_previous_token_only(rt: Runtime) {
    let server = server_with(
        rt,
        Options {
            previous: Some("old-token"),
            ..Options::default()
        },
    );
    run(
        &server,
        &[
            row(
                "rotation",
                "current token",
                auth_line(format!("Bearer {TOKEN}")),
                Expect::Allowed,
            ),
            row(
                "rotation",
                "previous token",
                auth_line("Bearer old-token"),
                Expect::Allowed,
            ),
            row(
                "rotation",
                "previous token, other case scheme",
                auth_line("bearer old-token"),
                Expect::Allowed,
            ),
            row(
                "rotation",
                "a third token",
                auth_line("Bearer third-token"),
                Expect::Unauthorized,
            ),
            row(
                "rotation",
                "previous token + x",
                auth_line("Bearer old-tokenx"),
                Expect::Unauthorized,
            ),
            row(
                "rotation",
                "both, two lines",
                [
                    auth_line(format!("Bearer {TOKEN}")),
                    auth_line("Bearer old-token"),
                ]
                .concat(),
                Expect::Unauthorized,
            ),
        ],
    );
    // The previous token is good for every route, e.g. an upload.
    let put = send_route(
        &server,
        "PUT",
        "/v1/files/rotated.bin",
        "Content-Length: 3\r\n",
        &auth_line("Bearer old-token"),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    // Without a rotation, the old token is just wrong.
    let plain = server_with(rt, Options::default());
    run(
        &plain,
        &[row(
            "rotation",
            "old token, no rotation",
            auth_line("Bearer old-token"),
            Expect::Unauthorized,
        )],
    );
}

common::per_runtime_tests!(
    ah_01_02_missing_is_401_and_the_right_token_is_allowed,
    ah_03_scheme_is_case_insensitive,
    ah_04_05_one_or_more_spaces_but_not_a_tab,
    ah_06_to_09_incomplete_wrong_or_foreign_credentials_are_401,
    ah_10_to_12_repeated_or_joined_credentials_are_401,
    ah_13_obs_text_in_the_token_is_401_never_5xx,
    ah_14_nul_cr_lf_in_the_value_are_refused_by_the_http_layer,
    ah_15_configured_token_with_b64token_punctuation_works,
    ah_17_18_query_access_token_never_authenticates,
    ah_19_20_only_the_authorization_field_counts_whatever_its_case,
    ah_21_a_64_kib_header_is_refused_by_the_http_layer,
    ah_26_every_route_without_or_with_a_wrong_token_is_401,
    ah_22_23_anonymous_server_allows_everything,
    ah_24_probes_need_no_token_and_reveal_nothing,
    ah_25_no_token_is_refused_before_the_key_or_the_body,
    ah_28_wrong_tokens_of_every_length_are_401,
    rotation_accepts_the_current_and_the_previous_token_only,
);
