//! NATS JWTs: claims as data, encoded through a signer the caller passes in, and decoded
//! without verification (to read an expiry).
//!
//! # What it is for
//!
//! - The **frontend** mints one user JWT per approved worker node (spec §5.5): a fresh user nkey,
//!   `name = localai-<nodeType>-<sanitized node id>`, `issuer_account` = the account key that
//!   signs it, `exp = now + ttl`, and the allow lists of [`worker_permissions`]. See
//!   [`worker_user_claims`] and [`mint_worker_jwt`].
//! - The **worker** reads the expiry of the JWT it was given ([`expiry`]) to re-register at 75 % of
//!   the lifetime (spec §5.3); it never needs to verify the signature — the NATS server does.
//! - **Tests** build operator and account JWTs ([`OperatorClaims`], [`AccountClaims`]) for a
//!   nats-server running with `resolver: MEMORY`.
//!
//! # Format (nats-io/jwt v2)
//!
//! `b64url(header) "." b64url(payload) "." b64url(signature)`, base64url without padding, header
//! `{"typ":"JWT","alg":"ed25519-nkey"}`, the signature is ed25519 over the first two segments
//! joined by `.`. The payload carries the registered claims (`jti`, `iat`, `iss`, `name`, `sub`,
//! optional `exp`) and a `nats` object whose `type` is `user`, `account` or `operator` and whose
//! `version` is 2. Fields appear in the order, and strings are escaped the way, Go's
//! `encoding/json` writes them, so a token minted here is byte for byte what the Go library
//! would produce for the same claims and time. `jti` is computed like the Go library does: the
//! unpadded RFC 4648 base32 of the SHA-512/256 digest of the registered claims serialised
//! without `jti`.
//!
//! # Security notes
//!
//! - A user JWT minted here is **never a bearer token** (security.md NA-08): [`UserClaims`] has no
//!   way to set `bearer_token`, so the server always checks the nonce signature of the user key.
//! - An encoded JWT is a credential: encoders return a [`Secret`], whose `Debug` and `Display`
//!   print `***`. Decoded claims hold no signature, so they cannot be turned back into a token.
//! - Decoding never panics on input; every failure is a [`JwtError`] that quotes nothing of the
//!   token.
//!
//! # What this module does not do
//! It performs no signature verification, holds no private key (a [`Signer`] is passed in), and
//! reads no clock: `now` is an argument.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512_256};
use thiserror::Error;

use crate::config::Secret;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Something that holds an nkey and can sign with it (adapters and tests wrap
/// `nkeys::KeyPair`). The core never sees the seed.
pub trait Signer {
    /// The public key, nkey-encoded (`O…` operator, `A…` account, `U…` user).
    fn public_key(&self) -> String;
    /// The ed25519 signature of `data` (64 bytes).
    fn sign(&self, data: &[u8]) -> Vec<u8>;
}

/// Publish and subscribe allow lists (or, in [`DecodedClaims::denied`], deny lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects the user may publish to.
    pub publish: Vec<String>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<String>,
}

/// The claims of a user JWT. It has no `bearer_token` field on purpose: users minted here must
/// prove possession of their key by signing the server nonce (NA-08).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims {
    /// The user public key (`U…`): the JWT's `sub`.
    pub subject: String,
    /// The `name` claim.
    pub name: String,
    /// `iat`, unix seconds.
    pub issued_at: u64,
    /// `exp`, unix seconds; `None` (or 0) for a JWT that never expires.
    pub expires: Option<u64>,
    /// `issuer_account`: the account the signing key belongs to. LocalAI sets it to the account
    /// key itself (spec §5.5).
    pub issuer_account: Option<String>,
    /// Allow lists (no deny lists, no response permissions).
    pub permissions: Permissions,
}

/// The claims of an account JWT, with unlimited limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountClaims {
    /// The account public key (`A…`): the JWT's `sub`.
    pub subject: String,
    /// The `name` claim.
    pub name: String,
    /// `iat`, unix seconds.
    pub issued_at: u64,
    /// `exp`, unix seconds; `None` for no expiry.
    pub expires: Option<u64>,
    /// Account public keys that may sign user JWTs on this account's behalf.
    pub signing_keys: Vec<String>,
}

/// The claims of an operator JWT (self-signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorClaims {
    /// The operator public key (`O…`): both `sub` and `iss`.
    pub subject: String,
    /// The `name` claim.
    pub name: String,
    /// `iat`, unix seconds.
    pub issued_at: u64,
    /// `exp`, unix seconds; `None` for no expiry.
    pub expires: Option<u64>,
    /// Other operator public keys that may sign account JWTs.
    pub signing_keys: Vec<String>,
    /// The system account's public key, if any.
    pub system_account: Option<String>,
}

/// What a JWT's `nats.type` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// `"user"`.
    User,
    /// `"account"`.
    Account,
    /// `"operator"`.
    Operator,
}

