//! The API's route table: which handler a method and path reach, and the 404/405 answers.
//!
//! It lives here rather than in workers-rs' `Router` so the decision is host-tested and so
//! "unknown path" and "wrong method" become JSON errors with an `Allow` header.

use std::fmt;

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

    pub fn as_str(self) -> &'static str {
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

/// Every endpoint the worker answers; ids are checked for shape before a handler sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    CspReport,
    SignUp,
    SignIn,
    SignOut,
    Me,
    ChangePassword,
    CreateNote,
    ListMyNotes,
    GetMyNote(String),
    UpdateNote(String),
    DeleteNote(String),
    PublishNote(String),
    UnpublishNote(String),
    ListPublicNotes,
    GetPublicNote(String),
    DeleteAccount,
    /// Internal (service bindings only): the signed identity for the request's session.
    IssueIdentity,
    /// Internal: a service's own health, for the entry's `/api/health`.
    InternalHealth,
    /// Internal: removes a deleted account's notes (idempotent).
    DeleteUserNotes(String),
}

impl Route {
    /// Internal routes are reachable only through service bindings: the entry never forwards
    /// them and the single-Worker shape does not serve them.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::IssueIdentity | Self::InternalHealth | Self::DeleteUserNotes(_))
    }

    /// Whether the handler reads a request body (all of them JSON objects, docs/api.md). The
    /// edge reads none for the other routes ([`crate::app::body_plan`]).
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Self::CspReport
                | Self::SignUp
                | Self::SignIn
                | Self::ChangePassword
                | Self::DeleteAccount
                | Self::CreateNote
                | Self::UpdateNote(_)
        )
    }

    /// Whether the handler reads or writes a database. Those that do not — health checks and
    /// violation reports — need no read-your-writes token, so the request's cookie is not read.
    pub fn uses_database(&self) -> bool {
        !matches!(self, Self::Health | Self::InternalHealth | Self::CspReport)
    }
}

/// Builds a route from the path's `{id}`, if the pattern has one.
type RouteFor = fn(Option<String>) -> Route;

/// A path pattern: literal segments and `{id}`, and the route each method reaches.
struct Endpoint {
    pattern: &'static str,
    methods: &'static [(Method, RouteFor)],
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint { pattern: "/api/health", methods: &[(Method::Get, |_| Route::Health)] },
    Endpoint { pattern: "/api/csp-reports", methods: &[(Method::Post, |_| Route::CspReport)] },
    Endpoint { pattern: "/api/accounts", methods: &[(Method::Post, |_| Route::SignUp)] },
    Endpoint { pattern: "/api/sessions", methods: &[(Method::Post, |_| Route::SignIn)] },
    Endpoint { pattern: "/api/sessions/current", methods: &[(Method::Delete, |_| Route::SignOut)] },
    Endpoint {
        pattern: "/api/me",
        methods: &[(Method::Get, |_| Route::Me), (Method::Delete, |_| Route::DeleteAccount)],
    },
    Endpoint { pattern: "/api/me/password", methods: &[(Method::Put, |_| Route::ChangePassword)] },
    Endpoint {
        pattern: "/api/notes",
        methods: &[(Method::Get, |_| Route::ListMyNotes), (Method::Post, |_| Route::CreateNote)],
    },
    Endpoint {
        pattern: "/api/notes/{id}",
        methods: &[
            (Method::Get, |id| Route::GetMyNote(id.unwrap_or_default())),
            (Method::Patch, |id| Route::UpdateNote(id.unwrap_or_default())),
            (Method::Delete, |id| Route::DeleteNote(id.unwrap_or_default())),
        ],
    },
    Endpoint {
        pattern: "/api/notes/{id}/publication",
        methods: &[
            (Method::Put, |id| Route::PublishNote(id.unwrap_or_default())),
            (Method::Delete, |id| Route::UnpublishNote(id.unwrap_or_default())),
        ],
    },
    Endpoint { pattern: "/api/public/notes", methods: &[(Method::Get, |_| Route::ListPublicNotes)] },
    Endpoint {
        pattern: "/api/public/notes/{id}",
        methods: &[(Method::Get, |id| Route::GetPublicNote(id.unwrap_or_default()))],
    },
    Endpoint { pattern: "/internal/identity", methods: &[(Method::Post, |_| Route::IssueIdentity)] },
    Endpoint { pattern: "/internal/health", methods: &[(Method::Get, |_| Route::InternalHealth)] },
    Endpoint {
        pattern: "/internal/users/{id}/notes",
        methods: &[(Method::Delete, |id| Route::DeleteUserNotes(id.unwrap_or_default()))],
    },
];

/// `Some(Some(id))` when `path` matches a pattern with `{id}`, `Some(None)` for a literal match.
fn match_pattern(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    let mut id = None;
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(segment)) => id = Some(crate::ids::parse_id(segment)?.to_string()),
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return None,
        }
    }
}

