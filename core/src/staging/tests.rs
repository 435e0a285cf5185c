use std::time::Duration;

use http::HeaderMap;
use proptest::prelude::*;

use super::*;

const KEY: &str = "models/m.gguf";

fn file() -> Vec<u8> {
    (0..100u8).collect()
}

fn start(data: &[u8]) -> Upload {
    Upload::new(
        KEY,
        data.len() as u64,
        Sha256::of(data),
        Policy::default(),
        Duration::ZERO,
    )
    .expect("valid key")
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, value.parse().expect("header value"));
    }
    map
}

fn answer(status: u16, pairs: &[(&'static str, &str)], body: &str) -> Answer {
    Answer::response(status, headers(pairs), body.as_bytes().to_vec())
}

/// Drains until a request, a sleep or the end; notes are dropped.
fn next(upload: &mut Upload) -> Effect {
    loop {
        match upload.poll_output() {
            Effect::Note(_) => {}
            effect => return effect,
        }
    }
}

fn expect_put(upload: &mut Upload) -> Put {
    match next(upload) {
        Effect::Put(put) => put,
        other => panic!("expected a PUT, got {other:?}"),
    }
}

fn expect_head(upload: &mut Upload) {
    match next(upload) {
        Effect::Head { path } => assert_eq!(path, "/v1/files/models/m.gguf"),
        other => panic!("expected a HEAD, got {other:?}"),
    }
}

const OK_BODY: &str = r#"{"local_path":"/w/models/m.gguf"}"#;

#[test]
fn head_with_the_same_hash_skips_in_one_request() {
    let data = file();
    let mut upload = start(&data);
    expect_head(&mut upload);
    let hash = Sha256::of(&data).to_hex().to_uppercase(); // §8.14: case does not matter
    upload.handle_head(
        Duration::ZERO,
        answer(
            200,
            &[
                ("x-content-sha256", &hash),
                ("x-local-path", "/w/models/m.gguf"),
            ],
            "",
        ),
    );
    let Effect::Done(done) = next(&mut upload) else {
        panic!("expected done");
    };
    assert!(done.skipped);
    assert_eq!(done.local_path, "/w/models/m.gguf");
    // Terminal: polled again, the same answer.
    assert!(matches!(upload.poll_output(), Effect::Done(_)));
}

#[test]
fn head_without_a_local_path_uploads_anyway() {
    let data = file();
    let mut upload = start(&data);
    expect_head(&mut upload);
    let hash = Sha256::of(&data).to_hex();
    upload.handle_head(
        Duration::ZERO,
        answer(200, &[("x-content-sha256", &hash)], ""),
    );
    assert_eq!(expect_put(&mut upload).offset, 0);
}

#[test]
fn head_of_a_missing_key_sends_everything_with_a_content_range() {
    let data = file();
    let mut upload = start(&data);
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(404, &[], "not found"));
    let put = expect_put(&mut upload);
    assert_eq!((put.offset, put.len), (0, 100));
    assert_eq!(put.content_range.as_deref(), Some("bytes 0-99/100"));
    assert_eq!(put.sha256, Sha256::of(&data).to_hex());
    let h = put.headers();
    assert_eq!(h["content-range"], "bytes 0-99/100");
    assert_eq!(h["content-length"], "100");
    assert_eq!(h["x-content-sha256"], Sha256::of(&data).to_hex().as_str());
    upload.handle_put(Duration::ZERO, answer(200, &[], OK_BODY));
    let Effect::Done(done) = next(&mut upload) else {
        panic!("expected done");
    };
    assert_eq!(done.local_path, "/w/models/m.gguf");
    assert!(!done.skipped);
}

#[test]
fn head_with_the_same_target_resumes_from_the_file_size() {
    let data = file();
    let mut upload = start(&data);
    expect_head(&mut upload);
    let hash = Sha256::of(&data).to_hex();
    upload.handle_head(
        Duration::ZERO,
        answer(
            200,
            &[("x-file-size", "40"), ("x-target-sha256", &hash)],
            "",
        ),
    );
    let put = expect_put(&mut upload);
    assert_eq!((put.offset, put.len), (40, 60));
    assert_eq!(put.content_range.as_deref(), Some("bytes 40-99/100"));
    upload.handle_put(Duration::ZERO, answer(200, &[], OK_BODY));
    let Effect::Done(done) = next(&mut upload) else {
        panic!("expected done");
    };
    assert_eq!(done.resumed_from, 40);
}

#[test]
fn head_with_another_target_or_an_impossible_size_restarts_from_zero() {
    let data = file();
    let hash = Sha256::of(&data).to_hex();
    let other = Sha256::of(b"other").to_hex();
    for pairs in [
        vec![("x-file-size", "40"), ("x-target-sha256", other.as_str())],
        vec![("x-file-size", "40")],
        vec![("x-file-size", "0"), ("x-target-sha256", hash.as_str())],
        vec![("x-file-size", "100"), ("x-target-sha256", hash.as_str())],
        vec![("x-file-size", "1000"), ("x-target-sha256", hash.as_str())],
        vec![("x-file-size", "x"), ("x-target-sha256", hash.as_str())],
    ] {
        let mut upload = start(&data);
        expect_head(&mut upload);
        upload.handle_head(Duration::ZERO, answer(200, &pairs, ""));
        assert_eq!(expect_put(&mut upload).offset, 0, "{pairs:?}");
    }
}

#[test]
fn an_empty_file_is_a_plain_put() {
    let mut upload = start(b"");
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(404, &[], ""));
    let put = expect_put(&mut upload);
    assert_eq!(
        (put.offset, put.len, put.content_range.clone()),
        (0, 0, None)
    );
    assert!(!put.headers().contains_key("content-range"));
}

