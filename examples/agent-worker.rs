//! The reference agent worker — the same program as `nodegate agent-worker` (see
//! `nodegate::cli`): registers with the frontend as `node_type: agent`, connects to NATS with
//! the agent's credential (static, the service user, or minted by the frontend), confirms every
//! agent subscription, heartbeats, and logs each message it receives — the starting point of an
//! agent runtime of your own (`nodegate::tokio_adapter::member::start_agent` hands you the
//! connection and the subscriptions).
//!
//! ```text
//! LOCALAI_REGISTER_TO=http://frontend:8080 LOCALAI_NATS_URL=nats://nats:4222 \
//!     LOCALAI_REGISTRATION_TOKEN=change-me cargo run --example agent-worker
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::agent_worker()
}
