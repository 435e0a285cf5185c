//! The life of a cluster member, as a state machine: validate → refuse | warn | protected →
//! register (pending → approved) → serve files → connect NATS → subscribe → ready → drain →
//! deregister → exit.
//!
//! [`Startup`] is one owner object for the supervisor worker and the agent worker. It performs
//! no I/O and reads no clock: the adapter feeds it results and time with `handle_*` and drains
//! what it must do with [`Startup::poll_output`] ([`Effect`]s are data). Every decision of the
//! program's life is made here — when to retry and how long to wait, which NATS credential to
//! use, when a refusal is final, what the log says — so that every adapter behaves the same.
//!
//! ```text
//!   new ──▶ posture ──refused──▶ Exit(1)                       (before anything is bound)
//!              │
//!              ▼
//!         Registering ◀──pending / 5xx / transport: backoff 2 s ×2 ≤ 30 s
//!              │  401/403 ×3 ─▶ Exit(1) naming LOCALAI_REGISTRATION_TOKEN
//!              │  approved
//!              ▼
//!       StartingFileServer (worker only) ──error──▶ Exit(1)
//!              ▼
//!        ConnectingNats ──authorization violation / TLS──▶ Exit(1) naming the variable
//!              │  (unreachable: backoff and retry)
//!              ▼
//!         Subscribing ──permission violation──▶ Exit(1)
//!              ▼
//!            Ready  (heartbeats; JWT refresh at 75 % of its lifetime; readiness follows NATS)
//!              │  SIGTERM / nodes.<id>.stop / refresh failed
//!              ▼
//!    Draining: drain ─▶ poll in-flight (≤ 10 s) ─▶ deregister ─▶ Exit(0, or 1 after a failure)
//! ```
//!
//! # The drain contract
//! After constructing the machine and after **every** `handle_*` call, call
//! [`Startup::poll_output`] until it returns [`Effect::SleepUntil`] or [`Effect::Wait`]; carry
//! out each other effect (asynchronously: its result comes back later through the matching
//! `handle_*`). At the sleep deadline call [`Startup::handle_timeout`]. After
//! [`Effect::Exit`] the machine ignores every input.
//!
//! ```
//! use std::time::Duration;
//! use nodegate_core::config::{Config, FileContents, Host, Role, Vars};
//! use nodegate_core::startup::{Effect, HttpResult, Startup};
//!
//! let vars = Vars::from_pairs([
//!     ("LOCALAI_REGISTRATION_TOKEN", "change-me"),
//!     ("LOCALAI_REGISTER_TO", "http://frontend:8080"),
//! ]);
//! let host = Host { hostname: Some("gpu1".into()), pid: 1 };
//! let config = Config::parse(Role::Worker, &vars, &FileContents::new(), &host).unwrap();
//! let mut now = Duration::from_secs(1_700_000_000); // the adapter's clock, as an argument
//! let mut machine = Startup::new(config, host, now);
//! let mut started = false;
//! // The canonical run loop, with a fake frontend that approves at once.
//! for _ in 0..100 {
//!     match machine.poll_output() {
//!         Effect::Register { .. } => machine.handle_register(now, HttpResult::Response {
//!             status: 201,
//!             body: br#"{"id":"n1","status":"healthy"}"#.to_vec(),
//!         }),
//!         Effect::StartFileServer => {
//!             started = true;
//!             machine.handle_file_server(now, Ok(()));
//!         }
//!         Effect::Heartbeat { .. } => machine.handle_heartbeat(now, HttpResult::Response {
//!             status: 200,
//!             body: Vec::new(),
//!         }),
//!         Effect::SleepUntil(at) => {
//!             if started { break; }
//!             now = at;
//!             machine.handle_timeout(now);
//!         }
//!         Effect::Exit { code, reason } => panic!("exit {code}: {reason}"),
//!         Effect::Wait => break,
//!         _ => {} // logs, readiness, …
//!     }
//! }
//! assert!(started);
//! assert!(machine.is_ready());
//! ```

mod io;
#[cfg(test)]
mod tests;
mod verdict;

use std::collections::VecDeque;
use std::time::Duration;

pub use io::{
    CredentialSource, Effect, Handler, HttpResult, Level, NatsConnectError, NatsCredential,
    NatsEvent, NatsServerInfo, StopReason, Subscription, Time,
};
pub use verdict::{NatsVerdict, denied_subscription, frontend_credential, judge_connection};

use crate::config::{
    Config, DISTRIBUTED_REQUIRE_AUTH, Host, NATS_REQUIRE_AUTH, NATS_URL, NatsCredentials,
    REGISTER_TO, REGISTRATION_TOKEN, Role,
};
use crate::jwt;
use crate::posture::{LayerState, Posture};
use crate::registration::{
    self, HeartbeatRequest, MintedCredentials, NodeFacts, REGISTER_PATH, RegisterOutcome,
    RegisterRequest,
};

