//! # nodegate-core
//!
//! The runtime-free core of nodegate, the authenticated data plane of LocalAI-style distributed
//! inference clusters. Every decision of the system lives here as a pure function or a value:
//!
//! - [`config`]: typed configuration of the three roles, parsed from (name, value) pairs;
//! - [`posture`]: one evaluation per role — protected, anonymous (with loud warnings) or refused;
//! - [`auth`]: bearer-token checks with digests compared in constant time;
//! - [`jwt`]: NATS JWTs as data — worker permissions, minting through a caller's signer,
//!   unverified decoding of expiries;
//! - [`keys`]: percent-decoding, validation and routing of file keys to safe relative paths;
//! - [`upload`]: `Content-Range` and hash headers, and the resumable-upload planner;
//! - [`range`]: `Range` resolution of downloads (206 / 416);
//! - [`logs`]: backend log ring buffers and their JSON frames;
//! - [`request`]: classification of request heads into commands, auth first;
//! - [`registration`]: the bodies of `/api/node/*` and the meaning of the frontend's answers;
//! - [`startup`]: the life of a worker or agent worker as a state machine (register, serve,
//!   connect NATS, heartbeat, refresh credentials, drain, deregister);
//! - [`node_files`]: the worker's NATS file-staging requests and replies;
//! - [`nodes`]: the frontend's node registry and its `/api/node/*` routes;
//! - [`nats`]: the NATS client protocol as a parser, an encoder and a connection state machine;
//! - [`response`]: every response described as data.
//!
//! ## What this crate does not do
//! It performs no I/O: no sockets, no files, no environment, no clock, no async runtime. Time,
//! configuration and file state arrive as arguments; decisions leave as values that an adapter
//! (`nodegate-tokio`, …) carries out. It never panics on input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod jwt;
pub mod keys;
pub mod logs;
pub mod nats;
pub mod node_files;
pub mod nodes;
pub mod posture;
pub mod range;
pub mod registration;
pub mod request;
pub mod response;
pub mod startup;
pub mod upload;
