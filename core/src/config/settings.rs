//! The settings table: every configuration variable of every role, with its flag, default,
//! meaning, group, whether it is secret and a valid example.
//!
//! [`SETTINGS`] is the one list. [`Config::parse`](super::Config::parse) reads exactly the
//! variables of its role ([`known_variables`]), the `nodegate` command builds its flags and its
//! `--help` from it, and the README's settings table is checked against it. A setting is listed
//! for a role only when the program of that role honours it.
//!
//! ```
//! use nodegate_core::config::{Group, Role, known_variables, setting};
//!
//! let size = setting("LOCALAI_MAX_UPLOAD_SIZE").expect("a worker setting");
//! assert_eq!((size.flag, size.default, size.group), ("max-upload-size", "50GiB", Group::Limits));
//! assert!(size.applies_to(Role::Worker) && !size.applies_to(Role::AgentWorker));
//! assert!(known_variables(Role::Worker).iter().any(|s| s.name == "RUST_LOG"));
//! ```

use std::time::Duration;

use super::Role;

// ---------------------------------------------------------------------------------------------
// Variable names and defaults
// ---------------------------------------------------------------------------------------------

/// Frontend: enables distributed mode.
pub const DISTRIBUTED: &str = "LOCALAI_DISTRIBUTED";
/// Frontend: HTTP API listen address (default `:8080`).
pub const ADDRESS: &str = "LOCALAI_ADDRESS";
/// Frontend: new nodes start healthy instead of pending approval.
pub const AUTO_APPROVE_NODES: &str = "LOCALAI_AUTO_APPROVE_NODES";
/// The shared registration token (node endpoints, worker file server, backend gRPC).
pub const REGISTRATION_TOKEN: &str = "LOCALAI_REGISTRATION_TOKEN";
/// A file holding the registration token (nodegate).
pub const REGISTRATION_TOKEN_FILE: &str = "LOCALAI_REGISTRATION_TOKEN_FILE";
/// The previous registration token, still accepted during a rotation (nodegate).
pub const REGISTRATION_TOKEN_PREVIOUS: &str = "LOCALAI_REGISTRATION_TOKEN_PREVIOUS";
/// An empty registration token becomes a startup error (frontend, supervisor worker).
pub const REGISTRATION_REQUIRE_AUTH: &str = "LOCALAI_REGISTRATION_REQUIRE_AUTH";
/// Umbrella switch: registration and NATS auth required (NATS only on the agent worker).
pub const DISTRIBUTED_REQUIRE_AUTH: &str = "LOCALAI_DISTRIBUTED_REQUIRE_AUTH";
/// NATS server URL.
pub const NATS_URL: &str = "LOCALAI_NATS_URL";
/// NATS credentials are required.
pub const NATS_REQUIRE_AUTH: &str = "LOCALAI_NATS_REQUIRE_AUTH";
/// Static NATS user JWT (paired with [`NATS_USER_SEED`]).
pub const NATS_JWT: &str = "LOCALAI_NATS_JWT";
/// Static NATS user nkey seed (paired with [`NATS_JWT`]).
pub const NATS_USER_SEED: &str = "LOCALAI_NATS_USER_SEED";
/// Log output format, `plain` or `json` (nodegate).
pub const LOG_FORMAT: &str = "NODEGATE_LOG_FORMAT";
/// Log filter directives (`tracing-subscriber`'s `EnvFilter` syntax).
pub const LOG_FILTER: &str = "RUST_LOG";
/// NATS service user JWT (frontend, agent worker).
pub const NATS_SERVICE_JWT: &str = "LOCALAI_NATS_SERVICE_JWT";
/// NATS service user seed (frontend, agent worker).
pub const NATS_SERVICE_SEED: &str = "LOCALAI_NATS_SERVICE_SEED";
/// Frontend: NATS account seed used to mint worker JWTs.
pub const NATS_ACCOUNT_SEED: &str = "LOCALAI_NATS_ACCOUNT_SEED";
/// Frontend: lifetime of minted worker JWTs.
pub const NATS_WORKER_JWT_TTL: &str = "LOCALAI_NATS_WORKER_JWT_TTL";
/// NATS TLS CA certificate file.
pub const NATS_TLS_CA: &str = "LOCALAI_NATS_TLS_CA";
/// NATS TLS client certificate file.
pub const NATS_TLS_CERT: &str = "LOCALAI_NATS_TLS_CERT";
/// NATS TLS client key file.
pub const NATS_TLS_KEY: &str = "LOCALAI_NATS_TLS_KEY";
/// Static NATS token (nodegate).
pub const NATS_TOKEN: &str = "LOCALAI_NATS_TOKEN";
/// Static NATS user name (nodegate, paired with [`NATS_PASSWORD`]).
pub const NATS_USER: &str = "LOCALAI_NATS_USER";
/// Static NATS password (nodegate, paired with [`NATS_USER`]).
pub const NATS_PASSWORD: &str = "LOCALAI_NATS_PASSWORD";
/// Static NATS nkey seed (nodegate).
pub const NATS_NKEY_SEED: &str = "LOCALAI_NATS_NKEY_SEED";
/// NATS `.creds` file holding a user JWT and seed (nodegate).
pub const NATS_CREDS_FILE: &str = "LOCALAI_NATS_CREDS_FILE";
/// Worker: reachable `host:port`; its port is the gRPC base port.
pub const ADDR: &str = "LOCALAI_ADDR";
/// Worker: base-port fallback (default `0.0.0.0:50051`).
pub const SERVE_ADDR: &str = "LOCALAI_SERVE_ADDR";
/// Worker: file-transfer server bind address.
pub const HTTP_ADDR: &str = "LOCALAI_HTTP_ADDR";
/// Worker: gRPC address sent to the frontend.
pub const ADVERTISE_ADDR: &str = "LOCALAI_ADVERTISE_ADDR";
/// Worker: file-transfer address sent to the frontend.
pub const ADVERTISE_HTTP_ADDR: &str = "LOCALAI_ADVERTISE_HTTP_ADDR";
/// Worker: top of the backend gRPC port range.
pub const GRPC_MAX_PORT: &str = "LOCALAI_GRPC_MAX_PORT";
/// Worker, agent worker: frontend base URL to register with.
pub const REGISTER_TO: &str = "LOCALAI_REGISTER_TO";
/// Worker, agent worker: registration name.
pub const NODE_NAME: &str = "LOCALAI_NODE_NAME";
/// Worker, agent worker: heartbeat period.
pub const HEARTBEAT_INTERVAL: &str = "LOCALAI_HEARTBEAT_INTERVAL";
/// Worker: node labels, `k=v,k=v`.
pub const NODE_LABELS: &str = "LOCALAI_NODE_LABELS";
/// Worker: replicas of one model this node accepts.
pub const MAX_REPLICAS_PER_MODEL: &str = "LOCALAI_MAX_REPLICAS_PER_MODEL";
/// Worker: VRAM budget, sent to the frontend as given.
pub const VRAM_BUDGET: &str = "LOCALAI_VRAM_BUDGET";
/// Worker: models directory (also defines the staging and data directories).
pub const MODELS_PATH: &str = "LOCALAI_MODELS_PATH";
/// Worker: largest accepted upload body (nodegate).
pub const MAX_UPLOAD_SIZE: &str = "LOCALAI_MAX_UPLOAD_SIZE";
/// Worker: time allowed to receive a request head (nodegate; slowloris guard).
pub const HEADER_TIMEOUT: &str = "NODEGATE_HEADER_TIMEOUT";
/// Worker: longest pause allowed between two pieces of a request body (nodegate).
pub const BODY_IDLE_TIMEOUT: &str = "NODEGATE_BODY_IDLE_TIMEOUT";
/// Worker: most connections the file server serves at once (nodegate).
pub const MAX_CONNECTIONS: &str = "NODEGATE_MAX_CONNECTIONS";
/// Worker: time a new connection has to send its first request head (nodegate).
pub const FIRST_HEAD_TIMEOUT: &str = "NODEGATE_FIRST_HEAD_TIMEOUT";
/// Worker: connections one remote address may hold while they send their first head (nodegate).
pub const MAX_HEAD_PER_REMOTE: &str = "NODEGATE_MAX_HEAD_PER_REMOTE";
/// Worker: most log WebSockets open at once, outside the connection cap (nodegate).
pub const MAX_LOG_STREAMS: &str = "NODEGATE_MAX_LOG_STREAMS";
/// Worker: slowest average rate of an upload body, bytes per second; 0 = off (nodegate).
pub const MIN_BODY_RATE: &str = "NODEGATE_MIN_BODY_RATE";
/// Worker: the window [`MIN_BODY_RATE`] is averaged over (nodegate).
pub const BODY_RATE_WINDOW: &str = "NODEGATE_BODY_RATE_WINDOW";
/// Worker: interval of the refusal summaries; 0 = log every refusal (nodegate).
pub const REFUSAL_LOG_INTERVAL: &str = "NODEGATE_REFUSAL_LOG_INTERVAL";
/// Worker: serve `/metrics` without the registration token.
pub const METRICS_PUBLIC: &str = "NODEGATE_METRICS_PUBLIC";
/// Frontend: the admin token guarding `/api/nodes/*`; unset = admin routes disabled (nodegate).
pub const ADMIN_TOKEN: &str = "NODEGATE_ADMIN_TOKEN";
/// Frontend: the registry's SQLite file; `:memory:` keeps nothing (nodegate).
pub const REGISTRY: &str = "NODEGATE_REGISTRY";
/// Frontend: a node silent for longer is marked offline (nodegate).
pub const STALE_AFTER: &str = "NODEGATE_STALE_AFTER";
/// Frontend: how often the health monitor looks for silent nodes (nodegate).
pub const HEALTH_CHECK_INTERVAL: &str = "NODEGATE_HEALTH_CHECK_INTERVAL";
/// Agent worker: API base URL (default: the frontend URL).
pub const API_URL: &str = "LOCALAI_API_URL";
/// Agent worker: API token (default: the one provisioned at registration).
pub const API_TOKEN: &str = "LOCALAI_API_TOKEN";
/// Agent worker: NATS subject of agent jobs.
pub const AGENT_SUBJECT: &str = "LOCALAI_AGENT_SUBJECT";
/// Agent worker: NATS queue group of agent workers.
pub const AGENT_QUEUE: &str = "LOCALAI_AGENT_QUEUE";

