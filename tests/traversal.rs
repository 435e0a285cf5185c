//! Path traversal catalogue (security.md §1.2 advisories, §1.4 key policy, §1.7 harness traps)
//! and symlink containment (localai-wire.md §A D8/D14, §2.5).
//!
//! Every malicious key is sent as raw request-target bytes (never through a URL parser that
//! would normalise it) with a valid token against `GET`, `HEAD`, `PUT` and
//! `GET /v1/files-list/`. Each answer must be a 4xx (never 2xx, never 5xx), carry no outside
//! bytes and no absolute path, and the whole temp tree (roots and outside) must be unchanged
//! afterwards. Without a token the same keys get 401 (AH-25). Legitimate LocalAI keys
//! (localai-wire.md §3.4) are the control group.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{RawResponse, Runtime, TOKEN, TestServer, sha256_hex};

/// One malicious key.
struct Case {
    /// What it attacks (advisory or policy rule).
    name: &'static str,
    /// The request-target bytes after the route prefix, sent verbatim.
    raw: Vec<u8>,
    /// The request target is not valid HTTP (raw space, control or non-ASCII byte): hyper
    /// refuses the request line with 400 before any route or auth check can run.
    unparsable: bool,
}

fn enc(name: &'static str, raw: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        raw: raw.into(),
        unparsable: false,
    }
}

fn bad_http(name: &'static str, raw: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        raw: raw.into(),
        unparsable: true,
    }
}

