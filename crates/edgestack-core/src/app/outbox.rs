//! What deleting an account does to its notes — the one place that knows both features'
//! statements. One Worker deletes them in the account's own transaction. The services shape has
//! no distributed transaction: `accounts` deletes the user and writes an outbox row in one
//! transaction, then tells `notes` (an idempotent internal call). A delivery that fails leaves
//! the row; the cron trigger retries every pending row until `notes` acknowledges, and only then
//! is the row removed — for a recheck: `notes` acknowledges on its primary, and a failover to a
//! replica that had not applied the deletion loses it, so the cron delivers every acknowledged
//! deletion once more after [`RECHECK_AFTER_MS`], until `notes` takes that one too.

use std::cell::RefCell;

use crate::accounts::{PendingDeletion, sql};
use crate::config::Config;
use crate::db::Pipeline;
use crate::error::ApiError;
use crate::ids::new_id;
use crate::notes::sql as notes_sql;
use crate::services::Service;
use crate::services::internal_api::InternalRequest;

use super::cache::invalidate_deleted_notes;
use super::{Context, Database, Platform, ReaderRegion, RequestReport, ServiceRequest};

/// Rows one cron run works through; the rest wait a minute.
const BATCH: i64 = 100;

/// How long after `notes` acknowledged a deletion it is delivered again: the replica lag the
/// stack is sized for (`cache::MAX_TOLERATED_LAG_SECONDS`). A failover before then may promote
/// a replica without the deletion (docs/failover.md: acknowledged writes can be lost), and the
/// second delivery, retried until the new primary takes it, deletes the notes there; a replica
/// promoted later has applied it.
pub const RECHECK_AFTER_MS: i64 = crate::cache::MAX_TOLERATED_LAG_SECONDS as i64 * 1000;

/// Deletes the confirmed account, its sessions and its notes. One Worker: one transaction.
/// Services: the user and an outbox row in one `accounts` transaction, then the notes through
/// the outbox (delivered now if `notes` answers, else by the cron retry). Every statement is
/// conditioned on the account still being confirmed (a password change since the check ends
/// the caller's session): then nothing is deleted and the answer is `401 unauthenticated`.
///
/// Answers the `Set-Cookie` of the notes service's read-your-writes token when `notes` took
/// the deletion at once, for the client: without it the author's next read of the deleted
/// notes could come from a notes replica that has not applied the deletion yet.
pub async fn delete_account<P: Platform>(
    context: &Context<'_, P>,
    database: &Database<'_, P>,
    confirmed: &sql::ConfirmedAccount<'_>,
) -> Result<Option<String>, ApiError> {
    let user_id = confirmed.user_id;
    let mut pipeline = Pipeline::write();
    if context.config.service == Service::Accounts {
        let deletion = PendingDeletion { id: new_id(context.random()?), user_id: user_id.to_string() };
        pipeline.push(sql::enqueue_confirmed_user_deletion(&deletion.id, confirmed, context.request.now_ms));
        let deleted = pipeline.push(sql::delete_confirmed_user(confirmed));
        pipeline.push(sql::delete_sessions_of_deleted_user(user_id));
        if database.run(&pipeline).await?.first(deleted)?.is_none() {
            return Err(ApiError::Unauthenticated);
        }
        let deadline_ms = context.config.nested_service_deadline_ms();
        return Ok(match deliver(context.platform, database, &deletion, context.request.now_ms, deadline_ms).await {
            Ok(notes_token) => notes_token,
            Err(failure) => {
                let error = failure.why;
                context.platform.log(&format!("notes of deleted user {user_id} are left for the retry: {error}"));
                None
            }
        });
    } else {
        // The notes first: deleting the account's row would take them with it (ON DELETE
        // CASCADE) before they could be listed for the cache.
        let deleted_notes = pipeline.push(notes_sql::delete_all_of_confirmed_owner(confirmed));
        let deleted = pipeline.push(sql::delete_confirmed_user(confirmed));
        pipeline.push(sql::delete_sessions_of_deleted_user(user_id));
        let outcome = database.run(&pipeline).await?;
        if outcome.first(deleted)?.is_none() {
            return Err(ApiError::Unauthenticated);
        }
        invalidate_deleted_notes(context, &outcome.read(deleted_notes)?);
    }
    Ok(None)
}

/// Tells `notes` and, once it acknowledged, replaces the row by a recheck due
/// [`RECHECK_AFTER_MS`] later (any 2xx, whatever the body says, so a notes release with another
/// answer still acknowledges); otherwise records the attempt. Answers the `Set-Cookie` of the
/// read-your-writes token `notes` sent with its acknowledgement, if any — also when the row
/// could not be removed: the notes are deleted either way, and the row only brings one more
/// (idempotent) delivery from the cron.
pub async fn deliver<P: Platform>(
    platform: &P,
    database: &Database<'_, P>,
    deletion: &PendingDeletion,
    now_ms: i64,
    deadline_ms: u32,
) -> Result<Option<String>, Undelivered> {
    let failure = match tell_notes(platform, deletion, deadline_ms).await {
        Ok(token) => {
            let mut delivered = Pipeline::write();
            delivered.push(sql::user_deletion_delivered(&deletion.id));
            delivered.push(sql::schedule_deletion_recheck(deletion, now_ms + RECHECK_AFTER_MS));
            if let Err(error) = database.run(&delivered).await {
                platform.log(&format!("deletion {} delivered, its row is left for the cron: {error}", deletion.id));
            }
            return Ok(token);
        }
        Err(failure) => failure,
    };
    let mut attempt = Pipeline::write();
    attempt.push(sql::user_deletion_failed(&deletion.id, now_ms, &failure.why));
    if let Err(error) = database.run(&attempt).await {
        platform.log(&format!("could not record the failed delivery of {}: {error}", deletion.id));
    }
    Err(failure)
}