/// Default frontend listen address.
pub const DEFAULT_ADDRESS: &str = ":8080";
/// Default worker serve address (base-port fallback).
pub const DEFAULT_SERVE_ADDR: &str = "0.0.0.0:50051";
/// Base port when neither `LOCALAI_ADDR` nor `LOCALAI_SERVE_ADDR` gives one.
pub const DEFAULT_BASE_PORT: u16 = 50051;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default lifetime of minted worker JWTs.
pub const DEFAULT_WORKER_JWT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default upload limit: 50 GiB.
pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 50 << 30;
/// Default time allowed to receive a request head (LocalAI's `ReadHeaderTimeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest pause inside a request body.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time a new connection has to send its first request head.
pub const DEFAULT_FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on connections of one remote address still sending their first head.
pub const DEFAULT_MAX_HEAD_PER_REMOTE: usize = 128;
/// Default cap on open log WebSockets.
pub const DEFAULT_MAX_LOG_STREAMS: usize = 128;
/// Default slowest average upload body rate, bytes per second.
pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;
/// Default window of the body rate.
pub const DEFAULT_BODY_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Default interval of the refusal summaries (the core's refusal log).
pub const DEFAULT_REFUSAL_LOG_INTERVAL: Duration = crate::refusal_log::DEFAULT_INTERVAL;
/// Default registry file of the frontend (relative to the current directory).
pub const DEFAULT_REGISTRY: &str = "nodegate-frontend.sqlite";
/// The registry value that keeps nodes in memory only.
pub const MEMORY_REGISTRY: &str = ":memory:";
/// Default silence after which the frontend marks a node offline.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);
/// Default period of the frontend's health monitor.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Default models path (relative to the current directory).
pub const DEFAULT_MODELS_PATH: &str = "models";
/// Default log filter.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Default agent job subject.
pub const DEFAULT_AGENT_SUBJECT: &str = "agent.execute";
/// Default agent queue group.
pub const DEFAULT_AGENT_QUEUE: &str = "agent-workers";

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// The concern a setting belongs to; `--help` and the README group settings by it, in the
/// order of [`Group::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The registration token, require-auth switches and what the node tells the frontend.
    Registration,
    /// The NATS bus: URL, credentials, TLS, subjects.
    Nats,
    /// The frontend's node registry: where it is kept and when a node goes offline.
    NodeRegistry,
    /// The file-transfer server: bind address and roots.
    FileTransfer,
    /// Limits of the file-transfer server.
    Limits,
    /// Log format and filter.
    Logging,
}

