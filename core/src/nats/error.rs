//! The meaning of the server's `-ERR` texts.

use thiserror::Error;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// What the server's `-ERR '<text>'` means (texts are matched case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServerError {
    /// `Authorization Violation`: the credential is missing or wrong. Retrying does not help.
    #[error(
        "the NATS server refused the credential (Authorization Violation): check the token, user, \
         nkey or JWT"
    )]
    AuthorizationViolation,
    /// `User Authentication Expired`: the user JWT has expired; get a new one.
    #[error("the NATS user JWT has expired (User Authentication Expired): get a fresh one")]
    AuthenticationExpired,
    /// `Authentication Timeout`: `CONNECT` came too late.
    #[error("the NATS server gave up waiting for CONNECT (Authentication Timeout)")]
    AuthenticationTimeout,
    /// `Permissions Violation for Subscription to "<subject>"` or `… for Publish to
    /// "<subject>"`: the user may not use that subject. The connection stays up.
    #[error(
        "the NATS user may not {kind} {subject:?} (Permissions Violation): widen its allow list"
    )]
    PermissionViolation {
        /// Publish or subscribe.
        kind: Permission,
        /// The subject refused.
        subject: String,
    },
    /// `Stale Connection`: the server missed our `PONG`s.
    #[error("the NATS server closed the connection as stale")]
    StaleConnection,
    /// `Maximum Payload Violation`: a message exceeded the server's `max_payload`.
    #[error("a message exceeded the NATS server's max_payload")]
    MaxPayloadViolation,
    /// Any other text (escaped in the message: it comes from the network).
    #[error("the NATS server reported: {0:?}")]
    Other(String),
}

/// What a [`ServerError::PermissionViolation`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `PUB`/`HPUB`.
    Publish,
    /// `SUB`.
    Subscribe,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Publish => "publish to",
            Self::Subscribe => "subscribe to",
        })
    }
}

impl ServerError {
    /// The meaning of an `-ERR` text (without its quotes).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let permission = |prefix: &str| {
            lower
                .strip_prefix(prefix)
                .map(|_| quoted_subject(&trimmed[prefix.len()..]))
        };
        match lower.as_str() {
            "authorization violation" => Self::AuthorizationViolation,
            "user authentication expired" => Self::AuthenticationExpired,
            "authentication timeout" | "authorization timeout" => Self::AuthenticationTimeout,
            "stale connection" => Self::StaleConnection,
            "maximum payload violation" => Self::MaxPayloadViolation,
            _ => {
                if let Some(subject) = permission("permissions violation for subscription to ") {
                    Self::PermissionViolation {
                        kind: Permission::Subscribe,
                        subject,
                    }
                } else if let Some(subject) = permission("permissions violation for publish to ") {
                    Self::PermissionViolation {
                        kind: Permission::Publish,
                        subject,
                    }
                } else {
                    Self::Other(text.to_owned())
                }
            }
        }
    }

    /// The text as the server writes it after `-ERR` (without the quotes), such that
    /// [`ServerError::parse`] reads it back as `self`: for adapters that report a typed error
    /// to something that reads server texts ([`NatsEvent::ServerError`]).
    ///
    /// [`NatsEvent::ServerError`]: crate::startup::NatsEvent::ServerError
    #[must_use]
    pub fn server_text(&self) -> String {
        match self {
            Self::AuthorizationViolation => "Authorization Violation".to_owned(),
            Self::AuthenticationExpired => "User Authentication Expired".to_owned(),
            Self::AuthenticationTimeout => "Authentication Timeout".to_owned(),
            Self::PermissionViolation { kind, subject } => {
                let what = match kind {
                    Permission::Publish => "Publish",
                    Permission::Subscribe => "Subscription",
                };
                format!("Permissions Violation for {what} to \"{subject}\"")
            }
            Self::StaleConnection => "Stale Connection".to_owned(),
            Self::MaxPayloadViolation => "Maximum Payload Violation".to_owned(),
            Self::Other(text) => text.clone(),
        }
    }

    /// Whether the server refused the credential itself (wrong, or an expired JWT).
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::AuthorizationViolation | Self::AuthenticationExpired
        )
    }

    /// Whether the server closes the connection after sending it (everything but permission
    /// violations and unknown texts).
    #[must_use]
    pub fn closes_connection(&self) -> bool {
        !matches!(self, Self::PermissionViolation { .. } | Self::Other(_))
    }

    /// Whether reconnecting with the same credential can succeed (not after an authorization
    /// violation or an expired JWT).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::AuthorizationViolation | Self::AuthenticationExpired
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

/// `"x" using queue "q"` → `x`; an unquoted text → its first word.
fn quoted_subject(rest: &str) -> String {
    let rest = rest.trim_start();
    match rest.strip_prefix('"') {
        Some(inner) => inner.split('"').next().unwrap_or_default().to_owned(),
        None => rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}
