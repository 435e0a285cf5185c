//! The NATS set-up — the same program as `nodegate nats-setup` (see `nodegate::cli`): writes an
//! operator, an account, the frontend's service user and a `nats-server.conf` (operator mode,
//! memory resolver) into DIR, keeping existing keys, every file mode 0600, and prints the
//! environment lines the frontend needs (no seed is ever printed).
//!
//! ```text
//! cargo run --example nats-setup -- ./nats 4222
//! nats-server -c ./nats/nats-server.conf
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::nats_setup()
}
