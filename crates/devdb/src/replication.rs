//! Replica side of replication: long-polls the primary's log and applies entries in order.
//!
//! Entries are row-level changesets (plus the SQL of schema changes), so the replica converges to
//! the primary's exact content even for `random()` or `datetime('now')`. The applied index and
//! the entries themselves are committed with the data, so a killed replica resumes where it
//! stopped and a promoted one can serve the whole log.
//!
//! Every poll carries the replica's position (its last entry's index and chained hash), its
//! term and its cluster. The primary refuses a position its log does not contain (`DIVERGED`):
//! the replica then stops and says so instead of mixing two histories. When its primary stops
//! answering, or answers that it is fenced or no primary, the replica looks for the primary with
//! the highest term among the nodes it knows (`discovery`) and follows it.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::db::{self, ApplyError, LogEntry, Position};
use crate::discovery::{self, PrimaryRef};
use crate::server::App;
use crate::state::{MAX_TERM, Role, TermStart};

/// How long one poll waits on the primary for new entries.
const POLL_WAIT_MS: u64 = 5_000;
const PAGE_LIMIT: u32 = 1_000;
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// How long a primary may fail to answer before the replica looks for another one.
const REDISCOVER_AFTER: Duration = Duration::from_secs(1);

/// One answer of `GET /_devdb/log`.
#[derive(Deserialize)]
struct LogPage {
    cluster: String,
    term: u64,
    terms: Vec<TermStart>,
    peers: Vec<String>,
    entries: Vec<LogEntry>,
}

/// A devdb refusal's body: `{"message", "code", "primary"?}`.
#[derive(Deserialize)]
struct Refusal {
    code: String,
    message: String,
    #[serde(default)]
    primary: Option<PrimaryRef>,
}

#[derive(Debug)]
enum PullError {
    Http(reqwest::Error),
    /// devdb said no, and why (`DIVERGED`, `PRIMARY_FENCED`, `NOT_PRIMARY`, `WRONG_CLUSTER`).
    Refused {
        code: String,
        message: String,
        primary: Option<PrimaryRef>,
    },
    Status(reqwest::StatusCode, String),
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Http(e) => write!(f, "request to the primary failed: {e}"),
            PullError::Refused { code, message, .. } => write!(f, "primary refused: {message} ({code})"),
            PullError::Status(s, body) => write!(f, "primary answered {s}: {body}"),
        }
    }
}

async fn pull(app: &App, primary: &str, at: Position, wait_ms: u64, limit: u32) -> Result<LogPage, PullError> {
    let node = app.shared.node();
    let url = format!("{}/_devdb/log", primary.trim_end_matches('/'));
    let query = [
        ("after", at.index.to_string()),
        ("hash", at.hash.to_string()),
        ("term", node.term.to_string()),
        ("cluster", node.cluster),
        ("from", app.url.clone()),
        ("wait_ms", wait_ms.to_string()),
        ("limit", limit.to_string()),
    ];
    let mut req = app.http.get(url).query(&query).timeout(Duration::from_millis(wait_ms + 10_000));
    if let Some(t) = &app.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(PullError::Http)?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(match serde_json::from_str::<Refusal>(&body) {
            Ok(r) if status.is_client_error() => {
                PullError::Refused { code: r.code, message: r.message, primary: r.primary }
            }
            _ => PullError::Status(status, body),
        });
    }
    resp.json().await.map_err(PullError::Http)
}

/// Why a node may not follow a primary, found before it switches.
#[derive(Debug)]
pub enum ProbeError {
    /// The primary's log does not contain this node's position.
    Diverged(String),
    Other(String),
}

/// Asks `primary` whether this node's log, ending at `at`, is a prefix of its own.
pub async fn probe(app: &App, primary: &str, at: Position) -> Result<(), ProbeError> {
    match pull(app, primary, at, 0, 1).await {
        Ok(_) => Ok(()),
        Err(PullError::Refused { code, message, .. }) if code == "DIVERGED" => Err(ProbeError::Diverged(message)),
        Err(e) => Err(ProbeError::Other(e.to_string())),
    }
}

