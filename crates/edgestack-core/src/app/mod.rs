//! The whole API as a function: an `ApiRequest` in, an `ApiResponse` out, with the runtime's
//! I/O behind the small [`Platform`] trait. The worker implements `Platform` on workers-rs;
//! nothing here knows about wasm.
//!
//! Each handler's doc gives its method, path, body, answer and errors, and links to
//! [docs/api.md](../../../../docs/api.md). Two groups recur there: *the body errors* —
//! `415 unsupported_media_type` / `unsupported_content_encoding`, `413 body_too_large`,
//! `400 empty_body` / `invalid_json` / `invalid_body`, and from the worker's edge, which reads
//! the body, `408 body_timeout` and `400 invalid_content_length` / `unreadable_body` — and
//! *the database errors* — `503 database_not_configured` or
//! `database_unavailable` (with `Retry-After`), `502 database_error`, `500 internal`. Before any
//! handler, the router may answer `404 not_found`, `405 method_not_allowed` (with `Allow`),
//! `403 csrf` (state changes), `500 misconfigured` or `500 injected_fault`; internal routes also
//! `400 unsupported_internal_api`. `error.rs` holds every status and code.

mod accounts;
mod cache;
mod database;
mod entry;
mod notes;
mod outbox;
mod request_headers;
mod system;

use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::password::{CURRENT_COST, PasswordHasher};
use crate::accounts::session::{COOKIE_NAME as SESSION_COOKIE, SessionAuth, SessionToken};
use crate::assets;
use crate::cache::{CacheVersion, MemoryCache};
use crate::caller::Caller;
use crate::conditional::{IfMatch, IfNoneMatch, Preconditions};
use crate::config::{Config, ConfigError, InjectedFault};
use crate::cookies;
use crate::csrf::{self, CLIENT_HEADER, CsrfEvidence};
use crate::datapath::{CircuitBreakers, ConsistencyToken, HranaAnswer, PrimaryState, Requirement};
use crate::db::Pipeline;
use crate::error::ApiError;
use crate::health::VersionInfo;
use crate::json_body::{BodyError, check_identity_encoding, check_json_content_type, parse_json_object};
use crate::region::{DEV_REGION_HEADER, Location, RegionName, RequestRegion};
use crate::routes::{Method, Route, resolve};
use crate::services::Service;
use crate::services::identity::IDENTITY_HEADER;
use crate::services::internal_api::{self, InternalRequest};

pub use database::{Database, ReaderRegion, refresh_primary_record};
pub use outbox::{DeliveryReport, RECHECK_AFTER_MS, deliver_pending_deletions};
pub use request_headers::{HeaderSource, RequestHeaders};

/// A request as the core needs it; the worker fills it from the runtime.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// Only [`API_REQUEST_HEADERS`], each read when first asked for.
    pub headers: RequestHeaders,
    pub body: Vec<u8>,
    /// `scheme://host[:port]` of the request URL, for the CSRF check.
    pub origin: String,
    pub now_ms: i64,
    /// The region the request named and the edge honoured (development, or a service reached
    /// through the entry); otherwise the region is the runtime's [`Platform::location`].
    pub region_override: Option<RegionName>,
    pub version: VersionInfo,
}

impl ApiRequest {
    /// The region a request may name for itself: its [`DEV_REGION_HEADER`], else the configured
    /// development default — honoured only in development, or on a service reached through the
    /// entry (which always names the region it detected), and the header is read only then.
    pub fn region_override(config: Option<&Config>, headers: &RequestHeaders) -> Option<RegionName> {
        let config = config?;
        if !(config.is_development() || matches!(config.service, Service::Accounts | Service::Notes)) {
            return None;
        }
        let named = headers.get(DEV_REGION_HEADER).or(config.dev_region.as_ref().map(RegionName::as_str));
        RegionName::from_override(named, true)
    }

    /// The client's address as Cloudflare's edge gives it (`cf-connecting-ip`).
    pub fn client_ip(&self) -> Option<&str> {
        self.header("cf-connecting-ip")
    }

