//! The entry Worker of the services shape (Level 5): routes each `/api` request to the service
//! that owns it over a service binding, and hands `notes` the caller's identity — from the
//! browser's identity cookie while it is valid, otherwise freshly signed by `accounts` (one
//! hop in the same location), so most notes requests never touch the accounts database.

use crate::assets::SECURITY_HEADERS;
use crate::config::Config;
use crate::error::ApiError;
use crate::health::{
    DatabaseStatus, EntryHealthReport, HealthReport, ServiceHealth, ServicesHealth, VERSION_ID_HEADER,
    VERSION_TAG_HEADER,
};
use crate::region::{DEV_REGION_HEADER, RequestRegion};
use crate::routes::{Method, Route};
use crate::services::Service;
use crate::services::identity::{IDENTITY_COOKIE, IDENTITY_HEADER, clear_identity_cookie, set_identity_cookie};
use crate::services::internal_api::{self, InternalRequest, IssuedIdentity};

use super::{ApiRequest, ApiResponse, Context, Platform, ServiceRequest};

/// Request headers that belong to one hop, or that only the entry may set.
const NOT_FORWARDED: &[&str] =
    &["host", "content-length", "connection", "transfer-encoding", IDENTITY_HEADER, internal_api::VERSION_HEADER];

/// How many identity cookies of one request the entry verifies. A browser keeps one
/// (`__Host-`: one per host and path); each is an Ed25519 verification, so a client sending
/// hundreds must not buy that many per request.
const IDENTITY_COOKIES_TRIED: usize = 2;

/// How fresh the identity a notes request travels with must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// A read: the browser's identity cookie while it is valid (up to its lifetime after the
    /// session ended — the documented read bound).
    Cached,
    /// A state change: the session checked by `accounts` now, on its nearest replica — refused
    /// once that replica has the sign-out, as the single Worker refuses a read (ASVS 5.0 7.4.1).
    Checked,
}

impl Freshness {
    fn of(method: Method) -> Self {
        match method {
            Method::Get | Method::Head | Method::Options => Self::Cached,
            _ => Self::Checked,
        }
    }
}

/// How the identity for a notes request was found.
enum IdentityOutcome {
    /// The browser's identity cookie, still valid for its session.
    Cookie(String),
    /// Signed just now by `accounts`; the browser keeps it for the next minute.
    Refreshed { token: String, lifetime_ms: i64, elapsed_ms: f64, db_requests: u64 },
    /// No (valid) session: `notes` answers as it does to anyone signed out.
    Anonymous,
    /// `accounts` could not answer; its error goes to the client.
    Failed(ApiResponse),
}

/// What finding the caller's identity adds to the hop to `notes` and to the entry's answer.
#[derive(Default)]
struct Handover {
    /// `Server-Timing` entries: each identity outcome (and a hop `notes` refused).
    timing: Vec<String>,
    /// The accounts database requests an identity refresh made.
    extra_db_requests: u64,
    /// The identity cookie to set or clear.
    set_cookie: Option<String>,
    /// What `accounts` answered when it could not issue an identity. The request still goes to
    /// `notes`, without one: a request it refuses for its own sake (a malformed `If-Match`, a
    /// bad limit or body: checked before the caller, as the single Worker does) gets that
    /// refusal instead of an accounts outage's 503 telling the client to retry; one it would
    /// serve gets 401 there, having touched nothing, and the client gets the outage.
    failure: Option<ApiResponse>,
}

