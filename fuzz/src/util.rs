//! Helpers shared by the oracles.

/// The "twin" of a secret: every ASCII letter shifted by one inside its case (`z` → `a`), every
/// digit by one (`9` → `0`), everything else unchanged.
///
/// The map is a bijection that keeps character classes, so a valid token stays valid, equal
/// secrets stay equal and different ones stay different. An output computed from a secret and
/// the same output computed from its twin can only differ if the output depends on the secret's
/// content: comparing them is a non-interference check that needs no list of forbidden words.
pub(crate) fn twin(text: &str) -> String {
    text.chars().map(twin_char).collect()
}

/// [`twin`] on bytes (non-ASCII bytes unchanged, so UTF-8 stays UTF-8).
pub(crate) fn twin_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                twin_char(char::from(b)) as u8
            } else {
                b
            }
        })
        .collect()
}

fn twin_char(c: char) -> char {
    match c {
        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        other => other,
    }
}

/// Lines split on `\n`, each without one trailing `\r`.
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`, written
/// independently of the core (a regular expression by hand).
pub(crate) fn is_b64token(bytes: &[u8]) -> bool {
    let body_end = bytes
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |last| last + 1);
    let (body, padding) = bytes.split_at(body_end);
    !body.is_empty()
        && padding.iter().all(|&b| b == b'=')
        && body.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Panics when `text` (a response body, an error message, a log line) carries a character that
/// could forge a log line or hide text: C0/C1 controls, DEL, bidirectional controls and line or
/// paragraph separators.
pub(crate) fn assert_printable(what: &str, text: &str) {
    let bad = text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    });
    assert!(
        bad.is_none(),
        "{what} carries an unprintable character {bad:?}: {text:?}"
    );
}

/// Decodes `\n`, `\r`, `\t`, `\\` and `\xNN` escapes (anything else stays as it is), so that a
/// one-line text format can carry any byte.
pub(crate) fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match text.get(i) {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => {
                        out.extend_from_slice(b"\\x");
                    }
                }
            }
            Some(&other) => {
                out.push(b'\\');
                out.push(other);
            }
            None => {
                out.push(b'\\');
                break;
            }
        }
        i += 1;
    }
    out
}

/// The inverse of [`unescape`] for the bytes it would otherwise misread (used to write seeds).
pub(crate) fn escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e | b'\t' => out.push(b),
            other => out.extend_from_slice(format!("\\x{other:02x}").as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_keep_classes_and_differ() {
        assert_eq!(twin("az-Z9 é"), "ba-A0 é");
        assert_eq!(twin_bytes(b"tok\x80"), b"upl\x80");
    }

    #[test]
    fn escapes_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(&escape(&bytes)), bytes);
    }

    #[test]
    fn b64token_reference() {
        assert!(is_b64token(b"a-b.c_d~e+f/g=="));
        assert!(!is_b64token(b"=abc"));
        assert!(!is_b64token(b"ab=c"));
        assert!(!is_b64token(b""));
        assert!(!is_b64token(b"=="));
    }
}