impl Group {
    /// Every group, in display order.
    pub const ALL: [Group; 6] = [
        Group::Registration,
        Group::Nats,
        Group::NodeRegistry,
        Group::FileTransfer,
        Group::Limits,
        Group::Logging,
    ];

    /// The heading of the group (`Registration`, `NATS`, …).
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Registration => "Registration",
            Self::Nats => "NATS",
            Self::NodeRegistry => "Node registry",
            Self::FileTransfer => "File transfer",
            Self::Limits => "Limits",
            Self::Logging => "Logging",
        }
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// The frontend only.
    pub const FRONTEND: Roles = Roles(1);
    /// The supervisor worker only.
    pub const WORKER: Roles = Roles(2);
    /// The agent worker only.
    pub const AGENT_WORKER: Roles = Roles(4);
    /// The frontend and the supervisor worker.
    pub const FRONTEND_WORKER: Roles = Roles(1 | 2);
    /// The frontend and the agent worker.
    pub const FRONTEND_AGENT: Roles = Roles(1 | 4);
    /// The two workers.
    pub const WORKERS: Roles = Roles(2 | 4);
    /// Every role.
    pub const ALL: Roles = Roles(1 | 2 | 4);

    /// Whether `role` is in the set.
    #[must_use]
    pub const fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    const fn bit(role: Role) -> u8 {
        match role {
            Role::Frontend => 1,
            Role::Worker => 2,
            Role::AgentWorker => 4,
        }
    }
}

