//! # nodegate-http
//!
//! nodegate's worker file-transfer server: LocalAI's `/v1/files/*`, `/v1/files-list/*`,
//! `/v1/backend-logs*` (REST and WebSocket), `/metrics`, `/healthz` and `/readyz`, on hyper 1.
//! It makes no protocol decision of its own: every request is classified by `nodegate-core`,
//! every upload planned by the core, every response built from the core's
//! [`Reply`](nodegate_core::response::Reply); files are opened through `nodegate-store`
//! beneath their root, symlinks out of a root refused at open time. On top of the core it
//! carries out:
//! - uploads streamed into temp files and renamed into place once verified and synced;
//!   resumable uploads appended to a hidden partial file, published on completion;
//! - one writer per key, bounded memory per transfer, header and body-idle timeouts, a minimum
//!   body rate, a cap on concurrent connections that sheds idle ones first;
//! - answers sent before a body was read that the client still hears (a lingering close);
//! - an access log, upload events, refusals aggregated per reason and remote, and counters.
//!
//! The server is written once over [`Runtime`], the little it needs from an async runtime:
//! spawning a task, running blocking file work on a pool, sleeping (and hyper's timer), and
//! accepting TCP connections. Two runtimes ship behind features, each a small file:
//!
//! | feature | runtime | listener |
//! |---|---|---|
//! | `tokio` | `TokioRuntime`: the tokio runtime the caller runs in | `tokio::net::TcpListener` |
//! | `smol` | `SmolRuntime`: an async-executor of yours (or smol's global one), the `blocking` pool, async-io | `smol::net::TcpListener` |
//!
//! Another runtime is one more implementation of [`Runtime`]; see its contract in
//! [`runtime`].
//!
//! # Serving files on tokio
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use nodegate_core::auth::{AuthPolicy, Token};
//! use nodegate_core::keys::Roots;
//! use nodegate_core::request::ServerPolicy;
//! use nodegate_http::{Limits, LogStore, Server, ServerConfig, TokioRuntime};
//!
//! let token = Token::parse("change-me")?;
//! let config = ServerConfig {
//!     policy: ServerPolicy {
//!         auth: AuthPolicy::from_tokens(Some(&token), None),
//!         max_upload: Some(50 << 30),
//!     },
//!     roots: Roots {
//!         models: "/srv/localai/models".into(),
//!         staging: "/srv/localai/staging".into(),
//!         data: "/srv/localai/data".into(),
//!     },
//!     limits: Limits::default(),
//!     logs: LogStore::new(),
//!     readiness: None,
//! };
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:50050").await?;
//! let server = Server::<TokioRuntime>::new(config, listener)?;
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Serving files on smol
//!
//! The same server on an executor of two threads; async-io drives the sockets and timers:
//!
//! ```no_run
//! # #[cfg(feature = "smol")]
//! # fn serve(config: nodegate_http::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use nodegate_http::{Server, SmolRuntime};
//!
//! let executor = Arc::new(smol::Executor::new());
//! let (stop, stopped) = smol::channel::bounded::<()>(1);
//! // Two threads run the executor until `stop` is dropped.
//! let threads: Vec<_> = (0..2)
//!     .map(|_| {
//!         let executor = executor.clone();
//!         let stopped = stopped.clone();
//!         std::thread::spawn(move || smol::block_on(executor.run(stopped.recv())))
//!     })
//!     .collect();
//! let listener = smol::block_on(smol::net::TcpListener::bind("0.0.0.0:50050"))?;
//! let server = Server::with_runtime(SmolRuntime::new(executor.clone()), config, listener)?;
//! // Serves until the process is stopped; pass any future as the shutdown signal.
//! smol::block_on(executor.run(server.serve(std::future::pending())));
//! drop(stop);
//! for thread in threads {
//!     let _ = thread.join();
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Runtime gaps
//!
//! None in the server: the in-process file-server suite of the workspace (`tests/` of the
//! `nodegate` package: files API, traversal, auth matrix, robustness, hardening, metrics, the
//! staging client against the server) runs every test once per runtime, as `tokio::…` and
//! `smol::…`, and this crate's own tests check the [`Runtime`] contract on both. The suites
//! that start the `nodegate worker` program instead (`operability_logs`, `hardening_conns`,
//! `crash`, the start-up and cluster tests) test a process, whose server runs on tokio; the
//! smol worker program is `nodegate-smol`'s.

#![deny(missing_docs)]

mod access;
mod body;
mod compat;
mod files;
mod linger;
pub mod logs;
mod metrics;
pub mod node_files;
mod refusals;
pub mod runtime;
mod sendfile;
pub mod server;
mod shedding;
mod tasks;

pub use access::ACCESS_LOG_TARGET;
pub use body::ResponseBody;
pub use logs::LogStore;
pub use node_files::NatsRoots;
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use runtime::{Runtime, Unfinished};
#[cfg(feature = "smol")]
pub use runtime::{SmolConn, SmolRuntime};
pub use server::{Limits, Readiness, Server, ServerConfig, StartError};
