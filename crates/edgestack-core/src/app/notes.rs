//! Notes endpoints: the owner's notes and the public feed. Each is one database round trip.
//! The same handlers serve the single Worker and the `notes` service; only the [`Caller`] differs.

use serde::Serialize;

use crate::accounts::sql::{session_user, touch_session};
use crate::caller::Caller;
use crate::db::{Pipeline, PipelineOutcome, Rows, Statement};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::notes::{Cursor, NewNote, Note, NoteChanges, PageRequest, PublicNote, sql};

use super::accounts::{missing_column, touch_if_stale};
use super::cache::{invalidate_note, read_through};
use super::{ApiResponse, Context, Database, Platform};
use crate::cache::CacheKey;

#[derive(Serialize)]
struct NoteBody<T> {
    note: T,
}

#[derive(Serialize)]
struct NotePage<T> {
    notes: Vec<T>,
    next_cursor: Option<String>,
}

fn decode<T>(rows: &Rows, from_row: impl Fn(crate::db::Row<'_>) -> Option<T>) -> Result<Vec<T>, ApiError> {
    rows.iter().map(from_row).collect::<Option<Vec<T>>>().ok_or_else(missing_column)
}

fn rows<'o, P: Platform>(
    database: &Database<'_, P>,
    outcome: &'o PipelineOutcome,
    index: usize,
) -> Result<&'o Rows, ApiError> {
    let _ = database;
    outcome.rows(index).map_err(ApiError::from)
}

/// Runs `statement` for the caller, after the check that the caller is signed in (so a
/// signed-out caller gets a 401, not an empty answer); a session caller's write also records
/// activity. Returns the outcome; `statement`'s result is at index 1.
async fn for_caller<P: Platform>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    caller: &Caller,
    statement: Statement,
    write: bool,
) -> Result<PipelineOutcome, ApiError> {
    let check = match caller.session() {
        Some(auth) => session_user(auth),
        None => sql::verified_owner(caller),
    };
    let mut statements = vec![check, statement];
    if let (true, Some(auth)) = (write, caller.session()) {
        statements.push(touch_session(auth));
    }
    let pipeline = if write { Pipeline::write(statements) } else { Pipeline::read(statements) };
    let outcome = database.run(&pipeline).await?;
    let signed_in = rows(database, &outcome, 0)?.first().ok_or(ApiError::Unauthenticated)?;
    if let (false, Some(auth)) = (write, caller.session()) {
        touch_if_stale(context, database, auth, signed_in);
    }
    Ok(outcome)
}

pub async fn create<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let note = NewNote::parse(context.json_body()?)?;
    let caller = context.caller()?;
    let database = context.database()?;
    let id = new_id(context.random()?);
    let outcome = for_caller(context, &database, &caller, sql::create(&caller, &id, &note), true).await?;
    // The insert selects the owner from the caller: no row means the caller is not signed in.
    let created =
        decode(rows(&database, &outcome, 1)?, Note::from_row)?.into_iter().next().ok_or(ApiError::Unauthenticated)?;
    ApiResponse::json(201, &NoteBody { note: created })
}

pub async fn list_mine<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let page = PageRequest::from_query(&context.request.query)?;
    let caller = context.caller()?;
    let database = context.database()?;
    let statement = sql::list_mine(&caller, &page.start(), page.fetch_limit());
    let outcome = for_caller(context, &database, &caller, statement, false).await?;
    let notes = decode(rows(&database, &outcome, 1)?, Note::from_row)?;
    let (notes, next_cursor) = page.finish(notes, |note| Cursor { timestamp: note.created_at, id: note.id.clone() });
    ApiResponse::json(200, &NotePage { notes, next_cursor })
}

pub async fn get_mine<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let caller = context.caller()?;
    let database = context.database()?;
    let outcome = for_caller(context, &database, &caller, sql::get_mine(&caller, id), false).await?;
    let note = decode(rows(&database, &outcome, 1)?, Note::from_row)?.into_iter().next().ok_or(ApiError::NoSuchNote)?;
    ApiResponse::json(200, &NoteBody { note })
}

