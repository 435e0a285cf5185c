//! Minting per-node NATS user credentials with the account key (`LOCALAI_NATS_ACCOUNT_SEED`):
//! a fresh user nkey per mint, claims built by the core (§5.5 permissions, `issuer_account`,
//! `exp`, never a bearer token), signed here with nkeys.

use std::time::Duration;

use nodegate_core::config::Secret;
use nodegate_core::jwt::{self, NodeType, Signer};
use nodegate_core::nodes::api::Minter;
use tracing::warn;

/// A seed that cannot mint.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// Not an nkey seed at all.
    #[error("LOCALAI_NATS_ACCOUNT_SEED is not a valid nkey seed")]
    Invalid,
    /// An nkey seed of another kind (user `SU…`, operator `SO…`).
    #[error("LOCALAI_NATS_ACCOUNT_SEED must be an account seed (SA…), not a {0} seed")]
    WrongKind(&'static str),
}

/// Mints worker credentials with an account key.
pub struct NkeyMinter {
    account: nkeys::KeyPair,
    ttl: Duration,
}

/// An nkeys key pair as the core's JWT signer.
pub struct KeySigner<'a>(pub &'a nkeys::KeyPair);

impl Signer for KeySigner<'_> {
    fn public_key(&self) -> String {
        self.0.public_key()
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(data).unwrap_or_default()
    }
}

impl NkeyMinter {
    /// A minter for the account whose seed is given; minted JWTs live `ttl`.
    ///
    /// # Errors
    /// [`MintError`] when the seed is not an account seed.
    pub fn new(seed: &Secret, ttl: Duration) -> Result<Self, MintError> {
        let account = nkeys::KeyPair::from_seed(seed.expose()).map_err(|_| MintError::Invalid)?;
        match account.key_pair_type() {
            nkeys::KeyPairType::Account => Ok(Self { account, ttl }),
            nkeys::KeyPairType::User => Err(MintError::WrongKind("user")),
            nkeys::KeyPairType::Operator => Err(MintError::WrongKind("operator")),
            _ => Err(MintError::WrongKind("non-account")),
        }
    }

    /// The account's public key (for the server's resolver).
    #[must_use]
    pub fn account_public_key(&self) -> String {
        self.account.public_key()
    }
}

impl Minter for NkeyMinter {
    fn mint(&mut self, node_id: &str, node_type: NodeType, now: u64) -> Option<(Secret, Secret)> {
        let user = nkeys::KeyPair::new_user();
        let seed = match user.seed() {
            Ok(seed) => Secret::new(seed),
            Err(_) => {
                warn!(
                    node = node_id,
                    "failed to mint NATS credentials: no user seed"
                );
                return None;
            }
        };
        match jwt::mint_worker_jwt(
            &KeySigner(&self.account),
            &user.public_key(),
            node_type,
            node_id,
            now,
            self.ttl.as_secs(),
        ) {
            Ok(jwt) => Some((jwt, seed)),
            Err(e) => {
                warn!(node = node_id, "failed to mint NATS credentials: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_non_bearer_worker_jwts_for_the_account() {
        let account = nkeys::KeyPair::new_account();
        let seed = Secret::new(account.seed().unwrap());
        let mut minter = NkeyMinter::new(&seed, Duration::from_secs(3600)).unwrap();
        let (jwt, user_seed) = minter.mint("n.1", NodeType::Backend, 1_000).unwrap();
        let claims = jwt::decode_unverified(jwt.expose()).unwrap();
        assert_eq!(claims.expires, Some(4_600));
        assert!(!claims.bearer_token);
        assert_eq!(
            claims.issuer_account.as_deref(),
            Some(account.public_key().as_str())
        );
        assert!(
            claims
                .permissions
                .subscribe
                .contains(&"nodes.n-1.>".to_owned())
        );
        assert!(user_seed.expose().starts_with("SU"));
    }

    #[test]
    fn refuses_seeds_that_are_not_account_seeds() {
        let user = Secret::new(nkeys::KeyPair::new_user().seed().unwrap());
        assert!(matches!(
            NkeyMinter::new(&user, Duration::from_secs(1)),
            Err(MintError::WrongKind("user"))
        ));
        assert!(matches!(
            NkeyMinter::new(&Secret::new("SAnope"), Duration::from_secs(1)),
            Err(MintError::Invalid)
        ));
    }
}