    /// The value of one of [`API_REQUEST_HEADERS`] (see [`RequestHeaders::get`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The values of every cookie named `name` in the `Cookie` header (see [`cookies`]).
    pub fn cookies<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.header("cookie").into_iter().flat_map(move |value| cookies::values(value, name))
    }

    /// The `Cookie` header as a service hop forwards it.
    pub fn cookie_header(&self) -> String {
        self.header("cookie").unwrap_or_default().to_string()
    }

    /// Where the request is served, with the colo, as `/api/health` reports it.
    pub fn region<P: Platform>(&self, platform: &P) -> RequestRegion {
        RequestRegion::new(self.region_override.clone(), &platform.location())
    }

    /// The region that picks replicas: the honoured override, else the runtime's location —
    /// read only here, when a decision needs it.
    pub fn region_name<P: Platform>(&self, platform: &P) -> RegionName {
        self.region_override.clone().unwrap_or_else(|| RegionName::of(&platform.location()))
    }

    /// The first well-formed session token among the session cookies.
    pub fn session_token(&self) -> Option<SessionToken> {
        self.cookies(SESSION_COOKIE).find_map(SessionToken::parse)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(body).map_err(|_| ApiError::Internal)?;
        Ok(Self { status, headers: vec![("Content-Type".into(), "application/json".into())], body })
    }

    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    /// The error's JSON body and headers. Its cause is not logged here: inside the core,
    /// [`error_response`] does that; the worker's own errors have no hidden cause.
    pub fn error(error: &ApiError) -> Self {
        let described = error.describe();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(described.header.as_ref().map(|(name, value)| (name.to_string(), value.to_string())));
        Self { status: described.status, headers, body: described.body_json().into_bytes() }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// A request from one service to another over a service binding. The URL's host is ignored by
/// the binding; the path and query are what the other service routes on.
#[derive(Debug, Clone)]
pub struct ServiceRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ServiceRequest {
    /// An internal API call: it names the internal API version this build speaks.
    pub fn internal(request: InternalRequest<'_>) -> Self {
        Self {
            method: request.method(),
            url: format!("https://internal{}", request.path()),
            headers: vec![(internal_api::VERSION_HEADER.to_string(), internal_api::CURRENT.to_string())],
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// The rate limits the API applies through the runtime's limiter (per key, per window). The
/// per-account sign-in limit is not one of them: it lives in the accounts database, global and
/// progressive (`accounts::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// Untrusted sign-in attempts from one client address, whatever the account.
    SignInPerClient,
    /// Sign-in attempts from one trusted device, and password confirmations in one session.
    SignInPerDevice,
    /// Sign-ups from one client address.
    SignUpPerClient,
}

/// The request headers the API reads — all it is given: reading every header of a request costs
/// the runtime more than a health check (docs/performance.md), and the entry forwards only
/// these to the services, which read nothing else.
pub const API_REQUEST_HEADERS: &[&str] = &[
    "cookie",
    "content-type",
    "content-encoding",
    "origin",
    "sec-fetch-site",
    CLIENT_HEADER,
    "if-none-match",
    "if-match",
    "cf-connecting-ip",
    DEV_REGION_HEADER,
    IDENTITY_HEADER,
    internal_api::VERSION_HEADER,
    PANIC_HEADER,
];

/// With `EDGESTACK_INJECT_FAULT=panic`, a request carrying this header panics.
pub const PANIC_HEADER: &str = "x-edgestack-panic";

/// Seconds a refused client should wait: the limiters' window.
pub const RATE_LIMIT_WINDOW_SECONDS: u32 = 60;

/// A KV write after the response. Its value is computed when it is sent, from the isolate's
/// state and the time then (`None`: nothing to write any more), so a delayed write carries the
/// latest value rather than the one known when it was scheduled.
pub struct KvWrite {
    pub key: String,
    pub ttl_seconds: u32,
    pub after_ms: u32,
    pub value: KvValue,
}

/// Computes a [`KvWrite`]'s value from the isolate's state at `now_ms` when it is sent.
pub type KvValue = Box<dyn Fn(&IsolateState, f64) -> Option<Vec<u8>>>;

impl KvWrite {
    /// `value` as it is, now.
    pub fn now(key: &str, value: Vec<u8>, ttl_seconds: u32) -> Self {
        Self { key: key.to_string(), ttl_seconds, after_ms: 0, value: Box::new(move |_, _| Some(value.clone())) }
    }
}

/// State an isolate keeps between requests (Workers reuse module state within one isolate):
/// circuit breakers, the memory cache tier, and the primary record once a failure made the
/// isolate read it. Losing it only costs a few slower requests.
#[derive(Debug, Default)]
pub struct IsolateState {
    pub breakers: RefCell<CircuitBreakers>,
    pub memory: RefCell<MemoryCache>,
    pub primary: RefCell<PrimaryState>,
}

/// Where a cacheable read was answered from, for `Server-Timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// The route is not cacheable.
    #[default]
    None,
    /// Caching is switched off (`READ_CACHE=off`).
    Bypass,
    HitMemory,
    HitKv,
    Miss,
}

impl CacheStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bypass => "bypass",
            Self::HitMemory => "hit-memory",
            Self::HitKv => "hit-kv",
            Self::Miss => "miss",
        }
    }
}