/// Claims read from a JWT **without verifying its signature**: fit to read an expiry or to check
/// what a minting function produced, not to trust anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedClaims {
    /// `nats.type`.
    pub kind: ClaimKind,
    /// `jti` (empty when absent).
    pub id: String,
    /// `iat`, unix seconds.
    pub issued_at: Option<u64>,
    /// `exp`, unix seconds; `None` when absent or 0 (no expiry).
    pub expires: Option<u64>,
    /// `iss`: the public key that signed the JWT.
    pub issuer: String,
    /// `sub`: the public key the JWT describes.
    pub subject: String,
    /// `name`.
    pub name: Option<String>,
    /// `nats.issuer_account` (users).
    pub issuer_account: Option<String>,
    /// `nats.bearer_token` (users); `false` when absent.
    pub bearer_token: bool,
    /// `nats.pub.allow` and `nats.sub.allow` (users).
    pub permissions: Permissions,
    /// `nats.pub.deny` and `nats.sub.deny` (users).
    pub denied: Permissions,
    /// `nats.signing_keys` (accounts and operators; plain keys only, scoped keys are skipped).
    pub signing_keys: Vec<String>,
    /// `nats.version`.
    pub version: Option<u64>,
}

/// Why a JWT could not be decoded, or claims could not be encoded. Messages never quote the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwtError {
    /// The text is not three `.`-separated segments. Pass the whole JWT (the `-----BEGIN NATS
    /// USER JWT-----` block of a `.creds` file, without the armour lines).
    #[error("a JWT has 3 dot-separated segments, this one has {found}")]
    Segments {
        /// How many segments there were.
        found: usize,
    },
    /// A segment is not unpadded base64url.
    #[error("the JWT {segment} is not unpadded base64url")]
    Base64 {
        /// Which segment.
        segment: Segment,
    },
    /// A segment decodes to something other than the expected JSON object (or a field has the
    /// wrong type, e.g. a negative `exp`).
    #[error("the JWT {segment} is not a valid NATS claims JSON object")]
    Json {
        /// Which segment.
        segment: Segment,
    },
    /// The header is not `{"typ":"JWT","alg":"ed25519-nkey"}` (or the legacy `ed25519`).
    #[error("the JWT header is not a NATS nkey JWT header (typ JWT, alg ed25519-nkey)")]
    Header,
    /// `nats.type` is missing or names something other than user, account or operator.
    #[error("the JWT is not a NATS v2 user, account or operator JWT (nats.type)")]
    UnsupportedType,
    /// A required claim (`sub`, `iss`) is missing or empty.
    #[error("the JWT has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A key has the wrong nkey kind for its place (e.g. a user JWT signed by a user key, or a
    /// subject that is not a user key). Check which seed or public key was passed.
    #[error("the {role} must be {expected}")]
    WrongKeyKind {
        /// Which key: `subject`, `signer`.
        role: &'static str,
        /// What it must be, e.g. `an account public key (A…)`.
        expected: &'static str,
    },
    /// No node ID was given to mint a worker JWT (LocalAI: `natsauth: node ID is required`).
    #[error("natsauth: node ID is required")]
    EmptyNodeId,
}

/// A JWT segment, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The first segment.
    Header,
    /// The second segment.
    Payload,
    /// The third segment.
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// The role of a worker node, which decides its permissions (spec §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A supervisor worker running backends (`backend`).
    Backend,
    /// An agent worker (`agent`).
    Agent,
}

/// A node type other than `backend` or `agent`. LocalAI gives any type other than `agent` the
/// backend permissions; nodegate refuses to guess.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown node type: expected `backend` or `agent`")]
pub struct UnknownNodeType;

impl NodeType {
    /// The wire name: `backend` or `agent`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Agent => "agent",
        }
    }
}

impl FromStr for NodeType {
    type Err = UnknownNodeType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "backend" => Ok(Self::Backend),
            "agent" => Ok(Self::Agent),
            _ => Err(UnknownNodeType),
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Makes a node ID safe as one NATS subject token: `.`, `*`, `>`, space, tab and newline become
/// `-` (spec §5.5; LocalAI's replacer in `messaging` and `natsauth`).
#[must_use]
pub fn sanitize_subject_token(node_id: &str) -> String {
    node_id
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '\n' => '-',
            c => c,
        })
        .collect()
}

