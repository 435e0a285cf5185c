//! Hardening of uploads (issue 12): the identity of a partial (D18), HEAD agreeing with GET
//! (D19), a full disk that heals itself, and temp files that never pile up. Real sockets and
//! real files over loopback; every request bounded by the harness's client timeout.

mod common;

use common::{TestServer, sha256_hex};

const KEY: &str = "/v1/files/models/m/w.bin";

/// D18: without `X-Content-SHA256`, `bytes 0-4/10` (308) then `bytes 5-11/12` used to answer 200
/// and publish `AAAAABBBBBBB`, a mix of two files. The declared total belongs to the partial:
/// the second chunk is a conflict and nothing is published.
#[test]
fn d18_a_changed_total_mid_resume_is_409_and_publishes_nothing() {
    let server = TestServer::start();
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
#[test]
fn d18_the_same_total_resumes_and_leaves_no_sidecar() {
    let server = TestServer::start();
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
