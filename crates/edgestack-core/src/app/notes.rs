//! Notes endpoints: the owner's notes and the public feed. Each is one database round trip.
//! The same handlers serve the single Worker and the `notes` service; only the [`Caller`] differs.
//! See [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in) and
//! [§ Public notes](../../../../docs/api.md#public-notes-anyone).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cache::CacheKey;
use crate::caller::Caller;
use crate::conditional::{Preconditions, Verdict};
use crate::db::{FromRow, Pipeline, PipelineOutcome, Statement};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::notes::{
    Cursor, CursorSigner, NewNote, Note, NoteChanges, NoteVersion, PageRequest, PublicNote, VersionCondition, etag, sql,
};
use crate::services::internal_api::NotesDeleted;

use super::cache::{cached_version, invalidate_note, read_through};
use super::{ApiResponse, Context, Database, Platform};
use crate::assets::PRIVATE_NO_STORE_NO_TRANSFORM;

#[derive(Serialize)]
struct NoteBody<T> {
    note: T,
}

/// `{"note"}` with the note's entity tag (`notes::etag`), for a later `If-Match`, kept strong
/// on the way ([`PRIVATE_NO_STORE_NO_TRANSFORM`]).
fn note_response(status: u16, note: &Note) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(status, &NoteBody { note })?
        .with_header("ETag", note.etag())
        .with_header("Cache-Control", PRIVATE_NO_STORE_NO_TRANSFORM))
}

/// Why an owner-checked write changed nothing, from the note's version read in the same
/// transaction (`sql::owns`): no such note of the caller's (404), a version its preconditions
/// refuse (412), else `otherwise` (the statement's own condition refused it).
fn refused(current: Option<NoteVersion>, preconditions: &Preconditions, otherwise: ApiError) -> ApiError {
    match current {
        None => ApiError::NoSuchNote,
        Some(current) if preconditions.verdict(&etag(current.updated_at), false) == Verdict::Failed => {
            ApiError::PreconditionFailed
        }
        Some(_) => otherwise,
    }
}

#[derive(Serialize)]
struct NotePage<T> {
    notes: Vec<T>,
    next_cursor: Option<String>,
}

/// Runs the statements `push` adds for the caller, after the caller's check (so a signed-out
/// caller gets a 401, not an empty answer); a session caller's write also records activity, a
/// read does when it is due. Returns the outcome and what `push` returned (its handles).
async fn for_caller<P: Platform, T>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    caller: &Caller,
    write: bool,
    push: impl FnOnce(&mut Pipeline) -> T,
) -> Result<(PipelineOutcome, T), ApiError> {
    let mut pipeline = if write { Pipeline::write() } else { Pipeline::read() };
    let check = pipeline.push(caller.check());
    let handles = push(&mut pipeline);
    if let (true, Some(touch)) = (write, caller.touch()) {
        pipeline.push(touch);
    }
    let outcome = database.run(&pipeline).await?;
    let acting = outcome.first(check)?.ok_or(ApiError::Unauthenticated)?;
    if !write {
        context.record_activity_if_stale(database, caller, acting.last_seen_at);
    }
    Ok((outcome, handles))
}

/// The rows of one statement run for the caller ([`for_caller`]).
async fn rows_for_caller<P: Platform, R: FromRow>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    caller: &Caller,
    statement: Statement<R>,
    write: bool,
) -> Result<Vec<R>, ApiError> {
    let (outcome, rows) = for_caller(context, database, caller, write, |pipeline| pipeline.push(statement)).await?;
    Ok(outcome.read(rows)?)
}

/// `POST /api/notes` — create a note. Body `{"title", "body"?, "published"?: bool}`. Answers
/// `201 {"note"}`. Errors: `400 invalid_title` (1–200 characters, no control characters),
/// `400 invalid_body_text` (at most 20,000; no control characters but tabs and line breaks),
/// `403 quota_exceeded` (1,000 notes or 5 MiB of text per account, `notes::quota`),
/// `401 unauthenticated`, the body errors, the database errors. [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
///
/// ASVS 5.0 2.4.1: the quota is checked in the insert itself, so it costs no round trip.
pub async fn create<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let note = NewNote::parse(context.json_body()?)?;
    let caller = context.caller()?;
    let database = context.database()?;
    let id = new_id(context.random()?);
    let created = rows_for_caller(context, &database, &caller, sql::create(&caller, &id, &note), true).await?;
    // The caller may act (checked above), so no row means the quota refused the insert.
    let created = created.into_iter().next().ok_or(ApiError::NoteQuotaExceeded)?;
    // Born public, it is on the feed pages cached before it existed.
    if created.published {
        invalidate_note(context, &id);
    }
    note_response(201, &created)
}