/// The allow lists of a worker node's minted user JWT (spec §5.5 table); `node_id` is sanitised
/// with [`sanitize_subject_token`].
#[must_use]
pub fn worker_permissions(node_type: NodeType, node_id: &str) -> Permissions {
    let tok = sanitize_subject_token(node_id);
    match node_type {
        NodeType::Backend => Permissions {
            subscribe: vec![format!("nodes.{tok}.>"), "_INBOX.>".to_owned()],
            publish: vec![
                format!("nodes.{tok}.backend.install.*.progress"),
                format!("nodes.{tok}.files.>"),
                "_INBOX.>".to_owned(),
            ],
        },
        NodeType::Agent => Permissions {
            subscribe: [
                "agent.execute",
                "agent.*.cancel",
                "gallery.*.cancel",
                "gallery.*.progress",
                "jobs.*.cancel",
                "jobs.*.progress",
                "jobs.*.result",
                "jobs.mcp-ci.new",
                "mcp.tools.execute",
                "mcp.discovery",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain([
                format!("nodes.{tok}.backend.stop"),
                "staging.*.progress".to_owned(),
                "_INBOX.>".to_owned(),
            ])
            .collect(),
            publish: strings(&["agent.>", "jobs.>", "_INBOX.>"]),
        },
    }
}

/// The allow lists of the frontend's own service user (LocalAI `scripts/nats-auth-setup.sh`,
/// spec §5.5 last paragraph).
#[must_use]
pub fn frontend_service_permissions() -> Permissions {
    const PUBLISH: [&str; 10] = [
        "nodes.>",
        "gallery.>",
        "agent.>",
        "staging.>",
        "state.>",
        "jobs.>",
        "mcp.>",
        "cache.>",
        "prefixcache.>",
        "finetune.>",
    ];
    let mut subscribe: Vec<String> = PUBLISH
        .iter()
        .filter(|s| **s != "finetune.>")
        .map(|s| (*s).to_owned())
        .collect();
    subscribe.push("_INBOX.>".to_owned());
    Permissions {
        publish: strings(&PUBLISH),
        subscribe,
    }
}

/// The claims of a worker's user JWT exactly as LocalAI's `MintWorkerJWT` builds them (spec
/// §5.5): `sub` = `user_public_key`, `name = localai-<node_type>-<sanitized node_id>`,
/// `issuer_account = account_public_key`, `iat = now`, `exp = now + ttl_secs` (saturating),
/// permissions of [`worker_permissions`]. `ttl_secs` is taken as given (the configuration turns
/// LocalAI's `0` into 24 h). Errors: empty `node_id`, or keys of the wrong kind.
pub fn worker_user_claims(
    user_public_key: &str,
    account_public_key: &str,
    node_type: NodeType,
    node_id: &str,
    now: u64,
    ttl_secs: u64,
) -> Result<UserClaims, JwtError> {
    if node_id.is_empty() {
        return Err(JwtError::EmptyNodeId);
    }
    check_key(user_public_key, 'U', "subject", "a user public key (U…)")?;
    check_key(
        account_public_key,
        'A',
        "issuer account",
        "an account public key (A…)",
    )?;
    Ok(UserClaims {
        subject: user_public_key.to_owned(),
        name: format!("localai-{node_type}-{}", sanitize_subject_token(node_id)),
        issued_at: now,
        expires: Some(now.saturating_add(ttl_secs)),
        issuer_account: Some(account_public_key.to_owned()),
        permissions: worker_permissions(node_type, node_id),
    })
}

/// Mints a worker's user JWT: [`worker_user_claims`] with `issuer_account` = the account key,
/// signed with that same key (as LocalAI does). `user_public_key` is the fresh user nkey the
/// caller generated; its seed goes to the worker alongside the returned JWT.
pub fn mint_worker_jwt(
    account: &(impl Signer + ?Sized),
    user_public_key: &str,
    node_type: NodeType,
    node_id: &str,
    now: u64,
    ttl_secs: u64,
) -> Result<Secret, JwtError> {
    let account_key = account.public_key();
    worker_user_claims(
        user_public_key,
        &account_key,
        node_type,
        node_id,
        now,
        ttl_secs,
    )?
    .encode(account)
}

impl UserClaims {
    /// Claims for `subject` (a user public key) with no permissions, no expiry and no issuer
    /// account.
    #[must_use]
    pub fn new(subject: impl Into<String>, name: impl Into<String>, issued_at: u64) -> Self {
        Self {
            subject: subject.into(),
            name: name.into(),
            issued_at,
            expires: None,
            issuer_account: None,
            permissions: Permissions::default(),
        }
    }

    /// Signs the claims with `signer`, which must hold an account key (`A…`, the account
    /// itself or one of its signing keys). The subject must be a user key (`U…`).
    pub fn encode(&self, signer: &(impl Signer + ?Sized)) -> Result<Secret, JwtError> {
        check_key(&self.subject, 'U', "subject", "a user public key (U…)")?;
        let issuer = signer.public_key();
        check_key(&issuer, 'A', "signer", "an account key (A…)")?;
        let nats = UserNats {
            publish: AllowDeny::allow(&self.permissions.publish),
            subscribe: AllowDeny::allow(&self.permissions.subscribe),
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            issuer_account: self.issuer_account.as_deref().filter(|a| !a.is_empty()),
            kind: "user",
            version: LIB_VERSION,
        };
        Ok(encode(self.registered(&issuer), &nats, signer))
    }

    fn registered<'a>(&'a self, issuer: &'a str) -> Registered<'a> {
        Registered::new(
            self.expires,
            self.issued_at,
            issuer,
            &self.name,
            &self.subject,
        )
    }
}

impl AccountClaims {
    /// Claims for `subject` (an account public key) with no signing keys and no expiry.
    #[must_use]
    pub fn new(subject: impl Into<String>, name: impl Into<String>, issued_at: u64) -> Self {
        Self {
            subject: subject.into(),
            name: name.into(),
            issued_at,
            expires: None,
            signing_keys: Vec::new(),
        }
    }

    /// Signs the claims with `signer`: an operator key (`O…`), or the account's own key for a
    /// self-signed account. The subject must be an account key (`A…`).
    pub fn encode(&self, signer: &(impl Signer + ?Sized)) -> Result<Secret, JwtError> {
        check_key(&self.subject, 'A', "subject", "an account public key (A…)")?;
        let issuer = signer.public_key();
        let prefix = if issuer.starts_with('O') { 'O' } else { 'A' };
        check_key(
            &issuer,
            prefix,
            "signer",
            "an operator or account key (O… or A…)",
        )?;
        let nats = AccountNats {
            limits: AccountLimits::UNLIMITED,
            signing_keys: &self.signing_keys,
            default_permissions: DefaultPermissions::default(),
            authorization: Empty {},
            kind: "account",
            version: LIB_VERSION,
        };
        Ok(encode(
            Registered::new(
                self.expires,
                self.issued_at,
                &issuer,
                &self.name,
                &self.subject,
            ),
            &nats,
            signer,
        ))
    }
}

impl OperatorClaims {
    /// Claims for `subject` (an operator public key) with no signing keys, no system account and
    /// no expiry.
    #[must_use]
    pub fn new(subject: impl Into<String>, name: impl Into<String>, issued_at: u64) -> Self {
        Self {
            subject: subject.into(),
            name: name.into(),
            issued_at,
            expires: None,
            signing_keys: Vec::new(),
            system_account: None,
        }
    }

    /// Signs the claims with `signer`, an operator key (`O…`; normally the subject itself).
    pub fn encode(&self, signer: &(impl Signer + ?Sized)) -> Result<Secret, JwtError> {
        check_key(&self.subject, 'O', "subject", "an operator public key (O…)")?;
        let issuer = signer.public_key();
        check_key(&issuer, 'O', "signer", "an operator key (O…)")?;
        let nats = OperatorNats {
            signing_keys: &self.signing_keys,
            system_account: self.system_account.as_deref().filter(|a| !a.is_empty()),
            kind: "operator",
            version: LIB_VERSION,
        };
        Ok(encode(
            Registered::new(
                self.expires,
                self.issued_at,
                &issuer,
                &self.name,
                &self.subject,
            ),
            &nats,
            signer,
        ))
    }
}

/// Decodes a JWT's header and claims **without verifying the signature** (the signature segment
/// must still be valid base64url, possibly empty). Surrounding whitespace is ignored. Never
/// panics.
pub fn decode_unverified(jwt: &str) -> Result<DecodedClaims, JwtError> {
    let mut segments = jwt.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Segments {
            found: jwt.trim().split('.').count(),
        });
    };
    let header = b64_decode(header, Segment::Header)?;
    let payload = b64_decode(payload, Segment::Payload)?;
    b64_decode(signature, Segment::Signature)?;

    let header: WireHeader = serde_json::from_slice(&header).map_err(|_| JwtError::Json {
        segment: Segment::Header,
    })?;
    let algorithm = header.alg.to_ascii_lowercase();
    if !header.typ.eq_ignore_ascii_case("JWT")
        || (algorithm != ALGORITHM && algorithm != ALGORITHM_OLD)
    {
        return Err(JwtError::Header);
    }

    let claims: WireClaims = serde_json::from_slice(&payload).map_err(|_| JwtError::Json {
        segment: Segment::Payload,
    })?;
    let nats = claims.nats.unwrap_or_default();
    let kind = match nats.kind.as_deref() {
        Some("user") => ClaimKind::User,
        Some("account") => ClaimKind::Account,
        Some("operator") => ClaimKind::Operator,
        _ => return Err(JwtError::UnsupportedType),
    };
    let subject = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or(JwtError::MissingClaim("sub"))?;
    let issuer = claims
        .iss
        .filter(|s| !s.is_empty())
        .ok_or(JwtError::MissingClaim("iss"))?;
    let publish = nats.publish.unwrap_or_default();
    let subscribe = nats.subscribe.unwrap_or_default();
    Ok(DecodedClaims {
        kind,
        id: claims.jti.unwrap_or_default(),
        issued_at: claims.iat,
        expires: claims.exp.filter(|e| *e > 0),
        issuer,
        subject,
        name: claims.name,
        issuer_account: nats.issuer_account.filter(|a| !a.is_empty()),
        bearer_token: nats.bearer_token.unwrap_or(false),
        permissions: Permissions {
            publish: publish.allow.unwrap_or_default(),
            subscribe: subscribe.allow.unwrap_or_default(),
        },
        denied: Permissions {
            publish: publish.deny.unwrap_or_default(),
            subscribe: subscribe.deny.unwrap_or_default(),
        },
        signing_keys: nats
            .signing_keys
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| match k {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        version: nats.version,
    })
}