/// First registration / connection retry delay.
pub const BACKOFF_START: Duration = Duration::from_secs(2);
/// Largest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How many 401/403 answers to registration end the program (the token is wrong; a few tries
/// cover a frontend whose token is being rotated).
pub const MAX_UNAUTHORIZED: u32 = 3;
/// How many failed registrations (transport errors, 5xx) end the program (≈ 48 min).
pub const MAX_REGISTER_FAILURES: u32 = 100;
/// Delay between credential refresh attempts after a failure.
pub const REFRESH_RETRY: Duration = Duration::from_secs(30);
/// How many consecutive failed refreshes drain the node and end the program.
pub const MAX_REFRESH_FAILURES: u32 = 10;
/// How long a draining node waits for in-flight requests before deregistering.
pub const DRAIN_WAIT: Duration = Duration::from_secs(10);
/// Interval of the in-flight poll while draining.
pub const IN_FLIGHT_POLL: Duration = Duration::from_secs(1);

/// The startup and lifecycle machine of a supervisor worker or an agent worker.
#[derive(Debug)]
pub struct Startup {
    plan: Plan,
    state: State,
    out: VecDeque<Effect>,
    facts: NodeFacts,
    node_id: Option<String>,
    /// The credential of the NATS connection (set when connecting).
    credential: Option<NatsCredential>,
    /// Whether the NATS link is up (only meaningful once connected).
    nats_up: bool,
    /// A register request is in flight.
    registering: bool,
    heartbeat: Option<Time>,
    heartbeat_in_flight: bool,
    refresh: Option<Refresh>,
}

/// What the configuration asks for, decided once at start.
#[derive(Debug)]
struct Plan {
    role: Role,
    config: Config,
    host: Host,
    register_base: Option<String>,
    nats: bool,
    nats_required: bool,
    umbrella: bool,
    /// A credential that does not come from registration (static env, or the agent's service
    /// user).
    fixed_credential: Option<NatsCredential>,
    /// NATS auth applies and only the frontend can provide the credential.
    needs_minted: bool,
    heartbeat_interval: Duration,
}

#[derive(Debug)]
enum State {
    Registering {
        attempts: u32,
        unauthorized: u32,
        failures: u32,
        next: Option<Time>,
    },
    StartingFileServer,
    ConnectingNats {
        attempts: u32,
        next: Option<Time>,
    },
    Subscribing,
    Ready,
    Draining(Drain),
    Done,
}

#[derive(Debug)]
struct Drain {
    step: DrainStep,
    deadline: Time,
    next: Option<Time>,
    code: u8,
    reason: String,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    Register,
    Connect,
    Poll,
    Deregister,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainStep {
    Draining,
    Polling,
    Deregistering,
}

#[derive(Debug)]
struct Refresh {
    at: Time,
    expires: Time,
    failures: u32,
}

impl Startup {
    /// Evaluates the posture of `config` and prepares the first effects. `host` supplies the
    /// hostname used in advertised addresses; `now` is the adapter's clock.
    #[must_use]
    pub fn new(config: Config, host: Host, now: Time) -> Self {
        let posture = Posture::evaluate(&config);
        let plan = Plan::new(config, host);
        let mut machine = Self {
            plan,
            state: State::Done,
            out: VecDeque::new(),
            facts: NodeFacts::default(),
            node_id: None,
            credential: None,
            nats_up: false,
            registering: false,
            heartbeat: None,
            heartbeat_in_flight: false,
            refresh: None,
        };
        machine.begin(&posture, now);
        machine
    }

    /// Updates what the adapter measured about the machine (memory, disk, GPU); used in the
    /// next register and heartbeat bodies.
    pub fn handle_facts(&mut self, facts: NodeFacts) {
        self.facts = facts;
    }

    /// The next effect. See the drain contract in the module documentation.
    pub fn poll_output(&mut self) -> Effect {
        if let Some(effect) = self.out.pop_front() {
            if matches!(effect, Effect::Exit { .. }) {
                self.out.clear();
            }
            return effect;
        }
        match self.next_deadline() {
            Some(at) => Effect::SleepUntil(at),
            None => Effect::Wait,
        }
    }

    /// The node id the frontend assigned, once registered.
    #[must_use]
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// Whether the node is ready (subscribed, and the NATS link up when NATS is used).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready) && (!self.plan.nats || self.nats_up)
    }

    /// Whether the machine has asked to exit.
    #[must_use]
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The subject token of this node's NATS subjects (the sanitised node id).
    #[must_use]
    pub fn subject_token(&self) -> Option<String> {
        self.node_id.as_deref().map(jwt::sanitize_subject_token)
    }