/// The catalogue: at least 60 keys built from security.md §1.2 and the §1.4 policy.
fn catalogue() -> Vec<Case> {
    let long_segment = "a".repeat(300);
    let long_file = format!("models/{}", "b".repeat(256));
    let forty_segments = vec!["d"; 40].join("/");
    let too_long_key = vec!["e".repeat(250); 5].join("/");
    vec![
        // §1.4 dot segments, plain and encoded (Rails CVE-2014-7818, Apache CVE-2021-41773).
        enc("plain dot-dot", "../outside/secret.txt"),
        enc("dot-dot twice", "../../outside/secret.txt"),
        enc("dot-dot alone", ".."),
        enc("dot alone", "."),
        enc("models then dot-dot", "models/../../outside/secret.txt"),
        enc("models dot", "models/."),
        enc("models dot-dot", "models/.."),
        enc("inner dot segment", "a/./b"),
        enc("deep dot-dot", "models/a/b/../../../outside/secret.txt"),
        enc("encoded slash", "..%2f..%2foutside%2fsecret.txt"),
        enc("encoded slash upper", "..%2F..%2Foutside%2Fsecret.txt"),
        enc("data encoded slash", "data/..%2f..%2foutside%2fsecret.txt"),
        enc(
            "models encoded slash",
            "models%2f..%2f..%2foutside%2fsecret.txt",
        ),
        enc("encoded dots", "%2e%2e/%2e%2e/outside/secret.txt"),
        enc("encoded dots upper", "%2E%2E/%2E%2E/outside/secret.txt"),
        enc(
            "half-encoded dot (CVE-2021-41773)",
            ".%2e/.%2e/outside/secret.txt",
        ),
        enc(
            "half-encoded dot, other half",
            "%2e./%2e./outside/secret.txt",
        ),
        enc(
            "models encoded dots",
            "models/%2e%2e/%2e%2e/outside/secret.txt",
        ),
        enc("fully encoded", "%2e%2e%2f%2e%2e%2foutside%2fsecret.txt"),
        // Double encoding (CVE-2021-42013, CVE-2001-0333, dir2opds#17).
        enc(
            "double-encoded dots",
            "%252e%252e/%252e%252e/outside/secret.txt",
        ),
        enc(
            "double-encoded everything",
            "%252e%252e%252f%252e%252e%252foutside%252fsecret.txt",
        ),
        enc(
            "half double-encoded dot",
            ".%252e/.%252e/outside/secret.txt",
        ),
        enc(
            "nested percent (CVE-2021-42013)",
            "%%32%65%%32%65/outside/secret.txt",
        ),
        enc("double-encoded backslash", "..%255c..%255coutside"),
        // Overlong UTF-8 (CVE-2000-0884, CVE-2002-1744, CVE-2009-1535).
        enc(
            "overlong dots",
            "%c0%ae%c0%ae/%c0%ae%c0%ae/outside/secret.txt",
        ),
        enc("overlong slash", "..%c0%af..%c0%afoutside%c0%afsecret.txt"),
        enc("overlong 3-byte dot", "%e0%80%ae%e0%80%ae/outside"),
        enc("overlong 4-byte dot", "%f0%80%80%ae%f0%80%80%ae/outside"),
        enc("invalid UTF-8", "%ff%fe.bin"),
        enc("lone continuation byte", "x%80.bin"),
        enc("UTF-16 surrogate", "x%ed%a0%80.bin"),
        // Backslash separators (vert.x CVE-2018-12542, Cowboy, hono).
        enc("encoded backslash", "..%5c..%5coutside%5csecret.txt"),
        enc(
            "leading encoded backslash",
            "%5c..%5c..%5coutside%5csecret.txt",
        ),
        enc("encoded dots and backslashes", "%2e%2e%5c%2e%2e%5coutside"),
        enc("raw backslash", "..\\..\\outside\\secret.txt"),
        // Absolute paths (PathBuf::join replaces the base).
        enc("absolute via double slash", "/etc/passwd"),
        enc("absolute outside", "//tmp/outside/secret.txt"),
        enc("encoded absolute", "%2fetc%2fpasswd"),
        enc("empty segment", "a//b"),
        enc("trailing slash", "a/b/"),
        enc("empty key", ""),
        // NUL and control characters (nginx CVE-2013-4547, dufs#691, Webmin CVE-2006-3392).
        enc("NUL", "x%00.bin"),
        enc("NUL then dot-dot", "x%00/../../outside/secret.txt"),
        enc("dot-dot NUL", "..%00/outside/secret.txt"),
        enc("space NUL (CVE-2013-4547)", "x.png%20%00.php"),
        enc("dot-dot SOH (Webmin)", "..%01/outside/secret.txt"),
        enc("line feed", "x%0a.bin"),
        enc("CRLF header injection", "x%0d%0aSet-Cookie:%20a=b"),
        enc("escape sequence", "x%1b%5b31m.bin"),
        enc("tab", "x%09.bin"),
        enc("DEL", "x%7f.bin"),
        enc("C1 control NEL", "x%c2%85.bin"),
        enc("bidi override", "x%e2%80%aetxt.exe"),
        enc("line separator", "x%e2%80%a8.bin"),
        bad_http("raw NUL", b"x\0.bin".to_vec()),
        bad_http("raw space", "x .bin"),
        bad_http("raw tab", "x\t.bin"),
        bad_http("raw DEL", b"x\x7f.bin".to_vec()),
        // Malformed escapes (§1.4 step 3).
        enc("lone percent", "%"),
        enc("truncated escape", "x%2"),
        enc("non-hex escape", "x%zz"),
        enc("half-hex escape", "x%g1"),
        enc("IIS %u escape", "%u002e%u002e/outside/secret.txt"),
        enc("percent at end", "models/x.bin%"),
        // Forbidden characters after one decode.
        enc("encoded percent", "x%25.bin"),
        enc("asterisk", "x%2a.bin"),
        enc("question mark", "x%3f.bin"),
        enc("double quote", "x%22.bin"),
        enc("less-than", "x%3c.bin"),
        enc("greater-than", "x%3e.bin"),
        enc("pipe", "x%7c.bin"),
        // Windows drive letters and streams (warp GHSA-8v4j-7jgf-5rg9, tower-http#204,
        // CVE-2022-41722, CVE-2023-45283, CVE-2011-4963).
        enc("drive letter", "C:/windows/win.ini"),
        enc("encoded drive letter", "c%3a/windows/win.ini"),
        enc("drive letter in segment", "models/c:/windows/win.ini"),
        enc("dot-dot then drive", "a/../c:/b"),
        enc("NTFS stream", "x.bin::$DATA"),
        enc("NTFS index allocation", "models::$index_allocation/x"),
        enc("device namespace", "%5c%5c%3f%5cC:%5cx"),
        // Windows device names (tower-http#663, GO-2023-2186, CVE-2025-27210).
        enc("CON", "CON"),
        enc("aux with extension", "models/aux.txt"),
        enc("NUL double extension", "NUL.tar.gz"),
        enc("com1 lower case", "com1"),
        enc("COM superscript one", "COM%c2%b9"),
        enc("LPT superscript two", "data/LPT%c2%b2.txt"),
        enc("CONIN$", "CONIN$"),
        enc("device name trailing space", "CON%20"),
        enc("device name then dot-dot", "CON/../../outside/secret.txt"),
        // Trailing dot or space (Windows drops them: aliasing).
        enc("trailing dot", "x.bin."),
        enc("trailing space", "x.bin%20"),
        enc("directory trailing dot", "models/dir./x.bin"),
        // Hidden and reserved names: our partial and temp files, dotfiles.
        enc("hidden partial", ".x.bin.partial"),
        enc("models hidden partial", "models/.x.bin.partial"),
        enc("hidden temp", ".x.bin.0123456789abcdef.tmp"),
        enc("dotfile directory", ".ssh/id_rsa"),
        enc("git config", "models/.git/config"),
        // Sidecar names: readable (404 while missing) but never writable by clients.
        enc("sidecar write", "x.sha256"),
        enc("models sidecar write", "models/x.bin.sha256"),
        enc("target sidecar write", "data/x.bin.sha256.target"),
        enc("dot-dot-dot-dot", "..../..../outside/secret.txt"),
        enc("Tomcat dot-dot-semicolon", "..;/..;/outside/secret.txt"),
        // Unicode look-alikes that NFKC folds into `.` `/` `\` (§1.4).
        enc(
            "fullwidth dots",
            "%ef%bc%8e%ef%bc%8e/%ef%bc%8e%ef%bc%8e/outside/secret.txt",
        ),
        enc("fullwidth slash", "..%ef%bc%8f..%ef%bc%8foutside"),
        enc("fullwidth backslash", "..%ef%bc%bc..%ef%bc%bcoutside"),
        enc("division slash", "..%e2%88%95..%e2%88%95outside"),
        enc("fraction slash", "..%e2%81%84outside"),
        // Length limits (§1.4: NAME_MAX, 32 segments, 1024 bytes; nginx CVE-2009-3896).
        enc("300-byte segment", long_segment),
        enc("256-byte file name", long_file),
        enc("40 segments", forty_segments),
        enc("key over 1024 bytes", too_long_key),
    ]
}