/// One configuration setting: an environment variable and its command-line flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable (LocalAI's name where LocalAI has one).
    pub name: &'static str,
    /// The long command-line flag, without `--`.
    pub flag: &'static str,
    /// The name of the value in `--help` (`ADDR`, `DURATION`, …); `BOOL` marks a switch, which
    /// may be given as a bare flag meaning `true`.
    pub value: &'static str,
    /// The default, as text; `unset` when the setting has none.
    pub default: &'static str,
    /// One line on what it does.
    pub meaning: &'static str,
    /// A valid value, quoted by error messages and `--help`.
    pub example: &'static str,
    /// Whether the value is a secret (never printed).
    pub secret: bool,
    /// The group it is shown in.
    pub group: Group,
    /// The roles whose programs honour it.
    pub roles: Roles,
}

/// Former name of [`Setting`].
pub type VarInfo = Setting;

impl Setting {
    /// Whether the program of `role` honours this setting.
    #[must_use]
    pub const fn applies_to(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// Whether it is a boolean switch.
    #[must_use]
    pub fn is_switch(&self) -> bool {
        self.value == "BOOL"
    }

    /// `NAME=example`, for messages (secrets have a placeholder example, never a value).
    #[must_use]
    pub fn example_assignment(&self) -> String {
        format!("{}={}", self.name, self.example)
    }
}

/// The setting named `name` (an environment variable), if any role has it.
#[must_use]
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The settings a role honours, in the order of [`SETTINGS`] (the order [`Config::parse`]
/// checks them, group by group).
///
/// [`Config::parse`]: super::Config::parse
#[must_use]
pub fn known_variables(role: Role) -> &'static [&'static Setting] {
    match role {
        Role::Frontend => &FRONTEND_SETTINGS,
        Role::Worker => &WORKER_SETTINGS,
        Role::AgentWorker => &AGENT_SETTINGS,
    }
}

/// Variables whose value names a file that the adapter reads before parsing.
pub(super) const FILE_VARS: [&str; 5] = [
    REGISTRATION_TOKEN_FILE,
    NATS_CREDS_FILE,
    NATS_TLS_CA,
    NATS_TLS_CERT,
    NATS_TLS_KEY,
];

#[allow(
    clippy::too_many_arguments,
    reason = "a table row, read column by column"
)]
const fn row(
    name: &'static str,
    flag: &'static str,
    value: &'static str,
    default: &'static str,
    example: &'static str,
    group: Group,
    roles: Roles,
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        flag,
        value,
        default,
        meaning,
        example,
        secret: false,
        group,
        roles,
    }
}

const fn secret(row: Setting) -> Setting {
    Setting {
        secret: true,
        ..row
    }
}

