//! Typed configuration of the three roles, parsed from (name, value) pairs.
//!
//! An adapter collects the variables of its role from flags and the environment into [`Vars`]
//! (an empty value counts as unset), reads the files that [`Vars::files_to_read`] names into
//! [`FileContents`], and calls [`Config::parse`]. The result is either a [`Config`] whose values
//! are all valid, or the first [`ConfigError`], whose `Display` is
//! `<VARIABLE>: <problem and what to do>` and never contains a secret. The adapter prints it and
//! exits with status 2 before binding anything. Whether the configuration is *safe* is a separate
//! question answered by [`crate::posture`].
//!
//! Variable names, defaults and meanings are LocalAI's (spec §6.1–§6.3), plus a few of nodegate's
//! own; they live in one table, [`SETTINGS`] ([`settings`]), and [`known_variables`] lists those
//! of a role. Variables a role does not know are ignored.
//!
//! ```
//! use nodegate_core::config::{Config, FileContents, Host, Role, Vars};
//!
//! let host = Host { hostname: Some("gpu-01".into()), pid: 1 };
//! let vars = Vars::from_pairs([("LOCALAI_HTTP_ADDR", ":50150"), ("LOCALAI_MAX_UPLOAD_SIZE", "2GiB")]);
//! let config = Config::parse(Role::Worker, &vars, &FileContents::new(), &host).unwrap();
//! let worker = config.worker.as_ref().unwrap();
//! assert_eq!(worker.http_bind(), "0.0.0.0:50150");
//! assert_eq!(worker.max_upload_size, Some(2 << 30));
//!
//! let bad = Vars::from_pairs([("NODEGATE_LOG_FORMAT", "xml")]);
//! let error = Config::parse(Role::Worker, &bad, &FileContents::new(), &host).unwrap_err();
//! assert_eq!(error.variable(), "NODEGATE_LOG_FORMAT");
//! assert_eq!(error.example().as_deref(), Some("NODEGATE_LOG_FORMAT=json"));
//! ```
//!
//! # Policies
//!
//! - **Booleans**: Go's `strconv.ParseBool` set (`1 t T TRUE true True 0 f F FALSE false False`)
//!   plus `yes`/`no`/`on`/`off` in any case. Anything else is an error.
//! - **Durations**: Go syntax (`10s`, `1m30s`, `500ms`, `1.5h`, `0`; units `ns us µs ms s m h`).
//!   Negative or unparsable values are errors (LocalAI panics on a negative heartbeat, spec §8.30).
//!   `LOCALAI_HEARTBEAT_INTERVAL=0` means the default 10 s, `LOCALAI_NATS_WORKER_JWT_TTL=0` the
//!   default 24 h (as in LocalAI); nodegate's durations likewise take `0` for their default,
//!   except `NODEGATE_REFUSAL_LOG_INTERVAL`, where `0` logs every refusal.
//! - **Worker limits**: counts (`NODEGATE_MAX_CONNECTIONS`, `NODEGATE_MAX_HEAD_PER_REMOTE`,
//!   `NODEGATE_MAX_LOG_STREAMS`) are whole numbers from 1 to 2^20; `NODEGATE_MIN_BODY_RATE` is
//!   bytes per second up to 2^30, `0` turning the check off.
//! - **Frontend**: `LOCALAI_ADDRESS` must be `host:port` with a port in 1..65535 (Go's `:PORT`
//!   means every interface, [`FrontendConfig::bind`]). `NODEGATE_ADMIN_TOKEN` is validated like
//!   the registration token and must differ from it and from the previous one (every worker
//!   holds them). `NODEGATE_REGISTRY=:memory:` keeps nothing; any other value is a file path.
//!   `LOCALAI_DISTRIBUTED=true` requires `LOCALAI_NATS_URL`.
//! - **Sizes** (`LOCALAI_MAX_UPLOAD_SIZE`): plain bytes, or a number followed by `K`, `M`, `G` or
//!   `T` (powers of 1024), optionally followed by `iB` or `B`, case-insensitive: `50GiB`, `100M`,
//!   `1073741824`. `0` means unlimited (LocalAI treats ≤ 0 as unlimited, security.md SC-13); a
//!   leading `-` is an error. Default 50 GiB = 53 687 091 200 bytes.
//! - **Registration token**: `LOCALAI_REGISTRATION_TOKEN` is validated with
//!   [`Token::parse`]: only-whitespace values and characters outside RFC 6750 `b64token` are
//!   errors (SC-03, SC-05; the value is never echoed). `LOCALAI_REGISTRATION_TOKEN_FILE` names a
//!   file the adapter reads; trailing `\r` and `\n` are trimmed (SC-04), then the same validation
//!   applies; an empty file is an error; setting both variables is an error.
//!   `LOCALAI_REGISTRATION_TOKEN_PREVIOUS` (accepted as well during a rotation, frontend and
//!   supervisor worker) without a current token is an error.
//! - **NATS credentials**: at most one static mode among `LOCALAI_NATS_JWT`+`LOCALAI_NATS_USER_SEED`,
//!   `LOCALAI_NATS_TOKEN`, `LOCALAI_NATS_USER`+`LOCALAI_NATS_PASSWORD`, `LOCALAI_NATS_NKEY_SEED`
//!   and `LOCALAI_NATS_CREDS_FILE`. Half of a pair (JWT without seed, user without password,
//!   service JWT without service seed, TLS cert without key, and the reverses) is an error that
//!   names the missing variable (SC-08). These pairing errors are **configuration errors** (exit
//!   2), not posture refusals: the process stops before binding either way. The frontend's and
//!   agent worker's service credentials (`LOCALAI_NATS_SERVICE_JWT`/`_SEED`) are a separate
//!   source; a static mode, when set, takes precedence over them (as the agent worker's
//!   environment JWT does in LocalAI). Credentials embedded in `LOCALAI_NATS_URL`
//!   (`nats://user:pass@host`) are not counted as a credential source.
//! - **Files**: every file variable (`LOCALAI_REGISTRATION_TOKEN_FILE`, `LOCALAI_NATS_CREDS_FILE`,
//!   `LOCALAI_NATS_TLS_CA`/`_CERT`/`_KEY`) must have been read by the adapter; an unreadable or
//!   empty file is an error naming its variable and the I/O error, never the contents (SC-09).
//! - **Ports and addresses** (supervisor worker, spec §2.2 and §7.7): the base port is the port of
//!   `LOCALAI_ADDR` if it is `host:port` with a port in 1..65535, else that of
//!   `LOCALAI_SERVE_ADDR` (default `0.0.0.0:50051`), else 50051; unusable values fall through
//!   (listed by [`WorkerConfig::unusable_port_vars`] for the adapter to warn about). The HTTP bind
//!   is `LOCALAI_HTTP_ADDR` (which must be `host:port` with a port in 1..65535; Go's `:PORT`
//!   means every interface, `0.0.0.0:PORT`, as in LocalAI) or `0.0.0.0:<base-1>`. A base port of 1 would give the file server port 0 (spec §8.33) and is
//!   an error naming the variable that set it. `LOCALAI_GRPC_MAX_PORT` 0 means 65535; a maximum
//!   below the base port is an error.
//! - **Models path**: `LOCALAI_MODELS_PATH` defaults to `models`, relative to the current directory
//!   (LocalAI's `${basepath}/models`); the string is kept as given and the adapter makes it
//!   absolute. Staging and data directories are derived lexically (Go `filepath.Join`).
//! - **Node name**: defaults to the host name (`agent-<hostname>` for the agent worker), or
//!   `localhost` when the adapter could not determine it.
//! - **Logging**: `NODEGATE_LOG_FORMAT` is `plain` or `json` (any case); anything else is an
//!   error. `RUST_LOG` is kept as given (default `info`) for the adapter's log library to check.
//! - Values of non-secret variables are quoted in errors (at most 64 characters); values of secret
//!   variables never are.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::auth::{AuthPolicy, Token, TokenError};