/// `GET /api/notes?limit=20&cursor=…` — the caller's notes, newest first. Answers
/// `200 {"notes", "next_cursor"}`. Errors: `400 invalid_limit` (1–100), `400 invalid_cursor`,
/// `400 repeated_parameter`, `401 unauthenticated`, the database errors. [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
pub async fn list_mine<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let signer = CursorSigner::new(&context.config.data_path.consistency_key, "mine");
    let page = PageRequest::from_query(&context.request.query, &signer)?;
    let caller = context.caller()?;
    let database = context.database()?;
    let statement = sql::list_mine(&caller, &page.start(), page.fetch_limit());
    let notes = rows_for_caller(context, &database, &caller, statement, false).await?;
    let (notes, next_cursor) =
        page.finish(notes, |note| Cursor { timestamp: note.created_at, id: note.id.clone() }, &signer);
    ApiResponse::json(200, &NotePage { notes, next_cursor })
}

/// `GET /api/notes/{id}` — one of the caller's notes. Answers `200 {"note"}` with its `ETag`,
/// or `304` when `If-None-Match` names that version. Errors: `404 not_found` (also for another
/// owner's note), `412 precondition_failed` (an `If-Match` it does not satisfy),
/// `400 invalid_if_match`, `401 unauthenticated`, the database errors.
/// [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
pub async fn get_mine<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let preconditions = context.preconditions()?;
    let caller = context.caller()?;
    let database = context.database()?;
    let notes = rows_for_caller(context, &database, &caller, sql::get_mine(&caller, id), false).await?;
    let note = notes.into_iter().next().ok_or(ApiError::NoSuchNote)?;
    match preconditions.verdict(&note.etag(), true) {
        Verdict::Proceed => note_response(200, &note),
        Verdict::NotModified => Ok(ApiResponse::empty(304)
            .with_header("ETag", note.etag())
            .with_header("Cache-Control", PRIVATE_NO_STORE_NO_TRANSFORM)),
        Verdict::Failed => Err(ApiError::PreconditionFailed),
    }
}

/// Runs one owner-checked write on a note under the request's `preconditions` (read by the
/// route before anything else, bound by `statement` as a [`VersionCondition`]) and returns the
/// row it returned. `own_refusal` is the error when the statement's own condition (the quota)
/// refused an existing note. Errors as [`refused`]: `404`, `412`, `own_refusal`.
async fn owner_write<P: Platform, R: FromRow>(
    context: &Context<'_, P>,
    id: &str,
    preconditions: Preconditions,
    own_refusal: Option<ApiError>,
    statement: impl FnOnce(&Caller, &VersionCondition) -> Statement<R>,
) -> Result<R, ApiError> {
    let condition = VersionCondition::of(&preconditions);
    let caller = context.caller()?;
    let database = context.database()?;
    // With nothing but ownership to refuse it, a missing row says it all: no version to read.
    let read_version = own_refusal.is_some() || !preconditions.is_empty();
    let (outcome, (current, written)) = for_caller(context, &database, &caller, true, |pipeline| {
        let current = read_version.then(|| pipeline.push(sql::owns(&caller, id)));
        (current, pipeline.push(statement(&caller, &condition)))
    })
    .await?;
    if let Some(row) = outcome.first(written)? {
        return Ok(row);
    }
    let current = match current {
        Some(current) => outcome.first(current)?,
        None => None,
    };
    Err(refused(current, &preconditions, own_refusal.unwrap_or(ApiError::NoSuchNote)))
}

/// `PATCH /api/notes/{id}` — change a note's title, body or both. Body `{"title"?, "body"?}`.
/// Answers `200 {"note"}` with its new `ETag`. Errors: `400 invalid_title`,
/// `400 invalid_body_text`, `400 nothing_to_change`, `403 quota_exceeded` (the change would grow
/// the account's text past 5 MiB), `404 not_found`, `412 precondition_failed`,
/// `400 invalid_if_match`, `401 unauthenticated`, the body errors, the database errors.
/// [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
pub async fn update<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    // A malformed If-Match is refused before the body is looked at, as on every route (docs/api.md).
    let preconditions = context.preconditions()?;
    let changes = NoteChanges::parse(context.json_body()?)?;
    let note = owner_write(context, id, preconditions, Some(ApiError::NoteQuotaExceeded), |caller, condition| {
        sql::update_mine(caller, id, &changes, condition)
    })
    .await?;
    if note.published {
        invalidate_note(context, id);
    }
    note_response(200, &note)
}

/// `PUT /api/notes/{id}/publication` (`published`) and `DELETE /api/notes/{id}/publication`
/// (private again). No body. Answers `200 {"note"}` with its new `ETag`. Errors:
/// `404 not_found`, `412 precondition_failed`, `400 invalid_if_match`, `401 unauthenticated`,
/// the database errors. [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
pub async fn set_published<P: Platform>(
    context: &Context<'_, P>,
    id: &str,
    published: bool,
) -> Result<ApiResponse, ApiError> {
    let preconditions = context.preconditions()?;
    let note = owner_write(context, id, preconditions, None, |caller, condition| {
        sql::set_published(caller, id, published, condition)
    })
    .await?;
    invalidate_note(context, id);
    note_response(200, &note)
}