/// The `exp` of a JWT (unix seconds), or `None` when it has none or cannot be decoded. Not
/// verified: use it to schedule a refresh, never to accept a token.
#[must_use]
pub fn expiry(jwt: &str) -> Option<u64> {
    decode_unverified(jwt).ok()?.expires
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

const ALGORITHM: &str = "ed25519-nkey";
const ALGORITHM_OLD: &str = "ed25519";
const LIB_VERSION: u8 = 2;
const NO_LIMIT: i64 = -1;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A light check of an nkey public key: its prefix letter and the shape of the encoding (56
/// characters of the RFC 4648 base32 alphabet). The checksum is not verified.
fn check_key(
    key: &str,
    prefix: char,
    role: &'static str,
    expected: &'static str,
) -> Result<(), JwtError> {
    if !key.starts_with(prefix) {
        return Err(JwtError::WrongKeyKind { role, expected });
    }
    let shaped = key.len() == 56
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    if shaped {
        Ok(())
    } else {
        Err(JwtError::WrongKeyKind { role, expected })
    }
}

/// The registered claims, in the field order of Go's `jwt.ClaimsData`.
#[derive(Serialize)]
struct Registered<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    iat: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    iss: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    sub: &'a str,
}

impl<'a> Registered<'a> {
    fn new(exp: Option<u64>, iat: u64, iss: &'a str, name: &'a str, sub: &'a str) -> Self {
        Self {
            // Go's `omitempty` drops a zero expiry: 0 means "never".
            exp: exp.filter(|e| *e > 0),
            jti: None,
            iat,
            iss,
            name,
            sub,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Payload<'a, N> {
    #[serde(flatten)]
    registered: Registered<'a>,
    nats: &'a N,
}

#[derive(Serialize)]
struct AllowDeny<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    allow: &'a [String],
}

impl<'a> AllowDeny<'a> {
    fn allow(list: &'a [String]) -> Self {
        Self { allow: list }
    }
}

#[derive(Serialize)]
struct UserNats<'a> {
    #[serde(rename = "pub")]
    publish: AllowDeny<'a>,
    #[serde(rename = "sub")]
    subscribe: AllowDeny<'a>,
    subs: i64,
    data: i64,
    payload: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer_account: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

#[derive(Serialize)]
struct AccountLimits {
    subs: i64,
    data: i64,
    payload: i64,
    imports: i64,
    exports: i64,
    wildcards: bool,
    conn: i64,
    leaf: i64,
}

impl AccountLimits {
    /// `jwt.NewAccountClaims` defaults: everything unlimited, wildcard exports allowed, no
    /// JetStream.
    const UNLIMITED: Self = Self {
        subs: NO_LIMIT,
        data: NO_LIMIT,
        payload: NO_LIMIT,
        imports: NO_LIMIT,
        exports: NO_LIMIT,
        wildcards: true,
        conn: NO_LIMIT,
        leaf: NO_LIMIT,
    };
}

#[derive(Serialize, Default)]
struct Empty {}

#[derive(Serialize, Default)]
struct DefaultPermissions {
    #[serde(rename = "pub")]
    publish: Empty,
    #[serde(rename = "sub")]
    subscribe: Empty,
}

#[derive(Serialize)]
struct AccountNats<'a> {
    limits: AccountLimits,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    signing_keys: &'a [String],
    default_permissions: DefaultPermissions,
    authorization: Empty,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

#[derive(Serialize)]
struct OperatorNats<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    signing_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    system_account: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

/// Header, `jti`, payload, signature: `jwt.ClaimsData.doEncode`.
fn encode<N: Serialize>(
    mut registered: Registered<'_>,
    nats: &N,
    signer: &(impl Signer + ?Sized),
) -> Secret {
    registered.jti = Some(claims_id(&registered));
    let header = URL_SAFE_NO_PAD.encode(go_json(&WireHeaderOut {
        typ: "JWT",
        alg: ALGORITHM,
    }));
    let payload = URL_SAFE_NO_PAD.encode(go_json(&Payload { registered, nats }));
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(signer.sign(signed.as_bytes()));
    Secret::new(format!("{signed}.{signature}"))
}

#[derive(Serialize)]
struct WireHeaderOut {
    typ: &'static str,
    alg: &'static str,
}

/// `jwt.ClaimsData.hash`: base32 (RFC 4648, no padding) of SHA-512/256 of the registered claims
/// serialised without `jti`.
fn claims_id(registered: &Registered<'_>) -> String {
    let without_id = Registered {
        jti: None,
        ..*registered
    };
    base32_nopad(&Sha512_256::digest(go_json(&without_id)))
}

fn base32_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// JSON the way Go's `encoding/json.Marshal` writes it: compact, and with `<`, `>`, `&`, U+2028
/// and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029` (so `nodes.x.>` is
/// `"nodes.x.\u003e"`, as in JWTs minted by the Go library).
fn go_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value
        .serialize(&mut serializer)
        .expect("the claims are strings, integers and booleans: serialisation cannot fail");
    out
}

struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (index, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

fn b64_decode(segment: &str, which: Segment) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Base64 { segment: which })
}