/// Sends `method route+key` with or without the token, `Connection: close`, and a body.
fn send(
    server: &TestServer,
    method: &str,
    route: &str,
    key: &[u8],
    auth: bool,
    body: &[u8],
) -> RawResponse {
    let mut bytes = format!("{method} {route}").into_bytes();
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            server.addr
        )
        .as_bytes(),
    );
    if auth {
        bytes.extend_from_slice(format!("Authorization: Bearer {TOKEN}\r\n").as_bytes());
    }
    if method == "PUT" {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    server.raw(&bytes)
}

/// Every entry of the whole temp dir (roots and outside), with contents or link targets.
fn tree_snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    walk_all(dir, &mut out);
    out
}

fn walk_all(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&path).expect("read_link");
            out.push((path, link.into_os_string().into_encoded_bytes()));
        } else if meta.is_dir() {
            out.push((path.clone(), b"<dir>".to_vec()));
            walk_all(&path, out);
        } else {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path, bytes));
        }
    }
}

/// The answer leaks nothing: no outside bytes, no absolute server path, no `X-Local-Path`.
fn assert_no_leak(server: &TestServer, response: &RawResponse, what: &str) {
    let tmp = server.tmp.path().display().to_string();
    let text = response.text();
    assert!(
        !text.contains("outside secret"),
        "{what}: body carries outside bytes: {text:?}"
    );
    assert!(
        !text.contains(&tmp),
        "{what}: body carries an absolute path: {text:?}"
    );
    for (name, value) in &response.headers {
        assert!(
            !value.contains(&tmp) && !value.contains("outside secret"),
            "{what}: header {name} leaks: {value:?}"
        );
    }
}

