//! Replica side of replication: long-polls the primary's log and applies entries in order.
//!
//! Entries are row-level changesets (plus the SQL of schema changes), so the replica converges to
//! the primary's exact content even for `random()` or `datetime('now')`. The applied index is
//! committed with the data, so a killed replica resumes where it stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use serde::Deserialize;

use crate::db::{self, LogEntry};
use crate::server::App;

/// How long one poll waits on the primary for new entries.
const POLL_WAIT_MS: u64 = 5_000;
const RETRY_DELAY: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct LogPage {
    entries: Vec<LogEntry>,
}

#[derive(Debug)]
enum PullError {
    Http(reqwest::Error),
    Status(reqwest::StatusCode, String),
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Http(e) => write!(f, "request to the primary failed: {e}"),
            PullError::Status(s, body) => write!(f, "primary answered {s}: {body}"),
        }
    }
}

async fn pull(
    client: &reqwest::Client,
    primary: &str,
    token: Option<&str>,
    after: u64,
) -> Result<Vec<LogEntry>, PullError> {
    let url = format!("{}/_devdb/log?after={after}&wait_ms={POLL_WAIT_MS}", primary.trim_end_matches('/'));
    let mut req = client.get(url).timeout(Duration::from_millis(POLL_WAIT_MS + 10_000));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(PullError::Http)?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(PullError::Status(status, body));
    }
    let page: LogPage = resp.json().await.map_err(PullError::Http)?;
    Ok(page.entries)
}

/// Runs forever: pull, wait out the injected lag, apply, publish the new index.
pub async fn follow(app: Arc<App>, primary: String, token: Option<String>, conn: Connection) {
    let client = reqwest::Client::new();
    let conn = Arc::new(Mutex::new(conn));
    let mut last_error: Option<String> = None;
    loop {
        let after = app.shared.index();
        let entries = match pull(&client, &primary, token.as_deref(), after).await {
            Ok(e) => e,
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!("devdb replica: {msg} (retrying)");
                    last_error = Some(msg);
                }
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        last_error = None;
        if entries.is_empty() {
            continue;
        }
        let lag = app.shared.faults().lag_ms;
        if lag > 0 {
            tokio::time::sleep(Duration::from_millis(lag)).await;
        }
        let conn = conn.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let conn = match conn.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            db::apply_entries(&conn, &entries)
        })
        .await;
        match applied {
            Ok(Ok(idx)) => app.shared.advance_index(idx),
            Ok(Err(e)) => {
                eprintln!("devdb replica: applying the primary's log failed: {e} (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                eprintln!("devdb replica: apply task failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
