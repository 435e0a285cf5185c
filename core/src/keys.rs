//! File keys: percent-decoding, validation and routing to a safe relative path.
//!
//! A key is the part of a `/v1/files/{key}` or `/v1/files-list/{key}` request path after the
//! route prefix. It arrives still percent-encoded; this module turns it into a [`Target`] (a
//! root plus a relative path) or refuses it with a [`KeyError`] whose text is a short 400 body.
//!
//! Order of operations (security.md §1.4):
//!
//! 1. percent-decode **exactly once**; a malformed escape (`%`, `%2`, `%zz`, `%u002e`) is refused;
//! 2. require valid UTF-8 (overlong forms such as `%c0%ae` are invalid UTF-8);
//! 3. validate the decoded string as a whole and segment by segment (split on `/` only):
//!    * 1..=[`MAX_KEY_LEN`] bytes, at most [`MAX_SEGMENTS`] segments, each 1..=[`MAX_SEGMENT_LEN`]
//!      bytes, the last one (the file name) at most [`MAX_FILE_NAME_LEN`] bytes;
//!    * no empty segment (so no leading `/`, `//` or trailing `/`), no `.` or `..` segment;
//!    * no control byte (0x00–0x1F, 0x7F) and none of `\ : * ? " < > | %` — after one decode a
//!      `%` can only come from a second layer of encoding, so every double-decoding trick dies;
//!    * no segment ending in `.` or a space, no Windows device name (`CON`, `com¹.txt`, `NUL  .x`…);
//!    * no segment starting with `.`: hidden names are reserved for our own partial and temporary
//!      files, and refusing them also protects dotfiles such as `.ssh` or `.git`;
//!    * non-ASCII is allowed (real model names use it) except C1 controls, bidirectional
//!      controls, line separators, and the look-alikes that NFKC folds into `.`, `/` or `\`;
//! 4. only then route: `models/<rest>` → models root, `data/<rest>` → data root, anything else
//!    (including `models` without a slash, as in LocalAI) → staging root with the whole key.
//!
//! Nothing is ever normalized: a key that is not already canonical is refused, so two different
//! keys never name the same file. Sidecar keys (`x.sha256`, `x.sha256.target`) are valid keys
//! that can be read and listed; [`Key::is_sidecar`] lets the request layer refuse writes to them.
//!
//! What this module cannot check is the file system: a symlink inside a root can still point
//! outside. Adapters open [`Roots::local_path`] with a no-escape primitive (no symlink followed
//! out of a root, spec §A D8/D14).
//!
//! Not done here: Unicode normalization. Without normalization tables the core cannot require
//! NFC, so on a file system that folds normalization forms (APFS) two keys differing only in
//! their Unicode form name the same file. Linux file systems compare bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Longest decoded key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Most `/`-separated segments in a key.
pub const MAX_SEGMENTS: usize = 32;

/// Longest segment in bytes (`NAME_MAX` on Linux).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Suffix of the hash sidecar written next to a complete file (`<file>.sha256`, LocalAI's name).
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// Suffix of the sidecar that records the declared hash of an unfinished range upload
/// (`<file>.sha256.target`, LocalAI's name).
pub const TARGET_SIDECAR_SUFFIX: &str = ".sha256.target";

/// Prefix that hides our own files: no valid key segment starts with it.
pub const HIDDEN_PREFIX: &str = ".";

/// Suffix of the hidden file that holds an unfinished range upload (`.<name>.partial`).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Suffix of the hidden temporary file a full upload is written to (`.<name>.<nonce>.tmp`).
pub const TEMP_SUFFIX: &str = ".tmp";

/// Number of lowercase hex digits of the nonce in a temporary file name.
pub const TEMP_NONCE_HEX_LEN: usize = 16;

/// Longest final segment (file name) so that every derived name (sidecars, partial, temp) still
/// fits in 255 bytes.
pub const MAX_FILE_NAME_LEN: usize = MAX_SEGMENT_LEN - LONGEST_DERIVED_EXTRA;

/// Prefix of the output files allocated by `POST /v1/files/temp` at the top of the staging root
/// (`localai-output-<digits>.tmp`, as LocalAI names them).
pub const OUTPUT_TEMP_PREFIX: &str = "localai-output-";

/// Suffix of the output files allocated by `POST /v1/files/temp`.
pub const OUTPUT_TEMP_SUFFIX: &str = ".tmp";

/// Bytes added to a file name by the partial name: `.` + name + `.partial`.
const PARTIAL_EXTRA: usize = HIDDEN_PREFIX.len() + PARTIAL_SUFFIX.len();
/// Bytes added to a file name by the temp name: `.` + name + `.` + nonce + `.tmp`.
const TEMP_EXTRA: usize = HIDDEN_PREFIX.len() + 1 + TEMP_NONCE_HEX_LEN + TEMP_SUFFIX.len();
/// Bytes added to a file name by the longest sidecar suffix.
const SIDECAR_EXTRA: usize = max(SIDECAR_SUFFIX.len(), TARGET_SIDECAR_SUFFIX.len());
/// Bytes added by the atomic write of the longest sidecar: the sidecar is written to a temp
/// name (`.` + name + suffix + `.` + nonce + `.tmp`) and renamed into place.
const SIDECAR_WRITE_EXTRA: usize = SIDECAR_EXTRA + TEMP_EXTRA;
/// The most any derived name adds to a file name.
const LONGEST_DERIVED_EXTRA: usize = max(
    max(max(PARTIAL_EXTRA, TEMP_EXTRA), SIDECAR_EXTRA),
    SIDECAR_WRITE_EXTRA,
);

/// Route prefix of the models root.
const MODELS_PREFIX: &str = "models/";
/// Route prefix of the data root.
const DATA_PREFIX: &str = "data/";

/// Why a key was refused. Every variant maps to 400; `Display` is the response body: short,
/// without absolute paths, and never echoing control or invisible characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("key is required")]
    Empty,
    /// A `%` is not followed by two hex digits.
    #[error(
        "invalid key: malformed percent-escape at byte {position}; write '%' followed by two hex digits"
    )]
    BadEscape {
        /// Byte offset of the `%` in the raw (encoded) key.
        position: usize,
    },
    /// The decoded key is not valid UTF-8 (this includes overlong forms such as `%c0%ae`).
    #[error("invalid key: not valid UTF-8 after percent-decoding; send names as UTF-8")]
    NotUtf8,
    /// The decoded key is longer than [`MAX_KEY_LEN`].
    #[error("invalid key: longer than {MAX_KEY_LEN} bytes; use a shorter path")]
    TooLong,
    /// The key has more than [`MAX_SEGMENTS`] segments.
    #[error("invalid key: more than {MAX_SEGMENTS} path segments; use a shallower path")]
    TooManySegments,
    /// An empty segment: leading `/`, trailing `/` or `//`.
    #[error("invalid key: empty segment; remove leading, trailing or doubled \"/\"")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("invalid key: segment \"{segment}\" is not allowed")]
    DotSegment {
        /// `"."` or `".."`.
        segment: &'static str,
    },
    /// A character that is never allowed in a key.
    #[error("invalid key: character {} is not allowed", CharName(*.ch))]
    ForbiddenChar {
        /// The offending character.
        ch: char,
    },
    /// A segment starts with `.`.
    #[error(
        "invalid key: a segment may not start with '.' (reserved for hidden and temporary files)"
    )]
    HiddenSegment,
    /// A segment ends in `.` or a space (Windows drops them, so names would alias).
    #[error("invalid key: a segment may not end in '.' or a space")]
    TrailingDotOrSpace,
    /// A segment is a Windows device name, with or without extension.
    #[error("invalid key: segment \"{name}\" is a reserved device name; rename the file")]
    DeviceName {
        /// The device name matched (upper case).
        name: &'static str,
    },
    /// A segment is longer than [`MAX_SEGMENT_LEN`] bytes.
    #[error("invalid key: a segment is longer than {MAX_SEGMENT_LEN} bytes")]
    SegmentTooLong,
    /// The file name is longer than [`MAX_FILE_NAME_LEN`] bytes.
    #[error("invalid key: the file name is longer than {MAX_FILE_NAME_LEN} bytes")]
    FileNameTooLong,
    /// `models/` or `data/` alone: a root directory, not a file.
    #[error("invalid key: \"{prefix}\" is a directory; name a file inside it")]
    RootIsDirectory {
        /// `"models/"` or `"data/"`.
        prefix: &'static str,
    },
}

