//! What crosses the boundary of the startup machine: the effects it asks for, and the results
//! and events an adapter feeds back.

use std::fmt;
use std::time::Duration;

use crate::config::{NatsCredentials, Secret};
use crate::nats::CloseReason;
use crate::registration::{HeartbeatRequest, RegisterRequest};

/// Time as the adapter's wall clock reads it: the duration since the Unix epoch. Wall-clock
/// time because minted JWTs expire at a Unix timestamp.
pub type Time = Duration;

/// How loud a [`Effect::Log`] line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something an operator should look at; the program goes on.
    Warn,
    /// A failure; usually followed by [`Effect::Exit`].
    Error,
}

/// The credential a NATS connection authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsCredential {
    /// No credential: the server must accept anonymous clients.
    Anonymous,
    /// A static credential from the environment (token, user + password, nkey, `.creds`
    /// file, or a user JWT + seed).
    Static(NatsCredentials),
    /// A user JWT and its nkey seed that did not come from `LOCALAI_NATS_JWT`: minted by the
    /// frontend at registration (refreshed in place) or the agent's service user.
    Jwt {
        /// The user JWT.
        jwt: Secret,
        /// The user nkey seed.
        seed: Secret,
        /// Where it came from, for messages.
        source: CredentialSource,
    },
}

/// Where a [`NatsCredential::Jwt`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// Minted by the frontend when this node registered.
    Minted,
    /// `LOCALAI_NATS_SERVICE_JWT` + `LOCALAI_NATS_SERVICE_SEED` (agent worker).
    Service,
}

impl NatsCredential {
    /// The setting an operator changes when this credential is rejected.
    #[must_use]
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Anonymous => crate::config::NATS_REQUIRE_AUTH,
            Self::Static(credentials) => credentials
                .variable()
                .unwrap_or(crate::config::NATS_REQUIRE_AUTH),
            Self::Jwt {
                source: CredentialSource::Minted,
                ..
            } => crate::config::NATS_ACCOUNT_SEED,
            Self::Jwt {
                source: CredentialSource::Service,
                ..
            } => crate::config::NATS_SERVICE_JWT,
        }
    }

    /// A description for logs: the mode, never the secret.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Anonymous => "no credentials (anonymous)".to_owned(),
            Self::Static(credentials) => match credentials.variable() {
                Some(var) => format!("the credential in {var}"),
                None => "no credentials (anonymous)".to_owned(),
            },
            Self::Jwt {
                source: CredentialSource::Minted,
                ..
            } => "the user JWT minted by the frontend".to_owned(),
            Self::Jwt {
                source: CredentialSource::Service,
                ..
            } => format!("the service user JWT ({})", crate::config::NATS_SERVICE_JWT),
        }
    }

    /// Whether this connects without any credential.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous | Self::Static(NatsCredentials::None))
    }
}

impl fmt::Debug for NatsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Static(credentials) => f.debug_tuple("Static").field(credentials).finish(),
            Self::Jwt { source, .. } => f
                .debug_struct("Jwt")
                .field("jwt", &"***")
                .field("seed", &"***")
                .field("source", source)
                .finish(),
        }
    }
}

/// What a subscription is for: the adapter routes each message to the matching handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `nodes.<id>.files.temp`: allocate an output temp file, reply `{local_path}`.
    FilesTemp,
    /// `nodes.<id>.files.listdir`: list a directory, reply `{files}` or `{error}`.
    FilesListDir,
    /// `nodes.<id>.stop`: drain and exit ([`Startup::handle_stop`](super::Startup::handle_stop)).
    NodeStop,
    /// An agent subject, handed to the embedding program.
    Agent,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subject (may hold wildcards).
    pub subject: String,
    /// Queue group, when the subject is shared by a pool of workers.
    pub queue: Option<String>,
    /// What to do with its messages.
    pub handler: Handler,
}

