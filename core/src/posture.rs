//! Security posture: one evaluation per role, printed at start.
//!
//! [`Posture::evaluate`] looks at a parsed [`Config`] and answers, before anything is bound:
//!
//! - [`Posture::Refused`]: a require-auth switch applies and its secret is missing. The adapter
//!   prints the [`PostureError`] (which names the variable to set and the switch that required
//!   it) and exits non-zero before touching the network or disk.
//! - [`Posture::Anonymous`]: at least one layer is open. The adapter logs every [`Warning`] once,
//!   at WARN; each names what is exposed and the exact variable that closes it.
//! - [`Posture::Protected`]: no layer is open.
//!
//! # Layers per role
//!
//! | role | layers |
//! |---|---|
//! | frontend | node endpoints, NATS bus |
//! | supervisor worker | node endpoints (its registration), file transfer, NATS bus |
//! | agent worker | node endpoints (its registration), NATS bus |
//!
//! # Rules (spec §5.2, §5.4, §6.4, §6.5; security.md SC-01…SC-13)
//!
//! 1. **Registration first.** Registration auth is required when
//!    `LOCALAI_REGISTRATION_REQUIRE_AUTH` or `LOCALAI_DISTRIBUTED_REQUIRE_AUTH` is set, on the
//!    frontend and the supervisor worker only: the agent worker has no registration switch and
//!    the umbrella implies only NATS auth there (spec §8.2). Required with no token → refused
//!    (SC-02), naming `LOCALAI_REGISTRATION_TOKEN` and the switch(es) that required it.
//! 2. **Then NATS.** When `LOCALAI_NATS_URL` is unset the NATS layer is not configured and NATS
//!    requirements do not apply (a worker serving files only). NATS auth is required when
//!    `LOCALAI_NATS_REQUIRE_AUTH` or `LOCALAI_DISTRIBUTED_REQUIRE_AUTH` is set (every role).
//!    Credential sources:
//!    - supervisor worker: a static mode, or — only when NATS auth is required — frontend minting
//!      (`LOCALAI_REGISTER_TO` set: the worker waits for minted JWT+seed when registering). When
//!      not required, a worker without a static mode may end up connected anonymously (spec §8.31),
//!      so its bus is reported open;
//!    - agent worker: a static mode, the service JWT+seed, or (when required) frontend minting;
//!    - frontend: a static mode, or the service JWT+seed. With the service JWT and NATS auth
//!      required, `LOCALAI_NATS_ACCOUNT_SEED` is required too, as in LocalAI (workers get their
//!      credentials minted with it). nodegate does **not** require the account seed when the
//!      frontend uses a static mode: workers are then expected to bring static credentials too.
//!
//!    Required with no source → refused (SC-07).
//! 3. A layer is open when its secret is missing and nothing required it: the registration
//!    token for node endpoints and file transfer (SC-01), a credential source for NATS. One
//!    warning per open layer.
//! 4. **Only what runs.** A layer is reported only when this process uses it: nodegate's worker
//!    spawns no backend gRPC processes, so no gRPC layer is reported; a worker or agent worker
//!    without `LOCALAI_REGISTER_TO` has no node id and so does not use NATS (its NATS layer is
//!    not configured, although a NATS requirement still refuses a start without credentials).
//!    A NATS credential is a plan until the connection proves it: the startup machine reports
//!    the bus as protected only once the server accepted the credential and requires
//!    authentication.
//!
//! Pairing errors (JWT without seed, TLS cert without key, …) and unreadable files (SC-08, SC-09)
//! are configuration errors reported by [`Config::parse`], so they never reach this evaluation.
//! A public bind address with an empty token (SC-12) is **warn only**, as LocalAI's worker does:
//! the file-transfer warning names the bind address. Warnings and errors never contain a secret;
//! URLs are not quoted at all (they may carry user info).

use std::fmt;

use thiserror::Error;

use crate::config::{
    Config, DEFAULT_ADDRESS, DISTRIBUTED_REQUIRE_AUTH, NATS_ACCOUNT_SEED, NATS_JWT,
    NATS_REQUIRE_AUTH, NATS_SERVICE_JWT, NATS_SERVICE_SEED, NATS_URL, REGISTER_TO,
    REGISTRATION_REQUIRE_AUTH, REGISTRATION_TOKEN, Role, WorkerConfig,
};

/// A layer of the system that a secret protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// The frontend's `/api/node/*` endpoints (on a worker: its registration with them).
    NodeEndpoints,
    /// The worker's HTTP file-transfer server.
    FileTransfer,
    /// The NATS bus.
    NatsBus,
}

impl Layer {
    /// A short name for logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeEndpoints => "node endpoints",
            Self::FileTransfer => "file transfer",
            Self::NatsBus => "NATS bus",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Protected by the secret of this variable.
    Protected {
        /// The variable whose secret protects the layer (for frontend-minted NATS credentials:
        /// `LOCALAI_REGISTER_TO`).
        by: &'static str,
    },
    /// Open to anyone who can reach it.
    Open {
        /// The variable that closes it.
        fix: &'static str,
    },
    /// Not used by this configuration.
    NotConfigured,
}

/// One layer and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerReport {
    /// The layer.
    pub layer: Layer,
    /// Its state.
    pub state: LayerState,
}

/// A loud warning about an open layer. `Display` is the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The open layer.
    pub layer: Layer,
    /// The variable that closes it.
    pub fix: &'static str,
    /// What is exposed and what to set.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why startup is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Registration auth is required but no registration token is configured.
    RegistrationTokenMissing,
    /// NATS auth is required but there is no credential source.
    NatsCredentialsMissing,
    /// NATS auth is required, the frontend uses its service JWT, and the account seed that
    /// mints worker credentials is missing.
    NatsAccountSeedMissing,
}

/// A refusal to start. `Display` is the full text, naming the variable to set and the switch
/// that required it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct PostureError {
    kind: RefusalKind,
    variable: &'static str,
    required_by: Option<&'static str>,
    message: String,
}