#[derive(Deserialize)]
struct WireHeader {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

#[derive(Deserialize)]
struct WireClaims {
    jti: Option<String>,
    iat: Option<u64>,
    exp: Option<u64>,
    iss: Option<String>,
    sub: Option<String>,
    name: Option<String>,
    nats: Option<WireNats>,
}

#[derive(Deserialize, Default)]
struct WireNats {
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<u64>,
    #[serde(rename = "pub")]
    publish: Option<WirePermission>,
    #[serde(rename = "sub")]
    subscribe: Option<WirePermission>,
    bearer_token: Option<bool>,
    issuer_account: Option<String>,
    signing_keys: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct WirePermission {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for an nkey: a well-shaped public key and a deterministic "signature" (the
    /// SHA-512/256 of the data, twice). Real ed25519 signatures are exercised against nats-server
    /// in `tests/nats_modes.rs`.
    struct FakeSigner(String);

    impl FakeSigner {
        fn new(prefix: char) -> Self {
            Self(format!("{prefix}{}", "B".repeat(55)))
        }
    }

    impl Signer for FakeSigner {
        fn public_key(&self) -> String {
            self.0.clone()
        }
        fn sign(&self, data: &[u8]) -> Vec<u8> {
            let half = Sha512_256::digest(data);
            [half.as_slice(), half.as_slice()].concat()
        }
    }

    fn user_key() -> String {
        format!("U{}", "C".repeat(55))
    }

    fn segments(jwt: &str) -> Vec<Vec<u8>> {
        jwt.split('.')
            .map(|s| URL_SAFE_NO_PAD.decode(s).expect("base64url"))
            .collect()
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn user_claims_round_trip_through_encode_and_decode() {
        let account = FakeSigner::new('A');
        let mut claims = UserClaims::new(user_key(), "alice", NOW);
        claims.expires = Some(NOW + 60);
        claims.issuer_account = Some(account.public_key());
        claims.permissions = Permissions {
            publish: vec!["a.>".into()],
            subscribe: vec!["b.*".into(), "_INBOX.>".into()],
        };
        let jwt = claims.encode(&account).expect("encodes");
        let decoded = decode_unverified(jwt.expose()).expect("decodes");
        assert_eq!(decoded.kind, ClaimKind::User);
        assert_eq!(decoded.subject, user_key());
        assert_eq!(decoded.issuer, account.public_key());
        assert_eq!(decoded.name.as_deref(), Some("alice"));
        assert_eq!(decoded.issued_at, Some(NOW));
        assert_eq!(decoded.expires, Some(NOW + 60));
        assert_eq!(decoded.issuer_account, Some(account.public_key()));
        assert_eq!(decoded.permissions, claims.permissions);
        assert_eq!(decoded.denied, Permissions::default());
        assert!(!decoded.bearer_token);
        assert_eq!(decoded.version, Some(2));
        assert_eq!(expiry(jwt.expose()), Some(NOW + 60));
    }

    #[test]
    fn header_and_signature_are_nats_nkey_jwt() {
        let account = FakeSigner::new('A');
        let jwt = UserClaims::new(user_key(), "u", NOW)
            .encode(&account)
            .expect("encodes");
        let parts = segments(jwt.expose());
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let (signed, _) = jwt.expose().rsplit_once('.').expect("three segments");
        assert_eq!(parts[2], account.sign(signed.as_bytes()));
        assert!(!jwt.expose().contains('='), "no padding");
    }

    #[test]
    fn user_payload_is_what_go_encoding_json_writes() {
        let account = FakeSigner::new('A');
        let mut claims = UserClaims::new(user_key(), "n<&>", NOW);
        claims.expires = Some(NOW + 1);
        claims.issuer_account = Some(account.public_key());
        claims.permissions.subscribe = vec!["nodes.x.>".into()];
        let jwt = claims.encode(&account).expect("encodes");
        let payload = String::from_utf8(segments(jwt.expose())[1].clone()).expect("utf-8");
        let id = decode_unverified(jwt.expose()).expect("decodes").id;
        let expected = format!(
            concat!(
                r#"{{"exp":{exp},"jti":"{id}","iat":{iat},"iss":"{iss}","#,
                r#""name":"n\u003c\u0026\u003e","sub":"{sub}","#,
                r#""nats":{{"pub":{{}},"sub":{{"allow":["nodes.x.\u003e"]}},"#,
                r#""subs":-1,"data":-1,"payload":-1,"issuer_account":"{iss}","#,
                r#""type":"user","version":2}}}}"#
            ),
            exp = NOW + 1,
            iat = NOW,
            id = id,
            iss = account.public_key(),
            sub = user_key(),
        );
        assert_eq!(payload, expected);
    }

    #[test]
    fn jti_is_base32_of_sha512_256_of_registered_claims_without_jti() {
        let account = FakeSigner::new('A');
        let mut claims = UserClaims::new(user_key(), "u", NOW);
        claims.expires = Some(NOW + 5);
        let jwt = claims.encode(&account).expect("encodes");
        let id = decode_unverified(jwt.expose()).expect("decodes").id;
        let iss = account.public_key();
        let registered = format!(
            r#"{{"exp":{},"iat":{NOW},"iss":"{iss}","name":"u","sub":"{}"}}"#,
            NOW + 5,
            user_key()
        );
        assert_eq!(id, base32_nopad(&Sha512_256::digest(registered.as_bytes())));
        assert_eq!(id.len(), 52);
    }

    #[test]
    fn base32_matches_rfc4648_vectors_without_padding() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_nopad(input.as_bytes()), output, "{input:?}");
        }
    }