    /// Time has passed: run every timer that is due.
    pub fn handle_timeout(&mut self, now: Time) {
        self.run_heartbeat_timer(now);
        self.run_refresh_timer(now);
        let due = |at: Option<Time>| at.is_some_and(|at| at <= now);
        let timer = match &mut self.state {
            State::Registering { next, .. } if due(*next) => {
                *next = None;
                Timer::Register
            }
            State::ConnectingNats { next, .. } if due(*next) => {
                *next = None;
                Timer::Connect
            }
            State::Draining(drain) if drain.step == DrainStep::Polling && due(drain.next) => {
                drain.next = None;
                if now >= drain.deadline {
                    Timer::Deregister
                } else {
                    Timer::Poll
                }
            }
            _ => return,
        };
        match timer {
            Timer::Register => self.send_register(),
            Timer::Connect => self.connect_nats(),
            Timer::Poll => {
                let url = self.node_url("models");
                self.out.push_back(Effect::PollInFlight { url });
            }
            Timer::Deregister => {
                self.log(
                    Level::Warn,
                    "in-flight requests did not finish in time: deregistering anyway",
                );
                self.deregister();
            }
        }
    }

    /// The frontend answered a register request (the first registration, a re-registration
    /// while pending, or a credential refresh).
    pub fn handle_register(&mut self, now: Time, result: HttpResult) {
        if !self.registering {
            return;
        }
        self.registering = false;
        let outcome = match result {
            HttpResult::Response { status, body } => registration::classify_register(status, &body),
            HttpResult::Failed(reason) => RegisterOutcome::Retry {
                reason: format!("frontend unreachable: {reason}"),
            },
        };
        if matches!(self.state, State::Registering { .. }) {
            self.on_first_registration(now, outcome);
        } else {
            self.on_refresh(now, outcome);
        }
    }

    /// The file-transfer server is listening (or could not start).
    pub fn handle_file_server(&mut self, now: Time, result: Result<(), String>) {
        if !matches!(self.state, State::StartingFileServer) {
            return;
        }
        match result {
            Ok(()) => self.after_file_server(now),
            Err(error) => self.exit(1, format!("starting HTTP file transfer server: {error}")),
        }
    }

    /// A NATS connection attempt finished.
    pub fn handle_nats_connected(
        &mut self,
        now: Time,
        result: Result<NatsServerInfo, NatsConnectError>,
    ) {
        let State::ConnectingNats { attempts, .. } = self.state else {
            return;
        };
        let credential = self.credential.clone().unwrap_or(NatsCredential::Anonymous);
        match judge_connection(
            self.plan.nats_required,
            self.plan.umbrella,
            &credential,
            &result,
        ) {
            NatsVerdict::Connected(logs) => {
                for (level, message) in logs {
                    self.log(level, message);
                }
                self.nats_up = true;
                self.state = State::Subscribing;
                let subscriptions = self.subscriptions();
                self.out.push_back(Effect::Subscribe { subscriptions });
            }
            NatsVerdict::Fatal(reason) => self.exit(1, reason),
            NatsVerdict::Retry(detail) => {
                let delay = backoff(attempts);
                self.log(
                    Level::Warn,
                    format!(
                        "connecting to NATS failed ({detail}); retrying in {}s (check {NATS_URL})",
                        delay.as_secs()
                    ),
                );
                self.state = State::ConnectingNats {
                    attempts,
                    next: Some(now + delay),
                };
            }
        }
    }

    /// The subscriptions were confirmed by a round trip (or one was denied).
    pub fn handle_subscribed(&mut self, now: Time, result: Result<(), String>) {
        if !matches!(self.state, State::Subscribing) {
            return;
        }
        match result {
            Ok(()) => self.become_ready(now),
            Err(error) => self.exit(
                1,
                format!(
                    "subscribing to this node's NATS subjects: {error} (check the JWT's \
                     subscribe allow list)"
                ),
            ),
        }
    }