impl PostureError {
    /// The variable to set.
    #[must_use]
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The switch that required it (the granular one when both it and the umbrella are set).
    #[must_use]
    pub fn required_by(&self) -> Option<&'static str> {
        self.required_by
    }

    /// Why startup is refused.
    #[must_use]
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }
}

/// The outcome of the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posture {
    /// Every configured layer is protected.
    Protected {
        /// Every layer of the role.
        layers: Vec<LayerReport>,
    },
    /// At least one layer is open.
    Anonymous {
        /// Every layer of the role.
        layers: Vec<LayerReport>,
        /// One warning per open layer.
        warnings: Vec<Warning>,
    },
    /// Startup must be refused.
    Refused {
        /// Why.
        error: PostureError,
    },
}

impl Posture {
    /// Evaluates the posture of `config`; see the module documentation for the rules.
    #[must_use]
    pub fn evaluate(config: &Config) -> Posture {
        if let Some(error) = registration_refusal(config) {
            return Posture::Refused { error };
        }
        let nats = match nats_state(config) {
            Ok(_) if config.role != Role::Frontend && config.registration.register_to.is_none() => {
                LayerState::NotConfigured
            }
            Ok(state) => state,
            Err(error) => return Posture::Refused { error },
        };
        let token_state = match config.registration.token_source {
            Some(source) if config.registration.token.is_some() => {
                LayerState::Protected { by: source }
            }
            _ if config.registration.token.is_some() => LayerState::Protected {
                by: REGISTRATION_TOKEN,
            },
            _ => LayerState::Open {
                fix: REGISTRATION_TOKEN,
            },
        };
        let registering = if config.registration.register_to.is_some() {
            token_state
        } else {
            LayerState::NotConfigured
        };
        let report = |layer, state| LayerReport { layer, state };
        let layers = match config.role {
            Role::Frontend => vec![
                report(Layer::NodeEndpoints, token_state),
                report(Layer::NatsBus, nats),
            ],
            Role::Worker => vec![
                report(Layer::NodeEndpoints, registering),
                report(Layer::FileTransfer, token_state),
                report(Layer::NatsBus, nats),
            ],
            Role::AgentWorker => vec![
                report(Layer::NodeEndpoints, registering),
                report(Layer::NatsBus, nats),
            ],
        };
        let warnings: Vec<Warning> = layers
            .iter()
            .filter_map(|l| match l.state {
                LayerState::Open { fix } => Some(Warning {
                    layer: l.layer,
                    fix,
                    message: warning_text(config, l.layer),
                }),
                _ => None,
            })
            .collect();
        if warnings.is_empty() {
            Posture::Protected { layers }
        } else {
            Posture::Anonymous { layers, warnings }
        }
    }

    /// The layers and their states (empty when refused).
    #[must_use]
    pub fn layers(&self) -> &[LayerReport] {
        match self {
            Self::Protected { layers } | Self::Anonymous { layers, .. } => layers,
            Self::Refused { .. } => &[],
        }
    }

    /// The warnings (empty unless anonymous).
    #[must_use]
    pub fn warnings(&self) -> &[Warning] {
        match self {
            Self::Anonymous { warnings, .. } => warnings,
            _ => &[],
        }
    }

    /// The refusal, if startup must be refused.
    #[must_use]
    pub fn refusal(&self) -> Option<&PostureError> {
        match self {
            Self::Refused { error } => Some(error),
            _ => None,
        }
    }

    /// The state of one layer (`None` when the role does not have it or startup is refused).
    #[must_use]
    pub fn layer(&self, layer: Layer) -> Option<LayerState> {
        self.layers()
            .iter()
            .find(|l| l.layer == layer)
            .map(|l| l.state)
    }
}

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

const STATIC_NATS_MODES: &str = "LOCALAI_NATS_JWT + LOCALAI_NATS_USER_SEED, \
     LOCALAI_NATS_CREDS_FILE, LOCALAI_NATS_NKEY_SEED, LOCALAI_NATS_USER + LOCALAI_NATS_PASSWORD \
     or LOCALAI_NATS_TOKEN";

/// "X is set" / "X and Y are set" for the switches that are on.
fn switches_text(switches: &[&'static str]) -> String {
    match switches {
        [one] => format!("{one} is set"),
        many => format!("{} are set", many.join(" and ")),
    }
}

fn registration_refusal(config: &Config) -> Option<PostureError> {
    if !config.registration_auth_required() || config.registration.token.is_some() {
        return None;
    }
    let mut switches = Vec::new();
    if config.registration.require_auth {
        switches.push(REGISTRATION_REQUIRE_AUTH);
    }
    if config.registration.distributed_require_auth {
        switches.push(DISTRIBUTED_REQUIRE_AUTH);
    }
    let refusing = match config.role {
        Role::Frontend => "node endpoints that accept anyone",
        _ => "an unauthenticated file-transfer server",
    };
    Some(PostureError {
        kind: RefusalKind::RegistrationTokenMissing,
        variable: REGISTRATION_TOKEN,
        required_by: switches.first().copied(),
        message: format!(
            "registration auth is required ({}) but LOCALAI_REGISTRATION_TOKEN is empty — \
             refusing to start {refusing}; set LOCALAI_REGISTRATION_TOKEN or \
             LOCALAI_REGISTRATION_TOKEN_FILE",
            switches_text(&switches)
        ),
    })
}

/// The variable of the NATS credential source, if any (before requirements are applied).
fn nats_source(config: &Config, required: bool) -> Option<&'static str> {
    if let Some(var) = config.nats.credentials.variable() {
        return Some(var);
    }
    match config.role {
        Role::Frontend => config.nats.service.as_ref().map(|_| NATS_SERVICE_JWT),
        Role::AgentWorker if config.nats.service.is_some() => Some(NATS_SERVICE_JWT),
        Role::Worker | Role::AgentWorker => {
            (required && config.registration.register_to.is_some()).then_some(REGISTER_TO)
        }
    }
}

