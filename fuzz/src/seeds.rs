//! The committed seeds: every row of the tables of security.md §2.3 (AH), §3 (SC), §4.2 (HR-R),
//! §4.3–§4.5 (HR-M, HR-D, HR-C), §4.7 (CR) and §5.5 (NA, as configurations), the breaking inputs
//! of §1.2, and the requests a LocalAI frontend sends (localai-wire.md §3).
//!
//! `tests/replay.rs` checks that `corpus/<target>/<name>` holds exactly these bytes and runs
//! them, with every other committed file, through the oracles. Set `NODEGATE_WRITE_SEEDS=1`
//! when running it to (re)write them after changing this table.

use nodegate_core::upload::Sha256;

use crate::upload::encode::{Body, Content, Fault, Hash, Input, Start};
use crate::util::escape;

/// One seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The target (corpus folder).
    pub target: &'static str,
    /// The file name: the spec row it comes from.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// Every seed.
#[must_use]
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        seeds.push(Seed {
            target,
            name: name.to_owned(),
            data,
        });
    };
    for (name, data) in authorize() {
        add("authorize", &name, data);
    }
    for (name, data) in keys() {
        add("keys", &name, data);
    }
    for (name, data) in content_range() {
        add("content_range", &name, data);
    }
    for (name, data) in sha256_header() {
        add("sha256_header", &name, data);
    }
    for (name, data) in range() {
        add("range", &name, data);
    }
    for (name, data) in classify() {
        add("classify", &name, data);
    }
    for (name, data) in plan_upload() {
        add("plan_upload", &name, data);
    }
    for (name, data) in posture() {
        add("posture", &name, data);
    }
    seeds
}

type Rows = Vec<(String, Vec<u8>)>;

fn row(name: &str, data: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), data.into())
}

