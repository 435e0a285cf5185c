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
//! - [`state_cache`]: when a `HEAD` may reuse a file state read before (stamps unchanged);
//! - [`range`]: `Range` resolution of downloads (206 / 416);
//! - [`file_fault`]: what a failed file read or write answers (404, 400, 507 or a bare 500);
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
//! ## Writing an adapter
//!
//! An adapter (a *driver*) links this crate into a runtime: it owns the sockets, the files, the
//! clock and the environment, and this crate owns every decision. Three drivers exist to copy
//! from: `examples/embed.rs` (package `nodegate-embed`), the smallest complete one — the file
//! server's `HEAD`, `GET` and `PUT` and a standalone start-up on blocking `std::net` sockets and
//! threads, with no async runtime in its dependency tree; the tokio adapter (`nodegate-tokio`,
//! `adapters/tokio/`), the whole worker, agent worker and frontend on tokio + hyper; and the
//! smol adapter (`nodegate-smol`, `adapters/smol/`), the worker's cluster member on smol with
//! this crate's own NATS protocol. The two async adapters share one hyper file server,
//! `nodegate-http`, written once over a small `Runtime` trait (spawn, blocking pool, timers,
//! accept): a new async runtime needs an implementation of that trait, not a new server.
//!
//! **What the core decides.**
//! - Settings and posture: [`config::Config::parse`] from (name, value) pairs (the driver
//!   collects them from flags and the environment, and reads the files
//!   [`config::Vars::files_to_read`] names), then [`posture::Posture::evaluate`].
//! - Requests: [`request::classify`] turns a request head (`http::request::Parts`) into a
//!   [`request::Command`], or a [`request::Refusal`] that carries the reply to send — framing,
//!   route, authentication ([`auth`], before anything else is looked at), method, the key
//!   ([`keys`]: decoded once, validated, routed to a root and a safe relative path) and the
//!   upload headers.
//! - Files: [`upload::answer_head`] and [`upload::plan_upload`] from a [`upload::FileState`]
//!   the driver reads; [`upload::finish_full`], [`upload::after_append`] and
//!   [`upload::finish_range`] once the body is written; [`upload::RateCheck`] for slow bodies;
//!   [`range::resolve_range`] for downloads; [`roots::check_roots`] for the roots themselves;
//!   [`state_cache::StateCache`] for which file states may be reused, from the stamps the
//!   driver observes.
//! - Replies: every response is a [`response::Reply`] value (status, headers, body) that the
//!   driver writes as it is.
//! - Lifecycles, as machines: [`startup::Startup`] (the posture first, then registration and
//!   its retries, when to start the file server, which NATS credential to use and what a NATS
//!   failure means, heartbeats, credential refresh, drain, the exit code),
//!   [`connections::ConnectionTable`] (which connection to shed), [`refusal_log`],
//!   [`staging::Upload`] (the staging client).
//! - NATS: [`nats::NatsClient`] is the client protocol without I/O (handshake for every
//!   credential mode, keepalive, subscriptions, request-reply, reconnect decisions) for drivers
//!   that bring no NATS library (the smol adapter drives it over async-io); a driver that does
//!   (the tokio adapter uses `async-nats`) reports the outcomes to the start-up machine, which judges them ([`startup::judge_connection`]).
//!
//! **What the driver does.**
//! 1. *Carry out the effects* the core asks for: bind, accept, read and write bytes, send the
//!    HTTP requests of [`startup::Effect`], open and write files. Every file effect goes through
//!    the `nodegate-store` crate (`RootDir`: every path opened beneath its root through a
//!    capability handle, so a symbolic link out of the root is refused at open time; exclusive
//!    temp files removed unless published; atomic sidecars; renames that sync the directory) —
//!    do not re-implement them. Publish in the order the [`upload`] module documents.
//! 2. *Feed the results back* through the matching `handle_*` call
//!    ([`startup::Startup::handle_file_server`], [`nats::NatsClient::handle_input`], …) or the
//!    next planning call (a streamed body's hash and length go to [`upload::finish_full`]).
//! 3. *Pass time in*: the core reads no clock. [`startup`] takes wall-clock time since the
//!    Unix epoch ([`startup::Time`]: minted JWTs expire at a Unix timestamp) and [`nats`] the
//!    same type (feed it the same clock); [`connections`], [`refusal_log`], [`staging`] and
//!    [`upload::RateCheck`] take any monotonic clock.
//! 4. *Drain before waiting.* After creating a machine and after **every** input, poll its
//!    outputs until it has nothing more to say, and only then block on I/O or a timer:
//!    [`startup::Startup::poll_output`] until [`startup::Effect::SleepUntil`] or
//!    [`startup::Effect::Wait`]; [`nats::NatsClient::poll_transmit`] until `None`, then
//!    [`nats::NatsClient::poll_event`] until `None`, then wait for input or
//!    [`nats::NatsClient::poll_timeout`]; [`staging::Upload::poll_output`] until it waits,
//!    sleeps or ends. At a deadline, call the machine's `handle_timeout`. An effect left in the
//!    queue is an effect nothing will carry out until the next input.
//! 5. *Stay thin.* What a driver keeps for itself is resource handling — threads or tasks,
//!    buffer sizes, socket timeouts, how many connections it holds. An `if` about the protocol
//!    in a driver belongs in this crate, with its tests.
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
pub mod file_fault;
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
pub mod state_cache;
pub mod upload;
