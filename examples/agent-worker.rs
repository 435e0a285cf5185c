//! The reference agent worker: registers with the frontend as `node_type: agent`, connects to
//! NATS with the agent's credential (static, the service user, or minted by the frontend),
//! confirms every agent subscription, heartbeats, and logs each message it receives — the
//! starting point of an agent runtime of your own (`nodegate::tokio_adapter::member::start_agent`
//! hands you the connection and the subscriptions).
//!
//! It reads LocalAI's agent-worker environment variables (`LOCALAI_REGISTER_TO`,
//! `LOCALAI_NATS_URL`, `LOCALAI_REGISTRATION_TOKEN`, `LOCALAI_NATS_*`,
//! `LOCALAI_DISTRIBUTED_REQUIRE_AUTH`, …) and `NODEGATE_LOG_FORMAT` (`plain` or `json`).
//!
//! ```text
//! LOCALAI_REGISTER_TO=http://frontend:8080 LOCALAI_NATS_URL=nats://nats:4222 \
//!     LOCALAI_REGISTRATION_TOKEN=change-me cargo run --example agent-worker
//! ```

use std::process::ExitCode;

use futures_util::StreamExt as _;
use nodegate::config::{Config, FileContents, Host, Role, Vars, known_variables};
use nodegate::tokio_adapter::member;
use tracing::{error, info};

/// Exit code for invalid configuration values.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let json = std::env::var("NODEGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    init_logging(json);
    let vars = Vars::from_pairs(
        known_variables(Role::AgentWorker)
            .iter()
            .filter_map(|v| std::env::var(v.name).ok().map(|value| (v.name, value))),
    );
    let mut files = FileContents::new();
    for (variable, path) in vars.files_to_read() {
        files.insert(variable, std::fs::read(&path).map_err(|e| e.to_string()));
    }
    let host = Host {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty()),
        pid: std::process::id(),
    };
    let config = match Config::parse(Role::AgentWorker, &vars, &files, &host) {
        Ok(config) => config,
        Err(problem) => {
            error!(
                variable = problem.variable(),
                "invalid configuration: {problem}"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let mut agent = match member::start_agent(config, host).await {
            Ok(agent) => agent,
            Err(code) => return ExitCode::from(code),
        };
        for (subscription, mut subscriber) in agent.take_subscriptions() {
            tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    info!(
                        subject = %message.subject,
                        bytes = message.payload.len(),
                        reply = message.reply.is_some(),
                        "agent message received on {}",
                        subscription.subject
                    );
                }
            });
        }
        info!(
            node = agent.node_id(),
            "agent worker is serving its subjects"
        );
        ExitCode::from(agent.wait().await)
    })
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
