//! Role changes: promoting a replica, fencing a primary that learned of a newer term,
//! re-pointing a replica (or a fenced node) at a new primary, and the primary's watch for a
//! newer term.
//!
//! Every change is stored with the data before it takes effect for clients, so it survives a
//! restart. Changes are serialized (`App::transitions`), and each one first stops the role's
//! background task (the follower or the watch) and reads the node's state back from the
//! database, because a stopped follower may have committed a page it never published.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use rusqlite::Connection;

use crate::db::{self, Position};
use crate::discovery::{self, NodeView};
use crate::server::{App, Reject, reject};
use crate::state::{MAX_TERM, NodeState, Role, TermStart};
use crate::streams::random_hex128;

/// How often a primary asks its peers whether a newer term exists. It bounds how long a
/// primary that was cut off (not killed) keeps accepting writes after another node was
/// promoted, and costs one small request per peer per tick.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Why an admin request (`/_devdb/promote`, `/_devdb/follow`) was refused.
#[derive(Debug)]
pub enum AdminError {
    /// The node's role does not allow it.
    WrongRole(String),
    /// Following would lose or mix applied changes.
    Diverged(String),
    /// The node named as primary is not one this node may follow.
    BadPrimary(String),
    /// A promotion found no term left above the highest one known ([`MAX_TERM`]).
    NoTermLeft(String),
    /// The database failed.
    Storage(String),
}

impl From<AdminError> for Reject {
    fn from(e: AdminError) -> Reject {
        match e {
            AdminError::WrongRole(m) => reject(StatusCode::CONFLICT, "WRONG_ROLE", &m),
            AdminError::Diverged(m) => reject(StatusCode::CONFLICT, "DIVERGED", &m),
            AdminError::BadPrimary(m) => reject(StatusCode::CONFLICT, "NOT_A_PRIMARY_TO_FOLLOW", &m),
            AdminError::NoTermLeft(m) => reject(StatusCode::CONFLICT, "NO_TERM_LEFT", &m),
            AdminError::Storage(m) => reject(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", &m),
        }
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        AdminError::Storage(e.to_string())
    }
}

fn control(app: &App) -> std::sync::MutexGuard<'_, Connection> {
    app.control.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&App) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || work(&app)).await.map_err(|e| AdminError::Storage(e.to_string()))?
}

/// Starts the background task of the node's current role: a replica follows its primary, a
/// primary watches for a newer term, a fenced node waits for an operator.
pub fn start_role_task(app: &Arc<App>) {
    let task = match app.shared.role() {
        Role::Replica { .. } => tokio::spawn(crate::replication::follow(app.clone())),
        Role::Primary => tokio::spawn(watch(app.clone())),
        Role::Fenced { .. } => return,
    };
    let previous = app.role_task.lock().unwrap_or_else(PoisonError::into_inner).replace(task.abort_handle());
    if let Some(previous) = previous {
        previous.abort();
    }
}

fn stop_role_task(app: &App) {
    if let Some(task) = app.role_task.lock().unwrap_or_else(PoisonError::into_inner).take() {
        task.abort();
    }
}

/// The node's state and log position as stored, published to the shared state.
async fn settle(app: &Arc<App>) -> Result<Settled, AdminError> {
    blocking(app, |app| {
        let conn = control(app);
        let node = db::load_node(&conn)?.unwrap_or_else(|| app.shared.node());
        let position = db::position(&conn)?;
        let applied = db::applied_index(&conn)?;
        let index = if matches!(node.role, Role::Replica { .. }) { applied } else { position.index };
        app.shared.update_node(|n| *n = node.clone());
        app.shared.reset_index(index);
        Ok(Settled { node, position, index })
    })
    .await
}

struct Settled {
    node: NodeState,
    /// Where the node's log ends.
    position: Position,
    /// Its replication index: a replica's applied index (which a replica file from before
    /// devdb kept the log may have beyond its log's end), else the log's end.
    index: u64,
}

