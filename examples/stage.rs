//! The staging client — the same program as `nodegate stage` (see `nodegate::cli`): copies
//! files to and from a worker's file-transfer server (LocalAI's `/v1/files` API), resumably.
//! Exit codes: 0 done, 1 failed, 2 usage or bad input, 3 token refused, 130 interrupted.
//!
//! ```text
//! export LOCALAI_REGISTRATION_TOKEN=change-me
//! cargo run --example stage -- push model.gguf http://worker:50050 models/x.gguf
//! cargo run --example stage -- pull http://worker:50050 models/x.gguf ./x.gguf
//! cargo run --example stage -- ls   http://worker:50050 models/
//! cargo run --example stage -- temp http://worker:50050
//! ```

fn main() -> std::process::ExitCode {
    nodegate::cli::stage()
}
