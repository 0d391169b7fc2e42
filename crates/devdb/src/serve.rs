//! `devdb serve`: open the database, bind, announce readiness, serve until SIGINT/SIGTERM.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use crate::cli::{RoleArg, ServeArgs};
use crate::db;
use crate::server::{self, App};
use crate::state::{Faults, Role, Shared};
use crate::streams::Streams;

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let role = match (args.role, &args.primary) {
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
    let primary = role == Role::Primary;
    let (init_conn, index) = tokio::task::spawn_blocking(move || {
        let conn = db::init(&path, primary)?;
        let index = if primary { db::last_log_index(&conn)? } else { db::applied_index(&conn)? };
        Ok::<_, rusqlite::Error>((conn, index))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot open {}: {e}", args.db.display()))?;

    let faults = Faults { latency_ms: args.latency_ms, lag_ms: args.lag_ms, fail_requests: false };
    // The primary keeps its first connection as the log reader; a replica's applies replication.
    let (log_reader, apply_conn) = if primary { (Some(Mutex::new(init_conn)), None) } else { (None, Some(init_conn)) };
    let app = Arc::new(App {
        shared: Shared::new(role.clone(), index, faults),
        streams: Streams::default(),
        db_path: args.db.clone(),
        token: args.token.clone(),
        log_reader,
    });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    tokio::spawn(server::reap_streams(app.clone()));
    if let (Role::Replica { primary_url }, Some(conn)) = (role, apply_conn) {
        tokio::spawn(crate::replication::follow(app.clone(), primary_url, args.token.clone(), conn));
    }

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "devdb listening on http://{addr}");
        let _ = out.flush();
    }
    axum::serve(listener, server::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
