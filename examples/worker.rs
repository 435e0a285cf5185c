//! The reference nodegate worker: LocalAI's supervisor worker on tokio + hyper — the same
//! program as `nodegate worker` (see `nodegate::cli`).
//!
//! It reads LocalAI's flags and environment variables, evaluates the security posture before
//! touching the network or the disk, refuses to start when authentication is required but not
//! configured, registers with the frontend (`LOCALAI_REGISTER_TO`), serves `/v1/files*`,
//! `/v1/files-list/*`, `/v1/backend-logs*`, `/healthz` and `/readyz`, connects to NATS
//! (`LOCALAI_NATS_URL`) and answers its node subjects, heartbeats, and on SIGINT or SIGTERM
//! drains, deregisters and exits 0. Without `LOCALAI_REGISTER_TO` it serves files only.
//!
//! ```text
//! LOCALAI_REGISTRATION_TOKEN=change-me LOCALAI_MODELS_PATH=/srv/models \
//!     cargo run --release --example worker
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::worker()
}
