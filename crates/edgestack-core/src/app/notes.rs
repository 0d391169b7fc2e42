//! Notes endpoints: the owner's notes and the public feed. Each is one database round trip.

use serde::Serialize;

use crate::accounts::sql::{session_user, touch_session};
use crate::db::{DbError, Pipeline, PipelineOutcome, Rows};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::notes::{Cursor, NewNote, Note, NoteChanges, PageRequest, PublicNote, sql};

use super::accounts::{missing_column, touch_if_stale};
use super::cache::{invalidate_note, read_through};
use super::{ApiResponse, Context, Database, Platform, unauthenticated};
use crate::cache::{public_feed_key, public_note_key};

#[derive(Serialize)]
struct NoteBody<T> {
    note: T,
}

#[derive(Serialize)]
struct NotePage<T> {
    notes: Vec<T>,
    next_cursor: Option<String>,
}

fn require_json<P: Platform>(context: &Context<'_, P>) -> Result<(), ApiError> {
    crate::json_body::check_json_content_type(context.request.header("content-type"), &[])
}

fn decode<T>(rows: &Rows, from_row: impl Fn(crate::db::Row<'_>) -> Option<T>) -> Result<Vec<T>, ApiError> {
    rows.iter().map(from_row).collect::<Option<Vec<T>>>().ok_or_else(missing_column)
}

fn rows<'o, P: Platform>(
    database: &Database<'_, P>,
    outcome: &'o PipelineOutcome,
    index: usize,
) -> Result<&'o Rows, ApiError> {
    outcome.rows(index).map_err(|error: DbError| database.failure(error))
}

fn not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such note")
}

pub async fn create<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    require_json(context)?;
    let note = NewNote::parse(&context.request.body)?;
    let (_, auth) = context.session()?;
    let database = context.database()?;
    let id = new_id(context.random()?);
    let outcome = database.query(&Pipeline::write(vec![sql::create(&auth, &id, &note), touch_session(&auth)])).await?;
    // The insert selects the owner from the session: no row means no valid session.
    let created =
        decode(rows(&database, &outcome, 0)?, Note::from_row)?.into_iter().next().ok_or_else(unauthenticated)?;
    ApiResponse::json(201, &NoteBody { note: created })
}

pub async fn list_mine<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let page = PageRequest::from_query(&context.request.query)?;
    let (_, auth) = context.session()?;
    let database = context.database()?;
    let pipeline = Pipeline::read(vec![session_user(&auth), sql::list_mine(&auth, &page.start(), page.fetch_limit())]);
    let outcome = database.query(&pipeline).await?;
    let session = rows(&database, &outcome, 0)?;
    let session_row = session.first().ok_or_else(unauthenticated)?;
    let notes = decode(rows(&database, &outcome, 1)?, Note::from_row)?;
    let (notes, next_cursor) = page.finish(notes, |note| Cursor { timestamp: note.created_at, id: note.id.clone() });
    touch_if_stale(context, &database, &auth, session_row);
    ApiResponse::json(200, &NotePage { notes, next_cursor })
}

pub async fn get_mine<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let (_, auth) = context.session()?;
    let database = context.database()?;
    let outcome = database.query(&Pipeline::read(vec![session_user(&auth), sql::get_mine(&auth, id)])).await?;
    let session_row = rows(&database, &outcome, 0)?.first().ok_or_else(unauthenticated)?;
    let note = decode(rows(&database, &outcome, 1)?, Note::from_row)?.into_iter().next().ok_or_else(not_found)?;
    touch_if_stale(context, &database, &auth, session_row);
    ApiResponse::json(200, &NoteBody { note })
}

/// Runs one owner-checked write on a note, in the same transaction as the session check and
/// the activity touch, and decodes the row it returned (`None`: no such note of this owner).
async fn owner_write<P: Platform, T>(
    context: &Context<'_, P>,
    statement: impl FnOnce(&crate::accounts::session::SessionAuth) -> crate::db::Statement,
    from_row: impl Fn(crate::db::Row<'_>) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    let (_, auth) = context.session()?;
    let database = context.database()?;
    let pipeline = Pipeline::write(vec![session_user(&auth), statement(&auth), touch_session(&auth)]);
    let outcome = database.query(&pipeline).await?;
    if rows(&database, &outcome, 0)?.is_empty() {
        return Err(unauthenticated());
    }
    Ok(decode(rows(&database, &outcome, 1)?, from_row)?.into_iter().next())
}

pub async fn update<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    require_json(context)?;
    let changes = NoteChanges::parse(&context.request.body)?;
    let note = owner_write(context, |auth| sql::update_mine(auth, id, &changes), Note::from_row)
        .await?
        .ok_or_else(not_found)?;
    if note.published {
        invalidate_note(context, id);
    }
    ApiResponse::json(200, &NoteBody { note })
}

pub async fn set_published<P: Platform>(
    context: &Context<'_, P>,
    id: &str,
    published: bool,
) -> Result<ApiResponse, ApiError> {
    let note = owner_write(context, |auth| sql::set_published(auth, id, published), Note::from_row)
        .await?
        .ok_or_else(not_found)?;
    invalidate_note(context, id);
    ApiResponse::json(200, &NoteBody { note })
}

pub async fn delete<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let was_public = |row: crate::db::Row<'_>| row.text("id").map(|_| row.integer("published_at").is_some());
    let was_public =
        owner_write(context, |auth| sql::delete_mine(auth, id), was_public).await?.ok_or_else(not_found)?;
    if was_public {
        invalidate_note(context, id);
    }
    Ok(ApiResponse::empty(204))
}

pub async fn list_public<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let page = PageRequest::from_query(&context.request.query)?;
    let database = context.database()?;
    read_through(context, &public_feed_key(&page), async {
        let outcome =
            database.query(&Pipeline::read(vec![sql::list_public(&page.start(), page.fetch_limit())])).await?;
        let notes = decode(rows(&database, &outcome, 0)?, PublicNote::from_row)?;
        let (notes, next_cursor) =
            page.finish(notes, |note| Cursor { timestamp: note.published_at, id: note.id.clone() });
        let body = serde_json::to_vec(&NotePage { notes, next_cursor }).map_err(|_| ApiError::internal())?;
        Ok((body, outcome.replication_index))
    })
    .await
}

pub async fn get_public<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let database = context.database()?;
    read_through(context, &public_note_key(id), async {
        let outcome = database.query(&Pipeline::read(vec![sql::get_public(id)])).await?;
        let note =
            decode(rows(&database, &outcome, 0)?, PublicNote::from_row)?.into_iter().next().ok_or_else(not_found)?;
        let body = serde_json::to_vec(&NoteBody { note }).map_err(|_| ApiError::internal())?;
        Ok((body, outcome.replication_index))
    })
    .await
}