    /// The live NATS connection reported something.
    pub fn handle_nats_event(&mut self, now: Time, event: NatsEvent) {
        // Events before the connection attempt reported back belong to that attempt.
        if !matches!(
            self.state,
            State::Subscribing | State::Ready | State::Draining(_)
        ) {
            return;
        }
        match event {
            NatsEvent::Disconnected => {
                if self.nats_up {
                    self.nats_up = false;
                    self.log(
                        Level::Warn,
                        "NATS disconnected: not ready until the link is back",
                    );
                    if matches!(self.state, State::Ready) {
                        self.out.push_back(Effect::SetReady(false));
                    }
                }
            }
            NatsEvent::Reconnected => {
                if !self.nats_up {
                    self.nats_up = true;
                    self.log(Level::Info, "NATS reconnected");
                    if matches!(self.state, State::Ready) {
                        self.out.push_back(Effect::SetReady(true));
                    }
                }
            }
            NatsEvent::ServerError(text) => {
                let error = crate::nats::ServerError::parse(&text);
                let expired = error == crate::nats::ServerError::AuthenticationExpired;
                if expired && self.minted_jwt_valid_at(now) {
                    // The server closes a connection when the JWT it authenticated with
                    // expires, even though that JWT was already replaced by a refreshed one:
                    // the reconnect uses the new credential. Not a credential problem.
                    return self.log(
                        Level::Info,
                        format!(
                            "the NATS server closed the connection made with the previous JWT \
                             when it expired ({text}): reconnecting with the refreshed one"
                        ),
                    );
                }
                let message = match error {
                    crate::nats::ServerError::PermissionViolation { .. } => {
                        format!("NATS permission violation — check the JWT's allow lists: {text}")
                    }
                    crate::nats::ServerError::AuthorizationViolation
                    | crate::nats::ServerError::AuthenticationExpired => format!(
                        "NATS server rejected this node's credentials: {text} (check {})",
                        self.credential
                            .as_ref()
                            .map_or(NATS_REQUIRE_AUTH, NatsCredential::variable)
                    ),
                    _ => format!("NATS server error: {text}"),
                };
                self.log(Level::Error, message);
            }
        }
    }

    /// A heartbeat finished.
    pub fn handle_heartbeat(&mut self, now: Time, result: HttpResult) {
        if !self.heartbeat_in_flight {
            return;
        }
        self.heartbeat_in_flight = false;
        match result {
            HttpResult::Response {
                status: 200..=299, ..
            } => {}
            HttpResult::Response { status: 404, .. } if self.refresh_idle() => {
                self.log(
                    Level::Warn,
                    "the frontend no longer knows this node (heartbeat 404): registering again",
                );
                if !matches!(self.state, State::Registering { .. } | State::Draining(_)) {
                    self.refresh_now(now);
                }
            }
            HttpResult::Response { status, body } => self.log(
                Level::Warn,
                format!(
                    "heartbeat answered {status}: {}",
                    registration::error_message(&body)
                ),
            ),
            HttpResult::Failed(reason) => {
                self.log(Level::Warn, format!("heartbeat failed: {reason}"));
            }
        }
    }

    /// The node must stop (signal or `nodes.<id>.stop`): drain, wait for in-flight work,
    /// deregister, exit 0. A second stop while draining exits at once.
    pub fn handle_stop(&mut self, now: Time, reason: StopReason) {
        let why = match reason {
            StopReason::Signal => "stop signal received",
            StopReason::NatsStop => "stop requested over NATS",
        };
        match self.state {
            State::Done => {}
            State::Draining(_) => self.exit(0, format!("{why} again: exiting now")),
            _ => self.start_drain(now, 0, why.to_owned()),
        }
    }

    /// The drain request finished.
    pub fn handle_drain(&mut self, now: Time, result: HttpResult) {
        let State::Draining(drain) = &mut self.state else {
            return;
        };
        if drain.step != DrainStep::Draining {
            return;
        }
        match result {
            HttpResult::Response {
                status: 200..=299, ..
            } => {
                drain.step = DrainStep::Polling;
                drain.next = Some(now);
                self.handle_timeout(now);
            }
            other => {
                let text = http_text(&other);
                self.log(
                    Level::Warn,
                    format!("drain failed ({text}): deregistering without waiting"),
                );
                self.deregister();
            }
        }
    }

    /// The in-flight poll finished: `Ok(n)` is the sum of `in_flight` over the node's models.
    pub fn handle_in_flight(&mut self, now: Time, result: HttpResult) {
        let State::Draining(drain) = &mut self.state else {
            return;
        };
        if drain.step != DrainStep::Polling || drain.next.is_some() {
            return;
        }
        let in_flight = match &result {
            HttpResult::Response {
                status: 200..=299,
                body,
            } => registration::in_flight_total(body),
            _ => 0,
        };
        if in_flight == 0 || now >= drain.deadline {
            self.deregister();
        } else {
            drain.next = Some(now + IN_FLIGHT_POLL);
        }
    }

    /// The deregistration finished: exit.
    pub fn handle_deregister(&mut self, _now: Time, result: HttpResult) {
        let State::Draining(drain) = &mut self.state else {
            return;
        };
        if drain.step != DrainStep::Deregistering {
            return;
        }
        let (code, reason) = (drain.code, std::mem::take(&mut drain.reason));
        match result {
            HttpResult::Response {
                status: 200..=299, ..
            } => {
                self.log(Level::Info, "deregistered from the frontend");
            }
            other => {
                let text = http_text(&other);
                self.log(Level::Error, format!("deregistration failed: {text}"));
            }
        }
        self.exit(code, reason);
    }

    // -----------------------------------------------------------------------------------------
    // Transitions
    // -----------------------------------------------------------------------------------------

