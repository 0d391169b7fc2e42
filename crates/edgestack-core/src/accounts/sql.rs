//! The statements behind sign-up, sign-in, sessions, password changes, sign-in throttling and
//! the deletion outbox, each typed by the reader of its rows. Session conditions come from
//! `active_session!` and `session_user_id!` alone; device trust from `trusted_device!` alone.

use crate::accounts::session::SessionAuth;
use crate::accounts::throttle::{
    DEVICE_LIFETIME_MS, DEVICE_MAX_FAILURES, FIRST_DELAY_MS, FORGET_AFTER_MS, FREE_ATTEMPTS, MAX_DELAY_MS,
};
use crate::accounts::{PendingDeletion, SessionUser, ThrottleState, TrustedDevice, User, UserCredentials};
use crate::db::{Statement, Value, integer, optional_text, text};

/// The id of the account signing in: `$folded` its address folded (`email::fold`), `$legacy`
/// the address as typed, only trimmed and lower-cased. A release before NFC and A-labels stored
/// the address that way, so an account whose stored address is not in folded form is found by
/// it, else it could never sign in again; when both exist (sign-up finds only the folded form,
/// so a look-alike can be made beside an older account), the one typed exactly wins.
macro_rules! account_id {
    ($folded:literal, $legacy:literal) => {
        concat!(
            "(SELECT id FROM users WHERE email IN (",
            $folded,
            ", ",
            $legacy,
            ") ORDER BY email = ",
            $legacy,
            " DESC LIMIT 1)"
        )
    };
}

/// A trusted device of the account: `?1` the device token's hash, `?2` and `?5` the account's
/// email (`account_id!`), `?3` the failures that end trust, `?4` the oldest last use still
/// trusted. Written once, so the statements of one sign-in agree on what "trusted" means.
macro_rules! trusted_device {
    () => {
        concat!("token_hash = ?1 AND failures < ?3 AND last_used_at > ?4 AND user_id = ", account_id!("?2", "?5"))
    };
}

/// Who is signing in, as the sign-in statements see it: the device token's hash (if the
/// request carried a device cookie) and the email as typed, folded (`email::fold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInAttempt {
    pub device_hash: Option<String>,
    pub email: String,
    /// The email as typed, trimmed and lower-cased but not folded: how a release before NFC and
    /// A-labels stored it (`account_id!`).
    pub email_as_typed: String,
    pub account_key: String,
    pub now: i64,
}

impl SignInAttempt {
    /// `?1`–`?5` of `trusted_device!`.
    fn device_args(&self) -> Vec<Value> {
        vec![
            optional_text(self.device_hash.as_ref()),
            text(&self.email),
            integer(DEVICE_MAX_FAILURES),
            integer(self.now - DEVICE_LIFETIME_MS),
            text(&self.email_as_typed),
        ]
    }
}

/// A row when the attempt comes from a device this account trusts.
pub fn trusted_device(attempt: &SignInAttempt) -> Statement<TrustedDevice> {
    Statement::new(concat!("SELECT user_id FROM trusted_devices WHERE ", trusted_device!()), attempt.device_args())
}

/// Counts an untrusted attempt on the account if its delay has passed, and returns a row only
/// then: the check and the count are one statement, so parallel attempts cannot both pass.
/// A trusted attempt is not counted here (and returns no row). The delay after the n-th
/// attempt is `FIRST_DELAY_MS << (n − FREE_ATTEMPTS)` (none before), capped; a count older
/// than `FORGET_AFTER_MS` starts over. See `throttle`.
pub fn admit_untrusted_attempt(attempt: &SignInAttempt) -> Statement<ThrottleState> {
    let mut args = attempt.device_args();
    args.extend([
        text(&attempt.account_key),
        integer(attempt.now),
        integer(attempt.now - FORGET_AFTER_MS),
        integer(FREE_ATTEMPTS),
        integer(FIRST_DELAY_MS),
        integer(MAX_DELAY_MS),
    ]);
    Statement::new(
        concat!(
            "INSERT INTO sign_in_throttle (account_key, attempts, last_attempt_at, next_allowed_at) ",
            "SELECT ?6, 1, ?7, ?7 WHERE NOT EXISTS (SELECT 1 FROM trusted_devices WHERE ",
            trusted_device!(),
            ") ON CONFLICT (account_key) DO UPDATE SET ",
            "attempts = CASE WHEN last_attempt_at < ?8 THEN 1 ELSE attempts + 1 END, ",
            "last_attempt_at = ?7, ",
            "next_allowed_at = ?7 + CASE WHEN last_attempt_at < ?8 OR attempts + 1 < ?9 THEN 0 ",
            "ELSE min(?10 << min(attempts + 1 - ?9, 30), ?11) END ",
            "WHERE next_allowed_at <= ?7 OR last_attempt_at < ?8 ",
            "RETURNING next_allowed_at"
        ),
        args,
    )
}