/// Why a deletion did not reach `notes`, as the row's `last_error` keeps it.
#[derive(Debug)]
pub struct Undelivered {
    pub why: String,
    /// `notes` answered (a non-2xx). Otherwise it gave no answer — no binding, a refused call or
    /// its deadline — and the next delivery in the same run would wait for nothing too.
    pub answered: bool,
}

/// The most of an answer's body a row keeps: enough for an API error's JSON; a proxy's HTML
/// error page is not worth storing in every row.
const ERROR_BODY_CHARS: usize = 200;

/// `notes answered {status}: {body}`, the body cut to [`ERROR_BODY_CHARS`] characters.
fn answered_error(status: u16, body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    let cut = body.char_indices().nth(ERROR_BODY_CHARS).map_or(body.len(), |(at, _)| at);
    let more = if cut < body.len() { "…" } else { "" };
    format!("notes answered {status}: {}{more}", &body[..cut])
}

/// `DELETE /internal/users/{id}/notes`: the notes read-your-writes cookie of a 2xx, else why not.
async fn tell_notes<P: Platform>(
    platform: &P,
    deletion: &PendingDeletion,
    deadline_ms: u32,
) -> Result<Option<String>, Undelivered> {
    let request = ServiceRequest::internal(InternalRequest::DeleteUserNotes { user_id: &deletion.user_id });
    match platform.call_service(Service::Notes, request, deadline_ms).await {
        Ok(response) if (200..300).contains(&response.status) => {
            let notes_cookie = format!("{}=", Service::Notes.consistency_cookie());
            let token = response
                .headers
                .into_iter()
                .find(|(name, value)| name.eq_ignore_ascii_case("set-cookie") && value.starts_with(&notes_cookie));
            Ok(token.map(|(_, value)| value))
        }
        Ok(response) => Err(Undelivered { why: answered_error(response.status, &response.body), answered: true }),
        Err(why) => Err(Undelivered { why, answered: false }),
    }
}

/// What a cron run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub failed: usize,
    /// Acknowledged deletions `notes` took again ([`RECHECK_AFTER_MS`]).
    pub rechecked: usize,
    /// Rechecks `notes` did not take; tried again on a later run.
    pub recheck_failed: usize,
    /// Deletions and rechecks left untried for the next run once `notes` gave no answer.
    pub deferred: usize,
}

/// The cron trigger's work: up to a hundred pending deletions, the least recently tried first,
/// then up to a hundred acknowledged ones due for their recheck.
pub async fn deliver_pending_deletions<P: Platform>(
    platform: &P,
    config: &Config,
    now_ms: i64,
) -> Result<DeliveryReport, String> {
    let database_config = config.database.as_ref().ok_or("no database is configured")?;
    let report = RefCell::new(RequestReport::default());
    let region = config.data_path.primary_region.clone();
    let database =
        Database::new(platform, database_config, &config.data_path, ReaderRegion::Known(&region), None, &report);
    let mut pipeline = Pipeline::authoritative_read();
    let pending = pipeline.push(sql::pending_user_deletions(BATCH));
    let due = pipeline.push(sql::due_deletion_rechecks(now_ms, BATCH));
    let outcome = database.run(&pipeline).await.map_err(|error| error.to_string())?;
    let pending = outcome.read(pending).map_err(|error| error.to_string())?;
    let due = outcome.read(due).map_err(|error| error.to_string())?;
    let mut delivery = DeliveryReport::default();
    // Once `notes` gives no answer, every further call would wait out the same deadline (a
    // hundred rows: over half an hour, while the next runs take the same rows): the rest
    // wait for the next run.
    let give_up = |delivery: &mut DeliveryReport, tried: usize| {
        delivery.deferred = pending.len() + due.len() - tried;
        platform.log(&format!("notes gave no answer; {} deletions wait for the next run", delivery.deferred));
    };
    for (tried, deletion) in pending.iter().enumerate() {
        match deliver(platform, &database, deletion, now_ms, config.service_deadline_ms).await {
            // No client to hand the notes token to.
            Ok(_) => delivery.delivered += 1,
            Err(failure) => {
                platform.log(&format!("deletion of user {} not delivered yet: {}", deletion.user_id, failure.why));
                delivery.failed += 1;
                if !failure.answered {
                    give_up(&mut delivery, tried + 1);
                    return Ok(delivery);
                }
            }
        }
    }
    for (tried, recheck) in due.iter().enumerate() {
        let mut record = Pipeline::write();
        let answered = match tell_notes(platform, recheck, config.service_deadline_ms).await {
            Ok(_) => {
                record.push(sql::deletion_rechecked(&recheck.id));
                delivery.rechecked += 1;
                true
            }
            Err(failure) => {
                platform.log(&format!("deletion of user {} not rechecked yet: {}", recheck.user_id, failure.why));
                record.push(sql::deletion_recheck_failed(&recheck.id, now_ms));
                delivery.recheck_failed += 1;
                failure.answered
            }
        };
        if let Err(error) = database.run(&record).await {
            platform.log(&format!("could not record the recheck of {}: {error}", recheck.id));
        }
        if !answered {
            give_up(&mut delivery, pending.len() + tried + 1);
            break;
        }
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::answered_error;

    #[test]
    fn an_answers_body_is_kept_short_in_the_error() {
        assert_eq!(answered_error(500, b"{\"error\":{}}"), "notes answered 500: {\"error\":{}}");
        let page = "é".repeat(5_000);
        let kept = answered_error(502, page.as_bytes());
        assert_eq!(kept, format!("notes answered 502: {}…", "é".repeat(200)));
        assert_eq!(answered_error(503, &[0xff, b'x']), "notes answered 503: \u{fffd}x");
    }
}