/// Stores `next` (after `prepare` ran in the same transaction) and makes it the node's role;
/// open streams are closed first, so none spans two roles. Returns what `prepare` returned.
async fn commit_role<T: Send + 'static>(
    app: &Arc<App>,
    next: NodeState,
    prepare: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, AdminError> {
    let parked = app.streams.expire_all();
    blocking(app, move |app| {
        drop(parked);
        let conn = control(app);
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done = prepare(&conn).and_then(|value| {
            db::save_node(&conn, &next)?;
            conn.execute_batch("COMMIT")?;
            Ok(value)
        });
        match done {
            Ok(value) => {
                app.shared.set_node(next);
                Ok(value)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    })
    .await
}

/// Waits for a role change run as its own task, so that it runs to its end even if the caller
/// stops waiting: an HTTP client that gives up (a timeout, Ctrl-C) makes hyper drop the
/// handler's future, and a transition dropped between stopping the role task and starting it
/// again would leave the node without its follower or its watch for good.
async fn to_completion<T: Send + 'static>(
    transition: tokio::task::JoinHandle<Result<T, AdminError>>,
) -> Result<T, AdminError> {
    transition.await.map_err(|e| AdminError::Storage(format!("the role change failed: {e}")))?
}

/// Starts the role task again when dropped, however the transition that stopped it ends
/// (answered, refused, or panicked).
struct RestartRoleTask<'a>(&'a Arc<App>);

impl Drop for RestartRoleTask<'_> {
    fn drop(&mut self) {
        // The new role's task, or the old one's if the change was refused.
        start_role_task(self.0);
    }
}

/// `POST /_devdb/promote`: a replica (or a fenced node) becomes the primary at its current
/// index, at a term above every term it or any reachable peer knows.
pub async fn promote(app: &Arc<App>) -> Result<NodeView, AdminError> {
    let app = app.clone();
    to_completion(tokio::spawn(async move {
        let _one = app.transitions.lock().await;
        if let Role::Primary = app.shared.role() {
            return Err(AdminError::WrongRole(format!(
                "this node is already the primary (term {})",
                app.shared.term()
            )));
        }
        stop_role_task(&app);
        let _restart = RestartRoleTask(&app);
        promote_stopped(&app).await
    }))
    .await
}

async fn promote_stopped(app: &Arc<App>) -> Result<NodeView, AdminError> {
    let Settled { node, position, index } = settle(app).await?;
    if position.index < index {
        return Err(AdminError::WrongRole(format!(
            "this replica applied index {index} but holds the log only up to index {}: it is still \
             copying the entries it applied before devdb kept a log; try again once it has caught up",
            position.index
        )));
    }
    let survey = discovery::survey(app, discovery::candidates(app, &node)).await;
    let known = survey.highest_term(&node.cluster).map_or(0, |c| c.term).max(node.known_term());
    let Some(term) = known.checked_add(1).filter(|t| *t <= MAX_TERM) else {
        return Err(AdminError::NoTermLeft(format!(
            "the highest term known in this cluster is {known} and devdb accepts terms up to {MAX_TERM}: \
             no term is left to promote to; start a new cluster (a new primary file) and resync from it"
        )));
    };
    let mut next = node.clone();
    if next.cluster.is_empty() {
        next.cluster = random_hex128();
    }
    // The former primary stays a peer: if it comes back, this node's watch and its own
    // startup check find each other.
    if let Role::Replica { primary_url } | Role::Fenced { primary_url: Some(primary_url), .. } = &node.role {
        next.add_peer(primary_url, &app.url);
    }
    next.role = Role::Primary;
    next.term = term;
    next.terms.push(TermStart { term, from_index: position.index });
    commit_role(app, next, |_| Ok(())).await?;
    app.shared.reset_index(position.index);
    app.shared.set_diverged(None);
    eprintln!("devdb: promoted to primary at term {term}, replication index {}", position.index);
    Ok(NodeView::of(app))
}

