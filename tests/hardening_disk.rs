//! Hardening against a full disk (issue 12, item 4): a resumable upload that fills the disk must
//! not block every later write. The worker runs in a private mount namespace over a 4 MiB tmpfs
//! (`unshare -rm`, loopback only), so a write fails with a real `ENOSPC`.

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::process::Command;
    use std::time::Duration;

    use common::{
        RawResponse, TOKEN, WorkerProcess, free_port, read_response, request_to, wait_healthy,
        worker_binary,
    };

    /// Whether this machine lets an unprivileged test mount a tmpfs in a user namespace.
    fn tmpfs_available() -> bool {
        Command::new("unshare")
            .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"])
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// Starts the worker with its roots on a fresh `size` tmpfs mounted over `base`.
    fn worker_on_tmpfs(base: &std::path::Path, size: &str) -> (WorkerProcess, SocketAddr) {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new("unshare");
        command
            .args([
                "-rm",
                "sh",
                "-c",
                "mount -t tmpfs -o size=$1 tmpfs \"$2\" && shift 2 && exec \"$@\"",
                "sh",
                size,
            ])
            .arg(base)
            .arg(worker_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LOCALAI_MODELS_PATH", base.join("models"))
            .env("LOCALAI_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
            .env("NODEGATE_HEADER_TIMEOUT", "10s")
            .env("NODEGATE_BODY_IDLE_TIMEOUT", "10s");
        let mut worker = WorkerProcess::spawn(command);
        if !wait_healthy(addr, Duration::from_secs(20)) {
            let status = worker.wait_exit(Duration::from_millis(100));
            panic!(
                "worker not serving (status {status:?}):\n{}",
                worker.stderr()
            );
        }
        (worker, addr)
    }

    /// Sends a whole request, ignoring write errors (the server may answer early), then reads.
    fn send_all(addr: SocketAddr, head: &str, body: &[u8]) -> Option<RawResponse> {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let _ = stream.write_all(head.as_bytes());
        for chunk in body.chunks(64 * 1024) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let response = read_response(&mut stream, false);
        let _ = stream.read(&mut [0; 1]);
        response
    }

    /// On a 4 MiB tmpfs, a 6 MiB range upload answers 507. It used to leave its partial filling the
    /// disk, so every later PUT — even 3 bytes — answered 507 until someone deleted it, restarts
    /// included. The partial whose append hit `ENOSPC` is discarded, so the root recovers at once.
    #[test]
    fn a_range_upload_that_fills_the_disk_does_not_block_later_writes() {
        assert!(
            tmpfs_available(),
            "this test needs a private tmpfs (unshare -rm, from util-linux) to fill a disk; it is \
             never skipped"
        );
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().join("root");
        std::fs::create_dir_all(&base).expect("base");
        let (_worker, addr) = worker_on_tmpfs(&base, "4m");

        let total = 6 << 20;
        let body = vec![7_u8; total];
        let head = format!(
            "PUT /v1/files/models/big.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\nContent-Length: {total}\r\nContent-Range: bytes 0-{}/{total}\r\n\r\n",
            total - 1
        );
        let response = send_all(addr, &head, &body).expect("an answer to the upload");
        assert_eq!(response.status, 507, "{}", response.text());

        for attempt in 0..3 {
            let small = request_to(
                addr,
                "PUT",
                &format!("/v1/files/models/small-{attempt}.bin"),
                Some(TOKEN),
                &[],
                b"abc",
            );
            assert_eq!(
                small.status,
                200,
                "attempt {attempt}: a small write after a full disk: {}",
                small.text()
            );
        }
        let probe = request_to(
            addr,
            "HEAD",
            "/v1/files/models/big.bin",
            Some(TOKEN),
            &[],
            b"",
        );
        assert_eq!(
            probe.status, 404,
            "the partial that filled the disk is gone"
        );
    }
}
