//! The supervisor worker on smol: the member is `nodegate-smol`'s, the file-transfer server
//! comes in through its [`FileService`] seam.
//!
//! Interim: until the runtime-independent file server exists as a crate of its own, the seam
//! is filled by the tokio adapter's file server on a two-thread tokio runtime of its own
//! ([`TokioFileServer`]). Registration, NATS, heartbeats, signals, drain and deregistration —
//! everything the member does — run on smol; replacing this bridge by the smol file server is
//! a change of this file only.

use std::sync::Arc;
use std::time::Duration;

use nodegate_smol::member::{self, FileService, NodeFiles, Readiness, Serving};

use crate::config::{Config, Host};
use crate::smol_adapter::rt;
use crate::tokio_adapter::member::{NatsRoots, WorkerSetup};
use crate::tokio_adapter::{Server, ServerConfig};

/// Runs the worker to its exit status.
pub(super) async fn run(config: Config, host: Host, setup: WorkerSetup) -> u8 {
    let roots = setup.server.roots.clone();
    let setup = member::WorkerSetup {
        service: Box::new(TokioFileServer {
            config: setup.server,
        }),
        bind: setup.bind,
        roots,
    };
    member::run_worker(config, host, setup).await
}

/// The tokio file server behind the smol member's seam.
struct TokioFileServer {
    config: ServerConfig,
}

/// The node's `files.*` handlers over the server's roots (the tokio adapter's, which follow
/// the core's rules).
struct Files(Arc<NatsRoots>);

impl NodeFiles for Files {
    fn listdir(&self, payload: &[u8]) -> Vec<u8> {
        self.0.listdir(payload)
    }

    fn temp(&self) -> Vec<u8> {
        self.0.temp()
    }
}

impl FileService for TokioFileServer {
    fn start(self: Box<Self>, bind: &str, readiness: Readiness) -> Result<Serving, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("file-server")
            .enable_all()
            .build()
            .map_err(|e| format!("the file server's runtime: {e}"))?;
        let mut config = self.config;
        config.readiness = Some(readiness);
        let roots = config.roots.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| format!("listen {bind}: {e}"))?;
        let server = {
            let _context = runtime.enter();
            Server::new(config, listener).map_err(|e| e.to_string())?
        };
        let addr = server
            .local_addr()
            .map_or_else(|_| bind.to_owned(), |a| a.to_string());
        let files = NatsRoots::open(&roots).map_err(|e| format!("opening the roots: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("file-server".into())
            .spawn(move || {
                runtime.block_on(async {
                    // A file-size limit (RLIMIT_FSIZE) must fail the upload with EFBIG, not
                    // kill the worker: listening for SIGXFSZ replaces its default action.
                    let _file_size_signal = tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ),
                    );
                    server
                        .serve(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("the file server's thread: {e}"))?;
        Ok(Serving {
            addr,
            files: Arc::new(Files(files)),
            stop: Box::new(move || {
                let _ = stop_tx.send(());
            }),
            done: Box::pin(async move {
                let _ = rt::unblock(move || thread.join()).await;
            }),
        })
    }
}
