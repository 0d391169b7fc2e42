//! The versioned internal API between services, defined once for both sides: every internal
//! request ([`InternalRequest`]) names the version it speaks in a header, and a service answers
//! every version in its supported range, so services can be deployed in any order (a contract
//! test, `tests/api/contract.rs`, runs each service against the others' previous release).
//!
//! The bodies are plain serde structs. Compatibility rules for them: a field is only ever added,
//! and optional (`#[serde(default)]`) so an older sender is still understood; a reader ignores
//! fields it does not know; a field is removed only after no deployed reader needs it.

use serde::{Deserialize, Serialize};

use crate::routes::Method;
use crate::services::identity::IDENTITY_TTL_MS;

pub const VERSION_HEADER: &str = "x-edgestack-internal-api";

/// The versions this build can serve; widen before a client starts sending a new one, narrow
/// only after no deployed client sends the old one.
pub const SUPPORTED: std::ops::RangeInclusive<u16> = 1..=1;
/// The version this build's clients send.
pub const CURRENT: u16 = 1;

/// Why an internal request's version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionError {
    Missing,
    NotANumber,
    Unsupported(u16),
}

impl std::fmt::Display for VersionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "missing {VERSION_HEADER}"),
            Self::NotANumber => write!(f, "{VERSION_HEADER} is not a number"),
            Self::Unsupported(version) => {
                write!(f, "internal API version {version} is not in {}..={}", SUPPORTED.start(), SUPPORTED.end())
            }
        }
    }
}

/// `Ok(version)` when the header names a version this build serves.
pub fn negotiate(header: Option<&str>) -> Result<u16, VersionError> {
    let version: u16 = header.ok_or(VersionError::Missing)?.trim().parse().map_err(|_| VersionError::NotANumber)?;
    if SUPPORTED.contains(&version) { Ok(version) } else { Err(VersionError::Unsupported(version)) }
}

/// Every internal call, as the calling service builds it; the route table (`routes.rs`) serves
/// each at the same method and path (checked by a test there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalRequest<'a> {
    /// Entry → accounts, with the browser's cookies: answered with [`IssuedIdentity`], or
    /// `401 unauthenticated` when the session is not valid.
    IssueIdentity,
    /// Entry → each service: answered with the service's `health::HealthReport`.
    Health,
    /// Accounts' deletion outbox → notes: answered with [`NotesDeleted`]; any 2xx acknowledges.
    DeleteUserNotes { user_id: &'a str },
}

impl InternalRequest<'_> {
    pub fn method(&self) -> Method {
        match self {
            Self::IssueIdentity => Method::Post,
            Self::Health => Method::Get,
            Self::DeleteUserNotes { .. } => Method::Delete,
        }
    }

    pub fn path(&self) -> String {
        match self {
            Self::IssueIdentity => "/internal/identity".to_string(),
            Self::Health => "/internal/health".to_string(),
            Self::DeleteUserNotes { user_id } => format!("/internal/users/{user_id}/notes"),
        }
    }
}

/// The answer to [`InternalRequest::IssueIdentity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedIdentity {
    /// The signed token the entry forwards in `x-edgestack-identity` and keeps in the cookie.
    pub identity: String,
    /// How long it is valid; an answer without it means the longest lifetime.
    #[serde(default = "longest_identity_lifetime_ms")]
    pub lifetime_ms: i64,
}

fn longest_identity_lifetime_ms() -> i64 {
    IDENTITY_TTL_MS
}

/// The answer to [`InternalRequest::DeleteUserNotes`]: how many notes went (0 on a redelivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotesDeleted {
    pub deleted_notes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON each side of the previous release sends and expects.
    #[test]
    fn bodies_keep_their_wire_shape() {
        let issued = IssuedIdentity { identity: "payload.signature".into(), lifetime_ms: 10_000 };
        let wire = json!({"identity": "payload.signature", "lifetime_ms": 10_000});
        assert_eq!(serde_json::to_value(&issued).unwrap(), wire);
        assert_eq!(serde_json::from_value::<IssuedIdentity>(wire).unwrap(), issued);
        let without_lifetime: IssuedIdentity = serde_json::from_value(json!({"identity": "t", "new": 1})).unwrap();
        assert_eq!(without_lifetime.lifetime_ms, IDENTITY_TTL_MS);
        assert!(serde_json::from_value::<IssuedIdentity>(json!({"lifetime_ms": 1})).is_err());
        assert_eq!(serde_json::to_value(NotesDeleted { deleted_notes: 2 }).unwrap(), json!({"deleted_notes": 2}));
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("1")), Ok(1));
        assert!(SUPPORTED.contains(&CURRENT), "a build must serve what it sends");
        for bad in [None, Some(""), Some("v1"), Some("2"), Some("0")] {
            assert!(negotiate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_internal_request_reaches_its_internal_route() {
        use crate::routes::{Route, resolve};
        let user = crate::ids::new_id([4; 16]);
        for (request, route) in [
            (InternalRequest::IssueIdentity, Route::IssueIdentity),
            (InternalRequest::Health, Route::InternalHealth),
            (InternalRequest::DeleteUserNotes { user_id: &user }, Route::DeleteUserNotes(user.clone())),
        ] {
            assert_eq!(resolve(request.method(), &request.path()), Ok(route.clone()), "{request:?}");
            assert!(route.is_internal());
        }
    }
}
