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
//! - [`nodes`]: the frontend's node registry and its `/api/node/*` routes;
//! - [`staging`]: the staging client — resumable uploads to a worker as a state machine, and the
//!   planners of downloads, listings and temp files;
//! - [`nats`]: the NATS client protocol as a parser, an encoder and a connection state machine;
//! - [`metrics`]: the worker's metrics — names, bounded labels and the Prometheus text format;
//! - [`response`]: every response described as data;
//! - [`roots`]: which storage roots may be served (not `/`, not nested).
//!
//! ## Driving it without a runtime
//!
//! An adapter hands the core a request head and the state of a key, and carries out the answer.
//! Here is a whole `PUT` of the worker's file server, with no socket, file or runtime — the
//! bytes are "streamed" from a slice and the disk is a [`upload::FileState`] value:
//!
//! ```
//! use http::{Request, StatusCode};
//! use nodegate_core::auth::{AuthPolicy, Token};
//! use nodegate_core::request::{Command, ServerPolicy, classify};
//! use nodegate_core::upload::{Entry, FileState, Finish, Sha256, UploadPlan, finish_full, plan_upload, upload_ok};
//!
//! let token = Token::parse("change-me").unwrap();
//! let policy = ServerPolicy {
//!     auth: AuthPolicy::from_tokens(Some(&token), None),
//!     max_upload: Some(1 << 30),
//! };
//! let body: &[u8] = b"GGUF model bytes";
//! let head = |auth: &str| {
//!     Request::put("/v1/files/models/llama/model.gguf")
//!         .header("Authorization", auth)
//!         .header("Content-Length", body.len())
//!         .header("X-Content-SHA256", Sha256::of(body).to_hex())
//!         .body(())
//!         .unwrap()
//!         .into_parts()
//!         .0
//! };
//!
//! // 1. Classify the head: authentication first, then the route, the key and the upload headers.
//! let refusal = classify(&head("Bearer wrong"), &policy).unwrap_err();
//! assert_eq!(refusal.reply.status, StatusCode::UNAUTHORIZED);
//! let Ok(Command::Put { target, upload }) = classify(&head("Bearer change-me"), &policy) else {
//!     panic!("an authenticated PUT of a valid key is an upload");
//! };
//! assert_eq!(target.rel(), "llama/model.gguf");
//!
//! // 2. Plan it against what is on disk: nothing yet, so a full upload into a temp file.
//! let nothing = FileState { entry: Entry::Missing, sidecar: None, partial: None, target: None, total: None };
//! let UploadPlan::WriteFull { max_len } = plan_upload(&upload, &nothing) else {
//!     panic!("a new key is written in full");
//! };
//! assert_eq!(max_len, Some(1 << 30));
//!
//! // 3. The adapter streams the body while hashing; the core decides what the bytes mean.
//! let Finish::Publish { sha256 } = finish_full(&upload, Sha256::of(body), body.len() as u64) else {
//!     panic!("the declared hash matches");
//! };
//! assert_eq!(sha256, Sha256::of(body));
//!
//! // 4. Publish (rename into place, write the sidecar), then send the reply the core built.
//! let reply = upload_ok("/srv/models/llama/model.gguf");
//! assert_eq!(reply.status, StatusCode::OK);
//! assert_eq!(&reply.body[..], b"{\"local_path\":\"/srv/models/llama/model.gguf\"}\n");
//! ```
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
pub mod metrics;
pub mod nats;
pub mod node_files;
pub mod nodes;
pub mod posture;
pub mod range;
pub mod refusal_log;
pub mod registration;
pub mod request;
pub mod response;
pub mod roots;
pub mod staging;
pub mod startup;
pub mod upload;