/// A refused answer: 4xx, never 2xx or 5xx, and leaks nothing.
fn assert_refused(server: &TestServer, response: &RawResponse, what: &str) {
    assert!(
        (400..500).contains(&response.status),
        "{what}: expected 4xx, got {} {:?}",
        response.status,
        response.text()
    );
    assert_no_leak(server, response, what);
}

#[test]
fn catalogue_has_at_least_sixty_distinct_keys() {
    let cases = catalogue();
    assert!(cases.len() >= 60, "only {} keys", cases.len());
    let mut raws: Vec<&[u8]> = cases.iter().map(|c| c.raw.as_slice()).collect();
    raws.sort_unstable();
    raws.dedup();
    assert_eq!(raws.len(), cases.len(), "duplicate keys in the catalogue");
}

/// PT-*: every malicious key, with a valid token, on GET, HEAD, PUT and files-list: 4xx
/// (lexical refusals are 400, reads of a valid but missing name 404), nothing outside the
/// roots read or written, nothing created inside the roots either.
fn pt_malicious_keys_are_refused_on_every_route_and_touch_nothing(rt: Runtime) {
    let server = TestServer::start(rt);
    let before = tree_snapshot(server.tmp.path());
    let outside_before = server.outside_snapshot();
    for case in catalogue() {
        for (method, route) in [
            ("GET", "/v1/files/"),
            ("HEAD", "/v1/files/"),
            ("PUT", "/v1/files/"),
            ("GET", "/v1/files-list/"),
        ] {
            let what = format!(
                "{method} {route}{} ({})",
                case.raw.escape_ascii(),
                case.name
            );
            let response = send(&server, method, route, &case.raw, true, b"pwned!");
            assert_refused(&server, &response, &what);
            if method == "PUT" || case.unparsable {
                assert_eq!(response.status, 400, "{what}: {:?}", response.text());
            } else {
                assert!(
                    response.status == 400 || response.status == 404,
                    "{what}: expected 400 or 404, got {}",
                    response.status
                );
            }
        }
    }
    assert_eq!(
        server.outside_snapshot(),
        outside_before,
        "outside tree changed"
    );
    assert_eq!(
        tree_snapshot(server.tmp.path()),
        before,
        "temp tree changed"
    );
    assert!(
        server.root_files().is_empty(),
        "files appeared in the roots"
    );
}

/// AH-25: without a token every malicious key is 401 `unauthorized`, before any key check;
/// request lines hyper cannot parse are 400 before routing. Nothing changes on disk.
fn ah_25_malicious_keys_without_token_are_401(rt: Runtime) {
    let server = TestServer::start(rt);
    let before = tree_snapshot(server.tmp.path());
    for case in catalogue() {
        for (method, route) in [
            ("GET", "/v1/files/"),
            ("HEAD", "/v1/files/"),
            ("PUT", "/v1/files/"),
            ("GET", "/v1/files-list/"),
        ] {
            let what = format!(
                "{method} {route}{} ({})",
                case.raw.escape_ascii(),
                case.name
            );
            let response = send(&server, method, route, &case.raw, false, b"pwned!");
            assert_no_leak(&server, &response, &what);
            if case.unparsable {
                assert_eq!(response.status, 400, "{what}");
                continue;
            }
            assert_eq!(response.status, 401, "{what}: {:?}", response.text());
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer"),
                "{what}"
            );
            if method != "HEAD" {
                assert_eq!(response.text(), "unauthorized\n", "{what}");
            }
        }
    }
    assert_eq!(
        tree_snapshot(server.tmp.path()),
        before,
        "temp tree changed"
    );
}

