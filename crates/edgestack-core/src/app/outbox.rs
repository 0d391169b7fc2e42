//! Account deletion across services without a distributed transaction: `accounts` deletes the
//! user and writes an outbox row in one transaction, then tells `notes` (an idempotent internal
//! call). A delivery that fails leaves the row; the cron trigger retries every pending row
//! until `notes` acknowledges, and only then is the row removed.

use std::cell::RefCell;

use crate::accounts::sql;
use crate::config::Config;
use crate::db::Pipeline;
use crate::routes::Method;
use crate::services::Service;

use super::{Database, Platform, ReaderRegion, RequestReport, ServiceRequest};

/// Rows one cron run works through; the rest wait a minute.
const BATCH: i64 = 100;

/// One outbox row: a deleted user whose notes may still exist.
pub struct PendingDeletion {
    pub id: String,
    pub user_id: String,
}

/// Tells `notes` and removes the row once it acknowledged; otherwise records the attempt.
pub async fn deliver<P: Platform>(
    platform: &P,
    database: &Database<'_, P>,
    deletion: &PendingDeletion,
    now_ms: i64,
) -> Result<(), String> {
    let request = ServiceRequest::internal(Method::Delete, &format!("/internal/users/{}/notes", deletion.user_id));
    let failure = match platform.call_service(Service::Notes, request).await {
        Ok(response) if (200..300).contains(&response.status) => {
            let delivered = Pipeline::write(vec![sql::user_deletion_delivered(&deletion.id)]);
            return database.run(&delivered).await.map(|_| ()).map_err(|error| error.to_string());
        }
        Ok(response) => format!("notes answered {}: {}", response.status, String::from_utf8_lossy(&response.body)),
        Err(error) => error,
    };
    let attempt = Pipeline::write(vec![sql::user_deletion_failed(&deletion.id, now_ms, &failure)]);
    if let Err(error) = database.run(&attempt).await {
        platform.log(&format!("could not record the failed delivery of {}: {error}", deletion.id));
    }
    Err(failure)
}

/// What a cron run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub failed: usize,
}

/// The cron trigger's work: every pending deletion, oldest first.
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
    let outcome = database
        .run(&Pipeline::authoritative_read(vec![sql::pending_user_deletions(BATCH)]))
        .await
        .map_err(|error| error.to_string())?;
    let pending: Vec<PendingDeletion> = outcome
        .rows(0)
        .map_err(|error| error.to_string())?
        .iter()
        .filter_map(|row| Some(PendingDeletion { id: row.text("id")?.into(), user_id: row.text("user_id")?.into() }))
        .collect();
    let mut delivery = DeliveryReport::default();
    for deletion in &pending {
        match deliver(platform, &database, deletion, now_ms).await {
            Ok(()) => delivery.delivered += 1,
            Err(error) => {
                platform.log(&format!("deletion of user {} not delivered yet: {error}", deletion.user_id));
                delivery.failed += 1;
            }
        }
    }
    Ok(delivery)
}