fn nats_state(config: &Config) -> Result<LayerState, PostureError> {
    if config.nats.url.is_none() {
        return Ok(LayerState::NotConfigured);
    }
    let required = config.nats_auth_required();
    let source = nats_source(config, required);
    let required_by = if config.nats.require_auth {
        NATS_REQUIRE_AUTH
    } else {
        DISTRIBUTED_REQUIRE_AUTH
    };
    let why = if config.nats.require_auth {
        format!("{NATS_REQUIRE_AUTH} is set")
    } else {
        format!("{DISTRIBUTED_REQUIRE_AUTH} is set, which implies {NATS_REQUIRE_AUTH}")
    };
    match source {
        Some(NATS_SERVICE_JWT)
            if required && config.role == Role::Frontend && config.nats.account_seed.is_none() =>
        {
            Err(PostureError {
                kind: RefusalKind::NatsAccountSeedMissing,
                variable: NATS_ACCOUNT_SEED,
                required_by: Some(required_by),
                message: format!(
                    "NATS auth is required ({why}) and the frontend connects with \
                     {NATS_SERVICE_JWT}, but {NATS_ACCOUNT_SEED} is empty, so workers cannot get \
                     minted NATS credentials — refusing to start; set {NATS_ACCOUNT_SEED}, or \
                     give the frontend and the workers a static credential ({STATIC_NATS_MODES})"
                ),
            })
        }
        Some(by) => Ok(LayerState::Protected { by }),
        None if required => {
            let (variable, fix) = match config.role {
                Role::Frontend => (
                    NATS_SERVICE_JWT,
                    format!(
                        "set {NATS_SERVICE_JWT} + {NATS_SERVICE_SEED} (with {NATS_ACCOUNT_SEED} \
                         to mint worker credentials), or one of {STATIC_NATS_MODES}"
                    ),
                ),
                Role::Worker => (
                    REGISTER_TO,
                    format!(
                        "set {REGISTER_TO} to acquire frontend-minted credentials, or one of \
                         {STATIC_NATS_MODES}"
                    ),
                ),
                Role::AgentWorker => (
                    REGISTER_TO,
                    format!(
                        "set {REGISTER_TO} to acquire frontend-minted credentials, \
                         {NATS_SERVICE_JWT} + {NATS_SERVICE_SEED}, or one of {STATIC_NATS_MODES}"
                    ),
                ),
            };
            Err(PostureError {
                kind: RefusalKind::NatsCredentialsMissing,
                variable,
                required_by: Some(required_by),
                message: format!(
                    "NATS auth is required ({why}) but no NATS credentials are configured \
                     (NATS JWT+seed required) — refusing to start; {fix}"
                ),
            })
        }
        None => Ok(LayerState::Open {
            fix: match config.role {
                Role::Frontend => NATS_SERVICE_JWT,
                Role::Worker | Role::AgentWorker if config.registration.register_to.is_some() => {
                    NATS_REQUIRE_AUTH
                }
                Role::Worker | Role::AgentWorker => NATS_JWT,
            },
        }),
    }
}

fn warning_text(config: &Config, layer: Layer) -> String {
    const TOKEN_FIX: &str = "set LOCALAI_REGISTRATION_TOKEN (or LOCALAI_REGISTRATION_TOKEN_FILE)";
    match (layer, config.role) {
        (Layer::NodeEndpoints, Role::Frontend) => {
            let address = config
                .frontend
                .as_ref()
                .map_or(DEFAULT_ADDRESS, |f| f.address.as_str());
            format!(
                "node endpoints (/api/node/*) on {address} run WITHOUT a registration token — \
                 anyone who can reach them can register, heartbeat, drain or deregister nodes; \
                 {TOKEN_FIX}, and {REGISTRATION_REQUIRE_AUTH}=true to fail closed"
            )
        }
        (Layer::NodeEndpoints, _) => format!(
            "registering with the frontend ({REGISTER_TO}) WITHOUT a registration token — this \
             only works while the frontend accepts anyone on its node endpoints; {TOKEN_FIX}"
        ),
        (Layer::FileTransfer, _) => match &config.worker {
            Some(w) => file_transfer_warning(w, TOKEN_FIX),
            None => format!("file-transfer server runs WITHOUT a registration token; {TOKEN_FIX}"),
        },
        (Layer::NatsBus, Role::Frontend) => format!(
            "NATS ({}) is used WITHOUT credentials — any client on the bus can publish \
             backend.install and read replies; set {NATS_SERVICE_JWT} + {NATS_SERVICE_SEED} \
             (and {NATS_ACCOUNT_SEED} to mint worker credentials) or one of {STATIC_NATS_MODES}, \
             and {NATS_REQUIRE_AUTH}=true to fail closed",
            NATS_URL
        ),
        (Layer::NatsBus, role) => {
            let minted = if config.registration.register_to.is_some() {
                format!(
                    "set {NATS_REQUIRE_AUTH}=true to wait for frontend-minted credentials, or one \
                     of {STATIC_NATS_MODES}"
                )
            } else {
                format!("set one of {STATIC_NATS_MODES}")
            };
            let service = if role == Role::AgentWorker {
                format!(", or {NATS_SERVICE_JWT} + {NATS_SERVICE_SEED}")
            } else {
                String::new()
            };
            format!(
                "NATS ({}) may be used WITHOUT credentials — if the server accepts anonymous \
                 clients, anyone on the bus can send this node commands and read its replies; \
                 {minted}{service}",
                NATS_URL
            )
        }
    }
}