/// `POST /_devdb/follow`: a replica or a fenced node follows `primary` from now on. Unless
/// `resync`, it first proves that its log is a prefix of the primary's (so no change it applied
/// is lost or mixed with another history) and refuses otherwise; with `resync` it drops its
/// data and copies the primary's from the start.
pub async fn follow(app: &Arc<App>, primary: &str, resync: bool) -> Result<NodeView, AdminError> {
    let primary = primary.trim_end_matches('/').to_owned();
    let app = app.clone();
    to_completion(tokio::spawn(async move {
        let _one = app.transitions.lock().await;
        if let Role::Primary = app.shared.role() {
            return Err(AdminError::WrongRole(format!(
                "this node is the primary (term {}): promote another node instead; this one is then fenced, \
                 and can follow the new primary",
                app.shared.term()
            )));
        }
        if primary == app.url {
            return Err(AdminError::WrongRole("a node cannot follow itself".into()));
        }
        stop_role_task(&app);
        let _restart = RestartRoleTask(&app);
        follow_stopped(&app, primary, resync).await
    }))
    .await
}

async fn follow_stopped(app: &Arc<App>, primary: String, resync: bool) -> Result<NodeView, AdminError> {
    let Settled { node, position, .. } = settle(app).await?;
    let view = discovery::ask(app, &primary)
        .await
        .map_err(|e| AdminError::BadPrimary(format!("{primary} did not answer as a devdb node: {e}")))?;
    if view.role != Role::Primary.name() {
        let theirs = view.primary.and_then(|p| p.url).map(|u| format!(" (it names {u})")).unwrap_or_default();
        return Err(AdminError::BadPrimary(format!("{primary} is not a primary but a {}{theirs}", view.role)));
    }
    if !resync {
        if !node.cluster.is_empty() && view.cluster != node.cluster {
            return Err(AdminError::BadPrimary(format!(
                "{primary} belongs to another cluster ({}; this node: {}); resync to join it",
                view.cluster, node.cluster
            )));
        }
        if view.term < node.known_term() {
            return Err(AdminError::BadPrimary(format!(
                "{primary} is the primary of term {}, but this node knows of term {}: it is a stale primary",
                view.term,
                node.known_term()
            )));
        }
        crate::replication::probe(app, &primary, position).await.map_err(|refusal| match refusal {
            crate::replication::ProbeError::Diverged(why) => AdminError::Diverged(format!(
                "cannot follow {primary} without losing applied changes: {why}. Send {{\"primary\": \
                 \"{primary}\", \"resync\": true}} to drop this node's data and copy the primary's"
            )),
            crate::replication::ProbeError::Other(why) => AdminError::BadPrimary(format!("{primary}: {why}")),
        })?;
    }
    let was_fenced = matches!(node.role, Role::Fenced { .. });
    let mut next = node;
    next.role = Role::Replica { primary_url: primary.clone() };
    next.add_peer(&primary, &app.url);
    if resync {
        // The replica learns cluster, term and history again from its new primary.
        next.cluster.clear();
        next.term = 0;
        next.terms.clear();
    }
    let index = commit_role(app, next, move |conn| {
        if resync {
            db::wipe(conn)?;
            Ok(0)
        } else if was_fenced {
            db::mark_log_applied(conn)
        } else {
            db::applied_index(conn)
        }
    })
    .await?;
    app.shared.reset_index(index);
    app.shared.set_diverged(None);
    eprintln!("devdb: following {primary}{}", if resync { " after dropping this node's data" } else { "" });
    Ok(NodeView::of(app))
}

