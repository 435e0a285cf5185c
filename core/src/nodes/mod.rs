//! The frontend's side of node registration: the registry of nodes and its decisions
//! ([`registry`]), and the `/api/node/*` + `/api/nodes/*` routes as one pure function
//! ([`api::handle`]) that the reference frontend drives.
//!
//! What nodegate keeps from LocalAI (spec §4): the routes, the bodies, the status codes, the
//! validation order of a registration, nodes keyed by name with a stable id, the token both in
//! the header and in the body of a registration. What it does better: tokens compared as
//! digests in constant time for every route; **no approval bypass** (D12) — resume,
//! re-registration and the health monitor never turn a node healthy that no administrator (or
//! auto-approval) approved; admin routes guarded by their own token.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use nodegate_core::auth::AuthPolicy;
//! use nodegate_core::nodes::api::{self, FrontendPolicy};
//! use nodegate_core::nodes::registry::Registry;
//!
//! let policy = FrontendPolicy { nodes: AuthPolicy::Anonymous, admin: None, auto_approve: false };
//! let mut registry = Registry::new();
//! let body = br#"{"name":"gpu1","address":"10.0.0.5:50051"}"#;
//! let mut ids = || "node-1".to_owned();
//! let handled = api::handle(&mut registry, &policy, &Method::POST, "/api/node/register",
//!     &HeaderMap::new(), body, 1_700_000_000, &mut ids, None).unwrap();
//! assert_eq!(handled.reply.status, 201);
//! assert_eq!(registry.by_name("gpu1").unwrap().status.as_str(), "pending");
//! ```

pub mod api;
pub mod registry;

#[cfg(test)]
mod tests;
