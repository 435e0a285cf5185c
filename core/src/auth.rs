//! Bearer-token authentication of the worker file server and the node endpoints.
//!
//! The configured registration token is kept only as a SHA-256 digest. A request is allowed when
//! its single `Authorization` field line carries `Bearer <token>` (scheme matched
//! case-insensitively, RFC 9110 §11.1) and the digest of that token equals the digest of the
//! current token, or of the previous one while a rotation is in progress. Digests are compared in
//! constant time, and the comparison function only accepts fixed-size arrays, so neither the
//! length nor the content of the secret leaks through timing.
//!
//! In anonymous mode (no token configured) every request is allowed, whatever it carries: that is
//! LocalAI's documented behaviour, and the posture evaluation makes that mode loud.

use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The longest token accepted in configuration (bytes). Longer values are almost certainly a
/// pasted file or key by mistake.
pub const MAX_TOKEN_LEN: usize = 4096;

/// A secret bearer token: validated against RFC 6750 `b64token`, never printed.
///
/// `Debug` and `Display` print `***`. The only way to read the secret back is
/// [`Token::expose`], which is meant for adapters that must send it (an `Authorization` header
/// on an outgoing request, a NATS `CONNECT`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// Why a configured token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The value is empty.
    #[error("is empty")]
    Empty,
    /// The value is nothing but whitespace.
    #[error("contains only whitespace; set a real token or leave the variable unset")]
    OnlyWhitespace,
    /// The value is longer than [`MAX_TOKEN_LEN`].
    #[error("is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The value has a character outside RFC 6750 `b64token`, so no conforming client could
    /// send it in an `Authorization: Bearer` header. The character itself is not repeated, as it
    /// is part of a secret.
    #[error(
        "has a character at byte {position} outside A-Z a-z 0-9 - . _ ~ + / (with = only at the end); \
         such a token cannot be sent in an Authorization header"
    )]
    InvalidCharacter {
        /// Byte offset of the first offending character.
        position: usize,
    },
}

impl Token {
    /// Validates a configured token.
    ///
    /// # Errors
    /// [`TokenError`] when the value is empty, only whitespace, too long, or not a `b64token`.
    pub fn parse(value: &str) -> Result<Self, TokenError> {
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if value.chars().all(char::is_whitespace) {
            return Err(TokenError::OnlyWhitespace);
        }
        if value.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        match b64token_error(value.as_bytes()) {
            Some(position) => Err(TokenError::InvalidCharacter { position }),
            None => Ok(Self(value.to_owned())),
        }
    }

    /// The secret itself, for adapters that must transmit it. Never log the result.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 digest of the token.
    #[must_use]
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(self.0.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The SHA-256 digest of a token: what the server keeps instead of the secret.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Digests arbitrary bytes (a configured token, or whatever a client sent).
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Constant-time equality of two digests.
    #[must_use]
    pub fn matches(&self, other: &TokenDigest) -> bool {
        digests_equal(&self.0, &other.0)
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(***)")
    }
}

/// Compares two 32-byte digests in constant time.
///
/// Taking arrays rather than slices is deliberate: a slice compare returns early on a length
/// mismatch and would leak the length of the secret.
#[must_use]
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The tokens a server accepts: the current one and, during a rotation, the previous one.
#[derive(Clone)]
pub struct TokenSet {
    current: TokenDigest,
    previous: Option<TokenDigest>,
}

impl TokenSet {
    /// A set accepting `current` and, when given, `previous`.
    #[must_use]
    pub fn new(current: &Token, previous: Option<&Token>) -> Self {
        Self {
            current: current.digest(),
            previous: previous.map(Token::digest),
        }
    }

    /// Whether a rotation is in progress (a previous token is still accepted).
    #[must_use]
    pub fn is_rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// Whether `presented` is one of the accepted tokens. Both digests are always compared, so
    /// the time taken does not reveal which one matched.
    #[must_use]
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let got = TokenDigest::of(presented);
        let current = got.matches(&self.current);
        let previous = self.previous.as_ref().is_some_and(|p| got.matches(p));
        current | previous
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("current", &"***")
            .field("rotating", &self.is_rotating())
            .finish()
    }
}