    #[test]
    fn account_and_operator_claims_round_trip() {
        let operator = FakeSigner::new('O');
        let account_key = format!("A{}", "D".repeat(55));
        let mut op = OperatorClaims::new(operator.public_key(), "op", NOW);
        op.signing_keys = vec![format!("O{}", "E".repeat(55))];
        let op_jwt = op.encode(&operator).expect("operator encodes");
        let decoded = decode_unverified(op_jwt.expose()).expect("decodes");
        assert_eq!(decoded.kind, ClaimKind::Operator);
        assert_eq!(decoded.issuer, decoded.subject);
        assert_eq!(decoded.signing_keys, op.signing_keys);
        assert_eq!(decoded.expires, None);

        let mut account = AccountClaims::new(account_key.clone(), "acct", NOW);
        account.signing_keys = vec![account_key.clone()];
        let acct_jwt = account.encode(&operator).expect("account encodes");
        let decoded = decode_unverified(acct_jwt.expose()).expect("decodes");
        assert_eq!(decoded.kind, ClaimKind::Account);
        assert_eq!(decoded.subject, account_key);
        assert_eq!(decoded.issuer, operator.public_key());
        assert_eq!(decoded.signing_keys, vec![account_key]);
        let payload: serde_json::Value =
            serde_json::from_slice(&segments(acct_jwt.expose())[1]).expect("json");
        assert_eq!(payload["nats"]["limits"]["conn"], -1);
        assert_eq!(payload["nats"]["limits"]["wildcards"], true);
    }