/// What one request did on its way through the data path.
#[derive(Debug, Default)]
pub struct RequestReport {
    /// `(target, milliseconds)` per database round trip, in order.
    pub round_trips: Vec<(String, f64)>,
    /// `(target, reason)` for each endpoint that was tried and passed over: `failed` (error or
    /// deadline) or `behind` (below the client's replication index, or missing data).
    pub fallbacks: Vec<(String, &'static str)>,
    /// Where in the primary's history this request's writes are (its term and replication index
    /// after them).
    pub written: Option<CacheVersion>,
    /// The read-your-writes token the client gets: after a write, or corrected when the one it
    /// presented asked for more than the history holds.
    pub token: Option<ConsistencyToken>,
    pub cache: CacheStatus,
}

/// What the runtime provides. Futures need not be `Send`: a Worker isolate is single-threaded.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// Cryptographically secure random bytes.
    fn fill_random(&self, buffer: &mut [u8]) -> Result<(), String>;
    /// Milliseconds, for measuring I/O (Workers advance the clock only across I/O).
    fn now_ms(&self) -> f64;
    /// Where the runtime says the request arrived (Cloudflare's `request.cf`). Asked only when
    /// the region matters: the runtime builds `cf` when first read, which costs more than a
    /// cached answer (docs/performance.md). Cron events have no location.
    fn location(&self) -> Location;
    /// `text` in Unicode normalization form `form` (UAX #15): the runtime's
    /// (`String.prototype.normalize` in a Worker), so the wasm carries no normalization tables
    /// (`accounts::email`).
    fn normalize(&self, text: &str, form: crate::text::Form) -> String;
    fn isolate(&self) -> &IsolateState;
    /// `POST {url}/v3/pipeline` with the bearer token: whatever the endpoint answered (any
    /// status; the core decides what it means, `datapath::failover`). `DbError::Unavailable`
    /// when no answer came: unreachable, lost on the way, or not within `deadline_ms`.
    async fn send_pipeline(
        &self,
        url: &str,
        token: &str,
        body: Vec<u8>,
        deadline_ms: u32,
    ) -> Result<HranaAnswer, crate::db::DbError>;
    /// The KV values of `keys`, in order, read concurrently (`None`: no such key). Errors and
    /// timeouts of any read are `Err`; callers fall through to the database.
    async fn kv_get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, String>;
    /// Writes to KV after the response (`waitUntil`): waits `write.after_ms`, then puts what
    /// `write.value` gives at that moment. KV takes one write per second per key, so a refused
    /// write is retried once, a second later, with the value computed again.
    fn kv_put_in_background(&self, write: KvWrite);
    /// `Ok(true)` when `key` is still within `limiter`'s budget. Counts this call. `Err` when the
    /// limiter could not answer (no binding, the binding failed): callers refuse the request.
    async fn within_rate_limit(&self, limiter: Limiter, key: &str) -> Result<bool, String>;
    /// Waits: the injected `slow` fault, and a read waiting out a failover (`Database`).
    async fn sleep(&self, milliseconds: u32);
    /// Sends a pipeline after the response, without delaying it.
    fn send_pipeline_in_background(&self, url: &str, token: &str, body: Vec<u8>);
    fn log(&self, message: &str);
    /// Calls `service` over its service binding, given up (and cancelled) when its answer has not
    /// all arrived within `deadline_ms` (`Config::service_deadline_ms`). `Err` only when the
    /// call itself failed (no binding, the other Worker threw, the deadline passed); HTTP errors
    /// come back as responses.
    async fn call_service(
        &self,
        service: Service,
        request: ServiceRequest,
        deadline_ms: u32,
    ) -> Result<ApiResponse, String>;
}