async fn position(app: &Arc<App>) -> Result<Position, String> {
    let worker = app.clone();
    tokio::task::spawn_blocking(move || {
        let conn = worker.control.lock().unwrap_or_else(PoisonError::into_inner);
        db::position(&conn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Prints each distinct problem once, and remembers since when the primary has been failing.
#[derive(Default)]
struct Trouble {
    last: Option<String>,
    since: Option<Instant>,
}

impl Trouble {
    fn note(&mut self, what: String) {
        if self.last.as_deref() != Some(what.as_str()) {
            eprintln!("devdb replica: {what} (retrying)");
            self.last = Some(what);
        }
        self.since.get_or_insert_with(Instant::now);
    }

    fn failing_for(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    fn clear(&mut self) {
        self.last = None;
        self.since = None;
    }
}

enum Next {
    Continue,
    Rediscover,
    Stop,
}

/// The replica's background task: pull, wait out the injected lag, apply, publish the new
/// index; find another primary when this one fails or refuses; stop when the logs diverge.
pub async fn follow(app: Arc<App>) {
    let mut trouble = Trouble::default();
    // The primary this node was configured with or followed last may not be the newest.
    rediscover(&app, None).await;
    loop {
        let Role::Replica { primary_url } = app.shared.role() else {
            return;
        };
        let at = match position(&app).await {
            Ok(at) => at,
            Err(e) => {
                trouble.note(format!("cannot read this node's log position: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let next = match pull(&app, &primary_url, at, POLL_WAIT_MS, PAGE_LIMIT).await {
            Ok(page) => {
                trouble.clear();
                take_page(&app, &primary_url, page).await
            }
            Err(PullError::Refused { code, message, .. }) if code == "DIVERGED" => {
                diverge(&app, format!("{primary_url} refused this node's log position: {message}"));
                Next::Stop
            }
            Err(PullError::Refused { code, message, primary }) => {
                trouble.note(format!("{primary_url} refused: {message} ({code})"));
                rediscover(&app, primary.and_then(|p| p.url)).await;
                tokio::time::sleep(RETRY_DELAY).await;
                Next::Continue
            }
            Err(e) => {
                trouble.note(e.to_string());
                if trouble.failing_for() >= REDISCOVER_AFTER {
                    rediscover(&app, None).await;
                    trouble.since = Some(Instant::now());
                }
                tokio::time::sleep(RETRY_DELAY).await;
                Next::Continue
            }
        };
        match next {
            Next::Continue => {}
            Next::Rediscover => {
                rediscover(&app, None).await;
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Next::Stop => return,
        }
    }
}

fn diverge(app: &App, why: String) {
    eprintln!("devdb replica: stopped following: {why}");
    app.shared.set_diverged(Some(why));
}

/// Checks a page against this node's cluster and term, then applies it (adopting the
/// primary's term, history and peers in the same transaction).
async fn take_page(app: &Arc<App>, primary_url: &str, page: LogPage) -> Next {
    let node = app.shared.node();
    if !node.cluster.is_empty() && page.cluster != node.cluster {
        eprintln!("devdb replica: {primary_url} belongs to another cluster ({})", page.cluster);
        return Next::Rediscover;
    }
    if page.term > MAX_TERM {
        eprintln!("devdb replica: {primary_url} claims term {}, above the largest devdb accepts", page.term);
        return Next::Rediscover;
    }
    if page.term < node.term {
        eprintln!(
            "devdb replica: {primary_url} is a primary of term {}, older than this node's {}",
            page.term, node.term
        );
        return Next::Rediscover;
    }
    let mut next = node.clone();
    next.cluster = page.cluster;
    next.term = page.term;
    next.terms = page.terms;
    for peer in page.peers.iter().map(String::as_str).chain([primary_url]) {
        next.add_peer(peer, &app.url);
    }
    let changed = next != node;
    if page.entries.is_empty() && !changed {
        return Next::Continue;
    }
    let lag = app.shared.faults().lag_ms;
    if lag > 0 && !page.entries.is_empty() {
        tokio::time::sleep(Duration::from_millis(lag)).await;
    }
    let worker = app.clone();
    let entries = page.entries;
    let stored = next.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let conn = worker.control.lock().unwrap_or_else(PoisonError::into_inner);
        db::apply_page(&conn, &entries, changed.then_some(&stored))
    })
    .await;
    match applied {
        Ok(Ok(idx)) => {
            if changed {
                app.shared.update_node(|n| {
                    n.cluster = next.cluster;
                    n.term = next.term;
                    n.terms = next.terms;
                    n.peers = next.peers;
                });
            }
            app.shared.advance_index(idx);
            Next::Continue
        }
        Ok(Err(ApplyError::Diverged { idx })) => {
            diverge(app, format!("entry {idx} from {primary_url} does not extend this node's log"));
            Next::Stop
        }
        Ok(Err(e)) => {
            eprintln!("devdb replica: applying the primary's log failed: {e} (retrying)");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Next::Continue
        }
        Err(e) => {
            eprintln!("devdb replica: apply task failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Next::Continue
        }
    }
}

/// Follows the primary with the highest term this node can find among the nodes it knows (and
/// `hint`), if that is not the one it follows already; never a primary older than this node's
/// term. The switch is stored with the data.
async fn rediscover(app: &Arc<App>, hint: Option<String>) {
    let node = app.shared.node();
    let Role::Replica { primary_url } = &node.role else {
        return;
    };
    let mut urls = discovery::candidates(app, &node);
    urls.extend(hint);
    let survey = discovery::survey(app, urls).await;
    let Some(best) = survey.primary(&node.cluster) else {
        return;
    };
    // Already following it (perhaps under another name, such as a proxy's), or it is older.
    if best.url == *primary_url || survey.reached_at(primary_url, best) || best.term < node.term {
        return;
    }
    let mut next = node.clone();
    next.role = Role::Replica { primary_url: best.url.clone() };
    next.add_peer(&best.url, &app.url);
    let worker = app.clone();
    let stored = next.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let conn = worker.control.lock().unwrap_or_else(PoisonError::into_inner);
        db::save_node(&conn, &stored)
    })
    .await;
    match saved {
        Ok(Ok(())) => {
            eprintln!("devdb replica: following {} (term {}) instead of {primary_url}", best.url, best.term);
            app.shared.update_node(|n| *n = next);
        }
        Ok(Err(e)) => eprintln!("devdb replica: cannot record the new primary {}: {e}", best.url),
        Err(e) => eprintln!("devdb replica: cannot record the new primary {}: {e}", best.url),
    }
}
