//! The reference nodegate worker: LocalAI's supervisor worker on tokio + hyper.
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

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nodegate::config::{Config, FileContents, Host, Role, Vars};
use nodegate::keys::Roots;
use nodegate::request::ServerPolicy;
use nodegate::tokio_adapter::member::{self, WorkerSetup};
use nodegate::tokio_adapter::{Limits, LogStore, ServerConfig};
use tracing::error;

/// Exit code for invalid configuration values.
const EXIT_CONFIG: u8 = 2;
/// Exit code when the posture refuses to start, or the server cannot start.
const EXIT_REFUSED: u8 = 1;

/// nodegate worker: LocalAI-compatible, fail-closed file-transfer server.
///
/// Every option can also be set through the environment variable shown with it; the
/// environment names are LocalAI's.
#[derive(Parser, Debug)]
#[command(name = "nodegate-worker", version, about, long_about = None)]
struct Args {
    /// Reachable host:port of this worker; its port is the gRPC base port (HTTP uses base-1).
    #[arg(long, env = "LOCALAI_ADDR")]
    addr: Option<String>,
    /// Base-port fallback when --addr is not set [default: 0.0.0.0:50051].
    #[arg(long, env = "LOCALAI_SERVE_ADDR")]
    serve_addr: Option<String>,
    /// Top of the backend gRPC port range (0 means 65535).
    #[arg(long, env = "LOCALAI_GRPC_MAX_PORT")]
    grpc_max_port: Option<String>,
    /// Bind address of the file-transfer server [default: 0.0.0.0:<base port - 1>].
    #[arg(long, env = "LOCALAI_HTTP_ADDR")]
    http_addr: Option<String>,
    /// gRPC address advertised to the frontend.
    #[arg(long, env = "LOCALAI_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// HTTP address advertised to the frontend (`http_address`).
    #[arg(long, env = "LOCALAI_ADVERTISE_HTTP_ADDR")]
    advertise_http_addr: Option<String>,
    /// Frontend base URL to register with; without it the worker runs standalone.
    #[arg(long, env = "LOCALAI_REGISTER_TO")]
    register_to: Option<String>,
    /// Registration name [default: hostname].
    #[arg(long, env = "LOCALAI_NODE_NAME")]
    node_name: Option<String>,
    /// Shared registration token: guards the file server, node endpoints and backend gRPC.
    #[arg(long, env = "LOCALAI_REGISTRATION_TOKEN", hide_env_values = true)]
    registration_token: Option<String>,
    /// File holding the registration token (trailing newline trimmed).
    #[arg(long, env = "LOCALAI_REGISTRATION_TOKEN_FILE")]
    registration_token_file: Option<String>,
    /// Previous registration token, still accepted while a rotation is in progress.
    #[arg(
        long,
        env = "LOCALAI_REGISTRATION_TOKEN_PREVIOUS",
        hide_env_values = true
    )]
    registration_token_previous: Option<String>,
    /// Refuse to start when no registration token is set.
    #[arg(long, env = "LOCALAI_REGISTRATION_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true")]
    registration_require_auth: Option<String>,
    /// Umbrella switch: implies registration and NATS authentication are required.
    #[arg(long, env = "LOCALAI_DISTRIBUTED_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true")]
    distributed_require_auth: Option<String>,
    /// Heartbeat period [default: 10s].
    #[arg(long, env = "LOCALAI_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<String>,
    /// Node labels, `k=v,k=v`.
    #[arg(long, env = "LOCALAI_NODE_LABELS")]
    node_labels: Option<String>,
    /// Replicas per model this node accepts [default: 1].
    #[arg(long, env = "LOCALAI_MAX_REPLICAS_PER_MODEL")]
    max_replicas_per_model: Option<String>,
    /// VRAM budget sent at registration (`80%`, `12GB`).
    #[arg(long, env = "LOCALAI_VRAM_BUDGET")]
    vram_budget: Option<String>,
    /// NATS URL; unset means the NATS layer is not configured.
    #[arg(long, env = "LOCALAI_NATS_URL")]
    nats_url: Option<String>,
    /// Static NATS user JWT (with --nats-user-seed).
    #[arg(long, env = "LOCALAI_NATS_JWT", hide_env_values = true)]
    nats_jwt: Option<String>,
    /// Static NATS user nkey seed (with --nats-jwt).
    #[arg(long, env = "LOCALAI_NATS_USER_SEED", hide_env_values = true)]
    nats_user_seed: Option<String>,
    /// Require authenticated NATS.
    #[arg(long, env = "LOCALAI_NATS_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true")]
    nats_require_auth: Option<String>,
    /// NATS token credential.
    #[arg(long, env = "LOCALAI_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// NATS user name (with --nats-password).
    #[arg(long, env = "LOCALAI_NATS_USER")]
    nats_user: Option<String>,
    /// NATS password (with --nats-user).
    #[arg(long, env = "LOCALAI_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// NATS nkey seed.
    #[arg(long, env = "LOCALAI_NATS_NKEY_SEED", hide_env_values = true)]
    nats_nkey_seed: Option<String>,
    /// NATS credentials file (JWT + seed).
    #[arg(long, env = "LOCALAI_NATS_CREDS_FILE")]
    nats_creds_file: Option<String>,
    /// CA bundle for NATS TLS.
    #[arg(long = "nats-tls-ca", env = "LOCALAI_NATS_TLS_CA")]
    nats_tls_ca: Option<String>,
    /// Client certificate for NATS mTLS (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", env = "LOCALAI_NATS_TLS_CERT")]
    nats_tls_cert: Option<String>,
    /// Client key for NATS mTLS (with --nats-tls-cert).
    #[arg(long = "nats-tls-key", env = "LOCALAI_NATS_TLS_KEY")]
    nats_tls_key: Option<String>,
    /// Models directory; staging and data are its siblings `../staging` and `../data`
    /// [default: ./models].
    #[arg(long, env = "LOCALAI_MODELS_PATH")]
    models_path: Option<String>,
    /// Largest accepted upload (`50GiB`, `100M`, bytes; 0 = unlimited) [default: 50GiB].
    #[arg(long, env = "LOCALAI_MAX_UPLOAD_SIZE")]
    max_upload_size: Option<String>,
    /// Time allowed to receive a request head [default: 30s].
    #[arg(long, env = "NODEGATE_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// Longest pause allowed inside a request body [default: 60s].
    #[arg(long, env = "NODEGATE_BODY_IDLE_TIMEOUT")]
    body_idle_timeout: Option<String>,
    /// Most connections served at once [default: 512].
    #[arg(long, env = "NODEGATE_MAX_CONNECTIONS")]
    max_connections: Option<String>,
    /// Log format: `plain` or `json` (filter with RUST_LOG).
    #[arg(long, env = "NODEGATE_LOG_FORMAT", default_value = "plain")]
    log_format: String,
}

