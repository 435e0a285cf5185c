//! The `.creds` file format of NATS decentralized auth: a user JWT and its nkey seed, each
//! between armour lines (`-----BEGIN NATS USER JWT-----` … `------END NATS USER JWT------`,
//! `-----BEGIN USER NKEY SEED-----` … `------END USER NKEY SEED------`), with free text around
//! them. The adapter reads the file; the core reads the text.

use thiserror::Error;

use crate::config::Secret;

/// The two secrets of a `.creds` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCreds {
    /// The user JWT.
    pub jwt: Secret,
    /// The user nkey seed (`SU…`).
    pub seed: Secret,
}

/// Why a `.creds` text was refused (the messages never quote its contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CredsError {
    /// No `BEGIN NATS USER JWT` block with a line of content.
    #[error("the creds file holds no NATS USER JWT block: use the file `nsc` or nats-setup wrote")]
    MissingJwt,
    /// No `BEGIN USER NKEY SEED` block with a line of content.
    #[error("the creds file holds no USER NKEY SEED block: use the file `nsc` or nats-setup wrote")]
    MissingSeed,
}

/// Reads the JWT and the seed of a `.creds` text (the first non-empty line of each block).
///
/// # Errors
/// [`CredsError`] naming the block that is missing.
pub fn parse_creds(text: &str) -> Result<UserCreds, CredsError> {
    let jwt = block(text, "NATS USER JWT").ok_or(CredsError::MissingJwt)?;
    let seed = block(text, "USER NKEY SEED").ok_or(CredsError::MissingSeed)?;
    Ok(UserCreds {
        jwt: Secret::new(jwt),
        seed: Secret::new(seed),
    })
}

/// The first non-empty line after a `-----BEGIN <name>-----` line, before its END line.
fn block<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|line| is_armour(line, "BEGIN", name))?;
    lines
        .take_while(|line| !is_armour(line, "END", name))
        .find(|line| !line.is_empty())
}

fn is_armour(line: &str, what: &str, name: &str) -> bool {
    let inner = line.trim_matches('-').trim();
    line.starts_with("---")
        && inner
            .strip_prefix(what)
            .is_some_and(|rest| rest.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "-----BEGIN NATS USER JWT-----\neyJhbGciOi.eyJqdGkiOi.c2lnbmF0dXJl\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\nSUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n------END USER NKEY SEED------\n\n*************************************************************\n";

    #[test]
    fn the_jwt_and_the_seed_are_read_between_their_armour_lines() {
        let creds = parse_creds(CREDS).expect("valid");
        assert_eq!(creds.jwt.expose(), "eyJhbGciOi.eyJqdGkiOi.c2lnbmF0dXJl");
        assert_eq!(
            creds.seed.expose(),
            "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
        );
        let crlf = CREDS.replace('\n', "\r\n");
        assert_eq!(parse_creds(&crlf), Ok(creds));
    }

    #[test]
    fn a_missing_or_empty_block_is_named_without_quoting_the_file() {
        assert_eq!(parse_creds(""), Err(CredsError::MissingJwt));
        let only_jwt = CREDS.split("-----BEGIN USER").next().expect("prefix");
        assert_eq!(parse_creds(only_jwt), Err(CredsError::MissingSeed));
        let empty_seed = "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------\n-----BEGIN USER NKEY SEED-----\n\n------END USER NKEY SEED------\n";
        assert_eq!(parse_creds(empty_seed), Err(CredsError::MissingSeed));
        let error = parse_creds(only_jwt).unwrap_err().to_string();
        assert!(!error.contains("eyJ"), "{error}");
    }
}
