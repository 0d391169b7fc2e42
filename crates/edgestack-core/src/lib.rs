//! Pure logic of edgestack: everything the worker decides that can be tested on the host.
//!
//! This crate never depends on `worker` or wasm. The worker crate turns bindings into plain
//! values, calls into here, and turns the answers back into responses.

/// The one definition of an active session, a condition on `sessions`: `?1` = session token
/// hash, `?2` = now (ms), `?3` = oldest still-active `last_seen_at`. Every statement that acts
/// for a session binds these, so an expired, idle or revoked session matches no row in the very
/// query that uses it.
macro_rules! active_session {
    () => {
        "token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3"
    };
}

/// The id of the signed-in user, as a SQL subquery on the [`active_session!`].
macro_rules! session_user_id {
    () => {
        concat!("(SELECT user_id FROM sessions WHERE ", active_session!(), ")")
    };
}

/// A condition for a write that rests on a password the signed-in caller confirmed in an
/// earlier round trip (a password change, an account deletion): the caller's session (`?1`–`?3`,
/// [`active_session!`]) is still active and account `?4`'s. A password change ends every
/// session of the account and a deletion removes it, so either one committed in between makes
/// it false, and the write does nothing rather than act on a check that no longer holds. (Not
/// the hash itself: a sign-in elsewhere may rehash the same password meanwhile.)
macro_rules! confirmed_account {
    () => {
        concat!("EXISTS (SELECT 1 FROM users WHERE id = ?4 AND id = ", session_user_id!(), ")")
    };
}

/// The verified caller's id as a SQL subquery: `?1` user id, `?2` now, `?3` the identity's
/// expiry. An expired identity or a deleted account matches no row.
macro_rules! verified_user_id {
    () => {
        concat!("(SELECT ?1 WHERE ", verified_user_may_act!(), ")")
    };
}

/// The condition of [`verified_user_id!`]: unexpired, and not a deleted account.
macro_rules! verified_user_may_act {
    () => {
        "?3 > ?2 AND NOT EXISTS (SELECT 1 FROM deleted_owners WHERE user_id = ?1)"
    };
}

/// A statement's text for a [`caller::Caller`]: the literal parts before and after the owner's
/// id, joined around the session subquery or the verified id. Both texts are `&'static str`.
macro_rules! caller_sql {
    ($caller:expr; $($before:expr),+ ; $($after:expr),*) => {
        match $caller {
            $crate::caller::Caller::Session(_) => concat!($($before,)+ session_user_id!(), $($after),*),
            $crate::caller::Caller::Verified { .. } => concat!($($before,)+ verified_user_id!(), $($after),*),
        }
    };
}

pub mod accounts;
pub mod app;
pub mod assets;
pub mod cache;
pub mod caller;
pub mod conditional;
pub mod config;
pub mod cookies;
pub mod csp_report;
pub mod csrf;
pub mod datapath;
pub mod db;
pub mod error;
pub mod health;
pub mod ids;
pub mod json_body;
pub mod notes;
pub mod region;
pub mod request_url;
pub mod routes;
pub mod services;
pub mod text;