/// A decoded, validated key: canonical, relative, and free of every character the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The decoded key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments, each non-empty and valid.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Ends in `.sha256` or `.sha256.target`: readable, never writable by clients.
    #[must_use]
    pub fn is_sidecar(&self) -> bool {
        self.0.ends_with(SIDECAR_SUFFIX) || self.0.ends_with(TARGET_SIDECAR_SUFFIX)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Percent-decodes `raw` exactly once. `+` stays `+` (this is a path, not a form).
///
/// # Errors
/// [`KeyError::BadEscape`] when a `%` is not followed by two hex digits (`%`, `%2`, `%zz`,
/// `%u002e`).
pub fn percent_decode_once(raw: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 3;
                }
                _ => return Err(KeyError::BadEscape { position: i }),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Decodes and validates a key.
///
/// `raw` is the still-percent-encoded request path after the route prefix, without the query.
///
/// # Errors
/// A [`KeyError`] naming the first rule the key breaks.
pub fn parse_key(raw: &[u8]) -> Result<Key, KeyError> {
    let decoded = decode_utf8(raw)?;
    validate(&decoded)?;
    Ok(Key(decoded))
}

/// The three directories a key can land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    /// The models directory (`models/<rest>`).
    Models,
    /// The staging directory (every other key).
    Staging,
    /// The data directory (`data/<rest>`).
    Data,
}

impl Root {
    /// A short lower-case name for logs: `models`, `staging` or `data`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Models => "models",
            Self::Staging => "staging",
            Self::Data => "data",
        }
    }
}

/// A routed key: a root plus a validated, non-empty relative path inside it.
///
/// The relative path is a suffix of the key, so it obeys every key rule: it is made of valid
/// segments separated by `/` and can only name something strictly inside the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    key: Key,
    root: Root,
    rel: String,
}

impl Target {
    /// The root the key was routed to.
    #[must_use]
    pub fn root(&self) -> Root {
        self.root
    }

    /// The path inside the root, `/`-separated, never empty, never absolute.
    #[must_use]
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The key this target was routed from.
    #[must_use]
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The last segment.
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.rel
            .rsplit_once('/')
            .map_or(&self.rel, |(_, name)| name)
    }

    /// The relative path of the containing directory inside the root; `None` at the top level.
    #[must_use]
    pub fn parent(&self) -> Option<&str> {
        self.rel.rsplit_once('/').map(|(parent, _)| parent)
    }

    /// Relative path of the hash sidecar: `rel + ".sha256"`.
    #[must_use]
    pub fn sidecar(&self) -> String {
        format!("{}{SIDECAR_SUFFIX}", self.rel)
    }

    /// Relative path of the target-hash sidecar of a range upload: `rel + ".sha256.target"`.
    #[must_use]
    pub fn target_sidecar(&self) -> String {
        format!("{}{TARGET_SIDECAR_SUFFIX}", self.rel)
    }

    /// Relative path of the unfinished range upload: `<parent>/.<name>.partial`. Hidden, so
    /// never reachable as a key; it survives restarts so an upload can resume.
    #[must_use]
    pub fn partial(&self) -> String {
        self.sibling(&format!(
            "{HIDDEN_PREFIX}{}{PARTIAL_SUFFIX}",
            self.file_name()
        ))
    }

    /// Relative path of a temporary file for a full upload:
    /// `<parent>/.<name>.<nonce as 16 lowercase hex>.tmp`. Hidden, so never reachable as a key;
    /// orphans are recognised by [`is_temp_name`].
    #[must_use]
    pub fn temp(&self, nonce: u64) -> String {
        self.sibling(&format!(
            "{HIDDEN_PREFIX}{}.{nonce:0width$x}{TEMP_SUFFIX}",
            self.file_name(),
            width = TEMP_NONCE_HEX_LEN
        ))
    }

    fn sibling(&self, name: &str) -> String {
        match self.parent() {
            Some(parent) => format!("{parent}/{name}"),
            None => name.to_owned(),
        }
    }
}

/// Decodes, validates and routes a file key (`/v1/files/{key}`).
///
/// `models/<rest>` → [`Root::Models`] with `rest`, `data/<rest>` → [`Root::Data`] with `rest`,
/// anything else → [`Root::Staging`] with the whole key. Routing happens after validation, so
/// `models/../x` is refused rather than landing in staging, and `rest` is never empty.
///
/// # Errors
/// A [`KeyError`]; `models/` and `data/` alone are [`KeyError::RootIsDirectory`].
pub fn resolve_key(raw: &[u8]) -> Result<Target, KeyError> {
    let decoded = decode_utf8(raw)?;
    if let Some(prefix) = [MODELS_PREFIX, DATA_PREFIX]
        .into_iter()
        .find(|p| decoded == *p)
    {
        return Err(KeyError::RootIsDirectory { prefix });
    }
    validate(&decoded)?;
    Ok(route(Key(decoded)))
}

/// What a `/v1/files-list/{key}` request lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListTarget {
    /// A whole root: `models/` or `data/`.
    Root(Root),
    /// A directory inside a root.
    Dir(Target),
}

/// Decodes, validates and routes a listing key (`/v1/files-list/{key}`).
///
/// Policy:
/// * `models/` lists the whole models root (as LocalAI does, used for model export), `data/`
///   the whole data root;
/// * otherwise one trailing `/` is allowed and stripped (`models/foo/` = `models/foo`), and the
///   rest is validated and routed like a file key, so `models` without a slash lists the
///   `models` directory inside staging, as in LocalAI;
/// * the staging root itself cannot be listed: an empty key is [`KeyError::Empty`]
///   (`key is required`, LocalAI's text) and `/` is [`KeyError::EmptySegment`].
///
/// # Errors
/// A [`KeyError`] naming the first rule the key breaks.
pub fn resolve_list_key(raw: &[u8]) -> Result<ListTarget, KeyError> {
    let decoded = decode_utf8(raw)?;
    match decoded.as_str() {
        MODELS_PREFIX => return Ok(ListTarget::Root(Root::Models)),
        DATA_PREFIX => return Ok(ListTarget::Root(Root::Data)),
        _ => {}
    }
    let key = match decoded.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => decoded,
    };
    validate(&key)?;
    Ok(ListTarget::Dir(route(Key(key))))
}

/// Whether a name found on disk while listing may be shown.
///
/// Only names that are valid key file names are shown, so every listed file can be fetched:
/// hidden names (our partial and temporary files, dotfiles) and names no key could reach are
/// skipped. Use [`is_listable_dir`] for directories, and skip a directory that is not listable
/// entirely.
#[must_use]
pub fn is_listable(name: &str) -> bool {
    is_listable_dir(name) && name.len() <= MAX_FILE_NAME_LEN
}

/// Whether a directory found on disk while listing may be descended into: its name is a valid
/// inner key segment (same rules as [`is_listable`], up to [`MAX_SEGMENT_LEN`] bytes).
#[must_use]
pub fn is_listable_dir(name: &str) -> bool {
    !name.contains('/') && first_forbidden_char(name).is_none() && check_segment(name).is_ok()
}

/// Whether `name` is one of our hidden temporary files, `.<name>.<16 lowercase hex>.tmp`, left
/// behind by a crash and safe to delete at startup. Partial files (`.<name>.partial`) are not
/// temporary: they survive restarts so uploads can resume.
#[must_use]
pub fn is_temp_name(name: &str) -> bool {
    let Some(inner) = name
        .strip_prefix(HIDDEN_PREFIX)
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let Some((base, nonce)) = inner.rsplit_once('.') else {
        return false;
    };
    !base.is_empty()
        && nonce.len() == TEMP_NONCE_HEX_LEN
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The directories of the three roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Directory of [`Root::Models`].
    pub models: PathBuf,
    /// Directory of [`Root::Staging`].
    pub staging: PathBuf,
    /// Directory of [`Root::Data`].
    pub data: PathBuf,
}

