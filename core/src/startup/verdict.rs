//! What a NATS connection attempt means, for every role: connected (and how protected the bus
//! really is), a final failure, or a retry. Shared by the startup machine and the frontend.

use super::io::{Level, NatsConnectError, NatsCredential, NatsServerInfo, Subscription};
use crate::config::{
    Config, DISTRIBUTED_REQUIRE_AUTH, NATS_REQUIRE_AUTH, NATS_TLS_CA, NATS_URL, NatsCredentials,
};
use crate::nats::{Permission, ServerError};
use crate::startup::CredentialSource;

/// The meaning of one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsVerdict {
    /// Connected: log these lines (the bus's real protection first) and go on.
    Connected(Vec<(Level, String)>),
    /// Stop the program with this reason.
    Fatal(String),
    /// Try again later; the detail is for the log.
    Retry(String),
}

/// Judges a connection attempt made with `credential`. `required`: NATS auth is required;
/// `umbrella`: by `LOCALAI_DISTRIBUTED_REQUIRE_AUTH`, which turns a server that accepts
/// anonymous clients into a refusal instead of a warning (D11).
#[must_use]
pub fn judge_connection(
    required: bool,
    umbrella: bool,
    credential: &NatsCredential,
    result: &Result<NatsServerInfo, NatsConnectError>,
) -> NatsVerdict {
    match result {
        Ok(info) => {
            let mut logs = Vec::new();
            if !info.auth_required && required {
                if umbrella {
                    return NatsVerdict::Fatal(format!(
                        "NATS auth is required ({DISTRIBUTED_REQUIRE_AUTH} is set) but the NATS \
                         server at {NATS_URL} accepts anonymous clients — anyone on the bus could \
                         command this node; enable authorization on the server (refusing to start)"
                    ));
                }
                logs.push((
                    Level::Warn,
                    format!(
                        "SECURITY WARNING: NATS auth is required ({NATS_REQUIRE_AUTH} is set) but \
                         the NATS server at {NATS_URL} accepts anonymous clients — anyone on the \
                         bus can command this node; enable authorization on the server"
                    ),
                ));
            }
            let layer = if info.auth_required && !credential.is_anonymous() {
                (
                    Level::Info,
                    format!(
                        "NATS bus: protected (connected with {}; the server requires \
                         authentication)",
                        credential.describe()
                    ),
                )
            } else {
                (
                    Level::Warn,
                    format!(
                        "NATS bus: OPEN (connected with {}; the server accepts anonymous \
                         clients)",
                        credential.describe()
                    ),
                )
            };
            logs.push(layer);
            NatsVerdict::Connected(logs)
        }
        Err(NatsConnectError::AuthorizationViolation(detail)) => NatsVerdict::Fatal(format!(
            "connecting to NATS: the server rejected {} (authorization violation: {detail}); \
             check {}",
            credential.describe(),
            credential.variable()
        )),
        Err(NatsConnectError::Tls(detail)) => NatsVerdict::Fatal(format!(
            "connecting to NATS: TLS failed ({detail}); check {NATS_URL} and {NATS_TLS_CA} / \
             LOCALAI_NATS_TLS_CERT / LOCALAI_NATS_TLS_KEY"
        )),
        Err(NatsConnectError::Unreachable(detail) | NatsConnectError::Other(detail)) => {
            NatsVerdict::Retry(detail.clone())
        }
    }
}

/// Reads the server errors that arrived while subscriptions were being confirmed: a
/// `Permissions Violation for Subscription to "<subject>"` means the start fails, naming the
/// subject (LocalAI's confirmed subscriptions). `None` when nothing was denied.
#[must_use]
pub fn denied_subscription(
    server_errors: &[String],
    subscriptions: &[Subscription],
) -> Option<String> {
    server_errors
        .iter()
        .find_map(|text| match ServerError::parse(text) {
            ServerError::PermissionViolation {
                kind: Permission::Subscribe,
                subject,
            } => Some(match subscriptions.iter().find(|s| s.subject == subject) {
                Some(denied) => format!(
                    "subscription to {} denied by the NATS server ({text})",
                    denied.subject
                ),
                None => format!("a subscription was denied by the NATS server ({text})"),
            }),
            _ => None,
        })
}

/// The frontend's NATS credential (spec §5.2): a static credential, else the service user
/// JWT + seed, else none.
#[must_use]
pub fn frontend_credential(config: &Config) -> NatsCredential {
    match (&config.nats.credentials, &config.nats.service) {
        (NatsCredentials::None, Some(service)) => NatsCredential::Jwt {
            jwt: service.jwt.clone(),
            seed: service.seed.clone(),
            source: CredentialSource::Service,
        },
        (NatsCredentials::None, None) => NatsCredential::Anonymous,
        (credentials, _) => NatsCredential::Static(credentials.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(auth_required: bool) -> Result<NatsServerInfo, NatsConnectError> {
        Ok(NatsServerInfo { auth_required })
    }

    #[test]
    fn protected_only_when_the_server_requires_auth_and_we_sent_a_credential() {
        let token = NatsCredential::Static(NatsCredentials::Token(crate::config::Secret::new("t")));
        let NatsVerdict::Connected(logs) = judge_connection(false, false, &token, &ok(true)) else {
            panic!("connected expected")
        };
        assert!(logs[0].1.starts_with("NATS bus: protected"), "{logs:?}");
        let NatsVerdict::Connected(logs) = judge_connection(false, false, &token, &ok(false))
        else {
            panic!("connected expected")
        };
        assert!(logs[0].1.starts_with("NATS bus: OPEN"), "{logs:?}");
        assert!(matches!(
            judge_connection(true, true, &token, &ok(false)),
            NatsVerdict::Fatal(_)
        ));
        assert!(matches!(
            judge_connection(true, false, &token, &ok(false)),
            NatsVerdict::Connected(logs) if logs.len() == 2 && logs[0].0 == Level::Warn
        ));
    }

    #[test]
    fn a_denied_subscription_is_named_and_other_errors_are_not_denials() {
        let subs = vec![Subscription {
            subject: "nodes.n1.stop".into(),
            queue: None,
            handler: super::super::Handler::NodeStop,
        }];
        let denied = denied_subscription(
            &["Permissions Violation for Subscription to \"nodes.n1.stop\"".to_owned()],
            &subs,
        )
        .expect("denied");
        assert!(
            denied.starts_with("subscription to nodes.n1.stop denied"),
            "{denied}"
        );
        assert_eq!(
            denied_subscription(
                &[
                    "Permissions Violation for Publish to \"nodes.n1.stop\"".to_owned(),
                    "Slow Consumer".to_owned()
                ],
                &subs
            ),
            None
        );
    }

    #[test]
    fn wrong_credentials_are_final_and_unreachable_is_retried() {
        let anon = NatsCredential::Anonymous;
        assert!(matches!(
            judge_connection(
                false,
                false,
                &anon,
                &Err(NatsConnectError::AuthorizationViolation("x".into()))
            ),
            NatsVerdict::Fatal(_)
        ));
        assert_eq!(
            judge_connection(
                false,
                false,
                &anon,
                &Err(NatsConnectError::Unreachable("refused".into()))
            ),
            NatsVerdict::Retry("refused".into())
        );
    }
}