    fn begin(&mut self, posture: &Posture, now: Time) {
        let role = self.plan.role.as_str();
        match posture {
            Posture::Refused { error } => {
                return self.exit(1, format!("refusing to start: {error}"));
            }
            Posture::Anonymous { warnings, .. } => {
                let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
                self.log(
                    Level::Warn,
                    format!("SECURITY WARNING: {}", text.join(" | ")),
                );
            }
            Posture::Protected { .. } => {}
        }
        let summary: Vec<String> = posture
            .layers()
            .iter()
            .map(|layer| match &layer.state {
                LayerState::Protected { by } if layer.layer == crate::posture::Layer::NatsBus => {
                    format!(
                        "{}: credentials from {by} (checked when connecting)",
                        layer.layer
                    )
                }
                LayerState::Protected { by } => format!("{}: protected by {by}", layer.layer),
                LayerState::Open { fix } => format!("{}: OPEN (set {fix})", layer.layer),
                LayerState::NotConfigured => format!("{}: not configured", layer.layer),
            })
            .collect();
        self.log(
            Level::Info,
            format!("{role}: security posture: {}", summary.join("; ")),
        );
        if self.plan.config.nats.url.is_some() && !self.plan.nats {
            self.log(
                Level::Warn,
                format!(
                    "{NATS_URL} is set but {REGISTER_TO} is not: NATS subjects are named after \
                     the node id the frontend assigns, so this node does not connect to NATS"
                ),
            );
        }
        if self.plan.register_base.is_some() {
            self.state = State::Registering {
                attempts: 0,
                unauthorized: 0,
                failures: 0,
                next: None,
            };
            self.send_register();
        } else {
            self.log(
                Level::Info,
                format!("running standalone ({REGISTER_TO} is not set): file transfer only"),
            );
            self.start_services(now);
        }
    }

    fn send_register(&mut self) {
        let Some(base) = &self.plan.register_base else {
            return;
        };
        if self.registering {
            return;
        }
        if let State::Registering { attempts, .. } = &mut self.state {
            *attempts += 1;
        }
        let url = format!("{base}{REGISTER_PATH}");
        let body = match self.plan.role {
            Role::AgentWorker => RegisterRequest::agent(&self.plan.config),
            _ => RegisterRequest::worker(&self.plan.config, &self.plan.host, &self.facts),
        };
        self.registering = true;
        self.out.push_back(Effect::Register {
            url,
            body: Box::new(body),
        });
    }

    fn on_first_registration(&mut self, now: Time, outcome: RegisterOutcome) {
        let State::Registering {
            attempts,
            unauthorized,
            failures,
            ..
        } = self.state
        else {
            return;
        };
        let retry_at = now + backoff(attempts);
        match outcome {
            RegisterOutcome::Approved {
                id,
                credentials,
                api_token: _,
            } => {
                let first = self.node_id.is_none();
                self.node_id = Some(id.clone());
                let credential = match self.choose_credential(credentials) {
                    Ok(credential) => credential,
                    Err(reason) => return self.exit(1, reason),
                };
                self.log(
                    Level::Info,
                    format!("registered with the frontend as node {id} (approved)"),
                );
                if first {
                    self.heartbeat = Some(now + self.plan.heartbeat_interval);
                }
                self.credential = credential;
                self.schedule_refresh(now);
                self.start_services(now);
            }
            RegisterOutcome::Pending { id } => {
                if self.node_id.is_none() {
                    self.heartbeat = Some(now + self.plan.heartbeat_interval);
                }
                self.node_id = Some(id.clone());
                self.log(
                    Level::Info,
                    format!(
                        "node {id} is pending admin approval: asking again in {}s; no NATS \
                         connection and no file server until it is approved",
                        (retry_at - now).as_secs()
                    ),
                );
                self.retry_registration(attempts, unauthorized, failures, retry_at);
            }
            RegisterOutcome::Unauthorized { status, message } => {
                let unauthorized = unauthorized + 1;
                if unauthorized >= MAX_UNAUTHORIZED {
                    return self.exit(
                        1,
                        format!(
                            "failed to register with the frontend: it answered {status} \
                             ({message}) {unauthorized} times — the registration token is missing \
                             or wrong; set {REGISTRATION_TOKEN} to the frontend's token"
                        ),
                    );
                }
                self.log(
                    Level::Warn,
                    format!(
                        "registration refused with {status} ({message}); check \
                         {REGISTRATION_TOKEN}; retrying in {}s",
                        (retry_at - now).as_secs()
                    ),
                );
                self.retry_registration(attempts, unauthorized, failures, retry_at);
            }
            RegisterOutcome::Rejected { status, message } => self.exit(
                1,
                format!(
                    "failed to register with the frontend: it answered {status} ({message}); \
                     check LOCALAI_NODE_NAME, LOCALAI_ADDR and LOCALAI_ADVERTISE_HTTP_ADDR"
                ),
            ),
            RegisterOutcome::Retry { reason } => {
                let failures = failures + 1;
                if failures >= MAX_REGISTER_FAILURES {
                    return self.exit(
                        1,
                        format!(
                            "failed to register with the frontend after {failures} attempts: \
                             {reason} (check {REGISTER_TO})"
                        ),
                    );
                }
                self.log(
                    Level::Warn,
                    format!(
                        "registration failed ({reason}); retrying in {}s",
                        (retry_at - now).as_secs()
                    ),
                );
                self.retry_registration(attempts, unauthorized, failures, retry_at);
            }
        }
    }

