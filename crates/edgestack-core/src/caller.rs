//! Who a notes request acts for, in either shape of the app. The notes statements name the
//! owner through [`caller_sql!`]: a subquery on the session in the single-Worker shape, the
//! identity `accounts` signed in the services shape. Both forms bind `?1`–`?3` and are checked
//! inside the statement that reads or changes the note, never by trusting a client's id.

use crate::accounts::session::SessionAuth;
use crate::db::{Value, integer, text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `?1` session token hash, `?2` now, `?3` oldest still-active `last_seen_at`.
    Session(SessionAuth),
    /// `?1` the user id `accounts` signed, `?2` now, `?3` when that identity expires; the
    /// statement also refuses owners whose account was deleted (`deleted_owners`).
    Verified { user_id: String, now: i64, valid_until: i64 },
}

impl Caller {
    pub fn args(&self) -> Vec<Value> {
        match self {
            Self::Session(auth) => auth.args(),
            Self::Verified { user_id, now, valid_until } => vec![text(user_id), integer(*now), integer(*valid_until)],
        }
    }

    pub fn now(&self) -> i64 {
        match self {
            Self::Session(auth) => auth.now,
            Self::Verified { now, .. } => *now,
        }
    }

    pub fn session(&self) -> Option<&SessionAuth> {
        match self {
            Self::Session(auth) => Some(auth),
            Self::Verified { .. } => None,
        }
    }
}