/// A primary learned that term `by_term` exists: from now on it refuses every request. The
/// role changes while this connection holds SQLite's write lock, and writers read the role
/// while they hold it (`exec::run_statement`), so every write either committed before the
/// fence or is refused by it.
pub async fn fence(app: &Arc<App>, by_term: u64, primary_url: Option<String>) {
    let _one = app.transitions.lock().await;
    let node = app.shared.node();
    let newer =
        by_term > node.term || (by_term == node.term && primary_url.as_deref().is_some_and(|u| u < app.url.as_str()));
    if node.role != Role::Primary || !newer {
        return;
    }
    // Parked streams may hold the write lock inside a transaction that must not commit now.
    let parked = app.streams.expire_all();
    let url = primary_url.clone();
    let outcome = blocking(app, move |app| {
        drop(parked);
        let conn = control(app);
        let mut next = node;
        if let Some(u) = &url {
            next.add_peer(u, &app.url);
        }
        next.role = Role::Fenced { by_term, primary_url: url };
        let locked = conn.execute_batch("BEGIN IMMEDIATE");
        // Refuse from now on even if the lock could not be had (a writer held it past the busy
        // timeout): refusing is the safe side.
        app.shared.set_node(next.clone());
        locked?;
        let saved = db::save_node(&conn, &next).and_then(|()| conn.execute_batch("COMMIT"));
        if saved.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok(saved?)
    })
    .await;
    let at = primary_url.map(|u| format!(" at {u}")).unwrap_or_default();
    match outcome {
        Ok(()) => eprintln!("devdb: fenced: a primary of term {by_term}{at} exists; refusing every request"),
        Err(e) => eprintln!(
            "devdb: fenced (a primary of term {by_term}{at} exists), but could not record it ({e:?}): \
             after a restart this node serves as primary until it hears of that term again"
        ),
    }
}

/// The primary's background task: stores peers learned but not stored yet and, every
/// [`WATCH_INTERVAL`], asks them whether a newer term exists.
pub async fn watch(app: Arc<App>) {
    loop {
        if app.shared.role() != Role::Primary {
            return;
        }
        if app.peers_unsaved.load(Ordering::Relaxed) {
            save_peers(&app).await;
        }
        check_newer_term(&app).await;
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// How long storing the peers may wait for SQLite's write lock: a client's open transaction
/// must hold up neither replication (the log endpoint stores a new peer at once) nor the watch.
const SAVE_PEERS_WAIT: Duration = Duration::from_millis(100);

/// Stores the primary's state with the peers learned from replicas' polls. A new peer is
/// stored at once, because a primary killed right after would otherwise not know whom to ask
/// about newer terms when it comes back; if the write lock is busy, the watch tries again.
pub async fn save_peers(app: &Arc<App>) {
    let Ok(_one) = app.transitions.try_lock() else {
        // A role change is under way and stores the node itself.
        return;
    };
    if app.shared.role() != Role::Primary {
        return;
    }
    app.peers_unsaved.store(false, Ordering::Relaxed);
    let saved = blocking(app, |app| {
        let node = app.shared.node();
        Ok(db::save_node_within(&control(app), &node, SAVE_PEERS_WAIT)?)
    })
    .await;
    if saved.is_err() {
        app.peers_unsaved.store(true, Ordering::Relaxed);
    }
}

/// Asks the primary's peers whether a newer term exists (or a primary of the same term with a
/// lower URL, after simultaneous promotions); fences this node if so.
pub async fn check_newer_term(app: &Arc<App>) {
    let node = app.shared.node();
    if node.role != Role::Primary || node.peers.is_empty() {
        return;
    }
    let survey = discovery::survey(app, node.peers.iter().cloned()).await;
    if let Some(claim) = survey.highest_term(&node.cluster)
        && claim.term > node.term
    {
        fence(app, claim.term, claim.url).await;
        return;
    }
    if let Some(other) = survey.primary(&node.cluster)
        && other.term == node.term
        && other.url < app.url
    {
        let url = other.url.clone();
        fence(app, node.term, Some(url)).await;
    }
}
