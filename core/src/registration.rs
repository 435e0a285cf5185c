//! Registration with the frontend: the payloads of LocalAI's `/api/node/*` routes as serde
//! types, and the classification of the frontend's answers into decisions.
//!
//! The worker (and the agent worker) registers with `POST <LOCALAI_REGISTER_TO>/api/node/register`,
//! sending the registration token **both** as `Authorization: Bearer <token>` and as the body
//! field `token` (spec §4.2, §4.3); heartbeats, drain, the in-flight poll and deregistration
//! follow (§4.5, §4.6). This module builds the bodies and reads the answers; the
//! [`startup`](crate::startup) machine decides what to do with them, and an adapter carries the
//! bytes.
//!
//! Secrets (the token in a register body, minted NATS credentials and API tokens in a
//! response) are held in [`Secret`] and never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::config::{Config, Host, Secret};

/// The path of the register route, appended to `LOCALAI_REGISTER_TO`.
pub const REGISTER_PATH: &str = "/api/node/register";

/// Facts about the machine that the adapter measured (all optional: unknown values are not
/// sent, as LocalAI omits them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Total GPU memory in bytes.
    pub total_vram: Option<u64>,
    /// Free GPU memory in bytes.
    pub available_vram: Option<u64>,
    /// Total memory in bytes.
    pub total_ram: Option<u64>,
    /// Available memory in bytes.
    pub available_ram: Option<u64>,
    /// Size of the filesystem holding the models directory, in bytes.
    pub total_disk: Option<u64>,
    /// Free space on that filesystem, in bytes.
    pub available_disk: Option<u64>,
    /// GPU vendor (`nvidia`, `amd`, …).
    pub gpu_vendor: Option<String>,
}

impl NodeFacts {
    /// Reads the memory figures of a Linux `/proc/meminfo` text (`MemTotal`, `MemAvailable`,
    /// in kB) into [`NodeFacts::total_ram`] and [`NodeFacts::available_ram`], in bytes; a
    /// missing or malformed line leaves its figure unknown.
    pub fn read_meminfo(&mut self, meminfo: &str) {
        self.total_ram = meminfo_bytes(meminfo, "MemTotal:");
        self.available_ram = meminfo_bytes(meminfo, "MemAvailable:");
    }

    /// Sets the disk figures from a `statvfs` of the models directory: block counts and the
    /// fragment size, multiplied without overflow.
    pub fn read_statvfs(&mut self, blocks: u64, available_blocks: u64, fragment_size: u64) {
        self.total_disk = Some(blocks.saturating_mul(fragment_size));
        self.available_disk = Some(available_blocks.saturating_mul(fragment_size));
    }
}

/// A `/proc/meminfo` line such as `MemTotal:  16318428 kB`, in bytes.
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The body of `POST /api/node/register` (spec §4.3).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    /// Registration name: the node's identity key on the frontend.
    pub name: String,
    /// `backend` (omitted: the default) or `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// gRPC address of the worker (required for backend workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Address of the file-transfer server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_address: Option<String>,
    /// The registration token, repeated in the body as LocalAI's frontend requires.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_secret",
        deserialize_with = "secret_opt"
    )]
    pub token: Option<Secret>,
    /// Total GPU memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_vram: Option<u64>,
    /// Free GPU memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_vram: Option<u64>,
    /// Total memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ram: Option<u64>,
    /// Available memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_ram: Option<u64>,
    /// Size of the models filesystem in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_disk: Option<u64>,
    /// Free space on the models filesystem in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_disk: Option<u64>,
    /// GPU vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_vendor: Option<String>,
    /// Labels (`LOCALAI_NODE_LABELS` plus `node.replica-slots`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Replicas of one model this node accepts (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_model: Option<u32>,
    /// VRAM budget, as configured (`80%`, `12GB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_budget: Option<String>,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .field("node_type", &self.node_type)
            .field("address", &self.address)
            .field("http_address", &self.http_address)
            .field("token", &self.token)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// The `node_type` of agent workers.
pub const AGENT_NODE_TYPE: &str = "agent";

/// The label LocalAI adds with the node's replica capacity.
pub const REPLICA_SLOTS_LABEL: &str = "node.replica-slots";