/// How a server authenticates requests.
#[derive(Debug, Clone)]
pub enum AuthPolicy {
    /// No token configured: every request is allowed (LocalAI semantics, loudly reported by the
    /// posture at start).
    Anonymous,
    /// Requests must carry one of these bearer tokens.
    Bearer(TokenSet),
}

impl AuthPolicy {
    /// Builds the policy from the configured tokens; no current token means anonymous.
    #[must_use]
    pub fn from_tokens(current: Option<&Token>, previous: Option<&Token>) -> Self {
        match current {
            Some(current) => Self::Bearer(TokenSet::new(current, previous)),
            None => Self::Anonymous,
        }
    }

    /// Whether requests are let through without a token.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// The request may proceed.
    Allow,
    /// The request is refused with 401; the reason is for logs only and is never sent.
    Reject(RejectReason),
}

/// Why a request was refused. Clients get the same response for every reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No `Authorization` field.
    Missing,
    /// More than one `Authorization` field line (RFC 9110 §5.3: it is not a list field).
    Multiple,
    /// The value is not visible ASCII, or not `<scheme> 1*SP <b64token>`.
    Malformed,
    /// A scheme other than `Bearer`.
    WrongScheme,
    /// A well-formed bearer token that is not one of the accepted tokens.
    Mismatch,
}

impl RejectReason {
    /// A short, secret-free label for structured logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Multiple => "multiple",
            Self::Malformed => "malformed",
            Self::WrongScheme => "wrong_scheme",
            Self::Mismatch => "mismatch",
        }
    }

    /// The reason in words, for logs (never the presented value).
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Missing => "no Authorization header",
            Self::Multiple => "more than one Authorization header",
            Self::Malformed => "a malformed Authorization header",
            Self::WrongScheme => "an Authorization scheme other than Bearer",
            Self::Mismatch => "a bearer token that is not the registration token",
        }
    }
}

/// Decides whether a request with these headers may proceed under `policy`.
///
/// Only `Authorization` field lines are read: never the query string, `Proxy-Authorization` or
/// any other header.
#[must_use]
pub fn authorize(policy: &AuthPolicy, headers: &HeaderMap) -> AuthDecision {
    let tokens = match policy {
        AuthPolicy::Anonymous => return AuthDecision::Allow,
        AuthPolicy::Bearer(tokens) => tokens,
    };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return AuthDecision::Reject(RejectReason::Missing);
    };
    if values.next().is_some() {
        return AuthDecision::Reject(RejectReason::Multiple);
    }
    match parse_bearer(value.as_bytes()) {
        Err(reason) => AuthDecision::Reject(reason),
        Ok(token) if tokens.accepts(token) => AuthDecision::Allow,
        Ok(_) => AuthDecision::Reject(RejectReason::Mismatch),
    }
}