/// Keys the LocalAI frontend really generates (localai-wire.md §3.4), plus URL-safe and
/// non-ASCII names real models use: the control group of the catalogue.
fn legit_keys() -> Vec<(&'static str, &'static str)> {
    // (raw wire key, path relative to `<tmp>/root`)
    vec![
        (
            "models/llama-3.2-1b-instruct/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
            "models/llama-3.2-1b-instruct/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        ),
        (
            "models/whisper-base/ggml-base.en.bin",
            "models/whisper-base/ggml-base.en.bin",
        ),
        (
            "models/sd-1.5/unet/diffusion_pytorch_model.safetensors",
            "models/sd-1.5/unet/diffusion_pytorch_model.safetensors",
        ),
        (
            "models/voice-en-us-amy/en_US-amy-medium.onnx",
            "models/voice-en-us-amy/en_US-amy-medium.onnx",
        ),
        (
            "models/voice-en-us-amy/en_US-amy-medium.onnx.json",
            "models/voice-en-us-amy/en_US-amy-medium.onnx.json",
        ),
        (
            "ephemeral/inputs/1a2b3c4d/photo.png",
            "staging/ephemeral/inputs/1a2b3c4d/photo.png",
        ),
        (
            "localai-output-1234567890.tmp",
            "staging/localai-output-1234567890.tmp",
        ),
        ("models", "staging/models"),
        (
            "data/quantized/model-q4_k_m.gguf",
            "data/quantized/model-q4_k_m.gguf",
        ),
        (
            "models/name+plus=eq@at,comma-dash_under~tilde.bin",
            "models/name+plus=eq@at,comma-dash_under~tilde.bin",
        ),
        (
            "models/%e6%a8%a1%e5%9e%8b/%d1%84%d0%b0%d0%b9%d0%bb.bin",
            "models/模型/файл.bin",
        ),
        ("models/a..b/x...y.bin", "models/a..b/x...y.bin"),
        ("models/CONTACT/con1.txt", "models/CONTACT/con1.txt"),
    ]
}

/// Control group: legitimate keys upload (200, `local_path` inside the right root), download
/// byte for byte, report their hash on HEAD and show up in listings; without a token they are
/// 401 like the malicious ones.
fn legit_localai_keys_pass(rt: Runtime) {
    let server = TestServer::start(rt);
    let outside = server.outside_snapshot();
    let base = server.tmp.path().join("root");
    for (raw, rel) in legit_keys() {
        let body = format!("content of {rel}").into_bytes();
        let put = send(&server, "PUT", "/v1/files/", raw.as_bytes(), true, &body);
        assert_eq!(put.status, 200, "PUT {raw}: {:?}", put.text());
        let expected_path = base.join(rel).display().to_string();
        assert_eq!(
            put.json()["local_path"],
            expected_path.as_str(),
            "PUT {raw}"
        );
        assert_eq!(
            std::fs::read(base.join(rel)).expect("written"),
            body,
            "{raw}"
        );

        let get = send(&server, "GET", "/v1/files/", raw.as_bytes(), true, b"");
        assert_eq!(get.status, 200, "GET {raw}");
        assert_eq!(get.body, body, "GET {raw}");
        let head = send(&server, "HEAD", "/v1/files/", raw.as_bytes(), true, b"");
        assert_eq!(head.status, 200, "HEAD {raw}");
        assert_eq!(
            head.header("x-content-sha256"),
            Some(sha256_hex(&body).as_str())
        );
        assert_eq!(head.header("x-local-path"), Some(expected_path.as_str()));

        for method in ["GET", "HEAD", "PUT"] {
            let anonymous = send(&server, method, "/v1/files/", raw.as_bytes(), false, &body);
            assert_eq!(anonymous.status, 401, "{method} {raw} without token");
        }
    }
    let listed = send(
        &server,
        "GET",
        "/v1/files-list/",
        b"models/voice-en-us-amy",
        true,
        b"",
    );
    assert_eq!(listed.status, 200);
    let files = listed.json()["files"].clone();
    for name in ["en_US-amy-medium.onnx", "en_US-amy-medium.onnx.json"] {
        assert!(
            files.as_array().expect("files").iter().any(|f| f == name),
            "{name} not listed in {files}"
        );
    }
    assert_eq!(server.outside_snapshot(), outside, "outside tree changed");
}

// ---------------------------------------------------------------------------------------------
// Symlinks (D8, D14; localai-wire.md §2.5, §A).

/// A protected server whose roots hold symlinks pointing outside, and some that stay inside.
struct Linked {
    server: TestServer,
    outside: PathBuf,
    real: Vec<u8>,
    fake_hash: String,
}

impl Linked {
    fn new(rt: Runtime) -> Self {
        let server = TestServer::start(rt);
        let outside = server.tmp.path().join("outside");
        let models = server.roots.models.clone();
        let data = server.roots.data.clone();
        let staging = server.roots.staging.clone();
        // A hash that is well formed but describes nothing of ours.
        let fake_hash = sha256_hex(b"outside secret");
        std::fs::write(outside.join("fake.sha256"), &fake_hash).expect("fake sidecar");
        std::fs::write(outside.join("fake.target"), &fake_hash).expect("fake target");
        std::fs::create_dir_all(outside.join("dir")).expect("outside dir");
        std::fs::write(outside.join("dir/inner.txt"), b"outside secret").expect("inner");

        let secret = outside.join("secret.txt");
        // A file inside the root and links to it that stay inside.
        let real = b"real model bytes".to_vec();
        std::fs::create_dir_all(models.join("sub")).expect("sub");
        std::fs::write(models.join("real.bin"), &real).expect("real");
        std::fs::write(models.join("sub/f.bin"), &real).expect("sub file");
        symlink("real.bin", models.join("alias.bin")).expect("link");
        symlink("sub", models.join("aliasdir")).expect("link");
        // Links that leave the root.
        symlink(&secret, models.join("leak.txt")).expect("link");
        symlink("../../outside/secret.txt", models.join("leak-rel.txt")).expect("link");
        symlink(&outside, models.join("outdir")).expect("link");
        symlink(outside.join("new.bin"), models.join("dangling.bin")).expect("link");
        symlink(outside.join("newdir"), models.join("danglingdir")).expect("link");
        symlink(&secret, staging.join("leak.txt")).expect("link");
        symlink("../models", data.join("tomodels")).expect("link");
        // Sidecars that lead outside.
        std::fs::write(models.join("x.bin"), &real).expect("x.bin");
        symlink(outside.join("fake.sha256"), models.join("x.bin.sha256")).expect("link");
        std::fs::write(models.join("y.bin"), &real[..4]).expect("y.bin");
        symlink(
            outside.join("fake.target"),
            models.join("y.bin.sha256.target"),
        )
        .expect("link");
        symlink(
            outside.join("new.target"),
            models.join("z.bin.sha256.target"),
        )
        .expect("link");
        Self {
            server,
            outside,
            real,
            fake_hash,
        }
    }

    fn get(&self, key: &str) -> RawResponse {
        send(&self.server, "GET", "/v1/files/", key.as_bytes(), true, b"")
    }

    fn head(&self, key: &str) -> RawResponse {
        send(
            &self.server,
            "HEAD",
            "/v1/files/",
            key.as_bytes(),
            true,
            b"",
        )
    }

    fn put(&self, key: &str, extra: &[(&str, &str)], body: &[u8]) -> RawResponse {
        self.server
            .request("PUT", &format!("/v1/files/{key}"), true, extra, body)
    }

    fn list(&self, key: &str) -> RawResponse {
        send(
            &self.server,
            "GET",
            "/v1/files-list/",
            key.as_bytes(),
            true,
            b"",
        )
    }
}

/// D8/D14: GET and HEAD through a link that leaves the root (file, relative file, directory,
/// dangling, cross-root) are 404 and never carry the outside bytes.
fn d8_reads_through_escaping_symlinks_are_404(rt: Runtime) {
    let linked = Linked::new(rt);
    let before = linked.server.outside_snapshot();
    for key in [
        "models/leak.txt",
        "models/leak-rel.txt",
        "models/outdir/secret.txt",
        "models/outdir/dir/inner.txt",
        "models/dangling.bin",
        "models/danglingdir/x.bin",
        "leak.txt",
        "data/tomodels/real.bin",
    ] {
        for response in [linked.get(key), linked.head(key)] {
            assert_refused(&linked.server, &response, key);
            assert_eq!(response.status, 404, "{key}: {:?}", response.text());
            assert!(response.header("x-local-path").is_none(), "{key}");
            assert!(response.header("x-content-sha256").is_none(), "{key}");
        }
    }
    for key in ["models/outdir", "models/outdir/dir", "data/tomodels"] {
        let response = linked.list(key);
        assert_refused(&linked.server, &response, key);
        assert_eq!(response.status, 404, "list {key}");
    }
    assert_eq!(linked.server.outside_snapshot(), before);
}

/// §2.10: listing a root shows links as entries without following them, so nothing from the
/// outside tree is ever named.
fn d8_listing_never_descends_into_escaping_symlinks(rt: Runtime) {
    let linked = Linked::new(rt);
    let response = linked.list("models/");
    assert_eq!(response.status, 200, "{:?}", response.text());
    let files: Vec<String> = response.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("string").to_owned())
        .collect();
    assert!(files.contains(&"real.bin".to_owned()), "{files:?}");
    for name in &files {
        assert!(
            !name.contains("secret.txt") || name == "leak.txt",
            "outside name listed: {name}"
        );
        assert!(!name.contains("inner.txt"), "outside name listed: {name}");
    }
    assert_no_leak(&linked.server, &response, "list models/");
}