pub mod settings;

use settings::FILE_VARS;
pub use settings::*;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// The three roles of a cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The frontend (`local-ai run`): node registration, staging files to workers.
    Frontend,
    /// The supervisor worker (`local-ai worker`): file-transfer server, backends, NATS.
    Worker,
    /// The agent worker (`local-ai agent-worker`): registration and NATS, no file server.
    AgentWorker,
}

impl Role {
    /// Every role, for iteration.
    pub const ALL: [Role; 3] = [Role::Frontend, Role::Worker, Role::AgentWorker];

    /// A short name (`frontend`, `worker`, `agent-worker`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frontend => "frontend",
            Self::Worker => "worker",
            Self::AgentWorker => "agent-worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration variables by name. An empty value counts as unset; when a name appears more
/// than once, the last pair wins.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Vars {
    map: BTreeMap<String, String>,
}

impl Vars {
    /// Collects (name, value) pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, or `None` when unset or empty.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Variables naming files the adapter must read before parsing: (variable, path).
    #[must_use]
    pub fn files_to_read(&self) -> Vec<(&'static str, String)> {
        FILE_VARS
            .iter()
            .filter_map(|&var| self.get(var).map(|path| (var, path.to_owned())))
            .collect()
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: only names are shown.
        f.debug_set().entries(self.map.keys()).finish()
    }
}

/// The contents of the files named by [`Vars::files_to_read`], as the adapter read them.
#[derive(Clone, Default)]
pub struct FileContents {
    map: BTreeMap<String, Result<Vec<u8>, String>>,
}

impl FileContents {
    /// No files read.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the result of reading the file of `var`: its bytes, or the I/O error text (which
    /// must not contain the file's contents).
    pub fn insert(&mut self, var: &str, result: Result<Vec<u8>, String>) {
        self.map.insert(var.to_owned(), result);
    }

    fn get(&self, var: &str) -> Option<&Result<Vec<u8>, String>> {
        self.map.get(var)
    }
}

impl fmt::Debug for FileContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents may be secrets (token file, key, creds): only sizes are shown.
        let mut map = f.debug_map();
        for (var, result) in &self.map {
            match result {
                Ok(bytes) => map.entry(var, &format_args!("{} bytes", bytes.len())),
                Err(error) => map.entry(var, &format_args!("error: {error}")),
            };
        }
        map.finish()
    }
}

/// Facts about the host that the adapter supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host name, when it could be determined.
    pub hostname: Option<String>,
    /// The process id.
    pub pid: u32,
}

impl Host {
    /// The host name, or `localhost` when unknown or empty (LocalAI's fallback).
    #[must_use]
    pub fn hostname_or_localhost(&self) -> &str {
        self.hostname
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
    }
}

/// A secret value (NATS password, seed, JWT, token; agent API token): `Debug` and `Display`
/// print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for adapters that must transmit it. Never log the result.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The role this configuration is for.
    pub role: Role,
    /// Registration token, require-auth switches and registration settings.
    pub registration: RegistrationConfig,
    /// NATS connection settings.
    pub nats: NatsConfig,
    /// Supervisor-worker settings (`Some` exactly for [`Role::Worker`]).
    pub worker: Option<WorkerConfig>,
    /// Frontend settings (`Some` exactly for [`Role::Frontend`]).
    pub frontend: Option<FrontendConfig>,
    /// Agent-worker settings (`Some` exactly for [`Role::AgentWorker`]).
    pub agent: Option<AgentConfig>,
    /// Log format and filter (every role).
    pub logging: LoggingConfig,
}

/// How the process logs (`NODEGATE_LOG_FORMAT`, `RUST_LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `NODEGATE_LOG_FORMAT` (default plain).
    pub format: LogFormat,
    /// `RUST_LOG` as given (default `info`). Its directive syntax belongs to the adapter's log
    /// library, which checks it and reports a bad one with [`ConfigProblem::InvalidLogFilter`].
    pub filter: String,
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line, with the same fields.
    Json,
}

/// Registration token and registration settings.
#[derive(Clone)]
pub struct RegistrationConfig {
    /// The registration token; `None` = anonymous mode.
    pub token: Option<Token>,
    /// The previous token, still accepted during a rotation (frontend and worker only).
    pub previous_token: Option<Token>,
    /// `LOCALAI_REGISTRATION_REQUIRE_AUTH` (always `false` for the agent worker, which has no
    /// such switch).
    pub require_auth: bool,
    /// `LOCALAI_DISTRIBUTED_REQUIRE_AUTH`, the umbrella switch.
    pub distributed_require_auth: bool,
    /// Frontend base URL to register with (workers; `None` on the frontend).
    pub register_to: Option<String>,
    /// Registration name (workers; the host name on the frontend, where it is unused).
    pub node_name: String,
    /// Heartbeat period (workers; the default on the frontend, where it is unused).
    pub heartbeat_interval: Duration,
    /// The variable the token came from ([`REGISTRATION_TOKEN`] or [`REGISTRATION_TOKEN_FILE`]).
    pub token_source: Option<&'static str>,
}

impl fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("token", &self.token)
            .field("previous_token", &self.previous_token)
            .field("require_auth", &self.require_auth)
            .field("distributed_require_auth", &self.distributed_require_auth)
            .field(
                "register_to",
                &self.register_to.as_deref().map(redact_userinfo),
            )
            .field("node_name", &self.node_name)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("token_source", &self.token_source)
            .finish()
    }
}

/// NATS connection settings.
#[derive(Clone)]
pub struct NatsConfig {
    /// The server URL; `None` = NATS not used (a worker serving files only).
    pub url: Option<String>,
    /// `LOCALAI_NATS_REQUIRE_AUTH` (the granular switch; see [`Config::nats_auth_required`]).
    pub require_auth: bool,
    /// The static credential mode, if any.
    pub credentials: NatsCredentials,
    /// TLS files.
    pub tls: NatsTls,
    /// Service user JWT and seed (frontend, agent worker).
    pub service: Option<ServiceCredentials>,
    /// Account seed used to mint worker JWTs (frontend).
    pub account_seed: Option<Secret>,
    /// Lifetime of minted worker JWTs (frontend; 0 means the default 24 h).
    pub worker_jwt_ttl: Duration,
}

impl NatsConfig {
    /// The URL with any `user:password@` replaced by `***:***@`, for logs.
    #[must_use]
    pub fn url_for_display(&self) -> Option<String> {
        self.url.as_deref().map(redact_userinfo)
    }

