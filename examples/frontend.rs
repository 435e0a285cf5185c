//! The reference frontend: LocalAI's node endpoints (`/api/node/*`) with approval, per-node NATS
//! credentials minted from `LOCALAI_NATS_ACCOUNT_SEED`, the health monitor, admin routes behind
//! `NODEGATE_ADMIN_TOKEN`, and a registry kept in an embedded SQLite file.
//!
//! Settings (environment): LocalAI's frontend variables (`LOCALAI_ADDRESS`,
//! `LOCALAI_REGISTRATION_TOKEN`, `LOCALAI_REGISTRATION_REQUIRE_AUTH`,
//! `LOCALAI_DISTRIBUTED_REQUIRE_AUTH`, `LOCALAI_AUTO_APPROVE_NODES`, `LOCALAI_NATS_*`), plus
//! `NODEGATE_ADMIN_TOKEN` (admin routes; unset = disabled), `NODEGATE_REGISTRY` (SQLite file,
//! default `nodegate-frontend.sqlite`; `:memory:` keeps nothing), `NODEGATE_STALE_AFTER` (60s)
//! and `NODEGATE_HEALTH_CHECK_INTERVAL` (15s).
//!
//! ```text
//! LOCALAI_REGISTRATION_TOKEN=change-me NODEGATE_ADMIN_TOKEN=admin-secret \
//!     cargo run --example frontend
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nodegate::auth::{AuthPolicy, Token, TokenSet};
use nodegate::config::{Config, FileContents, Host, Role, Vars, known_variables, parse_duration};
use nodegate::nodes::api::FrontendPolicy;
use nodegate::posture::Posture;
use nodegate::tokio_adapter::frontend::store::{MemoryStore, RegistryStore, SqliteStore};
use nodegate::tokio_adapter::frontend::{self, FrontendSetup};
use tracing::error;

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    init_logging();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let vars = Vars::from_pairs(
        known_variables(Role::Frontend)
            .iter()
            .filter_map(|v| env(v.name).map(|value| (v.name, value))),
    );
    let mut files = FileContents::new();
    for (variable, path) in vars.files_to_read() {
        files.insert(variable, std::fs::read(&path).map_err(|e| e.to_string()));
    }
    let host = Host {
        hostname: None,
        pid: std::process::id(),
    };
    let config = match Config::parse(Role::Frontend, &vars, &files, &host) {
        Ok(config) => config,
        Err(problem) => {
            error!(
                variable = problem.variable(),
                "invalid configuration: {problem}"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let admin = match env("NODEGATE_ADMIN_TOKEN").map(|t| Token::parse(&t)) {
        None => None,
        Some(Ok(token)) => Some(TokenSet::new(&token, None)),
        Some(Err(e)) => {
            error!("invalid configuration: NODEGATE_ADMIN_TOKEN: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let (Some(admin), Some(token)) = (&admin, &config.registration.token)
        && admin.accepts(token.expose().as_bytes())
    {
        error!(
            "invalid configuration: NODEGATE_ADMIN_TOKEN must differ from \
             LOCALAI_REGISTRATION_TOKEN (every worker holds the registration token)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let duration = |name: &str, default: u64| match env(name) {
        None => Ok(Duration::from_secs(default)),
        Some(value) => parse_duration(&value)
            .map(|d| {
                if d.is_zero() {
                    Duration::from_secs(default)
                } else {
                    d
                }
            })
            .map_err(|e| format!("{name}: {e}")),
    };
    let (stale_after, sweep_every) = match (
        duration("NODEGATE_STALE_AFTER", 60),
        duration("NODEGATE_HEALTH_CHECK_INTERVAL", 15),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let minter = match frontend::minter_from(
        config.nats.account_seed.as_ref(),
        config.nats.worker_jwt_ttl,
    ) {
        Ok(minter) => minter,
        Err(e) => {
            error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A refused start touches nothing on disk: opening the SQLite store creates its file, so
    // the posture is judged first (`run_frontend` judges it again and reports the rest).
    if let Some(refusal) = Posture::evaluate(&config).refusal() {
        error!(
            variable = refusal.variable(),
            "refusing to start: {refusal}"
        );
        return ExitCode::from(1);
    }
    let registry = env("NODEGATE_REGISTRY").unwrap_or_else(|| "nodegate-frontend.sqlite".into());
    let store: Arc<dyn RegistryStore> = if registry == ":memory:" {
        Arc::new(MemoryStore::new())
    } else {
        match SqliteStore::open(std::path::Path::new(&registry)) {
            Ok(store) => Arc::new(store),
            Err(e) => {
                error!("{e} (check NODEGATE_REGISTRY)");
                return ExitCode::from(1);
            }
        }
    };
    let frontend_config = config
        .frontend
        .as_ref()
        .expect("Config::parse(Role::Frontend) yields frontend settings");
    let bind = go_address(&frontend_config.address);
    let setup = FrontendSetup {
        policy: FrontendPolicy {
            nodes: AuthPolicy::from_tokens(
                config.registration.token.as_ref(),
                config.registration.previous_token.as_ref(),
            ),
            admin,
            auto_approve: frontend_config.auto_approve_nodes,
        },
        store,
        minter,
        stale_after,
        sweep_every,
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
    ExitCode::from(runtime.block_on(frontend::run_frontend(config, setup, &bind)))
}

/// Go's `:8080` means every interface.
fn go_address(address: &str) -> String {
    match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_owned(),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    if std::env::var("NODEGATE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