impl RegisterRequest {
    /// The body a supervisor worker sends (spec §4.3 `registrationBody`): name, advertised
    /// gRPC and HTTP addresses, capacity, labels (with `node.replica-slots`), the facts the
    /// adapter measured, and the token when one is configured.
    #[must_use]
    pub fn worker(config: &Config, host: &Host, facts: &NodeFacts) -> Self {
        let hostname = host.hostname_or_localhost();
        let mut request = Self::bare(config, None);
        if let Some(worker) = &config.worker {
            let replicas = worker.max_replicas_per_model.max(1);
            request.address = Some(worker.advertise(hostname));
            request.http_address = Some(worker.advertise_http(hostname));
            request.labels = worker.node_labels.clone();
            request
                .labels
                .insert(REPLICA_SLOTS_LABEL.to_owned(), replicas.to_string());
            request.max_replicas_per_model = Some(replicas);
            request.vram_budget = worker.vram_budget.clone();
        }
        request.total_vram = facts.total_vram;
        request.available_vram = facts.available_vram.or(facts.total_vram);
        request.total_ram = facts.total_ram;
        request.available_ram = facts.available_ram;
        request.total_disk = facts.total_disk.filter(|&t| t > 0);
        request.available_disk = request.total_disk.and(facts.available_disk);
        request.gpu_vendor = facts.gpu_vendor.clone();
        request
    }

    /// The body an agent worker sends: `{"name", "node_type": "agent", "token"?}`.
    #[must_use]
    pub fn agent(config: &Config) -> Self {
        Self::bare(config, Some(AGENT_NODE_TYPE.to_owned()))
    }

    fn bare(config: &Config, node_type: Option<String>) -> Self {
        Self {
            name: config.registration.node_name.clone(),
            node_type,
            address: None,
            http_address: None,
            token: config
                .registration
                .token
                .as_ref()
                .map(|t| Secret::new(t.expose())),
            total_vram: None,
            available_vram: None,
            total_ram: None,
            available_ram: None,
            total_disk: None,
            available_disk: None,
            gpu_vendor: None,
            labels: BTreeMap::new(),
            max_replicas_per_model: None,
            vram_budget: None,
        }
    }

    /// The JSON body, exactly as sent.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a register request always serialises")
    }
}

/// The body of a heartbeat (spec §4.5). The supervisor worker sends what it can measure; the
/// agent worker sends `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// Free GPU memory (only when a GPU total is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_vram: Option<u64>,
    /// Available memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_ram: Option<u64>,
    /// Size of the models filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_disk: Option<u64>,
    /// Free space on the models filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_disk: Option<u64>,
}

impl HeartbeatRequest {
    /// The heartbeat of a supervisor worker from the facts the adapter measured.
    #[must_use]
    pub fn worker(facts: &NodeFacts) -> Self {
        let gpu = facts.total_vram.is_some_and(|t| t > 0);
        Self {
            available_vram: facts.available_vram.filter(|_| gpu),
            available_ram: facts.available_ram,
            total_disk: facts.total_disk.filter(|&t| t > 0),
            available_disk: facts
                .total_disk
                .filter(|&t| t > 0)
                .and(facts.available_disk),
        }
    }

    /// The JSON body, exactly as sent.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a heartbeat always serialises")
    }
}

/// The 201 body of a successful registration (spec §4.4); unknown fields are ignored.
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    /// The node id the frontend assigned (stable across re-registrations of the same name).
    pub id: String,
    /// `healthy`, `pending`, …
    #[serde(default)]
    pub status: String,
    /// An API key provisioned for agent nodes.
    #[serde(default, deserialize_with = "secret_opt")]
    pub api_token: Option<Secret>,
    /// A NATS user JWT minted for this node.
    #[serde(default, deserialize_with = "secret_opt")]
    pub nats_jwt: Option<Secret>,
    /// The nkey seed of that user.
    #[serde(default, deserialize_with = "secret_opt")]
    pub nats_user_seed: Option<Secret>,
}

impl fmt::Debug for RegisterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterResponse")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("api_token", &self.api_token)
            .field("nats_jwt", &self.nats_jwt)
            .field("nats_user_seed", &self.nats_user_seed)
            .finish()
    }
}

/// NATS credentials minted by the frontend for this node: a user JWT and its nkey seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedCredentials {
    /// The user JWT.
    pub jwt: Secret,
    /// The user nkey seed.
    pub seed: Secret,
}

