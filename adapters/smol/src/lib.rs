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
//! Where `nodegate-tokio` uses async-nats for NATS, this crate drives
//! [`nodegate_core::nats::NatsClient`], so both runtimes speak NATS with the same auth modes
//! and are tested against the same real `nats-server`.

#![deny(missing_docs)]

pub mod member;
pub mod nats;
pub mod register;
pub mod rt;
mod tls;