/// §2.3 with the token `tok`: the first line configures the server, then header lines.
fn authorize() -> Rows {
    let with = |lines: &[&[u8]]| {
        let mut data = b"token tok\n".to_vec();
        for line in lines {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        data
    };
    let mut rows = vec![
        row("AH-01-missing", with(&[])),
        row("AH-02-right", with(&[b"Authorization: Bearer tok"])),
        row("AH-03-lower", with(&[b"Authorization: bearer tok"])),
        row("AH-03-upper", with(&[b"Authorization: BEARER tok"])),
        row("AH-03-mixed", with(&[b"Authorization: BeArEr tok"])),
        row("AH-04-two-spaces", with(&[b"Authorization: Bearer  tok"])),
        row("AH-05-tab", with(&[b"Authorization: Bearer\ttok"])),
        row("AH-06-scheme-only", with(&[b"Authorization: Bearer"])),
        row("AH-06-trailing-space", with(&[b"Authorization: Bearer "])),
        row("AH-07-longer", with(&[b"Authorization: Bearer tokx"])),
        row("AH-07-shorter", with(&[b"Authorization: Bearer to"])),
        row("AH-07-twice", with(&[b"Authorization: Bearer tok tok"])),
        row("AH-08-case", with(&[b"Authorization: Bearer TOK"])),
        row("AH-09-basic", with(&[b"Authorization: Basic dTp0b2s="])),
        row("AH-09-token-scheme", with(&[b"Authorization: Token tok"])),
        row("AH-09-bare", with(&[b"Authorization: tok"])),
        row(
            "AH-10-first-valid",
            with(&[b"Authorization: Bearer tok", b"Authorization: Bearer nope"]),
        ),
        row(
            "AH-11-second-valid",
            with(&[b"Authorization: Bearer nope", b"Authorization: Bearer tok"]),
        ),
        row(
            "AH-12-comma-joined",
            with(&[b"Authorization: Bearer tok, Bearer tok"]),
        ),
        row(
            "AH-13-obs-text",
            with(&[b"Authorization: Bearer t\x80\xffk"]),
        ),
        row("AH-14-nul", with(&[b"Authorization: Bearer tok\x00"])),
        row("AH-14-cr", with(&[b"Authorization: Bearer tok\rx"])),
        row(
            "AH-15-punctuation",
            b"token a-b.c_d~e+f/g==\nAuthorization: Bearer a-b.c_d~e+f/g==\n".to_vec(),
        ),
        row("AH-16-non-ascii", "token tök\nAuthorization: Bearer tök\n"),
        row("AH-16-leading-padding", b"token =abc\n".to_vec()),
        row("AH-16-inner-padding", b"token ab=c\n".to_vec()),
        row(
            "AH-19-other-headers",
            with(&[
                b"Proxy-Authorization: Bearer tok",
                b"X-Api-Key: tok",
                b"Cookie: token=tok",
            ]),
        ),
        row(
            "AH-20-lower-case-name",
            with(&[b"authorization: Bearer tok"]),
        ),
        row("AH-22-anonymous", b"anonymous\n".to_vec()),
        row(
            "AH-23-anonymous-garbage",
            b"anonymous\nAuthorization: garbage \x80\nAuthorization: Basic x\n".to_vec(),
        ),
        row(
            "rotation-previous",
            b"token new old\nAuthorization: Bearer old\n".to_vec(),
        ),
        row(
            "rotation-older",
            b"token new old\nAuthorization: Bearer older\n".to_vec(),
        ),
    ];
    let mut long = b"token tok\nAuthorization: Bearer ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 8192));
    rows.push(row("AH-21-long-value", long));
    for len in [0, 1, 11, 12, 13, 4096] {
        let mut data = b"token s3cr3t-token\nAuthorization: Bearer ".to_vec();
        data.extend(std::iter::repeat_n(b'x', len));
        rows.push(row(&format!("AH-28-length-{len}"), data));
    }
    rows
}

/// Keys LocalAI generates (localai-wire.md §3.4, §7.1) and the breaking inputs of §1.2.
fn keys() -> Rows {
    let mut rows: Rows = [
        ("localai-model", "models/llama-3/model.gguf"),
        ("localai-model-nested", "models/subdir/bar.bin"),
        ("localai-data", "data/nested/file.txt"),
        ("localai-staging", "random/path/file.gguf"),
        ("localai-other", "other"),
        ("localai-input", "ephemeral/inputs/1a2b3c4d/image.png"),
        ("localai-output", "localai-output-1234567890.tmp"),
        ("localai-sidecar", "sidecar.txt.sha256"),
        ("localai-target-sidecar", "models/m1/w.bin.sha256.target"),
        ("localai-models-root", "models/"),
        ("localai-data-root", "data/"),
        ("localai-models-no-slash", "models"),
        ("localai-space", "hello%20world.txt"),
        (
            "localai-unicode",
            "models/Llama%203.1%E2%80%938B/model.gguf",
        ),
        ("traversal-plain", "../../../etc/passwd"),
        ("traversal-inner", "staging/../../etc/passwd"),
        ("traversal-encoded-slash", "..%2f..%2fetc%2fpasswd"),
        ("traversal-rails", "x/..%2Fescape"),
        ("warp-drive-letter", "foo/c:/windows/web/screen/img101.png"),
        ("tower-http-drive", "anypath/c%3A/windows/win.ini"),
        ("tower-http-con", "CON"),
        ("tower-http-com1", "COM1"),
        ("tower-http-superscript", "com%C2%B9.txt"),
        ("tower-http-conin", "CONIN$"),
        ("tower-http-nul-spaces", "NUL%20%20.txt"),
        ("tower-http-con-tab", "CON%09"),
        ("tower-http-negatives", "C0N/PRN1/NULL/COM10/contact.html"),
        ("tower-http-bad-utf8", "weird_%c3%28_path"),
        ("tower-http-pipe", "invalid|path"),
        ("tower-http-nul", "invalid-path%00"),
        ("go-clean-drive", "a/../c:/b"),
        ("go-unc-prefix", "%5C%3F%3F%5Cc:"),
        ("apache-41773", ".%2e/.%2e/.%2e/etc/passwd"),
        ("apache-42013", "%%32%65%%32%65/x"),
        ("iis-overlong-slash", "%c0%af"),
        ("iis-overlong-dots", "%c0%ae%c0%ae/x"),
        ("iis-double-encoding", "..%255c..%255cx"),
        ("dir2opds-double", ".%252e/.%252e/etc/passwd"),
        ("nginx-space-nul", "shell.png%20%00.php"),
        ("nginx-trailing-dot", "file.txt."),
        ("nginx-ads", "index::$INDEX_ALLOCATION"),
        ("vertx-backslash", "%5c..%5cx"),
        ("cowboy-backslash", "%5C%2E%2E%5C"),
        ("tomcat-semicolon", "..;/x"),
        ("webmin-control", "..%01"),
        ("bad-escape-alone", "%"),
        ("bad-escape-short", "%2"),
        ("bad-escape-hex", "%zz"),
        ("bad-escape-unicode", "%u002e"),
        ("hidden-ssh", ".ssh/id_rsa"),
        ("hidden-git", "models/.git/config"),
        ("empty-segment", "a//b"),
        ("absolute", "/etc/passwd"),
        ("trailing-slash", "a/"),
        ("bidi-override", "%E2%80%AEevil.txt"),
        ("fullwidth-dots", "%EF%BC%8E%EF%BC%8E/x"),
        ("division-slash", "..%E2%88%95etc"),
        ("line-separator", "a%E2%80%A8b"),
        ("temp-name", ".w.bin.0123456789abcdef.tmp"),
        ("partial-name", "m/.w.bin.partial"),
    ]
    .into_iter()
    .map(|(name, key)| row(name, key))
    .collect();
    rows.push(row("too-many-segments", "a/".repeat(32) + "a"));
    rows.push(row("segment-256", "s".repeat(256)));
    rows.push(row("file-name-220", "d/".to_owned() + &"f".repeat(220)));
    rows.push(row("file-name-219", "d/".to_owned() + &"f".repeat(219)));
    rows.push(row("key-1025", "d/".repeat(200) + &"f".repeat(625)));
    rows.push(row("empty", ""));
    rows
}

/// §4.7 CR-01…CR-11 and the client's own ranges.
fn content_range() -> Rows {
    [
        ("CR-01-whole", "bytes 0-99/100"),
        ("CR-02-first-half", "bytes 0-49/100"),
        ("CR-03-second-half", "bytes 50-99/100"),
        ("CR-04-skip-ahead", "bytes 60-99/100"),
        ("CR-05-range-syntax", "bytes=0-99/100"),
        ("CR-06-end-before-start", "bytes 100-99/100"),
        ("CR-07-end-at-total", "bytes 0-100/100"),
        ("CR-08-negative-start", "bytes -1-5/10"),
        ("CR-08-negative-end", "bytes 0--5/10"),
        (
            "CR-09-overflow",
            "bytes 0-18446744073709551615/18446744073709551616",
        ),
        ("CR-10-star-total", "bytes 0-99/*"),
        ("CR-10-star-range", "bytes */100"),
        ("CR-11-two-ranges", "bytes 0-1,2-3/4"),
        ("CR-11-trailing-garbage", "bytes 0-99/100 garbage"),
        ("trimmed", " bytes 0-9/10 \t"),
        ("plus-sign", "bytes +0-+9/+10"),
        ("zero-length-file", "bytes 0-0/0"),
        (
            "largest",
            "bytes 9223372036854775806-9223372036854775806/9223372036854775807",
        ),
        ("i64-min", "bytes -9223372036854775808-0/1"),
        ("localai-resume", "bytes 104857600-209715199/209715200"),
        ("control-bytes", "bytes 0-\x01/\x7f"),
        ("blank", "   "),
    ]
    .into_iter()
    .map(|(name, value)| row(name, value))
    .collect()
}

/// §4.7 CR-14, CR-15 and D6 sidecars.
fn sha256_header() -> Rows {
    let hex = Sha256::of(b"hello distributed world").to_hex();
    vec![
        row("CR-14-short", "abc"),
        row("CR-14-63", &hex[..63]),
        row("CR-14-65", format!("{hex}0")),
        row("CR-14-not-hex", format!("g{}", &hex[1..])),
        row("CR-15-upper-case", hex.to_uppercase()),
        row("localai-hash", hex.clone()),
        row("spaces-around", format!("  {hex}\t")),
        row("D6-sidecar-newline", format!("{hex}\n")),
        row("D6-sidecar-crlf", format!("{hex}\r\n")),
        row("empty", ""),
        row("blank", "   "),
    ]
}

/// D5 (`Range` on downloads).
fn range() -> Rows {
    [
        ("D5-first-bytes", "bytes=0-9"),
        ("D5-from", "bytes=90-"),
        ("D5-suffix", "bytes=-10"),
        ("D5-one-byte", "bytes=0-0"),
        ("D5-clamped", "bytes=50-1000"),
        ("D5-long-suffix", "bytes=-1000"),
        ("D5-huge-end", "bytes=0-99999999999999999999999"),
        ("D5-past-end", "bytes=100-"),
        ("D5-huge-start", "bytes=99999999999999999999999-"),
        ("D5-zero-suffix", "bytes=-0"),
        ("unit-case", "BYTES=0-1"),
        ("empty-elements", "bytes= 0-1 ,"),
        ("leading-empty-element", "bytes=, 2-3"),
        ("several", "bytes=0-1,2-3"),
        ("other-unit", "items=0-1"),
        ("no-equals", "bytes 0-1"),
        ("empty-set", "bytes="),
        ("dash-only", "bytes=-"),
        ("reversed", "bytes=5-4"),
        ("letters", "bytes=a-b"),
        ("three-parts", "bytes=1-2-3"),
        ("plus", "bytes=+1-2"),
        ("hex", "bytes=0x10-"),
        ("double-dash", "bytes=--1"),
    ]
    .into_iter()
    .map(|(name, value)| row(name, value))
    .collect()
}

/// Request heads: what a LocalAI frontend sends (localai-wire.md §3.2, §3.4, §2.12), §2.3 AH
/// rows as requests, §4.2 HR-R, §4.3 HR-M, §4.7 CR rows as `PUT` heads.
fn classify() -> Rows {
    let hash = Sha256::of(&[7_u8; 100]).to_hex();
    let head = |request_line: &str, headers: &[&str]| {
        let mut text = format!(
            "{request_line} HTTP/1.1\r\nHost: worker:50050\r\nUser-Agent: Go-http-client/1.1\r\n"
        );
        for header in headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.into_bytes()
    };
    let auth = "Authorization: Bearer tok";
    let put = |range: &str, length: &str| {
        head(
            "PUT /v1/files/models/llama/model.gguf",
            &[
                auth,
                &format!("Content-Length: {length}"),
                "Content-Type: application/octet-stream",
                &format!("X-Content-SHA256: {hash}"),
                &format!("Content-Range: {range}"),
                "Accept-Encoding: gzip",
            ],
        )
    };
    let ws = |origin: Option<&str>| {
        let mut headers = vec![
            auth.to_owned(),
            "Connection: Upgrade".to_owned(),
            "Upgrade: websocket".to_owned(),
            "Sec-WebSocket-Version: 13".to_owned(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
        ];
        if let Some(origin) = origin {
            headers.push(format!("Origin: {origin}"));
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        head("GET /v1/backend-logs/llama/ws", &headers)
    };
    let mut rows = vec![
        row("localai-head-probe", head("HEAD /v1/files/models/llama/model.gguf", &[auth])),
        row("localai-put-range-first", put("bytes 0-99/100", "100")),
        row("localai-put-range-resume", put("bytes 50-99/100", "50")),
        row(
            "localai-put-legacy-full",
            head(
                "PUT /v1/files/myfile.txt",
                &[auth, "Content-Length: 23", "Content-Type: application/octet-stream"],
            ),
        ),
        row(
            "localai-put-empty",
            head("PUT /v1/files/empty.bin", &[auth, "Content-Length: 0"]),
        ),
        row(
            "localai-put-input",
            head(
                "PUT /v1/files/ephemeral/inputs/1a2b3c4d/image.png",
                &[auth, "Content-Length: 512"],
            ),
        ),
        row(
            "localai-alloc-temp",
            head("POST /v1/files/temp", &[auth, "Content-Length: 0"]),
        ),
        row(
            "localai-get-output",
            head("GET /v1/files/localai-output-1234567890.tmp", &[auth, "Accept-Encoding: gzip"]),
        ),
        row("localai-get-data", head("GET /v1/files/data/quant/out.gguf", &[auth])),
        row(
            "localai-get-range",
            head("GET /v1/files/models/llama/model.gguf", &[auth, "Range: bytes=0-1023"]),
        ),
        row("localai-list-export", head("GET /v1/files-list/models/llama", &[auth])),
        row("localai-list-root", head("GET /v1/files-list/models/", &[auth])),
        row("localai-logs-index", head("GET /v1/backend-logs", &[auth])),
        row("localai-logs-model", head("GET /v1/backend-logs/my%20model%231", &[auth])),
        row("localai-logs-socket", ws(None)),
        row("AH-27-same-origin", ws(Some("http://worker:50050"))),
        row("AH-27-foreign-origin", ws(Some("https://evil.example"))),
        row("AH-27-null-origin", ws(Some("null"))),
        row("AH-27-suffix-origin", ws(Some("http://worker:50050.evil"))),
        row("AH-24-healthz", head("GET /healthz", &[])),
        row("AH-24-readyz-head", head("HEAD /readyz", &[])),
        row("AH-24-readyz-post", head("POST /readyz", &[])),
        row("redirect-files", head("GET /v1/files", &[])),
        row("redirect-list", head("GET /v1/files-list", &[auth])),
        row("not-found", head("GET /v1/nope", &[auth])),
        row("AH-01-missing", head("GET /v1/files/x", &[])),
        row("AH-03-lower-scheme", head("GET /v1/files/x", &["Authorization: bearer tok"])),
        row("AH-05-tab", head("GET /v1/files/x", &["Authorization: Bearer\ttok"])),
        row("AH-07-wrong", head("GET /v1/files/x", &["Authorization: Bearer tokx"])),
        row("AH-09-basic", head("GET /v1/files/x", &["Authorization: Basic dTp0b2s="])),
        row(
            "AH-10-two-lines",
            head("GET /v1/files/x", &[auth, "Authorization: Bearer nope"]),
        ),
        row("AH-12-comma", head("GET /v1/files/x", &["Authorization: Bearer tok, Bearer tok"])),
        row("AH-17-query-token", head("GET /v1/files/x?access_token=tok", &[])),
        row(
            "AH-18-query-and-wrong-header",
            head("GET /v1/files/x?access_token=tok", &["Authorization: Bearer nope"]),
        ),
        row(
            "AH-19-proxy-authorization",
            head("GET /v1/files/x", &["Proxy-Authorization: Bearer tok"]),
        ),
        row("AH-20-lower-case-name", head("GET /v1/files/x", &["authorization: Bearer tok"])),
        row("AH-25-key-before-auth", head("GET /v1/files/..%2f..%2fetc%2fpasswd", &[])),
        row("AH-25-key-after-auth", head("GET /v1/files/..%2f..%2fetc%2fpasswd", &[auth])),
        row(
            "AH-25-huge-body",
            head("PUT /v1/files/x", &["Content-Length: 99999999999"]),
        ),
        row("AH-25-method-before-auth", head("DELETE /v1/files/x", &[])),
        row("AH-25-method-after-auth", head("DELETE /v1/files/x", &[auth])),
        row("rotation-previous-token", head("GET /v1/files/x", &["Authorization: Bearer old-T0ken"])),
        row("HR-R01-plus-length", head("PUT /v1/files/x", &[auth, "Content-Length: +5"])),
        row(
            "HR-R02-two-lengths",
            head("PUT /v1/files/x", &[auth, "Content-Length: 5", "Content-Length: 6"]),
        ),
        row(
            "HR-R03-same-lengths",
            head("PUT /v1/files/x", &[auth, "Content-Length: 5", "Content-Length: 5"]),
        ),
        row("HR-R04-length-list", head("PUT /v1/files/x", &[auth, "Content-Length: 5, 6"])),
        row(
            "HR-R05-chunked-and-length",
            head(
                "PUT /v1/files/x",
                &[auth, "Transfer-Encoding: chunked", "Content-Length: 3"],
            ),
        ),
        row("HR-R06-gzip", head("PUT /v1/files/x", &[auth, "Transfer-Encoding: gzip"])),
        row(
            "HR-R07-http10-chunked",
            b"PUT /v1/files/x HTTP/1.0\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        row(
            "HR-R10-chunked-twice",
            head(
                "PUT /v1/files/x",
                &[auth, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            ),
        ),
        row(
            "HR-R10-chunked-list",
            head("PUT /v1/files/x", &[auth, "Transfer-Encoding: chunked, chunked"]),
        ),
        row(
            "HR-R10-gzip-chunked",
            head("PUT /v1/files/x", &[auth, "Transfer-Encoding: gzip, chunked"]),
        ),
        row(
            "HR-R10-healthz-gzip",
            head("GET /healthz", &["Transfer-Encoding: gzip"]),
        ),
        row(
            "HR-R13-get-with-body",
            [head("GET /v1/files/x", &[auth, "Content-Length: 4"]), b"body".to_vec()].concat(),
        ),
        row("HR-M01-over-limit", head("PUT /v1/files/x", &[auth, "Content-Length: 1001"])),
        row(
            "HR-M02-expect-continue",
            head(
                "PUT /v1/files/x",
                &[auth, "Content-Length: 1001", "Expect: 100-continue"],
            ),
        ),
        row(
            "HR-M04-total-over-limit",
            head(
                "PUT /v1/files/x",
                &[auth, "Content-Range: bytes 0-9/1001", "Content-Length: 10"],
            ),
        ),
        row("HR-M06-at-limit", head("PUT /v1/files/x", &[auth, "Content-Length: 1000"])),
        row("CR-05-range-syntax", put("bytes=0-99/100", "100")),
        row("CR-06-end-before-start", put("bytes 100-99/100", "1")),
        row("CR-07-end-at-total", put("bytes 0-100/100", "101")),
        row("CR-08-negative", put("bytes -1-5/10", "7")),
        row("CR-09-overflow", put("bytes 0-18446744073709551615/18446744073709551616", "1")),
        row("CR-10-star", put("bytes 0-99/*", "100")),
        row("CR-11-garbage", put("bytes 0-99/100 garbage", "100")),
        row("CR-12-length-mismatch", put("bytes 0-49/100", "100")),
        row(
            "CR-14-short-hash",
            head(
                "PUT /v1/files/x",
                &[auth, "Content-Length: 1", "X-Content-SHA256: abc"],
            ),
        ),
        row(
            "sidecar-write",
            head("PUT /v1/files/models/m/w.bin.sha256", &[auth, "Content-Length: 64"]),
        ),
        row(
            "sidecar-read",
            head("GET /v1/files/models/m/w.bin.sha256", &[auth]),
        ),
        row("absolute-form", head("GET http://worker:50050/v1/files/x", &[auth])),
    ];
    for (method, path) in [
        ("HEAD", "/v1/files/x"),
        ("GET", "/v1/files/x"),
        ("PUT", "/v1/files/x"),
        ("POST", "/v1/files/temp"),
        ("GET", "/v1/files-list/models/x"),
        ("GET", "/v1/backend-logs"),
        ("GET", "/v1/backend-logs/m"),
        ("GET", "/v1/backend-logs/m/ws"),
    ] {
        let name = format!(
            "AH-26-{}{}",
            method.to_ascii_lowercase(),
            path.replace('/', "-")
        );
        rows.push(row(&name, head(&format!("{method} {path}"), &[])));
    }
    rows
}

/// §4.7 CR rows, §4.3–§4.5 HR-M, HR-D, HR-C rows, D6 and D9 as sequences.
fn plan_upload() -> Rows {
    let file: Vec<u8> = (0..100_u8).collect();
    let other: Vec<u8> = (100..200_u8).collect();
    let short = b"hello distributed world";
    let ok = Fault::None;
    let exact = Body::Exact;
    let new = || Input::new(false, None);
    let first_half = |input: Input| {
        input.range(
            &Content::Fresh(&file),
            Start::Zero,
            Some(49),
            Hash::Right,
            exact,
            true,
            false,
            ok,
        )
    };
    let resume = |input: Input, hash: Hash, fault: Fault| {
        input.range(
            &Content::Recent(0),
            Start::Resume,
            None,
            hash,
            exact,
            true,
            false,
            fault,
        )
    };
    let row = |name: &str, input: Input| (name.to_owned(), input.bytes());
    vec![
        // D18: without a hash, `bytes 0-4/10` then `bytes 5-11/12` published a mix of two
        // files; the second chunk is 409 now and the partial is discarded.
        row(
            "D18-total-changes-mid-resume",
            new()
                .range(
                    &Content::Fresh(b"AAAAAAAAAA"),
                    Start::Zero,
                    Some(4),
                    Hash::None,
                    exact,
                    true,
                    false,
                    ok,
                )
                .range(
                    &Content::Fresh(b"BBBBBBBBBBBB"),
                    Start::Resume,
                    None,
                    Hash::None,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-01-whole-file",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-02-CR-03-two-chunks",
            resume(first_half(new()).head(), Hash::Right, ok).head(),
        ),
        row(
            "CR-04-skip-ahead",
            first_half(new())
                .range(
                    &Content::Recent(0),
                    Start::At(60),
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-12-short-body",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    Body::Truncated(30),
                    false,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-12-length-mismatch",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    Body::Excess,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-13-hash-change",
            resume(first_half(new()), Hash::Wrong, ok).head(),
        ),
        row(
            "CR-15-upper-case-hash",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    Some(49),
                    Hash::Right,
                    exact,
                    true,
                    true,
                    ok,
                )
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    true,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-16-overwrite-complete",
            new()
                .full(&Content::Fresh(short), Hash::Right, true, ok)
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-17-restart-same-target",
            first_half(new())
                .range(
                    &Content::Recent(0),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-19-D9-already-complete",
            new()
                .full(&Content::Fresh(&file), Hash::Right, true, ok)
                .head()
                .range(
                    &Content::Recent(0),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "CR-18-directory",
            Input::new(true, None)
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .full(&Content::Fresh(short), Hash::None, true, ok)
                .head(),
        ),
        row(
            "rule4-range-without-hash",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    Some(49),
                    Hash::None,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head()
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::None,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "hash-required-to-continue",
            resume(first_half(new()), Hash::None, ok).head(),
        ),
        row(
            "wrong-final-hash",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    Some(49),
                    Hash::Wrong,
                    exact,
                    true,
                    false,
                    ok,
                )
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::Wrong,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "HR-M03-streamed-over-limit",
            Input::new(false, Some(24))
                .full(&Content::Fresh(short), Hash::None, false, ok)
                .full(&Content::Fresh(&file), Hash::None, false, ok)
                .head(),
        ),
        row(
            "HR-M01-length-over-limit",
            Input::new(false, Some(24))
                .full(&Content::Fresh(&file), Hash::Right, true, ok)
                .head(),
        ),
        row(
            "HR-M04-total-over-limit",
            Input::new(false, Some(24)).range(
                &Content::Fresh(&file),
                Start::Zero,
                Some(9),
                Hash::Right,
                exact,
                true,
                false,
                ok,
            ),
        ),
        row(
            "HR-M06-limit-reached",
            Input::new(false, Some(100))
                .full(&Content::Fresh(&file), Hash::Right, true, ok)
                .range(
                    &Content::Fresh(&other),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "HR-D01-disk-full-keeps-old",
            new()
                .full(&Content::Fresh(short), Hash::Right, true, ok)
                .full(
                    &Content::Fresh(&file),
                    Hash::Right,
                    true,
                    Fault::DiskFull(5),
                )
                .head(),
        ),
        row(
            "HR-D02-disk-full-mid-chunk",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    Fault::DiskFull(10),
                )
                .head()
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::Right,
                    exact,
                    false,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "HR-C01-crash-mid-full",
            new()
                .full(&Content::Fresh(short), Hash::Right, true, ok)
                .full(&Content::Fresh(&file), Hash::Right, true, Fault::MidBody(3))
                .head(),
        ),
        row(
            "HR-C02-crash-mid-chunk",
            resume(first_half(new()), Hash::Right, Fault::MidBody(7))
                .head()
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::Right,
                    exact,
                    false,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "HR-C03-crash-after-rename",
            new()
                .full(
                    &Content::Fresh(&file),
                    Hash::Right,
                    true,
                    Fault::AfterRename,
                )
                .head(),
        ),
        row(
            "HR-C05-wrong-hash",
            new()
                .full(&Content::Fresh(short), Hash::Right, true, ok)
                .full(&Content::Fresh(&file), Hash::Wrong, true, ok)
                .head(),
        ),
        row(
            "HR-C06-every-crash-point",
            new()
                .full(
                    &Content::Fresh(short),
                    Hash::Right,
                    true,
                    Fault::BeforePublish,
                )
                .head()
                .full(&Content::Recent(0), Hash::Right, true, Fault::AfterRename)
                .head()
                .full(
                    &Content::Fresh(&file),
                    Hash::Right,
                    true,
                    Fault::AfterSidecar,
                )
                .head()
                .range(
                    &Content::Fresh(&other),
                    Start::Zero,
                    Some(49),
                    Hash::Right,
                    exact,
                    true,
                    false,
                    Fault::MidBody(5),
                )
                .head()
                .range(
                    &Content::Recent(0),
                    Start::Resume,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    Fault::AfterRename,
                )
                .head(),
        ),
        // Found by the liveness check: a crash (or an I/O error) after the last chunk was
        // appended and before it was published leaves a partial that holds the whole file. The
        // client restarts from 0 with the same hash (it resumes only from a partial shorter than
        // the file), the partial is kept (same target) and 416 names its full size: every retry
        // gets 416 and the upload never completes.
        row(
            "regression-range-crash-before-publish",
            new()
                .range(
                    &Content::Fresh(&file),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    Fault::BeforePublish,
                )
                .head(),
        ),
        row(
            "D6-spoiled-sidecars",
            new()
                .full(&Content::Fresh(short), Hash::Right, true, ok)
                .spoil(0)
                .head()
                .spoil(1)
                .head()
                .spoil(2)
                .range(
                    &Content::Recent(0),
                    Start::Zero,
                    None,
                    Hash::Right,
                    exact,
                    true,
                    false,
                    ok,
                )
                .head(),
        ),
        row(
            "raw-invalid-ranges",
            new()
                .raw_range((5, 3, 10), b"abc", Hash::None, true)
                .raw_range((0, 0, 0), b"a", Hash::None, true)
                .raw_range((0, 9, 9), b"0123456789", Hash::Right, true)
                .raw_range((0, 2, 3), b"abc", Hash::Right, true)
                .head(),
        ),
    ]
}

/// §3 SC-01…SC-13 and §5.5 NA rows, as the configurations they start from.
fn posture() -> Rows {
    let env = |role: &str, lines: &[&str]| {
        let mut text = format!("{role}\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text.into_bytes()
    };
    let token_file = |content: &[u8]| {
        let mut line = b"file LOCALAI_REGISTRATION_TOKEN_FILE=".to_vec();
        line.extend_from_slice(&escape(content));
        String::from_utf8(line).expect("escaped")
    };
    let nats = "LOCALAI_NATS_URL=nats://nats:4222";
    let require_nats = "LOCALAI_NATS_REQUIRE_AUTH=true";
    let token = "LOCALAI_REGISTRATION_TOKEN=s3cr3t-T0ken";
    vec![
        row("SC-01-worker-anonymous", env("worker", &[])),
        row("SC-01-frontend-anonymous", env("frontend", &[nats])),
        row("SC-01-agent-anonymous", env("agent-worker", &[nats])),
        row(
            "SC-02-registration-switch",
            env("worker", &["LOCALAI_REGISTRATION_REQUIRE_AUTH=true"]),
        ),
        row(
            "SC-02-umbrella",
            env("worker", &["LOCALAI_DISTRIBUTED_REQUIRE_AUTH=1", nats]),
        ),
        row(
            "SC-02-frontend",
            env("frontend", &["LOCALAI_REGISTRATION_REQUIRE_AUTH=yes"]),
        ),
        row(
            "SC-02-agent-umbrella",
            env(
                "agent-worker",
                &[
                    "LOCALAI_DISTRIBUTED_REQUIRE_AUTH=true",
                    "LOCALAI_REGISTER_TO=http://frontend:8080",
                ],
            ),
        ),
        row(
            "SC-03-spaces",
            env("worker", &["LOCALAI_REGISTRATION_TOKEN=   "]),
        ),
        row(
            "SC-03-newline",
            env("worker", &["LOCALAI_REGISTRATION_TOKEN=\\n"]),
        ),
        row(
            "SC-04-token-file",
            env(
                "worker",
                &[
                    "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/token",
                    &token_file(b"s3cr3t-T0ken\n"),
                    "LOCALAI_REGISTRATION_REQUIRE_AUTH=true",
                ],
            ),
        ),
        row(
            "SC-04-token-file-crlf",
            env(
                "worker",
                &[
                    "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/token",
                    &token_file(b"s3cr3t-T0ken\r\n"),
                ],
            ),
        ),
        row(
            "SC-04-token-file-not-utf8",
            env(
                "worker",
                &[
                    "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/token",
                    &token_file(b"s3cr3t\xff"),
                ],
            ),
        ),
        row(
            "SC-04-token-and-file",
            env(
                "worker",
                &[
                    token,
                    "LOCALAI_REGISTRATION_TOKEN_FILE=/run/secrets/token",
                    &token_file(b"other\n"),
                ],
            ),
        ),
        row(
            "SC-05-non-ascii",
            env("worker", &["LOCALAI_REGISTRATION_TOKEN=s3cr3t-tök"]),
        ),
        row(
            "SC-05-space",
            env("worker", &["LOCALAI_REGISTRATION_TOKEN=s3cr3t T0ken"]),
        ),
        row(
            "SC-06-token",
            env(
                "worker",
                &[token, "LOCALAI_REGISTRATION_REQUIRE_AUTH=false"],
            ),
        ),
        row(
            "SC-07-worker-nats",
            env("worker", &[token, nats, require_nats]),
        ),
        row(
            "SC-07-frontend-nats",
            env("frontend", &[token, nats, require_nats]),
        ),
        row(
            "SC-07-agent-nats",
            env("agent-worker", &[nats, require_nats]),
        ),
        row(
            "SC-08-jwt-without-seed",
            env(
                "worker",
                &[nats, "LOCALAI_NATS_JWT=eyJhbGciOiJlZDI1NTE5In0.e30.c2ln"],
            ),
        ),
        row(
            "SC-08-seed-without-jwt",
            env(
                "worker",
                &[
                    nats,
                    "LOCALAI_NATS_USER_SEED=SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY",
                ],
            ),
        ),
        row(
            "SC-08-cert-without-key",
            env(
                "worker",
                &[
                    nats,
                    "LOCALAI_NATS_TLS_CERT=/etc/nats/cert.pem",
                    "file LOCALAI_NATS_TLS_CERT=CERT",
                ],
            ),
        ),
        row(
            "SC-08-key-without-cert",
            env(
                "worker",
                &[
                    nats,
                    "LOCALAI_NATS_TLS_KEY=/etc/nats/key.pem",
                    "file LOCALAI_NATS_TLS_KEY=KEY",
                ],
            ),
        ),
        row(
            "SC-09-ca-unreadable",
            env(
                "worker",
                &[
                    nats,
                    "LOCALAI_NATS_TLS_CA=/etc/nats/ca.pem",
                    "unreadable LOCALAI_NATS_TLS_CA=permission denied",
                ],
            ),
        ),
        row(
            "SC-09-ca-not-read",
            env("worker", &[nats, "LOCALAI_NATS_TLS_CA=/etc/nats/ca.pem"]),
        ),
        row(
            "SC-09-ca-empty",
            env(
                "worker",
                &[
                    nats,
                    "LOCALAI_NATS_TLS_CA=/etc/nats/ca.pem",
                    "file LOCALAI_NATS_TLS_CA=",
                ],
            ),
        ),
        row(
            "SC-12-public-bind",
            env(
                "worker",
                &[
                    "LOCALAI_HTTP_ADDR=0.0.0.0:50050",
                    "LOCALAI_ADDR=203.0.113.7:50051",
                ],
            ),
        ),
        row(
            "SC-13-unlimited",
            env("worker", &[token, "LOCALAI_MAX_UPLOAD_SIZE=0"]),
        ),
        row(
            "SC-13-negative",
            env("worker", &[token, "LOCALAI_MAX_UPLOAD_SIZE=-1"]),
        ),
        row(
            "NA-01-no-credentials",
            env("worker", &[token, nats, require_nats]),
        ),
        row(
            "NA-03-token",
            env(
                "worker",
                &[token, nats, require_nats, "LOCALAI_NATS_TOKEN=n4ts-s3cr3t"],
            ),
        ),
        row(
            "NA-04-user-password",
            env(
                "worker",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_USER=worker",
                    "LOCALAI_NATS_PASSWORD=n4ts-passw0rd",
                ],
            ),
        ),
        row(
            "NA-04-user-without-password",
            env("worker", &[token, nats, "LOCALAI_NATS_USER=worker"]),
        ),
        row(
            "NA-05-nkey",
            env(
                "worker",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_NKEY_SEED=SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY",
                ],
            ),
        ),
        row(
            "NA-05-two-modes",
            env(
                "worker",
                &[
                    token,
                    nats,
                    "LOCALAI_NATS_NKEY_SEED=SUACSSL3",
                    "LOCALAI_NATS_TOKEN=n4ts-s3cr3t",
                ],
            ),
        ),
        row(
            "NA-06-jwt-and-seed",
            env(
                "worker",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_JWT=eyJhbGciOiJlZDI1NTE5In0.e30.c2ln",
                    "LOCALAI_NATS_USER_SEED=SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY",
                ],
            ),
        ),
        row(
            "NA-06-creds-file",
            env(
                "worker",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_CREDS_FILE=/etc/nats/user.creds",
                    "file LOCALAI_NATS_CREDS_FILE=-----BEGIN NATS USER JWT-----\\neyJ0\\n------END NATS USER JWT------\\n",
                ],
            ),
        ),
        row(
            "NA-08-frontend-service-minting",
            env(
                "frontend",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_SERVICE_JWT=eyJzZXJ2aWNl.e30.c2ln",
                    "LOCALAI_NATS_SERVICE_SEED=SUAFRONTENDSERVICESEED",
                    "LOCALAI_NATS_ACCOUNT_SEED=SAACCOUNTSEED",
                    "LOCALAI_NATS_WORKER_JWT_TTL=1h",
                ],
            ),
        ),
        row(
            "NA-10-frontend-without-account-seed",
            env(
                "frontend",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_NATS_SERVICE_JWT=eyJzZXJ2aWNl.e30.c2ln",
                    "LOCALAI_NATS_SERVICE_SEED=SUAFRONTENDSERVICESEED",
                ],
            ),
        ),
        row(
            "NA-13-tls",
            env(
                "worker",
                &[
                    token,
                    "LOCALAI_NATS_URL=tls://nats:4222",
                    "LOCALAI_NATS_TLS_CA=/etc/nats/ca.pem",
                    "file LOCALAI_NATS_TLS_CA=CA",
                    "LOCALAI_NATS_TLS_CERT=/etc/nats/cert.pem",
                    "file LOCALAI_NATS_TLS_CERT=CERT",
                    "LOCALAI_NATS_TLS_KEY=/etc/nats/key.pem",
                    "file LOCALAI_NATS_TLS_KEY=-----BEGIN PRIVATE KEY-----\\nMC4CAQ\\n",
                    "LOCALAI_NATS_TOKEN=n4ts-s3cr3t",
                ],
            ),
        ),
        row(
            "NA-17-url-credentials",
            env(
                "worker",
                &[
                    token,
                    "LOCALAI_NATS_URL=nats://worker:n4ts-passw0rd@nats:4222",
                    "LOCALAI_REGISTER_TO=http://admin:fr0nt-passw0rd@frontend:8080",
                ],
            ),
        ),
        row(
            "NA-18-every-secret",
            env(
                "agent-worker",
                &[
                    token,
                    nats,
                    "LOCALAI_DISTRIBUTED_REQUIRE_AUTH=true",
                    "LOCALAI_NATS_SERVICE_JWT=eyJzZXJ2aWNl.e30.c2ln",
                    "LOCALAI_NATS_SERVICE_SEED=SUAAGENTSERVICESEED",
                    "LOCALAI_API_URL=http://user:ap1-passw0rd@frontend:8080",
                    "LOCALAI_API_TOKEN=ap1-t0ken",
                ],
            ),
        ),
        row(
            "NA-19-worker-minted",
            env(
                "worker",
                &[
                    token,
                    nats,
                    require_nats,
                    "LOCALAI_REGISTER_TO=http://frontend:8080",
                ],
            ),
        ),
        row(
            "NA-20-worker-minted-umbrella",
            env(
                "worker",
                &[
                    token,
                    nats,
                    "LOCALAI_DISTRIBUTED_REQUIRE_AUTH=on",
                    "LOCALAI_REGISTER_TO=http://frontend:8080",
                    "host=gpu-node-3",
                ],
            ),
        ),
        // Found by the twin check: without a scheme (NATS clients read `user:password@host:4222`
        // as `nats://…`), `redact_userinfo` leaves the URL as it is, so the `Debug` of the
        // configuration prints the NATS password.
        row(
            "regression-NA-17-schemeless-url-password",
            env(
                "worker",
                &["LOCALAI_NATS_URL=worker:n4ts-passw0rd@nats:4222"],
            ),
        ),
        row(
            "rotation",
            env(
                "frontend",
                &[token, "LOCALAI_REGISTRATION_TOKEN_PREVIOUS=0ld-T0ken"],
            ),
        ),
        row(
            "rotation-without-current",
            env("worker", &["LOCALAI_REGISTRATION_TOKEN_PREVIOUS=0ld-T0ken"]),
        ),
        row(
            "worker-everything",
            env(
                "worker",
                &[
                    token,
                    "LOCALAI_REGISTRATION_REQUIRE_AUTH=true",
                    "LOCALAI_ADDR=10.0.0.5:50051",
                    "LOCALAI_HTTP_ADDR=0.0.0.0:50050",
                    "LOCALAI_GRPC_MAX_PORT=50100",
                    "LOCALAI_MODELS_PATH=/srv/models",
                    "LOCALAI_MAX_UPLOAD_SIZE=10GiB",
                    "LOCALAI_NODE_LABELS=gpu=a100, zone=eu",
                    "LOCALAI_HEARTBEAT_INTERVAL=1m30s",
                    "NODEGATE_HEADER_TIMEOUT=10s",
                    "NODEGATE_MAX_CONNECTIONS=64",
                    "nohost",
                ],
            ),
        ),
        row(
            "bad-values",
            env(
                "worker",
                &[
                    "LOCALAI_REGISTRATION_REQUIRE_AUTH=maybe",
                    "LOCALAI_HEARTBEAT_INTERVAL=-5s",
                    "LOCALAI_GRPC_MAX_PORT=70000",
                ],
            ),
        ),
    ]
}