/// What the frontend's answer to a registration means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The node is registered and approved (not `pending`).
    Approved {
        /// The node id.
        id: String,
        /// Minted NATS credentials, when the frontend mints them.
        credentials: Option<MintedCredentials>,
        /// An API key provisioned for agent nodes.
        api_token: Option<Secret>,
    },
    /// The node is registered but waits for an administrator's approval.
    Pending {
        /// The node id.
        id: String,
    },
    /// 401 or 403: the registration token is missing or wrong. Retrying does not help.
    Unauthorized {
        /// The status code.
        status: u16,
        /// The frontend's error text (no secret: the frontend never echoes a token).
        message: String,
    },
    /// Another 4xx: the frontend refuses this request for good.
    Rejected {
        /// The status code.
        status: u16,
        /// The frontend's error text.
        message: String,
    },
    /// A 5xx, a 2xx body that cannot be read, or any other answer worth retrying.
    Retry {
        /// What went wrong, for the log.
        reason: String,
    },
}

/// Classifies the frontend's answer to `POST /api/node/register`.
///
/// Any 2xx whose body carries an `id` is a registration (LocalAI's client accepts any 2xx);
/// `status: "pending"` is [`RegisterOutcome::Pending`]; minted credentials count only when the
/// JWT and the seed are both present and non-empty.
#[must_use]
pub fn classify_register(status: u16, body: &[u8]) -> RegisterOutcome {
    match status {
        200..=299 => match serde_json::from_slice::<RegisterResponse>(body) {
            Ok(response) if !response.id.is_empty() => {
                if response.status.eq_ignore_ascii_case("pending") {
                    return RegisterOutcome::Pending { id: response.id };
                }
                let credentials = match (response.nats_jwt, response.nats_user_seed) {
                    (Some(jwt), Some(seed))
                        if !jwt.expose().is_empty() && !seed.expose().is_empty() =>
                    {
                        Some(MintedCredentials { jwt, seed })
                    }
                    _ => None,
                };
                RegisterOutcome::Approved {
                    id: response.id,
                    credentials,
                    api_token: response.api_token.filter(|t| !t.expose().is_empty()),
                }
            }
            Ok(_) => RegisterOutcome::Retry {
                reason: format!("registration answered {status} without a node id"),
            },
            Err(error) => RegisterOutcome::Retry {
                reason: format!("registration answered {status} with an unreadable body: {error}"),
            },
        },
        401 | 403 => RegisterOutcome::Unauthorized {
            status,
            message: error_message(body),
        },
        400..=499 if status != 408 && status != 429 => RegisterOutcome::Rejected {
            status,
            message: error_message(body),
        },
        _ => RegisterOutcome::Retry {
            reason: format!(
                "registration failed with status {status}: {}",
                error_message(body)
            ),
        },
    }
}

/// The human text of a frontend error body: `{"error":"…"}` (flat) or
/// `{"error":{"message":"…"}}` (node_error), else the body itself, shortened.
#[must_use]
pub fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let error = value.get("error");
        if let Some(text) = error.and_then(|e| e.as_str()) {
            return shorten(text);
        }
        if let Some(text) = error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
        {
            return shorten(text);
        }
    }
    shorten(&String::from_utf8_lossy(body))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The sum of `in_flight` over the node's models (`GET /api/node/<id>/models`, spec §4.6). A
/// body that cannot be read counts as 0, as in LocalAI.
#[must_use]
pub fn in_flight_total(body: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct NodeModel {
        #[serde(default)]
        in_flight: u64,
    }
    serde_json::from_slice::<Vec<NodeModel>>(body)
        .map(|models| models.iter().map(|m| m.in_flight).sum())
        .unwrap_or(0)
}

/// The path of a node route: `/api/node/<id>/<verb>` (`heartbeat`, `drain`, `models`,
/// `deregister`). The id is percent-encoded where it is not a plain path character.
#[must_use]
pub fn node_path(id: &str, verb: &str) -> String {
    let mut out = String::from("/api/node/");
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out.push('/');
    out.push_str(verb);
    out
}

fn expose_secret<S: Serializer>(value: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => serializer.serialize_str(secret.expose()),
        None => serializer.serialize_none(),
    }
}

fn secret_opt<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(Secret::new))
}

