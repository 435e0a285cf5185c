//! Hardening of uploads (issue 12): the identity of a partial (D18), HEAD agreeing with GET
//! (D19), a full disk that heals itself, and temp files that never pile up. Real sockets and
//! real files over loopback; every request bounded by the harness's client timeout.

mod common;

use common::{Runtime, TestServer, sha256_hex};

const KEY: &str = "/v1/files/models/m/w.bin";

/// D18: without `X-Content-SHA256`, `bytes 0-4/10` (308) then `bytes 5-11/12` used to answer 200
/// and publish `AAAAABBBBBBB`, a mix of two files. The declared total belongs to the partial:
/// the second chunk is a conflict and nothing is published.
fn d18_a_changed_total_mid_resume_is_409_and_publishes_nothing(rt: Runtime) {
    let server = TestServer::start(rt);
    let first = server.request(
        "PUT",
        KEY,
        true,
        &[("Content-Range", "bytes 0-4/10")],
        b"AAAAA",
    );
    assert_eq!(first.status, 308, "{}", first.text());
    let second = server.request(
        "PUT",
        KEY,
        true,
        &[("Content-Range", "bytes 5-11/12")],
        b"BBBBBBB",
    );
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.text().contains("total"), "{}", second.text());
    assert!(
        !server.roots.models.join("m/w.bin").exists(),
        "a mix of two files was published"
    );
    // The client restarts from 0 and the upload of the 12-byte file succeeds.
    let body = b"BBBBBBBBBBBB";
    let restart = server.request(
        "PUT",
        KEY,
        true,
        &[
            ("Content-Range", "bytes 0-11/12"),
            ("X-Content-SHA256", &sha256_hex(body)),
        ],
        body,
    );
    assert_eq!(restart.status, 200, "{}", restart.text());
    assert_eq!(
        std::fs::read(server.roots.models.join("m/w.bin")).expect("published"),
        body
    );
    let left: Vec<String> = server
        .root_files()
        .into_iter()
        .filter(|f| f.contains("partial"))
        .collect();
    assert!(left.is_empty(), "in-progress files left: {left:?}");
}

/// D18: the same total resumes as before, and the total sidecar goes with the partial.
fn d18_the_same_total_resumes_and_leaves_no_sidecar(rt: Runtime) {
    let server = TestServer::start(rt);
    let first = server.request(
        "PUT",
        KEY,
        true,
        &[("Content-Range", "bytes 0-4/10")],
        b"AAAAA",
    );
    assert_eq!(first.status, 308);
    let second = server.request(
        "PUT",
        KEY,
        true,
        &[("Content-Range", "bytes 5-9/10")],
        b"BBBBB",
    );
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        std::fs::read(server.roots.models.join("m/w.bin")).expect("published"),
        b"AAAAABBBBB"
    );
    assert_eq!(
        server.root_files(),
        ["models/m/w.bin", "models/m/w.bin.sha256"],
        "only the file and its sidecar remain"
    );
}

/// D19: while a new upload is in progress over a complete copy, HEAD's `Content-Length` and
/// `X-Content-SHA256` describe what GET serves; `X-File-Size` and `X-Target-SHA256` the partial.
/// (HEAD used to answer the partial's size as `Content-Length` while GET served the old file.)
fn d19_head_agrees_with_get_while_a_new_upload_is_in_progress(rt: Runtime) {
    let server = TestServer::start(rt);
    let old = b"the complete old copy";
    assert_eq!(server.put(KEY, old).status, 200);
    let new = b"0123456789abcdefghij";
    let chunk = server.request(
        "PUT",
        KEY,
        true,
        &[
            ("Content-Range", "bytes 0-4/20"),
            ("X-Content-SHA256", &sha256_hex(new)),
        ],
        &new[..5],
    );
    assert_eq!(chunk.status, 308, "{}", chunk.text());

    let head = server.head(KEY);
    let get = server.get(KEY);
    assert_eq!((head.status, get.status), (200, 200));
    assert_eq!(get.body, old, "GET serves the complete copy");
    assert_eq!(
        head.header("content-length"),
        get.header("content-length"),
        "HEAD's Content-Length is what GET serves"
    );
    assert_eq!(
        head.header("x-content-sha256"),
        Some(sha256_hex(old).as_str())
    );
    assert_eq!(head.header("x-file-size"), Some("5"), "the partial's size");
    assert_eq!(
        head.header("x-target-sha256"),
        Some(sha256_hex(new).as_str())
    );

    // The resume that LocalAI's client derives from X-File-Size completes the new file.
    let rest = server.request(
        "PUT",
        KEY,
        true,
        &[
            ("Content-Range", "bytes 5-19/20"),
            ("X-Content-SHA256", &sha256_hex(new)),
        ],
        &new[5..],
    );
    assert_eq!(rest.status, 200, "{}", rest.text());
    let head = server.head(KEY);
    assert_eq!(head.header("content-length"), Some("20"));
    assert_eq!(head.header("x-file-size"), Some("20"));
    assert_eq!(head.header("x-target-sha256"), None);
    assert_eq!(server.get(KEY).body, new);
}

/// D19, the documented exception: a partial without a complete copy is found by HEAD (200, for
/// resume discovery) while GET answers 404, since nothing complete can be served.
fn d19_a_partial_alone_is_200_to_head_and_404_to_get(rt: Runtime) {
    let server = TestServer::start(rt);
    let new = b"0123456789";
    let chunk = server.request(
        "PUT",
        KEY,
        true,
        &[
            ("Content-Range", "bytes 0-3/10"),
            ("X-Content-SHA256", &sha256_hex(new)),
        ],
        &new[..4],
    );
    assert_eq!(chunk.status, 308);
    let head = server.head(KEY);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-file-size"), Some("4"));
    assert_eq!(head.header("x-content-sha256"), None);
    assert_eq!(server.get(KEY).status, 404);
}

common::per_runtime_tests!(
    d18_a_changed_total_mid_resume_is_409_and_publishes_nothing,
    d18_the_same_total_resumes_and_leaves_no_sidecar,
    d19_head_agrees_with_get_while_a_new_upload_is_in_progress,
    d19_a_partial_alone_is_200_to_head_and_404_to_get,
);
