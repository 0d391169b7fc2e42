//! The HTTP server: Hrana over HTTP (`/v2/pipeline`, `/v3/pipeline`, `/v3/cursor`), health and
//! version, and the `/_devdb/*` control endpoints (faults, stats, replication log, discovery,
//! promotion and re-pointing).
//!
//! Every Hrana response carries `x-devdb-role` and `x-devdb-term`, so a client can tell which
//! primary term answered without changing the body sqld's clients parse.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderValue;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use crate::cancel::Requests;
use crate::db::{self, Hash};
use crate::discovery::{NodeView, PrimaryRef};
use crate::errors::{self, HRANA_PROTO_ERROR, PRIMARY_FENCED, ProtocolError, fenced_message};
use crate::exec::{Reservation, ResponseMemory, Session};
use crate::proto::{
    CursorEntry, CursorReqBody, CursorRespBody, Error, PipelineReqBody, PipelineRespBody, StreamRequest, StreamResult,
};
use crate::state::{FaultsPatch, MAX_TERM, Role, Shared, Stats};
use crate::streams::{REAP_INTERVAL, STREAM_IDLE_EXPIRY, Streams};

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
    /// The server's own connection for the process's life (`db::init`). It reads the log on a
    /// primary, applies it on a replica and writes the node's state; and it keeps the database
    /// open: when SQLite's last connection to a file closes, it checkpoints and deletes the
    /// WAL, which closing each stream's connection would otherwise do on every request.
    pub control: Mutex<Connection>,
    /// This node's URL as other nodes reach it (`--advertise-url`, else the listening address).
    pub url: String,
    /// `--primary` from the command line: one more place to look for the primary.
    pub configured_primary: Option<String>,
    /// For talking to other nodes (log polls, discovery).
    pub http: reqwest::Client,
    /// The background task of the current role (`failover::start_role_task`).
    pub role_task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Role changes happen one at a time.
    pub transitions: tokio::sync::Mutex<()>,
    /// Primary: peers were learned that are not stored yet (`failover::save_peers`).
    pub peers_unsaved: std::sync::atomic::AtomicBool,
    /// Hrana requests being answered, whose statements stop when nobody waits any more.
    pub requests: Requests,
    /// The answers being built or sent, bounded together (`exec::MAX_TOTAL_RESPONSE_BYTES`).
    pub responses: Arc<ResponseMemory>,
}

