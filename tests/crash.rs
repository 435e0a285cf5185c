//! Crash, disconnect and disk-full behaviour of the reference worker process (security.md
//! §4.4 HR-D01/HR-D02/HR-D05, §4.5 HR-C01/HR-C02/HR-C04): the worker is killed with SIGKILL or
//! loses its client mid-upload, or runs under `prlimit --fsize` so writes fail with `EFBIG`;
//! afterwards the key is absent, or holds the previous complete version with its sidecar, or a
//! resumable partial that a restarted worker continues.

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::io::Write as _;
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use common::{
        CLIENT_TIMEOUT, RawResponse, TOKEN, WorkerProcess, free_port, read_response, request_to,
        sha256_hex, wait_healthy, worker_binary, worker_command,
    };

    const STARTUP: Duration = Duration::from_secs(15);
    const MIB: usize = 1024 * 1024;

    /// `<tmp>/root/{models,staging,data}`, shared by the successive workers of one test.
    struct Tree {
        tmp: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Self {
                tmp: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn models(&self) -> PathBuf {
            self.tmp.path().join("root/models")
        }

        /// Starts a protected worker over this tree on a fresh port, optionally under
        /// `prlimit --fsize=<bytes>`, and waits until it serves.
        fn start(&self, file_size_limit: Option<u64>) -> (WorkerProcess, SocketAddr) {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let http_addr = format!("127.0.0.1:{port}");
            let mut command = match file_size_limit {
                None => worker_command(&self.models(), &http_addr),
                Some(limit) => {
                    let mut command = Command::new(prlimit());
                    command
                        .arg(format!("--fsize={limit}"))
                        .arg(worker_binary())
                        .env_clear()
                        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                        .env("LOCALAI_MODELS_PATH", self.models())
                        .env("LOCALAI_HTTP_ADDR", &http_addr)
                        .env("NODEGATE_HEADER_TIMEOUT", "10s")
                        .env("NODEGATE_BODY_IDLE_TIMEOUT", "10s");
                    command
                }
            };
            command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
            let mut worker = WorkerProcess::spawn(command);
            if !wait_healthy(addr, STARTUP) {
                let status = worker.wait_exit(Duration::from_millis(100));
                panic!(
                    "worker not serving on {addr} (status {status:?}):\n{}",
                    worker.stderr()
                );
            }
            (worker, addr)
        }

        /// Names in the models dir that are temp files of a full upload of `name`.
        fn temps_of(&self, name: &str) -> Vec<String> {
            let prefix = format!(".{name}.");
            std::fs::read_dir(self.models())
                .expect("models dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) && n.ends_with(".tmp"))
                .collect()
        }

        fn read(&self, name: &str) -> Option<Vec<u8>> {
            std::fs::read(self.models().join(name)).ok()
        }

        fn size(&self, name: &str) -> Option<u64> {
            std::fs::metadata(self.models().join(name))
                .ok()
                .map(|m| m.len())
        }
    }

    /// `prlimit` from util-linux; the disk-full tests need it and install nothing.
    fn prlimit() -> PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("prlimit"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "prlimit (util-linux) is required by the disk-full tests HR-D01/HR-D02 and is not \
                     on PATH; install util-linux"
                )
            })
    }

    /// Deterministic bytes that differ at every offset, so a prefix check means something.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        condition()
    }

    /// The head of a PUT with the test token and `Content-Length: total`.
    fn put_head(addr: SocketAddr, key: &str, total: usize, extra: &[(&str, &str)]) -> String {
        let mut head = format!(
            "PUT /v1/files/{key} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\nContent-Length: {total}\r\n"
        );
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    /// Sends a request head and only `sent` of its body; the connection stays open.
    fn start_upload(addr: SocketAddr, head: &str, sent: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(sent).expect("first part of the body");
        stream.flush().expect("flush");
        stream
    }

    /// Sends a whole request while reading the response on this thread, so an early answer
    /// (the server refusing the body halfway) is read rather than lost to a blocked write.
    fn send_streaming(addr: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(CLIENT_TIMEOUT))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(body);
        let thread = std::thread::spawn(move || {
            // The server may close once it has answered: a failed write is expected then.
            let _ = writer.write_all(&bytes);
        });
        let response = read_response(&mut stream, false).expect("a complete HTTP response");
        let _ = stream.shutdown(std::net::Shutdown::Both);
        thread.join().expect("writer thread");
        response
    }

    fn head(addr: SocketAddr, key: &str) -> RawResponse {
        request_to(
            addr,
            "HEAD",
            &format!("/v1/files/{key}"),
            Some(TOKEN),
            &[],
            b"",
        )
    }

    fn put(addr: SocketAddr, key: &str, body: &[u8], extra: &[(&str, &str)]) -> RawResponse {
        request_to(
            addr,
            "PUT",
            &format!("/v1/files/{key}"),
            Some(TOKEN),
            extra,
            body,
        )
    }

    /// A complete file under `name` with its sidecar, and HEAD reporting its hash.
    fn assert_complete(tree: &Tree, addr: SocketAddr, name: &str, bytes: &[u8]) {
        let hash = sha256_hex(bytes);
        assert_eq!(tree.read(name).as_deref(), Some(bytes), "{name} content");
        assert_eq!(
            tree.read(&format!("{name}.sha256")),
            Some(hash.clone().into_bytes()),
            "{name} sidecar"
        );
        let head = head(addr, &format!("models/{name}"));
        assert_eq!(head.status, 200);
        assert_eq!(head.header("X-Content-SHA256"), Some(hash.as_str()));
        assert_eq!(
            head.header("X-File-Size"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(head.header("X-Target-SHA256"), None);
    }

    /// An in-progress upload of `name` with `target` as declared hash; returns its size, which is
    /// also a prefix length of `bytes`.
    fn assert_partial(tree: &Tree, addr: SocketAddr, name: &str, bytes: &[u8], sent: usize) -> usize {
        let head = head(addr, &format!("models/{name}"));
        assert_eq!(head.status, 200, "HEAD of an in-progress upload");
        assert_eq!(
            head.header("X-Content-SHA256"),
            None,
            "a partial has no content hash"
        );
        assert_eq!(
            head.header("X-Target-SHA256"),
            Some(sha256_hex(bytes).as_str())
        );
        let size: usize = head
            .header("X-File-Size")
            .expect("X-File-Size")
            .parse()
            .expect("a number");
        assert!(size <= sent, "partial size {size} > bytes sent {sent}");
        let partial = tree
            .read(&format!(".{name}.partial"))
            .expect("the partial file");
        assert_eq!(partial.len(), size, "X-File-Size is the partial's size");
        assert!(partial == bytes[..size], "the partial holds the bytes sent");
        assert_eq!(
            tree.read(name),
            None,
            "no final file while the upload is partial"
        );
        size
    }

    /// Resumes a range upload of `bytes` from `from` to completion.
    fn resume(addr: SocketAddr, name: &str, bytes: &[u8], from: usize) -> RawResponse {
        let hash = sha256_hex(bytes);
        let range = format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len());
        put(
            addr,
            &format!("models/{name}"),
            &bytes[from..],
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
        )
    }

    // --- HR-C01 -------------------------------------------------------------------------------------

    #[test]
    fn hr_c01_kill_9_mid_full_put_keeps_old_version_and_startup_removes_the_temp() {
        let tree = Tree::new();
        let (mut worker, addr) = tree.start(None);
        let old = data(10_000, 1);
        assert_eq!(put(addr, "models/old.bin", &old, &[]).status, 200);

        let new = data(6 * MIB, 2);
        let half = &new[..3 * MIB];
        let _to_old = start_upload(
            addr,
            &put_head(addr, "models/old.bin", new.len(), &[]),
            half,
        );
        let _to_fresh = start_upload(
            addr,
            &put_head(addr, "models/fresh.bin", new.len(), &[]),
            half,
        );
        assert!(
            wait_until(Duration::from_secs(10), || {
                tree.temps_of("old.bin").len() == 1 && tree.temps_of("fresh.bin").len() == 1
            }),
            "both uploads are being written to temp files"
        );
        worker.kill9();
        assert_eq!(
            tree.temps_of("fresh.bin").len(),
            1,
            "the crash left an orphan temp"
        );

        let (_worker, addr) = tree.start(None);
        assert!(
            tree.temps_of("old.bin").is_empty(),
            "orphan temp removed at startup"
        );
        assert!(
            tree.temps_of("fresh.bin").is_empty(),
            "orphan temp removed at startup"
        );
        assert_complete(&tree, addr, "old.bin", &old);
        assert_eq!(
            tree.read("fresh.bin"),
            None,
            "the interrupted upload never appears"
        );
        assert_eq!(tree.read("fresh.bin.sha256"), None);
        assert_eq!(head(addr, "models/fresh.bin").status, 404);
    }

    // --- HR-C02 -------------------------------------------------------------------------------------

    #[test]
    fn hr_c02_kill_9_mid_range_chunk_resumes_from_the_reported_size() {
        let tree = Tree::new();
        let (mut worker, addr) = tree.start(None);
        let bytes = data(6 * MIB, 3);
        let hash = sha256_hex(&bytes);
        let range = format!("bytes 0-{}/{}", bytes.len() - 1, bytes.len());
        let sent = 3 * MIB;
        let head_text = put_head(
            addr,
            "models/c02.bin",
            bytes.len(),
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
        );
        let _client = start_upload(addr, &head_text, &bytes[..sent]);
        // Writes are coalesced in 1 MiB buffers: wait until some bytes reached the partial.
        assert!(
            wait_until(Duration::from_secs(10), || tree
                .size(".c02.bin.partial")
                .is_some_and(|s| s >= MIB as u64)),
            "the chunk is being appended to the partial"
        );
        worker.kill9();

        let (_worker, addr) = tree.start(None);
        let size = assert_partial(&tree, addr, "c02.bin", &bytes, sent);
        assert!(size > 0);
        assert_eq!(
            tree.read("c02.bin.sha256.target"),
            Some(hash.clone().into_bytes())
        );
        let done = resume(addr, "c02.bin", &bytes, size);
        assert_eq!(done.status, 200, "{}", done.text());
        assert_complete(&tree, addr, "c02.bin", &bytes);
        assert_eq!(tree.read(".c02.bin.partial"), None, "partial published");
        assert_eq!(
            tree.read("c02.bin.sha256.target"),
            None,
            "target sidecar removed"
        );
    }

    // --- HR-C04 -------------------------------------------------------------------------------------

    #[test]
    fn hr_c04_client_disconnect_mid_full_put_leaves_old_version_and_no_temp() {
        let tree = Tree::new();
        let (mut worker, addr) = tree.start(None);
        let old = data(20_000, 4);
        assert_eq!(put(addr, "models/c04.bin", &old, &[]).status, 200);
        let new = data(4 * MIB, 5);
        let client = start_upload(
            addr,
            &put_head(addr, "models/c04.bin", new.len(), &[]),
            &new[..2 * MIB],
        );
        assert!(
            wait_until(Duration::from_secs(10), || tree.temps_of("c04.bin").len()
                == 1),
            "the upload is being written to a temp file"
        );
        drop(client);
        assert!(
            wait_until(Duration::from_secs(10), || tree
                .temps_of("c04.bin")
                .is_empty()),
            "the temp file of the abandoned upload is removed: {:?}",
            tree.temps_of("c04.bin")
        );
        assert!(
            worker.child.try_wait().expect("try_wait").is_none(),
            "worker still running"
        );
        assert_complete(&tree, addr, "c04.bin", &old);
    }

    // --- HR-D01 / HR-D02 (EFBIG through RLIMIT_FSIZE, HR-D05) --------------------------------------

    #[test]
    fn hr_d01_disk_full_during_full_put_is_507_and_keeps_the_old_version() {
        let tree = Tree::new();
        let (mut worker, addr) = tree.start(Some(MIB as u64));
        let old = data(64 * 1024, 6);
        assert_eq!(put(addr, "models/d01.bin", &old, &[]).status, 200);

        let new = data(2 * MIB, 7);
        let response = send_streaming(
            addr,
            &put_head(addr, "models/d01.bin", new.len(), &[]),
            &new,
        );
        assert_eq!(response.status, 507, "{}", response.text());
        assert!(
            !response
                .text()
                .contains(&tree.tmp.path().display().to_string()),
            "no server path in the error body"
        );
        assert!(tree.temps_of("d01.bin").is_empty(), "temp removed");
        assert!(
            worker.child.try_wait().expect("try_wait").is_none(),
            "EFBIG fails the upload, not the worker:\n{}",
            worker.stderr()
        );
        assert_complete(&tree, addr, "d01.bin", &old);
    }

    #[test]
    fn hr_d02_disk_full_during_range_chunk_keeps_the_partial_and_resumes() {
        let tree = Tree::new();
        let (mut limited, addr) = tree.start(Some(MIB as u64));
        let bytes = data(2 * MIB, 8);
        let hash = sha256_hex(&bytes);
        let first = 512 * 1024;
        let range = format!("bytes 0-{}/{}", first - 1, bytes.len());
        let step = put(
            addr,
            "models/d02.bin",
            &bytes[..first],
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
        );
        assert_eq!(step.status, 308, "{}", step.text());

        let range = format!("bytes {first}-{}/{}", bytes.len() - 1, bytes.len());
        let head_text = put_head(
            addr,
            "models/d02.bin",
            bytes.len() - first,
            &[("Content-Range", &range), ("X-Content-SHA256", &hash)],
        );
        let response = send_streaming(addr, &head_text, &bytes[first..]);
        assert!(
            response.status >= 500,
            "a chunk crossing the file-size limit fails: {} {}",
            response.status,
            response.text()
        );
        let size = assert_partial(&tree, addr, "d02.bin", &bytes, bytes.len());
        assert!(size >= first, "the first chunk stays");
        assert!(size <= MIB, "nothing past the limit");

        limited.signal("TERM");
        assert!(
            limited.wait_exit(Duration::from_secs(10)).is_some(),
            "worker stops"
        );
        let (_worker, addr) = tree.start(None);
        assert_eq!(
            assert_partial(&tree, addr, "d02.bin", &bytes, bytes.len()),
            size
        );
        let done = resume(addr, "d02.bin", &bytes, size);
        assert_eq!(done.status, 200, "{}", done.text());
        assert_complete(&tree, addr, "d02.bin", &bytes);
        assert_eq!(tree.read(".d02.bin.partial"), None);
        assert_eq!(tree.read("d02.bin.sha256.target"), None);
    }
}
