//! The API's route table: which handler a method and path reach, and the 404/405 answers.
//!
//! It lives here rather than in workers-rs' `Router` so the decision is host-tested and so
//! "unknown path" and "wrong method" become JSON errors with an `Allow` header.

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(method: &str) -> Self {
        match method.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other => "OTHER",
        }
    }
}

/// Every endpoint the worker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    CspReport,
}

/// One path of the API and the methods it accepts.
struct Endpoint {
    path: &'static str,
    methods: &'static [(Method, Route)],
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint { path: "/api/health", methods: &[(Method::Get, Route::Health)] },
    Endpoint { path: "/api/csp-reports", methods: &[(Method::Post, Route::CspReport)] },
];

/// Resolves a request to a route. `HEAD` is served wherever `GET` is.
pub fn resolve(method: Method, path: &str) -> Result<Route, ApiError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let Some(endpoint) = ENDPOINTS.iter().find(|endpoint| endpoint.path == path) else {
        return Err(ApiError::new(404, "not_found", format!("no API route at {path}")));
    };
    let wanted = if method == Method::Head { Method::Get } else { method };
    if let Some((_, route)) = endpoint.methods.iter().find(|(m, _)| *m == wanted) {
        return Ok(route.clone());
    }
    let mut allowed: Vec<&str> = endpoint.methods.iter().map(|(m, _)| m.as_str()).collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    let allow = allowed.join(", ");
    Err(ApiError::new(405, "method_not_allowed", format!("{} is not allowed here; use {allow}", method.as_str()))
        .with_header("Allow", allow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, path: &str, expected: Result<Route, u16>) {
        let actual = resolve(Method::parse(method), path).map_err(|e| e.status);
        assert_eq!(actual, expected, "{method} {path}");
    }

    #[test]
    fn resolves_known_routes() {
        check("GET", "/api/health", Ok(Route::Health));
        check("get", "/api/health/", Ok(Route::Health));
        check("HEAD", "/api/health", Ok(Route::Health));
        check("POST", "/api/csp-reports", Ok(Route::CspReport));
    }

    #[test]
    fn unknown_paths_are_404() {
        check("GET", "/api/nope", Err(404));
        check("GET", "/api", Err(404));
        check("GET", "/api/health/extra", Err(404));
        check("GET", "/", Err(404));
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        check("DELETE", "/api/health", Err(405));
        check("BREW", "/api/health", Err(405));
        let error = resolve(Method::Put, "/api/health").unwrap_err();
        assert_eq!(error.headers, vec![("Allow", "GET, HEAD".to_string())]);
        let error = resolve(Method::Get, "/api/csp-reports").unwrap_err();
        assert_eq!(error.headers, vec![("Allow", "POST".to_string())]);
    }
}