#[cfg(test)]
mod tests {

    #[test]
    fn meminfo_lines_are_read_in_bytes_and_a_missing_line_is_unknown() {
        let mut facts = NodeFacts::default();
        facts.read_meminfo(
            "MemTotal:       16318428 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n",
        );
        assert_eq!(facts.total_ram, Some(16_318_428 * 1024));
        assert_eq!(facts.available_ram, Some(8_000_000 * 1024));
        facts.read_meminfo("MemTotal: lots\n");
        assert_eq!((facts.total_ram, facts.available_ram), (None, None));
        facts.read_statvfs(10, 4, 4096);
        assert_eq!(
            (facts.total_disk, facts.available_disk),
            (Some(40960), Some(16384))
        );
        facts.read_statvfs(u64::MAX, 1, 2);
        assert_eq!(facts.total_disk, Some(u64::MAX));
    }
    use super::*;
    use crate::config::{FileContents, Role, Vars};

    fn host() -> Host {
        Host {
            hostname: Some("gpu1".to_owned()),
            pid: 7,
        }
    }

    fn config(role: Role, pairs: &[(&str, &str)]) -> Config {
        let vars = Vars::from_pairs(pairs.iter().copied());
        Config::parse(role, &vars, &FileContents::new(), &host()).expect("valid config")
    }

    #[test]
    fn worker_body_carries_token_addresses_and_replica_label() {
        let cfg = config(
            Role::Worker,
            &[
                ("LOCALAI_REGISTRATION_TOKEN", "tok"),
                ("LOCALAI_ADDR", "worker1:60000"),
                ("LOCALAI_NODE_LABELS", "zone=a, tier = gold"),
                ("LOCALAI_MAX_REPLICAS_PER_MODEL", "2"),
                ("LOCALAI_VRAM_BUDGET", "80%"),
            ],
        );
        let facts = NodeFacts {
            total_ram: Some(64_000),
            available_ram: Some(48_000),
            total_disk: Some(1000),
            available_disk: Some(400),
            ..NodeFacts::default()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&RegisterRequest::worker(&cfg, &host(), &facts).to_json())
                .expect("json");
        assert_eq!(body["token"], "tok");
        assert_eq!(body["name"], "gpu1");
        assert_eq!(body["address"], "worker1:60000");
        assert_eq!(body["http_address"], "worker1:59999");
        assert_eq!(body["labels"]["zone"], "a");
        assert_eq!(body["labels"]["tier"], "gold");
        assert_eq!(body["labels"]["node.replica-slots"], "2");
        assert_eq!(body["max_replicas_per_model"], 2);
        assert_eq!(body["vram_budget"], "80%");
        assert_eq!(body["total_ram"], 64_000);
        assert_eq!(body["available_ram"], 48_000);
        assert_eq!(body["total_disk"], 1000);
        assert_eq!(body["available_disk"], 400);
        assert!(body.get("node_type").is_none(), "backend is the default");
        assert!(
            body.get("total_vram").is_none(),
            "unknown facts are omitted"
        );
    }

    #[test]
    fn vram_budget_is_absent_when_unset_7_5() {
        let cfg = config(Role::Worker, &[]);
        let body: serde_json::Value = serde_json::from_slice(
            &RegisterRequest::worker(&cfg, &host(), &NodeFacts::default()).to_json(),
        )
        .expect("json");
        assert!(body.get("vram_budget").is_none());
        assert!(
            body.get("token").is_none(),
            "no token configured, none sent"
        );
    }

    #[test]
    fn total_vram_is_raw_detection_and_available_defaults_to_total_7_5() {
        let cfg = config(Role::Worker, &[("LOCALAI_VRAM_BUDGET", "50%")]);
        let facts = NodeFacts {
            total_vram: Some(24_000),
            ..NodeFacts::default()
        };
        let req = RegisterRequest::worker(&cfg, &host(), &facts);
        assert_eq!(req.total_vram, Some(24_000));
        assert_eq!(req.available_vram, Some(24_000));
    }