    #[test]
    fn encoders_refuse_keys_of_the_wrong_kind() {
        let user = FakeSigner::new('U');
        let account = FakeSigner::new('A');
        let operator = FakeSigner::new('O');
        assert!(matches!(
            UserClaims::new(user_key(), "u", NOW).encode(&user),
            Err(JwtError::WrongKeyKind { role: "signer", .. })
        ));
        assert!(matches!(
            UserClaims::new(account.public_key(), "u", NOW).encode(&account),
            Err(JwtError::WrongKeyKind {
                role: "subject",
                ..
            })
        ));
        assert!(matches!(
            UserClaims::new("Ushort", "u", NOW).encode(&account),
            Err(JwtError::WrongKeyKind {
                role: "subject",
                ..
            })
        ));
        assert!(
            AccountClaims::new(account.public_key(), "a", NOW)
                .encode(&user)
                .is_err()
        );
        assert!(
            OperatorClaims::new(operator.public_key(), "o", NOW)
                .encode(&account)
                .is_err()
        );
    }

    const ODD_ID: &str = "host.a 1*b";

    #[test]
    fn sanitize_replaces_subject_metacharacters_with_dashes() {
        assert_eq!(sanitize_subject_token(ODD_ID), "host-a-1-b");
        assert_eq!(sanitize_subject_token("a>b\tc\nd"), "a-b-c-d");
        assert_eq!(sanitize_subject_token("plain_id-1"), "plain_id-1");
    }

    #[test]
    fn backend_permissions_are_the_spec_table_with_a_sanitised_id() {
        let perms = worker_permissions(NodeType::Backend, ODD_ID);
        assert_eq!(perms.subscribe, ["nodes.host-a-1-b.>", "_INBOX.>"]);
        assert_eq!(
            perms.publish,
            [
                "nodes.host-a-1-b.backend.install.*.progress",
                "nodes.host-a-1-b.files.>",
                "_INBOX.>"
            ]
        );
    }

    #[test]
    fn agent_permissions_are_the_spec_table_with_a_sanitised_id() {
        let perms = worker_permissions(NodeType::Agent, ODD_ID);
        assert_eq!(
            perms.subscribe,
            [
                "agent.execute",
                "agent.*.cancel",
                "gallery.*.cancel",
                "gallery.*.progress",
                "jobs.*.cancel",
                "jobs.*.progress",
                "jobs.*.result",
                "jobs.mcp-ci.new",
                "mcp.tools.execute",
                "mcp.discovery",
                "nodes.host-a-1-b.backend.stop",
                "staging.*.progress",
                "_INBOX.>"
            ]
        );
        assert_eq!(perms.publish, ["agent.>", "jobs.>", "_INBOX.>"]);
    }

    #[test]
    fn frontend_service_user_subscribes_to_all_but_finetune_plus_inbox() {
        let perms = frontend_service_permissions();
        assert_eq!(perms.publish.len(), 10);
        assert!(perms.publish.iter().any(|s| s == "finetune.>"));
        assert!(!perms.subscribe.iter().any(|s| s == "finetune.>"));
        assert_eq!(perms.subscribe.last().map(String::as_str), Some("_INBOX.>"));
        assert_eq!(perms.subscribe.len(), 10);
    }

    #[test]
    fn minted_worker_claims_follow_spec_5_5() {
        let account = FakeSigner::new('A');
        let jwt = mint_worker_jwt(&account, &user_key(), NodeType::Backend, ODD_ID, NOW, 3600)
            .expect("mints");
        let decoded = decode_unverified(jwt.expose()).expect("decodes");
        assert_eq!(decoded.kind, ClaimKind::User);
        assert_eq!(decoded.name.as_deref(), Some("localai-backend-host-a-1-b"));
        assert_eq!(decoded.subject, user_key());
        assert_eq!(decoded.issuer, account.public_key());
        assert_eq!(decoded.issuer_account, Some(account.public_key()));
        assert_eq!(decoded.issued_at, Some(NOW));
        assert_eq!(decoded.expires, Some(NOW + 3600));
        assert_eq!(
            decoded.permissions,
            worker_permissions(NodeType::Backend, ODD_ID)
        );
        assert_eq!(decoded.denied, Permissions::default());

        let agent = worker_user_claims(
            &user_key(),
            &account.public_key(),
            NodeType::Agent,
            "n1",
            NOW,
            u64::MAX,
        )
        .expect("claims");
        assert_eq!(agent.name, "localai-agent-n1");
        assert_eq!(agent.expires, Some(u64::MAX), "exp saturates");
    }

    #[test]
    fn minting_without_a_node_id_is_refused() {
        let account = FakeSigner::new('A');
        assert_eq!(
            mint_worker_jwt(&account, &user_key(), NodeType::Agent, "", NOW, 60),
            Err(JwtError::EmptyNodeId)
        );
        assert_eq!(
            JwtError::EmptyNodeId.to_string(),
            "natsauth: node ID is required"
        );
    }

    /// NA-08: nothing we mint is a bearer token — the key is absent from the payload and decodes
    /// as `false`.
    #[test]
    fn na08_minted_users_are_never_bearer_tokens() {
        let account = FakeSigner::new('A');
        for node_type in [NodeType::Backend, NodeType::Agent] {
            let jwt =
                mint_worker_jwt(&account, &user_key(), node_type, "n1", NOW, 60).expect("mints");
            let payload: serde_json::Value =
                serde_json::from_slice(&segments(jwt.expose())[1]).expect("json");
            assert!(payload["nats"].get("bearer_token").is_none());
            assert!(
                !decode_unverified(jwt.expose())
                    .expect("decodes")
                    .bearer_token
            );
        }
        // The decoder does report a bearer token when one is present.
        let forged = forge(
            br#"{"typ":"JWT","alg":"ed25519-nkey"}"#,
            br#"{"iss":"A","sub":"U","nats":{"type":"user","bearer_token":true}}"#,
        );
        assert!(decode_unverified(&forged).expect("decodes").bearer_token);
    }

