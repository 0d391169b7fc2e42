//! The statements behind sign-up, sign-in, sessions, password changes and the deletion outbox,
//! each typed by the reader of its rows. Session conditions come from `active_session!` and
//! `session_user_id!` alone.

use crate::accounts::session::SessionAuth;
use crate::accounts::{PendingDeletion, SessionUser, UserCredentials};
use crate::db::{Statement, integer, text};

pub fn insert_user(id: &str, email: &str, password_hash: &str, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        vec![text(id), text(email), text(password_hash), integer(now)],
    )
}

pub fn insert_session(token_hash: &str, user_id: &str, now: i64, expires_at: i64) -> Statement {
    Statement::new(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) VALUES (?1, ?2, ?3, ?3, ?4)",
        vec![text(token_hash), text(user_id), integer(now), integer(expires_at)],
    )
}

/// Sign-in reads the stored hash to verify the password before anything is written.
pub fn user_credentials(email: &str) -> Statement<UserCredentials> {
    Statement::new("SELECT id, email, password_hash, created_at FROM users WHERE email = ?1", vec![text(email)])
}

pub fn update_password_hash(user_id: &str, password_hash: &str, now: i64) -> Statement {
    Statement::new(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        vec![text(user_id), text(password_hash), integer(now)],
    )
}

/// The signed-in user, if the session is valid: the first statement of every signed-in read
/// (and, through `Caller::check`, of every notes request in one Worker).
pub fn session_user(auth: &SessionAuth) -> Statement<SessionUser> {
    Statement::new(
        concat!(
            "SELECT u.id, u.email, u.created_at, s.last_seen_at FROM users u JOIN ",
            "(SELECT user_id, last_seen_at FROM sessions WHERE ",
            active_session!(),
            ") s ON u.id = s.user_id"
        ),
        auth.args(),
    )
}

/// Records activity; part of every signed-in write, and sent alone now and then for reads.
pub fn touch_session(auth: &SessionAuth) -> Statement {
    Statement::new(concat!("UPDATE sessions SET last_seen_at = ?2 WHERE ", active_session!()), auth.args())
}

/// Returns a row when there was such a session to end.
pub fn delete_session(token_hash: &str) -> Statement {
    Statement::new("DELETE FROM sessions WHERE token_hash = ?1 RETURNING user_id", vec![text(token_hash)])
}

pub fn delete_user_sessions(user_id: &str) -> Statement {
    Statement::new("DELETE FROM sessions WHERE user_id = ?1", vec![text(user_id)])
}

/// The signed-in user's stored credentials, for a password change or an account deletion.
pub fn session_credentials(auth: &SessionAuth) -> Statement<UserCredentials> {
    Statement::new(
        concat!("SELECT id, email, password_hash, created_at FROM users WHERE id = ", session_user_id!()),
        auth.args(),
    )
}

pub fn delete_user(user_id: &str) -> Statement {
    Statement::new("DELETE FROM users WHERE id = ?1", vec![text(user_id)])
}

/// The services shape: written in the same transaction as the user's deletion, so the notes
/// service hears of every deletion even if the first delivery fails (docs/services.md).
pub fn enqueue_user_deletion(id: &str, user_id: &str, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO deletion_outbox (id, user_id, created_at, attempts) VALUES (?1, ?2, ?3, 0)",
        vec![text(id), text(user_id), integer(now)],
    )
}

pub fn pending_user_deletions(limit: i64) -> Statement<PendingDeletion> {
    Statement::new("SELECT id, user_id FROM deletion_outbox ORDER BY created_at LIMIT ?1", vec![integer(limit)])
}

pub fn user_deletion_delivered(id: &str) -> Statement {
    Statement::new("DELETE FROM deletion_outbox WHERE id = ?1", vec![text(id)])
}

pub fn user_deletion_failed(id: &str, now: i64, error: &str) -> Statement {
    Statement::new(
        "UPDATE deletion_outbox SET attempts = attempts + 1, last_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        vec![text(id), integer(now), text(error)],
    )
}