    /// Whether TLS is configured (any of CA, cert, key set).
    #[must_use]
    pub fn tls_enabled(&self) -> bool {
        self.tls.ca.is_some() || self.tls.cert.is_some() || self.tls.key.is_some()
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url_for_display())
            .field("require_auth", &self.require_auth)
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .field("service", &self.service)
            .field("account_seed", &self.account_seed)
            .field("worker_jwt_ttl", &self.worker_jwt_ttl)
            .finish()
    }
}

/// The static NATS credential mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    /// No static credential.
    None,
    /// `LOCALAI_NATS_TOKEN`.
    Token(Secret),
    /// `LOCALAI_NATS_USER` + `LOCALAI_NATS_PASSWORD`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `LOCALAI_NATS_NKEY_SEED`.
    Nkey {
        /// The nkey seed.
        seed: Secret,
    },
    /// `LOCALAI_NATS_CREDS_FILE` (read again by the adapter when connecting).
    CredsFile {
        /// The file path.
        path: String,
    },
    /// `LOCALAI_NATS_JWT` + `LOCALAI_NATS_USER_SEED`.
    Jwt {
        /// The user JWT.
        jwt: Secret,
        /// The user nkey seed.
        seed: Secret,
    },
}

impl NatsCredentials {
    /// The variable that selects this mode (`None` for [`NatsCredentials::None`]).
    #[must_use]
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Token(_) => Some(NATS_TOKEN),
            Self::UserPassword { .. } => Some(NATS_USER),
            Self::Nkey { .. } => Some(NATS_NKEY_SEED),
            Self::CredsFile { .. } => Some(NATS_CREDS_FILE),
            Self::Jwt { .. } => Some(NATS_JWT),
        }
    }

    /// Whether a static credential is configured.
    #[must_use]
    pub fn is_some(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// NATS service user credentials (`LOCALAI_NATS_SERVICE_JWT` + `LOCALAI_NATS_SERVICE_SEED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCredentials {
    /// The service user JWT.
    pub jwt: Secret,
    /// The service user seed.
    pub seed: Secret,
}

/// NATS TLS files (paths; each was checked to be readable and non-empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// CA certificate file.
    pub ca: Option<String>,
    /// Client certificate file (always together with `key`).
    pub cert: Option<String>,
    /// Client key file (always together with `cert`).
    pub key: Option<String>,
}

/// Supervisor-worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `LOCALAI_ADDR`: reachable `host:port`, as given.
    pub addr: Option<String>,
    /// `LOCALAI_SERVE_ADDR`, as given or the default `0.0.0.0:50051`.
    pub serve_addr: String,
    /// `LOCALAI_HTTP_ADDR`: file-server bind, as given.
    pub http_addr: Option<String>,
    /// `LOCALAI_ADVERTISE_ADDR`, as given.
    pub advertise_addr: Option<String>,
    /// `LOCALAI_ADVERTISE_HTTP_ADDR`, as given.
    pub advertise_http_addr: Option<String>,
    /// Top of the backend port range (`LOCALAI_GRPC_MAX_PORT`; 0 is stored as 65535).
    pub grpc_max_port: u16,
    /// `LOCALAI_MODELS_PATH`, as given (default `models`).
    pub models_path: PathBuf,
    /// Largest accepted upload body in bytes; `None` = unlimited.
    pub max_upload_size: Option<u64>,
    /// `LOCALAI_NODE_LABELS` as key/value pairs.
    pub node_labels: BTreeMap<String, String>,
    /// `LOCALAI_MAX_REPLICAS_PER_MODEL` (default 1).
    pub max_replicas_per_model: u32,
    /// `LOCALAI_VRAM_BUDGET`, sent as given.
    pub vram_budget: Option<String>,
    /// `NODEGATE_HEADER_TIMEOUT`: time allowed to receive a request head (default 30s).
    pub header_timeout: Duration,
    /// `NODEGATE_BODY_IDLE_TIMEOUT`: longest pause inside a request body (default 60s). An
    /// idle timeout, not a total one: multi-gigabyte uploads are legitimate.
    pub body_idle_timeout: Duration,
    /// `NODEGATE_MAX_CONNECTIONS`: most connections served at once (default 512).
    pub max_connections: usize,
    /// `NODEGATE_FIRST_HEAD_TIMEOUT`: time a new connection has to send its first request head
    /// (default 5s).
    pub first_head_timeout: Duration,
    /// `NODEGATE_MAX_HEAD_PER_REMOTE`: connections one remote address may hold while they send
    /// their first head (default 128).
    pub max_head_per_remote: usize,
    /// `NODEGATE_MAX_LOG_STREAMS`: most log WebSockets open at once (default 128).
    pub max_log_streams: usize,
    /// `NODEGATE_MIN_BODY_RATE`: slowest average upload body rate in bytes per second over
    /// [`body_rate_window`](Self::body_rate_window); 0 turns the check off (default 1024).
    pub min_body_rate: u64,
    /// `NODEGATE_BODY_RATE_WINDOW`: the window of the body rate (default 60s).
    pub body_rate_window: Duration,
    /// `NODEGATE_REFUSAL_LOG_INTERVAL`: interval of the refusal summaries; zero logs every
    /// refusal (default 10s).
    pub refusal_log_interval: Duration,
    /// `NODEGATE_METRICS_PUBLIC`: `/metrics` without the token (default false).
    pub metrics_public: bool,
}

impl WorkerConfig {
    /// The gRPC base port (spec §2.2 `effectiveBasePort`).
    #[must_use]
    pub fn base_port(&self) -> u16 {
        self.base_port_and_source().0
    }

    /// The variable the base port came from ([`ADDR`] or [`SERVE_ADDR`]; `None` when it is
    /// the built-in 50051 or the default serve address).
    #[must_use]
    pub fn base_port_source(&self) -> Option<&'static str> {
        self.base_port_and_source().1
    }

    /// Variables that were set but gave no usable port and were skipped (LocalAI warns).
    #[must_use]
    pub fn unusable_port_vars(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (var, value) in self.port_candidates() {
            if port_of(value).is_some() {
                break;
            }
            out.push(var);
        }
        out
    }

    /// The file-transfer server bind address: `LOCALAI_HTTP_ADDR`, else `0.0.0.0:<base-1>`.
    /// An empty host (Go's `:PORT`) means every interface, as in LocalAI: `0.0.0.0:PORT`.
    #[must_use]
    pub fn http_bind(&self) -> String {
        match &self.http_addr {
            Some(addr) if addr.starts_with(':') => format!("0.0.0.0{addr}"),
            Some(addr) => addr.clone(),
            None => format!("0.0.0.0:{}", self.base_port().saturating_sub(1)),
        }
    }

    /// The gRPC address sent to the frontend: `LOCALAI_ADVERTISE_ADDR`, else `LOCALAI_ADDR`,
    /// else `<hostname>:<base>` (`localhost` when `hostname` is empty).
    #[must_use]
    pub fn advertise(&self, hostname: &str) -> String {
        if let Some(addr) = self.advertise_addr.as_ref().or(self.addr.as_ref()) {
            return addr.clone();
        }
        let host = if hostname.is_empty() {
            "localhost"
        } else {
            hostname
        };
        join_host_port(host, self.base_port())
    }

    /// The file-transfer address sent to the frontend (`http_address`):
    /// `LOCALAI_ADVERTISE_HTTP_ADDR`, else the host of [`WorkerConfig::advertise`] with port
    /// base−1 (the *base* port, not the advertised one); host `localhost` when the advertise
    /// address has no port to split off.
    #[must_use]
    pub fn advertise_http(&self, hostname: &str) -> String {
        if let Some(addr) = &self.advertise_http_addr {
            return addr.clone();
        }
        let advertise = self.advertise(hostname);
        let host = split_host_port(&advertise).map_or("localhost", |(host, _)| host);
        join_host_port(host, self.base_port().saturating_sub(1))
    }

    /// The models directory, lexically cleaned.
    #[must_use]
    pub fn models_dir(&self) -> PathBuf {
        clean_path(&self.models_path)
    }

    /// The staging directory: `<models>/../staging`, lexically cleaned like Go `filepath.Join`.
    #[must_use]
    pub fn staging_dir(&self) -> PathBuf {
        clean_path(&self.models_path.join("..").join("staging"))
    }

    /// The data directory: `<models>/../data`, lexically cleaned like Go `filepath.Join`.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        clean_path(&self.models_path.join("..").join("data"))
    }

    fn port_candidates(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.addr
            .as_deref()
            .map(|a| (ADDR, a))
            .into_iter()
            .chain(std::iter::once((SERVE_ADDR, self.serve_addr.as_str())))
    }

    fn base_port_and_source(&self) -> (u16, Option<&'static str>) {
        for (var, value) in self.port_candidates() {
            if let Some(port) = port_of(value) {
                let source = if var == SERVE_ADDR && value == DEFAULT_SERVE_ADDR {
                    None
                } else {
                    Some(var)
                };
                return (port, source);
            }
        }
        (DEFAULT_BASE_PORT, None)
    }
}