/// Counts a trusted attempt as a failure of its device until it succeeds (the success resets
/// it), so the check and the count need no second round trip.
pub fn count_trusted_attempt(attempt: &SignInAttempt) -> Statement {
    Statement::new(
        concat!("UPDATE trusted_devices SET failures = failures + 1 WHERE ", trusted_device!()),
        attempt.device_args(),
    )
}

/// When the account's next untrusted attempt may be checked, if it has been throttled at all.
pub fn throttle_state(account_key: &str) -> Statement<ThrottleState> {
    Statement::new("SELECT next_allowed_at FROM sign_in_throttle WHERE account_key = ?1", vec![text(account_key)])
}

/// Counts nobody touched for a day: the table holds only recent attempts, whatever emails
/// were typed.
pub fn forget_stale_attempts(now: i64) -> Statement {
    Statement::new("DELETE FROM sign_in_throttle WHERE last_attempt_at < ?1", vec![integer(now - FORGET_AFTER_MS)])
}

/// An untrusted success: the account's count starts over.
pub fn reset_attempts(account_key: &str) -> Statement {
    Statement::new("DELETE FROM sign_in_throttle WHERE account_key = ?1", vec![text(account_key)])
}

/// A trusted device signed in: its failures are forgotten and its trust renewed.
pub fn device_signed_in(device_hash: &str, now: i64) -> Statement {
    Statement::new(
        "UPDATE trusted_devices SET failures = 0, last_used_at = ?2 WHERE token_hash = ?1",
        vec![text(device_hash), integer(now)],
    )
}

/// A browser that just signed in (or up) becomes a trusted device of the account.
pub fn insert_trusted_device(device_hash: &str, user_id: &str, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO trusted_devices (token_hash, user_id, created_at, last_used_at, failures) VALUES (?1, ?2, ?3, ?3, 0)",
        vec![text(device_hash), text(user_id), integer(now)],
    )
}

/// Keeps the account's `DEVICES_PER_ACCOUNT` most recently used devices.
pub fn forget_old_devices(user_id: &str, keep: i64) -> Statement {
    Statement::new(
        concat!(
            "DELETE FROM trusted_devices WHERE user_id = ?1 AND token_hash NOT IN ",
            "(SELECT token_hash FROM trusted_devices WHERE user_id = ?1 ORDER BY last_used_at DESC LIMIT ?2)"
        ),
        vec![text(user_id), integer(keep)],
    )
}

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

/// A session for the account whose password this sign-in verified (`verified_hash`). The row's
/// `user_id` is the account's id only while the account still has that hash, else NULL, which
/// the column refuses (NOT NULL): the whole write is rolled back
/// ([`StatementError::is_not_null_violation`](crate::db::StatementError::is_not_null_violation)).
/// So a password change or an account deletion that committed after the check leaves no
/// session made with the old password, and no trusted device either.
pub fn insert_verified_session(
    token_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
    verified_hash: &str,
) -> Statement {
    Statement::new(
        concat!(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) VALUES ",
            "(?1, (SELECT id FROM users WHERE id = ?2 AND password_hash = ?5), ?3, ?3, ?4)"
        ),
        vec![text(token_hash), text(user_id), integer(now), integer(expires_at), text(verified_hash)],
    )
}

/// An account whose password the signed-in caller `auth` confirmed in an earlier round trip:
/// the arguments of [`confirmed_account!`].
pub struct ConfirmedAccount<'a> {
    pub auth: &'a SessionAuth,
    pub user_id: &'a str,
}

impl ConfirmedAccount<'_> {
    /// `?1`–`?4`, then `more` from `?5` on.
    pub fn args(&self, more: impl IntoIterator<Item = Value>) -> Vec<Value> {
        let mut args = self.auth.args();
        args.push(text(self.user_id));
        args.extend(more);
        args
    }
}

/// The caller's new session after a password change, made like
/// [`insert_verified_session`]: `user_id` is NULL — refused, the write rolled back — unless
/// the account is still [`confirmed_account!`]. Goes first in the change's write.
pub fn insert_confirmed_session(
    confirmed: &ConfirmedAccount<'_>,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Statement {
    Statement::new(
        concat!(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) ",
            "VALUES (?5, (SELECT ?4 WHERE ",
            confirmed_account!(),
            "), ?6, ?6, ?7)"
        ),
        confirmed.args([text(token_hash), integer(now), integer(expires_at)]),
    )
}

/// Sign-in reads the stored hash to verify the password before anything is written.
pub fn user_credentials(attempt: &SignInAttempt) -> Statement<UserCredentials> {
    Statement::new(
        concat!("SELECT id, email, password_hash, created_at FROM users WHERE id = ", account_id!("?1", "?2")),
        vec![text(&attempt.email), text(&attempt.email_as_typed)],
    )
}

