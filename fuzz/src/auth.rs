//! `authorize`: bearer-token decisions (security.md §2.3, FZ-2).
//!
//! Input: a text whose first line configures the server and whose other lines are header field
//! lines `name: value` (`\r\n` or `\n`):
//!
//! ```text
//! token tok            (or: token <current> <previous>, or: anonymous)
//! Authorization: Bearer tok
//! ```
//!
//! A first line that is neither form configures the token `tok`. Lines that are not valid
//! header fields are skipped, as an HTTP parser would have refused them before the core.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use nodegate_core::auth::{
    AuthDecision, AuthPolicy, MAX_TOKEN_LEN, RejectReason, Token, TokenError, TokenSet,
    authorize as core_authorize, parse_bearer,
};

use crate::util::{is_b64token, lines, twin};

/// Oracle of the `authorize` target. Panics when:
///
/// - a configured token is accepted or refused against RFC 6750 `b64token`, or prints itself;
/// - anonymous mode refuses anything (AH-22, AH-23);
/// - with a token, the decision differs from the reference: `Missing` without an
///   `Authorization` line, `Multiple` with several (AH-10/11), otherwise the reference parse of
///   the single line (`<bearer, any case> 1*SP <b64token>`, OWS around) compared with the current
///   and previous tokens; in particular Allow without a line carrying the token (AH-07…AH-09,
///   AH-12, AH-13, AH-19);
/// - `parse_bearer` disagrees with the reference on any line;
/// - other headers (`Proxy-Authorization`, `X-Api-Key`, …) change the decision (AH-19);
/// - the `Debug` of the policy depends on the content of the secret.
pub fn authorize(data: &[u8]) {
    let mut lines = lines(data);
    let config = lines.next().unwrap_or_default();
    let Some(tokens) = configured_tokens(config) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = header_line(line) {
            headers.append(name, value);
        }
    }

    let policy = match &tokens {
        None => AuthPolicy::from_tokens(None, None),
        Some((current, previous)) => AuthPolicy::from_tokens(Some(current), previous.as_ref()),
    };
    let decision = core_authorize(&policy, &headers);

    let Some((current, previous)) = &tokens else {
        assert_eq!(
            decision,
            AuthDecision::Allow,
            "AH-22/23: anonymous mode allows"
        );
        return;
    };

    let lines: Vec<&HeaderValue> = headers.get_all(AUTHORIZATION).iter().collect();
    for line in &lines {
        assert_eq!(
            parse_bearer(line.as_bytes()),
            reference_bearer(line.as_bytes()),
            "parse_bearer({line:?})"
        );
    }
    let accepted = |token: &[u8]| {
        token == current.expose().as_bytes()
            || previous
                .as_ref()
                .is_some_and(|p| token == p.expose().as_bytes())
    };
    let expected = match lines.as_slice() {
        [] => AuthDecision::Reject(RejectReason::Missing),
        [line] => match reference_bearer(line.as_bytes()) {
            Ok(token) if accepted(token) => AuthDecision::Allow,
            Ok(_) => AuthDecision::Reject(RejectReason::Mismatch),
            Err(reason) => AuthDecision::Reject(reason),
        },
        _ => AuthDecision::Reject(RejectReason::Multiple),
    };
    assert_eq!(decision, expected, "decision for {headers:?}");
    if decision == AuthDecision::Allow {
        let line = lines.first().map(|l| l.as_bytes()).unwrap_or_default();
        assert!(
            contains(line, current.expose().as_bytes())
                || previous
                    .as_ref()
                    .is_some_and(|p| contains(line, p.expose().as_bytes())),
            "Allow without a header that carries the configured token"
        );
    }

    // AH-19: only `Authorization` field lines are read.
    let mut only_authorization = HeaderMap::new();
    for line in &lines {
        only_authorization.append(AUTHORIZATION, (*line).clone());
    }
    assert_eq!(
        core_authorize(&policy, &only_authorization),
        decision,
        "AH-19: a header other than Authorization changed the decision"
    );

    // The policy's Debug is the same for the twin secrets: it does not depend on them.
    let twin_current = Token::parse(&twin(current.expose())).expect("twins stay b64tokens");
    let twin_previous = previous
        .as_ref()
        .map(|p| Token::parse(&twin(p.expose())).expect("twins stay b64tokens"));
    let twin_policy = AuthPolicy::from_tokens(Some(&twin_current), twin_previous.as_ref());
    assert_eq!(format!("{policy:?}"), format!("{twin_policy:?}"));
    let set = TokenSet::new(current, previous.as_ref());
    assert_eq!(set.is_rotating(), previous.is_some());
    assert!(set.accepts(current.expose().as_bytes()));
}