fn file_transfer_warning(w: &WorkerConfig, token_fix: &str) -> String {
    format!(
        "HTTP file transfer server on {} runs WITHOUT a registration token — read/write to \
         models ({}), staging ({}) and data ({}) is unauthenticated for anyone who can reach \
         this port; {token_fix}, and {REGISTRATION_REQUIRE_AUTH}=true to fail closed",
        w.http_bind(),
        w.models_dir().display(),
        w.staging_dir().display(),
        w.data_dir().display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        FileContents, HTTP_ADDR, Host, MODELS_PATH, NATS_CREDS_FILE, NATS_NKEY_SEED, NATS_PASSWORD,
        NATS_TOKEN, NATS_USER, NATS_USER_SEED, Vars, known_variables,
    };

    const NATS: (&str, &str) = (NATS_URL, "nats://nats:4222");
    const FRONTEND: (&str, &str) = (REGISTER_TO, "http://frontend:8080");

    fn config(role: Role, pairs: &[(&str, &str)]) -> Config {
        let mut files = FileContents::new();
        files.insert(
            NATS_CREDS_FILE,
            Ok(b"-----BEGIN NATS USER JWT-----".to_vec()),
        );
        let host = Host {
            hostname: Some("node1".to_owned()),
            pid: 1,
        };
        Config::parse(
            role,
            &Vars::from_pairs(pairs.iter().copied()),
            &files,
            &host,
        )
        .expect("valid configuration")
    }

    fn evaluate(role: Role, pairs: &[(&str, &str)]) -> Posture {
        Posture::evaluate(&config(role, pairs))
    }

    fn refusal(role: Role, pairs: &[(&str, &str)]) -> PostureError {
        evaluate(role, pairs)
            .refusal()
            .cloned()
            .expect("startup must be refused")
    }

    // -- spec §7.3 (distributed_config_test.go), frontend -------------------------------------

    #[test]
    fn s7_3_registration_require_auth_with_empty_token_is_refused() {
        let e = refusal(Role::Frontend, &[(REGISTRATION_REQUIRE_AUTH, "true"), NATS]);
        assert!(
            e.to_string().contains("LOCALAI_REGISTRATION_REQUIRE_AUTH"),
            "{e}"
        );
        assert!(e.to_string().contains("LOCALAI_REGISTRATION_TOKEN"), "{e}");
        assert_eq!(e.variable(), REGISTRATION_TOKEN);
        assert_eq!(e.required_by(), Some(REGISTRATION_REQUIRE_AUTH));
        assert_eq!(e.kind(), RefusalKind::RegistrationTokenMissing);
    }

    #[test]
    fn s7_3_registration_require_auth_with_token_starts() {
        let p = evaluate(
            Role::Frontend,
            &[
                (REGISTRATION_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
            ],
        );
        assert_eq!(
            p.layer(Layer::NodeEndpoints),
            Some(LayerState::Protected {
                by: REGISTRATION_TOKEN
            })
        );
    }

    #[test]
    fn s7_3_no_switch_and_empty_token_starts_with_a_warning() {
        let p = evaluate(Role::Frontend, &[]);
        let [w] = p.warnings() else {
            panic!("exactly one warning expected: {p:?}")
        };
        assert_eq!(w.layer, Layer::NodeEndpoints);
        assert_eq!(w.fix, REGISTRATION_TOKEN);
        assert!(w.message.contains(":8080"), "{w}");
        assert!(w.message.contains(REGISTRATION_REQUIRE_AUTH), "{w}");
    }

    #[test]
    fn s7_3_umbrella_with_empty_token_is_refused_even_with_nats_credentials() {
        let e = refusal(
            Role::Frontend,
            &[
                (DISTRIBUTED_REQUIRE_AUTH, "true"),
                NATS,
                (NATS_SERVICE_JWT, "eyJ"),
                (NATS_SERVICE_SEED, "SU"),
                (NATS_ACCOUNT_SEED, "SA"),
            ],
        );
        assert!(
            e.to_string().contains("LOCALAI_DISTRIBUTED_REQUIRE_AUTH"),
            "{e}"
        );
        assert!(e.to_string().contains("LOCALAI_REGISTRATION_TOKEN"), "{e}");
        assert_eq!(e.required_by(), Some(DISTRIBUTED_REQUIRE_AUTH));
    }

    #[test]
    fn s7_3_umbrella_with_token_but_no_nats_credentials_is_refused() {
        let cfg = config(
            Role::Frontend,
            &[
                (DISTRIBUTED_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
                NATS,
            ],
        );
        assert!(cfg.nats_auth_required());
        assert!(cfg.registration_auth_required());
        let p = Posture::evaluate(&cfg);
        let e = p.refusal().expect("refused");
        assert!(e.to_string().contains("LOCALAI_NATS_REQUIRE_AUTH"), "{e}");
        assert_eq!(e.required_by(), Some(DISTRIBUTED_REQUIRE_AUTH));
        assert_eq!(e.variable(), NATS_SERVICE_JWT);
        assert_eq!(e.kind(), RefusalKind::NatsCredentialsMissing);
    }

    #[test]
    fn s5_4_frontend_service_jwt_without_account_seed_is_refused_when_required() {
        let e = refusal(
            Role::Frontend,
            &[
                (NATS_REQUIRE_AUTH, "true"),
                NATS,
                (NATS_SERVICE_JWT, "eyJ"),
                (NATS_SERVICE_SEED, "SU"),
            ],
        );
        assert_eq!(e.variable(), NATS_ACCOUNT_SEED);
        assert_eq!(e.kind(), RefusalKind::NatsAccountSeedMissing);
        assert!(
            e.to_string().contains("LOCALAI_NATS_ACCOUNT_SEED is empty"),
            "{e}"
        );
    }

    #[test]
    fn frontend_with_a_static_nats_mode_needs_no_account_seed() {
        let p = evaluate(
            Role::Frontend,
            &[
                (NATS_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
                NATS,
                (NATS_NKEY_SEED, "SUseed"),
            ],
        );
        assert!(matches!(p, Posture::Protected { .. }), "{p:?}");
        assert_eq!(
            p.layer(Layer::NatsBus),
            Some(LayerState::Protected { by: NATS_NKEY_SEED })
        );
    }

    // -- spec §7.4 (auth_required_test.go) -----------------------------------------------------

    #[test]
    fn s7_4_nats_auth_required_is_nats_require_or_umbrella() {
        for role in Role::ALL {
            for (nats, umbrella, expected) in [
                (false, false, false),
                (true, false, true),
                (false, true, true),
                (true, true, true),
            ] {
                let cfg = config(
                    role,
                    &[
                        (NATS_REQUIRE_AUTH, if nats { "true" } else { "false" }),
                        (
                            DISTRIBUTED_REQUIRE_AUTH,
                            if umbrella { "true" } else { "false" },
                        ),
                    ],
                );
                assert_eq!(
                    cfg.nats_auth_required(),
                    expected,
                    "{role} {nats} {umbrella}"
                );
            }
        }
    }

    #[test]
    fn s7_4_registration_auth_required_is_registration_require_or_umbrella() {
        for role in Role::ALL {
            for (reg, umbrella, expected) in [
                (false, false, false),
                (true, false, true),
                (false, true, true),
                (true, true, true),
            ] {
                let cfg = config(
                    role,
                    &[
                        (
                            REGISTRATION_REQUIRE_AUTH,
                            if reg { "true" } else { "false" },
                        ),
                        (
                            DISTRIBUTED_REQUIRE_AUTH,
                            if umbrella { "true" } else { "false" },
                        ),
                    ],
                );
                // Spec §8.2: never on the agent worker, which has no registration switch.
                let expected = expected && role != Role::AgentWorker;
                assert_eq!(
                    cfg.registration_auth_required(),
                    expected,
                    "{role} {reg} {umbrella}"
                );
            }
        }
    }

    // -- spec §6.5, §7.6, §8.2: workers ---------------------------------------------------------

    #[test]
    fn s6_5_worker_refuses_before_anything_else_with_localai_wording() {
        let e = refusal(Role::Worker, &[(DISTRIBUTED_REQUIRE_AUTH, "1")]);
        assert!(
            e.to_string().starts_with(
                "registration auth is required (LOCALAI_DISTRIBUTED_REQUIRE_AUTH is set) but \
                 LOCALAI_REGISTRATION_TOKEN is empty — refusing to start an unauthenticated \
                 file-transfer server; set LOCALAI_REGISTRATION_TOKEN or \
                 LOCALAI_REGISTRATION_TOKEN_FILE"
            ),
            "{e}"
        );
        let e = refusal(
            Role::Worker,
            &[
                (DISTRIBUTED_REQUIRE_AUTH, "1"),
                (REGISTRATION_REQUIRE_AUTH, "1"),
            ],
        );
        assert!(
            e.to_string().contains(
                "(LOCALAI_REGISTRATION_REQUIRE_AUTH and LOCALAI_DISTRIBUTED_REQUIRE_AUTH are set)"
            ),
            "{e}"
        );
        assert_eq!(e.required_by(), Some(REGISTRATION_REQUIRE_AUTH));
    }

    #[test]
    fn s7_6_worker_nats_required_without_credentials_is_refused() {
        let e = refusal(
            Role::Worker,
            &[
                (NATS_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
                NATS,
            ],
        );
        assert!(e.to_string().contains("NATS JWT+seed required"), "{e}");
        assert_eq!(e.variable(), REGISTER_TO);
        assert_eq!(e.required_by(), Some(NATS_REQUIRE_AUTH));
        for var in [
            REGISTER_TO,
            NATS_JWT,
            NATS_USER_SEED,
            NATS_CREDS_FILE,
            NATS_TOKEN,
        ] {
            assert!(e.to_string().contains(var), "{var} missing from {e}");
        }
    }

    #[test]
    fn worker_nats_required_with_frontend_minting_is_protected() {
        let p = evaluate(
            Role::Worker,
            &[
                (NATS_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
                NATS,
                FRONTEND,
            ],
        );
        assert!(matches!(p, Posture::Protected { .. }), "{p:?}");
        assert_eq!(
            p.layer(Layer::NatsBus),
            Some(LayerState::Protected { by: REGISTER_TO })
        );
    }

    #[test]
    fn worker_without_nats_url_ignores_nats_requirements() {
        let p = evaluate(
            Role::Worker,
            &[
                (DISTRIBUTED_REQUIRE_AUTH, "true"),
                (REGISTRATION_TOKEN, "tok"),
            ],
        );
        assert!(matches!(p, Posture::Protected { .. }), "{p:?}");
        assert_eq!(p.layer(Layer::NatsBus), Some(LayerState::NotConfigured));
        assert_eq!(
            p.layer(Layer::NodeEndpoints),
            Some(LayerState::NotConfigured)
        );
    }

    #[test]
    fn s8_2_agent_umbrella_requires_nats_only() {
        let p = evaluate(
            Role::AgentWorker,
            &[(DISTRIBUTED_REQUIRE_AUTH, "true"), NATS, FRONTEND],
        );
        // No registration token required; NATS satisfied by frontend minting.
        let [w] = p.warnings() else {
            panic!("one warning expected: {p:?}")
        };
        assert_eq!(w.layer, Layer::NodeEndpoints);
        assert_eq!(
            p.layer(Layer::NatsBus),
            Some(LayerState::Protected { by: REGISTER_TO })
        );
        let e = refusal(
            Role::AgentWorker,
            &[(DISTRIBUTED_REQUIRE_AUTH, "true"), NATS],
        );
        assert_eq!(e.kind(), RefusalKind::NatsCredentialsMissing);
        assert!(e.to_string().contains(NATS_SERVICE_JWT), "{e}");
    }

    #[test]
    fn agent_service_credentials_protect_the_bus() {
        let p = evaluate(
            Role::AgentWorker,
            &[
                NATS,
                FRONTEND,
                (REGISTRATION_TOKEN, "tok"),
                (NATS_SERVICE_JWT, "eyJ"),
                (NATS_SERVICE_SEED, "SU"),
            ],
        );
        assert!(matches!(p, Posture::Protected { .. }), "{p:?}");
        assert_eq!(
            p.layer(Layer::NatsBus),
            Some(LayerState::Protected {
                by: NATS_SERVICE_JWT
            })
        );
    }

    // -- security.md §3 startup matrix ---------------------------------------------------------

    #[test]
    fn sc01_empty_token_without_switch_starts_anonymous_with_warnings_naming_the_variable() {
        let p = evaluate(Role::Worker, &[FRONTEND]);
        let Posture::Anonymous { warnings, .. } = &p else {
            panic!("anonymous expected: {p:?}")
        };
        let layers: Vec<Layer> = warnings.iter().map(|w| w.layer).collect();
        assert_eq!(layers, [Layer::NodeEndpoints, Layer::FileTransfer]);
        for w in warnings {
            assert_eq!(w.fix, REGISTRATION_TOKEN);
            assert!(w.message.contains(REGISTRATION_TOKEN), "{w}");
        }
    }

    #[test]
    fn sc02_empty_token_with_switch_is_refused_naming_the_token() {
        for switch in [REGISTRATION_REQUIRE_AUTH, DISTRIBUTED_REQUIRE_AUTH] {
            for role in [Role::Frontend, Role::Worker] {
                let e = refusal(role, &[(switch, "true")]);
                assert_eq!(e.variable(), REGISTRATION_TOKEN);
                assert_eq!(e.required_by(), Some(switch));
                assert!(e.to_string().contains(switch), "{e}");
            }
        }
    }

    #[test]
    fn sc06_token_set_without_switch_starts_without_warning() {
        let p = evaluate(Role::Worker, &[(REGISTRATION_TOKEN, "tok"), FRONTEND]);
        assert!(matches!(p, Posture::Protected { .. }), "{p:?}");
        assert!(p.warnings().is_empty());
        for layer in [Layer::NodeEndpoints, Layer::FileTransfer] {
            assert_eq!(
                p.layer(layer),
                Some(LayerState::Protected {
                    by: REGISTRATION_TOKEN
                })
            );
        }
    }

    #[test]
    fn token_from_a_file_is_reported_as_protecting() {
        let mut files = FileContents::new();
        files.insert(
            crate::config::REGISTRATION_TOKEN_FILE,
            Ok(b"tok\n".to_vec()),
        );
        let cfg = Config::parse(
            Role::Worker,
            &Vars::from_pairs([(crate::config::REGISTRATION_TOKEN_FILE, "/run/token")]),
            &files,
            &Host {
                hostname: None,
                pid: 1,
            },
        )
        .unwrap();
        assert_eq!(
            Posture::evaluate(&cfg).layer(Layer::FileTransfer),
            Some(LayerState::Protected {
                by: crate::config::REGISTRATION_TOKEN_FILE
            })
        );
    }

    #[test]
    fn sc07_nats_required_without_credentials_is_refused_for_every_role() {
        for role in Role::ALL {
            let e = refusal(
                role,
                &[
                    (NATS_REQUIRE_AUTH, "true"),
                    (REGISTRATION_TOKEN, "tok"),
                    NATS,
                ],
            );
            assert_eq!(e.required_by(), Some(NATS_REQUIRE_AUTH), "{role}");
            assert!(e.to_string().contains(e.variable()), "{e}");
        }
    }

    #[test]
    fn sc12_public_bind_with_empty_token_only_warns_naming_the_bind_and_directories() {
        // Pinned: warn only, like LocalAI's worker (its API refuses; its worker does not).
        let p = evaluate(
            Role::Worker,
            &[(HTTP_ADDR, "0.0.0.0:50050"), (MODELS_PATH, "/srv/models")],
        );
        let w = p
            .warnings()
            .iter()
            .find(|w| w.layer == Layer::FileTransfer)
            .expect("file-transfer warning");
        for part in [
            "0.0.0.0:50050",
            "/srv/models",
            "/srv/staging",
            "/srv/data",
            REGISTRATION_TOKEN,
            REGISTRATION_REQUIRE_AUTH,
        ] {
            assert!(w.message.contains(part), "{part} missing from {w}");
        }
        assert_eq!(w.to_string(), w.message);
    }

    #[test]
    fn warnings_never_quote_urls_that_may_hold_credentials() {
        let p = evaluate(
            Role::Worker,
            &[
                (NATS_URL, "nats://bob:urlSECRET@nats:4222"),
                (REGISTER_TO, "http://admin:regSECRET@fe:8080"),
            ],
        );
        assert!(!p.warnings().is_empty());
        for w in p.warnings() {
            assert!(!w.message.contains("SECRET"), "{w}");
        }
    }

    #[test]
    fn refused_posture_has_no_layers() {
        let p = evaluate(Role::Worker, &[(REGISTRATION_REQUIRE_AUTH, "true")]);
        assert!(p.layers().is_empty());
        assert!(p.warnings().is_empty());
        assert_eq!(p.layer(Layer::FileTransfer), None);
    }

    // -- the full truth table -------------------------------------------------------------------

    /// The NATS credentials present in a case.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Creds {
        Absent,
        /// One of the five static modes (index into `STATIC`).
        Static(usize),
        /// Service JWT + seed (frontend, agent worker).
        Service,
        /// Service JWT + seed + account seed (frontend).
        ServiceAndAccount,
    }

    const MARK: &str = "SecretMarker";

    type Pairs = &'static [(&'static str, &'static str)];
    const STATIC: [(&str, Pairs); 5] = [
        (
            NATS_JWT,
            &[
                (NATS_JWT, "jwtSecretMarker"),
                (NATS_USER_SEED, "seedSecretMarker"),
            ],
        ),
        (NATS_TOKEN, &[(NATS_TOKEN, "tokSecretMarker")]),
        (
            NATS_USER,
            &[(NATS_USER, "alice"), (NATS_PASSWORD, "pwSecretMarker")],
        ),
        (NATS_NKEY_SEED, &[(NATS_NKEY_SEED, "nkeySecretMarker")]),
        (
            NATS_CREDS_FILE,
            &[(NATS_CREDS_FILE, "/etc/nats/worker.creds")],
        ),
    ];

    fn creds_cases(role: Role) -> Vec<Creds> {
        let mut cases = vec![Creds::Absent];
        cases.extend((0..STATIC.len()).map(Creds::Static));
        match role {
            Role::Frontend => cases.extend([Creds::Service, Creds::ServiceAndAccount]),
            Role::AgentWorker => cases.push(Creds::Service),
            Role::Worker => {}
        }
        cases
    }

    #[derive(Debug, Clone, Copy)]
    struct Case {
        role: Role,
        reg_require: bool,
        dist_require: bool,
        nats_require: bool,
        token: bool,
        creds: Creds,
        nats_url: bool,
        register_to: bool,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Expected {
        /// Refused; the variable to set and the switch that required it.
        Refused(&'static str, &'static str),
        /// Starts; these layers are open (none = protected) and NATS is protected by this
        /// variable (`None` = open or not configured).
        Starts(Vec<Layer>, Option<&'static str>),
    }

    /// The expectation, written from the spec tables rather than from the implementation.
    fn expected(c: &Case) -> Expected {
        use Role::{AgentWorker as Agent, Frontend, Worker};
        // §6.4 step 4, §6.5, §8.2: registration switches, never on the agent worker.
        let reg_switch = if c.reg_require {
            Some(REGISTRATION_REQUIRE_AUTH)
        } else if c.dist_require {
            Some(DISTRIBUTED_REQUIRE_AUTH)
        } else {
            None
        };
        if let Some(switch) = reg_switch
            && c.role != Agent
            && !c.token
        {
            return Expected::Refused(REGISTRATION_TOKEN, switch);
        }
        // §5.2, §5.4, §7.4: NATS switches, every role, only when NATS is used.
        let nats_switch = if c.nats_require {
            Some(NATS_REQUIRE_AUTH)
        } else if c.dist_require {
            Some(DISTRIBUTED_REQUIRE_AUTH)
        } else {
            None
        };
        let nats_switch = nats_switch.filter(|_| c.nats_url);
        // What protects NATS in each situation: (when required, when not required).
        // `Err(var)` = refused naming var; `Ok(None)` = open.
        let (if_required, if_not_required): (Result<&str, &str>, Option<&str>) =
            match (c.role, c.creds) {
                (_, Creds::Static(i)) => (Ok(STATIC[i].0), Some(STATIC[i].0)),
                (Frontend, Creds::ServiceAndAccount) => {
                    (Ok(NATS_SERVICE_JWT), Some(NATS_SERVICE_JWT))
                }
                (Frontend, Creds::Service) => (Err(NATS_ACCOUNT_SEED), Some(NATS_SERVICE_JWT)),
                (Frontend, Creds::Absent) => (Err(NATS_SERVICE_JWT), None),
                (Agent, Creds::Service) => (Ok(NATS_SERVICE_JWT), Some(NATS_SERVICE_JWT)),
                (Worker | Agent, Creds::Absent) if c.register_to => (Ok(REGISTER_TO), None),
                (Worker | Agent, Creds::Absent) => (Err(REGISTER_TO), None),
                (Worker | Agent, Creds::Service | Creds::ServiceAndAccount) => {
                    unreachable!("not generated")
                }
            };
        let nats_by = match nats_switch {
            Some(switch) => match if_required {
                Ok(var) => Some(var),
                Err(var) => return Expected::Refused(var, switch),
            },
            None if c.nats_url => if_not_required,
            None => None,
        };
        // Only what runs: a worker or agent without a frontend has no node id, so no NATS.
        let nats_used = c.nats_url && (c.role == Frontend || c.register_to);
        let nats_by = nats_by.filter(|_| nats_used);
        let mut open = Vec::new();
        let registers = c.role == Frontend || c.register_to;
        if registers && !c.token {
            open.push(Layer::NodeEndpoints);
        }
        if c.role == Worker && !c.token {
            open.push(Layer::FileTransfer);
        }
        if nats_used && nats_by.is_none() {
            open.push(Layer::NatsBus);
        }
        Expected::Starts(open, nats_by)
    }

    fn pairs_of(c: &Case) -> Vec<(&'static str, &'static str)> {
        let flag = |b: bool| if b { "true" } else { "false" };
        let mut pairs = vec![
            (REGISTRATION_REQUIRE_AUTH, flag(c.reg_require)),
            (DISTRIBUTED_REQUIRE_AUTH, flag(c.dist_require)),
            (NATS_REQUIRE_AUTH, flag(c.nats_require)),
            (
                REGISTRATION_TOKEN,
                if c.token { "regSecretMarker" } else { "" },
            ),
        ];
        if c.nats_url {
            pairs.push(NATS);
        }
        if c.register_to {
            pairs.push(FRONTEND);
        }
        match c.creds {
            Creds::Absent => {}
            Creds::Static(i) => pairs.extend_from_slice(STATIC[i].1),
            Creds::Service => pairs.extend([
                (NATS_SERVICE_JWT, "svcJwtSecretMarker"),
                (NATS_SERVICE_SEED, "svcSeedSecretMarker"),
            ]),
            Creds::ServiceAndAccount => pairs.extend([
                (NATS_SERVICE_JWT, "svcJwtSecretMarker"),
                (NATS_SERVICE_SEED, "svcSeedSecretMarker"),
                (NATS_ACCOUNT_SEED, "accSecretMarker"),
            ]),
        }
        pairs
    }

    fn all_cases() -> Vec<Case> {
        let bools = [false, true];
        let mut cases = Vec::new();
        for role in Role::ALL {
            for reg_require in bools {
                for dist_require in bools {
                    for nats_require in bools {
                        for token in bools {
                            for creds in creds_cases(role) {
                                for nats_url in bools {
                                    for register_to in bools {
                                        cases.push(Case {
                                            role,
                                            reg_require,
                                            dist_require,
                                            nats_require,
                                            token,
                                            creds,
                                            nats_url,
                                            register_to,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        cases
    }

    #[test]
    fn posture_truth_table_over_every_combination_of_switches_token_and_credentials() {
        let cases = all_cases();
        assert_eq!(cases.len(), 2 * 2 * 2 * 2 * 2 * 2 * (8 + 6 + 7));
        for case in &cases {
            let cfg = config(case.role, &pairs_of(case));
            let posture = Posture::evaluate(&cfg);
            let got = match &posture {
                Posture::Refused { error } => {
                    let required_by = error.required_by().expect("a refusal names its switch");
                    assert!(error.to_string().contains(error.variable()), "{error}");
                    assert!(error.to_string().contains(required_by), "{error}");
                    assert!(!error.to_string().contains(MARK), "{error}");
                    Expected::Refused(error.variable(), required_by)
                }
                Posture::Protected { layers } | Posture::Anonymous { layers, .. } => {
                    let open: Vec<Layer> = layers
                        .iter()
                        .filter(|l| matches!(l.state, LayerState::Open { .. }))
                        .map(|l| l.layer)
                        .collect();
                    let nats_by = match posture.layer(Layer::NatsBus) {
                        Some(LayerState::Protected { by }) => Some(by),
                        _ => None,
                    };
                    Expected::Starts(open, nats_by)
                }
            };
            assert_eq!(got, expected(case), "{case:?}");

            let warnings = posture.warnings();
            if let Expected::Starts(open, _) = &got {
                assert_eq!(
                    matches!(posture, Posture::Protected { .. }),
                    open.is_empty(),
                    "{case:?}"
                );
                let warned: Vec<Layer> = warnings.iter().map(|w| w.layer).collect();
                assert_eq!(&warned, open, "one warning per open layer: {case:?}");
            }
            for w in warnings {
                assert!(
                    known_variables(case.role).iter().any(|v| v.name == w.fix),
                    "{case:?}: fix {} is not a variable of the role",
                    w.fix
                );
                assert!(w.message.contains(w.fix), "{w}");
                assert!(!w.message.contains(MARK), "{w}");
            }
        }
    }

    fn arb_case() -> impl proptest::strategy::Strategy<Value = (Role, Vec<(&'static str, String)>)>
    {
        use proptest::prelude::*;
        let role = proptest::sample::select(Role::ALL.to_vec());
        let flag =
            || proptest::option::of(proptest::sample::select(vec!["true", "0", "yes", "off"]));
        let secret = || proptest::option::of("[A-Za-z0-9]{1,6}|\\PC{0,4}");
        (
            role,
            (flag(), flag(), flag()),
            (secret(), secret(), secret(), secret()),
            (secret(), secret(), secret(), secret()),
            (any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    role,
                    (reg, dist, nats),
                    (tok, jwt, seed, ntok),
                    (user, pw, svc, acc),
                    (url, to, creds),
                )| {
                    let mut pairs: Vec<(&'static str, String)> = Vec::new();
                    let mut put = |name: &'static str, v: Option<String>| {
                        if let Some(v) = v {
                            pairs.push((name, v));
                        }
                    };
                    put(REGISTRATION_REQUIRE_AUTH, reg.map(str::to_owned));
                    put(DISTRIBUTED_REQUIRE_AUTH, dist.map(str::to_owned));
                    put(NATS_REQUIRE_AUTH, nats.map(str::to_owned));
                    put(REGISTRATION_TOKEN, tok);
                    put(NATS_JWT, jwt);
                    put(NATS_USER_SEED, seed);
                    put(NATS_TOKEN, ntok);
                    put(NATS_USER, user);
                    put(NATS_PASSWORD, pw.clone());
                    put(NATS_SERVICE_JWT, svc.clone());
                    put(NATS_SERVICE_SEED, svc);
                    put(NATS_ACCOUNT_SEED, acc);
                    put(NATS_URL, url.then(|| "nats://n:4222".to_owned()));
                    put(REGISTER_TO, to.then(|| "http://fe".to_owned()));
                    put(NATS_CREDS_FILE, creds.then(|| "/c.creds".to_owned()));
                    (role, pairs)
                },
            )
    }

    proptest::proptest! {
        /// Whenever a require-auth switch applies to the role and no secret that satisfies it is
        /// configured, the posture is Refused — never Anonymous or Protected.
        #[test]
        fn a_required_secret_that_is_missing_always_refuses((role, pairs) in arb_case()) {
            let vars = Vars::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            let mut files = FileContents::new();
            files.insert(NATS_CREDS_FILE, Ok(b"creds".to_vec()));
            let host = Host { hostname: Some("h".to_owned()), pid: 1 };
            let Ok(cfg) = Config::parse(role, &vars, &files, &host) else {
                return Ok(());
            };
            let is_true = |name: &str| matches!(vars.get(name), Some("true" | "yes"));
            let reg_switch = is_true(REGISTRATION_REQUIRE_AUTH) || is_true(DISTRIBUTED_REQUIRE_AUTH);
            let nats_switch = is_true(NATS_REQUIRE_AUTH) || is_true(DISTRIBUTED_REQUIRE_AUTH);
            let posture = Posture::evaluate(&cfg);
            let refused = matches!(posture, Posture::Refused { .. });

            if role != Role::AgentWorker && reg_switch && vars.get(REGISTRATION_TOKEN).is_none() {
                proptest::prop_assert!(refused, "{:?}", posture);
            }
            let static_mode = [NATS_JWT, NATS_TOKEN, NATS_USER, NATS_NKEY_SEED, NATS_CREDS_FILE]
                .iter()
                .any(|v| vars.get(v).is_some());
            let service = role != Role::Worker && vars.get(NATS_SERVICE_JWT).is_some();
            let account = vars.get(NATS_ACCOUNT_SEED).is_some();
            let minting = role != Role::Frontend && vars.get(REGISTER_TO).is_some();
            let satisfied = static_mode
                || (service && (role == Role::AgentWorker || account))
                || minting;
            if vars.get(NATS_URL).is_some() && nats_switch && !satisfied {
                proptest::prop_assert!(refused, "{:?}", posture);
            }
            if !refused {
                for w in posture.warnings() {
                    proptest::prop_assert!(w.message.contains(w.fix));
                }
            }
        }
    }
}