impl Handover {
    /// Records `outcome`; answers the identity `notes` is to be given, if there is one.
    fn take(&mut self, outcome: IdentityOutcome, request: &ApiRequest) -> Option<String> {
        self.failure = None;
        match outcome {
            IdentityOutcome::Cookie(token) => {
                self.timing.push("identity;desc=cookie".to_string());
                Some(token)
            }
            IdentityOutcome::Refreshed { token, lifetime_ms, elapsed_ms, db_requests } => {
                self.timing.push(format!("identity;desc=refreshed;dur={elapsed_ms:.1}"));
                self.extra_db_requests += db_requests;
                self.set_cookie = Some(set_identity_cookie(&token, lifetime_ms));
                Some(token)
            }
            IdentityOutcome::Anonymous => {
                self.timing.push("identity;desc=none".to_string());
                if request.cookies(IDENTITY_COOKIE).any(|value| !value.is_empty()) {
                    self.set_cookie = Some(clear_identity_cookie());
                }
                None
            }
            IdentityOutcome::Failed(response) => {
                self.timing.push("identity;desc=failed".to_string());
                self.failure = Some(response);
                None
            }
        }
    }
}

/// Every `/api` route a service owns (`Service::owner_of`), as [docs/api.md](../../../../docs/api.md) describes
/// it: forwarded over the service's binding with the detected region and, for a signed-in notes
/// route, the caller's identity (a request whose cookie identity `notes` refuses goes once more,
/// with one `accounts` issues after checking the session). Answers what the service answers,
/// with the hop in `Server-Timing`. Errors of its own: `503 service_unavailable` with `Retry-After` (a binding
/// call failed), `502 service_error` (accounts' identity answer unreadable, not verifiable by
/// this entry, or a status the internal API does not define), and accounts' `5xx` when it cannot
/// issue an identity.
pub async fn forward<P: Platform>(platform: &P, config: &Config, request: &ApiRequest, route: &Route) -> ApiResponse {
    let service = Service::owner_of(route);
    let mut outgoing = ServiceRequest {
        method: request.method,
        url: format!("{}{}{}", request.origin, request.path, query_suffix(&request.query)),
        headers: (request.headers.present())
            .filter(|(name, _)| !NOT_FORWARDED.contains(name))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        body: request.body.clone(),
    }
    .with_header(DEV_REGION_HEADER, request.region_name(platform).as_str())
    .with_header(internal_api::VERSION_HEADER, internal_api::CURRENT.to_string());
    let mut handover = Handover::default();
    // The cookie is the entry's shortcut, checked by its own clock; `notes` checks the identity
    // again by its clock on arrival, a hop later, so one that expired on the way is refused
    // although the session is valid (and the browser app takes a 401 for a sign-out). On that
    // refusal `accounts` checks the session, as for a request without the cookie, and the
    // request goes again with what it issues: one hop more, only when `notes` refuses.
    let mut retry_with_checked_identity = None;
    if service == Service::Notes && needs_identity(route) {
        let outcome = identity(platform, config, request, Freshness::of(request.method)).await;
        if matches!(outcome, IdentityOutcome::Cookie(_)) {
            retry_with_checked_identity = Some(outgoing.clone());
        }
        if let Some(token) = handover.take(outcome, request) {
            outgoing = outgoing.with_header(IDENTITY_HEADER, token);
        }
    }
    let mut started = platform.now_ms();
    let mut answer = platform.call_service(service, outgoing, config.service_deadline_ms).await;
    if let Some(outgoing) = retry_with_checked_identity
        && let Ok(refused) = &answer
        && refused.status == 401
    {
        handover.timing.push(format!("hop;desc={};dur={:.1}", service.as_str(), platform.now_ms() - started));
        handover.extra_db_requests += db_requests_of(refused).unwrap_or(0);
        let outcome = identity(platform, config, request, Freshness::Checked).await;
        if let Some(token) = handover.take(outcome, request) {
            let outgoing = outgoing.with_header(IDENTITY_HEADER, token);
            started = platform.now_ms();
            answer = platform.call_service(service, outgoing, config.service_deadline_ms).await;
        }
    }
    let hop_ms = platform.now_ms() - started;
    let Handover { mut timing, extra_db_requests, set_cookie, failure: identity_failure } = handover;
    timing.push(format!("hop;desc={};dur={hop_ms:.1}", service.as_str()));
    // Whether the owning service answered: only then does the identity cookie change.
    let (mut response, answered) = match (answer, identity_failure) {
        (Ok(response), Some(failure)) if response.status == 401 => (failure, false),
        (Ok(response), _) => (response, true),
        (Err(error), failure) => {
            platform.log(&format!("{} service call failed: {error}", service.as_str()));
            (failure.unwrap_or_else(|| ApiResponse::error(&ApiError::ServiceUnavailable(service))), false)
        }
    };
    let service_timing = response.header("server-timing").map(str::to_string);
    let db_requests = db_requests_of(&response);
    // The entry's own edge adds who answered and the security policy to whatever it sends, so
    // the service's would repeat them (`X-Content-Type-Options: nosniff, nosniff`).
    let replaced = ["server-timing", "x-edgestack-db-requests", VERSION_ID_HEADER, VERSION_TAG_HEADER]
        .into_iter()
        .chain(SECURITY_HEADERS.iter().map(|(name, _)| *name))
        .collect::<Vec<_>>();
    response.headers.retain(|(name, _)| !replaced.iter().any(|dropped| name.eq_ignore_ascii_case(dropped)));
    // An answer of the entry's own (no service reached) has no service's metrics to go first:
    // it reports those every API response does (docs/edge-data-path.md) itself.
    let timing = match service_timing {
        Some(service_timing) => std::iter::once(service_timing).chain(timing).collect::<Vec<_>>(),
        None => std::iter::once("cache;desc=none".to_string())
            .chain(timing)
            .chain(std::iter::once(format!("total;dur={:.1}", platform.now_ms() - request.now_ms as f64)))
            .collect(),
    };
    response = response
        .with_header("Server-Timing", timing.join(", "))
        .with_header("x-edgestack-db-requests", (db_requests.unwrap_or(0) + extra_db_requests).to_string());
    match set_cookie.filter(|_| answered) {
        Some(cookie) => response.with_header("Set-Cookie", cookie),
        None => response,
    }
}

