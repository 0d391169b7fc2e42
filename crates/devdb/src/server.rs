//! The HTTP server: Hrana over HTTP (`/v2/pipeline`, `/v3/pipeline`, `/v3/cursor`), health and
//! version, and the `/_devdb/*` control endpoints (faults, stats, replication log).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use crate::db;
use crate::exec::Session;
use crate::proto::{
    CursorEntry, CursorReqBody, CursorRespBody, Error, PipelineReqBody, PipelineRespBody, StreamRequest, StreamResult,
};
use crate::state::{FaultsPatch, Role, Shared, Stats};
use crate::streams::{REAP_INTERVAL, STREAM_IDLE_EXPIRY, Streams, TakeError};

/// Larger bodies answer 413: a dev server has no business buffering more.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a request that names a replication index waits for this server to reach it.
const INDEX_WAIT: Duration = Duration::from_secs(5);
/// Replicas long-poll the log for at most this long.
const MAX_LOG_WAIT: Duration = Duration::from_secs(10);

pub struct App {
    pub shared: Shared,
    pub streams: Streams,
    pub db_path: PathBuf,
    /// `None` disables authentication (the binary warns about it).
    pub token: Option<String>,
    /// Primary: the server's own connection for the process's life. It reads the log for
    /// replicas, and it keeps the database open: when SQLite's last connection to a file
    /// closes, it checkpoints and deletes the WAL, which closing each stream's connection
    /// would otherwise do on every request.
    pub log_reader: Option<Mutex<Connection>>,
}

impl App {
    fn open_session(&self) -> Result<Session, Error> {
        let read_only = matches!(self.shared.role, Role::Replica { .. });
        db::open(&self.db_path, read_only)
            .and_then(|conn| Session::new(conn, !read_only))
            .map_err(crate::exec::sql_error)
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/version", get(|| async { concat!("devdb ", env!("CARGO_PKG_VERSION")) }))
        .route("/v2", get(|| async { StatusCode::OK }))
        .route("/v3", get(|| async { StatusCode::OK }))
        .route("/v2/pipeline", post(pipeline))
        .route("/v3/pipeline", post(pipeline))
        .route("/v3/cursor", post(cursor))
        .route("/_devdb/faults", get(get_faults).post(post_faults))
        .route("/_devdb/stats", get(stats))
        .route("/_devdb/log", get(log))
        .fallback(|| async { reject(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint") })
        .with_state(app)
}

/// An HTTP-level error: a status and a Hrana-style JSON body `{"message": ..., "code": ...}`.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    code: String,
    message: String,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.message, "code": self.code });
        (self.status, axum::Json(body)).into_response()
    }
}

