//! `keys`: percent-decoding, validation and routing of file keys (security.md §1.4, §1.6,
//! FZ-1). Input: the raw, still-encoded key as it follows `/v1/files/` in a request path.

use std::path::{Component, Path, PathBuf};

use nodegate_core::keys::{
    KeyError, ListTarget, MAX_FILE_NAME_LEN, MAX_KEY_LEN, MAX_SEGMENT_LEN, MAX_SEGMENTS, Root,
    Roots, Target, is_listable, is_listable_dir, is_temp_name, parse_key, percent_decode_once,
    resolve_key, resolve_list_key,
};

use crate::util::assert_printable;

/// Atoms appended to every accepted key (P4): dot segments, encoded and Windows separators,
/// NUL, overlong UTF-8, alternate data streams, device names, hidden and trailing-dot names.
const ATOMS: &[&[u8]] = &[
    b"/..",
    b"/.",
    b"/../x",
    b"/%2e%2e",
    b"%2f..%2fx",
    b"/.%2e/x",
    b"\\..",
    b"%5c..%5cx",
    b"%00",
    b"/",
    b"//x",
    b"/%c0%ae%c0%ae/x",
    b"::$DATA",
    b"/CON",
    b"/com%c2%b9.txt",
    b" ",
    b".",
    b"/.x",
    b"%252e%252e",
    b"/\xef\xbc\x8e\xef\xbc\x8e/x",
];

/// Oracle of the `keys` target. Panics when:
///
/// - `percent_decode_once` is not a single, exact decode (escape positions, lengths);
/// - an accepted key breaks P2 (canonical: no empty, `.`, `..`, hidden or trailing-dot segment,
///   no control, `\ : * ? " < > | %`, bidi or look-alike character, length limits, no device
///   name) or does not round-trip through percent-encoding;
/// - P1/P6: the routed path is not strictly inside its root, or has a non-`Normal` component;
/// - P3: the (root, relative path) pair does not give the key back (two keys could share a file);
/// - `parse_key`, `resolve_key` and `resolve_list_key` disagree;
/// - a derived name (partial, temp, sidecars, sidecar temp) is longer than 255 bytes, is itself
///   a valid key, or is not recognised as what it is (INV-4);
/// - a name `is_listable` accepts is not a key, or a key's names are not listable;
/// - P4: appending an atom to an accepted key gives an accepted key that breaks any of the above;
/// - an error message carries a control or invisible character.
pub fn keys(data: &[u8]) {
    check_decode(data);
    check_raw(data);
    if parse_key(data).is_ok() {
        for atom in ATOMS {
            check_raw(&[data, atom].concat());
        }
    }
    if let Ok(name) = std::str::from_utf8(data) {
        check_listing_name(name);
    }
}

/// Everything about one raw key.
fn check_raw(raw: &[u8]) {
    let parsed = parse_key(raw);
    let resolved = resolve_key(raw);
    let decoded = percent_decode_once(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());

    match (&parsed, &resolved) {
        (Ok(key), Ok(target)) => {
            assert_eq!(target.key(), key, "resolve_key and parse_key agree");
            check_key(key.as_str());
            check_target(target);
        }
        (Err(parse_error), Err(resolve_error)) => {
            let root_dir = matches!(decoded.as_deref(), Some("models/" | "data/"));
            if root_dir {
                assert!(
                    matches!(resolve_error, KeyError::RootIsDirectory { .. }),
                    "{resolve_error:?}"
                );
            } else {
                assert_eq!(parse_error, resolve_error);
            }
            check_error(parse_error);
            check_error(resolve_error);
        }
        (parsed, resolved) => panic!("parse_key {parsed:?} but resolve_key {resolved:?}"),
    }

    match resolve_list_key(raw) {
        Ok(ListTarget::Root(root)) => {
            let expected = match decoded.as_deref() {
                Some("models/") => Root::Models,
                Some("data/") => Root::Data,
                other => panic!("{other:?} listed as a whole root"),
            };
            assert_eq!(root, expected);
        }
        Ok(ListTarget::Dir(target)) => {
            let decoded = decoded.expect("a listed key decodes");
            let key = match decoded.strip_suffix('/') {
                Some(stripped) if !stripped.is_empty() => stripped,
                _ => decoded.as_str(),
            };
            assert_eq!(target.key().as_str(), key, "one trailing slash is dropped");
            check_key(key);
            check_target(&target);
        }
        Err(error) => check_error(&error),
    }
}