impl App {
    /// A stream's connection for the current role: a primary's captures its writes, any
    /// other's is read-only.
    fn open_session(&self) -> Result<Session, Error> {
        let writable = self.shared.writable_term().is_some();
        db::open(&self.db_path, !writable).and_then(|conn| Session::new(conn, writable)).map_err(crate::exec::sql_error)
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
        .route("/_devdb/primary", get(primary))
        .route("/_devdb/promote", post(promote))
        .route("/_devdb/follow", post(follow))
        .fallback(|| async { reject(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint") })
        // After the routes: it applies to those registered before it. axum's own answer is an
        // empty body (it still sets `Allow`).
        .method_not_allowed_fallback(|| async {
            reject(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "this endpoint does not take that method")
        })
        .with_state(app)
}

/// An HTTP-level error: a status and a Hrana-style JSON body `{"message": ..., "code": ...}`,
/// plus `"primary": {"url", "term"}` when the refusal is about who the primary is.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    code: String,
    message: String,
    primary: Option<PrimaryRef>,
}

impl Reject {
    /// Names the primary the client should turn to instead.
    pub fn pointing_at(mut self, primary: PrimaryRef) -> Self {
        self.primary = Some(primary);
        self
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message, "code": self.code });
        if let Some(primary) = self.primary {
            body["primary"] = json!(primary);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

pub fn reject(status: StatusCode, code: &str, message: &str) -> Reject {
    Reject { status, code: code.to_owned(), message: message.to_owned(), primary: None }
}

/// Why this node serves no Hrana request at all right now, if it does not: a fenced former
/// primary (its data may hold writes the current primary never had) or a replica whose log
/// diverged from its primary's.
fn out_of_service(app: &App) -> Option<Reject> {
    if let Role::Fenced { by_term, primary_url } = app.shared.role() {
        let refusal =
            reject(StatusCode::SERVICE_UNAVAILABLE, PRIMARY_FENCED, &fenced_message(by_term, primary_url.as_deref()));
        return Some(refusal.pointing_at(PrimaryRef { url: primary_url, term: by_term }));
    }
    let why = app.shared.diverged()?;
    Some(reject(
        StatusCode::SERVICE_UNAVAILABLE,
        "REPLICA_DIVERGED",
        &format!(
            "devdb replica stopped following its primary and serves nothing until re-pointed \
             (POST /_devdb/follow, with \"resync\": true to drop its data): {why}"
        ),
    ))
}

/// `x-devdb-role` and `x-devdb-term` on a Hrana response.
fn with_node_headers(app: &App, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-devdb-role", HeaderValue::from_static(app.shared.role().name()));
    if let Ok(term) = HeaderValue::from_str(&app.shared.term().to_string()) {
        headers.insert("x-devdb-term", term);
    }
    response
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

/// Auth, the node's own state, injected faults, then the buffered body (bounded).
async fn admit(app: &App, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Reject> {
    authorize(app, headers)?;
    if let Some(refusal) = out_of_service(app) {
        return Err(refusal);
    }
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
        .map_err(|e| reject(StatusCode::BAD_REQUEST, HRANA_PROTO_ERROR, &format!("invalid request body: {e}")))
}

/// Takes the stream named by `baton` (or a fresh one) for the duration of a request, if it was
/// opened under the role `generation`.
fn take_session(app: &App, baton: Option<&str>, generation: u64) -> Result<Option<Session>, Reject> {
    app.streams.take(baton, generation).map_err(|e| reject(StatusCode::BAD_REQUEST, "STREAM_EXPIRED", e.message()))
}

/// Keeps the stream for the client's next request; returns its baton.
fn park_session(app: &App, session: Session, generation: u64) -> String {
    let (baton, evicted) = app.streams.park(session, generation);
    if let Some(evicted) = evicted {
        // Rolling back may touch the disk: off the async threads, without making this client wait.
        drop(tokio::task::spawn_blocking(move || drop(evicted)));
    }
    baton
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

/// A stream whose connection could not be opened.
fn failed_to_open(e: Error) -> Reject {
    reject(StatusCode::INTERNAL_SERVER_ERROR, &e.code, &e.message)
}

/// A request a correct client never sends fails the whole HTTP request, as in sqld.
fn protocol_error(ProtocolError(message): ProtocolError) -> Reject {
    reject(StatusCode::BAD_REQUEST, HRANA_PROTO_ERROR, &message)
}

fn internal(e: impl std::fmt::Display) -> Reject {
    reject(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", &e.to_string())
}

async fn pipeline(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let response = match pipeline_inner(app.clone(), headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    };
    with_node_headers(&app, response)
}

async fn pipeline_inner(app: Arc<App>, headers: HeaderMap, body: Body) -> Result<Response, Reject> {
    let bytes = admit(&app, &headers, body).await?;
    let req: PipelineReqBody = parse(&bytes)?;
    Stats::bump(&app.shared.stats.pipelines, 1);
    wait_for_index(&app, req.requests.iter().filter_map(StreamRequest::wanted_index).max()).await?;
    let generation = app.shared.current_generation();
    let taken = take_session(&app, req.baton.as_deref(), generation)?;
    let worker = app.clone();
    let in_flight = app.requests.begin();
    let cancel = in_flight.cancel();
    let (open, results, held) = tokio::task::spawn_blocking(move || {
        let mut session = match taken {
            Some(s) => s,
            None => worker.open_session().map_err(failed_to_open)?,
        };
        cancel.attach(&session);
        session.reserve(Reservation::new(&worker.responses));
        let mut closed = false;
        let mut results = Vec::with_capacity(req.requests.len());
        for r in req.requests {
            if closed {
                results.push(StreamResult::Error {
                    error: Error::new("STREAM_CLOSED", "the stream was closed earlier in this pipeline"),
                });
                continue;
            }
            if session.interrupted() {
                results.push(StreamResult::Error { error: errors::interrupted() });
                continue;
            }
            closed = matches!(r, StreamRequest::Close {});
            match session.handle(&worker.shared, r) {
                Ok(result) => results.push(result),
                Err(mistake) => {
                    // As sqld: the whole request fails and its stream is closed.
                    session.reset(&worker.shared);
                    drop(session);
                    return Err(protocol_error(mistake));
                }
            }
        }
        let held = session.take_reservation();
        if closed {
            // The stream's connection ends with it (closing it here keeps the disk work off the
            // async threads).
            session.reset(&worker.shared);
            drop(session);
            return Ok::<_, Reject>((None, results, held));
        }
        Ok((Some(session), results, held))
    })
    .await
    .map_err(internal)??;
    in_flight.answered();
    let baton = open.map(|session| park_session(&app, session, generation));
    let body = serde_json::to_vec(&PipelineRespBody { baton, base_url: None, results }).map_err(internal)?;
    Ok(held_response("application/json", body, held))
}

/// An answer whose bytes count against the total of answers in flight until they have been
/// sent: hyper asks for the next chunk of a body once it has written the previous ones, so
/// `held` is given back when the last chunk is taken, or when the body is dropped unsent.
fn held_response(content_type: &'static str, body: Vec<u8>, held: Reservation) -> Response {
    const CHUNK: usize = 64 * 1024;
    let length = HeaderValue::from(body.len());
    let chunks = futures_util::stream::unfold((bytes::Bytes::from(body), held), |(mut rest, held)| async move {
        if rest.is_empty() {
            return None;
        }
        let chunk = rest.split_to(rest.len().min(CHUNK));
        Some((Ok::<_, std::convert::Infallible>(chunk), (rest, held)))
    });
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static(content_type)), (header::CONTENT_LENGTH, length)];
    (headers, Body::from_stream(chunks)).into_response()
}

async fn cursor(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let response = match cursor_inner(app.clone(), headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    };
    with_node_headers(&app, response)
}

/// The cursor body is built in full before it is sent: results are bounded by what one
/// statement returns, and a dev server does not need backpressure.
async fn cursor_inner(app: Arc<App>, headers: HeaderMap, body: Body) -> Result<Response, Reject> {
    let bytes = admit(&app, &headers, body).await?;
    let req: CursorReqBody = parse(&bytes)?;
    Stats::bump(&app.shared.stats.cursors, 1);
    wait_for_index(&app, req.batch.wanted_index()).await?;
    let generation = app.shared.current_generation();
    let taken = take_session(&app, req.baton.as_deref(), generation)?;
    let worker = app.clone();
    let in_flight = app.requests.begin();
    let cancel = in_flight.cancel();
    let (session, entries, held) = tokio::task::spawn_blocking(move || {
        let mut session = match taken {
            Some(s) => s,
            None => worker.open_session().map_err(failed_to_open)?,
        };
        cancel.attach(&session);
        session.reserve(Reservation::new(&worker.responses));
        let outcome = session.batch(&worker.shared, &req.batch);
        let held = session.take_reservation();
        let result = match outcome {
            Ok(Ok(result)) => result,
            // The batch stopped (its answer would be too large): one `error` entry ends it.
            Ok(Err(error)) => return Ok((session, vec![CursorEntry::Error { error }], held)),
            Err(mistake) => {
                session.reset(&worker.shared);
                drop(session);
                return Err(protocol_error(mistake));
            }
        };
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
        Ok::<_, Reject>((session, entries, held))
    })
    .await
    .map_err(internal)??;
    in_flight.answered();
    let baton = park_session(&app, session, generation);
    let mut out = Vec::new();
    let head = CursorRespBody { baton: Some(baton), base_url: None };
    serde_json::to_writer(&mut out, &head).map_err(internal)?;
    out.push(b'\n');
    for e in &entries {
        serde_json::to_writer(&mut out, e).map_err(internal)?;
        out.push(b'\n');
    }
    Ok(held_response("text/plain", out, held))
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
    let view = NodeView::of(&app);
    axum::Json(json!({
        "pipelines": load(&s.pipelines),
        "cursors": load(&s.cursors),
        "statements": load(&s.statements),
        "replication_index": app.shared.index().to_string(),
        "role": view.role,
        "term": view.term,
        "primary_url": view.primary.and_then(|p| p.url),
        "cluster": view.cluster,
        "diverged": view.diverged,
        "open_streams": app.streams.open_count(),
    }))
    .into_response()
}

/// Discovery: this node's role, term and the primary it knows (see `discovery`).
async fn primary(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    axum::Json(NodeView::of(&app)).into_response()
}

async fn promote(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    match crate::failover::promote(&app).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => Reject::from(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowReq {
    primary: String,
    #[serde(default)]
    resync: bool,
}

async fn follow(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return r.into_response();
    }
    let req = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => parse::<FollowReq>(&bytes),
        Err(e) => Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE", &e.to_string())),
    };
    let req = match req {
        Ok(req) => req,
        Err(r) => return r.into_response(),
    };
    match crate::failover::follow(&app, &req.primary, req.resync).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => Reject::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default = "default_log_limit")]
    limit: u32,
    /// The follower's hash at `after`: its log must end the way this one does there.
    #[serde(default)]
    hash: Option<String>,
    /// The follower's term: a newer one than this primary's means this primary was superseded.
    #[serde(default)]
    term: Option<u64>,
    #[serde(default)]
    cluster: Option<String>,
    /// The follower's own URL, remembered as a peer.
    #[serde(default)]
    from: Option<String>,
}

fn default_log_limit() -> u32 {
    1000
}

/// Why this node does not serve its log to a follower: it is not (or no longer) the primary.
fn not_serving_log(app: &App) -> Option<Reject> {
    match app.shared.role() {
        Role::Primary => None,
        Role::Replica { primary_url } => Some(
            reject(StatusCode::CONFLICT, "NOT_PRIMARY", &format!("this node is a replica of {primary_url}"))
                .pointing_at(PrimaryRef { url: Some(primary_url), term: app.shared.term() }),
        ),
        Role::Fenced { by_term, primary_url } => Some(
            reject(StatusCode::CONFLICT, PRIMARY_FENCED, &fenced_message(by_term, primary_url.as_deref()))
                .pointing_at(PrimaryRef { url: primary_url, term: by_term }),
        ),
    }
}

/// Primary only: committed log entries after `after`, waiting up to `wait_ms` for new ones;
/// with the primary's cluster, term, term history and peers.
async fn log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    match log_inner(app, headers, query).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn log_inner(
    app: Arc<App>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, Reject> {
    authorize(&app, &headers)?;
    // The rejection is taken, not extracted, so that it answers JSON and only after the token.
    let Query(q) = query.map_err(|e| reject(StatusCode::BAD_REQUEST, "BAD_QUERY", &e.body_text()))?;
    if let Some(refusal) = not_serving_log(&app) {
        return Err(refusal);
    }
    let node = app.shared.node();
    if let Some(cluster) = q.cluster.as_deref().filter(|c| !c.is_empty())
        && cluster != node.cluster
    {
        return Err(reject(
            StatusCode::CONFLICT,
            "WRONG_CLUSTER",
            &format!("this primary belongs to cluster {}, the follower to {cluster}", node.cluster),
        ));
    }
    if let Some(term) = q.term.filter(|t| *t > MAX_TERM) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "BAD_TERM",
            &format!("term {term} is above the largest term devdb accepts ({MAX_TERM}): no devdb node holds it"),
        ));
    }
    if let Some(term) = q.term.filter(|t| *t > node.term) {
        // A follower already follows a newer term: this primary was superseded.
        crate::failover::fence(&app, term, None).await;
        return Err(not_serving_log(&app).unwrap_or_else(|| internal("fencing failed")));
    }
    if let Some(from) = q.from.as_deref()
        && app.shared.update_node(|n| n.add_peer(from, &app.url))
    {
        app.peers_unsaved.store(true, std::sync::atomic::Ordering::Relaxed);
        crate::failover::save_peers(&app).await;
    }
    let hash = match q.hash.as_deref() {
        Some(h) => {
            Some(Hash::parse(h).ok_or_else(|| reject(StatusCode::BAD_REQUEST, "BAD_HASH", "hash is 64 hex digits"))?)
        }
        None => None,
    };
    check_position(&app, q.after, hash, q.term).await?;
    let mut rx = app.shared.index.subscribe();
    let mut roles = app.shared.generation.subscribe();
    let wait = Duration::from_millis(q.wait_ms).min(MAX_LOG_WAIT);
    tokio::select! {
        _ = tokio::time::timeout(wait, rx.wait_for(|idx| *idx > q.after)) => {}
        _ = roles.changed() => {}
    }
    if let Some(refusal) = not_serving_log(&app) {
        return Err(refusal);
    }
    let worker = app.clone();
    let limit = q.limit.clamp(1, 10_000);
    let entries = tokio::task::spawn_blocking(move || {
        let conn = worker.control.lock().unwrap_or_else(PoisonError::into_inner);
        db::read_log(&conn, q.after, limit).map_err(crate::exec::sql_error)
    })
    .await
    .map_err(internal)?
    .map_err(|e| reject(StatusCode::INTERNAL_SERVER_ERROR, &e.code, &e.message))?;
    let node = app.shared.node();
    Ok(axum::Json(json!({
        "cluster": node.cluster,
        "term": node.term,
        "terms": node.terms,
        "peers": node.peers,
        "entries": entries,
    }))
    .into_response())
}

/// A follower at `after` (with `hash` there) may go on from this log only if this log has
/// that entry, with that hash: otherwise the two histories differ and following would mix them.
async fn check_position(
    app: &Arc<App>,
    after: u64,
    hash: Option<Hash>,
    follower_term: Option<u64>,
) -> Result<(), Reject> {
    let worker = app.clone();
    let (ours, last) = tokio::task::spawn_blocking(move || {
        let conn = worker.control.lock().unwrap_or_else(PoisonError::into_inner);
        Ok::<_, rusqlite::Error>((db::hash_at(&conn, after)?, db::last_log_index(&conn)?))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let node = app.shared.node();
    let problem = match (ours, hash) {
        (None, _) => format!("the follower's log goes on to index {after}, past this primary's last index {last}"),
        (Some(ours), Some(theirs)) if ours != theirs => {
            format!("the follower's entry {after} differs from this primary's: the logs diverged at or before it")
        }
        _ => return Ok(()),
    };
    // Where this history left the follower's term, if it did: the follower's entries after
    // that index were written by a primary this history superseded.
    let fork = follower_term
        .and_then(|t| node.terms.iter().find(|s| s.term > t))
        .filter(|s| s.from_index < after)
        .map(|s| {
            format!(
                "; this history moved to term {} at index {}, so the follower's {} entries after index {} \
                 were never part of it",
                s.term,
                s.from_index,
                after - s.from_index,
                s.from_index
            )
        })
        .unwrap_or_default();
    Err(reject(StatusCode::CONFLICT, "DIVERGED", &format!("{problem} (primary term {}){fork}", node.term)))
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
