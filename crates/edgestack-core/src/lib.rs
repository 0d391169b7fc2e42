//! Pure logic of edgestack: everything the worker decides that can be tested on the host.
//!
//! This crate never depends on `worker` or wasm. The worker crate turns bindings into plain
//! values, calls into here, and turns the answers back into responses.

/// The id of the signed-in user, as a SQL subquery. Every statement that acts for a user binds
/// `?1` = session token hash, `?2` = now (ms), `?3` = oldest still-active `last_seen_at`, so an
/// expired, idle or revoked session matches no row in the very query that uses it.
macro_rules! session_user_id {
    () => {
        "(SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3)"
    };
}

pub mod accounts;
pub mod app;
pub mod assets;
pub mod cache;
pub mod config;
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
pub mod routes;
pub mod services;