/// P2 on a decoded key, from the rules of security.md §1.4 (written independently of the
/// core's validator).
fn check_key(key: &str) {
    assert!(
        !key.is_empty() && key.len() <= MAX_KEY_LEN,
        "length of {key:?}"
    );
    let segments: Vec<&str> = key.split('/').collect();
    assert!(segments.len() <= MAX_SEGMENTS, "segments of {key:?}");
    for segment in &segments {
        assert!(
            !segment.is_empty() && *segment != "." && *segment != "..",
            "segment {segment:?} of {key:?}"
        );
        assert!(
            segment.len() <= MAX_SEGMENT_LEN,
            "segment length in {key:?}"
        );
        assert!(!segment.starts_with('.'), "hidden segment in {key:?}");
        assert!(
            !segment.ends_with('.') && !segment.ends_with(' '),
            "trailing dot or space in {key:?}"
        );
        assert!(!is_device_name(segment), "device name in {key:?}");
    }
    let name = segments.last().copied().unwrap_or_default();
    assert!(
        name.len() <= MAX_FILE_NAME_LEN,
        "file name length in {key:?}"
    );
    if let Some(c) = key.chars().find(|&c| forbidden(c)) {
        panic!("accepted key {key:?} has {c:?}");
    }

    // Canonical: the key as its own wire form is itself, and so is any percent-encoding of it.
    assert_eq!(
        parse_key(key.as_bytes()).map(|k| k.as_str().to_owned()),
        Ok(key.to_owned())
    );
    for encoded in [encode(key, false), encode(key, true)] {
        assert_eq!(
            parse_key(encoded.as_bytes()).map(|k| k.as_str().to_owned()),
            Ok(key.to_owned()),
            "round trip of {key:?} through {encoded:?}"
        );
    }
}

/// P1, P3, P6 and the derived names of a routed key.
fn check_target(target: &Target) {
    let key = target.key().as_str();
    let rel = target.rel();
    let expected_root = if key.starts_with("models/") {
        Root::Models
    } else if key.starts_with("data/") {
        Root::Data
    } else {
        Root::Staging
    };
    assert_eq!(target.root(), expected_root, "routing of {key:?}");
    // P3: the key comes back from (root, rel), so the pair is injective.
    let back = match target.root() {
        Root::Models => format!("models/{rel}"),
        Root::Data => format!("data/{rel}"),
        Root::Staging => rel.to_owned(),
    };
    assert_eq!(back, key, "P3");
    // P6: a non-empty relative path of valid segments.
    assert!(!rel.is_empty() && !rel.starts_with('/'), "P6 rel {rel:?}");
    check_key(rel);

    // P1: strictly inside the root, only `Normal` components.
    let roots = Roots {
        models: PathBuf::from("/srv/models"),
        staging: PathBuf::from("/srv/staging"),
        data: PathBuf::from("/srv/data"),
    };
    let root = roots.dir(target.root());
    let path = roots.local_path(target);
    let inside = path
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("P1: {path:?} outside {root:?}"));
    let components: Vec<Component<'_>> = inside.components().collect();
    assert_eq!(components.len(), rel.split('/').count(), "P1: {path:?}");
    assert!(
        components.iter().all(|c| matches!(c, Component::Normal(_))),
        "P1: {path:?}"
    );
    assert_eq!(Path::new(rel).components().count(), components.len());

    // Names: the file name and parent, and every derived name.
    let name = target.file_name();
    assert_eq!(Some(name), rel.split('/').next_back());
    assert_eq!(
        target.parent(),
        rel.rsplit_once('/').map(|(parent, _)| parent)
    );
    assert!(is_listable(name), "a key's file name {name:?} is listable");
    for dir in rel.split('/').rev().skip(1) {
        assert!(
            is_listable_dir(dir),
            "a key's directory {dir:?} is listable"
        );
    }
    for derived in [
        target.sidecar(),
        target.target_sidecar(),
        target.partial(),
        target.temp(0),
        target.temp(u64::MAX),
    ] {
        let derived_name = derived.rsplit('/').next().unwrap_or_default();
        assert!(
            derived_name.len() <= MAX_SEGMENT_LEN,
            "derived name {derived_name:?} is too long"
        );
        assert_eq!(
            derived.rsplit_once('/').map(|(parent, _)| parent),
            target.parent()
        );
    }
    // The sidecar of a sidecar write (`.<name>.sha256.target.<nonce>.tmp`) fits too.
    assert!(name.len() + ".".len() + ".sha256.target".len() + ".0123456789abcdef.tmp".len() <= 255);
    for hidden in [target.partial(), target.temp(7)] {
        let hidden_name = hidden.rsplit('/').next().unwrap_or_default();
        assert_eq!(
            parse_key(hidden_name.as_bytes()),
            Err(KeyError::HiddenSegment),
            "INV-4: {hidden_name:?} is reachable as a key"
        );
        assert!(!is_listable(hidden_name), "{hidden_name:?} is listed");
    }
    let temp = target.temp(0x0123_4567_89ab_cdef);
    assert!(is_temp_name(temp.rsplit('/').next().unwrap_or_default()));
    assert!(!is_temp_name(
        target.partial().rsplit('/').next().unwrap_or_default()
    ));
    if let Ok(sidecar) = parse_key(target.key().as_str().as_bytes()).map(|k| k.is_sidecar()) {
        assert_eq!(
            sidecar,
            key.ends_with(".sha256") || key.ends_with(".sha256.target")
        );
    }
}