/// Frontend settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    /// `LOCALAI_ADDRESS`, the HTTP API listen address as given (default `:8080`); see
    /// [`FrontendConfig::bind`].
    pub address: String,
    /// `LOCALAI_DISTRIBUTED`.
    pub distributed: bool,
    /// `LOCALAI_AUTO_APPROVE_NODES`.
    pub auto_approve_nodes: bool,
    /// `NODEGATE_ADMIN_TOKEN`: guards the admin routes; `None` disables them. Never equal to a
    /// registration token (current or previous).
    pub admin_token: Option<Token>,
    /// `NODEGATE_REGISTRY`: where registered nodes are kept.
    pub registry: RegistryLocation,
    /// `NODEGATE_STALE_AFTER`: a node silent for longer is marked offline (default 60s).
    pub stale_after: Duration,
    /// `NODEGATE_HEALTH_CHECK_INTERVAL`: period of the health monitor (default 15s).
    pub health_check_interval: Duration,
}

impl FrontendConfig {
    /// The listen address: `LOCALAI_ADDRESS`, where an empty host (Go's `:PORT`) means every
    /// interface, `0.0.0.0:PORT`, as in LocalAI.
    #[must_use]
    pub fn bind(&self) -> String {
        if self.address.starts_with(':') {
            format!("0.0.0.0{}", self.address)
        } else {
            self.address.clone()
        }
    }
}

/// Where the frontend keeps its registry (`NODEGATE_REGISTRY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// An SQLite file (relative paths are relative to the current directory), created when
    /// the frontend starts serving.
    File(PathBuf),
    /// `:memory:`: nothing is kept across restarts.
    Memory,
}

/// Agent-worker settings.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `LOCALAI_API_URL` (default: `LOCALAI_REGISTER_TO`).
    pub api_url: Option<String>,
    /// `LOCALAI_API_TOKEN` (default: the token provisioned at registration).
    pub api_token: Option<Secret>,
    /// `LOCALAI_AGENT_SUBJECT` (default `agent.execute`).
    pub subject: String,
    /// `LOCALAI_AGENT_QUEUE` (default `agent-workers`).
    pub queue: String,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("api_url", &self.api_url.as_deref().map(redact_userinfo))
            .field("api_token", &self.api_token)
            .field("subject", &self.subject)
            .field("queue", &self.queue)
            .finish()
    }
}

/// A configuration variable with a bad value. `Display`: `<VARIABLE>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    variable: &'static str,
    problem: ConfigProblem,
}

impl ConfigError {
    /// The variable to fix.
    #[must_use]
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// What is wrong with it.
    #[must_use]
    pub fn problem(&self) -> &ConfigProblem {
        &self.problem
    }

    /// An error about `variable`. Adapters use it for what only they can check (a log filter's
    /// syntax, a bind address, a root on disk), so every such message has the same form.
    #[must_use]
    pub fn new(variable: &'static str, problem: ConfigProblem) -> Self {
        Self { variable, problem }
    }

    /// A valid assignment of the variable (`LOCALAI_MAX_UPLOAD_SIZE=100GiB`) from the settings
    /// table, to print after the error; never a real secret.
    #[must_use]
    pub fn example(&self) -> Option<String> {
        setting(self.variable).map(Setting::example_assignment)
    }
}