use Group::{FileTransfer, Limits, Logging, Nats, NodeRegistry, Registration};

const UNSET: &str = "unset";
const SECRET_EXAMPLE: &str = "$(openssl rand -hex 32)";

/// Every setting of every role, group by group.
pub static SETTINGS: &[Setting] = &TABLE;

static TABLE: [Setting; 58] = [
    // -- Registration --------------------------------------------------------------------------
    secret(row(
        REGISTRATION_TOKEN,
        "registration-token",
        "TOKEN",
        "unset (anonymous)",
        SECRET_EXAMPLE,
        Registration,
        Roles::ALL,
        "shared token guarding the file server and the node endpoints (LocalAI also hands it to \
         backend gRPC); RFC 6750 characters only",
    )),
    row(
        REGISTRATION_TOKEN_FILE,
        "registration-token-file",
        "PATH",
        UNSET,
        "/run/secrets/localai-token",
        Registration,
        Roles::ALL,
        "file holding the registration token (trailing newline trimmed); excludes \
         LOCALAI_REGISTRATION_TOKEN",
    ),
    secret(row(
        REGISTRATION_TOKEN_PREVIOUS,
        "registration-token-previous",
        "TOKEN",
        UNSET,
        SECRET_EXAMPLE,
        Registration,
        Roles::FRONTEND_WORKER,
        "previous token, still accepted while a rotation is in progress",
    )),
    row(
        REGISTRATION_REQUIRE_AUTH,
        "registration-require-auth",
        "BOOL",
        "false",
        "true",
        Registration,
        Roles::FRONTEND_WORKER,
        "refuse to start when no registration token is set",
    ),
    row(
        DISTRIBUTED_REQUIRE_AUTH,
        "distributed-require-auth",
        "BOOL",
        "false",
        "true",
        Registration,
        Roles::ALL,
        "umbrella switch: registration and NATS authentication are required (the agent \
         worker: NATS only)",
    ),
    row(
        REGISTER_TO,
        "register-to",
        "URL",
        "unset (standalone)",
        "http://frontend:8080",
        Registration,
        Roles::WORKERS,
        "frontend base URL to register with; without it the worker serves files only",
    ),
    row(
        NODE_NAME,
        "node-name",
        "NAME",
        "<hostname> (agent worker: agent-<hostname>)",
        "gpu-01",
        Registration,
        Roles::WORKERS,
        "registration name, the node's identity at the frontend",
    ),
    row(
        HEARTBEAT_INTERVAL,
        "heartbeat-interval",
        "DURATION",
        "10s",
        "30s",
        Registration,
        Roles::WORKERS,
        "heartbeat period (Go duration syntax; 0 = 10s)",
    ),
    row(
        ADDR,
        "addr",
        "HOST:PORT",
        UNSET,
        "gpu-01.internal:50051",
        Registration,
        Roles::WORKER,
        "reachable host:port of this worker; its port is the gRPC base port",
    ),
    row(
        SERVE_ADDR,
        "serve-addr",
        "HOST:PORT",
        DEFAULT_SERVE_ADDR,
        "0.0.0.0:50061",
        Registration,
        Roles::WORKER,
        "base-port fallback when LOCALAI_ADDR gives no port",
    ),
    row(
        ADVERTISE_ADDR,
        "advertise-addr",
        "HOST:PORT",
        "LOCALAI_ADDR, else <hostname>:<base>",
        "gpu-01.internal:50051",
        Registration,
        Roles::WORKER,
        "gRPC address sent to the frontend",
    ),
    row(
        GRPC_MAX_PORT,
        "grpc-max-port",
        "PORT",
        "0 (= 65535)",
        "50100",
        Registration,
        Roles::WORKER,
        "top of LocalAI's backend gRPC port range: accepted and checked against the base port for compatibility; nodegate's worker starts no gRPC backends",
    ),
    row(
        NODE_LABELS,
        "node-labels",
        "K=V,...",
        UNSET,
        "gpu=a100,zone=eu",
        Registration,
        Roles::WORKER,
        "node labels sent at registration",
    ),
    row(
        MAX_REPLICAS_PER_MODEL,
        "max-replicas-per-model",
        "N",
        "1",
        "2",
        Registration,
        Roles::WORKER,
        "replicas of one model this node accepts",
    ),
    row(
        VRAM_BUDGET,
        "vram-budget",
        "BUDGET",
        UNSET,
        "80%",
        Registration,
        Roles::WORKER,
        "VRAM budget sent at registration, as given (80%, 12GB)",
    ),
    row(
        API_URL,
        "api-url",
        "URL",
        "LOCALAI_REGISTER_TO",
        "http://frontend:8080",
        Registration,
        Roles::AGENT_WORKER,
        "API base URL handed to the agent runtime (config.agent.api_url)",
    ),
    secret(row(
        API_TOKEN,
        "api-token",
        "TOKEN",
        "provisioned at registration",
        SECRET_EXAMPLE,
        Registration,
        Roles::AGENT_WORKER,
        "API token handed to the agent runtime (config.agent.api_token)",
    )),
    row(
        ADDRESS,
        "address",
        "HOST:PORT",
        DEFAULT_ADDRESS,
        ":8080",
        Registration,
        Roles::FRONTEND,
        "HTTP API listen address; Go's :PORT means every interface",
    ),
    row(
        DISTRIBUTED,
        "distributed",
        "BOOL",
        "false",
        "true",
        Registration,
        Roles::FRONTEND,
        "LocalAI's distributed-mode switch; this frontend always runs distributed, and with it \
         set LOCALAI_NATS_URL is required",
    ),
    row(
        AUTO_APPROVE_NODES,
        "auto-approve-nodes",
        "BOOL",
        "false",
        "true",
        Registration,
        Roles::FRONTEND,
        "new nodes start healthy instead of pending approval",
    ),
    secret(row(
        ADMIN_TOKEN,
        "admin-token",
        "TOKEN",
        "unset (admin routes disabled)",
        SECRET_EXAMPLE,
        Registration,
        Roles::FRONTEND,
        "token guarding the admin routes /api/nodes/* (list, approve, delete, stage); must differ \
         from the registration token, which every worker holds",
    )),
    // -- NATS ----------------------------------------------------------------------------------
    row(
        NATS_URL,
        "nats-url",
        "URL",
        "unset (no NATS)",
        "nats://nats:4222",
        Nats,
        Roles::ALL,
        "NATS server URL; unset = the NATS layer is not configured",
    ),
    row(
        NATS_REQUIRE_AUTH,
        "nats-require-auth",
        "BOOL",
        "false",
        "true",
        Nats,
        Roles::ALL,
        "refuse to start without a NATS credential source",
    ),
    secret(row(
        NATS_JWT,
        "nats-jwt",
        "JWT",
        UNSET,
        "eyJ0eXAiOiJKV1Qi...",
        Nats,
        Roles::ALL,
        "static NATS user JWT (with LOCALAI_NATS_USER_SEED)",
    )),
    secret(row(
        NATS_USER_SEED,
        "nats-user-seed",
        "SEED",
        UNSET,
        "SUA...",
        Nats,
        Roles::ALL,
        "static NATS user nkey seed (with LOCALAI_NATS_JWT)",
    )),
    secret(row(
        NATS_TOKEN,
        "nats-token",
        "TOKEN",
        UNSET,
        SECRET_EXAMPLE,
        Nats,
        Roles::ALL,
        "NATS token credential",
    )),
    row(
        NATS_USER,
        "nats-user",
        "USER",
        UNSET,
        "worker",
        Nats,
        Roles::ALL,
        "NATS user name (with LOCALAI_NATS_PASSWORD)",
    ),
    secret(row(
        NATS_PASSWORD,
        "nats-password",
        "PASSWORD",
        UNSET,
        SECRET_EXAMPLE,
        Nats,
        Roles::ALL,
        "NATS password (with LOCALAI_NATS_USER)",
    )),
    secret(row(
        NATS_NKEY_SEED,
        "nats-nkey-seed",
        "SEED",
        UNSET,
        "SUA...",
        Nats,
        Roles::ALL,
        "NATS nkey seed",
    )),
    row(
        NATS_CREDS_FILE,
        "nats-creds-file",
        "PATH",
        UNSET,
        "/etc/nodegate/worker.creds",
        Nats,
        Roles::ALL,
        "NATS .creds file (user JWT and seed)",
    ),
    secret(row(
        NATS_SERVICE_JWT,
        "nats-service-jwt",
        "JWT",
        UNSET,
        "eyJ0eXAiOiJKV1Qi...",
        Nats,
        Roles::FRONTEND_AGENT,
        "NATS service user JWT (with LOCALAI_NATS_SERVICE_SEED)",
    )),
    secret(row(
        NATS_SERVICE_SEED,
        "nats-service-seed",
        "SEED",
        UNSET,
        "SUA...",
        Nats,
        Roles::FRONTEND_AGENT,
        "NATS service user seed (with LOCALAI_NATS_SERVICE_JWT)",
    )),
    secret(row(
        NATS_ACCOUNT_SEED,
        "nats-account-seed",
        "SEED",
        UNSET,
        "SAA...",
        Nats,
        Roles::FRONTEND,
        "NATS account seed used to mint worker JWTs",
    )),
    row(
        NATS_WORKER_JWT_TTL,
        "nats-worker-jwt-ttl",
        "DURATION",
        "24h",
        "12h",
        Nats,
        Roles::FRONTEND,
        "lifetime of minted worker JWTs (0 = 24h)",
    ),
    row(
        NATS_TLS_CA,
        "nats-tls-ca",
        "PATH",
        UNSET,
        "/etc/nodegate/nats-ca.pem",
        Nats,
        Roles::ALL,
        "CA bundle for NATS TLS (PEM)",
    ),
    row(
        NATS_TLS_CERT,
        "nats-tls-cert",
        "PATH",
        UNSET,
        "/etc/nodegate/client.pem",
        Nats,
        Roles::ALL,
        "client certificate for NATS mTLS (PEM, with LOCALAI_NATS_TLS_KEY)",
    ),
    row(
        NATS_TLS_KEY,
        "nats-tls-key",
        "PATH",
        UNSET,
        "/etc/nodegate/client.key",
        Nats,
        Roles::ALL,
        "client key for NATS mTLS (PEM, with LOCALAI_NATS_TLS_CERT)",
    ),
    row(
        AGENT_SUBJECT,
        "agent-subject",
        "SUBJECT",
        DEFAULT_AGENT_SUBJECT,
        "agent.execute",
        Nats,
        Roles::AGENT_WORKER,
        "NATS subject of agent jobs",
    ),
    row(
        AGENT_QUEUE,
        "agent-queue",
        "QUEUE",
        DEFAULT_AGENT_QUEUE,
        "agent-workers",
        Nats,
        Roles::AGENT_WORKER,
        "NATS queue group of agent workers",
    ),
    // -- Node registry -------------------------------------------------------------------------
    row(
        REGISTRY,
        "registry",
        "PATH",
        DEFAULT_REGISTRY,
        "/var/lib/nodegate/frontend.sqlite",
        NodeRegistry,
        Roles::FRONTEND,
        "SQLite file the registered nodes are kept in (created when serving); :memory: keeps \
         nothing across restarts",
    ),
    row(
        STALE_AFTER,
        "stale-after",
        "DURATION",
        "60s",
        "2m",
        NodeRegistry,
        Roles::FRONTEND,
        "a node silent for longer is marked offline (0 = 60s)",
    ),
    row(
        HEALTH_CHECK_INTERVAL,
        "health-check-interval",
        "DURATION",
        "15s",
        "30s",
        NodeRegistry,
        Roles::FRONTEND,
        "how often the health monitor looks for silent nodes (0 = 15s)",
    ),
    // -- File transfer -------------------------------------------------------------------------
    row(
        HTTP_ADDR,
        "http-addr",
        "HOST:PORT",
        "0.0.0.0:<base-1> (0.0.0.0:50050)",
        "0.0.0.0:50050",
        FileTransfer,
        Roles::WORKER,
        "file-server bind address; Go's :PORT means every interface",
    ),
    row(
        ADVERTISE_HTTP_ADDR,
        "advertise-http-addr",
        "HOST:PORT",
        "<advertise host>:<base-1>",
        "gpu-01.internal:50050",
        FileTransfer,
        Roles::WORKER,
        "file-server address sent to the frontend",
    ),
    row(
        MODELS_PATH,
        "models-path",
        "PATH",
        DEFAULT_MODELS_PATH,
        "/srv/localai/models",
        FileTransfer,
        Roles::WORKER,
        "models directory; staging and data are its siblings ../staging and ../data",
    ),
    // -- Limits --------------------------------------------------------------------------------
    row(
        MAX_UPLOAD_SIZE,
        "max-upload-size",
        "SIZE",
        "50GiB",
        "100GiB",
        Limits,
        Roles::WORKER,
        "largest accepted upload (100M, 2GiB, bytes; 0 = unlimited); larger is 413",
    ),
    row(
        HEADER_TIMEOUT,
        "header-timeout",
        "DURATION",
        "30s",
        "10s",
        Limits,
        Roles::WORKER,
        "time allowed to receive a request head (slowloris guard)",
    ),
    row(
        BODY_IDLE_TIMEOUT,
        "body-idle-timeout",
        "DURATION",
        "60s",
        "2m",
        Limits,
        Roles::WORKER,
        "longest pause inside a request body (idle, not total: big uploads are fine)",
    ),
    row(
        MAX_CONNECTIONS,
        "max-connections",
        "N",
        "512",
        "1024",
        Limits,
        Roles::WORKER,
        "most connections served at once; at the cap the oldest connection still sending its \
         first head, or idle, is shed",
    ),
    row(
        FIRST_HEAD_TIMEOUT,
        "first-head-timeout",
        "DURATION",
        "5s",
        "3s",
        Limits,
        Roles::WORKER,
        "time a new connection has to send its first request head (0 = 5s)",
    ),
    row(
        MAX_HEAD_PER_REMOTE,
        "max-head-per-remote",
        "N",
        "128",
        "64",
        Limits,
        Roles::WORKER,
        "connections one remote address may hold while they send their first head; past it its \
         own oldest is closed",
    ),
    row(
        MAX_LOG_STREAMS,
        "max-log-streams",
        "N",
        "128",
        "256",
        Limits,
        Roles::WORKER,
        "most log WebSockets open at once, outside NODEGATE_MAX_CONNECTIONS; further upgrades are \
         503",
    ),
    row(
        MIN_BODY_RATE,
        "min-body-rate",
        "BYTES/S",
        "1024",
        "4096",
        Limits,
        Roles::WORKER,
        "slowest average an upload body may keep up over NODEGATE_BODY_RATE_WINDOW, in bytes per \
         second (0 = off); slower is 408",
    ),
    row(
        BODY_RATE_WINDOW,
        "body-rate-window",
        "DURATION",
        "60s",
        "2m",
        Limits,
        Roles::WORKER,
        "the window NODEGATE_MIN_BODY_RATE is averaged over (0 = 60s)",
    ),
    row(
        REFUSAL_LOG_INTERVAL,
        "refusal-log-interval",
        "DURATION",
        "10s",
        "1m",
        Limits,
        Roles::WORKER,
        "refused requests are logged once per reason and remote, then counted into one line per \
         interval (0 = log every refusal)",
    ),
    row(
        METRICS_PUBLIC,
        "metrics-public",
        "BOOL",
        "false",
        "true",
        Limits,
        Roles::WORKER,
        "serve GET /metrics (Prometheus text) without the registration token; by default it \
         needs the token like every route but the probes",
    ),
    // -- Logging -------------------------------------------------------------------------------
    row(
        LOG_FORMAT,
        "log-format",
        "FORMAT",
        "plain",
        "json",
        Logging,
        Roles::ALL,
        "log format: plain or json",
    ),
    row(
        LOG_FILTER,
        "log-filter",
        "FILTER",
        DEFAULT_LOG_FILTER,
        "info,nodegate_tokio=debug",
        Logging,
        Roles::ALL,
        "log filter: a level (error, warn, info, debug, trace) or target=level directives",
    ),
];

const fn count(role: Role) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if TABLE[i].roles.contains(role) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn select<const N: usize>(role: Role) -> [&'static Setting; N] {
    let mut out: [&'static Setting; N] = [&TABLE[0]; N];
    let (mut i, mut n) = (0, 0);
    while i < TABLE.len() {
        if TABLE[i].roles.contains(role) {
            out[n] = &TABLE[i];
            n += 1;
        }
        i += 1;
    }
    out
}

static FRONTEND_SETTINGS: [&Setting; count(Role::Frontend)] = select(Role::Frontend);
static WORKER_SETTINGS: [&Setting; count(Role::Worker)] = select(Role::Worker);
static AGENT_SETTINGS: [&Setting; count(Role::AgentWorker)] = select(Role::AgentWorker);