#[test]
fn unauthorized_stops_at_once_on_head_and_put() {
    for status in [401, 403] {
        let mut upload = start(&file());
        expect_head(&mut upload);
        upload.handle_head(Duration::ZERO, answer(status, &[], "unauthorized"));
        let Effect::Failed(error) = next(&mut upload) else {
            panic!("expected failure");
        };
        assert_eq!(error, TransferError::Unauthorized { status });
        assert!(error.to_string().contains("LOCALAI_REGISTRATION_TOKEN"));

        let mut upload = start(&file());
        expect_head(&mut upload);
        upload.handle_head(Duration::ZERO, answer(404, &[], ""));
        expect_put(&mut upload);
        upload.handle_put(Duration::ZERO, answer(status, &[], "unauthorized"));
        assert!(matches!(
            next(&mut upload),
            Effect::Failed(TransferError::Unauthorized { .. })
        ));
    }
}

#[test]
fn too_large_bad_request_and_no_room_stop() {
    for (status, check) in [
        (413, "upload limit"),
        (400, "sha256 mismatch"),
        (507, "free space"),
        (404, "404"),
    ] {
        let mut upload = start(&file());
        expect_head(&mut upload);
        upload.handle_head(Duration::ZERO, answer(404, &[], ""));
        expect_put(&mut upload);
        upload.handle_put(Duration::ZERO, answer(status, &[], "sha256 mismatch: x"));
        let Effect::Failed(error) = next(&mut upload) else {
            panic!("expected failure for {status}");
        };
        assert!(error.to_string().contains(check), "{status}: {error}");
    }
}

#[test]
fn head_400_stops_and_head_405_uploads() {
    let mut upload = start(&file());
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(400, &[], "invalid key"));
    assert!(matches!(
        next(&mut upload),
        Effect::Failed(TransferError::BadRequest { .. })
    ));
    let mut upload = start(&file());
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(405, &[], ""));
    assert_eq!(expect_put(&mut upload).offset, 0);
}

#[test]
fn resume_answers_ask_the_worker_again() {
    for status in [308, 416] {
        let data = file();
        let mut upload = start(&data);
        expect_head(&mut upload);
        upload.handle_head(Duration::ZERO, answer(404, &[], ""));
        expect_put(&mut upload);
        upload.handle_put(Duration::ZERO, answer(status, &[("x-file-size", "30")], ""));
        expect_head(&mut upload);
        let hash = Sha256::of(&data).to_hex();
        upload.handle_head(
            Duration::ZERO,
            answer(
                200,
                &[("x-file-size", "30"), ("x-target-sha256", &hash)],
                "",
            ),
        );
        assert_eq!(expect_put(&mut upload).offset, 30);
    }
}