/// What is wrong with a variable. Quoted values are those of non-secret variables only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigProblem {
    /// Not a boolean.
    #[error("{value:?} is not a boolean; use true or false (also 1/0, yes/no, on/off)")]
    NotABool {
        /// The value (truncated).
        value: String,
    },
    /// Not a Go duration.
    #[error(
        "{value:?} is not a duration ({reason}); use Go syntax such as 10s, 1m30s, 500ms or 1h"
    )]
    InvalidDuration {
        /// The value (truncated).
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A negative duration.
    #[error("{value:?} is negative; durations must not be negative")]
    NegativeDuration {
        /// The value (truncated).
        value: String,
    },
    /// Not a size.
    #[error(
        "{value:?} is not a size; use bytes or a K/M/G/T suffix (powers of 1024) such as 50GiB, \
         100M or 1073741824, or 0 for unlimited"
    )]
    InvalidSize {
        /// The value (truncated).
        value: String,
    },
    /// A negative size.
    #[error("{value:?} is negative; use 0 for unlimited")]
    NegativeSize {
        /// The value (truncated).
        value: String,
    },
    /// Not a non-negative integer in range.
    #[error("{value:?} is not a whole number between {min} and {max}")]
    InvalidNumber {
        /// The value (truncated).
        value: String,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Not `host:port` with a port in 1..65535.
    #[error(
        "{value:?} is not host:port with a port from 1 to 65535 (for example 0.0.0.0:50050 or [::]:50050)"
    )]
    InvalidAddress {
        /// The value (truncated).
        value: String,
    },
    /// Base port 1 would put the file server on port 0.
    #[error(
        "gives base port 1, so the file-transfer server would get port 0 (base port - 1); use a \
         port of 2 or more, or set LOCALAI_HTTP_ADDR and LOCALAI_ADVERTISE_HTTP_ADDR"
    )]
    HttpPortZero,
    /// The backend port range is empty.
    #[error("{max} is below the base port {base}; set it to at least {base}, or 0 for 65535")]
    MaxPortBelowBase {
        /// The configured maximum.
        max: u16,
        /// The base port.
        base: u16,
    },
    /// Not a list of `key=value` labels.
    #[error("{value:?} is not a comma-separated list of key=value labels")]
    InvalidLabels {
        /// The value (truncated).
        value: String,
    },
    /// An invalid token (the value is never repeated).
    #[error("{0}")]
    InvalidToken(TokenError),
    /// A secret made only of whitespace.
    #[error("contains only whitespace; set a real value or leave it unset")]
    OnlyWhitespace,
    /// A file variable whose file the adapter did not read.
    #[error("file {path:?} was not read before parsing the configuration")]
    FileNotRead {
        /// The path.
        path: String,
    },
    /// A file that could not be read.
    #[error("cannot read {path:?}: {error}")]
    UnreadableFile {
        /// The path.
        path: String,
        /// The I/O error text.
        error: String,
    },
    /// An empty file.
    #[error("file {path:?} is empty")]
    EmptyFile {
        /// The path.
        path: String,
    },
    /// A token file that is not UTF-8 text.
    #[error("file {path:?} is not UTF-8 text")]
    NotUtf8 {
        /// The path.
        path: String,
    },
    /// Two variables that exclude each other are both set.
    #[error("cannot be combined with {other}; set only one of them")]
    Conflict {
        /// The other variable.
        other: &'static str,
    },
    /// Half of a pair.
    #[error("is required when {partner} is set; the two must be set together")]
    MissingPartner {
        /// The variable that is set.
        partner: &'static str,
    },
    /// A previous token without a current one.
    #[error(
        "is set but LOCALAI_REGISTRATION_TOKEN is not; the previous token is only accepted next \
         to a current one during a rotation"
    )]
    PreviousWithoutCurrent,
    /// A variable that this configuration requires.
    #[error("is required when {because} is set")]
    Required {
        /// The variable that requires it.
        because: &'static str,
    },
    /// Not one of the accepted words.
    #[error("{value:?} is not one of {choices}")]
    InvalidChoice {
        /// The value (truncated).
        value: String,
        /// The accepted words, in prose.
        choices: &'static str,
    },
    /// A log filter the log library refuses.
    #[error(
        "{value:?} is not a log filter ({reason}); use a level such as info or debug, or \
         directives such as info,nodegate_tokio=debug"
    )]
    InvalidLogFilter {
        /// The value (truncated).
        value: String,
        /// What the log library said.
        reason: String,
    },
    /// An address that cannot be bound or resolved.
    #[error("cannot listen on {value:?}: {reason}")]
    UnusableAddress {
        /// The address.
        value: String,
        /// Why, in words.
        reason: String,
    },
    /// The address is taken by another process.
    #[error(
        "{value:?} is already in use by another process; stop that process or choose a free port"
    )]
    AddressInUse {
        /// The address.
        value: String,
    },
    /// The admin token is a registration token, which every worker holds.
    #[error(
        "must differ from {other} (every worker holds the registration token, so it would open \
         the admin routes to every worker); choose another token"
    )]
    SameAsRegistrationToken {
        /// The registration token variable it equals.
        other: &'static str,
    },
    /// Not a NATS account nkey seed.
    #[error("{}", account_seed_problem(.found))]
    InvalidAccountSeed {
        /// The kind of seed found (`user`, `operator`); `None` when it is no nkey seed at all.
        found: Option<&'static str>,
    },
    /// A file the program must create or open is not usable.
    #[error("cannot open {path:?}: {reason}")]
    UnusableFile {
        /// The file.
        path: String,
        /// Why, in words.
        reason: String,
    },
    /// A directory the worker must use is not usable.
    #[error("{path:?} {reason}")]
    UnusableDirectory {
        /// The directory.
        path: String,
        /// Why, in words (`is a file, not a directory`, `is not writable: …`).
        reason: String,
    },
}

fn account_seed_problem(found: &Option<&'static str>) -> String {
    match found {
        None => "is not a valid nkey seed; use the account seed (SA…) nats-setup wrote to \
                 account.nk"
            .to_owned(),
        Some(kind) => format!("must be an account seed (SA…), not a {kind} seed"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Parses the configuration of `role`.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, in the order of [`known_variables`].
    pub fn parse(
        role: Role,
        vars: &Vars,
        files: &FileContents,
        host: &Host,
    ) -> Result<Config, ConfigError> {
        let r = Reader { role, vars, files };
        let logging = parse_logging(&r)?;
        let registration = parse_registration(&r, host)?;
        let nats = parse_nats(&r)?;
        let (mut worker, mut frontend, mut agent) = (None, None, None);
        match role {
            Role::Frontend => frontend = Some(parse_frontend(&r, &registration, &nats)?),
            Role::Worker => worker = Some(parse_worker(&r)?),
            Role::AgentWorker => {
                agent = Some(AgentConfig {
                    api_url: r
                        .text(API_URL)
                        .map(str::to_owned)
                        .or_else(|| registration.register_to.clone()),
                    api_token: r.secret(API_TOKEN)?,
                    subject: r
                        .text(AGENT_SUBJECT)
                        .unwrap_or(DEFAULT_AGENT_SUBJECT)
                        .to_owned(),
                    queue: r
                        .text(AGENT_QUEUE)
                        .unwrap_or(DEFAULT_AGENT_QUEUE)
                        .to_owned(),
                });
            }
        }
        Ok(Config {
            role,
            registration,
            nats,
            worker,
            frontend,
            agent,
            logging,
        })
    }

    /// The auth policy of the worker file server / node endpoints.
    #[must_use]
    pub fn auth_policy(&self) -> AuthPolicy {
        AuthPolicy::from_tokens(
            self.registration.token.as_ref(),
            self.registration.previous_token.as_ref(),
        )
    }

    /// Whether an empty registration token must refuse startup:
    /// `LOCALAI_REGISTRATION_REQUIRE_AUTH || LOCALAI_DISTRIBUTED_REQUIRE_AUTH` on the frontend and
    /// the supervisor worker, never on the agent worker (spec §7.4, §8.2).
    #[must_use]
    pub fn registration_auth_required(&self) -> bool {
        match self.role {
            Role::Frontend | Role::Worker => {
                self.registration.require_auth || self.registration.distributed_require_auth
            }
            Role::AgentWorker => false,
        }
    }

    /// Whether NATS credentials are required:
    /// `LOCALAI_NATS_REQUIRE_AUTH || LOCALAI_DISTRIBUTED_REQUIRE_AUTH` (spec §7.4), every role.
    #[must_use]
    pub fn nats_auth_required(&self) -> bool {
        self.nats.require_auth || self.registration.distributed_require_auth
    }
}

/// Replaces the `user:password@` part of a URL with `***:***@` (LocalAI `sanitize.URL`), so the
/// URL can be logged.
#[must_use]
pub fn redact_userinfo(url: &str) -> String {
    // NATS clients also accept `user:pass@host:port` without a scheme.
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let rest = url.get(authority_start..).unwrap_or("");
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_len).unwrap_or("");
    match authority.rfind('@') {
        Some(at) => format!(
            "{}***:***{}",
            url.get(..authority_start).unwrap_or(""),
            rest.get(at..).unwrap_or("")
        ),
        None => url.to_owned(),
    }
}

/// Parses a Go duration (`time.ParseDuration` syntax).
///
/// # Errors
/// [`ConfigProblem::InvalidDuration`] or [`ConfigProblem::NegativeDuration`].
pub fn parse_duration(value: &str) -> Result<Duration, ConfigProblem> {
    let invalid = |reason| ConfigProblem::InvalidDuration {
        value: shown(value),
        reason,
    };
    let (negative, mut s) = match value.as_bytes().first() {
        Some(b'-') => (true, value.get(1..).unwrap_or("")),
        Some(b'+') => (false, value.get(1..).unwrap_or("")),
        _ => (false, value),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid("empty"));
    }
    const MAX_NANOS: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = s.split_at(int_len);
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole * 10 + u128::from(d - b'0');
            if whole > MAX_NANOS {
                return Err(invalid("out of range"));
            }
        }
        s = after;
        let (mut frac, mut scale) = (0u128, 1u128);
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (frac_digits, after) = rest.split_at(frac_len);
            for d in frac_digits.bytes() {
                // Digits beyond nanosecond precision of an hour cannot matter; stop scaling.
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(d - b'0');
                    scale *= 10;
                }
            }
            s = after;
            if int_len == 0 && frac_len == 0 {
                return Err(invalid("missing number"));
            }
        } else if int_len == 0 {
            return Err(invalid("missing number"));
        }
        let unit_len = s
            .char_indices()
            .find(|&(_, c)| c.is_ascii_digit() || c == '.')
            .map_or(s.len(), |(i, _)| i);
        let (unit, after) = s.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid("unknown unit")),
        };
        s = after;
        let part = whole
            .checked_mul(nanos_per_unit)
            .and_then(|w| w.checked_add(frac * nanos_per_unit / scale))
            .ok_or_else(|| invalid("out of range"))?;
        total = total
            .checked_add(part)
            .filter(|&t| t <= MAX_NANOS)
            .ok_or_else(|| invalid("out of range"))?;
    }
    if negative && total > 0 {
        return Err(ConfigProblem::NegativeDuration {
            value: shown(value),
        });
    }
    let nanos = u64::try_from(total).map_err(|_| invalid("out of range"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a boolean: Go `strconv.ParseBool` plus `yes`/`no`/`on`/`off` in any case.
///
/// # Errors
/// [`ConfigProblem::NotABool`].
pub fn parse_bool(value: &str) -> Result<bool, ConfigProblem> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        v if v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("on") => Ok(true),
        v if v.eq_ignore_ascii_case("no") || v.eq_ignore_ascii_case("off") => Ok(false),
        _ => Err(ConfigProblem::NotABool {
            value: shown(value),
        }),
    }
}