impl Args {
    /// The settings as (LocalAI variable name, value) pairs, for the core to parse.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let fields: Vec<(&'static str, &Option<String>)> = vec![
            ("LOCALAI_ADDR", &self.addr),
            ("LOCALAI_SERVE_ADDR", &self.serve_addr),
            ("LOCALAI_GRPC_MAX_PORT", &self.grpc_max_port),
            ("LOCALAI_HTTP_ADDR", &self.http_addr),
            ("LOCALAI_ADVERTISE_ADDR", &self.advertise_addr),
            ("LOCALAI_ADVERTISE_HTTP_ADDR", &self.advertise_http_addr),
            ("LOCALAI_REGISTER_TO", &self.register_to),
            ("LOCALAI_NODE_NAME", &self.node_name),
            ("LOCALAI_REGISTRATION_TOKEN", &self.registration_token),
            (
                "LOCALAI_REGISTRATION_TOKEN_FILE",
                &self.registration_token_file,
            ),
            (
                "LOCALAI_REGISTRATION_TOKEN_PREVIOUS",
                &self.registration_token_previous,
            ),
            (
                "LOCALAI_REGISTRATION_REQUIRE_AUTH",
                &self.registration_require_auth,
            ),
            (
                "LOCALAI_DISTRIBUTED_REQUIRE_AUTH",
                &self.distributed_require_auth,
            ),
            ("LOCALAI_HEARTBEAT_INTERVAL", &self.heartbeat_interval),
            ("LOCALAI_NODE_LABELS", &self.node_labels),
            (
                "LOCALAI_MAX_REPLICAS_PER_MODEL",
                &self.max_replicas_per_model,
            ),
            ("LOCALAI_VRAM_BUDGET", &self.vram_budget),
            ("LOCALAI_NATS_URL", &self.nats_url),
            ("LOCALAI_NATS_JWT", &self.nats_jwt),
            ("LOCALAI_NATS_USER_SEED", &self.nats_user_seed),
            ("LOCALAI_NATS_REQUIRE_AUTH", &self.nats_require_auth),
            ("LOCALAI_NATS_TOKEN", &self.nats_token),
            ("LOCALAI_NATS_USER", &self.nats_user),
            ("LOCALAI_NATS_PASSWORD", &self.nats_password),
            ("LOCALAI_NATS_NKEY_SEED", &self.nats_nkey_seed),
            ("LOCALAI_NATS_CREDS_FILE", &self.nats_creds_file),
            ("LOCALAI_NATS_TLS_CA", &self.nats_tls_ca),
            ("LOCALAI_NATS_TLS_CERT", &self.nats_tls_cert),
            ("LOCALAI_NATS_TLS_KEY", &self.nats_tls_key),
            ("LOCALAI_MODELS_PATH", &self.models_path),
            ("LOCALAI_MAX_UPLOAD_SIZE", &self.max_upload_size),
            ("NODEGATE_HEADER_TIMEOUT", &self.header_timeout),
            ("NODEGATE_BODY_IDLE_TIMEOUT", &self.body_idle_timeout),
            ("NODEGATE_MAX_CONNECTIONS", &self.max_connections),
        ];
        fields
            .into_iter()
            .filter_map(|(name, value)| value.clone().map(|value| (name, value)))
            .collect()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format);

    // 1. Parse: bad values stop here, naming the variable.
    let vars = Vars::from_pairs(args.pairs());
    let mut files = FileContents::new();
    for (variable, path) in vars.files_to_read() {
        files.insert(variable, std::fs::read(&path).map_err(|e| e.to_string()));
    }
    let host = Host {
        hostname: hostname(),
        pid: std::process::id(),
    };
    let config = match Config::parse(Role::Worker, &vars, &files, &host) {
        Ok(config) => config,
        Err(problem) => {
            error!(
                variable = problem.variable(),
                "invalid configuration: {problem}"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // 2. From here the core's startup machine decides: it evaluates the posture first and
    //    asks to exit (refusal) before it asks for the file server, so nothing is bound or
    //    created for a refused start.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            error!("cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    runtime.block_on(run(config, host))
}

async fn run(config: Config, host: Host) -> ExitCode {
    // A file-size limit (RLIMIT_FSIZE) must fail the upload with EFBIG, not kill the worker:
    // listening for SIGXFSZ replaces its default action for the life of the process.
    let _file_size_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ));
    let worker = config
        .worker
        .as_ref()
        .expect("Config::parse(Role::Worker) always yields worker settings");
    let roots = match roots(
        &worker.models_path,
        &worker.staging_dir(),
        &worker.data_dir(),
    ) {
        Ok(roots) => roots,
        Err(error) => {
            error!("cannot resolve LOCALAI_MODELS_PATH: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let limits = Limits {
        header_read_timeout: worker.header_timeout,
        body_idle_timeout: worker.body_idle_timeout,
        max_connections: worker.max_connections,
        shutdown_grace: Duration::from_secs(5),
        ..Limits::default()
    };
    let setup = WorkerSetup {
        server: ServerConfig {
            policy: ServerPolicy {
                auth: config.auth_policy(),
                max_upload: worker.max_upload_size,
            },
            roots,
            limits,
            logs: LogStore::new(),
            readiness: None,
        },
        bind: worker.http_bind(),
    };
    ExitCode::from(member::run_worker(config, host, setup).await)
}

/// Makes the three roots absolute (relative to the current directory) and lexically clean.
fn roots(models: &Path, staging: &Path, data: &Path) -> std::io::Result<Roots> {
    let cwd = std::env::current_dir()?;
    let absolute = |p: &Path| clean(&cwd.join(p));
    Ok(Roots {
        models: absolute(models),
        staging: absolute(staging),
        data: absolute(data),
    })
}

fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
