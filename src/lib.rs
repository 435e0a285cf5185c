//! # nodegate
//!
//! An authenticated, fail-closed data plane for LocalAI-style distributed inference clusters:
//! the worker file-transfer server, its security posture and its configuration, wire-compatible
//! with LocalAI's frontend and workers.
//!
//! This crate is the `nodegate` command ([`cli`], behind the `cli` feature, on by default) and
//! the library under it: it re-exports the modules of the runtime-free core
//! ([`nodegate_core`](../nodegate_core/index.html)) at its root and, behind the `tokio` feature, the tokio + hyper adapter
//! as [`tokio_adapter`](../nodegate_tokio/index.html) (`nodegate-tokio`) and, behind the `smol`
//! feature, the smol adapter as [`smol_adapter`](../nodegate_smol/index.html) (`nodegate-smol`).
//!
//! ```
//! use nodegate::config::{Config, FileContents, Host, Role, Vars};
//! use nodegate::posture::Posture;
//!
//! let host = Host { hostname: Some("gpu-01".into()), pid: 1 };
//! let vars = Vars::from_pairs([("LOCALAI_REGISTRATION_REQUIRE_AUTH", "true")]);
//! let config = Config::parse(Role::Worker, &vars, &FileContents::new(), &host).unwrap();
//! // Required but missing: the worker refuses before binding anything.
//! let refusal = Posture::evaluate(&config).refusal().cloned().unwrap();
//! assert_eq!(refusal.variable(), "LOCALAI_REGISTRATION_TOKEN");
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use nodegate_core::{
    auth, config, connections, jwt, keys, logs, metrics, nats, node_files, nodes, posture, range,
    refusal_log, registration, request, response, roots, staging, startup, upload,
};

#[cfg(feature = "tokio")]
pub use nodegate_tokio as tokio_adapter;

#[cfg(feature = "smol")]
pub use nodegate_smol as smol_adapter;

#[cfg(feature = "cli")]
pub mod cli;
