//! Who a request acts for, in either shape of the app, and the statements that check it and
//! record its activity. The notes statements name the owner through `caller_sql!`: a
//! subquery on the session in the single-Worker shape, the identity `accounts` signed in the
//! services shape. Both forms bind `?1`–`?3` and are checked inside the statement that reads or
//! changes the note, never by trusting a client's id.

use crate::accounts::session::SessionAuth;
use crate::accounts::sql::{session_user, touch_session};
use crate::db::{FromRow, Row, Statement, Value, integer, text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `?1` session token hash, `?2` now, `?3` oldest still-active `last_seen_at`.
    Session(SessionAuth),
    /// `?1` the user id `accounts` signed, `?2` now, `?3` when that identity expires; the
    /// statement also refuses owners whose account was deleted (`deleted_owners`).
    Verified { user_id: String, now: i64, valid_until: i64 },
}

/// The row of [`Caller::check`]: there is one while the caller may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acting {
    /// When the session's activity was last recorded; `None` for a verified identity, whose
    /// session lives in `accounts` (refreshing the identity records its activity there).
    pub last_seen_at: Option<i64>,
}

impl FromRow for Acting {
    const COLUMNS: &'static [&'static str] = &["last_seen_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { last_seen_at: row.optional_integer("last_seen_at")? })
    }
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

    /// One row while the caller may act: a valid session (with its user), or an unexpired
    /// identity of an account that was not deleted. It goes first in a caller's pipeline, so a
    /// signed-out caller is told 401 rather than given an empty answer.
    pub fn check(&self) -> Statement<Acting> {
        match self {
            Self::Session(auth) => session_user(auth).read_as(),
            Self::Verified { .. } => Statement::new(
                concat!("SELECT ?1 AS user_id, NULL AS last_seen_at WHERE ", verified_user_may_act!()),
                self.args(),
            ),
        }
    }

    /// Records a session's activity: part of every signed-in write. An identity has nothing to
    /// record here.
    pub fn touch(&self) -> Option<Statement> {
        self.session().map(touch_session)
    }

    /// The touch to send after a read, when the activity recorded at `last_seen_at` is older
    /// than `interval_ms`, so reads do not turn into writes on every request.
    pub fn touch_if_stale(&self, last_seen_at: Option<i64>, interval_ms: i64) -> Option<Statement> {
        let auth = self.session()?;
        (auth.now - last_seen_at.unwrap_or(0) > interval_ms).then(|| touch_session(auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stale_session_is_touched_after_a_read() {
        let session = Caller::Session(SessionAuth { token_hash: "h".into(), now: 10_000, active_since: 1 });
        assert!(session.touch_if_stale(Some(9_000), 1_000).is_none(), "recorded 1 s ago, interval 1 s");
        assert!(session.touch_if_stale(Some(8_999), 1_000).is_some());
        let verified = Caller::Verified { user_id: "u".into(), now: 10_000, valid_until: 20_000 };
        assert!(verified.touch_if_stale(None, 1_000).is_none());
        assert!(verified.touch().is_none() && session.touch().is_some());
    }
}
