//! # nodegate-tokio
//!
//! The tokio + hyper 1 adapter of nodegate: it binds sockets, reads and writes files and
//! carries out what `nodegate-core` decides. It makes no protocol decision of its own: every
//! request is classified by the core, every upload planned by the core, every response built
//! from the core's [`Reply`](nodegate_core::response::Reply).
//!
//! The [`server::Server`] serves LocalAI's worker file-transfer API (`/v1/files/*`,
//! `/v1/files-list/*`, `/v1/backend-logs*`, `/healthz`, `/readyz`): it is `nodegate-http`'s
//! runtime-generic server ([`nodegate_http::Server`]) on [`TokioRuntime`], re-exported here
//! with its configuration types so callers name one crate. The same server runs on smol in
//! `nodegate-smol`.
//!
//! The [`member`] module makes the process a cluster member: it drives the core's startup
//! machine (registration with the frontend, NATS through async-nats, heartbeats, drain and
//! deregistration) for the supervisor worker ([`member::run_worker`]) and the agent worker
//! ([`member::start_agent`]).
//!
//! The [`stage`] module is the staging client: push, pull, list and temp files against a
//! worker, driving the core's resumable-upload machine.
//!
//! # Serving files
//!
//! A file server of your own, over roots you choose, until Ctrl-C:
//!
//! ```no_run
//! use nodegate_core::auth::{AuthPolicy, Token};
//! use nodegate_core::keys::Roots;
//! use nodegate_core::request::ServerPolicy;
//! use nodegate_tokio::{Limits, LogStore, Server, ServerConfig};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
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
//! let server = Server::new(config, listener)?;
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Running a cluster member
//!
//! The whole supervisor worker — posture, registration, file server, NATS, heartbeats, drain —
//! from a parsed configuration; this is what `nodegate worker` does after checking its settings:
//!
//! ```no_run
//! use nodegate_core::config::{Config, FileContents, Host, Role, Vars};
//! use nodegate_core::keys::Roots;
//! use nodegate_core::request::ServerPolicy;
//! use nodegate_tokio::member::{WorkerSetup, run_worker};
//! use nodegate_tokio::{Limits, LogStore, ServerConfig};
//!
//! # async fn worker() -> u8 {
//! let host = Host { hostname: Some("gpu-01".into()), pid: std::process::id() };
//! let vars = Vars::from_pairs(std::env::vars());
//! let config = Config::parse(Role::Worker, &vars, &FileContents::new(), &host).expect("valid settings");
//! let worker = config.worker.clone().expect("worker settings");
//! let setup = WorkerSetup {
//!     server: ServerConfig {
//!         policy: ServerPolicy { auth: config.auth_policy(), max_upload: worker.max_upload_size },
//!         roots: Roots {
//!             models: worker.models_dir(),
//!             staging: worker.staging_dir(),
//!             data: worker.data_dir(),
//!         },
//!         limits: Limits::default(),
//!         logs: LogStore::new(),
//!         readiness: None,
//!     },
//!     bind: worker.http_bind(),
//! };
//! run_worker(config, host, setup).await // the exit status
//! # }
//! ```
//!
//! An agent worker hands you its authenticated NATS connection and subscriptions instead:
//!
//! ```no_run
//! use nodegate_core::config::{Config, FileContents, Host, Role, Vars};
//!
//! # async fn agent() -> u8 {
//! let host = Host { hostname: None, pid: std::process::id() };
//! let vars = Vars::from_pairs(std::env::vars());
//! let config = Config::parse(Role::AgentWorker, &vars, &FileContents::new(), &host).expect("valid");
//! let mut agent = match nodegate_tokio::member::start_agent(config, host).await {
//!     Ok(agent) => agent,
//!     Err(code) => return code, // refused or rejected; the reason was logged
//! };
//! for (subscription, _subscriber) in agent.take_subscriptions() {
//!     println!("subscribed to {}", subscription.subject);
//! }
//! agent.wait().await
//! # }
//! ```

#![deny(missing_docs)]

pub mod frontend;
pub mod member;
pub mod stage;
pub use nodegate_http::logs;
pub use nodegate_store as store;

pub mod server {
    //! The file-transfer server on tokio: [`nodegate_http::server`] with
    //! [`TokioRuntime`](nodegate_http::TokioRuntime).

    pub use nodegate_http::server::{Limits, Readiness, ServerConfig, StartError};

    /// The file-transfer server on the tokio runtime the caller runs in;
    /// `Server::new(config, tokio::net::TcpListener)`.
    pub type Server = nodegate_http::Server<nodegate_http::TokioRuntime>;
}

pub use nodegate_http::{LogStore, ResponseBody, TokioRuntime};
pub use server::{Limits, Readiness, Server, ServerConfig, StartError};