/// The tokens of the first line: `None` = anonymous; `Some((current, previous))`. Returns
/// `None` (outer) when the line configures a token that is rightly refused: nothing to decide.
#[allow(clippy::option_option)]
fn configured_tokens(line: &[u8]) -> Option<Option<(Token, Option<Token>)>> {
    if line == b"anonymous" {
        return Some(None);
    }
    let Some(rest) = line.strip_prefix(b"token ") else {
        let tok = Token::parse("tok").expect("tok is a b64token");
        return Some(Some((tok, None)));
    };
    let text = String::from_utf8_lossy(rest);
    let (current, previous) = match text.split_once(' ') {
        Some((current, previous)) => (current.to_owned(), Some(previous.to_owned())),
        None => (text.into_owned(), None),
    };
    let current = checked_token(&current)?;
    let previous = match previous {
        Some(previous) => Some(checked_token(&previous)?),
        None => None,
    };
    Some(Some((current, previous)))
}

/// `Token::parse` against the reference rules (AH-15, AH-16, SC-03, SC-05); the token only when
/// it is valid.
fn checked_token(value: &str) -> Option<Token> {
    let expected = if value.is_empty() {
        Err(TokenError::Empty)
    } else if value.chars().all(char::is_whitespace) {
        Err(TokenError::OnlyWhitespace)
    } else if value.len() > MAX_TOKEN_LEN {
        Err(TokenError::TooLong)
    } else if !is_b64token(value.as_bytes()) {
        Err(TokenError::InvalidCharacter {
            position: first_bad_b64token_byte(value.as_bytes()),
        })
    } else {
        Ok(())
    };
    let parsed = Token::parse(value);
    assert_eq!(
        parsed.as_ref().map(|_| ()).map_err(Clone::clone),
        expected,
        "Token::parse({value:?})"
    );
    match parsed {
        Ok(token) => {
            assert_eq!(token.expose(), value);
            assert_eq!(format!("{token:?}"), "Token(***)");
            assert_eq!(format!("{token}"), "***");
            assert_eq!(format!("{:?}", token.digest()), "TokenDigest(***)");
            Some(token)
        }
        Err(error) => {
            // The message is the same for the twin value: it never quotes the secret.
            let twin_error = Token::parse(&twin(value)).map(|_| ()).unwrap_err();
            assert_eq!(error.to_string(), twin_error.to_string());
            None
        }
    }
}

/// The first byte that breaks `b64token`: the first character outside the body alphabet, or
/// the first non-`=` after padding started.
fn first_bad_b64token_byte(bytes: &[u8]) -> usize {
    let is_body = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    let body = bytes.iter().take_while(|b| is_body(b)).count();
    if body == 0 {
        return 0;
    }
    let padding = bytes
        .get(body..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| b == b'=')
        .count();
    body + padding
}

/// The reference reading of one `Authorization` value, written from RFC 9110 §11 and RFC 6750
/// §2.1 with `[u8]` helpers rather than the core's loops.
pub(crate) fn reference_bearer(value: &[u8]) -> Result<&[u8], RejectReason> {
    // A header value never holds CR, LF or other controls but HTAB, so `trim_ascii` trims
    // exactly the optional whitespace (SP, HTAB).
    let value = value.trim_ascii();
    if !value.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err(RejectReason::Malformed);
    }
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err(if value.eq_ignore_ascii_case(b"bearer") {
            RejectReason::Malformed
        } else {
            RejectReason::WrongScheme
        });
    };
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(RejectReason::WrongScheme);
    }
    let token = token.trim_ascii();
    if is_b64token(token) {
        Ok(token)
    } else {
        Err(RejectReason::Malformed)
    }
}

/// `name: value`, value without the optional whitespace after the colon (the rest is kept, so
/// the core's own trimming is exercised).
fn header_line(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = line.split_at(colon);
    let value = value.get(1..).unwrap_or_default();
    let value = value.strip_prefix(b" ").unwrap_or(value);
    Some((
        HeaderName::from_bytes(name).ok()?,
        HeaderValue::from_bytes(value).ok()?,
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
