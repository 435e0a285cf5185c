//! The start-up machine's NATS credential as the core client's [`Credential`]: seeds become
//! signers (the core never sees a seed), a `.creds` file is read and handed to the core's
//! parser.

use nodegate_core::config::{NATS_CREDS_FILE, NatsCredentials, Secret};
use nodegate_core::jwt::Signer;
use nodegate_core::nats::{Credential, parse_creds};
use nodegate_core::startup::{NatsConnectError, NatsCredential};

/// An nkey pair this process holds.
struct SeedSigner(nkeys::KeyPair);

impl Signer for SeedSigner {
    fn public_key(&self) -> String {
        self.0.public_key()
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        // A pair made from a seed always holds its private key.
        self.0.sign(data).unwrap_or_default()
    }
}

fn signer(seed: &Secret, variable: &str) -> Result<Box<dyn Signer + Send>, NatsConnectError> {
    let pair = nkeys::KeyPair::from_seed(seed.expose().trim()).map_err(|_| {
        NatsConnectError::AuthorizationViolation(format!(
            "the nkey seed of {variable} is not a valid seed"
        ))
    })?;
    Ok(Box::new(SeedSigner(pair)))
}

/// The core client's credential for `credential`.
///
/// # Errors
/// An unreadable `.creds` file or an invalid seed, as the start-up machine reads them.
pub(crate) fn for_core(credential: &NatsCredential) -> Result<Credential, NatsConnectError> {
    let variable = credential.variable();
    Ok(match credential {
        NatsCredential::Anonymous | NatsCredential::Static(NatsCredentials::None) => {
            Credential::Anonymous
        }
        NatsCredential::Static(NatsCredentials::Token(token)) => Credential::Token(token.clone()),
        NatsCredential::Static(NatsCredentials::UserPassword { user, password }) => {
            Credential::UserPassword {
                user: user.clone(),
                password: password.clone(),
            }
        }
        NatsCredential::Static(NatsCredentials::Nkey { seed }) => {
            Credential::Nkey(signer(seed, variable)?)
        }
        NatsCredential::Static(NatsCredentials::CredsFile { path }) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| NatsConnectError::Other(format!("{NATS_CREDS_FILE}: {e}")))?;
            let creds = parse_creds(&text)
                .map_err(|e| NatsConnectError::Other(format!("{NATS_CREDS_FILE}: {e}")))?;
            Credential::Jwt {
                signer: signer(&creds.seed, variable)?,
                jwt: creds.jwt,
            }
        }
        NatsCredential::Static(NatsCredentials::Jwt { jwt, seed })
        | NatsCredential::Jwt { jwt, seed, .. } => Credential::Jwt {
            jwt: jwt.clone(),
            signer: signer(seed, variable)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_become_signers_and_a_bad_seed_names_its_variable() {
        let pair = nkeys::KeyPair::new_user();
        let seed = Secret::new(pair.seed().expect("seed"));
        let nkey = NatsCredential::Static(NatsCredentials::Nkey { seed });
        let Ok(Credential::Nkey(signer)) = for_core(&nkey) else {
            panic!("an nkey credential")
        };
        assert_eq!(signer.public_key(), pair.public_key());
        assert_eq!(signer.sign(b"nonce").len(), 64);
        let bad = NatsCredential::Static(NatsCredentials::Nkey {
            seed: Secret::new("SUnot-a-seed"),
        });
        let Err(NatsConnectError::AuthorizationViolation(text)) = for_core(&bad) else {
            panic!("a bad seed is refused")
        };
        assert!(
            text.contains("LOCALAI_NATS_NKEY_SEED") && !text.contains("SUnot"),
            "{text}"
        );
    }

    #[test]
    fn a_creds_file_is_read_and_a_missing_one_names_the_variable() {
        let pair = nkeys::KeyPair::new_user();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("user.creds");
        let text = format!(
            "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            pair.seed().expect("seed")
        );
        std::fs::write(&path, text).expect("write");
        let creds = NatsCredential::Static(NatsCredentials::CredsFile {
            path: path.display().to_string(),
        });
        let Ok(Credential::Jwt { jwt, signer }) = for_core(&creds) else {
            panic!("a JWT credential")
        };
        assert_eq!(
            (jwt.expose(), signer.public_key()),
            ("a.b.c", pair.public_key())
        );
        let missing = NatsCredential::Static(NatsCredentials::CredsFile {
            path: dir.path().join("nope").display().to_string(),
        });
        assert!(
            matches!(for_core(&missing), Err(NatsConnectError::Other(t)) if t.starts_with(NATS_CREDS_FILE))
        );
    }
}