/// `DELETE /api/notes/{id}` — delete a note. No body. Answers `204`. Errors: `404 not_found`,
/// `412 precondition_failed`, `400 invalid_if_match`, `401 unauthenticated`, the database
/// errors. [docs/api.md § My notes](../../../../docs/api.md#my-notes-signed-in)
pub async fn delete<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let preconditions = context.preconditions()?;
    let deleted =
        owner_write(context, id, preconditions, None, |caller, condition| sql::delete_mine(caller, id, condition))
            .await?;
    if deleted.was_public {
        invalidate_note(context, id);
    }
    Ok(ApiResponse::empty(204))
}

/// `DELETE /internal/users/{id}/notes` — internal (from `accounts`' deletion outbox): removes
/// every note of a deleted account and refuses the account's still-valid identities from now
/// on. Idempotent, so redelivery is safe; every delivery invalidates the cached copies of the
/// notes that were public when the first one ran, since a first delivery that committed but
/// whose answer was lost left its invalidation unknown to `accounts` (review finding). No body.
/// Answers `200` [`NotesDeleted`]. Errors: the database errors. Not a client route:
/// [docs/services.md](../../../../docs/services.md#account-deletion-without-a-distributed-transaction); the client API
/// is [docs/api.md](../../../../docs/api.md).
pub async fn delete_all_of_owner<P: Platform>(
    context: &Context<'_, P>,
    user_id: &str,
) -> Result<ApiResponse, ApiError> {
    let database = context.database()?;
    let mut pipeline = Pipeline::write();
    let tombstone = pipeline.push(sql::remember_deleted_owner(user_id, context.request.now_ms));
    let deleted = pipeline.push(sql::delete_all_of_owner(user_id));
    let outcome = database.run(&pipeline).await?;
    let deleted = outcome.read(deleted)?;
    let tombstone = outcome.first(tombstone)?.unwrap_or_default();
    let once_public: BTreeSet<&str> = tombstone
        .public_note_ids
        .iter()
        .map(String::as_str)
        .chain(deleted.iter().filter(|note| note.was_public).map(|note| note.id.as_str()))
        .collect();
    for id in once_public {
        invalidate_note(context, id);
    }
    ApiResponse::json(200, &NotesDeleted { deleted_notes: deleted.len() })
}

/// `GET /api/public/notes?limit=20&cursor=…` — the public feed, newest publication first, for
/// anyone; cached (memory, then KV) and revalidated by ETag. Answers
/// `200 {"notes": [public_note…], "next_cursor"}` or `304`. Errors: `400 invalid_limit`,
/// `400 invalid_cursor`, `400 repeated_parameter`, the database errors. [docs/api.md § Public notes](../../../../docs/api.md#public-notes-anyone)
pub async fn list_public<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let signer = CursorSigner::new(&context.config.data_path.consistency_key, "public");
    let page = PageRequest::from_query(&context.request.query, &signer)?;
    let database = context.database()?;
    let key = CacheKey::public_feed(&page, &context.config.data_path.cursor_key_id);
    read_through(context, key.as_ref(), |kept| async move {
        let mut pipeline = Pipeline::cacheable_read(kept);
        let notes = pipeline.push(sql::list_public(&page.start(), page.fetch_limit()));
        let outcome = database.run(&pipeline).await?;
        let notes: Vec<PublicNote> = outcome.read(notes)?;
        let (notes, next_cursor) =
            page.finish(notes, |note| Cursor { timestamp: note.published_at, id: note.id.clone() }, &signer);
        let body = serde_json::to_vec(&NotePage { notes, next_cursor }).map_err(|_| ApiError::Internal)?;
        Ok((body, cached_version(&outcome)))
    })
    .await
}

/// `GET /api/public/notes/{id}` — one published note, for anyone; cached like the feed.
/// Answers `200 {"note": public_note}` or `304`. Errors: `404 not_found` (private or missing),
/// the database errors. [docs/api.md § Public notes](../../../../docs/api.md#public-notes-anyone)
pub async fn get_public<P: Platform>(context: &Context<'_, P>, id: &str) -> Result<ApiResponse, ApiError> {
    let database = context.database()?;
    read_through(context, Some(&CacheKey::public_note(id)), |kept| async move {
        let mut pipeline = Pipeline::cacheable_read(kept);
        let note = pipeline.push(sql::get_public(id));
        let outcome = database.run(&pipeline).await?;
        let note = outcome.first(note)?.ok_or(ApiError::NoSuchNote)?;
        let body = serde_json::to_vec(&NoteBody { note }).map_err(|_| ApiError::Internal)?;
        Ok((body, cached_version(&outcome)))
    })
    .await
}
