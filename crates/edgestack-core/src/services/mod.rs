//! Level 5: the app as services. One codebase builds every Worker; `EDGESTACK_SERVICE` says
//! which part of the API a deployment serves. `accounts` and `notes` each own a database and
//! agree only on who the caller is ([`identity`]) and which internal API version they speak
//! ([`internal_api`]). See docs/services.md.

pub mod identity;
pub mod internal_api;

use crate::routes::Route;

/// What one deployment of the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Levels 1–4: the whole API and one database.
    Monolith,
    /// Level 5 front door: static assets and `/api` routing over service bindings; no database.
    Entry,
    /// Users, sessions, sign-in, rate limits; signs identities.
    Accounts,
    /// Notes, the public feed and its cache; trusts only identities `accounts` signed.
    Notes,
}

impl Service {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "monolith" => Some(Self::Monolith),
            "entry" => Some(Self::Entry),
            "accounts" => Some(Self::Accounts),
            "notes" => Some(Self::Notes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monolith => "monolith",
            Self::Entry => "entry",
            Self::Accounts => "accounts",
            Self::Notes => "notes",
        }
    }

    /// The service binding other Workers reach this service by; only services have one.
    pub fn binding(self) -> Option<&'static str> {
        match self {
            Self::Accounts => Some("ACCOUNTS"),
            Self::Notes => Some("NOTES"),
            Self::Monolith | Self::Entry => None,
        }
    }

    /// The read-your-writes cookie of this service's database: each database has its own
    /// replication index, so one cookie per database.
    pub fn consistency_cookie(self) -> &'static str {
        match self {
            Self::Monolith | Self::Entry => "__Host-edgestack_consistency",
            Self::Accounts => "__Host-edgestack_consistency_accounts",
            Self::Notes => "__Host-edgestack_consistency_notes",
        }
    }

    /// Which deployment answers `route`. The entry answers what needs no database itself.
    pub fn owner_of(route: &Route) -> Self {
        match route {
            Route::Health | Route::CspReport => Self::Entry,
            Route::SignUp
            | Route::SignIn
            | Route::SignOut
            | Route::Me
            | Route::ChangePassword
            | Route::DeleteAccount
            | Route::IssueIdentity
            | Route::InternalHealth => Self::Accounts,
            Route::CreateNote
            | Route::ListMyNotes
            | Route::GetMyNote(_)
            | Route::UpdateNote(_)
            | Route::DeleteNote(_)
            | Route::PublishNote(_)
            | Route::UnpublishNote(_)
            | Route::ListPublicNotes
            | Route::GetPublicNote(_)
            | Route::DeleteUserNotes(_) => Self::Notes,
        }
    }

    /// Whether this deployment answers `route` when it reaches it.
    pub fn serves(self, route: &Route) -> bool {
        match self {
            Self::Monolith | Self::Entry => !route.is_internal(),
            Self::Accounts | Self::Notes => *route == Route::InternalHealth || Self::owner_of(route) == self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_route_has_one_owner_and_internal_routes_stay_internal() {
        let id = crate::ids::new_id([3; 16]);
        assert_eq!(Service::owner_of(&Route::Me), Service::Accounts);
        assert_eq!(Service::owner_of(&Route::GetPublicNote(id.clone())), Service::Notes);
        assert_eq!(Service::owner_of(&Route::Health), Service::Entry);
        assert!(Service::Notes.serves(&Route::DeleteUserNotes(id.clone())));
        assert!(!Service::Accounts.serves(&Route::DeleteUserNotes(id.clone())));
        assert!(!Service::Notes.serves(&Route::SignIn));
        assert!(!Service::Monolith.serves(&Route::IssueIdentity));
        assert!(!Service::Entry.serves(&Route::DeleteUserNotes(id)));
        assert!(Service::Accounts.serves(&Route::InternalHealth) && Service::Notes.serves(&Route::InternalHealth));
        for service in ["monolith", "entry", "accounts", "notes"] {
            assert_eq!(Service::parse(service).map(Service::as_str), Some(service));
        }
        assert_eq!(Service::parse("gateway"), None);
    }
}