/// Everything a handler needs for one request.
pub struct Context<'a, P: Platform> {
    pub platform: &'a P,
    pub config: &'a Config,
    pub request: &'a ApiRequest,
    pub report: RefCell<RequestReport>,
    /// The client's last write, if it carries a valid token.
    pub consistency: Option<ConsistencyToken>,
    /// What reads must reflect for this client: its token judged against the history of
    /// terms the isolate knows (`ConsistencyToken::requirement`).
    pub requirement: Option<Requirement>,
}

impl<P: Platform> Context<'_, P> {
    pub fn random<const N: usize>(&self) -> Result<[u8; N], ApiError> {
        let mut bytes = [0; N];
        self.platform.fill_random(&mut bytes).map_err(|error| {
            self.platform.log(&format!("no randomness: {error}"));
            ApiError::Internal
        })?;
        Ok(bytes)
    }

    pub fn database(&self) -> Result<Database<'_, P>, ApiError> {
        let config = self.config.database.as_ref().ok_or(ApiError::DatabaseNotConfigured)?;
        Ok(Database::new(
            self.platform,
            config,
            &self.config.data_path,
            ReaderRegion::Of(self.request),
            self.requirement,
            &self.report,
        ))
    }

    pub fn hasher(&self) -> PasswordHasher {
        PasswordHasher::new(CURRENT_COST)
    }

    /// Who a notes request acts for: the identity the entry forwarded (services shape, checked
    /// against the session cookie it was issued for) or the session itself (one Worker).
    pub fn caller(&self) -> Result<Caller, ApiError> {
        let Some(verifier) = self.config.identity_verifier.as_ref().filter(|_| self.config.service == Service::Notes)
        else {
            return Ok(Caller::Session(self.session()?.1));
        };
        let token = self.request.header(IDENTITY_HEADER).ok_or(ApiError::Unauthenticated)?;
        let session = self.request.session_token().ok_or(ApiError::Unauthenticated)?;
        let identity =
            verifier.verify_for_session(token, &session.hash(), self.request.now_ms).inspect_err(|error| {
                if !error.is_about_the_caller() {
                    self.platform.log(&format!(
                        "an identity the entry forwarded was refused ({error:?}): is IDENTITY_PUBLIC_KEY the entry's?"
                    ));
                }
            })?;
        Ok(Caller::Verified {
            user_id: identity.user_id,
            now: self.request.now_ms,
            valid_until: identity.expires_at_ms,
        })
    }

    /// The request's session, or 401 when it carries none.
    pub fn session(&self) -> Result<(SessionToken, SessionAuth), ApiError> {
        let token = self.request.session_token().ok_or(ApiError::Unauthenticated)?;
        let auth = SessionAuth::new(&token, &self.config.session, self.request.now_ms);
        Ok((token, auth))
    }

    /// Records the caller's activity after a read, off the response's critical path, when its
    /// last record (`last_seen_at`, from the caller's check) is older than the touch interval.
    pub fn record_activity_if_stale(&self, database: &Database<'_, P>, caller: &Caller, last_seen_at: Option<i64>) {
        if let Some(touch) = caller.touch_if_stale(last_seen_at, self.config.session.touch_interval_ms()) {
            let mut pipeline = Pipeline::write();
            pipeline.push(touch);
            database.run_in_background(&pipeline);
        }
    }

    /// The request's `If-Match` and `If-None-Match`. An empty field counts as none: the Workers
    /// runtime drops an empty one before the Worker sees it, so every host reads it the same way.
    /// A malformed `If-None-Match` names nothing ([`IfNoneMatch::parse`]).
    ///
    /// # Errors
    /// [`ApiError::InvalidIfMatch`] when `If-Match` is not `*` or a list of entity tags.
    pub fn preconditions(&self) -> Result<Preconditions, ApiError> {
        let field = |name| self.request.header(name).filter(|value| !value.trim_matches([' ', '\t']).is_empty());
        let if_match = field("if-match").map(IfMatch::parse).transpose().map_err(|_| ApiError::InvalidIfMatch)?;
        Ok(Preconditions { if_match, if_none_match: field("if-none-match").and_then(IfNoneMatch::parse) })
    }

    /// The request's body as `T`: declared as JSON, then parsed from a JSON object.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        check_identity_encoding(self.request.header("content-encoding"))?;
        check_json_content_type(self.request.header("content-type"), &[])?;
        parse_json_object(&self.request.body)
    }
}

