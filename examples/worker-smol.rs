//! The reference nodegate worker on smol: `nodegate worker` with its cluster member driven by
//! `nodegate-smol` — the same flags, the same posture output and the same refusals, because it
//! runs the same settings, preflight and start-up machine (see `nodegate::cli::worker_smol`).
//! Registration, NATS (the core's protocol over async-io), heartbeats, signals, drain and
//! deregistration run on smol, and so does the file-transfer server: `nodegate-http`'s, the
//! same code as the tokio worker's, on `SmolRuntime`.
//!
//! ```text
//! LOCALAI_REGISTRATION_TOKEN=change-me LOCALAI_MODELS_PATH=/srv/models \
//!     cargo run --release --example worker-smol
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::worker_smol()
}
