//! Request bodies: content type, size limit and JSON parsing, each failure a precise
//! [`BodyError`] (its status is chosen in `error.rs`).

use std::fmt;

use serde::de::DeserializeOwned;

/// Bodies larger than this (256 KiB) are refused with 413 before they are read whole. Sized
/// so the largest valid request, a note at its character limits, always fits, however the client
/// encodes it: JSON may escape every character as a UTF-16 surrogate pair, 12 bytes
/// (`notes::input` asserts it). At 64 KiB a 20,000-character note of emoji (80 KB of UTF-8)
/// could not be sent at all (review finding).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// `Content-Length` is not a number.
    InvalidContentLength,
    /// Over [`MAX_BODY_BYTES`], declared or read.
    TooLarge,
    /// The runtime could not read the body.
    Unreadable,
    /// Not declared as JSON.
    NotJson,
    /// Sent with a content coding (`Content-Encoding: gzip`, …): the API reads bodies as sent.
    Encoded,
    /// Nothing but whitespace.
    Empty,
    /// Not JSON (a syntax error): serde's explanation, which says where.
    Malformed(String),
    /// JSON of the wrong shape (a missing, unknown or mistyped field): serde's explanation.
    UnexpectedShape(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidContentLength => f.write_str("Content-Length is not a number"),
            Self::TooLarge => write!(f, "request body is over {MAX_BODY_BYTES} bytes"),
            Self::Unreadable => f.write_str("the request body could not be read"),
            Self::NotJson => f.write_str("send the body as application/json"),
            Self::Encoded => f.write_str("send the body without a Content-Encoding"),
            Self::Empty => f.write_str("the request body is empty; send a JSON object"),
            Self::Malformed(why) | Self::UnexpectedShape(why) => write!(f, "malformed JSON body: {why}"),
        }
    }
}

/// Refuses a declared `Content-Length` over the limit, so the body is never read at all.
pub fn check_declared_length(content_length: Option<&str>) -> Result<(), BodyError> {
    match content_length.map(|value| value.trim().parse::<u64>()) {
        None => Ok(()),
        Some(Ok(length)) if length <= MAX_BODY_BYTES as u64 => Ok(()),
        Some(Ok(_)) => Err(BodyError::TooLarge),
        Some(Err(_)) => Err(BodyError::InvalidContentLength),
    }
}

/// Refuses a body with a content coding other than `identity` (RFC 9110 §8.4: a server may
/// answer 415 to a coding it does not accept), which would otherwise reach the JSON parser
/// compressed and read as a syntax error.
pub fn check_identity_encoding(content_encoding: Option<&str>) -> Result<(), BodyError> {
    let coded = content_encoding.is_some_and(|value| {
        value.split(',').map(str::trim).any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
    });
    if coded { Err(BodyError::Encoded) } else { Ok(()) }
}

/// Accepts `application/json` and an `application/<name>+json` type (RFC 6839's structured
/// syntax suffix, e.g. `application/reports+json`, `application/merge-patch+json`), parameters
/// aside, and the types in `also_accept`. Anything else is [`BodyError::NotJson`] (415) —
/// `+json` alone, or another top-level type (`text/plain+json`), is not a JSON media type.
pub fn check_json_content_type(content_type: Option<&str>, also_accept: &[&str]) -> Result<(), BodyError> {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let suffixed = essence.strip_prefix("application/").and_then(|subtype| subtype.strip_suffix("+json"));
    // RFC 6838 §4.2: a name starts with a letter or digit and holds only these characters.
    let is_name = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let is_json =
        essence == "application/json" || suffixed.is_some_and(is_name) || also_accept.contains(&essence.as_str());
    if is_json { Ok(()) } else { Err(BodyError::NotJson) }
}

/// Parses a whole API request body, which is always a JSON object (docs/api.md), as `T`.
///
/// serde's derived `Deserialize` also takes a struct from an array of its fields in order, so
/// `["title", "body", true]` would make a note: anything but an object is refused before `T`
/// sees it, and the error never names a Rust type.
///
/// # Errors
/// As [`parse_json`]; a body that is JSON but not an object is [`BodyError::UnexpectedShape`].
pub fn parse_json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|byte| *byte != b'{') {
        parse_json::<serde::de::IgnoredAny>(body)?;
        return Err(BodyError::UnexpectedShape("the body must be a JSON object".into()));
    }
    parse_json(body)
}

