//! # nodegate-smol
//!
//! The smol adapter of nodegate: the cluster member on smol + async-io, carrying out what
//! `nodegate-core` decides. It makes no protocol decision of its own.
//!
//! - [`rt`]: the smol ↔ hyper 1 glue (I/O traits, executor, timer) and the runtime primitives
//!   the drivers use, in one place;
//! - [`nats`]: NATS driven by the core's sans-IO client over async-io sockets, TLS by
//!   futures-rustls, every credential mode the core supports;
//! - [`register`]: the HTTP(S) client of the frontend's node routes, on hyper's client
//!   connection;
//! - [`member`]: the driver of the core's start-up machine — registration, the file server
//!   (through [`member::FileService`]), NATS, heartbeats, signals, drain, deregistration.
//!
//! # Running a cluster member
//!
//! The supervisor worker from a parsed configuration, with a file server of your own behind
//! [`member::FileService`] (this is what `nodegate::cli::worker_smol` does after checking its
//! settings):
//!
//! ```no_run
//! use nodegate_core::config::{Config, FileContents, Host, Role, Vars};
//! use nodegate_core::keys::Roots;
//! use nodegate_smol::member::{FileService, Readiness, Serving, WorkerSetup, run_worker};
//!
//! struct MyFiles;
//! impl FileService for MyFiles {
//!     fn start(self: Box<Self>, bind: &str, readiness: Readiness) -> Result<Serving, String> {
//!         // Bind `bind`, serve `/readyz` from `readiness()`, answer the node's file subjects.
//!         # let _ = (bind, readiness);
//!         # unimplemented!()
//!     }
//! }
//!
//! let host = Host { hostname: Some("gpu-01".into()), pid: std::process::id() };
//! let vars = Vars::from_pairs(std::env::vars());
//! let config = Config::parse(Role::Worker, &vars, &FileContents::new(), &host).expect("valid");
//! let worker = config.worker.clone().expect("worker settings");
//! let setup = WorkerSetup {
//!     service: Box::new(MyFiles),
//!     bind: worker.http_bind(),
//!     roots: Roots {
//!         models: worker.models_dir(),
//!         staging: worker.staging_dir(),
//!         data: worker.data_dir(),
//!     },
//! };
//! let code: u8 = nodegate_smol::rt::block_on(run_worker(config, host, setup));
//! std::process::exit(code.into());
//! ```
//!
//! Where `nodegate-tokio` uses async-nats for NATS, this crate drives
//! [`nodegate_core::nats::NatsClient`], so both runtimes speak NATS with the same auth modes
//! and are tested against the same real `nats-server`.

#![deny(missing_docs)]

pub mod member;
pub mod nats;
pub mod register;
pub mod rt;
mod tls;