/// Parses an upload size; `Ok(None)` means unlimited (`0`).
///
/// # Errors
/// [`ConfigProblem::InvalidSize`] or [`ConfigProblem::NegativeSize`].
pub fn parse_size(value: &str) -> Result<Option<u64>, ConfigProblem> {
    let invalid = || ConfigProblem::InvalidSize {
        value: shown(value),
    };
    if value.starts_with('-') {
        return Err(ConfigProblem::NegativeSize {
            value: shown(value),
        });
    }
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(invalid());
    }
    let (number, suffix) = value.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let suffix = suffix.to_ascii_lowercase();
    let multiplier: u64 = match suffix.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(invalid)?;
    Ok((bytes != 0).then_some(bytes))
}

/// Splits `host:port` like Go's `net.SplitHostPort` (IPv6 hosts in brackets).
#[must_use]
pub fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = rest.get(..end)?;
        let port = rest.get(end + 1..)?.strip_prefix(':')?;
        if port.contains(['[', ']']) || host.contains('[') {
            return None;
        }
        return Some((host, port));
    }
    let colon = addr.rfind(':')?;
    let (host, port) = (addr.get(..colon)?, addr.get(colon + 1..)?);
    if host.contains([':', '[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

/// Joins a host and a port like Go's `net.JoinHostPort` (brackets around IPv6 hosts).
#[must_use]
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn is_known(role: Role, name: &str) -> bool {
    known_variables(role).iter().any(|v| v.name == name)
}

/// Quotes at most 64 characters of a non-secret value.
fn shown(value: &str) -> String {
    value.chars().take(64).collect()
}

struct Reader<'a> {
    role: Role,
    vars: &'a Vars,
    files: &'a FileContents,
}

impl<'a> Reader<'a> {
    /// The raw value of a variable this role knows (unknown ones are ignored by construction).
    fn text(&self, name: &'static str) -> Option<&'a str> {
        debug_assert!(
            is_known(self.role, name),
            "{name} is read for {} but not listed in known_variables",
            self.role
        );
        self.vars.get(name)
    }

    fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        self.text(name)
            .map_or(Ok(false), parse_bool)
            .map_err(|p| ConfigError::new(name, p))
    }

    /// A duration where `0` means the default.
    fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.duration_or_zero(name, default)? {
            Duration::ZERO => Ok(default),
            d => Ok(d),
        }
    }

    /// A duration where `0` means zero (the setting documents what zero turns off).
    fn duration_or_zero(
        &self,
        name: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|p| ConfigError::new(name, p)),
        }
    }

    /// A count of things (connections, streams) from 1 to 2^20.
    fn count(&self, name: &'static str, default: usize) -> Result<usize, ConfigError> {
        let n = self.number(name, default as u64, 1, 1 << 20)?;
        Ok(usize::try_from(n).unwrap_or(default))
    }

    fn secret(&self, name: &'static str) -> Result<Option<Secret>, ConfigError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) if v.chars().all(char::is_whitespace) => {
                Err(ConfigError::new(name, ConfigProblem::OnlyWhitespace))
            }
            Some(v) => Ok(Some(Secret::new(v))),
        }
    }

    fn number(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = self.text(name) else {
            return Ok(default);
        };
        v.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    ConfigProblem::InvalidNumber {
                        value: shown(v),
                        min,
                        max,
                    },
                )
            })
    }

    /// The path and contents of a file variable; the file must have been read and be non-empty.
    fn file(&self, name: &'static str) -> Result<Option<(String, &'a [u8])>, ConfigError> {
        let Some(path) = self.text(name) else {
            return Ok(None);
        };
        let path = path.to_owned();
        match self.files.get(name) {
            None => Err(ConfigError::new(name, ConfigProblem::FileNotRead { path })),
            Some(Err(error)) => Err(ConfigError::new(
                name,
                ConfigProblem::UnreadableFile {
                    path,
                    error: error.clone(),
                },
            )),
            Some(Ok(bytes)) if bytes.is_empty() => {
                Err(ConfigError::new(name, ConfigProblem::EmptyFile { path }))
            }
            Some(Ok(bytes)) => Ok(Some((path, bytes.as_slice()))),
        }
    }

    fn token(&self, name: &'static str) -> Result<Option<Token>, ConfigError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => Token::parse(v)
                .map(Some)
                .map_err(|e| ConfigError::new(name, ConfigProblem::InvalidToken(e))),
        }
    }
}

fn parse_logging(r: &Reader<'_>) -> Result<LoggingConfig, ConfigError> {
    let format = match r.text(LOG_FORMAT) {
        None => LogFormat::Plain,
        Some(v) if v.eq_ignore_ascii_case("plain") => LogFormat::Plain,
        Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(v) => {
            return Err(ConfigError::new(
                LOG_FORMAT,
                ConfigProblem::InvalidChoice {
                    value: shown(v),
                    choices: "plain or json",
                },
            ));
        }
    };
    let filter = r.text(LOG_FILTER).unwrap_or(DEFAULT_LOG_FILTER).to_owned();
    Ok(LoggingConfig { format, filter })
}