    #[test]
    fn heartbeat_reports_vram_only_with_a_gpu_7_5() {
        let with_gpu = NodeFacts {
            total_vram: Some(24_000),
            available_vram: Some(12_000),
            available_ram: Some(40_000),
            ..NodeFacts::default()
        };
        let hb = HeartbeatRequest::worker(&with_gpu);
        assert_eq!(hb.available_vram, Some(12_000));
        assert_eq!(hb.available_ram, Some(40_000));
        let no_gpu = NodeFacts {
            available_vram: Some(5),
            ..NodeFacts::default()
        };
        assert_eq!(HeartbeatRequest::worker(&no_gpu).available_vram, None);
        assert_eq!(HeartbeatRequest::default().to_json(), b"{}");
    }

    #[test]
    fn agent_body_is_name_type_and_token() {
        let cfg = config(Role::AgentWorker, &[("LOCALAI_REGISTRATION_TOKEN", "tok")]);
        let body: serde_json::Value =
            serde_json::from_slice(&RegisterRequest::agent(&cfg).to_json()).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"name": "agent-gpu1", "node_type": "agent", "token": "tok"})
        );
    }

    #[test]
    fn debug_of_a_register_request_hides_the_token() {
        let cfg = config(
            Role::Worker,
            &[("LOCALAI_REGISTRATION_TOKEN", "very-secret-token")],
        );
        let req = RegisterRequest::worker(&cfg, &host(), &NodeFacts::default());
        assert!(!format!("{req:?}").contains("very-secret-token"));
    }

    #[test]
    fn approved_with_minted_credentials() {
        let body = br#"{"id":"n1","name":"gpu1","status":"healthy","nats_jwt":"eyJ.jwt","nats_user_seed":"SUSEED"}"#;
        let outcome = classify_register(201, body);
        let RegisterOutcome::Approved {
            id, credentials, ..
        } = &outcome
        else {
            panic!("approved expected, got {outcome:?}");
        };
        assert_eq!(id, "n1");
        let creds = credentials.as_ref().expect("minted");
        assert_eq!(creds.jwt.expose(), "eyJ.jwt");
        assert_eq!(creds.seed.expose(), "SUSEED");
        let shown = format!("{outcome:?}");
        assert!(!shown.contains("eyJ.jwt") && !shown.contains("SUSEED"));
    }

    #[test]
    fn half_minted_credentials_count_as_none() {
        let body = br#"{"id":"n1","status":"healthy","nats_jwt":"eyJ.jwt","nats_user_seed":""}"#;
        assert!(matches!(
            classify_register(201, body),
            RegisterOutcome::Approved {
                credentials: None,
                ..
            }
        ));
    }

    #[test]
    fn pending_and_error_answers() {
        assert_eq!(
            classify_register(201, br#"{"id":"n1","status":"pending"}"#),
            RegisterOutcome::Pending { id: "n1".into() }
        );
        assert_eq!(
            classify_register(401, br#"{"error":"invalid registration token"}"#),
            RegisterOutcome::Unauthorized {
                status: 401,
                message: "invalid registration token".into()
            }
        );
        assert_eq!(
            classify_register(
                401,
                br#"{"error":{"code":401,"message":"registration token required","type":"node_error"}}"#
            ),
            RegisterOutcome::Unauthorized {
                status: 401,
                message: "registration token required".into()
            }
        );
        assert!(matches!(
            classify_register(400, br#"{"error":"name is required"}"#),
            RegisterOutcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify_register(503, b"down"),
            RegisterOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_register(429, b""),
            RegisterOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_register(200, b"not json"),
            RegisterOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_register(200, br#"{"id":""}"#),
            RegisterOutcome::Retry { .. }
        ));
    }

    #[test]
    fn in_flight_sums_and_garbage_is_zero() {
        assert_eq!(
            in_flight_total(br#"[{"model_name":"a","in_flight":2},{"in_flight":3},{}]"#),
            5
        );
        assert_eq!(in_flight_total(b"oops"), 0);
        assert_eq!(in_flight_total(b"[]"), 0);
    }

    #[test]
    fn node_paths_escape_the_id() {
        assert_eq!(node_path("n-1", "heartbeat"), "/api/node/n-1/heartbeat");
        assert_eq!(node_path("a/b c", "drain"), "/api/node/a%2Fb%20c/drain");
    }

    #[test]
    fn error_message_is_short_and_plain() {
        let long = "x".repeat(500);
        assert!(error_message(long.as_bytes()).chars().count() <= 201);
        assert_eq!(error_message(b"  plain  "), "plain");
    }
}