    /// Waits in `Registering` for the next attempt at `at`, with the counts so far.
    fn retry_registration(&mut self, attempts: u32, unauthorized: u32, failures: u32, at: Time) {
        self.state = State::Registering {
            attempts,
            unauthorized,
            failures,
            next: Some(at),
        };
    }

    /// Picks the NATS credential once the node is approved (spec §5.2, with nodegate's rules:
    /// never anonymous when NATS auth applies).
    fn choose_credential(
        &self,
        minted: Option<MintedCredentials>,
    ) -> Result<Option<NatsCredential>, String> {
        if !self.plan.nats {
            return Ok(None);
        }
        if let Some(fixed) = &self.plan.fixed_credential {
            // Static credentials win; minted ones are not used (LocalAI ignores them too).
            return Ok(Some(fixed.clone()));
        }
        match minted {
            Some(MintedCredentials { jwt, seed }) => Ok(Some(NatsCredential::Jwt {
                jwt,
                seed,
                source: CredentialSource::Minted,
            })),
            None if self.plan.needs_minted => Err(format!(
                "the frontend approved this node but minted no NATS credentials, and NATS auth \
                 is required ({}) — refusing to connect anonymously; set \
                 LOCALAI_NATS_ACCOUNT_SEED on the frontend, or give this node static \
                 credentials (LOCALAI_NATS_JWT + LOCALAI_NATS_USER_SEED)",
                self.required_by()
            )),
            None => Ok(Some(NatsCredential::Anonymous)),
        }
    }

