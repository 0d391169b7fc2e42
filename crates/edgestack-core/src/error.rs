//! The one HTTP error type every API failure becomes: `{"error": {"code", "message"}}`.

use serde::Serialize;

/// An error as the client sees it. Internal details never go in `message`; they are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers the status needs (`Allow` for 405, `Retry-After` for 429/503).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn not_found() -> Self {
        Self::new(404, "not_found", "no such resource")
    }

    pub fn internal() -> Self {
        Self::new(500, "internal", "internal error")
    }

    pub fn body_json(&self) -> String {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: &self.message } };
        // Serializing two string fields cannot fail; the fallback keeps this path panic-free.
        serde_json::to_string(&body)
            .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"internal error"}}"#.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_and_message_only() {
        let error = ApiError::new(400, "invalid_json", "expected value at line 1")
            .with_header("X-Debug", "kept out of the body");
        let body: serde_json::Value = serde_json::from_str(&error.body_json()).unwrap();
        assert_eq!(body, serde_json::json!({"error": {"code": "invalid_json", "message": "expected value at line 1"}}));
    }

    #[test]
    fn message_is_escaped() {
        let error = ApiError::new(400, "bad", "quote \" and newline \n");
        let body: serde_json::Value = serde_json::from_str(&error.body_json()).unwrap();
        assert_eq!(body["error"]["message"], "quote \" and newline \n");
    }
}