/// A name found on disk while listing: listable names are keys, temp names never are.
fn check_listing_name(name: &str) {
    if is_listable(name) {
        assert!(!name.contains('/'));
        assert_eq!(
            parse_key(name.as_bytes()).map(|k| k.as_str().to_owned()),
            Ok(name.to_owned()),
            "a listed name {name:?} can be fetched"
        );
    }
    if is_listable_dir(name) {
        let inner = format!("{name}/x");
        assert!(
            parse_key(inner.as_bytes()).is_ok(),
            "listed directory {name:?}"
        );
    }
    if is_temp_name(name) {
        assert!(name.starts_with('.') && name.ends_with(".tmp"));
        assert!(
            parse_key(name.as_bytes()).is_err(),
            "temp name {name:?} is a key"
        );
    }
}

/// `percent_decode_once` against a reference decoder.
fn check_decode(raw: &[u8]) {
    let mut expected = Vec::new();
    let mut i = 0;
    let mut error = None;
    while i < raw.len() {
        if raw[i] == b'%' {
            let pair = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match pair.filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
                Some(hex) => {
                    expected.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                    i += 3;
                }
                None => {
                    error = Some(KeyError::BadEscape { position: i });
                    break;
                }
            }
        } else {
            expected.push(raw[i]);
            i += 1;
        }
    }
    let expected = match error {
        Some(error) => Err(error),
        None => Ok(expected),
    };
    assert_eq!(percent_decode_once(raw), expected);
}

/// An error message is short and never carries a control or invisible character.
fn check_error(error: &KeyError) {
    let text = error.to_string();
    assert!(text.len() < 200, "{text:?}");
    assert_printable("key error", &text);
}

/// Percent-encodes every byte but the unreserved ones and `/`; with `all`, every byte but `/`.
fn encode(key: &str, all: bool) -> String {
    let mut out = String::new();
    for &b in key.as_bytes() {
        let keep = b == b'/' || (!all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Characters no key may hold (security.md §1.4 and the key module's policy).
fn forbidden(c: char) -> bool {
    c.is_control()
        || "\\:*?\"<>|%".contains(c)
        || matches!(
            c,
            '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{ff0e}'
                | '\u{ff0f}'
                | '\u{ff3c}'
                | '\u{2215}'
                | '\u{2044}'
                | '\u{2024}'
                | '\u{2025}'
                | '\u{2026}'
                | '\u{fe52}'
                | '\u{fe68}'
        )
}

/// Windows device names (tower-http's list): the part before the first `.`, trailing spaces
/// removed, in any case; `COM`/`LPT` with a digit or a superscript one, two or three.
fn is_device_name(segment: &str) -> bool {
    let stem = segment
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"].contains(&upper.as_str()) {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && matches!(rest.as_slice(), [c] if c.is_ascii_digit() || matches!(c, '\u{b9}' | '\u{b2}' | '\u{b3}'))
}