#[test]
fn a_308_with_location_is_a_refused_redirect() {
    let mut upload = start(&file());
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(404, &[], ""));
    expect_put(&mut upload);
    upload.handle_put(
        Duration::ZERO,
        answer(308, &[("location", "http://elsewhere/")], ""),
    );
    assert!(matches!(
        next(&mut upload),
        Effect::Failed(TransferError::Refused { status: 308, .. })
    ));
}

/// D9 / §8.11: the worker holds the complete file, the probe missed the hash once; the 416 to
/// `bytes 0-…` leads to a fresh HEAD that finds it.
#[test]
fn a_416_over_a_complete_file_ends_with_the_next_head() {
    let data = file();
    let hash = Sha256::of(&data).to_hex();
    let mut upload = start(&data);
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(200, &[("x-file-size", "100")], ""));
    assert_eq!(expect_put(&mut upload).offset, 0);
    upload.handle_put(
        Duration::ZERO,
        answer(
            416,
            &[("x-file-size", "100"), ("content-range", "bytes */100")],
            "",
        ),
    );
    expect_head(&mut upload);
    upload.handle_head(
        Duration::ZERO,
        answer(
            200,
            &[
                ("x-file-size", "100"),
                ("x-content-sha256", &hash),
                ("x-local-path", "/w/models/m.gguf"),
            ],
            "",
        ),
    );
    assert!(matches!(
        next(&mut upload),
        Effect::Done(Uploaded { skipped: true, .. })
    ));
}