    fn required_by(&self) -> &'static str {
        if self.plan.config.nats.require_auth {
            NATS_REQUIRE_AUTH
        } else {
            DISTRIBUTED_REQUIRE_AUTH
        }
    }

    fn start_services(&mut self, now: Time) {
        if self.plan.config.worker.is_some() {
            self.state = State::StartingFileServer;
            self.out.push_back(Effect::StartFileServer);
        } else {
            self.after_file_server(now);
        }
    }

    fn after_file_server(&mut self, now: Time) {
        if self.plan.nats && self.credential.is_some() {
            self.state = State::ConnectingNats {
                attempts: 0,
                next: None,
            };
            self.connect_nats();
        } else {
            self.become_ready(now);
        }
    }

    fn connect_nats(&mut self) {
        let State::ConnectingNats { attempts, .. } = &mut self.state else {
            return;
        };
        *attempts += 1;
        let credential = self.credential.clone().unwrap_or(NatsCredential::Anonymous);
        self.out.push_back(Effect::ConnectNats { credential });
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        let tok = self.subject_token().unwrap_or_default();
        let sub = |subject: String, queue: Option<&str>, handler| Subscription {
            subject,
            queue: queue.map(str::to_owned),
            handler,
        };
        match (&self.plan.config.agent, self.plan.role) {
            (Some(agent), Role::AgentWorker) => {
                let queue = Some(agent.queue.as_str());
                vec![
                    sub(agent.subject.clone(), queue, Handler::Agent),
                    sub("agent.*.cancel".into(), None, Handler::Agent),
                    sub("mcp.tools.execute".into(), queue, Handler::Agent),
                    sub("mcp.discovery".into(), queue, Handler::Agent),
                    sub("jobs.mcp-ci.new".into(), Some("workers"), Handler::Agent),
                    sub(format!("nodes.{tok}.backend.stop"), None, Handler::Agent),
                ]
            }
            _ => vec![
                sub(format!("nodes.{tok}.files.temp"), None, Handler::FilesTemp),
                sub(
                    format!("nodes.{tok}.files.listdir"),
                    None,
                    Handler::FilesListDir,
                ),
                sub(format!("nodes.{tok}.stop"), None, Handler::NodeStop),
            ],
        }
    }

    fn become_ready(&mut self, now: Time) {
        self.state = State::Ready;
        if self.plan.register_base.is_some() && self.heartbeat.is_none() {
            self.heartbeat = Some(now + self.plan.heartbeat_interval);
        }
        self.out.push_back(Effect::SetReady(true));
        let role = self.plan.role.as_str();
        let message = match (&self.node_id, self.plan.nats) {
            (Some(id), true) => format!("{role} ready: node {id}, subscribed to its NATS subjects"),
            (Some(id), false) => format!("{role} ready: node {id} (no NATS)"),
            (None, _) => format!("{role} ready"),
        };
        self.log(Level::Info, message);
    }

    fn schedule_refresh(&mut self, now: Time) {
        self.refresh = None;
        let Some(NatsCredential::Jwt {
            jwt,
            source: CredentialSource::Minted,
            ..
        }) = &self.credential
        else {
            return;
        };
        let Some(exp) = jwt::expiry(jwt.expose()) else {
            return;
        };
        let expires = Duration::from_secs(exp);
        let lifetime = expires.saturating_sub(now);
        self.refresh = Some(Refresh {
            at: now + lifetime.mul_f64(0.75),
            expires,
            failures: 0,
        });
    }

    /// Whether the credential in use is a minted JWT that has not expired at `now`.
    fn minted_jwt_valid_at(&self, now: Time) -> bool {
        match &self.credential {
            Some(NatsCredential::Jwt {
                jwt,
                source: CredentialSource::Minted,
                ..
            }) => jwt::expiry(jwt.expose()).is_some_and(|exp| Duration::from_secs(exp) > now),
            _ => false,
        }
    }

    fn refresh_idle(&self) -> bool {
        !self.registering
    }

    /// Re-registers now, outside the first registration (heartbeat 404).
    fn refresh_now(&mut self, now: Time) {
        match &mut self.refresh {
            Some(refresh) => refresh.at = now,
            None => {
                self.refresh = Some(Refresh {
                    at: now,
                    expires: Time::MAX,
                    failures: 0,
                });
            }
        }
        self.run_refresh_timer(now);
    }

    fn run_refresh_timer(&mut self, now: Time) {
        if !matches!(
            self.state,
            State::Ready | State::Subscribing | State::ConnectingNats { .. }
        ) || self.registering
        {
            return;
        }
        if self.refresh.as_ref().is_some_and(|r| r.at <= now) {
            if let Some(refresh) = &mut self.refresh {
                refresh.at = Time::MAX;
            }
            self.send_register();
        }
    }

    fn on_refresh(&mut self, now: Time, outcome: RegisterOutcome) {
        if matches!(self.state, State::Draining(_) | State::Done) {
            return;
        }
        let failure = match outcome {
            RegisterOutcome::Approved {
                id, credentials, ..
            } => {
                if self.node_id.as_deref() != Some(id.as_str()) {
                    return self.start_drain(
                        now,
                        1,
                        format!(
                            "the frontend gave this node a new id ({id}) when it registered \
                             again: restarting so its NATS subjects follow"
                        ),
                    );
                }
                match (&self.credential, credentials) {
                    (
                        Some(NatsCredential::Jwt {
                            source: CredentialSource::Minted,
                            ..
                        }),
                        Some(MintedCredentials { jwt, seed }),
                    ) => {
                        let credential = NatsCredential::Jwt {
                            jwt,
                            seed,
                            source: CredentialSource::Minted,
                        };
                        self.credential = Some(credential.clone());
                        self.out
                            .push_back(Effect::UpdateNatsCredential { credential });
                        self.log(Level::Info, "NATS credentials refreshed");
                        self.schedule_refresh(now);
                        return;
                    }
                    (
                        Some(NatsCredential::Jwt {
                            source: CredentialSource::Minted,
                            ..
                        }),
                        None,
                    ) => "the frontend minted no new NATS credentials".to_owned(),
                    _ => {
                        self.refresh = None;
                        self.log(Level::Info, "registered with the frontend again");
                        return;
                    }
                }
            }
            RegisterOutcome::Pending { .. } => "the node is pending approval again".to_owned(),
            RegisterOutcome::Unauthorized { status, message } => {
                format!("{status} {message} (check {REGISTRATION_TOKEN})")
            }
            RegisterOutcome::Rejected { status, message } => format!("{status} {message}"),
            RegisterOutcome::Retry { reason } => reason,
        };
        let Some(refresh) = &mut self.refresh else {
            return;
        };
        refresh.failures += 1;
        let failures = refresh.failures;
        if failures >= MAX_REFRESH_FAILURES || now >= refresh.expires {
            self.log(
                Level::Error,
                format!("NATS credential refresh failed {failures} times in a row: {failure}"),
            );
            return self.start_drain(
                now,
                1,
                "shutting down: NATS credentials unavailable".to_owned(),
            );
        }
        refresh.at = now + REFRESH_RETRY;
        self.log(
            Level::Warn,
            format!(
                "re-registering with the frontend failed ({failure}); retrying in {}s",
                REFRESH_RETRY.as_secs()
            ),
        );
    }

    fn run_heartbeat_timer(&mut self, now: Time) {
        let Some(at) = self.heartbeat else {
            return;
        };
        if at > now || matches!(self.state, State::Draining(_) | State::Done) {
            return;
        }
        self.heartbeat = Some(now + self.plan.heartbeat_interval);
        if self.heartbeat_in_flight {
            return;
        }
        // The supervisor worker skips heartbeats while its NATS link is down (it cannot
        // receive work); the agent worker always heartbeats (spec §4.5).
        let link_down = self.plan.nats
            && matches!(self.state, State::Ready)
            && !self.nats_up
            && self.plan.role == Role::Worker;
        if link_down {
            self.log(Level::Warn, "skipping heartbeat: NATS disconnected");
            return;
        }
        let body = match self.plan.role {
            Role::Worker => HeartbeatRequest::worker(&self.facts),
            _ => HeartbeatRequest::default(),
        };
        let url = self.node_url("heartbeat");
        self.heartbeat_in_flight = true;
        self.out.push_back(Effect::Heartbeat { url, body });
    }

    fn start_drain(&mut self, now: Time, code: u8, reason: String) {
        self.refresh = None;
        self.heartbeat = None;
        self.log(
            if code == 0 { Level::Info } else { Level::Error },
            format!("{reason}: draining"),
        );
        self.out.push_back(Effect::SetReady(false));
        if self.node_id.is_none() || self.plan.register_base.is_none() {
            return self.exit(code, reason);
        }
        self.state = State::Draining(Drain {
            step: DrainStep::Draining,
            deadline: now + DRAIN_WAIT,
            next: None,
            code,
            reason,
        });
        let url = self.node_url("drain");
        self.out.push_back(Effect::Drain { url });
    }

    fn deregister(&mut self) {
        let url = self.node_url("deregister");
        if let State::Draining(drain) = &mut self.state {
            drain.step = DrainStep::Deregistering;
            drain.next = None;
        }
        self.out.push_back(Effect::Deregister { url });
    }

    fn exit(&mut self, code: u8, reason: String) {
        self.state = State::Done;
        self.refresh = None;
        self.heartbeat = None;
        let level = if code == 0 { Level::Info } else { Level::Error };
        self.log(level, reason.clone());
        self.out.push_back(Effect::Exit { code, reason });
    }

    fn log(&mut self, level: Level, message: impl Into<String>) {
        self.out.push_back(Effect::Log {
            level,
            message: message.into(),
        });
    }

    fn node_url(&self, verb: &str) -> String {
        let base = self.plan.register_base.as_deref().unwrap_or_default();
        let id = self.node_id.as_deref().unwrap_or_default();
        format!("{base}{}", registration::node_path(id, verb))
    }

    fn next_deadline(&self) -> Option<Time> {
        let state = match &self.state {
            State::Registering { next, .. } | State::ConnectingNats { next, .. } => *next,
            State::Draining(drain) => drain.next,
            State::Done => return None,
            _ => None,
        };
        let refresh = self
            .refresh
            .as_ref()
            .map(|r| r.at)
            .filter(|&at| at != Time::MAX && !self.registering);
        let heartbeat = self.heartbeat.filter(|_| !self.heartbeat_in_flight);
        [state, refresh, heartbeat].into_iter().flatten().min()
    }
}

