//! NATS JWTs: claims as data, encoded through a signer the caller passes in, and decoded
//! without verification (to read an expiry).

// Minimal slot until the full module lands: the unverified expiry of a JWT.
/// The `exp` claim (unix seconds) of a JWT, read without verifying it.
#[must_use]
pub fn expiry(jwt: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("exp")?.as_u64()
}

/// A NATS subject token made from a node id: `.`, `*`, `>` and white space become `-`.
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