    #[test]
    fn encoded_jwts_do_not_print_in_debug() {
        let account = FakeSigner::new('A');
        let jwt = mint_worker_jwt(&account, &user_key(), NodeType::Backend, "n1", NOW, 60)
            .expect("mints");
        assert_eq!(format!("{jwt:?}"), "***");
        assert_eq!(format!("{jwt}"), "***");
    }

    fn forge(header: &[u8], payload: &[u8]) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    const HEADER: &[u8] = br#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(decode_unverified(""), Err(JwtError::Segments { found: 1 }));
        assert_eq!(
            decode_unverified("a.b"),
            Err(JwtError::Segments { found: 2 })
        );
        assert_eq!(
            decode_unverified("a.b.c.d"),
            Err(JwtError::Segments { found: 4 })
        );
        assert_eq!(
            decode_unverified("!!.e30.x"),
            Err(JwtError::Base64 {
                segment: Segment::Header
            })
        );
        assert_eq!(
            decode_unverified("e30=.e30.x"),
            Err(JwtError::Base64 {
                segment: Segment::Header
            }),
            "padding is refused like Go's RawURLEncoding"
        );
        let h = URL_SAFE_NO_PAD.encode(HEADER);
        assert_eq!(
            decode_unverified(&format!("{h}.e30.%%")),
            Err(JwtError::Base64 {
                segment: Segment::Signature
            })
        );
        assert_eq!(
            decode_unverified(&forge(b"not json", b"{}")),
            Err(JwtError::Json {
                segment: Segment::Header
            })
        );
        assert_eq!(
            decode_unverified(&forge(br#"{"typ":"JWT","alg":"HS256"}"#, b"{}")),
            Err(JwtError::Header)
        );
        assert_eq!(
            decode_unverified(&forge(HEADER, b"[1,2]")),
            Err(JwtError::Json {
                segment: Segment::Payload
            })
        );
        assert_eq!(
            decode_unverified(&forge(HEADER, br#"{"iss":"A","sub":"U"}"#)),
            Err(JwtError::UnsupportedType)
        );
        assert_eq!(
            decode_unverified(&forge(
                HEADER,
                br#"{"iss":"A","sub":"U","nats":{"type":"activation"}}"#
            )),
            Err(JwtError::UnsupportedType)
        );
        assert_eq!(
            decode_unverified(&forge(HEADER, br#"{"iss":"A","nats":{"type":"user"}}"#)),
            Err(JwtError::MissingClaim("sub"))
        );
        assert_eq!(
            decode_unverified(&forge(HEADER, br#"{"sub":"U","nats":{"type":"user"}}"#)),
            Err(JwtError::MissingClaim("iss"))
        );
        assert_eq!(
            decode_unverified(&forge(
                HEADER,
                br#"{"iss":"A","sub":"U","exp":-5,"nats":{"type":"user"}}"#
            )),
            Err(JwtError::Json {
                segment: Segment::Payload
            })
        );
        assert_eq!(expiry("garbage"), None);
    }

    #[test]
    fn zero_or_absent_expiry_means_none() {
        let zero = forge(
            HEADER,
            br#"{"iss":"A","sub":"U","exp":0,"nats":{"type":"user"}}"#,
        );
        assert_eq!(expiry(&zero), None);
        let absent = forge(HEADER, br#"{"iss":"A","sub":"U","nats":{"type":"user"}}"#);
        assert_eq!(expiry(&absent), None);
        let legacy_alg = forge(
            br#"{"typ":"jwt","alg":"ED25519"}"#,
            br#"{"iss":"A","sub":"U","exp":9,"nats":{"type":"user"}}"#,
        );
        assert_eq!(expiry(&legacy_alg), Some(9));
    }

    #[test]
    fn errors_never_quote_the_token() {
        let secretish = "c2VjcmV0LXRva2Vu.c2VjcmV0LXRva2Vu.c2VjcmV0LXRva2Vu";
        let err = decode_unverified(secretish).expect_err("not JSON");
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn node_type_parses_and_displays_wire_names() {
        assert_eq!("backend".parse(), Ok(NodeType::Backend));
        assert_eq!("agent".parse(), Ok(NodeType::Agent));
        assert_eq!("Agent".parse::<NodeType>(), Err(UnknownNodeType));
        assert_eq!("".parse::<NodeType>(), Err(UnknownNodeType));
        assert_eq!(NodeType::Backend.to_string(), "backend");
        assert_eq!(NodeType::Agent.to_string(), "agent");
    }

    proptest::proptest! {
        /// `decode_unverified` never panics on any string.
        #[test]
        fn decode_never_panics_on_arbitrary_strings(s in proptest::prelude::any::<String>()) {
            let _ = decode_unverified(&s);
            let _ = expiry(&s);
        }

        /// `decode_unverified` never panics on three well-formed base64url segments of arbitrary
        /// bytes or JSON-ish text (the parser is reached, not just the splitter).
        #[test]
        fn decode_never_panics_on_arbitrary_segment_contents(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            payload in "[{}\\[\\]\":,a-z0-9 .-]{0,96}",
            signature in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            let jwt = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(payload.as_bytes()),
                URL_SAFE_NO_PAD.encode(&signature),
            );
            let _ = decode_unverified(&jwt);
            let forged = forge(HEADER, payload.as_bytes());
            let _ = decode_unverified(&forged);
        }
    }
}
