//! Hardening of temp files and roots (issue 12, item 6): every failed upload removes its own temp
//! file, even when a parent directory was swapped for a symbolic link mid-upload; roots that are
//! `/`, nested, or read-only are refused at start with a message naming `LOCALAI_MODELS_PATH`.
//! Real sockets over loopback, every socket with timeouts, every loop bounded.

mod common;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Runtime, TOKEN, TestServer, WorkerProcess, free_port, read_response, worker_binary};
use nodegate::auth::AuthPolicy;
use nodegate::keys::Roots;
use nodegate::request::ServerPolicy;
use nodegate::tokio_adapter::{Limits, LogStore, ServerConfig};

const MIB: usize = 1 << 20;

/// Every `.tmp` file below `dir` (upload temps and sidecar temps).
fn temps_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".tmp") {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn start_upload(addr: SocketAddr, key: &str, total: usize, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "PUT /v1/files/{key} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\nContent-Length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(first).expect("first half");
    stream
}

/// A parent directory renamed away and replaced by a symbolic link out of the root while the
/// body streams: the publish is refused, and the temp file — now in the renamed directory —
/// is removed through the handle on its directory. It used to stay (removal by path was refused
/// as an escape): 5,530 temp files in 30 s of this attack.
fn a_parent_swapped_for_a_symlink_mid_upload_leaves_no_temp_file(rt: Runtime) {
    let server = TestServer::start(rt);
    let models = server.roots.models.clone();
    let outside = server.tmp.path().join("outside");
    let before = server.outside_snapshot();
    for attempt in 0..5 {
        let dir = models.join(format!("d{attempt}"));
        let moved = models.join(format!("d{attempt}.moved"));
        std::fs::create_dir_all(&dir).expect("dir");
        let body = vec![b'x'; 2 * MIB];
        let mut stream = start_upload(
            server.addr,
            &format!("models/d{attempt}/x.bin"),
            body.len(),
            &body[..MIB],
        );
        assert!(
            wait_until(Duration::from_secs(10), || !temps_below(&dir).is_empty()),
            "attempt {attempt}: the upload is being written to a temp file"
        );
        std::fs::rename(&dir, &moved).expect("move the parent away");
        std::os::unix::fs::symlink(&outside, &dir).expect("swap in a symlink out of the root");
        stream.write_all(&body[MIB..]).expect("second half");
        let response = read_response(&mut stream, false).expect("an answer");
        assert_ne!(response.status, 200, "attempt {attempt}: nothing published");
        assert_eq!(
            temps_below(&moved),
            Vec::<String>::new(),
            "attempt {attempt}: the failed upload removed its temp file"
        );
    }
    assert_eq!(temps_below(&models), Vec::<String>::new());
    assert_eq!(server.outside_snapshot(), before, "nothing written outside");
}

/// A client that goes away mid-body: the temp file is removed, not left for the next restart.
fn a_client_that_disconnects_mid_upload_leaves_no_temp_file(rt: Runtime) {
    let server = TestServer::start(rt);
    let models = server.roots.models.clone();
    for attempt in 0..5 {
        let body = vec![b'y'; MIB];
        let stream = start_upload(
            server.addr,
            &format!("models/gone-{attempt}.bin"),
            4 * MIB,
            &body,
        );
        assert!(
            wait_until(Duration::from_secs(10), || !temps_below(&models).is_empty()),
            "attempt {attempt}: the upload is being written to a temp file"
        );
        drop(stream);
        assert!(
            wait_until(Duration::from_secs(10), || temps_below(&models).is_empty()),
            "attempt {attempt}: temp file left after a disconnect: {:?}",
            temps_below(&models)
        );
    }
}

/// The server over `roots` on `rt`: the error message, if it refuses.
fn start_error(rt: Runtime, roots: Roots) -> Option<String> {
    let config = ServerConfig {
        policy: ServerPolicy {
            auth: AuthPolicy::from_tokens(None, None),
            max_upload: None,
        },
        roots,
        limits: Limits::default(),
        logs: LogStore::new(),
        readiness: None,
    };
    common::start_error(rt, config)
}

/// `LOCALAI_MODELS_PATH=/` used to walk (and delete temp files across) the whole filesystem for
/// seconds before binding, and created `/staging` and `/data`. It is refused before anything is
/// created.
fn a_root_at_the_filesystem_root_is_refused_naming_the_variable(rt: Runtime) {
    let staging_existed = Path::new("/staging").exists();
    let data_existed = Path::new("/data").exists();
    let error = start_error(
        rt,
        Roots {
            models: "/".into(),
            staging: "/staging".into(),
            data: "/data".into(),
        },
    )
    .expect("refused");
    assert!(error.contains("LOCALAI_MODELS_PATH"), "{error}");
    assert!(error.contains("filesystem root"), "{error}");
    assert_eq!(
        Path::new("/staging").exists(),
        staging_existed,
        "nothing created"
    );
    assert_eq!(Path::new("/data").exists(), data_existed, "nothing created");
}

/// Nested roots — lexically, or through a symbolic link — are refused.
fn nested_roots_are_refused_naming_the_variable(rt: Runtime) {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path();
    let error = start_error(
        rt,
        Roots {
            models: base.join("m"),
            staging: base.join("m/staging"),
            data: base.join("data"),
        },
    )
    .expect("nested roots refused");
    assert!(error.contains("LOCALAI_MODELS_PATH"), "{error}");
    std::fs::create_dir_all(base.join("real/inner")).expect("dirs");
    std::os::unix::fs::symlink(base.join("real/inner"), base.join("link")).expect("link");
    let error = start_error(
        rt,
        Roots {
            models: base.join("real"),
            staging: base.join("link"),
            data: base.join("data2"),
        },
    )
    .expect("roots nested through a symlink refused");
    assert!(error.contains("LOCALAI_MODELS_PATH"), "{error}");
}

/// A read-only root used to start, report ready and answer 500 to every write. The worker now
/// refuses to start, and says which variable to change. The roots live on a private tmpfs
/// remounted read-only (`unshare -rm`: root ignores file modes, not a read-only mount).
#[test]
fn a_read_only_root_stops_the_worker_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("root");
    std::fs::create_dir_all(&base).expect("base");
    let port = free_port();
    let mut command = Command::new("unshare");
    command
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs \"$1\" && mkdir \"$1/models\" \"$1/staging\" \
             \"$1/data\" && mount -o remount,ro \"$1\" && shift && exec \"$@\"",
            "sh",
        ])
        .arg(&base)
        .arg(worker_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOCALAI_MODELS_PATH", base.join("models"))
        .env("LOCALAI_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LOCALAI_REGISTRATION_TOKEN", TOKEN);
    let mut worker = WorkerProcess::spawn(command);
    let status = worker.wait_exit(Duration::from_secs(20));
    let stderr = worker.stderr();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the worker refuses a read-only root (status {status:?}):\n{stderr}"
    );
    assert!(
        // The command's preflight ("is not writable") or the server's own check ("does not
        // take writes"), whichever runs first: both name the setting.
        (stderr.contains("does not take writes") || stderr.contains("is not writable"))
            && stderr.contains("LOCALAI_MODELS_PATH"),
        "{stderr}"
    );
}

common::per_runtime_tests!(
    a_root_at_the_filesystem_root_is_refused_naming_the_variable,
    nested_roots_are_refused_naming_the_variable,
    a_parent_swapped_for_a_symlink_mid_upload_leaves_no_temp_file,
    a_client_that_disconnects_mid_upload_leaves_no_temp_file,
);