/// D14: a full or range PUT through a link that leaves the root (to a file, into a linked
/// directory, onto a dangling link, across roots) is 4xx and the outside tree is unchanged.
fn d14_writes_through_escaping_symlinks_are_refused(rt: Runtime) {
    let linked = Linked::new(rt);
    let before = linked.server.outside_snapshot();
    let body = b"overwrite attempt";
    let hash = sha256_hex(body);
    let range = format!("bytes 0-{}/{}", body.len() - 1, body.len());
    for key in [
        "models/leak.txt",
        "models/leak-rel.txt",
        "models/outdir/secret.txt",
        "models/outdir/new.bin",
        "models/outdir/sub/new.bin",
        "models/dangling.bin",
        "models/danglingdir/new.bin",
        "leak.txt",
        "data/tomodels/new.bin",
    ] {
        let full = linked.put(key, &[], body);
        assert_refused(&linked.server, &full, &format!("full PUT {key}"));
        let resumable = linked.put(
            key,
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
            body,
        );
        assert_refused(&linked.server, &resumable, &format!("range PUT {key}"));
        assert_eq!(
            linked.server.outside_snapshot(),
            before,
            "outside changed by {key}"
        );
    }
    assert!(!linked.outside.join("new.bin").exists());
    assert!(!linked.outside.join("newdir").exists());
    assert!(!linked.server.roots.models.join("new.bin").exists());
    // The links themselves are still the links we made.
    let link = std::fs::read_link(linked.server.roots.models.join("dangling.bin"));
    assert_eq!(link.expect("still a link"), linked.outside.join("new.bin"));
}