/// An error as the client's answer; a cause the client is not told goes to the log.
pub fn error_response<P: Platform>(platform: &P, error: &ApiError) -> ApiResponse {
    if let Some(cause) = error.cause_to_log() {
        platform.log(&cause);
    }
    ApiResponse::error(error)
}

/// The API for a request [`body_plan`] admitted. Never fails: every error is a JSON response.
pub async fn handle<P: Platform>(platform: &P, admitted: Admitted<'_>, request: &ApiRequest) -> ApiResponse {
    let response = match dispatch(platform, admitted, request).await {
        Ok(response) => response,
        Err(error) => refusal(platform, &error),
    };
    for_method(request, response)
}

/// A `HEAD` answer is the `GET` one without its body (RFC 9110 §9.3.2) — refusals included.
fn for_method(request: &ApiRequest, mut response: ApiResponse) -> ApiResponse {
    if request.method == Method::Head {
        response.body.clear();
    }
    response
}

/// What the edge does with a request's body, decided from its head alone (see [`body_plan`]).
#[derive(Debug)]
pub enum BodyPlan<'c> {
    /// The request is refused whatever its body: answer this without reading it.
    Refuse(ApiResponse),
    /// The route reads a body: read it (bounded in size and time) into [`ApiRequest::body`],
    /// then [`handle`].
    Read(Admitted<'c>),
    /// The route reads none: leave [`ApiRequest::body`] empty, discard what was sent, [`handle`].
    Ignore(Admitted<'c>),
}

/// A request's head passed [`body_plan`]'s checks: its route, and the configuration that
/// serves it. Only `body_plan` makes one, so [`handle`] never runs on an unchecked head.
#[derive(Debug)]
pub struct Admitted<'c> {
    route: Route,
    config: &'c Config,
}

/// Decides, before any of the body is read, whether the request needs it: a request with no
/// route, a method the path does not allow, or no same-origin proof is answered at once, and
/// a route that takes no body never waits for one. Without this, a client that declares a body
/// and never sends it held even a refused request for the body deadline (10 s), and a 64 KiB
/// body to a path that does not exist was buffered before its 404 (review finding).
/// `request.body` is not looked at.
pub fn body_plan<'c, P: Platform>(
    platform: &P,
    config: Result<&'c Config, &ConfigError>,
    request: &ApiRequest,
) -> BodyPlan<'c> {
    match admit(platform, config, request) {
        Ok(admitted) if admitted.route.takes_body() => BodyPlan::Read(admitted),
        Ok(admitted) => BodyPlan::Ignore(admitted),
        Err(error) => BodyPlan::Refuse(for_method(request, refusal(platform, &error))),
    }
}

/// A refusal before the data path: no cache, no database.
fn refusal<P: Platform>(platform: &P, error: &ApiError) -> ApiResponse {
    error_response(platform, error)
        .with_header("Server-Timing", "cache;desc=none, total;dur=0.0")
        .with_header("x-edgestack-db-requests", "0")
}

