//! The statements behind each notes operation. Every statement that acts for a user names the
//! owner through the session subquery, so ownership is checked in the same query that reads or
//! changes the note — never by trusting an id from the client.

use crate::accounts::session::SessionAuth;
use crate::db::{Statement, integer, optional_text, text};
use crate::notes::{Cursor, NewNote, NoteChanges};

macro_rules! note_columns {
    () => {
        "id, title, body, published_at, created_at, updated_at"
    };
}

pub fn create(auth: &SessionAuth, id: &str, note: &NewNote) -> Statement {
    let published_at = if note.published { integer(auth.now) } else { crate::db::null() };
    let mut args = auth.args();
    args.extend([text(id), text(&note.title), text(&note.body), published_at]);
    Statement::new(
        concat!(
            "INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) ",
            "SELECT ?4, user_id, ?5, ?6, ?7, ?2, ?2 FROM sessions ",
            "WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3 ",
            "RETURNING ",
            note_columns!()
        ),
        args,
    )
}

pub fn list_mine(auth: &SessionAuth, after: &Cursor, fetch_limit: i64) -> Statement {
    let mut args = auth.args();
    args.extend([integer(after.timestamp), text(&after.id), integer(fetch_limit)]);
    Statement::new(
        concat!(
            "SELECT ",
            note_columns!(),
            " FROM notes WHERE owner_id = ",
            session_user_id!(),
            " AND (created_at, id) < (?4, ?5) ORDER BY created_at DESC, id DESC LIMIT ?6"
        ),
        args,
    )
}

pub fn get_mine(auth: &SessionAuth, id: &str) -> Statement {
    let mut args = auth.args();
    args.push(text(id));
    Statement::new(
        concat!("SELECT ", note_columns!(), " FROM notes WHERE id = ?4 AND owner_id = ", session_user_id!()),
        args,
    )
}

pub fn update_mine(auth: &SessionAuth, id: &str, changes: &NoteChanges) -> Statement {
    let mut args = auth.args();
    args.extend([text(id), optional_text(changes.title.as_ref()), optional_text(changes.body.as_ref())]);
    Statement::new(
        concat!(
            "UPDATE notes SET title = coalesce(?5, title), body = coalesce(?6, body), updated_at = ?2 ",
            "WHERE id = ?4 AND owner_id = ",
            session_user_id!(),
            " RETURNING ",
            note_columns!()
        ),
        args,
    )
}

pub fn set_published(auth: &SessionAuth, id: &str, published: bool) -> Statement {
    let mut args = auth.args();
    args.push(text(id));
    let sql = if published {
        concat!(
            "UPDATE notes SET published_at = coalesce(published_at, ?2), updated_at = ?2 WHERE id = ?4 AND owner_id = ",
            session_user_id!(),
            " RETURNING ",
            note_columns!()
        )
    } else {
        concat!(
            "UPDATE notes SET published_at = NULL, updated_at = ?2 WHERE id = ?4 AND owner_id = ",
            session_user_id!(),
            " RETURNING ",
            note_columns!()
        )
    };
    Statement::new(sql, args)
}

pub fn delete_mine(auth: &SessionAuth, id: &str) -> Statement {
    let mut args = auth.args();
    args.push(text(id));
    Statement::new(
        concat!("DELETE FROM notes WHERE id = ?4 AND owner_id = ", session_user_id!(), " RETURNING id, published_at"),
        args,
    )
}

pub fn list_public(after: &Cursor, fetch_limit: i64) -> Statement {
    Statement::new(
        concat!(
            "SELECT id, title, body, published_at FROM notes ",
            "WHERE published_at IS NOT NULL AND (published_at, id) < (?1, ?2) ",
            "ORDER BY published_at DESC, id DESC LIMIT ?3"
        ),
        vec![integer(after.timestamp), text(&after.id), integer(fetch_limit)],
    )
}

pub fn get_public(id: &str) -> Statement {
    Statement::new(
        "SELECT id, title, body, published_at FROM notes WHERE id = ?1 AND published_at IS NOT NULL",
        vec![text(id)],
    )
}