/// D14: a `.sha256` sidecar linked outside is neither served, nor trusted by HEAD, nor
/// written through by a PUT of its file.
fn d14_sidecar_symlinked_outside_is_never_read_or_written_through(rt: Runtime) {
    let linked = Linked::new(rt);
    let before = linked.server.outside_snapshot();
    let get = linked.get("models/x.bin.sha256");
    assert_refused(&linked.server, &get, "GET sidecar link");
    assert_eq!(get.status, 404);
    assert!(!get.text().contains(&linked.fake_hash));

    let head = linked.head("models/x.bin");
    assert!(
        head.status == 200 || head.status == 404,
        "HEAD x.bin: {}",
        head.status
    );
    assert_no_leak(&linked.server, &head, "HEAD x.bin");
    if let Some(reported) = head.header("x-content-sha256") {
        assert_eq!(
            reported,
            sha256_hex(&linked.real),
            "HEAD trusted an outside sidecar"
        );
    }

    let put = linked.put("models/x.bin", &[], b"new content");
    assert_refused(&linked.server, &put, "PUT x.bin with an escaping sidecar");
    let sidecar_put = linked.put("models/x.bin.sha256", &[], b"0");
    assert_eq!(sidecar_put.status, 400, "sidecar keys are not writable");
    assert_eq!(linked.server.outside_snapshot(), before, "outside changed");
    assert_eq!(
        std::fs::read(linked.server.roots.models.join("x.bin")).expect("x.bin"),
        linked.real,
        "a refused PUT changed the file"
    );
}