/// The database requests a service's answer reports having made.
fn db_requests_of(response: &ApiResponse) -> Option<u64> {
    response.header("x-edgestack-db-requests").and_then(|count| count.parse().ok())
}

/// The public feed and public notes answer the same for everyone: no identity, no hop.
fn needs_identity(route: &Route) -> bool {
    !matches!(route, Route::ListPublicNotes | Route::GetPublicNote(_))
}

fn query_suffix(query: &str) -> String {
    if query.is_empty() { String::new() } else { format!("?{query}") }
}

/// The caller's identity for a notes request: from the cookie when `freshness` allows and it
/// is valid for the session, else signed by `accounts` after checking the session (one hop,
/// one accounts replica read; writes always take it, so a revoked session cannot write for
/// the rest of its identity's lifetime).
async fn identity<P: Platform>(
    platform: &P,
    config: &Config,
    request: &ApiRequest,
    freshness: Freshness,
) -> IdentityOutcome {
    let Some(session) = request.session_token() else {
        return IdentityOutcome::Anonymous;
    };
    // Identities are checked by the clock now, not by the request's stamp (`request.now_ms`,
    // taken when its head arrived): the body is read in between, for up to 10 s
    // (src/http.rs), and `accounts` signs a write's identity after it — by the stamp, one
    // signed over 5 s later looked issued in the future, and a valid write was a 502.
    let now_ms = || platform.now_ms() as i64;
    if freshness == Freshness::Cached
        && let Some(verifier) = &config.identity_verifier
        && let Some(token) = request
            .cookies(IDENTITY_COOKIE)
            .take(IDENTITY_COOKIES_TRIED)
            .find(|token| verifier.verify_for_session(token, &session.hash(), now_ms()).is_ok())
    {
        return IdentityOutcome::Cookie(token.to_string());
    }
    let refresh = ServiceRequest::internal(InternalRequest::IssueIdentity)
        .with_header("cookie", request.cookie_header())
        .with_header(DEV_REGION_HEADER, request.region_name(platform).as_str());
    let started = platform.now_ms();
    let answer = platform.call_service(Service::Accounts, refresh, config.service_deadline_ms).await;
    let elapsed_ms = platform.now_ms() - started;
    match answer {
        Ok(response) if response.status == 200 => {
            let db_requests = db_requests_of(&response).unwrap_or(0);
            let issued = serde_json::from_slice::<IssuedIdentity>(&response.body);
            // What the entry hands on (to `notes`, and to the browser as a cookie) it can
            // verify itself: a token `notes` would refuse (a key rotated on one side only)
            // would tell a signed-in client it is signed out.
            let usable = |token: &str| {
                config
                    .identity_verifier
                    .as_ref()
                    .is_none_or(|verifier| verifier.verify_for_session(token, &session.hash(), now_ms()).is_ok())
            };
            match issued {
                Ok(IssuedIdentity { identity, lifetime_ms }) if usable(&identity) => {
                    IdentityOutcome::Refreshed { token: identity, lifetime_ms, elapsed_ms, db_requests }
                }
                _ => {
                    platform.log("identity refresh: accounts answered 200 without an identity this entry can verify");
                    IdentityOutcome::Failed(ApiResponse::error(&ApiError::UnexpectedServiceAnswer(Service::Accounts)))
                }
            }
        }
        Ok(response) if response.status == 401 => IdentityOutcome::Anonymous,
        // An outage of accounts (its 503 with `Retry-After`) is the client's answer.
        Ok(response) if response.status >= 500 => IdentityOutcome::Failed(response),
        // Any other answer is not one the internal API defines (another version, a binding to a
        // Worker without the route): not the client's error.
        Ok(response) => {
            platform.log(&format!("identity refresh: accounts answered {}", response.status));
            IdentityOutcome::Failed(ApiResponse::error(&ApiError::UnexpectedServiceAnswer(Service::Accounts)))
        }
        Err(error) => {
            platform.log(&format!("identity refresh failed: {error}"));
            IdentityOutcome::Failed(ApiResponse::error(&ApiError::ServiceUnavailable(Service::Accounts)))
        }
    }
}

