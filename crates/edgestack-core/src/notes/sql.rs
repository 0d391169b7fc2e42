//! The statements behind each notes operation. Every statement that acts for a user names the
//! owner through the caller (`caller_sql!`: the session subquery, or the identity `accounts`
//! signed), so ownership is checked in the same query that reads or changes the note — never
//! by trusting an id from the client. Caller values bind `?1`–`?3`; the statement's own from `?4`.
//! Each statement is typed by the reader of its rows.

use crate::accounts::sql::ConfirmedAccount;
use crate::caller::Caller;
use crate::db::{Statement, integer, optional_text, text};
use crate::notes::quota::{MAX_BYTES, MAX_NOTES};
use crate::notes::{
    Cursor, DeletedNote, DeletionTombstone, NewNote, Note, NoteChanges, NoteVersion, PublicNote, VersionCondition,
};

/// The columns [`Note`] reads, as SQL.
macro_rules! note_columns {
    () => {
        "id, title, body, published_at, created_at, updated_at"
    };
}

fn caller_args(caller: &Caller, own: impl IntoIterator<Item = crate::db::Value>) -> Vec<crate::db::Value> {
    let mut args = caller.args();
    args.extend(own);
    args
}

/// A change's preconditions as a condition on the row, checked in the statement that writes so
/// no change can slip in between: `$admitted` and `$excluded` bind `notes::VersionCondition`.
macro_rules! version_condition {
    ($admitted:literal, $excluded:literal) => {
        concat!(
            " AND (",
            $admitted,
            " IS NULL OR updated_at IN (SELECT value FROM json_each(",
            $admitted,
            ")))",
            " AND (",
            $excluded,
            " IS NULL OR updated_at NOT IN (SELECT value FROM json_each(",
            $excluded,
            ")))"
        )
    };
}

fn version_args(condition: &VersionCondition) -> [crate::db::Value; 2] {
    [optional_text(condition.admitted.as_ref()), optional_text(condition.excluded.as_ref())]
}

/// The bytes a note's title and body take (UTF-8), as `note_usage`'s triggers count them.
macro_rules! note_bytes {
    ($title:expr, $body:expr) => {
        concat!("length(CAST(", $title, " AS BLOB)) + length(CAST(", $body, " AS BLOB))")
    };
}

/// Creates the note unless the owner already holds `notes::quota`'s limit of notes or bytes
/// (ASVS 5.0 2.4.1); no row then, although the caller may act.
pub fn create(caller: &Caller, id: &str, note: &NewNote) -> Statement<Note> {
    let published_at = if note.published { integer(caller.now()) } else { crate::db::null() };
    let sql = caller_sql!(caller;
        "INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) ",
        "SELECT ?4, owner.id, ?5, ?6, ?7, ?2, ?2 FROM (SELECT ";
        " AS id) AS owner WHERE owner.id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM note_usage u ",
        "WHERE u.owner_id = owner.id AND (u.notes >= ?8 OR u.bytes + ", note_bytes!("?5", "?6"), " > ?9)) ",
        "RETURNING ", note_columns!());
    let own = [text(id), text(&note.title), text(&note.body), published_at, integer(MAX_NOTES), integer(MAX_BYTES)];
    Statement::new(sql, caller_args(caller, own))
}

pub fn list_mine(caller: &Caller, after: &Cursor, fetch_limit: i64) -> Statement<Note> {
    let sql = caller_sql!(caller;
        "SELECT ", note_columns!(), " FROM notes WHERE owner_id = ";
        " AND (created_at, id) < (?4, ?5) ORDER BY created_at DESC, id DESC LIMIT ?6");
    Statement::new(sql, caller_args(caller, [integer(after.timestamp), text(&after.id), integer(fetch_limit)]))
}

pub fn get_mine(caller: &Caller, id: &str) -> Statement<Note> {
    let sql = caller_sql!(caller; "SELECT ", note_columns!(), " FROM notes WHERE id = ?4 AND owner_id = "; "");
    Statement::new(sql, caller_args(caller, [text(id)]))
}

/// The version of note `id` when the caller owns it (no row otherwise): tells a change that
/// its preconditions or the quota refused from a missing note.
pub fn owns(caller: &Caller, id: &str) -> Statement<NoteVersion> {
    let sql = caller_sql!(caller; "SELECT updated_at FROM notes WHERE id = ?4 AND owner_id = "; "");
    Statement::new(sql, caller_args(caller, [text(id)]))
}

