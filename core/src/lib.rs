//! # nodegate-core
//!
//! The runtime-free core of nodegate, the authenticated data plane of LocalAI-style distributed
//! inference clusters. Every decision of the system lives here as a pure function or a value:
//!
//! - [`config`]: typed configuration of the three roles, parsed from (name, value) pairs;
//! - [`connections`]: which connections to shed when the server is full (heads and idle
//!   keep-alives first, oldest first), and the cap on upgraded log streams;
//! - [`posture`]: one evaluation per role — protected, anonymous (with loud warnings) or refused;
//! - [`auth`]: bearer-token checks with digests compared in constant time;
//! - [`jwt`]: NATS JWTs as data — worker permissions, minting through a caller's signer,
//!   unverified decoding of expiries;
//! - [`keys`]: percent-decoding, validation and routing of file keys to safe relative paths;
//! - [`upload`]: `Content-Range` and hash headers, and the resumable-upload planner;
//! - [`range`]: `Range` resolution of downloads (206 / 416);
//! - [`logs`]: backend log ring buffers and their JSON frames;
//! - [`refusal_log`]: refusal logs aggregated per reason and remote, one line per interval;
//! - [`request`]: classification of request heads into commands, auth first;
//! - [`registration`]: the bodies of `/api/node/*` and the meaning of the frontend's answers;
//! - [`startup`]: the life of a worker or agent worker as a state machine (register, serve,
//!   connect NATS, heartbeat, refresh credentials, drain, deregister);
//! - [`node_files`]: the worker's NATS file-staging requests and replies;
//! - [`response`]: every response described as data;
//! - [`roots`]: which storage roots may be served (not `/`, not nested).
//!
//! ## What this crate does not do
//! It performs no I/O: no sockets, no files, no environment, no clock, no async runtime. Time,
//! configuration and file state arrive as arguments; decisions leave as values that an adapter
//! (`nodegate-tokio`, …) carries out. It never panics on input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod connections;
pub mod jwt;
pub mod keys;
pub mod logs;
pub mod node_files;
pub mod posture;
pub mod range;
pub mod refusal_log;
pub mod registration;
pub mod request;
pub mod response;
pub mod roots;
pub mod startup;
pub mod upload;
