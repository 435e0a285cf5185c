//! The supervisor worker on smol: the member is `nodegate-smol`'s, the file-transfer server is
//! `nodegate-http`'s on [`SmolRuntime`] — the same server code as the tokio worker's, on an
//! executor of its own run by one thread per core (as tokio's default runtime has one worker
//! per core), with async-io for sockets and timers and the `blocking` pool for files.

use std::sync::Arc;

use nodegate_http::{NatsRoots, Server, ServerConfig, SmolRuntime};
use nodegate_smol::member::{self, FileService, NodeFiles, Readiness, Serving};

use crate::config::{Config, Host};
use crate::smol_adapter::rt;
use crate::tokio_adapter::member::WorkerSetup;

/// Runs the worker to its exit status.
pub(super) async fn run(config: Config, host: Host, setup: WorkerSetup) -> u8 {
    let roots = setup.server.roots.clone();
    let setup = member::WorkerSetup {
        service: Box::new(SmolFileServer {
            config: setup.server,
        }),
        bind: setup.bind,
        roots,
    };
    member::run_worker(config, host, setup).await
}

/// The file server behind the smol member's seam.
struct SmolFileServer {
    config: ServerConfig,
}

/// The node's `files.*` handlers over the server's roots (through the core's rules).
struct Files(Arc<NatsRoots>);

impl NodeFiles for Files {
    fn listdir(&self, payload: &[u8]) -> Vec<u8> {
        self.0.listdir(payload)
    }

    fn temp(&self) -> Vec<u8> {
        self.0.temp()
    }
}

impl FileService for SmolFileServer {
    fn start(self: Box<Self>, bind: &str, readiness: Readiness) -> Result<Serving, String> {
        let mut config = self.config;
        config.readiness = Some(readiness);
        let files =
            NatsRoots::open(&config.roots).map_err(|e| format!("opening the roots: {e}"))?;
        // Binding is immediate; the listener then joins async-io's reactor.
        let listener = std::net::TcpListener::bind(bind)
            .and_then(smol::net::TcpListener::try_from)
            .map_err(|e| format!("listen {bind}: {e}"))?;
        let executor = Arc::new(smol::Executor::new());
        let server = Server::with_runtime(SmolRuntime::new(executor.clone()), config, listener)
            .map_err(|e| e.to_string())?;
        let addr = server
            .local_addr()
            .map_or_else(|_| bind.to_owned(), |a| a.to_string());
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let served = executor.spawn(async move {
            server
                .serve(async move {
                    let _ = stop_rx.recv().await;
                })
                .await;
        });
        // The executor's threads run until the server has stopped.
        let (end_tx, end_rx) = smol::channel::bounded::<()>(1);
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let mut runners = Vec::with_capacity(threads);
        for n in 0..threads {
            let executor = executor.clone();
            let end_rx = end_rx.clone();
            let runner = std::thread::Builder::new()
                .name(format!("file-server-{n}"))
                .spawn(move || {
                    smol::block_on(executor.run(async {
                        let _ = end_rx.recv().await;
                    }))
                })
                .map_err(|e| format!("the file server's threads: {e}"))?;
            runners.push(runner);
        }
        Ok(Serving {
            addr,
            files: Arc::new(Files(files)),
            stop: Box::new(move || {
                let _ = stop_tx.try_send(());
            }),
            done: Box::pin(async move {
                served.await;
                drop(end_tx);
                let _ = rt::unblock(move || runners.into_iter().for_each(|r| drop(r.join()))).await;
            }),
        })
    }
}