impl Roots {
    /// The directory of `root`.
    #[must_use]
    pub fn dir(&self, root: Root) -> &Path {
        match root {
            Root::Models => &self.models,
            Root::Staging => &self.staging,
            Root::Data => &self.data,
        }
    }

    /// The target's path under its root: a lexical join, safe because every segment of the
    /// relative path is a validated plain name. Symlinks are the adapter's business.
    #[must_use]
    pub fn local_path(&self, target: &Target) -> PathBuf {
        let mut path = self.dir(target.root).to_path_buf();
        for segment in target.rel.split('/') {
            path.push(segment);
        }
        path
    }
}

// ---------------------------------------------------------------------------------------------

/// Windows device names (tower-http's list): matched case-insensitively against the part of a
/// segment before its first `.`, with trailing spaces removed.
const DEVICE_NAMES: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes once and requires UTF-8.
fn decode_utf8(raw: &[u8]) -> Result<String, KeyError> {
    if raw.is_empty() {
        return Err(KeyError::Empty);
    }
    // Every decoded byte comes from at most three raw bytes: anything longer cannot fit.
    if raw.len() > 3 * MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    String::from_utf8(percent_decode_once(raw)?).map_err(|_| KeyError::NotUtf8)
}

/// Validates a decoded key. One pass over the characters, one pass over the segments: linear.
fn validate(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    // Characters first, so later messages never echo anything unsafe.
    if let Some(ch) = first_forbidden_char(key) {
        return Err(KeyError::ForbiddenChar { ch });
    }
    let mut segments = key.split('/').peekable();
    let mut count = 0;
    while let Some(segment) = segments.next() {
        count += 1;
        if count > MAX_SEGMENTS {
            return Err(KeyError::TooManySegments);
        }
        check_segment(segment)?;
        if segments.peek().is_none() && segment.len() > MAX_FILE_NAME_LEN {
            return Err(KeyError::FileNameTooLong);
        }
    }
    Ok(())
}

/// The per-segment rules (characters are checked separately).
fn check_segment(segment: &str) -> Result<(), KeyError> {
    match segment {
        "" => return Err(KeyError::EmptySegment),
        "." => return Err(KeyError::DotSegment { segment: "." }),
        ".." => return Err(KeyError::DotSegment { segment: ".." }),
        _ => {}
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(KeyError::SegmentTooLong);
    }
    if segment.starts_with(HIDDEN_PREFIX) {
        return Err(KeyError::HiddenSegment);
    }
    if segment.ends_with('.') || segment.ends_with(' ') {
        return Err(KeyError::TrailingDotOrSpace);
    }
    if let Some(name) = device_name(segment) {
        return Err(KeyError::DeviceName { name });
    }
    Ok(())
}

fn device_name(segment: &str) -> Option<&'static str> {
    let stem = segment
        .split_once('.')
        .map_or(segment, |(stem, _)| stem)
        .trim_end_matches(' ');
    DEVICE_NAMES
        .iter()
        .find(|name| name.eq_ignore_ascii_case(stem))
        .copied()
}

fn first_forbidden_char(s: &str) -> Option<char> {
    s.chars().find(|&c| is_forbidden_char(c))
}

fn is_forbidden_char(c: char) -> bool {
    matches!(
        c,
        // C0 controls and DEL.
        '\u{0}'..='\u{1f}' | '\u{7f}'
        // Windows-reserved characters, and `%`: after one decode it only comes from a second
        // layer of encoding.
        | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | '%'
        // C1 controls (U+0085 is a line break for some log readers).
        | '\u{80}'..='\u{9f}'
        // Bidirectional embedding/override and isolate controls (spoofed names in logs).
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Line and paragraph separators (log injection).
        | '\u{2028}' | '\u{2029}'
        // Look-alikes of `.`, `/` and `\` that NFKC folds into them (or that read as them):
        // fullwidth full stop, solidus and reverse solidus, division slash, fraction slash,
        // one-dot, two-dot and three-dot leaders, small full stop, small reverse solidus.
        | '\u{ff0e}' | '\u{ff0f}' | '\u{ff3c}' | '\u{2215}' | '\u{2044}'
        | '\u{2024}' | '\u{2025}' | '\u{2026}' | '\u{fe52}' | '\u{fe68}'
    )
}

fn route(key: Key) -> Target {
    let (root, rel) = if let Some(rest) = key.0.strip_prefix(MODELS_PREFIX) {
        (Root::Models, rest)
    } else if let Some(rest) = key.0.strip_prefix(DATA_PREFIX) {
        (Root::Data, rest)
    } else {
        (Root::Staging, key.0.as_str())
    };
    let rel = rel.to_owned();
    Target { key, root, rel }
}

/// Prints a character for an error message: quoted when it is printable ASCII, always with its
/// code point, so control and invisible characters never reach a response or a log raw.
struct CharName(char);

