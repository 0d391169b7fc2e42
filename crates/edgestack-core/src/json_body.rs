//! Request bodies: content type, size limit and JSON parsing, each failure a precise 4xx.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Bodies larger than this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Refuses a declared `Content-Length` over the limit, so the body is never read at all.
pub fn check_declared_length(content_length: Option<&str>) -> Result<(), ApiError> {
    match content_length.map(|value| value.trim().parse::<u64>()) {
        None => Ok(()),
        Some(Ok(length)) if length <= MAX_BODY_BYTES as u64 => Ok(()),
        Some(Ok(_)) => Err(too_large()),
        Some(Err(_)) => Err(ApiError::new(400, "invalid_content_length", "Content-Length is not a number")),
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(413, "body_too_large", format!("request body is over {MAX_BODY_BYTES} bytes"))
}

/// Accepts `application/json` and any `+json` type (e.g. `application/reports+json`).
pub fn check_json_content_type(content_type: Option<&str>, also_accept: &[&str]) -> Result<(), ApiError> {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json =
        essence == "application/json" || essence.ends_with("+json") || also_accept.contains(&essence.as_str());
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(415, "unsupported_media_type", "send the body as application/json"))
    }
}

/// Parses a whole body; the message says where the JSON went wrong, never anything internal.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(400, "empty_body", "the request body is empty; send a JSON object"));
    }
    serde_json::from_slice(body).map_err(|error| {
        let code = if error.is_data() { "invalid_body" } else { "invalid_json" };
        ApiError::new(400, code, format!("malformed JSON body: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        name: String,
    }

    fn check(body: &str, expected: Result<&str, &str>) {
        let actual = parse_json::<Probe>(body.as_bytes()).map(|p| p.name);
        assert_eq!(actual.as_ref().map(String::as_str).map_err(|e| e.code), expected, "{body:?}");
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
    fn oversized_bodies_are_413() {
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(parse_json::<Probe>(big.as_bytes()).unwrap_err().status, 413);
        assert_eq!(check_declared_length(Some("70000")).unwrap_err().status, 413);
        assert_eq!(check_declared_length(Some("abc")).unwrap_err().status, 400);
        assert!(check_declared_length(Some("10")).is_ok());
        assert!(check_declared_length(None).is_ok());
    }

    #[test]
    fn content_types() {
        assert!(check_json_content_type(Some("application/json; charset=utf-8"), &[]).is_ok());
        assert!(check_json_content_type(Some("application/reports+json"), &[]).is_ok());
        assert!(check_json_content_type(Some("application/csp-report"), &["application/csp-report"]).is_ok());
        assert_eq!(check_json_content_type(Some("text/plain"), &[]).unwrap_err().status, 415);
        assert_eq!(check_json_content_type(None, &[]).unwrap_err().status, 415);
    }
}