pub fn reject(status: StatusCode, code: &str, message: &str) -> Reject {
    Reject { status, code: code.to_owned(), message: message.to_owned() }
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Reject> {
    let Some(token) = &app.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(reject(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing or wrong `Authorization: Bearer <token>`"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Auth, injected faults, then the buffered body (bounded).
async fn admit(app: &App, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Reject> {
    authorize(app, headers)?;
    let faults = app.shared.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.fail_requests {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "FAULT_INJECTED",
            "devdb is failing requests on purpose (POST /_devdb/faults)",
        ));
    }
    read_bounded(body, MAX_BODY_BYTES).await.ok_or_else(|| {
        reject(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE", &format!("request body exceeds {MAX_BODY_BYTES} bytes"))
    })
}

/// Up to this much of an oversized body is read and discarded before answering 413, so that
/// ordinary clients see the answer rather than a reset connection; beyond it, the connection
/// is dropped.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// The whole body if it fits in `limit` bytes, else `None` (after draining what is reasonable).
async fn read_bounded(body: Body, limit: usize) -> Option<bytes::Bytes> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        seen = seen.saturating_add(chunk.len());
        if seen > MAX_DRAIN_BYTES {
            return None;
        }
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    (seen <= limit).then(|| buf.freeze())
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(bytes)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, "HRANA_PROTO_ERROR", &format!("invalid request body: {e}")))
}

/// Takes the stream named by `baton` (or a fresh one) for the duration of a request.
fn take_session(app: &App, baton: Option<&str>) -> Result<Option<Session>, Reject> {
    app.streams.take(baton).map_err(|e| {
        let status = match e {
            TakeError::UnknownBaton => StatusCode::BAD_REQUEST,
            TakeError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
        };
        let code = match e {
            TakeError::UnknownBaton => "STREAM_EXPIRED",
            TakeError::TooManyStreams => "TOO_MANY_STREAMS",
        };
        reject(status, code, e.message())
    })
}

/// Read-your-writes: a request carrying `replication_index` runs only once this server has
/// applied that index (immediately on the primary, which is always current).
async fn wait_for_index(app: &App, wanted: Option<u64>) -> Result<(), Reject> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let mut rx = app.shared.index.subscribe();
    match tokio::time::timeout(INDEX_WAIT, rx.wait_for(|idx| *idx >= wanted)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "REPLICATION_INDEX_TIMEOUT",
            &format!("replication index {wanted} not reached within {INDEX_WAIT:?} (at {})", app.shared.index()),
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> Reject {
    reject(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", &e.to_string())
}

async fn pipeline(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match pipeline_inner(app, headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn pipeline_inner(app: Arc<App>, headers: HeaderMap, body: Body) -> Result<Response, Reject> {
    let bytes = admit(&app, &headers, body).await?;
    let req: PipelineReqBody = parse(&bytes)?;
    Stats::bump(&app.shared.stats.pipelines, 1);
    wait_for_index(&app, req.requests.iter().filter_map(StreamRequest::wanted_index).max()).await?;
    let taken = take_session(&app, req.baton.as_deref())?;
    let worker = app.clone();
    let (open, results) = tokio::task::spawn_blocking(move || {
        let mut session = match taken {
            Some(s) => s,
            None => worker.open_session()?,
        };
        let mut closed = false;
        let mut results = Vec::with_capacity(req.requests.len());
        for r in req.requests {
            if closed {
                results.push(StreamResult::Error {
                    error: Error::new("STREAM_CLOSED", "the stream was closed earlier in this pipeline"),
                });
                continue;
            }
            closed = matches!(r, StreamRequest::Close {});
            results.push(match session.handle(&worker.shared, r) {
                Ok(response) => StreamResult::Ok { response },
                Err(error) => StreamResult::Error { error },
            });
        }
        if closed {
            // The stream's connection ends with it (closing it here keeps the disk work off the
            // async threads).
            session.reset(&worker.shared);
            drop(session);
            return Ok::<_, Error>((None, results));
        }
        Ok((Some(session), results))
    })
    .await
    .map_err(internal)?
    .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, &e.code, &e.message))?;
    let baton = open.map(|session| app.streams.park(session));
    Ok(axum::Json(PipelineRespBody { baton, base_url: None, results }).into_response())
}

async fn cursor(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match cursor_inner(app, headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

/// The cursor body is built in full before it is sent: results are bounded by what one
/// statement returns, and a dev server does not need backpressure.
async fn cursor_inner(app: Arc<App>, headers: HeaderMap, body: Body) -> Result<Response, Reject> {
    let bytes = admit(&app, &headers, body).await?;
    let req: CursorReqBody = parse(&bytes)?;
    Stats::bump(&app.shared.stats.cursors, 1);
    wait_for_index(&app, req.batch.wanted_index()).await?;
    let taken = take_session(&app, req.baton.as_deref())?;
    let worker = app.clone();
    let (session, entries) = tokio::task::spawn_blocking(move || {
        let mut session = match taken {
            Some(s) => s,
            None => worker.open_session()?,
        };
        let result = session.batch(&worker.shared, &req.batch);
        let mut entries = Vec::new();
        for (i, (res, err)) in result.step_results.into_iter().zip(result.step_errors).enumerate() {
            let step = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(error) = err {
                entries.push(CursorEntry::StepError { step, error });
            } else if let Some(r) = res {
                entries.push(CursorEntry::StepBegin { step, cols: r.cols });
                entries.extend(r.rows.into_iter().map(|row| CursorEntry::Row { row }));
                entries.push(CursorEntry::StepEnd {
                    affected_row_count: r.affected_row_count,
                    last_insert_rowid: r.last_insert_rowid,
                    last_inserted_rowid: r.last_insert_rowid,
                });
            }
        }
        Ok::<_, Error>((session, entries))
    })
    .await
    .map_err(internal)?
    .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, &e.code, &e.message))?;
    let baton = app.streams.park(session);
    let mut out = Vec::new();
    let head = CursorRespBody { baton: Some(baton), base_url: None };
    serde_json::to_writer(&mut out, &head).map_err(internal)?;
    out.push(b'\n');
    for e in &entries {
        serde_json::to_writer(&mut out, e).map_err(internal)?;
        out.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain")], out).into_response())
}

async fn get_faults(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    axum::Json(app.shared.faults()).into_response()
}

async fn post_faults(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return reject(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE", &e.to_string()).into_response();
        }
    };
    match parse::<FaultsPatch>(&bytes) {
        Ok(patch) => axum::Json(app.shared.patch_faults(&patch)).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let s = &app.shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    axum::Json(json!({
        "pipelines": load(&s.pipelines),
        "cursors": load(&s.cursors),
        "statements": load(&s.statements),
        "replication_index": app.shared.index().to_string(),
        "role": app.shared.role.name(),
        "open_streams": app.streams.open_count(),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default = "default_log_limit")]
    limit: u32,
}

fn default_log_limit() -> u32 {
    1000
}

/// Primary only: committed log entries after `after`, waiting up to `wait_ms` for new ones.
async fn log(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<LogQuery>) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    if app.shared.role != Role::Primary || app.log_reader.is_none() {
        return reject(StatusCode::NOT_FOUND, "NOT_PRIMARY", "only a primary serves its log").into_response();
    }
    let mut rx = app.shared.index.subscribe();
    let wait = Duration::from_millis(q.wait_ms).min(MAX_LOG_WAIT);
    let _ = tokio::time::timeout(wait, rx.wait_for(|idx| *idx > q.after)).await;
    let worker = app.clone();
    let limit = q.limit.clamp(1, 10_000);
    let read = tokio::task::spawn_blocking(move || {
        let Some(reader) = &worker.log_reader else {
            return Ok(Vec::new());
        };
        let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
        db::read_log(&conn, q.after, limit).map_err(crate::exec::sql_error)
    })
    .await;
    match read {
        Ok(Ok(entries)) => axum::Json(json!({ "entries": entries })).into_response(),
        Ok(Err(e)) => reject(StatusCode::INTERNAL_SERVER_ERROR, &e.code, &e.message).into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// Closes streams left idle (their transactions roll back), once a second.
pub async fn reap_streams(app: Arc<App>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tick.tick().await;
        let stale = app.streams.expire(STREAM_IDLE_EXPIRY);
        if !stale.is_empty() {
            // Rolling back may touch the disk: keep it off the async threads.
            let _ = tokio::task::spawn_blocking(move || drop(stale)).await;
        }
    }
}