/// What a request's head alone decides: its route, that this deployment serves it, and the
/// same-origin proof of a state change.
fn admit<'c, P: Platform>(
    platform: &P,
    config: Result<&'c Config, &ConfigError>,
    request: &ApiRequest,
) -> Result<Admitted<'c>, ApiError> {
    let route = resolve(request.method, &request.path)?;
    let config = config.map_err(|error| {
        platform.log(&format!("configuration error: {error}"));
        ApiError::Misconfigured
    })?;
    if !config.service.serves(&route) {
        return Err(ApiError::NotInThisService);
    }
    if route.is_internal() {
        internal_api::negotiate(request.header(internal_api::VERSION_HEADER))?;
    }
    // Violation reports come from the browser itself, without same-origin proof, and change
    // no state: they are only logged. Internal routes are reachable only over service bindings.
    let needs_csrf_proof = route != Route::CspReport && !route.is_internal() && csrf::needs_proof(request.method);
    if needs_csrf_proof {
        csrf::check(
            request.method,
            &CsrfEvidence {
                request_origin: &request.origin,
                origin: request.header("origin"),
                sec_fetch_site: request.header("sec-fetch-site"),
                client_header: request.header(CLIENT_HEADER),
            },
        )?;
    }
    Ok(Admitted { route, config })
}

async fn dispatch<P: Platform>(
    platform: &P,
    Admitted { route, config }: Admitted<'_>,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    match (config.injected_fault, &route) {
        (_, Route::Health) | (None, _) => {}
        (Some(InjectedFault::Errors), _) => {
            return Err(ApiError::InjectedFault);
        }
        (Some(InjectedFault::Slow { delay_ms }), _) => platform.sleep(delay_ms).await,
        (Some(InjectedFault::PanicOnRequest), _) if request.header(PANIC_HEADER).is_some() => {
            // Development only (configuration refuses faults in production): proves that a
            // panic costs one request, not the isolate (src/entry.mjs, tests/api/health.rs).
            // It panics holding the isolate's cache, as a real bug might: unless the instance
            // is reset, every later cached read would fail on that borrow.
            let _held = platform.isolate().memory.borrow_mut();
            #[allow(clippy::panic)]
            {
                panic!("injected panic ({PANIC_HEADER})");
            }
        }
        (Some(InjectedFault::PanicOnRequest), _) => {}
    }
    if config.service == Service::Entry && Service::owner_of(&route) != Service::Entry {
        return Ok(entry::forward(platform, config, request, &route).await);
    }
    let consistency = route
        .uses_database()
        .then(|| {
            ConsistencyToken::newest(
                request.cookies(config.service.consistency_cookie()),
                &config.data_path.consistency_key,
                config.data_path.database,
            )
        })
        .flatten();
    let report = RefCell::default();
    let requirement = match consistency {
        Some(token) => Some(requirement_of(platform, config, token, &report).await),
        None => None,
    };
    let context = Context { platform, config, request, report, consistency, requirement };
    let started = platform.now_ms();
    let response = route_to_handler(&context, &route).await;
    Ok(finish(&context, &route, response, platform.now_ms() - started))
}

async fn route_to_handler<P: Platform>(context: &Context<'_, P>, route: &Route) -> Result<ApiResponse, ApiError> {
    match route.clone() {
        Route::Health if context.config.service == Service::Entry => entry::health(context).await,
        Route::Health | Route::InternalHealth => system::health(context),
        Route::CspReport => system::csp_report(context),
        Route::SignUp => accounts::sign_up(context).await,
        Route::SignIn => accounts::sign_in(context).await,
        Route::SignOut => accounts::sign_out(context).await,
        Route::Me => accounts::me(context).await,
        Route::ChangePassword => accounts::change_password(context).await,
        Route::CreateNote => notes::create(context).await,
        Route::ListMyNotes => notes::list_mine(context).await,
        Route::GetMyNote(id) => notes::get_mine(context, &id).await,
        Route::UpdateNote(id) => notes::update(context, &id).await,
        Route::DeleteNote(id) => notes::delete(context, &id).await,
        Route::PublishNote(id) => notes::set_published(context, &id, true).await,
        Route::UnpublishNote(id) => notes::set_published(context, &id, false).await,
        Route::ListPublicNotes => notes::list_public(context).await,
        Route::GetPublicNote(id) => notes::get_public(context, &id).await,
        Route::DeleteAccount => accounts::delete_account(context).await,
        Route::IssueIdentity => accounts::issue_identity(context).await,
        Route::DeleteUserNotes(user_id) => notes::delete_all_of_owner(context, &user_id).await,
    }
}

