//! # nodegate-fuzz
//!
//! Fuzz targets for `nodegate-core`, each with an oracle that states what must hold, not only
//! "does not crash". Every oracle is a plain function taking the raw fuzz input and panicking
//! when the core breaks a rule; the libFuzzer targets in `fuzz_targets/` are one line each, and
//! `tests/replay.rs` runs every committed seed in `corpus/<target>/` through the same function on
//! the stable toolchain.
//!
//! | target | input | oracle (security.md) |
//! |---|---|---|
//! | [`authorize`] | policy line, then header lines | §2.3: Allow ⇔ exactly one `Authorization` line carrying the current or previous token as `Bearer <b64token>`; anonymous allows everything; `Debug` never depends on the secret |
//! | [`keys`] | raw, still-encoded key | §1.6 P1–P6 for `parse_key`, `resolve_key`, `resolve_list_key`; derived names (partial, temp, sidecars) fit in 255 bytes and are never keys |
//! | [`content_range`] | raw `Content-Range` value | §4.7 FZ-3: accepted ⇒ `start ≤ end < total` ≤ `i64::MAX`, round trip, agrees with a reference parser; error texts never echo control bytes |
//! | [`sha256_header`] | raw `X-Content-SHA256` value | §4.7 FZ-4: accepted ⇔ exactly 64 hex digits; sidecar trust rules (D6) |
//! | [`range`] | raw `Range` value | D5: partial answers lie inside the file, 416 exactly when RFC 9110 says, agrees with a reference |
//! | [`classify`] | raw request head | §1.4/§2.3: auth before method and key; auth is orthogonal to the rest; commands agree with the key and upload parsers; the secret never influences a response |
//! | [`plan_upload`] | operation sequence (binary) | §4.7/§6.3 INV-1…INV-5: full and range uploads, HEADs, crashes and a full disk against a reference model |
//! | [`posture`] | role line, then `NAME=value` lines | §3: never anonymous where a require-auth switch applies; refusals only when one does; secrets never reach any text |
//! | [`nats_parse`] | raw bytes from a NATS server | issue 14: the same ops whatever the split, bounded buffering, parse → encode → parse round trip, the client machine split-invariant, printable error texts |
//!
//! Not covered yet, because the core does not have it: the registration payload parser.

#![forbid(unsafe_code)]

mod auth;
mod classify;
mod head;
mod headers;
mod keys;
mod nats_parse;
mod posture;
mod range;
pub mod seeds;
mod upload;
mod util;

pub use auth::authorize;
pub use classify::classify;
pub use headers::{content_range, sha256_header};
pub use keys::keys;
pub use nats_parse::nats_parse;
pub use posture::posture;
pub use range::range;
pub use upload::plan_upload;

/// A fuzz target: its name (the binary in `fuzz_targets/` and the folder in `corpus/`) and its
/// oracle.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order of the table above.
pub const TARGETS: &[Target] = &[
    ("authorize", authorize),
    ("keys", keys),
    ("content_range", content_range),
    ("sha256_header", sha256_header),
    ("range", range),
    ("classify", classify),
    ("plan_upload", plan_upload),
    ("posture", posture),
    ("nats_parse", nats_parse),
];