/// Why a request reaches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No pattern matches; `path` is the first 100 characters of the client's path.
    NoRoute { path: String },
    /// The path exists, not with this method; `allow` lists the methods that do.
    MethodNotAllowed { method: Method, allow: String },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute { path } => write!(f, "no API route at {path}"),
            // A method the API knows nothing of (TRACE, PROPFIND, …) is not named back.
            Self::MethodNotAllowed { method: Method::Other, allow } => {
                write!(f, "this method is not allowed here; use {allow}")
            }
            Self::MethodNotAllowed { method, allow } => {
                write!(f, "{} is not allowed here; use {allow}", method.as_str())
            }
        }
    }
}

/// Resolves a request to a route. `HEAD` is served wherever `GET` is. A malformed id is a 404:
/// no note can have it.
pub fn resolve(method: Method, path: &str) -> Result<Route, RouteError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let Some((endpoint, id)) =
        ENDPOINTS.iter().find_map(|endpoint| match_pattern(endpoint.pattern, path).map(|id| (endpoint, id)))
    else {
        // The path is the client's own text: echo only enough of it to recognise.
        return Err(RouteError::NoRoute { path: path.chars().take(100).collect() });
    };
    let wanted = if method == Method::Head { Method::Get } else { method };
    if let Some((_, route)) = endpoint.methods.iter().find(|(m, _)| *m == wanted) {
        return Ok(route(id));
    }
    let mut allowed: Vec<&str> = endpoint.methods.iter().map(|(m, _)| m.as_str()).collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    Err(RouteError::MethodNotAllowed { method, allow: allowed.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn check(method: &str, path: &str, expected: Result<Route, u16>) {
        let actual = resolve(Method::parse(method), path).map_err(|e| ApiError::from(e).status());
        assert_eq!(actual, expected, "{method} {path}");
    }

    #[test]
    fn resolves_known_routes() {
        check("GET", "/api/health", Ok(Route::Health));
        check("get", "/api/health/", Ok(Route::Health));
        check("HEAD", "/api/health", Ok(Route::Health));
        check("POST", "/api/csp-reports", Ok(Route::CspReport));
        let id = crate::ids::new_id([5; 16]);
        check("GET", &format!("/api/notes/{id}"), Ok(Route::GetMyNote(id.clone())));
        check("DELETE", &format!("/api/notes/{id}/publication"), Ok(Route::UnpublishNote(id.clone())));
        check("GET", &format!("/api/public/notes/{id}"), Ok(Route::GetPublicNote(id)));
        check("GET", "/api/notes", Ok(Route::ListMyNotes));
        check("POST", "/api/notes", Ok(Route::CreateNote));
        check("DELETE", "/api/sessions/current", Ok(Route::SignOut));
        check("DELETE", "/api/me", Ok(Route::DeleteAccount));
        let user = crate::ids::new_id([6; 16]);
        check("DELETE", &format!("/internal/users/{user}/notes"), Ok(Route::DeleteUserNotes(user)));
        check("POST", "/internal/identity", Ok(Route::IssueIdentity));
    }

    #[test]
    fn malformed_ids_are_404() {
        check("GET", "/api/notes/not-an-id", Err(404));
        check("GET", "/api/notes/%27%20OR%201%3D1", Err(404));
        check("GET", "/api/public/notes/", Ok(Route::ListPublicNotes));
    }

    #[test]
    fn unknown_paths_are_404() {
        check("GET", "/api/nope", Err(404));
        check("GET", "/api", Err(404));
        check("GET", "/api/health/extra", Err(404));
        check("GET", "/", Err(404));
        let long = format!("/api/{}", "a".repeat(5_000));
        let message = ApiError::from(resolve(Method::Get, &long).unwrap_err()).message().into_owned();
        assert!(message.len() < 150, "a hostile path is not echoed whole");
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        check("DELETE", "/api/health", Err(405));
        check("BREW", "/api/health", Err(405));
        let error = ApiError::from(resolve(Method::Put, "/api/health").unwrap_err());
        assert_eq!(error.headers(), vec![("Allow", "GET, HEAD".to_string())]);
        let error = ApiError::from(resolve(Method::Get, "/api/csp-reports").unwrap_err());
        assert_eq!(error.headers(), vec![("Allow", "POST".to_string())]);
    }

    /// A report read "OTHER is not allowed here" for TRACE: a method the API does not know is
    /// not named at all, a known one by its name.
    #[test]
    fn a_405_names_only_methods_it_knows() {
        let message = |method: &str| resolve(Method::parse(method), "/api/health").unwrap_err().to_string();
        for unknown in ["TRACE", "PROPFIND", "BREW"] {
            assert_eq!(message(unknown), "this method is not allowed here; use GET, HEAD", "{unknown}");
        }
        assert_eq!(message("delete"), "DELETE is not allowed here; use GET, HEAD");
    }
}