/// What the machine asks the adapter to do. Drain them with
/// [`Startup::poll_output`](super::Startup::poll_output) until [`Effect::SleepUntil`] or
/// [`Effect::Wait`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write a log line.
    Log {
        /// How loud.
        level: Level,
        /// The text (never a secret).
        message: String,
    },
    /// `POST <url>` with the JSON body, `Content-Type: application/json` and
    /// `Authorization: Bearer <token>` when a token is configured; 10 s timeout, no redirects.
    /// Answer with [`Startup::handle_register`](super::Startup::handle_register).
    Register {
        /// The full URL of the register route.
        url: String,
        /// The body.
        body: Box<RegisterRequest>,
    },
    /// `POST <url>` with the heartbeat body; answer with
    /// [`Startup::handle_heartbeat`](super::Startup::handle_heartbeat).
    Heartbeat {
        /// The full URL of the heartbeat route.
        url: String,
        /// The body.
        body: HeartbeatRequest,
    },
    /// Bind and serve the file-transfer server; answer with
    /// [`Startup::handle_file_server`](super::Startup::handle_file_server).
    StartFileServer,
    /// Connect to NATS (one attempt, bounded in time, no background retry); answer with
    /// [`Startup::handle_nats_connected`](super::Startup::handle_nats_connected).
    ConnectNats {
        /// The credential to authenticate with.
        credential: NatsCredential,
    },
    /// Replace the credential used by the live connection's next (re)connect.
    UpdateNatsCredential {
        /// The new credential.
        credential: NatsCredential,
    },
    /// Subscribe to every subject, then confirm with a server round trip so that a
    /// permission violation is reported; answer with
    /// [`Startup::handle_subscribed`](super::Startup::handle_subscribed).
    Subscribe {
        /// The subscriptions.
        subscriptions: Vec<Subscription>,
    },
    /// `/readyz` answers 200 (`true`) or 503 (`false`).
    SetReady(bool),
    /// `POST <url>` (drain); answer with [`Startup::handle_drain`](super::Startup::handle_drain).
    Drain {
        /// The full URL of the drain route.
        url: String,
    },
    /// `GET <url>` (the node's models); answer with
    /// [`Startup::handle_in_flight`](super::Startup::handle_in_flight).
    PollInFlight {
        /// The full URL of the models route.
        url: String,
    },
    /// `POST <url>` (deregister); answer with
    /// [`Startup::handle_deregister`](super::Startup::handle_deregister).
    Deregister {
        /// The full URL of the deregister route.
        url: String,
    },
    /// Stop serving (graceful, bounded), close NATS and exit the process with `code`.
    Exit {
        /// The process exit code: 0 after a clean stop, 1 after a failure or a refusal.
        code: u8,
        /// Why, for the last log line.
        reason: String,
    },
    /// Nothing more to do now: wait for an input, or until this time and then call
    /// [`Startup::handle_timeout`](super::Startup::handle_timeout).
    SleepUntil(Time),
    /// Nothing more to do now and no timer armed: wait for an input.
    Wait,
}

/// The answer to an HTTP effect: a status and a body, or a transport failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpResult {
    /// The server answered.
    Response {
        /// Status code.
        status: u16,
        /// Body (bounded by the adapter).
        body: Vec<u8>,
    },
    /// No answer: connection refused, timeout, TLS failure, redirect refused, … (no secret in
    /// the text).
    Failed(String),
}

/// What the NATS server said about itself in `INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatsServerInfo {
    /// The server requires clients to authenticate.
    pub auth_required: bool,
}

/// Why a NATS connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsConnectError {
    /// `-ERR 'Authorization Violation'` (or a nonce that could not be signed): the
    /// credential is wrong. Retrying does not help.
    AuthorizationViolation(String),
    /// The TLS handshake failed or the server and client disagree on TLS.
    Tls(String),
    /// The server could not be reached (refused, timed out, DNS).
    Unreachable(String),
    /// Anything else (no secret in the text).
    Other(String),
}

impl NatsConnectError {
    /// What the close of a first connection attempt made with the core's
    /// [`NatsClient`](crate::nats::NatsClient) means for the start-up: a rejected credential,
    /// a TLS disagreement, an unreachable or silent server (retried), or anything else.
    #[must_use]
    pub fn from_close(reason: &CloseReason) -> Self {
        let text = reason.to_string();
        match reason {
            CloseReason::ServerError(error) if error.is_rejection() => {
                Self::AuthorizationViolation(text)
            }
            CloseReason::TlsRequiredByServer
            | CloseReason::TlsNotOffered
            | CloseReason::PlaintextBeforeTls => Self::Tls(text),
            CloseReason::HandshakeTimeout
            | CloseReason::StaleConnection
            | CloseReason::ConnectionLost => Self::Unreachable(text),
            CloseReason::ServerError(_)
            | CloseReason::Protocol(_)
            | CloseReason::NoInfo
            | CloseReason::Requested => Self::Other(text),
        }
    }
}

/// Something the live NATS connection reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsEvent {
    /// The connection dropped; the client reconnects by itself.
    Disconnected,
    /// The connection is back.
    Reconnected,
    /// The server sent `-ERR` (permission violation, authentication expired, …).
    ServerError(String),
}

/// Why the node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal,
    /// A message on `nodes.<id>.stop`.
    NatsStop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::ServerError;

    #[test]
    fn a_closed_first_attempt_maps_onto_the_startup_kinds() {
        let of = |reason: CloseReason| NatsConnectError::from_close(&reason);
        assert!(matches!(
            of(CloseReason::ServerError(ServerError::AuthorizationViolation)),
            NatsConnectError::AuthorizationViolation(text) if text.contains("Authorization Violation")
        ));
        assert!(matches!(
            of(CloseReason::ServerError(ServerError::AuthenticationExpired)),
            NatsConnectError::AuthorizationViolation(_)
        ));
        assert!(matches!(
            of(CloseReason::TlsRequiredByServer),
            NatsConnectError::Tls(_)
        ));
        assert!(matches!(
            of(CloseReason::ConnectionLost),
            NatsConnectError::Unreachable(_)
        ));
        assert!(matches!(
            of(CloseReason::HandshakeTimeout),
            NatsConnectError::Unreachable(_)
        ));
        assert!(matches!(
            of(CloseReason::NoInfo),
            NatsConnectError::Other(_)
        ));
    }
}
