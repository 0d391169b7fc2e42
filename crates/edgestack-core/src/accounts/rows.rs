//! What the accounts statements return, each read by the columns it declares.

use serde::Serialize;

use crate::db::{FromRow, Row};

/// A user as the API shows them: `{"id", "email", "created_at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub created_at: i64,
}

impl FromRow for User {
    const COLUMNS: &'static [&'static str] = &["id", "email", "created_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self {
            id: row.text("id")?.to_string(),
            email: row.text("email")?.to_string(),
            created_at: row.integer("created_at")?,
        })
    }
}

/// The user of a valid session, and when that session's activity was last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user: User,
    pub last_seen_at: i64,
}

impl FromRow for SessionUser {
    const COLUMNS: &'static [&'static str] = &["id", "email", "created_at", "last_seen_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { user: User::from_row(row)?, last_seen_at: row.integer("last_seen_at")? })
    }
}

/// A user and their stored password hash, for a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl FromRow for UserCredentials {
    const COLUMNS: &'static [&'static str] = &["id", "email", "created_at", "password_hash"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { user: User::from_row(row)?, password_hash: row.text("password_hash")?.to_string() })
    }
}

/// One outbox row (services shape): a deleted user whose notes may still exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeletion {
    pub id: String,
    pub user_id: String,
}

impl FromRow for PendingDeletion {
    const COLUMNS: &'static [&'static str] = &["id", "user_id"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { id: row.text("id")?.to_string(), user_id: row.text("user_id")?.to_string() })
    }
}

/// A device the account signed in on before, still trusted (`throttle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    pub user_id: String,
}

impl FromRow for TrustedDevice {
    const COLUMNS: &'static [&'static str] = &["user_id"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { user_id: row.text("user_id")?.to_string() })
    }
}

/// Where an account's untrusted sign-ins stand: when the next one may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub next_allowed_at: i64,
}

impl FromRow for ThrottleState {
    const COLUMNS: &'static [&'static str] = &["next_allowed_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { next_allowed_at: row.integer("next_allowed_at")? })
    }
}