impl fmt::Display for CharName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_ascii_graphic() {
            write!(f, "'{c}' (U+{:04X})", u32::from(c))
        } else {
            write!(f, "U+{:04X}", u32::from(c))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;

    fn roots() -> Roots {
        Roots {
            models: PathBuf::from("/srv/nodegate/models"),
            staging: PathBuf::from("/srv/nodegate/staging"),
            data: PathBuf::from("/srv/nodegate/data"),
        }
    }

    /// The variant name of an error, so catalogue rows can say which rule must fire.
    fn kind(e: &KeyError) -> &'static str {
        match e {
            KeyError::Empty => "Empty",
            KeyError::BadEscape { .. } => "BadEscape",
            KeyError::NotUtf8 => "NotUtf8",
            KeyError::TooLong => "TooLong",
            KeyError::TooManySegments => "TooManySegments",
            KeyError::EmptySegment => "EmptySegment",
            KeyError::DotSegment { .. } => "DotSegment",
            KeyError::ForbiddenChar { .. } => "ForbiddenChar",
            KeyError::HiddenSegment => "HiddenSegment",
            KeyError::TrailingDotOrSpace => "TrailingDotOrSpace",
            KeyError::DeviceName { .. } => "DeviceName",
            KeyError::SegmentTooLong => "SegmentTooLong",
            KeyError::FileNameTooLong => "FileNameTooLong",
            KeyError::RootIsDirectory { .. } => "RootIsDirectory",
        }
    }

    /// Percent-encodes every byte of `key` whose mask bit is set, and always `%` and non-ASCII.
    fn encode(key: &[u8], mask: &[bool]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in key.iter().enumerate() {
            if b == b'%' || !b.is_ascii() || mask.get(i).copied().unwrap_or(false) {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    fn encode_all(key: &[u8]) -> Vec<u8> {
        encode(key, &vec![true; key.len()])
    }

    // --- spec §7.1 item 3: validatePathInDir, lexical part ----------------------------------

    #[test]
    fn spec_7_1_3_traversal_out_of_staging_is_rejected() {
        let err = resolve_key(b"staging/../../etc/passwd").unwrap_err();
        assert_eq!(err, KeyError::DotSegment { segment: ".." });
        assert_eq!(
            err.to_string(),
            "invalid key: segment \"..\" is not allowed"
        );
    }

    #[test]
    fn spec_7_1_3_nonexistent_nested_file_in_staging_is_accepted() {
        let target = resolve_key(b"staging/subdir/file.txt").unwrap();
        assert_eq!(target.root(), Root::Staging);
        assert_eq!(target.rel(), "staging/subdir/file.txt");
        assert_eq!(
            roots().local_path(&target),
            PathBuf::from("/srv/nodegate/staging/staging/subdir/file.txt")
        );
    }

    #[test]
    fn spec_7_1_6_head_traversal_key_is_rejected_not_cleaned() {
        // `/v1/files/../escape.txt` reaches the key parser as `../escape.txt` when sent raw.
        assert_eq!(
            resolve_key(b"../escape.txt").unwrap_err(),
            KeyError::DotSegment { segment: ".." }
        );
        assert_eq!(
            resolve_key(b"%2e%2e/escape.txt").unwrap_err(),
            KeyError::DotSegment { segment: ".." }
        );
    }

    // --- spec §7.1 item 4: resolveKeyToDir --------------------------------------------------

    #[test]
    fn spec_7_1_4_resolve_key_to_dir_table() {
        let table: &[(&str, Root, &str)] = &[
            ("models/foo", Root::Models, "foo"),
            ("models/subdir/bar.bin", Root::Models, "subdir/bar.bin"),
            ("data/bar", Root::Data, "bar"),
            ("data/nested/file.txt", Root::Data, "nested/file.txt"),
            ("other", Root::Staging, "other"),
            (
                "random/path/file.gguf",
                Root::Staging,
                "random/path/file.gguf",
            ),
        ];
        for &(key, root, rel) in table {
            let target = resolve_key(key.as_bytes()).unwrap();
            assert_eq!((target.root(), target.rel()), (root, rel), "key {key}");
            assert_eq!(target.key().as_str(), key);
        }
    }

    #[test]
    fn spec_2_5_models_without_slash_lands_in_staging() {
        for key in ["models", "data", "temp", "Models/x", "DATA/x", "modelsx/y"] {
            let target = resolve_key(key.as_bytes()).unwrap();
            assert_eq!(target.root(), Root::Staging, "key {key}");
            assert_eq!(target.rel(), key);
        }
    }

    #[test]
    fn spec_2_5_root_prefix_alone_is_not_a_file() {
        assert_eq!(
            resolve_key(b"models/").unwrap_err(),
            KeyError::RootIsDirectory { prefix: "models/" }
        );
        assert_eq!(
            resolve_key(b"data%2F").unwrap_err(),
            KeyError::RootIsDirectory { prefix: "data/" }
        );
        assert_eq!(parse_key(b"models/").unwrap_err(), KeyError::EmptySegment);
    }

    // --- spec §3.4: keys the LocalAI frontend generates -------------------------------------

    #[test]
    fn spec_3_4_localai_keys_are_accepted_and_routed() {
        let table: &[(&[u8], Root, &str)] = &[
            (
                b"models/llama-3-8b/Meta-Llama-3-8B-Instruct.Q4_K_M.gguf",
                Root::Models,
                "llama-3-8b/Meta-Llama-3-8B-Instruct.Q4_K_M.gguf",
            ),
            (
                b"models/Meta-Llama-3-8B-Instruct.Q4_K_M.gguf",
                Root::Models,
                "Meta-Llama-3-8B-Instruct.Q4_K_M.gguf",
            ),
            (
                b"models/my-model/sd-cpp/models/flux.gguf",
                Root::Models,
                "my-model/sd-cpp/models/flux.gguf",
            ),
            (
                b"models/piper/en_US-amy-medium.onnx",
                Root::Models,
                "piper/en_US-amy-medium.onnx",
            ),
            (
                b"models/piper/model.onnx.json",
                Root::Models,
                "piper/model.onnx.json",
            ),
            (
                b"models/Qwen2.5-7B-Instruct/model-00001-of-00004.safetensors",
                Root::Models,
                "Qwen2.5-7B-Instruct/model-00001-of-00004.safetensors",
            ),
            (
                b"models/whisper/ggml-base.en.bin",
                Root::Models,
                "whisper/ggml-base.en.bin",
            ),
            (
                b"models/sd/tokenizer_config.json",
                Root::Models,
                "sd/tokenizer_config.json",
            ),
            (b"models/m1/w.bin.sha256", Root::Models, "m1/w.bin.sha256"),
            (
                b"ephemeral/inputs/1a2b3c4d/photo.png",
                Root::Staging,
                "ephemeral/inputs/1a2b3c4d/photo.png",
            ),
            (
                b"ephemeral/inputs/deadbeef/My%20Holiday%20Photo.jpg",
                Root::Staging,
                "ephemeral/inputs/deadbeef/My Holiday Photo.jpg",
            ),
            (
                b"ephemeral/inputs/0badf00d/voice sample (1).wav",
                Root::Staging,
                "ephemeral/inputs/0badf00d/voice sample (1).wav",
            ),
            (
                b"localai-output-123.tmp",
                Root::Staging,
                "localai-output-123.tmp",
            ),
            (
                b"localai-output-2849302217.tmp",
                Root::Staging,
                "localai-output-2849302217.tmp",
            ),
            (b"myfile.txt", Root::Staging, "myfile.txt"),
            (b"data/quantized.gguf", Root::Data, "quantized.gguf"),
            (
                b"data/output/model-q4_0.gguf",
                Root::Data,
                "output/model-q4_0.gguf",
            ),
            // Real model names are not ASCII-only.
            (
                b"models/%E6%A8%A1%E5%9E%8B/%C3%A9t%C3%A9.gguf",
                Root::Models,
                "\u{6a21}\u{578b}/\u{e9}t\u{e9}.gguf",
            ),
            (
                "models/日本語モデル/model.gguf".as_bytes(),
                Root::Models,
                "日本語モデル/model.gguf",
            ),
            (b"models/a+b=c@d,e~f", Root::Models, "a+b=c@d,e~f"),
            // `+` is not a space in a path.
            (b"data/a+b", Root::Data, "a+b"),
        ];
        for &(raw, root, rel) in table {
            let target = resolve_key(raw)
                .unwrap_or_else(|e| panic!("{} refused: {e}", String::from_utf8_lossy(raw)));
            assert_eq!((target.root(), target.rel()), (root, rel));
        }
    }

    #[test]
    fn spec_3_4_output_temp_names_use_the_localai_pattern() {
        let name = format!("{OUTPUT_TEMP_PREFIX}{}{OUTPUT_TEMP_SUFFIX}", 4_022_117_u64);
        let target = resolve_key(name.as_bytes()).unwrap();
        assert_eq!(target.root(), Root::Staging);
        assert_eq!(target.parent(), None);
        assert!(
            !is_temp_name(&name),
            "output temp files are not our hidden temps"
        );
        assert!(is_listable(&name));
    }

    #[test]
    fn tower_http_device_name_negatives_are_accepted() {
        for name in [
            "C0N",
            "PRN1",
            "NULL",
            "COM10",
            "LPT10",
            "contact.html",
            "console.log",
        ] {
            let key = format!("models/x/{name}");
            assert!(parse_key(key.as_bytes()).is_ok(), "{name} must be accepted");
            assert!(
                parse_key(name.as_bytes()).is_ok(),
                "{name} must be accepted"
            );
        }
    }

    // --- sidecars and reserved names (spec §2.13) -------------------------------------------

    #[test]
    fn spec_2_13_sidecar_keys_are_valid_but_marked() {
        for key in ["models/m1/w.bin.sha256", "x.sha256", "data/y.sha256.target"] {
            let parsed = parse_key(key.as_bytes()).unwrap();
            assert!(parsed.is_sidecar(), "{key}");
        }
        for key in [
            "models/m1/w.bin",
            "sha256",
            "x.sha256.txt",
            "x.sha256.targets",
        ] {
            assert!(!parse_key(key.as_bytes()).unwrap().is_sidecar(), "{key}");
        }
    }

    #[test]
    fn derived_names_of_a_nested_target() {
        let t = resolve_key(b"models/m1/w.bin").unwrap();
        assert_eq!(t.file_name(), "w.bin");
        assert_eq!(t.parent(), Some("m1"));
        assert_eq!(t.sidecar(), "m1/w.bin.sha256");
        assert_eq!(t.target_sidecar(), "m1/w.bin.sha256.target");
        assert_eq!(t.partial(), "m1/.w.bin.partial");
        assert_eq!(t.temp(0xdead_beef), "m1/.w.bin.00000000deadbeef.tmp");
        assert_eq!(
            roots().local_path(&t),
            PathBuf::from("/srv/nodegate/models/m1/w.bin")
        );
    }

    #[test]
    fn derived_names_of_a_top_level_target() {
        let t = resolve_key(b"data/out.gguf").unwrap();
        assert_eq!(t.file_name(), "out.gguf");
        assert_eq!(t.parent(), None);
        assert_eq!(t.sidecar(), "out.gguf.sha256");
        assert_eq!(t.partial(), ".out.gguf.partial");
        assert_eq!(t.temp(u64::MAX), ".out.gguf.ffffffffffffffff.tmp");
        assert_eq!(
            roots().local_path(&t),
            PathBuf::from("/srv/nodegate/data/out.gguf")
        );
    }

    #[test]
    fn partial_and_temp_names_are_hidden_and_never_keys() {
        let t = resolve_key(b"models/m1/w.bin").unwrap();
        for derived in [t.partial(), t.temp(7)] {
            let key = format!("models/{derived}");
            assert_eq!(
                resolve_key(key.as_bytes()).unwrap_err(),
                KeyError::HiddenSegment
            );
        }
        assert!(is_temp_name(".w.bin.0000000000000007.tmp"));
        assert!(!is_temp_name(".w.bin.partial"));
        assert!(!is_listable(".w.bin.partial"));
        assert!(!is_listable(".w.bin.0000000000000007.tmp"));
    }

    #[test]
    fn temp_name_recognition_is_exact() {
        assert!(is_temp_name(".a.0123456789abcdef.tmp"));
        assert!(is_temp_name(".a.b.c.0123456789abcdef.tmp"));
        for name in [
            "a.0123456789abcdef.tmp",      // not hidden
            "..0123456789abcdef.tmp",      // empty base name
            ".a.0123456789ABCDEF.tmp",     // upper-case nonce is not ours
            ".a.0123456789abcde.tmp",      // 15 digits
            ".a.0123456789abcdef0.tmp",    // 17 digits
            ".a.0123456789abcdeg.tmp",     // not hex
            ".a.0123456789abcdef.tmp.bak", // wrong suffix
            ".0123456789abcdef.tmp",       // no base name at all
            "localai-output-123.tmp",
            "",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }

    #[test]
    fn file_name_limit_leaves_room_for_every_derived_name() {
        // The longest derived name is the temp file of the target sidecar's atomic write.
        assert_eq!(
            MAX_FILE_NAME_LEN,
            255 - ".".len() - ".sha256.target".len() - ".".len() - 16 - ".tmp".len()
        );
        let longest = "n".repeat(MAX_FILE_NAME_LEN);
        let t = resolve_key(format!("models/d/{longest}").as_bytes()).unwrap();
        let last = |rel: &str| rel.rsplit('/').next().unwrap_or(rel).len();
        for derived in [
            t.sidecar(),
            t.target_sidecar(),
            t.partial(),
            t.temp(u64::MAX),
        ] {
            assert!(
                last(&derived) <= MAX_SEGMENT_LEN,
                "{} bytes",
                last(&derived)
            );
        }
        let sidecar_write = format!(".{}.sha256.target.{:016x}.tmp", t.file_name(), 0);
        assert_eq!(last(&sidecar_write), MAX_SEGMENT_LEN);
        let too_long = "n".repeat(MAX_FILE_NAME_LEN + 1);
        assert_eq!(
            parse_key(format!("models/d/{too_long}").as_bytes()).unwrap_err(),
            KeyError::FileNameTooLong
        );
        // Directory segments may use the full NAME_MAX.
        let dir = "d".repeat(MAX_SEGMENT_LEN);
        assert!(parse_key(format!("models/{dir}/f").as_bytes()).is_ok());
        assert!(is_listable_dir(&dir));
        assert!(!is_listable(&dir));
    }

    #[test]
    fn key_length_limits_are_inclusive() {
        let mut key = vec!["s".repeat(30); 31].join("/");
        key.push('/');
        key.push_str(&"f".repeat(MAX_KEY_LEN - key.len()));
        assert_eq!(key.len(), MAX_KEY_LEN);
        assert_eq!(key.split('/').count(), MAX_SEGMENTS);
        assert!(parse_key(key.as_bytes()).is_ok());
        assert!(parse_key(encode_all(key.as_bytes()).as_slice()).is_ok());
        key.push('f');
        assert_eq!(parse_key(key.as_bytes()).unwrap_err(), KeyError::TooLong);
    }

    // --- files-list keys (spec §2.10) -------------------------------------------------------

    #[test]
    fn spec_2_10_list_keys_route_like_localai() {
        assert_eq!(
            resolve_list_key(b"models/").unwrap(),
            ListTarget::Root(Root::Models)
        );
        assert_eq!(
            resolve_list_key(b"data/").unwrap(),
            ListTarget::Root(Root::Data)
        );
        assert_eq!(
            resolve_list_key(b"models%2F").unwrap(),
            ListTarget::Root(Root::Models)
        );
        let dir = |raw: &[u8]| match resolve_list_key(raw) {
            Ok(ListTarget::Dir(t)) => (t.root(), t.rel().to_owned()),
            other => panic!("expected a directory, got {other:?}"),
        };
        assert_eq!(dir(b"models/my-model"), (Root::Models, "my-model".into()));
        assert_eq!(dir(b"models/my-model/"), (Root::Models, "my-model".into()));
        assert_eq!(dir(b"models"), (Root::Staging, "models".into()));
        assert_eq!(dir(b"data"), (Root::Staging, "data".into()));
        assert_eq!(
            dir(b"ephemeral/inputs/"),
            (Root::Staging, "ephemeral/inputs".into())
        );
    }

    #[test]
    fn spec_2_10_staging_root_cannot_be_listed() {
        assert_eq!(resolve_list_key(b"").unwrap_err(), KeyError::Empty);
        assert_eq!(
            resolve_list_key(b"").unwrap_err().to_string(),
            "key is required"
        );
        assert_eq!(resolve_list_key(b"/").unwrap_err(), KeyError::EmptySegment);
        assert_eq!(
            resolve_list_key(b"%2F").unwrap_err(),
            KeyError::EmptySegment
        );
    }

    #[test]
    fn list_keys_allow_only_one_trailing_slash() {
        for raw in [
            &b"models//"[..],
            b"data//",
            b"a//",
            b"models/x//",
            b"/a/",
            b"models/../",
        ] {
            assert!(resolve_list_key(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn listing_shows_only_fetchable_names() {
        for name in [
            "w.bin",
            "w.bin.sha256",
            "w.bin.sha256.target",
            "C0N",
            "é.gguf",
        ] {
            assert!(is_listable(name), "{name}");
        }
        for name in [
            ".w.bin.partial",
            ".git",
            ".",
            "..",
            "",
            "a/b",
            "a\\b",
            "CON",
            "x.",
            "x ",
            "a\nb",
            "a\u{202e}b",
        ] {
            assert!(!is_listable(name), "{name:?}");
        }
    }

    // --- percent-decoding -------------------------------------------------------------------

    #[test]
    fn percent_decoding_happens_exactly_once() {
        assert_eq!(percent_decode_once(b"%2e%2E").unwrap(), b"..");
        assert_eq!(percent_decode_once(b"%252e").unwrap(), b"%2e");
        assert_eq!(percent_decode_once(b"a+b%20c").unwrap(), b"a+b c");
        assert_eq!(percent_decode_once(b"%C3%a9").unwrap(), "é".as_bytes());
        assert_eq!(percent_decode_once(b"").unwrap(), b"");
        assert_eq!(
            percent_decode_once(&[0xff, b'%', b'4', b'1']).unwrap(),
            [0xff, b'A']
        );
    }

    #[test]
    fn malformed_escapes_are_refused_with_their_position() {
        for (raw, position) in [
            (&b"%"[..], 0),
            (b"%2", 0),
            (b"%zz", 0),
            (b"%u002e", 0),
            (b"abc%", 3),
            (b"abc%2", 3),
            (b"a%2e%g0", 4),
            (b"%%32%65", 0),
            (b"%2%65", 0),
            (b"% 20", 0),
            (b"%+20", 0),
        ] {
            assert_eq!(
                percent_decode_once(raw),
                Err(KeyError::BadEscape { position }),
                "{raw:?}"
            );
        }
    }

    // --- error texts ------------------------------------------------------------------------

    #[test]
    fn error_texts_are_short_and_safe() {
        assert_eq!(KeyError::Empty.to_string(), "key is required");
        assert_eq!(
            parse_key(b"a/%2e/b").unwrap_err().to_string(),
            "invalid key: segment \".\" is not allowed"
        );
        assert_eq!(
            parse_key(b"a%5Cb").unwrap_err().to_string(),
            "invalid key: character '\\' (U+005C) is not allowed"
        );
        assert_eq!(
            parse_key(b"a%0Ab").unwrap_err().to_string(),
            "invalid key: character U+000A is not allowed"
        );
        assert_eq!(
            parse_key(b"a%E2%80%AEb").unwrap_err().to_string(),
            "invalid key: character U+202E is not allowed"
        );
        assert_eq!(
            parse_key(b"models/com%C2%B9.txt").unwrap_err().to_string(),
            "invalid key: segment \"COM\u{b9}\" is a reserved device name; rename the file"
        );
    }

    // --- catalogue of malicious keys (security.md §1.2, §1.4) ------------------------------

    /// Each row: raw wire bytes after the route prefix, the rule that must refuse it.
    fn malicious_catalogue() -> Vec<(Vec<u8>, &'static str)> {
        let rows: Vec<(&[u8], &'static str)> = vec![
            // Plain traversal (routing happens after validation, PT-A03/A11).
            (b"..", "DotSegment"),
            (b"../etc/passwd", "DotSegment"),
            (b"../../../../../../etc/shadow", "DotSegment"),
            (b"models/../../etc/passwd", "DotSegment"),
            (b"models/../x", "DotSegment"),
            (b"data/../models/x", "DotSegment"),
            (b"models/..", "DotSegment"),
            (b"a/..", "DotSegment"),
            (b"a/./b", "DotSegment"),
            (b"./a", "DotSegment"),
            (b"ephemeral/inputs/../../../root/.ssh/id_rsa", "DotSegment"),
            // Encoded dots and slashes decode once, then fail the same rules (Rails
            // CVE-2014-7818 `..%2F`, Apache CVE-2021-41773 `.%2e`).
            (b"%2e%2e/etc/passwd", "DotSegment"),
            (b"%2E%2E%2Fetc%2Fpasswd", "DotSegment"),
            (b"..%2F..%2Fetc%2Fpasswd", "DotSegment"),
            (b".%2e/.%2e/.%2e/etc/passwd", "DotSegment"),
            (b"%2e./x", "DotSegment"),
            (b"models/%2e%2e/%2e%2e/etc/passwd", "DotSegment"),
            (b"models%2f..%2f..%2fetc", "DotSegment"),
            (b"%2e", "DotSegment"),
            // Absolute paths and empty segments (`PathBuf::join("/etc")` replaces the base).
            (b"/etc/passwd", "EmptySegment"),
            (b"//etc/passwd", "EmptySegment"),
            (b"%2Fetc%2Fpasswd", "EmptySegment"),
            (b"/", "EmptySegment"),
            (b"a//b", "EmptySegment"),
            (b"a/", "EmptySegment"),
            (b"models//x", "EmptySegment"),
            (b"models/", "RootIsDirectory"),
            (b"data/", "RootIsDirectory"),
            // Double encoding: the `%` left after one decode is refused (CVE-2001-0333,
            // dir2opds #17, CVE-2021-42013).
            (b"%252e%252e/x", "ForbiddenChar"),
            (b"%252e%252e%252fetc%252fpasswd", "ForbiddenChar"),
            (b".%252e/.%252e/etc/passwd", "ForbiddenChar"),
            (b"%25", "ForbiddenChar"),
            (b"%255c..%255cwin.ini", "ForbiddenChar"),
            (b"%%32%65%%32%65/x", "BadEscape"),
            (b"%u002e%u002e/x", "BadEscape"),
            (b"%", "BadEscape"),
            (b"%2", "BadEscape"),
            (b"%zz", "BadEscape"),
            (b"models/a%2", "BadEscape"),
            // Overlong and invalid UTF-8 (IIS CVE-2000-0884, CVE-2002-1744, CVE-2009-1535; D17).
            (b"%c0%ae%c0%ae/x", "NotUtf8"),
            (b"..%c0%af..%c0%afetc", "NotUtf8"),
            (b"%e0%80%ae%e0%80%ae/x", "NotUtf8"),
            (b"%f0%80%80%ae", "NotUtf8"),
            (b"weird_%c3%28_path", "NotUtf8"),
            (b"%ff", "NotUtf8"),
            (b"%ed%a0%80", "NotUtf8"),
            (b"\xc0\xae\xc0\xae/x", "NotUtf8"),
            (b"models/\xff.gguf", "NotUtf8"),
            // NUL and control bytes (nginx CVE-2013-4547, Webmin CVE-2006-3392, dufs #691).
            (b"file%00.txt", "ForbiddenChar"),
            (b"invalid-path%00", "ForbiddenChar"),
            (b"shell.png%20%00.php", "ForbiddenChar"),
            (b"..%01", "ForbiddenChar"),
            (b"a%0d%0aSet-Cookie:%20x", "ForbiddenChar"),
            (b"a\nb", "ForbiddenChar"),
            (b"a%09b", "ForbiddenChar"),
            (b"a%7f", "ForbiddenChar"),
            (b"a%1bb", "ForbiddenChar"),
            (b"a%c2%85b", "ForbiddenChar"),
            (b"a%c2%9bb", "ForbiddenChar"),
            // Bidi overrides and line separators (spoofed names in logs).
            (b"evil%e2%80%aefdp.exe", "ForbiddenChar"),
            (b"a%e2%81%a6b", "ForbiddenChar"),
            (b"a%e2%80%a8b", "ForbiddenChar"),
            // Backslash separators (vert.x CVE-2018-12542, Cowboy, hono; miniserve #518).
            (b"..\\..\\windows\\win.ini", "ForbiddenChar"),
            (b"%5c..%5cwin.ini", "ForbiddenChar"),
            (b"a%5C%2E%2E%5Cb", "ForbiddenChar"),
            (b"\\..\\bar", "ForbiddenChar"),
            (b"a/..\\..\\x", "ForbiddenChar"),
            (b"\\??\\C:\\x", "ForbiddenChar"),
            // Drive letters and NTFS streams (warp GHSA-8v4j-7jgf-5rg9, tower-http #204,
            // Go CVE-2022-41722, nginx CVE-2011-4963).
            (b"foo/bar/c:/windows/win.ini", "ForbiddenChar"),
            (b"anypath/c%3A/windows/win.ini", "ForbiddenChar"),
            (b"C:\\foo", "ForbiddenChar"),
            (b"a/../c:/b", "ForbiddenChar"),
            (b"file.txt::$index_allocation", "ForbiddenChar"),
            (b"x.gguf::$DATA", "ForbiddenChar"),
            // Other Windows-reserved characters.
            (b"a*b", "ForbiddenChar"),
            (b"a?b", "ForbiddenChar"),
            (b"a%3Fb", "ForbiddenChar"),
            (b"a%22b", "ForbiddenChar"),
            (b"a<b", "ForbiddenChar"),
            (b"a>b", "ForbiddenChar"),
            (b"invalid|path", "ForbiddenChar"),
            (b"a%7Cb", "ForbiddenChar"),
            // Trailing dots and spaces (nginx CVE-2011-4963, Go GO-2023-2186).
            (b"file.txt.", "TrailingDotOrSpace"),
            (b"file.txt%20", "TrailingDotOrSpace"),
            (b"dir./x", "TrailingDotOrSpace"),
            (b"dir%20/x", "TrailingDotOrSpace"),
            (b"NUL.", "TrailingDotOrSpace"),
            (b"COM1%20", "TrailingDotOrSpace"),
            (b"x..", "TrailingDotOrSpace"),
            // Windows device names (tower-http #663, Go GO-2023-2186, Node CVE-2025-27210).
            (b"CON", "DeviceName"),
            (b"con", "DeviceName"),
            (b"models/PRN", "DeviceName"),
            (b"AUX.tar.gz", "DeviceName"),
            (b"data/NUL.txt", "DeviceName"),
            (b"COM0", "DeviceName"),
            (b"COM1", "DeviceName"),
            (b"com9", "DeviceName"),
            (b"LPT0", "DeviceName"),
            (b"models/x/lpt9.bin", "DeviceName"),
            (b"COM%C2%B9", "DeviceName"),
            (b"com%C2%B3", "DeviceName"),
            (b"lpt%C2%B2.log", "DeviceName"),
            (b"CONIN$", "DeviceName"),
            (b"conout$.txt", "DeviceName"),
            (b"NUL%20%20.txt", "DeviceName"),
            (b"CON%20.gguf", "DeviceName"),
            (b"COM1:", "ForbiddenChar"),
            (b"CON%09", "ForbiddenChar"),
            (b"CON%0B", "ForbiddenChar"),
            // Hidden names: dotfiles and our own partial/temp files (Tomcat `..;/`).
            (b".env", "HiddenSegment"),
            (b".ssh/authorized_keys", "HiddenSegment"),
            (b"models/.git/config", "HiddenSegment"),
            (b".x.0123456789abcdef.tmp", "HiddenSegment"),
            (b"models/m/.w.bin.partial", "HiddenSegment"),
            (b".sha256", "HiddenSegment"),
            (b"%2ehidden", "HiddenSegment"),
            (b"..;/x", "HiddenSegment"),
            (b"x/..;/y", "HiddenSegment"),
            (b".../x", "HiddenSegment"),
            // Unicode look-alikes of `.`, `/`, `\` that NFKC folds into them.
            (b"%ef%bc%8e%ef%bc%8e/x", "ForbiddenChar"),
            (b"..%ef%bc%8fx", "ForbiddenChar"),
            (b"..%ef%bc%bcx", "ForbiddenChar"),
            (b"..%e2%88%95x", "ForbiddenChar"),
            (b"..%e2%81%84x", "ForbiddenChar"),
            (b"%e2%80%a4%e2%80%a4/x", "ForbiddenChar"),
            (b"%e2%80%a5/x", "ForbiddenChar"),
            (b"%ef%b9%92%ef%b9%92/x", "ForbiddenChar"),
            (b"..%ef%b9%a8x", "ForbiddenChar"),
            // Empty.
            (b"", "Empty"),
        ];
        let mut all: Vec<(Vec<u8>, &'static str)> =
            rows.into_iter().map(|(raw, k)| (raw.to_vec(), k)).collect();
        // Oversized inputs (nginx CVE-2009-3896).
        all.push(("a".repeat(MAX_KEY_LEN + 1).into_bytes(), "TooLong"));
        all.push(("%61".repeat(MAX_KEY_LEN + 1).into_bytes(), "TooLong"));
        all.push(("a".repeat(64 * 1024).into_bytes(), "TooLong"));
        all.push((
            format!("{}a", "a/".repeat(MAX_SEGMENTS)).into_bytes(),
            "TooManySegments",
        ));
        all.push((
            format!("{}/b", "a".repeat(MAX_SEGMENT_LEN + 1)).into_bytes(),
            "SegmentTooLong",
        ));
        all.push((
            format!("models/{}", "f".repeat(MAX_FILE_NAME_LEN + 1)).into_bytes(),
            "FileNameTooLong",
        ));
        all
    }

    #[test]
    fn malicious_key_catalogue_is_rejected_by_the_expected_rule() {
        let catalogue = malicious_catalogue();
        assert!(catalogue.len() >= 60, "{} rows", catalogue.len());
        for (raw, expected) in &catalogue {
            let shown = String::from_utf8_lossy(raw);
            let err = resolve_key(raw).expect_err(&shown);
            assert_eq!(kind(&err), *expected, "{shown}: {err}");
            assert!(parse_key(raw).is_err(), "{shown}");
            let text = err.to_string();
            assert!(
                text == "key is required" || text.starts_with("invalid key: "),
                "{text}"
            );
            assert!(!text.contains("/srv"), "{text}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
            // A listing key may differ only in one allowed trailing `/`.
            if !raw.ends_with(b"/") && !raw.ends_with(b"%2F") && !raw.ends_with(b"%2f") {
                assert!(resolve_list_key(raw).is_err(), "{shown}");
            }
        }
    }

    // --- properties (security.md §1.6) ------------------------------------------------------

    /// Pieces of wire strings: plain names, separators, encodings and every trick of §1.2.
    fn wire_atom() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z0-9_-]{1,8}",
            3 => Just("/".to_owned()),
            2 => proptest::sample::select(vec![
                ".", "..", "%2e", "%2E", "%2f", "%2F", "%25", "%00", "%5c", "\\", ":", " ", "%20",
                "models/", "data/", "models", "CON", ".sha256", "%c0%ae", "%e2%80%ae",
                "%ef%bc%8e", "%", "%2", "+", "~", "\u{e9}", "%C3%A9", "\u{6a21}", "..;", "$",
            ])
            .prop_map(str::to_owned),
            1 => "\\PC{1,3}",
            1 => "%[0-9a-fA-F]{2}",
        ]
    }

    /// Wire strings: free mixes of atoms, LocalAI-shaped keys under a random encoding, and
    /// LocalAI-shaped keys with one atom spliced in, so that many are accepted and many are
    /// near misses.
    fn wire() -> impl Strategy<Value = Vec<u8>> {
        let mixed =
            proptest::collection::vec(wire_atom(), 1..16).prop_map(|v| v.concat().into_bytes());
        let encoded = (legit_key(), proptest::collection::vec(any::<bool>(), 0..64))
            .prop_map(|(key, mask)| encode(key.as_bytes(), &mask));
        let spliced = (legit_key(), wire_atom(), any::<proptest::sample::Index>()).prop_map(
            |(key, atom, at)| {
                // Legit keys are ASCII, so every byte offset is a character boundary.
                let at = at.index(key.len() + 1);
                let (head, tail) = key.split_at(at);
                format!("{head}{atom}{tail}").into_bytes()
            },
        );
        prop_oneof![2 => mixed, 2 => encoded, 1 => spliced]
    }

    fn name_segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_+=@,-]{1,12}(\\.[A-Za-z0-9]{1,6}){0,2}"
    }

    /// Keys shaped like the ones LocalAI generates.
    fn legit_key() -> impl Strategy<Value = String> {
        (
            proptest::sample::select(vec!["models/", "data/", "", "ephemeral/inputs/"]),
            proptest::collection::vec(name_segment(), 1..6),
        )
            .prop_map(|(prefix, segments)| format!("{prefix}{}", segments.join("/")))
    }

    /// The containment conditions of P1 for one target.
    fn check_contained(roots: &Roots, target: &Target) -> Result<(), TestCaseError> {
        let root = roots.dir(target.root());
        let path = roots.local_path(target);
        prop_assert!(path.starts_with(root) && path != root, "{path:?}");
        let rel = Path::new(target.rel());
        prop_assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "{rel:?}"
        );
        let segments = target.rel().split('/').count();
        prop_assert_eq!(rel.components().count(), segments);
        prop_assert_eq!(
            path.components().count(),
            root.components().count() + segments
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// P1: an accepted key always names something strictly inside its root, through plain
        /// names only.
        #[test]
        fn p1_accepted_keys_stay_inside_their_root(raw in wire()) {
            let roots = roots();
            if let Ok(target) = resolve_key(&raw) {
                check_contained(&roots, &target)?;
            }
            if let Ok(ListTarget::Dir(target)) = resolve_list_key(&raw) {
                check_contained(&roots, &target)?;
            }
        }

        /// P1 on arbitrary bytes: whatever is accepted is contained.
        #[test]
        fn p1_arbitrary_bytes_never_escape(raw in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(target) = resolve_key(&raw) {
                check_contained(&roots(), &target)?;
            }
        }

        /// P2: an accepted key is canonical, and encoding it (any subset of bytes) then
        /// decoding once gives it back.
        #[test]
        fn p2_accepted_keys_are_canonical_and_round_trip(
            raw in wire(),
            mask in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            if let Ok(key) = parse_key(&raw) {
                let s = key.as_str();
                prop_assert!(!s.contains("//") && !s.starts_with('/') && !s.ends_with('/'));
                prop_assert!(key.segments().all(|seg| seg != "." && seg != ".."));
                prop_assert!(!s.contains('\\') && !s.contains('%'));
                prop_assert!(!s.chars().any(char::is_control));
                let encoded = encode(s.as_bytes(), &mask);
                prop_assert_eq!(percent_decode_once(&encoded)?, s.as_bytes());
                prop_assert_eq!(&parse_key(&encoded)?, &key);
                prop_assert_eq!(&parse_key(&encode_all(s.as_bytes()))?, &key);
                // Listing and fetching agree: every segment of a key can be listed.
                prop_assert!(key.segments().all(is_listable_dir));
                prop_assert!(key.segments().last().is_some_and(is_listable));
            }
        }

        /// P2 on keys shaped like LocalAI's: they are accepted, whatever their encoding.
        #[test]
        fn p2_localai_shaped_keys_survive_any_encoding(
            key in legit_key(),
            mask in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let devices = key.split('/').any(|seg| device_name(seg).is_some());
            prop_assume!(!devices);
            let plain = parse_key(key.as_bytes())?;
            prop_assert_eq!(plain.as_str(), key.as_str());
            prop_assert_eq!(parse_key(&encode(key.as_bytes(), &mask))?, plain);
        }

        /// P3: different accepted keys map to different local paths, and wire strings that
        /// decode to the same key map to the same path (no aliasing through normalization).
        #[test]
        fn p3_distinct_keys_map_to_distinct_paths(
            wires in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![
                    "a", "b", "/", "%2F", "%61", "models/", "data/", "models", "data", "%2e", ".",
                ]), 1..6),
                64,
            ),
        ) {
            let roots = roots();
            let mut seen = std::collections::BTreeMap::new();
            for wire in wires {
                let wire = wire.concat();
                if let Ok(target) = resolve_key(wire.as_bytes()) {
                    let path = roots.local_path(&target);
                    if let Some(previous) = seen.insert(path, target.key().clone()) {
                        prop_assert_eq!(&previous, target.key(), "{} aliases {}", wire, previous);
                    }
                }
            }
        }

        /// P4: appending traversal atoms to an accepted key never yields an accepted key that
        /// escapes its root or carries a dot segment.
        #[test]
        fn p4_appending_catalogue_atoms_never_escapes(
            base in legit_key(),
            atoms in proptest::collection::vec(proptest::sample::select(vec![
                "../", "..\\", "%2e%2e/", "./", "%00", "%2f", "%2F..", "/..", "/.", "/../",
                "%252e%252e/", "..;/", "%c0%ae%c0%ae/", "%5c", "//", "%2e", "\\", ":", "/CON",
                "%e2%80%ae", "%ef%bc%8f", "/%2e%2e", "%2f%2e%2e%2f", "/x",
            ]), 1..6),
        ) {
            let raw = format!("{base}{}", atoms.concat());
            if let Ok(target) = resolve_key(raw.as_bytes()) {
                check_contained(&roots(), &target)?;
                prop_assert!(target.key().segments().all(|s| s != "." && s != ".."));
            }
        }

        /// P4, dot-dot floods (static-web-server's property): any traversal atom in the input
        /// gets it refused; anything accepted is contained.
        #[test]
        fn p4_dot_dot_floods_are_refused(
            parts in proptest::collection::vec(prop_oneof![
                Just("../".to_owned()),
                Just("..\\".to_owned()),
                Just("%2e%2e/".to_owned()),
                Just("./".to_owned()),
                "[a-zA-Z0-9_.-]{1,8}",
            ], 1..24),
        ) {
            let flood = parts.iter().any(|p| p.ends_with('/') || p.ends_with('\\'));
            let raw = parts.concat();
            if let Ok(target) = resolve_key(raw.as_bytes()) {
                prop_assert!(!flood, "{raw} accepted");
                check_contained(&roots(), &target)?;
            }
        }

        /// P5: arbitrary short byte strings never make any parser panic.
        #[test]
        fn p5_short_arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = percent_decode_once(&raw);
            let _ = parse_key(&raw);
            let _ = resolve_key(&raw);
            let _ = resolve_list_key(&raw);
            let text = String::from_utf8_lossy(&raw);
            let _ = is_listable(&text);
            let _ = is_listable_dir(&text);
            let _ = is_temp_name(&text);
        }

        /// P6: routing never yields a remainder that is empty, absolute or holds `..`, and the
        /// remainder is the key minus exactly the prefix of its root.
        #[test]
        fn p6_routing_yields_a_safe_remainder(raw in wire()) {
            if let Ok(target) = resolve_key(&raw) {
                let rel = target.rel();
                prop_assert!(!rel.is_empty() && !rel.starts_with('/'));
                prop_assert!(rel.split('/').all(|s| !s.is_empty() && s != ".." && s != "."));
                let key = target.key().as_str();
                let expected = match target.root() {
                    Root::Models => key.strip_prefix("models/"),
                    Root::Data => key.strip_prefix("data/"),
                    Root::Staging => {
                        (!key.starts_with("models/") && !key.starts_with("data/")).then_some(key)
                    }
                };
                prop_assert_eq!(Some(rel), expected);
            }
        }

        /// Derived names: for every accepted target, sidecar, partial and temp names fit in a
        /// segment, and partial and temp names are hidden, never keys, never listed.
        #[test]
        fn derived_names_fit_and_stay_hidden(
            dir in legit_key(),
            name in "[a-z0-9]{1,219}",
            nonce in any::<u64>(),
        ) {
            let raw = format!("{dir}/{name}");
            prop_assume!(!raw.split('/').any(|seg| device_name(seg).is_some()));
            let target = resolve_key(raw.as_bytes())?;
            let last = |rel: &str| rel.rsplit('/').next().unwrap_or(rel).len();
            for derived in [target.sidecar(), target.target_sidecar(), target.partial(), target.temp(nonce)] {
                prop_assert!(last(&derived) <= MAX_SEGMENT_LEN);
                prop_assert_eq!(derived.rsplit_once('/').map(|(p, _)| p), target.parent());
            }
            let temp = target.temp(nonce);
            let temp_name = temp.rsplit('/').next().unwrap_or(&temp);
            prop_assert!(is_temp_name(temp_name) && !is_listable(temp_name));
            let partial = target.partial();
            let partial_name = partial.rsplit('/').next().unwrap_or(&partial);
            prop_assert!(!is_temp_name(partial_name) && !is_listable(partial_name));
            prop_assert!(!is_temp_name(target.file_name()));
            for hidden in [&temp, &partial] {
                let prefix = match target.root() {
                    Root::Models => "models/",
                    Root::Data => "data/",
                    Root::Staging => "",
                };
                prop_assert_eq!(
                    resolve_key(format!("{prefix}{hidden}").as_bytes()),
                    Err(KeyError::HiddenSegment)
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// P5: arbitrary inputs up to 64 KiB never make any parser panic.
        #[test]
        fn p5_large_arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..=64 * 1024)) {
            let _ = percent_decode_once(&raw);
            let _ = parse_key(&raw);
            let _ = resolve_key(&raw);
            let _ = resolve_list_key(&raw);
            let text = String::from_utf8_lossy(&raw);
            let _ = is_listable(&text);
            let _ = is_temp_name(&text);
        }

        /// P5: large inputs built from traversal atoms never panic and are refused.
        #[test]
        fn p5_large_atom_floods_are_refused(
            atoms in proptest::collection::vec(wire_atom(), 1..2048),
            repeat in 1usize..64,
        ) {
            let raw = atoms.concat().repeat(repeat);
            prop_assume!(raw.len() > 3 * MAX_KEY_LEN);
            prop_assert!(resolve_key(raw.as_bytes()).is_err());
            prop_assert!(resolve_list_key(raw.as_bytes()).is_err());
            let _ = percent_decode_once(raw.as_bytes());
        }
    }
}