/// What every answer carries from the data path: `Server-Timing`, the round-trip count, the
/// renewed read-your-writes cookie, and conditional-request handling for public reads.
fn finish<P: Platform>(
    context: &Context<'_, P>,
    route: &Route,
    response: Result<ApiResponse, ApiError>,
    total_ms: f64,
) -> ApiResponse {
    let mut response = response.unwrap_or_else(|error| error_response(context.platform, &error));
    let report = context.report.borrow();
    let mut timing = vec![format!("cache;desc={}", report.cache.as_str())];
    timing.extend(report.round_trips.iter().map(|(target, ms)| format!("db;desc={target};dur={ms:.1}")));
    timing.extend(report.fallbacks.iter().map(|(target, reason)| format!("fallback;desc=\"{target} {reason}\"")));
    timing.push(format!("total;dur={total_ms:.1}"));
    response = response
        .with_header("Server-Timing", timing.join(", "))
        .with_header("x-edgestack-db-requests", report.round_trips.len().to_string());
    let data_path = &context.config.data_path;
    if let Some(token) = report.token.filter(|token| Some(*token) != context.consistency)
        && let Some(cookie) = token.set_cookie(
            context.config.service.consistency_cookie(),
            &data_path.consistency_key,
            data_path.database,
        )
    {
        response = response.with_header("Set-Cookie", cookie);
    }
    if matches!(route, Route::ListPublicNotes | Route::GetPublicNote(_)) && response.status == 200 {
        response = cache::conditional(context.request, response);
    }
    for_one_client_if_it_sets_a_cookie(response)
}

/// A response that sets a cookie under a cache policy of its handler's (a public read whose
/// answer corrected the client's read-your-writes token) keeps that policy for the client's own
/// cache only: stored in a shared cache, the cookie would go to whoever it served next
/// ([`assets::cache_control_with_cookie`]). Without a policy the worker adds `private, no-store`.
fn for_one_client_if_it_sets_a_cookie(mut response: ApiResponse) -> ApiResponse {
    let sets_cookie = response.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("set-cookie"));
    let Some(policy) = response.header("cache-control").filter(|_| sets_cookie) else {
        return response;
    };
    let Some(private) = assets::cache_control_with_cookie(Some(policy)) else {
        return response;
    };
    response.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("cache-control"));
    response.with_header("Cache-Control", private)
}

/// What the client's token asks of this request's reads. A token of a newer term than the
/// isolate knows makes it read the primary record first (a failover happened that this isolate
/// has not seen fail). A token from before a failover whose last writes the new history lacks
/// asks only for what survived, and the client's cookie is corrected to that
/// (docs/failover.md#read-your-writes-tokens-carry-the-term).
async fn requirement_of<P: Platform>(
    platform: &P,
    config: &Config,
    token: ConsistencyToken,
    report: &RefCell<RequestReport>,
) -> Requirement {
    let believed_term = platform.isolate().primary.borrow().believed_term();
    if token.term > believed_term {
        refresh_primary_record(platform, config.data_path.database).await;
    }
    let state = platform.isolate().primary.borrow();
    let history = state.record().map(|record| record.history());
    let requirement = token.requirement(history);
    if token.outlived_its_term(history) {
        platform.log(&format!(
            "read-your-writes token at index {} of term {} is past the end of that term ({}): its later writes were lost in the failover",
            token.replication_index, token.term, requirement.index
        ));
        // Under the term the isolate knows, not the term that wrote that index: the client was
        // seen at `token.term`, and a cookie lowered below it would let a former primary of
        // that term, not fenced yet, answer for it again (`Failure::Superseded`).
        let term = history.map_or(0, |history| history.term).max(token.term);
        let corrected = ConsistencyToken { term, replication_index: requirement.index };
        let window_ms = f64::from(config.data_path.primary_deadline_ms);
        report.borrow_mut().token = Some(state.covering(corrected, platform.now_ms(), window_ms));
    }
    requirement
}