/// Changes the note unless that grows the owner's text past `notes::quota::MAX_BYTES`
/// (ASVS 5.0 2.4.1; a change that does not grow it always passes) or `condition` refuses the
/// note's version. Every change moves `updated_at` forward, by at least 1 ms:
/// changes reach the primary in another order than their requests' clocks, so the clock alone
/// could send it back (a client that syncs by `updated_at` must never see that) or leave it
/// where it was (two versions with one entity tag, `notes::etag`). A change to the values the
/// note already has is no change: its version stays (as [`set_published`]'s), so a save of
/// unchanged text in one tab does not make another tab's `If-Match` fail.
pub fn update_mine(caller: &Caller, id: &str, changes: &NoteChanges, condition: &VersionCondition) -> Statement<Note> {
    let sql = caller_sql!(caller;
        "UPDATE notes SET title = coalesce(?5, title), body = coalesce(?6, body), ",
        "updated_at = CASE WHEN coalesce(?5, title) IS title AND coalesce(?6, body) IS body THEN updated_at ",
        "ELSE max(updated_at + 1, ?2) END ",
        "WHERE id = ?4 AND owner_id = ";
        " AND (", note_bytes!("coalesce(?5, title)", "coalesce(?6, body)"), " <= ", note_bytes!("title", "body"),
        " OR coalesce((SELECT bytes FROM note_usage WHERE owner_id = notes.owner_id), 0) - (",
        note_bytes!("title", "body"), ") + ", note_bytes!("coalesce(?5, title)", "coalesce(?6, body)"), " <= ?7)",
        version_condition!("?8", "?9"), " RETURNING ", note_columns!());
    let own =
        [text(id), optional_text(changes.title.as_ref()), optional_text(changes.body.as_ref()), integer(MAX_BYTES)];
    Statement::new(sql, caller_args(caller, own.into_iter().chain(version_args(condition))))
}

/// Publishes (keeping the first `published_at`) or makes private, unless `condition` refuses
/// the note's version; `updated_at` as in [`update_mine`] when the publication changes, and
/// untouched when it does not: a repeated `PUT` (or `DELETE`) changes nothing, its `ETag`
/// included (RFC 9110 §9.2.2: idempotent methods), so a client's `If-Match` still holds.
pub fn set_published(caller: &Caller, id: &str, published: bool, condition: &VersionCondition) -> Statement<Note> {
    let sql = if published {
        caller_sql!(caller;
            "UPDATE notes SET published_at = coalesce(published_at, ?2), updated_at = CASE WHEN published_at IS NULL THEN max(updated_at + 1, ?2) ELSE updated_at END WHERE id = ?4 AND owner_id = ";
            version_condition!("?5", "?6"), " RETURNING ", note_columns!())
    } else {
        caller_sql!(caller;
            "UPDATE notes SET published_at = NULL, updated_at = CASE WHEN published_at IS NULL THEN updated_at ELSE max(updated_at + 1, ?2) END WHERE id = ?4 AND owner_id = ";
            version_condition!("?5", "?6"), " RETURNING ", note_columns!())
    };
    Statement::new(sql, caller_args(caller, std::iter::once(text(id)).chain(version_args(condition))))
}

/// Deletes the note unless `condition` refuses its version.
pub fn delete_mine(caller: &Caller, id: &str, condition: &VersionCondition) -> Statement<DeletedNote> {
    let sql = caller_sql!(caller; "DELETE FROM notes WHERE id = ?4 AND owner_id = ";
        version_condition!("?5", "?6"), " RETURNING id, published_at");
    Statement::new(sql, caller_args(caller, std::iter::once(text(id)).chain(version_args(condition))))
}

/// One Worker: every note of the account being deleted in the same write, if it is still
/// [`confirmed_account!`] (checked before the account's row goes), for cache invalidation of
/// the published ones.
pub fn delete_all_of_confirmed_owner(confirmed: &ConfirmedAccount<'_>) -> Statement<DeletedNote> {
    Statement::new(
        concat!("DELETE FROM notes WHERE owner_id = ?4 AND ", confirmed_account!(), " RETURNING id, published_at"),
        confirmed.args([]),
    )
}