/// Runs one owner-checked write on a note and decodes the row it returned (`None`: no such
/// note of this owner).
async fn owner_write<P: Platform, T>(
    context: &Context<'_, P>,
    statement: impl FnOnce(&Caller) -> Statement,
    from_row: impl Fn(crate::db::Row<'_>) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    let caller = context.caller()?;
    let database = context.database()?;
    let outcome = for_caller(context, &database, &caller, statement(&caller), true).await?;
    Ok(decode(rows(&database, &outcome, 1)?, from_row)?.into_iter().next())
}

pub async fn update<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let changes = NoteChanges::parse(context.json_body()?)?;
    let note = owner_write(context, |caller| sql::update_mine(caller, id, &changes), Note::from_row)
        .await?
        .ok_or(ApiError::NoSuchNote)?;
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
    let note = owner_write(context, |caller| sql::set_published(caller, id, published), Note::from_row)
        .await?
        .ok_or(ApiError::NoSuchNote)?;
    invalidate_note(context, id);
    ApiResponse::json(200, &NoteBody { note })
}

/// `Some(was_public)` for a deleted note row.
fn deleted_note(row: crate::db::Row<'_>) -> Option<(String, bool)> {
    row.text("id").map(|id| (id.to_string(), row.integer("published_at").is_some()))
}

pub async fn delete<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let (_, was_public) =
        owner_write(context, |caller| sql::delete_mine(caller, id), deleted_note).await?.ok_or(ApiError::NoSuchNote)?;
    if was_public {
        invalidate_note(context, id);
    }
    Ok(ApiResponse::empty(204))
}

/// Drops the caches of the published notes among `deleted` (the rows of a `RETURNING id,
/// published_at` delete).
pub(super) fn invalidate_deleted<P: Platform>(context: &Context<'_, P>, deleted: &Rows) {
    for (id, was_public) in deleted.iter().filter_map(deleted_note) {
        if was_public {
            invalidate_note(context, &id);
        }
    }
}

/// Internal (from `accounts`' deletion outbox): removes every note of a deleted account and
/// refuses the account's still-valid identities from now on. Idempotent, so redelivery is safe.
pub async fn delete_all_of_owner<P: Platform>(
    context: &Context<'_, P>,
    user_id: &str,
) -> Result<ApiResponse, ApiError> {
    let database = context.database()?;
    let statements =
        vec![sql::remember_deleted_owner(user_id, context.request.now_ms), sql::delete_all_of_owner(user_id)];
    let outcome = database.run(&Pipeline::write(statements)).await?;
    let deleted = rows(&database, &outcome, 1)?;
    invalidate_deleted(context, deleted);
    ApiResponse::json(200, &serde_json::json!({ "deleted_notes": deleted.len() }))
}

pub async fn list_public<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let page = PageRequest::from_query(&context.request.query)?;
    let database = context.database()?;
    read_through(context, &CacheKey::public_feed(&page), async {
        let outcome = database.run(&Pipeline::read(vec![sql::list_public(&page.start(), page.fetch_limit())])).await?;
        let notes = decode(rows(&database, &outcome, 0)?, PublicNote::from_row)?;
        let (notes, next_cursor) =
            page.finish(notes, |note| Cursor { timestamp: note.published_at, id: note.id.clone() });
        let body = serde_json::to_vec(&NotePage { notes, next_cursor }).map_err(|_| ApiError::Internal)?;
        Ok((body, outcome.replication_index))
    })
    .await
}

pub async fn get_public<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let database = context.database()?;
    read_through(context, &CacheKey::public_note(id), async {
        let outcome = database.run(&Pipeline::read(vec![sql::get_public(id)])).await?;
        let note = decode(rows(&database, &outcome, 0)?, PublicNote::from_row)?
            .into_iter()
            .next()
            .ok_or(ApiError::NoSuchNote)?;
        let body = serde_json::to_vec(&NoteBody { note }).map_err(|_| ApiError::Internal)?;
        Ok((body, outcome.replication_index))
    })
    .await
}
