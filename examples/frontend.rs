//! The reference frontend — the same program as `nodegate frontend` (see `nodegate::cli`):
//! LocalAI's node endpoints (`/api/node/*`) with approval, per-node NATS credentials minted
//! from `LOCALAI_NATS_ACCOUNT_SEED`, the health monitor, admin routes behind
//! `NODEGATE_ADMIN_TOKEN`, and a registry kept in an embedded SQLite file (`NODEGATE_REGISTRY`).
//! `cargo run --example frontend -- --help` lists every setting.
//!
//! ```text
//! LOCALAI_REGISTRATION_TOKEN=change-me NODEGATE_ADMIN_TOKEN=admin-secret \
//!     cargo run --example frontend
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::frontend()
}