/// The services shape's `notes`: every note of a deleted account, for cache invalidation of
/// the published ones.
pub fn delete_all_of_owner(user_id: &str) -> Statement<DeletedNote> {
    Statement::new("DELETE FROM notes WHERE owner_id = ?1 RETURNING id, published_at", vec![text(user_id)])
}

/// The services shape: an identity `accounts` signed before the deletion stays valid for up to
/// a minute; this tombstone makes the owner expression refuse it at once. The first delivery
/// records the owner's published notes in it (before `delete_all_of_owner`, in the same
/// transaction); every delivery reads them back, so a redelivery invalidates them again.
pub fn remember_deleted_owner(user_id: &str, now: i64) -> Statement<DeletionTombstone> {
    Statement::new(
        concat!(
            "INSERT INTO deleted_owners (user_id, deleted_at, public_note_ids) VALUES (?1, ?2, ",
            "(SELECT json_group_array(id) FROM notes WHERE owner_id = ?1 AND published_at IS NOT NULL)) ",
            "ON CONFLICT (user_id) DO UPDATE SET deleted_at = deleted_owners.deleted_at ",
            "RETURNING public_note_ids"
        ),
        vec![text(user_id), integer(now)],
    )
}

pub fn list_public(after: &Cursor, fetch_limit: i64) -> Statement<PublicNote> {
    Statement::new(
        concat!(
            "SELECT id, title, body, published_at FROM notes ",
            "WHERE published_at IS NOT NULL AND (published_at, id) < (?1, ?2) ",
            "ORDER BY published_at DESC, id DESC LIMIT ?3"
        ),
        vec![integer(after.timestamp), text(&after.id), integer(fetch_limit)],
    )
}

pub fn get_public(id: &str) -> Statement<PublicNote> {
    Statement::new(
        "SELECT id, title, body, published_at FROM notes WHERE id = ?1 AND published_at IS NOT NULL",
        vec![text(id)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::session::SessionAuth;

    /// The highest `?N` in `sql`: SQLite refuses a statement bound with more arguments than that.
    fn highest_placeholder(sql: &str) -> usize {
        sql.split('?')
            .skip(1)
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// `(sql, argument count)` of every statement that acts for `caller`, its check first.
    fn every_caller_statement(caller: &Caller) -> Vec<(&'static str, usize)> {
        let note = NewNote { title: "t".into(), body: "b".into(), published: true };
        let changes = NoteChanges { title: Some("t".into()), body: None };
        let cursor = Cursor { timestamp: 1, id: "x".into() };
        let of = |statement: Statement<Note>| (statement.sql, statement.args.len());
        let mut statements = vec![(caller.check().sql, caller.check().args.len())];
        statements.extend([
            of(create(caller, "id", &note)),
            of(list_mine(caller, &cursor, 10)),
            of(get_mine(caller, "id")),
            (owns(caller, "id").sql, owns(caller, "id").args.len()),
            of(update_mine(caller, "id", &changes, &VersionCondition::default())),
            of(set_published(caller, "id", true, &VersionCondition::default())),
            of(set_published(caller, "id", false, &VersionCondition::default())),
        ]);
        let deleted = delete_mine(caller, "id", &VersionCondition::default());
        statements.push((deleted.sql, deleted.args.len()));
        statements
    }

    #[test]
    fn both_caller_forms_bind_exactly_their_placeholders() {
        let session = Caller::Session(SessionAuth { token_hash: "h".into(), now: 5, active_since: 1 });
        let verified = Caller::Verified { user_id: "u".into(), now: 5, valid_until: 9 };
        for caller in [session, verified] {
            for (sql, args) in every_caller_statement(&caller) {
                assert_eq!(highest_placeholder(sql), args, "{sql}");
            }
        }
    }

    #[test]
    fn the_owner_comes_from_the_caller_never_from_input() {
        let verified = Caller::Verified { user_id: "u".into(), now: 5, valid_until: 9 };
        for (sql, _) in every_caller_statement(&verified) {
            assert!(sql.contains("deleted_owners"), "a verified caller is checked against tombstones: {sql}");
            assert!(sql.contains("?3 > ?2"), "and against its identity's expiry: {sql}");
        }
        let session = Caller::Session(SessionAuth { token_hash: "h".into(), now: 5, active_since: 1 });
        for (sql, _) in every_caller_statement(&session) {
            assert!(sql.contains(concat!("FROM sessions WHERE ", active_session!())), "{sql}");
        }
    }
}