/// Parses a whole body; the error says where the JSON went wrong, never anything internal.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    serde_json::from_slice(body).map_err(|error| {
        if error.is_data() {
            BodyError::UnexpectedShape(error.to_string())
        } else {
            BodyError::Malformed(error.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        name: String,
    }

    /// `expected` is the name, or the `code` the API answers the error with.
    fn check(body: &str, expected: Result<&str, &str>) {
        let actual = parse_json::<Probe>(body.as_bytes()).map(|p| p.name).map_err(|e| ApiError::from(e).code());
        assert_eq!(actual.as_ref().map(String::as_str).map_err(|code| *code), expected, "{body:?}");
    }

    #[test]
    fn parses_and_classifies() {
        check(r#"{"name":"a"}"#, Ok("a"));
        check("", Err("empty_body"));
        check("  \n", Err("empty_body"));
        check("{", Err("invalid_json"));
        check("not json", Err("invalid_json"));
        check(r#"{"name": 5}"#, Err("invalid_body"));
        check(r#"{"name":"a","extra":1}"#, Err("invalid_body"));
        check("[]", Err("invalid_body"));
    }

    #[test]
    fn an_api_body_is_an_object_never_an_array_of_its_fields() {
        assert_eq!(parse_json_object::<Probe>(br#" {"name":"a"}"#), Ok(Probe { name: "a".into() }));
        assert_eq!(parse_json::<Probe>(br#"["a"]"#), Ok(Probe { name: "a".into() }), "serde's own rule");
        for body in [r#"["a"]"#, "[]", "null", "5", r#""a""#, "true"] {
            let refused = parse_json_object::<Probe>(body.as_bytes()).unwrap_err();
            assert_eq!(refused, BodyError::UnexpectedShape("the body must be a JSON object".into()), "{body}");
            assert_eq!(refused.to_string(), "malformed JSON body: the body must be a JSON object");
        }
        for (body, code) in [("[1,", "invalid_json"), ("", "empty_body"), ("{", "invalid_json")] {
            let refused = parse_json_object::<Probe>(body.as_bytes()).unwrap_err();
            assert_eq!(ApiError::from(refused).code(), code, "{body:?}");
        }
    }

    #[test]
    fn oversized_bodies_are_413() {
        let status = |error: BodyError| ApiError::from(error).status();
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(status(parse_json::<Probe>(big.as_bytes()).unwrap_err()), 413);
        assert_eq!(status(check_declared_length(Some(&(MAX_BODY_BYTES + 1).to_string())).unwrap_err()), 413);
        assert_eq!(status(check_declared_length(Some("abc")).unwrap_err()), 400);
        assert!(check_declared_length(Some("10")).is_ok());
        assert!(check_declared_length(None).is_ok());
    }

    #[test]
    fn content_codings() {
        for identity in [None, Some(""), Some("identity"), Some(" Identity ,identity")] {
            assert_eq!(check_identity_encoding(identity), Ok(()), "{identity:?}");
        }
        for coded in ["gzip", "br", "identity, gzip", "x-anything"] {
            assert_eq!(check_identity_encoding(Some(coded)), Err(BodyError::Encoded), "{coded}");
        }
    }

    #[test]
    fn content_types() {
        assert!(check_json_content_type(Some("application/json; charset=utf-8"), &[]).is_ok());
        assert!(check_json_content_type(Some("application/reports+json"), &[]).is_ok());
        assert!(check_json_content_type(Some("application/csp-report"), &["application/csp-report"]).is_ok());
        assert_eq!(ApiError::from(check_json_content_type(Some("text/plain"), &[]).unwrap_err()).status(), 415);
        assert_eq!(ApiError::from(check_json_content_type(None, &[]).unwrap_err()).status(), 415);
        assert!(check_json_content_type(Some("Application/Merge-Patch+JSON"), &[]).is_ok());
        // A review's report: these were taken as JSON.
        for not_json in ["+json", "application/+json", "text/plain+json", "image/svg+json", "application/a b+json"] {
            assert_eq!(check_json_content_type(Some(not_json), &[]), Err(BodyError::NotJson), "{not_json}");
        }
    }
}