/// `GET /api/health` on the entry: its own report, plus each service's (version, database), so
/// a release can see which version of every service is serving; `database` is `configured`
/// only when every service has one. No body. Answers `200` [`EntryHealthReport`] (a service that
/// does not answer shows `{"status": "unreachable"}`). [docs/api.md § Health](../../../../docs/api.md#health)
pub async fn health<P: Platform>(context: &Context<'_, P>) -> Result<ApiResponse, ApiError> {
    let request = context.request;
    let region = request.region(context.platform);
    // At once: a service that hangs costs the health check one service deadline, not one each.
    let (accounts, notes) = futures::future::join(
        service_health(context.platform, context.config, Service::Accounts, &region),
        service_health(context.platform, context.config, Service::Notes, &region),
    )
    .await;
    let services = ServicesHealth { accounts, notes };
    let mut entry = HealthReport::new(context.config, &request.version, &region);
    entry.database = if services.accounts.has_database() && services.notes.has_database() {
        DatabaseStatus::Configured
    } else {
        DatabaseStatus::NotConfigured
    };
    ApiResponse::json(200, &EntryHealthReport { entry, services })
}

/// What `service` answers to `GET /internal/health`, or unreachable (also when it does not
/// answer within the service deadline).
async fn service_health<P: Platform>(
    platform: &P,
    config: &Config,
    service: Service,
    region: &RequestRegion,
) -> ServiceHealth {
    let probe = ServiceRequest::internal(InternalRequest::Health).with_header(DEV_REGION_HEADER, region.name.as_str());
    match platform.call_service(service, probe, config.service_deadline_ms).await {
        Ok(response) if response.status == 200 => {
            serde_json::from_slice(&response.body).map_or(ServiceHealth::UNREACHABLE, ServiceHealth::Reported)
        }
        _ => ServiceHealth::UNREACHABLE,
    }
}