/// Stores account `user_id`'s address in its folded form (`email::fold`) in place of the form
/// `stored` an earlier release kept, unless another account holds the folded form (two
/// accounts an earlier release gave one mailbox keep their addresses: `OR IGNORE` skips the
/// row the `UNIQUE` constraint would refuse). Answers the account as now stored, or no row.
pub fn store_folded_email(user_id: &str, stored: &str, folded: &str, now: i64) -> Statement<User> {
    Statement::new(
        "UPDATE OR IGNORE users SET email = ?3, updated_at = ?4 WHERE id = ?1 AND email = ?2 \
         RETURNING id, email, created_at",
        vec![text(user_id), text(stored), text(folded), integer(now)],
    )
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

/// Every session of the account but `kept` (the one a password change just made).
pub fn delete_other_sessions(user_id: &str, kept: &str) -> Statement {
    Statement::new("DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2", vec![text(user_id), text(kept)])
}

/// The signed-in user's stored credentials, for a password change or an account deletion.
pub fn session_credentials(auth: &SessionAuth) -> Statement<UserCredentials> {
    Statement::new(
        concat!("SELECT id, email, password_hash, created_at FROM users WHERE id = ", session_user_id!()),
        auth.args(),
    )
}

/// Deletes the account if it is still [`confirmed_account!`]; returns a row if it did.
pub fn delete_confirmed_user(confirmed: &ConfirmedAccount<'_>) -> Statement {
    Statement::new(
        concat!("DELETE FROM users WHERE id = ?4 AND ", confirmed_account!(), " RETURNING id"),
        confirmed.args([]),
    )
}

/// The sessions of an account deleted earlier in the same write (none if it was not: a
/// database without foreign-key enforcement does not cascade).
pub fn delete_sessions_of_deleted_user(user_id: &str) -> Statement {
    Statement::new(
        "DELETE FROM sessions WHERE user_id = ?1 AND NOT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
        vec![text(user_id)],
    )
}

/// The services shape: written in the same transaction as the user's deletion, before it and
/// on the same [`confirmed_account!`] condition, so the notes service hears of every deletion
/// even if the first delivery fails (docs/services.md), and of no deletion that did not happen.
pub fn enqueue_confirmed_user_deletion(id: &str, confirmed: &ConfirmedAccount<'_>, now: i64) -> Statement {
    Statement::new(
        concat!(
            "INSERT INTO deletion_outbox (id, user_id, created_at, attempts) SELECT ?5, ?4, ?6, 0 WHERE ",
            confirmed_account!()
        ),
        confirmed.args([text(id), integer(now)]),
    )
}

/// Up to `limit` rows, the least recently tried first (a row's first try is its deletion's own
/// delivery): oldest-first alone would let `limit` rows that keep failing hold every later
/// deletion back for ever; this way each row gets its turn.
pub fn pending_user_deletions(limit: i64) -> Statement<PendingDeletion> {
    Statement::new(
        "SELECT id, user_id FROM deletion_outbox ORDER BY coalesce(last_attempt_at, created_at), created_at LIMIT ?1",
        vec![integer(limit)],
    )
}

pub fn user_deletion_delivered(id: &str) -> Statement {
    Statement::new("DELETE FROM deletion_outbox WHERE id = ?1", vec![text(id)])
}

/// Once `notes` acknowledged a deletion: its delivery again at `due_at`, since a failover of
/// the notes database to a replica that had not applied it loses it (docs/services.md).
pub fn schedule_deletion_recheck(deletion: &PendingDeletion, due_at: i64) -> Statement {
    Statement::new(
        "INSERT INTO deletion_rechecks (id, user_id, due_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
        vec![text(&deletion.id), text(&deletion.user_id), integer(due_at)],
    )
}

/// Up to `limit` acknowledged deletions due for their delivery again at `now`, the longest
/// due first.
pub fn due_deletion_rechecks(now: i64, limit: i64) -> Statement<PendingDeletion> {
    Statement::new(
        "SELECT id, user_id FROM deletion_rechecks WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
        vec![integer(now), integer(limit)],
    )
}

pub fn deletion_rechecked(id: &str) -> Statement {
    Statement::new("DELETE FROM deletion_rechecks WHERE id = ?1", vec![text(id)])
}

/// A recheck `notes` did not take: tried again on a later run, behind the rows due before `now`.
pub fn deletion_recheck_failed(id: &str, now: i64) -> Statement {
    Statement::new("UPDATE deletion_rechecks SET due_at = ?2 WHERE id = ?1", vec![text(id), integer(now)])
}

pub fn user_deletion_failed(id: &str, now: i64, error: &str) -> Statement {
    Statement::new(
        "UPDATE deletion_outbox SET attempts = attempts + 1, last_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
        vec![text(id), integer(now), text(error)],
    )
}