/// Parses one `Authorization` field value as `Bearer 1*SP b64token` and returns the token bytes.
///
/// Leading and trailing spaces and tabs (optional whitespace, which HTTP parsers strip anyway)
/// are ignored; the scheme is case-insensitive; between scheme and token one or more spaces are
/// required (RFC 9110 `1*SP`), a tab is not enough.
///
/// # Errors
/// [`RejectReason::Malformed`] or [`RejectReason::WrongScheme`].
pub fn parse_bearer(value: &[u8]) -> Result<&[u8], RejectReason> {
    let value = trim_ows(value);
    if value
        .iter()
        .any(|&b| !(0x21..=0x7e).contains(&b) && b != b' ')
    {
        return Err(RejectReason::Malformed);
    }
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err(if value.eq_ignore_ascii_case(b"bearer") {
            RejectReason::Malformed
        } else {
            RejectReason::WrongScheme
        });
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(RejectReason::WrongScheme);
    }
    let token = trim_ows(rest);
    if token.is_empty() || b64token_error(token).is_some() {
        return Err(RejectReason::Malformed);
    }
    Ok(token)
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Returns the position of the first byte that breaks RFC 6750
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, or `None` when
/// the whole value is a `b64token`.
fn b64token_error(bytes: &[u8]) -> Option<usize> {
    let body = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)))
        .unwrap_or(bytes.len());
    if body == 0 {
        return Some(0);
    }
    bytes[body..]
        .iter()
        .position(|&b| b != b'=')
        .map(|offset| body + offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy() -> AuthPolicy {
        AuthPolicy::from_tokens(Some(&Token::parse("tok").unwrap()), None)
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    fn decide(values: &[&[u8]]) -> AuthDecision {
        authorize(&policy(), &headers(values))
    }

    #[test]
    fn ah01_missing_header_is_rejected() {
        assert_eq!(decide(&[]), AuthDecision::Reject(RejectReason::Missing));
    }

    #[test]
    fn ah02_right_token_is_allowed() {
        assert_eq!(decide(&[b"Bearer tok"]), AuthDecision::Allow);
    }

    #[test]
    fn ah03_scheme_is_case_insensitive() {
        for v in [&b"bearer tok"[..], b"BEARER tok", b"BeArEr tok"] {
            assert_eq!(decide(&[v]), AuthDecision::Allow);
        }
    }

    #[test]
    fn ah04_several_spaces_after_scheme_are_accepted() {
        assert_eq!(decide(&[b"Bearer  tok"]), AuthDecision::Allow);
        assert_eq!(decide(&[b"Bearer tok "]), AuthDecision::Allow);
    }

    #[test]
    fn ah05_tab_is_not_a_separator() {
        assert_eq!(
            decide(&[b"Bearer\ttok"]),
            AuthDecision::Reject(RejectReason::Malformed)
        );
    }

    #[test]
    fn ah06_scheme_without_token_is_rejected() {
        for v in [&b"Bearer"[..], b"Bearer ", b"Bearer    "] {
            assert_eq!(decide(&[v]), AuthDecision::Reject(RejectReason::Malformed));
        }
    }

    #[test]
    fn ah07_ah08_wrong_tokens_are_rejected() {
        for v in [&b"Bearer tokx"[..], b"Bearer to", b"Bearer TOK"] {
            assert_eq!(decide(&[v]), AuthDecision::Reject(RejectReason::Mismatch));
        }
        assert_eq!(
            decide(&[b"Bearer tok tok"]),
            AuthDecision::Reject(RejectReason::Malformed)
        );
    }

    #[test]
    fn ah09_other_schemes_are_rejected() {
        for v in [&b"Basic dTp0b2s="[..], b"Token tok", b"tok"] {
            assert_eq!(
                decide(&[v]),
                AuthDecision::Reject(RejectReason::WrongScheme)
            );
        }
    }

    #[test]
    fn ah10_ah11_two_field_lines_are_rejected() {
        assert_eq!(
            decide(&[b"Bearer tok", b"Bearer nope"]),
            AuthDecision::Reject(RejectReason::Multiple)
        );
        assert_eq!(
            decide(&[b"Bearer nope", b"Bearer tok"]),
            AuthDecision::Reject(RejectReason::Multiple)
        );
        assert_eq!(
            decide(&[b"Bearer tok", b"Bearer tok"]),
            AuthDecision::Reject(RejectReason::Multiple)
        );
    }

    #[test]
    fn ah12_comma_joined_values_are_rejected() {
        assert_eq!(
            decide(&[b"Bearer tok, Bearer tok"]),
            AuthDecision::Reject(RejectReason::Malformed)
        );
    }

    #[test]
    fn ah13_obs_text_is_rejected_without_panic() {
        assert_eq!(
            decide(&[b"Bearer t\x80\xffk"]),
            AuthDecision::Reject(RejectReason::Malformed)
        );
    }

    #[test]
    fn ah15_tokens_with_b64token_punctuation_work() {
        let token = Token::parse("a-b.c_d~e+f/g==").unwrap();
        let policy = AuthPolicy::from_tokens(Some(&token), None);
        let map = headers(&[b"Bearer a-b.c_d~e+f/g=="]);
        assert_eq!(authorize(&policy, &map), AuthDecision::Allow);
    }

    #[test]
    fn ah16_tokens_with_space_or_non_ascii_are_refused() {
        assert_eq!(
            Token::parse("to k"),
            Err(TokenError::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            Token::parse("tök"),
            Err(TokenError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Token::parse("=abc"),
            Err(TokenError::InvalidCharacter { position: 0 })
        );
        assert_eq!(
            Token::parse("ab=c"),
            Err(TokenError::InvalidCharacter { position: 3 })
        );
        assert_eq!(Token::parse("   "), Err(TokenError::OnlyWhitespace));
        assert_eq!(Token::parse("\n"), Err(TokenError::OnlyWhitespace));
        assert_eq!(Token::parse(""), Err(TokenError::Empty));
    }

    #[test]
    fn ah19_only_authorization_is_read() {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        map.insert("x-api-key", HeaderValue::from_static("tok"));
        assert_eq!(
            authorize(&policy(), &map),
            AuthDecision::Reject(RejectReason::Missing)
        );
    }

    #[test]
    fn ah22_ah23_anonymous_mode_allows_everything() {
        let anon = AuthPolicy::from_tokens(None, None);
        assert!(anon.is_anonymous());
        assert_eq!(authorize(&anon, &HeaderMap::new()), AuthDecision::Allow);
        assert_eq!(
            authorize(&anon, &headers(&[b"garbage \x80", b"Basic x"])),
            AuthDecision::Allow
        );
    }

    #[test]
    fn ah28_wrong_tokens_of_every_length_are_rejected() {
        let secret = "s3cr3t-token";
        let token = Token::parse(secret).unwrap();
        let policy = AuthPolicy::from_tokens(Some(&token), None);
        let n = secret.len();
        for len in [0, 1, n - 1, n, n + 1, 4096] {
            let candidate: String = "x".repeat(len);
            let value = format!("Bearer {candidate}");
            let decision = authorize(&policy, &headers(&[value.as_bytes()]));
            assert!(
                matches!(decision, AuthDecision::Reject(_)),
                "length {len} must be rejected"
            );
        }
    }

    #[test]
    fn previous_token_is_accepted_during_rotation() {
        let new = Token::parse("new").unwrap();
        let old = Token::parse("old").unwrap();
        let policy = AuthPolicy::from_tokens(Some(&new), Some(&old));
        for (value, expected) in [
            (&b"Bearer new"[..], AuthDecision::Allow),
            (b"Bearer old", AuthDecision::Allow),
            (
                b"Bearer older",
                AuthDecision::Reject(RejectReason::Mismatch),
            ),
        ] {
            assert_eq!(authorize(&policy, &headers(&[value])), expected);
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_or_display() {
        let token = Token::parse("hunter2secret").unwrap();
        let set = TokenSet::new(&token, Some(&token));
        let policy = AuthPolicy::Bearer(set.clone());
        for text in [
            format!("{token:?}"),
            format!("{token}"),
            format!("{set:?}"),
            format!("{policy:?}"),
            format!("{:?}", token.digest()),
        ] {
            assert!(!text.contains("hunter2secret"), "{text}");
        }
    }

    #[test]
    fn digests_compare_exactly() {
        let a = TokenDigest::of(b"a");
        assert!(a.matches(&TokenDigest::of(b"a")));
        assert!(!a.matches(&TokenDigest::of(b"b")));
    }

    proptest::proptest! {
        /// `parse_bearer` never panics, and whatever it accepts is a `b64token`.
        #[test]
        fn parse_bearer_accepts_only_b64tokens(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(token) = parse_bearer(&bytes) {
                proptest::prop_assert!(b64token_error(token).is_none());
                proptest::prop_assert!(!token.is_empty());
            }
        }

        /// A request is allowed only when its single header carries the configured token.
        #[test]
        fn allow_implies_the_configured_token(value in "[ -~]{0,24}") {
            if let Ok(header) = HeaderValue::from_str(&value) {
                let mut map = HeaderMap::new();
                map.insert(AUTHORIZATION, header);
                if authorize(&policy(), &map) == AuthDecision::Allow {
                    proptest::prop_assert_eq!(parse_bearer(value.as_bytes()), Ok(&b"tok"[..]));
                }
            }
        }
    }
}
