//! Hardening against slow bodies and download memory (issue 12, item 8). Real sockets over
//! loopback, every socket with timeouts, every loop bounded.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use common::{
    Options, Runtime, TOKEN, TestServer, WorkerProcess, free_port, wait_healthy, worker_command,
};
use nodegate::tokio_adapter::Limits;

/// A token holder trickling one byte every 200 ms never pauses long enough for the idle
/// timeout; under a minimum of 1,000 bytes/s over 2 s it is answered 408 once the first window
/// ends, and nothing is published.
fn a_trickling_upload_is_cut_off_by_the_minimum_rate(rt: Runtime) {
    let server = TestServer::with(
        rt,
        Options {
            limits: Limits {
                min_body_rate: 1000,
                body_rate_window: Duration::from_secs(2),
                ..Limits::default()
            },
            ..Options::default()
        },
    );
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "PUT /v1/files/models/slow.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100000\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).expect("head");
    let mut writer = stream.try_clone().expect("clone");
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        while started.elapsed() < Duration::from_secs(8) {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let response = common::read_response(&mut stream, false).expect("an answer");
    let took = started.elapsed();
    drop(stream);
    let _ = trickle.join();
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(
        took < Duration::from_secs(6),
        "cut off after one window, not at the end of the trickle: {took:?}"
    );
    assert_eq!(server.get("/v1/files/models/slow.bin").status, 404);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM")
}

/// 200 concurrent downloads of a 100 MiB file by clients that read a little and then stall:
/// read-ahead buffers per download, unbounded in total, took the worker to 287 MB. Download
/// chunks now share one budget, so the peak RSS (VmHWM) stays under 64 MiB.
#[test]
fn peak_rss_stays_under_64_mib_at_200_concurrent_downloads() {
    const DOWNLOADS: usize = 200;
    const SIZE: usize = 100 << 20;
    let tmp = tempfile::tempdir().expect("tmp");
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).expect("models");
    let mut file = std::fs::File::create(models.join("big.bin")).expect("file");
    let block = vec![0x5a_u8; 1 << 20];
    for _ in 0..SIZE >> 20 {
        file.write_all(&block).expect("write");
    }
    drop(file);
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = worker_command(&models, &addr.to_string());
    command.env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
    let worker = WorkerProcess::spawn(command);
    assert!(
        wait_healthy(addr, Duration::from_secs(20)),
        "{}",
        worker.stderr()
    );
    let before = vm_hwm_kib(worker.child.id());
    let runtime = ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = runtime.block_on(async {
        let tasks: Vec<_> = (0..DOWNLOADS)
            .map(|_| {
                ::tokio::spawn(async move {
                    let work = async {
                        let mut stream = ::tokio::net::TcpStream::connect(addr).await.ok()?;
                        let request = format!(
                            "GET /v1/files/models/big.bin HTTP/1.1\r\nHost: {addr}\r\n\
                             Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
                        );
                        stream.write_all(request.as_bytes()).await.ok()?;
                        let mut buf = vec![0_u8; 64 * 1024];
                        let mut got = 0;
                        while got < 1 << 20 {
                            let n = stream.read(&mut buf).await.ok()?;
                            if n == 0 {
                                return None;
                            }
                            got += n;
                        }
                        Some(stream)
                    };
                    ::tokio::time::timeout(Duration::from_secs(20), work)
                        .await
                        .ok()
                        .flatten()
                })
            })
            .collect();
        let mut open = Vec::new();
        for task in tasks {
            if let Ok(Some(stream)) = task.await {
                open.push(stream);
            }
        }
        // Every download is under way and stalled: the worker fills what buffers it allows.
        ::tokio::time::sleep(Duration::from_secs(3)).await;
        let count = open.len();
        drop(open);
        count
    });
    drop(runtime);
    let peak = vm_hwm_kib(worker.child.id());
    eprintln!(
        "downloads under way: {started}/{DOWNLOADS}; worker VmHWM before {before} KiB, at peak \
         {peak} KiB ({} MiB)",
        peak / 1024
    );
    assert_eq!(started, DOWNLOADS, "every download started");
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB stays under 64 MiB at {DOWNLOADS} downloads"
    );
}

common::per_runtime_tests!(a_trickling_upload_is_cut_off_by_the_minimum_rate,);