fn parse_registration(r: &Reader<'_>, host: &Host) -> Result<RegistrationConfig, ConfigError> {
    let role = r.role;
    let direct = r.token(REGISTRATION_TOKEN)?;
    let from_file = match r.file(REGISTRATION_TOKEN_FILE)? {
        None => None,
        Some((path, bytes)) => {
            if direct.is_some() {
                return Err(ConfigError::new(
                    REGISTRATION_TOKEN_FILE,
                    ConfigProblem::Conflict {
                        other: REGISTRATION_TOKEN,
                    },
                ));
            }
            let text = std::str::from_utf8(bytes).map_err(|_| {
                ConfigError::new(
                    REGISTRATION_TOKEN_FILE,
                    ConfigProblem::NotUtf8 { path: path.clone() },
                )
            })?;
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                return Err(ConfigError::new(
                    REGISTRATION_TOKEN_FILE,
                    ConfigProblem::EmptyFile { path },
                ));
            }
            let token = Token::parse(text).map_err(|e| {
                ConfigError::new(REGISTRATION_TOKEN_FILE, ConfigProblem::InvalidToken(e))
            })?;
            Some(token)
        }
    };
    let (token, token_source) = match (direct, from_file) {
        (Some(t), _) => (Some(t), Some(REGISTRATION_TOKEN)),
        (None, Some(t)) => (Some(t), Some(REGISTRATION_TOKEN_FILE)),
        (None, None) => (None, None),
    };
    let (previous_token, require_auth) = match role {
        Role::Frontend | Role::Worker => {
            let previous = r.token(REGISTRATION_TOKEN_PREVIOUS)?;
            if previous.is_some() && token.is_none() {
                return Err(ConfigError::new(
                    REGISTRATION_TOKEN_PREVIOUS,
                    ConfigProblem::PreviousWithoutCurrent,
                ));
            }
            (previous, r.bool(REGISTRATION_REQUIRE_AUTH)?)
        }
        Role::AgentWorker => (None, false),
    };
    let distributed_require_auth = r.bool(DISTRIBUTED_REQUIRE_AUTH)?;
    let hostname = host.hostname_or_localhost();
    let (register_to, node_name, heartbeat_interval) = match role {
        Role::Frontend => (None, hostname.to_owned(), DEFAULT_HEARTBEAT_INTERVAL),
        Role::Worker | Role::AgentWorker => {
            let register_to = r.text(REGISTER_TO).map(str::to_owned);
            let default_name = match role {
                Role::AgentWorker => format!("agent-{hostname}"),
                _ => hostname.to_owned(),
            };
            let node_name = r.text(NODE_NAME).map_or(default_name, str::to_owned);
            let heartbeat = r.duration(HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL)?;
            (register_to, node_name, heartbeat)
        }
    };
    Ok(RegistrationConfig {
        token,
        previous_token,
        require_auth,
        distributed_require_auth,
        register_to,
        node_name,
        heartbeat_interval,
        token_source,
    })
}

fn missing_partner(missing: &'static str, partner: &'static str) -> ConfigError {
    ConfigError::new(missing, ConfigProblem::MissingPartner { partner })
}

