//! `devdb serve`: open the database, take up the node's stored role (or the command line's, for
//! a new file), bind, check that no newer primary exists, announce readiness, serve until
//! SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::cli::{RoleArg, ServeArgs};
use crate::db;
use crate::server::{self, App};
use crate::state::{Faults, NodeState, Role, Shared};
use crate::streams::{Streams, random_hex128};

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let configured = match (args.role, &args.primary) {
        (RoleArg::Primary, _) => Role::Primary,
        (RoleArg::Replica, Some(url)) => Role::Replica { primary_url: url.trim_end_matches('/').to_owned() },
        (RoleArg::Replica, None) => return Err("--role replica needs --primary <url>".into()),
    };
    if !crate::capture::AVAILABLE {
        return Err("this devdb was built without SQLite's session extension: set \
                    LIBSQLITE3_FLAGS=\"-DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK\" \
                    (workspace .cargo/config.toml [env]) and rebuild"
            .into());
    }
    if args.token.is_none() {
        eprintln!("devdb: warning: no --token/DEVDB_TOKEN, authentication is disabled");
    }
    let path = args.db.clone();
    let wanted = configured.clone();
    let (control, node, index, note) = tokio::task::spawn_blocking(move || {
        let conn = db::init(&path)?;
        let stored = db::load_node(&conn)?;
        let is_new = stored.is_none();
        let (node, note) = reconcile(stored, &wanted, &path.display().to_string());
        if is_new {
            db::save_node(&conn, &node)?;
        }
        let index = match node.role {
            Role::Replica { .. } => db::applied_index(&conn)?,
            _ => db::last_log_index(&conn)?,
        };
        Ok::<_, rusqlite::Error>((conn, node, index, note))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot open {}: {e}", args.db.display()))?;
    if let Some(note) = note {
        eprintln!("devdb: {note}");
    }

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let faults = Faults { latency_ms: args.latency_ms, lag_ms: args.lag_ms, fail_requests: false };
    let app = Arc::new(App {
        shared: Shared::with_node(node, index, faults),
        streams: Streams::default(),
        db_path: args.db.clone(),
        token: args.token.clone(),
        control: Mutex::new(control),
        url: args.advertise_url.map(|u| u.trim_end_matches('/').to_owned()).unwrap_or_else(|| own_url(addr)),
        configured_primary: args.primary.map(|u| u.trim_end_matches('/').to_owned()),
        http: reqwest::Client::new(),
        role_task: Mutex::new(None),
        transitions: tokio::sync::Mutex::new(()),
        peers_unsaved: std::sync::atomic::AtomicBool::new(false),
        requests: crate::cancel::Requests::default(),
        responses: Arc::default(),
    });

    // A primary that was down while another node was promoted must not take a single write:
    // it asks the peers it knows before it answers anyone.
    crate::failover::check_newer_term(&app).await;
    crate::failover::start_role_task(&app);
    tokio::spawn(server::reap_streams(app.clone()));

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "devdb listening on http://{addr}");
        let _ = out.flush();
    }
    let stopping = app.clone();
    let signalled = Arc::new(tokio::sync::Notify::new());
    let stop = signalled.clone();
    let serving = axum::serve(listener, server::router(app)).with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Graceful shutdown waits for the requests being answered, and the runtime for the
        // blocking threads running their statements: a runaway statement must not keep
        // the process alive.
        stopping.requests.interrupt_all();
        stop.notify_one();
    });
    // It also waits for every connection to finish its exchange, which a client that sent half
    // a request or does not read its answer never does: those are dropped after the grace.
    let grace = async {
        signalled.notified().await;
        tokio::time::sleep(CONNECTION_GRACE).await;
    };
    tokio::select! {
        served = serving => served.map_err(|e| e.to_string()),
        () = grace => Ok(()),
    }
}

/// How long connections get to finish their exchange after SIGINT/SIGTERM.
const CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The URL other nodes reach this one at, when `--advertise-url` does not say.
fn own_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    match addr {
        SocketAddr::V6(_) if !addr.ip().is_unspecified() => format!("http://[{host}]:{}", addr.port()),
        _ => format!("http://{host}:{}", addr.port()),
    }
}

/// What the file remembers wins over the command line, so a promotion, a fence or a re-point
/// survives a restart with the original arguments; a new file (or one from before devdb
/// stored its role) takes the command line's role. Returns a note when the two disagree.
fn reconcile(stored: Option<NodeState>, configured: &Role, file: &str) -> (NodeState, Option<String>) {
    let Some(node) = stored else {
        let cluster = if *configured == Role::Primary { random_hex128() } else { String::new() };
        return (NodeState::fresh(configured.clone(), cluster), None);
    };
    let note = (node.role.name() != configured.name()).then(|| {
        let how = match &node.role {
            Role::Primary => "use it as a replica by promoting another node (it is then fenced) and \
                              POST /_devdb/follow"
                .to_owned(),
            Role::Replica { primary_url } => format!("it follows {primary_url}; `devdb promote` makes it a primary"),
            Role::Fenced { .. } => "`devdb follow` or `devdb promote` brings it back".to_owned(),
        };
        format!(
            "{file} is a {} at term {} (its role is kept with its data); ignoring --role {}: {how}",
            node.role.name(),
            node.term,
            configured.name()
        )
    });
    (node, note)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_role_outlives_the_command_line() {
        let replica = Role::Replica { primary_url: "http://p".into() };
        let (fresh, note) = reconcile(None, &Role::Primary, "p.db");
        assert_eq!((fresh.role.clone(), fresh.term, note), (Role::Primary, 1, None));
        assert_eq!(fresh.cluster.len(), 32, "a new primary starts a cluster");
        let (fresh, _) = reconcile(None, &replica, "r.db");
        assert_eq!((fresh.term, fresh.cluster.as_str()), (0, ""), "a replica learns both from its primary");

        let mut promoted = NodeState::fresh(Role::Primary, "c".into());
        promoted.term = 2;
        let (node, note) = reconcile(Some(promoted.clone()), &replica, "r.db");
        assert_eq!(node, promoted);
        let note = note.unwrap_or_default();
        assert!(note.contains("r.db is a primary at term 2") && note.contains("ignoring --role replica"), "{note}");

        let fenced = NodeState { role: Role::Fenced { by_term: 2, primary_url: None }, ..promoted };
        let (node, note) = reconcile(Some(fenced.clone()), &Role::Primary, "p.db");
        assert_eq!((node, note.is_some()), (fenced, true));
    }
}
