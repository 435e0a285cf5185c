//! # nodegate-tokio
//!
//! The tokio + hyper 1 adapter of nodegate: it binds sockets, reads and writes files and
//! carries out what `nodegate-core` decides. It makes no protocol decision of its own: every
//! request is classified by the core, every upload planned by the core, every response built
//! from the core's [`Reply`](nodegate_core::response::Reply).
//!
//! The [`server::Server`] serves LocalAI's worker file-transfer API (`/v1/files/*`,
//! `/v1/files-list/*`, `/v1/backend-logs*`, `/healthz`, `/readyz`) with:
//! - paths opened beneath their root, symlinks out of a root refused at open time;
//! - uploads streamed into temp files and renamed into place once verified and synced;
//! - resumable uploads appended to a hidden partial file, published on completion;
//! - one writer per key, bounded memory per transfer, header and body-idle timeouts, and a cap
//!   on concurrent connections.
//!
//! The [`member`] module makes the process a cluster member: it drives the core's startup
//! machine (registration with the frontend, NATS through async-nats, heartbeats, drain and
//! deregistration) for the supervisor worker ([`member::run_worker`]) and the agent worker
//! ([`member::start_agent`]).

#![deny(missing_docs)]

mod body;
mod files;
mod linger;
pub mod logs;
pub mod member;
mod refusals;
pub mod server;
mod shedding;
pub mod store;

pub use body::ResponseBody;
pub use logs::LogStore;
pub use server::{Limits, Readiness, Server, ServerConfig, StartError};