/// Both halves of a pair, or neither; half a pair is an error naming the missing half.
fn pair<A, B>(
    a: (&'static str, Option<A>),
    b: (&'static str, Option<B>),
) -> Result<Option<(A, B)>, ConfigError> {
    match (a.1, b.1) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (Some(_), None) => Err(missing_partner(b.0, a.0)),
        (None, Some(_)) => Err(missing_partner(a.0, b.0)),
        (None, None) => Ok(None),
    }
}

fn parse_nats(r: &Reader<'_>) -> Result<NatsConfig, ConfigError> {
    let role = r.role;
    let url = r.text(NATS_URL).map(str::to_owned);
    let require_auth = r.bool(NATS_REQUIRE_AUTH)?;

    let jwt = pair(
        (NATS_JWT, r.secret(NATS_JWT)?),
        (NATS_USER_SEED, r.secret(NATS_USER_SEED)?),
    )?;
    let token = r.secret(NATS_TOKEN)?;
    let user = match r.text(NATS_USER) {
        Some(u) if u.chars().all(char::is_whitespace) => {
            return Err(ConfigError::new(NATS_USER, ConfigProblem::OnlyWhitespace));
        }
        u => u.map(str::to_owned),
    };
    let user_password = pair((NATS_USER, user), (NATS_PASSWORD, r.secret(NATS_PASSWORD)?))?;
    let nkey = r.secret(NATS_NKEY_SEED)?;
    let creds_file = r.file(NATS_CREDS_FILE)?.map(|(path, _)| path);

    let mut modes: Vec<(&'static str, NatsCredentials)> = Vec::new();
    if let Some((jwt, seed)) = jwt {
        modes.push((NATS_JWT, NatsCredentials::Jwt { jwt, seed }));
    }
    if let Some(t) = token {
        modes.push((NATS_TOKEN, NatsCredentials::Token(t)));
    }
    if let Some((user, password)) = user_password {
        modes.push((NATS_USER, NatsCredentials::UserPassword { user, password }));
    }
    if let Some(seed) = nkey {
        modes.push((NATS_NKEY_SEED, NatsCredentials::Nkey { seed }));
    }
    if let Some(path) = creds_file {
        modes.push((NATS_CREDS_FILE, NatsCredentials::CredsFile { path }));
    }
    let mut modes = modes.into_iter();
    let (first_var, credentials) = modes.next().unwrap_or(("", NatsCredentials::None));
    if let Some((second_var, _)) = modes.next() {
        return Err(ConfigError::new(
            second_var,
            ConfigProblem::Conflict { other: first_var },
        ));
    }

    let service = match role {
        Role::Frontend | Role::AgentWorker => pair(
            (NATS_SERVICE_JWT, r.secret(NATS_SERVICE_JWT)?),
            (NATS_SERVICE_SEED, r.secret(NATS_SERVICE_SEED)?),
        )?
        .map(|(jwt, seed)| ServiceCredentials { jwt, seed }),
        Role::Worker => None,
    };
    let (account_seed, worker_jwt_ttl) = match role {
        Role::Frontend => (
            r.secret(NATS_ACCOUNT_SEED)?,
            r.duration(NATS_WORKER_JWT_TTL, DEFAULT_WORKER_JWT_TTL)?,
        ),
        Role::Worker | Role::AgentWorker => (None, DEFAULT_WORKER_JWT_TTL),
    };

    let ca = r.file(NATS_TLS_CA)?.map(|(path, _)| path);
    let cert_set = r.text(NATS_TLS_CERT).is_some();
    let key_set = r.text(NATS_TLS_KEY).is_some();
    match (cert_set, key_set) {
        (true, false) => return Err(missing_partner(NATS_TLS_KEY, NATS_TLS_CERT)),
        (false, true) => return Err(missing_partner(NATS_TLS_CERT, NATS_TLS_KEY)),
        _ => {}
    }
    let cert = r.file(NATS_TLS_CERT)?.map(|(path, _)| path);
    let key = r.file(NATS_TLS_KEY)?.map(|(path, _)| path);

    Ok(NatsConfig {
        url,
        require_auth,
        credentials,
        tls: NatsTls { ca, cert, key },
        service,
        account_seed,
        worker_jwt_ttl,
    })
}

fn parse_frontend(
    r: &Reader<'_>,
    registration: &RegistrationConfig,
    nats: &NatsConfig,
) -> Result<FrontendConfig, ConfigError> {
    let address = r.text(ADDRESS).unwrap_or(DEFAULT_ADDRESS).to_owned();
    if port_of(&address).is_none() {
        return Err(ConfigError::new(
            ADDRESS,
            ConfigProblem::InvalidAddress {
                value: shown(&address),
            },
        ));
    }
    let distributed = r.bool(DISTRIBUTED)?;
    if distributed && nats.url.is_none() {
        return Err(ConfigError::new(
            NATS_URL,
            ConfigProblem::Required {
                because: DISTRIBUTED,
            },
        ));
    }
    let auto_approve_nodes = r.bool(AUTO_APPROVE_NODES)?;
    let admin_token = r.token(ADMIN_TOKEN)?;
    if let Some(admin) = &admin_token {
        let admin = admin.digest();
        for (other, token) in [
            (REGISTRATION_TOKEN, registration.token.as_ref()),
            (
                REGISTRATION_TOKEN_PREVIOUS,
                registration.previous_token.as_ref(),
            ),
        ] {
            if token.is_some_and(|token| token.digest().matches(&admin)) {
                // A token read from the file is the same secret under the other variable.
                let other = if other == REGISTRATION_TOKEN {
                    registration.token_source.unwrap_or(REGISTRATION_TOKEN)
                } else {
                    other
                };
                return Err(ConfigError::new(
                    ADMIN_TOKEN,
                    ConfigProblem::SameAsRegistrationToken { other },
                ));
            }
        }
    }
    let registry = match r.text(REGISTRY).unwrap_or(DEFAULT_REGISTRY) {
        MEMORY_REGISTRY => RegistryLocation::Memory,
        path => RegistryLocation::File(PathBuf::from(path)),
    };
    let stale_after = r.duration(STALE_AFTER, DEFAULT_STALE_AFTER)?;
    let health_check_interval = r.duration(HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL)?;
    Ok(FrontendConfig {
        address,
        distributed,
        auto_approve_nodes,
        admin_token,
        registry,
        stale_after,
        health_check_interval,
    })
}

fn parse_worker(r: &Reader<'_>) -> Result<WorkerConfig, ConfigError> {
    let addr = r.text(ADDR).map(str::to_owned);
    let serve_addr = r.text(SERVE_ADDR).unwrap_or(DEFAULT_SERVE_ADDR).to_owned();
    let http_addr = r.text(HTTP_ADDR).map(str::to_owned);
    if let Some(a) = &http_addr
        && port_of(a).is_none()
    {
        return Err(ConfigError::new(
            HTTP_ADDR,
            ConfigProblem::InvalidAddress { value: shown(a) },
        ));
    }
    let advertise_addr = r.text(ADVERTISE_ADDR).map(str::to_owned);
    let advertise_http_addr = r.text(ADVERTISE_HTTP_ADDR).map(str::to_owned);
    let grpc_max_port = match r.number(GRPC_MAX_PORT, 0, 0, 65535)? {
        0 => u16::MAX,
        n => u16::try_from(n).unwrap_or(u16::MAX),
    };
    let models_path = PathBuf::from(r.text(MODELS_PATH).unwrap_or(DEFAULT_MODELS_PATH));
    let max_upload_size = match r.text(MAX_UPLOAD_SIZE) {
        None => Some(DEFAULT_MAX_UPLOAD_SIZE),
        Some(v) => parse_size(v).map_err(|p| ConfigError::new(MAX_UPLOAD_SIZE, p))?,
    };
    let node_labels = match r.text(NODE_LABELS) {
        None => BTreeMap::new(),
        Some(v) => parse_labels(v).ok_or_else(|| {
            ConfigError::new(
                NODE_LABELS,
                ConfigProblem::InvalidLabels { value: shown(v) },
            )
        })?,
    };
    let max_replicas_per_model =
        u32::try_from(r.number(MAX_REPLICAS_PER_MODEL, 1, 0, u64::from(u32::MAX))?)
            .unwrap_or(u32::MAX);
    let vram_budget = r.text(VRAM_BUDGET).map(str::to_owned);
    let header_timeout = r.duration(HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT)?;
    let body_idle_timeout = r.duration(BODY_IDLE_TIMEOUT, DEFAULT_BODY_IDLE_TIMEOUT)?;
    let max_connections = r.count(MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS)?;
    let first_head_timeout = r.duration(FIRST_HEAD_TIMEOUT, DEFAULT_FIRST_HEAD_TIMEOUT)?;
    let max_head_per_remote = r.count(MAX_HEAD_PER_REMOTE, DEFAULT_MAX_HEAD_PER_REMOTE)?;
    let max_log_streams = r.count(MAX_LOG_STREAMS, DEFAULT_MAX_LOG_STREAMS)?;
    let min_body_rate = r.number(MIN_BODY_RATE, DEFAULT_MIN_BODY_RATE, 0, 1 << 30)?;
    let body_rate_window = r.duration(BODY_RATE_WINDOW, DEFAULT_BODY_RATE_WINDOW)?;
    let refusal_log_interval =
        r.duration_or_zero(REFUSAL_LOG_INTERVAL, DEFAULT_REFUSAL_LOG_INTERVAL)?;
    let metrics_public = r.bool(METRICS_PUBLIC)?;
    let worker = WorkerConfig {
        addr,
        serve_addr,
        http_addr,
        advertise_addr,
        advertise_http_addr,
        grpc_max_port,
        models_path,
        max_upload_size,
        node_labels,
        max_replicas_per_model,
        vram_budget,
        header_timeout,
        body_idle_timeout,
        max_connections,
        first_head_timeout,
        max_head_per_remote,
        max_log_streams,
        min_body_rate,
        body_rate_window,
        refusal_log_interval,
        metrics_public,
    };
    let base = worker.base_port();
    let derives_http_port = worker.http_addr.is_none() || worker.advertise_http_addr.is_none();
    if base == 1 && derives_http_port {
        return Err(ConfigError::new(
            worker.base_port_source().unwrap_or(SERVE_ADDR),
            ConfigProblem::HttpPortZero,
        ));
    }
    if worker.grpc_max_port < base {
        return Err(ConfigError::new(
            GRPC_MAX_PORT,
            ConfigProblem::MaxPortBelowBase {
                max: worker.grpc_max_port,
                base,
            },
        ));
    }
    Ok(worker)
}

fn parse_labels(value: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (k, v) = entry.split_once('=')?;
        let k = k.trim();
        if k.is_empty() {
            return None;
        }
        labels.insert(k.to_owned(), v.trim().to_owned());
    }
    Some(labels)
}

/// The port of `host:port` when it is a number in 1..65535 (Go `strconv.Atoi` accepts a sign).
fn port_of(addr: &str) -> Option<u16> {
    let (_, port) = split_host_port(addr)?;
    let digits = port.strip_prefix('+').unwrap_or(port);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    u16::try_from(n).ok().filter(|&p| p >= 1)
}

/// Lexical cleaning like Go `filepath.Clean`: drops `.`, resolves `..` against preceding
/// names, never climbs above the root, and yields `.` for an empty result.
fn clean_path(path: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests;
