//! # nodegate
//!
//! An authenticated, fail-closed data plane for LocalAI-style distributed inference clusters:
//! the worker file-transfer server, its security posture and its configuration, wire-compatible
//! with LocalAI's frontend and workers.
//!
//! This facade re-exports the modules of the runtime-free core (`nodegate-core`) at its root
//! and, behind the `tokio` feature (on by default), the tokio + hyper adapter as
//! [`tokio_adapter`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use nodegate_core::{
    auth, config, jwt, keys, logs, node_files, nodes, posture, range, registration, request,
    response, staging, startup, upload,
};

#[cfg(feature = "tokio")]
pub use nodegate_tokio as tokio_adapter;