impl Plan {
    fn new(config: Config, host: Host) -> Self {
        let role = config.role;
        let register_base = config
            .registration
            .register_to
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned());
        let nats = config.nats.url.is_some() && register_base.is_some();
        let nats_required = config.nats_auth_required();
        let fixed_credential = match (&config.nats.credentials, &config.nats.service, role) {
            (NatsCredentials::None, Some(service), Role::AgentWorker) => {
                Some(NatsCredential::Jwt {
                    jwt: service.jwt.clone(),
                    seed: service.seed.clone(),
                    source: CredentialSource::Service,
                })
            }
            (NatsCredentials::None, _, _) => None,
            (credentials, _, _) => Some(NatsCredential::Static(credentials.clone())),
        };
        let needs_minted = nats_required && fixed_credential.is_none();
        Self {
            role,
            umbrella: config.registration.distributed_require_auth,
            heartbeat_interval: config.registration.heartbeat_interval,
            config,
            host,
            register_base,
            nats,
            nats_required,
            fixed_credential,
            needs_minted,
        }
    }
}

/// The retry delay after `attempts` attempts: 2 s, 4 s, 8 s, … capped at 30 s.
#[must_use]
pub fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(5);
    (BACKOFF_START * 2u32.pow(exponent)).min(BACKOFF_MAX)
}

fn http_text(result: &HttpResult) -> String {
    match result {
        HttpResult::Response { status, body } => {
            format!("status {status}: {}", registration::error_message(body))
        }
        HttpResult::Failed(reason) => reason.clone(),
    }
}