#[test]
fn endless_416_is_bounded() {
    let mut upload = start(&file());
    let mut requests = 0;
    loop {
        requests += 1;
        assert!(requests < 100, "livelock");
        match next(&mut upload) {
            Effect::Head { .. } => {
                upload.handle_head(Duration::ZERO, answer(200, &[("x-file-size", "100")], ""));
            }
            Effect::Put(_) => upload.handle_put(Duration::ZERO, answer(416, &[], "")),
            Effect::Failed(error) => {
                assert!(matches!(error, TransferError::NoProgress { count: 17, .. }));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_conflict_restarts_from_zero_once() {
    let data = file();
    let hash = Sha256::of(&data).to_hex();
    let mut upload = start(&data);
    expect_head(&mut upload);
    upload.handle_head(
        Duration::ZERO,
        answer(
            200,
            &[("x-file-size", "50"), ("x-target-sha256", &hash)],
            "",
        ),
    );
    assert_eq!(expect_put(&mut upload).offset, 50);
    upload.handle_put(
        Duration::ZERO,
        answer(409, &[], "mismatch; restart from byte 0"),
    );
    assert_eq!(expect_put(&mut upload).offset, 0);
    upload.handle_put(Duration::ZERO, answer(409, &[], "again"));
    assert!(matches!(
        next(&mut upload),
        Effect::Failed(TransferError::Conflict { .. })
    ));
}

#[test]
fn transient_failures_back_off_doubling_to_30s_then_give_up() {
    let mut upload = start(&file());
    let mut now = Duration::ZERO;
    let mut delays = Vec::new();
    loop {
        match next(&mut upload) {
            Effect::Head { .. } => upload.handle_head(now, Answer::Failed("refused".into())),
            Effect::SleepUntil(at) => {
                delays.push((at - now).as_secs());
                // Waking early does nothing.
                upload.handle_timeout(now);
                assert!(matches!(next(&mut upload), Effect::SleepUntil(_)));
                now = at;
                upload.handle_timeout(now);
            }
            Effect::Failed(TransferError::GaveUp { retries, .. }) => {
                assert_eq!(retries, 10);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
}

#[test]
fn five_hundreds_and_dropped_puts_retry_with_a_fresh_head() {
    let data = file();
    let mut upload = start(&data);
    expect_head(&mut upload);
    upload.handle_head(Duration::ZERO, answer(503, &[], "busy"));
    let Effect::SleepUntil(at) = next(&mut upload) else {
        panic!("expected a backoff");
    };
    assert_eq!(at, Duration::from_secs(1));
    upload.handle_timeout(at);
    expect_head(&mut upload);
    upload.handle_head(at, answer(404, &[], ""));
    expect_put(&mut upload);
    upload.handle_put(at, Answer::Failed("connection reset".into()));
    let Effect::SleepUntil(again) = next(&mut upload) else {
        panic!("expected a backoff");
    };
    assert_eq!(again - at, Duration::from_secs(2));
}

#[test]
fn the_budget_bounds_retries_in_time() {
    let policy = Policy {
        budget: Duration::from_secs(5),
        ..Policy::default()
    };
    let mut upload =
        Upload::new(KEY, 1, Sha256::of(b"x"), policy, Duration::from_secs(100)).expect("key");
    let mut now = Duration::from_secs(100);
    let mut retries = 0;
    loop {
        match next(&mut upload) {
            Effect::Head { .. } => upload.handle_head(now, Answer::Failed("down".into())),
            Effect::SleepUntil(at) => {
                retries += 1;
                now = at;
                upload.handle_timeout(now);
            }
            Effect::Failed(TransferError::GaveUp { last, .. }) => {
                assert!(last.contains("budget"), "{last}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(retries, 2); // 1 s + 2 s fit in 5 s; 1 + 2 + 4 do not
}

#[test]
fn answers_out_of_turn_are_ignored() {
    let mut upload = start(&file());
    upload.handle_put(Duration::ZERO, answer(200, &[], OK_BODY));
    upload.handle_timeout(Duration::from_secs(999));
    expect_head(&mut upload);
    assert_eq!(upload.poll_output(), Effect::Wait);
}

#[test]
fn keys_are_encoded_and_bad_keys_refused() {
    assert_eq!(
        files_path("models/a b%?#ü.gguf").expect("key"),
        "/v1/files/models/a%20b%25%3F%23%C3%BC.gguf"
    );
    assert_eq!(list_path("models/").expect("key"), "/v1/files-list/models/");
    for bad in ["", "/etc/passwd", "a\nb"] {
        assert!(matches!(
            Upload::new(bad, 0, Sha256::of(b""), Policy::default(), Duration::ZERO),
            Err(TransferError::BadKey { .. })
        ));
    }
}

#[test]
fn messages_are_bounded_and_free_of_control_characters() {
    assert_eq!(message(b"  bad\x1b[31m key\n"), "bad [31m key");
    assert_eq!(message(b""), "no details");
    assert_eq!(message(&[b'a'; 1000]).chars().count(), MAX_MESSAGE + 1);
}

#[test]
fn listing_and_temp_answers_decode() {
    assert_eq!(
        parse_list(200, br#"{"files":["a.txt","b/c.txt"]}"#).expect("list"),
        ["a.txt", "b/c.txt"]
    );
    assert!(
        parse_list(200, br#"{"files":null}"#)
            .expect("list")
            .is_empty()
    );
    assert!(matches!(
        parse_list(404, b"directory not found"),
        Err(TransferError::NotFound { .. })
    ));
    assert!(matches!(
        parse_list(401, b""),
        Err(TransferError::Unauthorized { status: 401 })
    ));
    assert_eq!(
        parse_local_path(200, br#"{"local_path":"/s/localai-output-1.tmp"}"#).expect("path"),
        "/s/localai-output-1.tmp"
    );
    assert!(matches!(
        parse_local_path(200, b"{}"),
        Err(TransferError::BadAnswer(_))
    ));
    assert!(parse_local_path(502, b"").expect_err("5xx").is_transient());
}

#[test]
fn downloads_resume_only_the_same_content() {
    let hash = Sha256::of(b"file");
    let remote = probe_download(
        200,
        &headers(&[
            ("content-length", "10"),
            ("x-content-sha256", &hash.to_hex()),
        ]),
        b"",
    )
    .expect("probe");
    assert_eq!(remote.size, 10);
    let partial = |size, sha256| Some(LocalPartial { size, sha256 });
    assert_eq!(plan_download(&remote, None), DownloadStart::Fresh);
    assert_eq!(
        plan_download(&remote, partial(4, Some(hash))),
        DownloadStart::Resume { from: 4 }
    );
    assert_eq!(
        plan_download(&remote, partial(10, Some(hash))),
        DownloadStart::Verify
    );
    assert_eq!(
        plan_download(&remote, partial(11, Some(hash))),
        DownloadStart::Fresh
    );
    assert_eq!(
        plan_download(&remote, partial(0, Some(hash))),
        DownloadStart::Fresh
    );
    let other = Sha256::of(b"other");
    assert_eq!(
        plan_download(&remote, partial(4, Some(other))),
        DownloadStart::Fresh
    );
    let unhashed = RemoteFile {
        sha256: None,
        ..remote.clone()
    };
    assert_eq!(
        plan_download(&unhashed, partial(4, None)),
        DownloadStart::Fresh
    );

    assert_eq!(download_range(0), None);
    assert_eq!(download_range(4).as_deref(), Some("bytes=4-"));
    let ranged = headers(&[("content-range", "bytes 4-9/10")]);
    assert_eq!(
        classify_get(4, 206, &ranged, b""),
        Ok(GetStart::WriteFrom { from: 4 })
    );
    assert!(classify_get(5, 206, &ranged, b"").is_err());
    assert_eq!(
        classify_get(4, 200, &HeaderMap::new(), b""),
        Ok(GetStart::WriteFrom { from: 0 })
    );
    assert_eq!(
        classify_get(4, 416, &HeaderMap::new(), b""),
        Ok(GetStart::StartOver)
    );
    assert!(verify_download(Some(hash), Sha256::of(b"file")).is_ok());
    assert!(verify_download(Some(hash), other).is_err());
    assert!(verify_download(None, other).is_ok());
}

#[test]
fn a_download_of_an_unfinished_upload_is_refused() {
    let target = Sha256::of(b"t").to_hex();
    assert_eq!(
        probe_download(
            200,
            &headers(&[("x-file-size", "3"), ("x-target-sha256", &target)]),
            b""
        ),
        Err(TransferError::Incomplete)
    );
    assert!(matches!(
        probe_download(404, &HeaderMap::new(), b"not found"),
        Err(TransferError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The machine against a simulated worker.

/// What the simulated worker does with one request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer normally.
    None,
    /// No answer at all (a `PUT` still appends the first `n` bytes of its body).
    Drop(u8),
    /// 500, nothing changed.
    ServerError,
    /// `HEAD` without `X-Content-SHA256` (LocalAI when hashing fails).
    HideHash,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => Just(Fault::None),
        3 => any::<u8>().prop_map(Fault::Drop),
        1 => Just(Fault::ServerError),
        1 => Just(Fault::HideHash),
    ]
}

/// A worker with LocalAI's range rules (§2.8), optionally with nodegate's D9 fix.
#[derive(Debug, Default)]
struct Worker {
    complete: Option<Vec<u8>>,
    /// Bytes so far and the declared hash.
    partial: Option<(Vec<u8>, Sha256)>,
    d9_fix: bool,
}

const LOCAL_PATH: &str = "/w/models/m.gguf";

impl Worker {
    fn head(&self, fault: Fault) -> Answer {
        match fault {
            Fault::Drop(_) => return Answer::Failed("dropped".into()),
            Fault::ServerError => return answer(500, &[], "stat error"),
            _ => {}
        }
        if let Some((bytes, target)) = &self.partial {
            let size = bytes.len().to_string();
            let target = target.to_hex();
            return answer(
                200,
                &[("x-file-size", &size), ("x-target-sha256", &target)],
                "",
            );
        }
        let Some(file) = &self.complete else {
            return answer(404, &[], "not found");
        };
        let size = file.len().to_string();
        let hash = Sha256::of(file).to_hex();
        let mut pairs = vec![("x-file-size", size.as_str()), ("x-local-path", LOCAL_PATH)];
        if !matches!(fault, Fault::HideHash) {
            pairs.push(("x-content-sha256", &hash));
        }
        answer(200, &pairs, "")
    }

    fn put(&mut self, put: &Put, body: &[u8], fault: Fault) -> Answer {
        if matches!(fault, Fault::ServerError) {
            return answer(500, &[], "creating parent dir");
        }
        let expected = Sha256::from_hex(put.sha256.as_bytes()).expect("hex hash");
        let delivered = match fault {
            Fault::Drop(n) => &body[..body.len().min(usize::from(n))],
            _ => body,
        };
        let Some(range) = &put.content_range else {
            // A plain upload: all or nothing.
            if matches!(fault, Fault::Drop(_)) {
                return Answer::Failed("dropped".into());
            }
            self.partial = None;
            self.complete = Some(body.to_vec());
            return answer(200, &[], r#"{"local_path":"/w/models/m.gguf"}"#);
        };
        let total: u64 = range.rsplit('/').next().expect("total").parse().expect("n");
        let start = put.offset;
        let holds_it = self
            .complete
            .as_ref()
            .is_some_and(|c| c.len() as u64 == total && Sha256::of(c) == expected);
        if start == 0 && holds_it && self.partial.is_none() {
            if self.d9_fix {
                return answer(200, &[], r#"{"local_path":"/w/models/m.gguf"}"#);
            }
            let size = total.to_string();
            return answer(416, &[("x-file-size", &size)], "start does not match");
        }
        if start == 0 && self.partial.as_ref().is_some_and(|(_, t)| *t != expected) {
            self.partial = None;
        }
        if start > 0 && self.partial.as_ref().is_some_and(|(_, t)| *t != expected) {
            self.partial = None;
            return answer(409, &[], "mismatch; restart from byte 0");
        }
        let current = self.partial.as_ref().map_or(0, |(b, _)| b.len() as u64);
        if start != current {
            let size = current.to_string();
            return answer(416, &[("x-file-size", &size)], "start does not match");
        }
        let (bytes, _) = self.partial.get_or_insert_with(|| (Vec::new(), expected));
        bytes.extend_from_slice(delivered);
        if matches!(fault, Fault::Drop(_)) && delivered.len() < body.len() {
            return Answer::Failed("connection reset".into());
        }
        if (bytes.len() as u64) < total {
            let size = bytes.len().to_string();
            return answer(308, &[("x-file-size", &size)], "");
        }
        let (bytes, _) = self.partial.take().expect("partial");
        if Sha256::of(&bytes) != expected {
            return answer(400, &[], "sha256 mismatch");
        }
        self.complete = Some(bytes);
        answer(200, &[], r#"{"local_path":"/w/models/m.gguf"}"#)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the worker held and however it fails, the upload ends in done or a typed error
    /// within the policy's request bound, never sends a byte past the file's end, and done
    /// means the worker holds exactly the file; with no more faults than retries it is done.
    #[test]
    fn the_upload_always_ends_and_done_means_the_worker_holds_the_file(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        old in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        partial_of_this in proptest::option::of(0usize..200),
        faults in proptest::collection::vec(fault(), 0..30),
        d9_fix in any::<bool>(),
    ) {
        let mut worker = Worker { complete: old, d9_fix, ..Worker::default() };
        if let Some(n) = partial_of_this {
            let n = n.min(data.len());
            if n > 0 && n < data.len() {
                worker.partial = Some((data[..n].to_vec(), Sha256::of(&data)));
            }
        }
        let policy = Policy::default();
        let mut upload = Upload::new(
            KEY, data.len() as u64, Sha256::of(&data), policy, Duration::ZERO,
        ).expect("key");
        let mut faults = faults.clone().into_iter();
        let fault_count = faults.len();
        let mut now = Duration::ZERO;
        let mut requests = 0u64;
        let outcome = loop {
            match upload.poll_output() {
                Effect::Head { .. } => {
                    requests += 1;
                    let answer = worker.head(faults.next().unwrap_or(Fault::None));
                    upload.handle_head(now, answer);
                }
                Effect::Put(put) => {
                    requests += 1;
                    prop_assert_eq!(put.offset + put.len, data.len() as u64);
                    let body = &data[usize::try_from(put.offset).expect("small")..];
                    let answer = worker.put(&put, body, faults.next().unwrap_or(Fault::None));
                    upload.handle_put(now, answer);
                }
                Effect::Note(_) => {}
                Effect::SleepUntil(at) => {
                    prop_assert!(at > now);
                    now = at;
                    upload.handle_timeout(now);
                }
                Effect::Wait => prop_assert!(false, "nothing in flight yet the machine waits"),
                Effect::Done(done) => break Ok(done),
                Effect::Failed(error) => break Err(error),
            }
            prop_assert!(requests <= policy.max_requests(), "past its bounds");
        };
        match outcome {
            Ok(done) => {
                prop_assert_eq!(worker.complete.as_deref(), Some(data.as_slice()));
                prop_assert_eq!(done.local_path, LOCAL_PATH);
            }
            Err(error) => {
                prop_assert!(
                    matches!(error, TransferError::GaveUp { .. } | TransferError::NoProgress { .. }),
                    "{error}"
                );
                prop_assert!(fault_count > policy.max_retries.min(policy.max_resumes) as usize);
            }
        }
    }
}