/// D14: a `.sha256.target` linked outside is never echoed in `X-Target-SHA256`, never served,
/// and a range PUT neither reads nor writes through it.
fn d14_target_sidecar_symlinked_outside_is_never_echoed_or_written(rt: Runtime) {
    let linked = Linked::new(rt);
    let before = linked.server.outside_snapshot();
    let get = linked.get("models/y.bin.sha256.target");
    assert_refused(&linked.server, &get, "GET target link");
    assert_eq!(get.status, 404);

    let head = linked.head("models/y.bin");
    assert!(
        head.status == 200 || head.status == 404,
        "HEAD y.bin: {}",
        head.status
    );
    assert_no_leak(&linked.server, &head, "HEAD y.bin");
    assert_ne!(
        head.header("x-target-sha256"),
        Some(linked.fake_hash.as_str()),
        "HEAD echoed an outside target sidecar"
    );

    let body = b"abcdefgh";
    let hash = sha256_hex(body);
    for (key, range) in [
        ("models/y.bin", "bytes 4-7/8"),
        ("models/y.bin", "bytes 0-7/8"),
        ("models/z.bin", "bytes 0-7/8"),
    ] {
        let put = linked.put(
            key,
            &[("Content-Range", range), ("X-Content-SHA256", &hash)],
            body,
        );
        assert_refused(&linked.server, &put, &format!("range PUT {key} {range}"));
        assert_eq!(
            linked.server.outside_snapshot(),
            before,
            "outside changed by {key}"
        );
    }
    assert!(!linked.outside.join("new.target").exists());
}

/// Links that stay inside their root (relative targets) are followed for reads.
fn symlinks_inside_a_root_work(rt: Runtime) {
    let linked = Linked::new(rt);
    let real = linked.real.clone();
    for key in ["models/alias.bin", "models/aliasdir/f.bin"] {
        let get = linked.get(key);
        assert_eq!(get.status, 200, "GET {key}: {:?}", get.text());
        assert_eq!(get.body, real, "GET {key}");
        let head = linked.head(key);
        assert_eq!(head.status, 200, "HEAD {key}");
        assert_eq!(
            head.header("x-content-sha256"),
            Some(sha256_hex(&real).as_str())
        );
    }
    // §2.10: a listed key that is itself a link to a directory yields `["."]` (LocalAI walks
    // without following links).
    let listed = linked.list("models/aliasdir");
    assert_eq!(listed.status, 200, "{:?}", listed.text());
    assert_eq!(listed.json()["files"], serde_json::json!(["."]));
    // HEAD above cached the hash; sidecars are listed (§2.10).
    let listed = linked.list("models/sub");
    assert_eq!(
        listed.json()["files"],
        serde_json::json!(["f.bin", "f.bin.sha256"])
    );
}

/// AH-25 for the symlink keys too: without a token nothing is looked up.
fn ah_25_symlink_keys_without_token_are_401(rt: Runtime) {
    let linked = Linked::new(rt);
    for key in [
        "models/leak.txt",
        "models/outdir/secret.txt",
        "models/alias.bin",
    ] {
        for method in ["GET", "HEAD", "PUT"] {
            let response = send(
                &linked.server,
                method,
                "/v1/files/",
                key.as_bytes(),
                false,
                b"x",
            );
            assert_eq!(response.status, 401, "{method} {key}");
            assert_no_leak(&linked.server, &response, key);
        }
    }
}

common::per_runtime_tests!(
    pt_malicious_keys_are_refused_on_every_route_and_touch_nothing,
    ah_25_malicious_keys_without_token_are_401,
    legit_localai_keys_pass,
    d8_reads_through_escaping_symlinks_are_404,
    d8_listing_never_descends_into_escaping_symlinks,
    d14_writes_through_escaping_symlinks_are_refused,
    d14_sidecar_symlinked_outside_is_never_read_or_written_through,
    d14_target_sidecar_symlinked_outside_is_never_echoed_or_written,
    symlinks_inside_a_root_work,
    ah_25_symlink_keys_without_token_are_401,
);
