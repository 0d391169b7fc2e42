//! The HTTP edge: the runtime's request into an `ApiRequest`, the core's answer back into a
//! response, bounded body reading, and the headers every API response carries.
//!
//! It works on the runtime's own `Request`/`Response` objects and reads only what the API uses,
//! once: workers-rs' `Request` wrapper reads the URL, method, headers and `cf` of every request
//! up front, and a `Response` wrapper is converted again on the way out (docs/performance.md).

use edgestack_core::app::{self, ApiRequest, ApiResponse, BodyPlan};
use edgestack_core::assets::{PRIVATE_NO_STORE, SECURITY_HEADERS};
use edgestack_core::error::ApiError;
use edgestack_core::health::{VERSION_ID_HEADER, VERSION_TAG_HEADER, VersionInfo};
use edgestack_core::json_body::{BodyError, MAX_BODY_BYTES, check_declared_length};
use edgestack_core::request_url::RequestUrl;
use edgestack_core::routes::Method;
use worker::wasm_bindgen::JsValue;
use worker::worker_sys::web_sys;

use crate::bindings;
use crate::edge::{self, Body, RequestHead};
use crate::platform::WorkerPlatform;

pub async fn handle_api(
    req: &web_sys::Request,
    head: RequestHead,
    url: RequestUrl<'_>,
    platform: &WorkerPlatform<'_>,
    version: &VersionInfo,
) -> Result<web_sys::Response, JsValue> {
    let config = bindings::config(platform.env);
    let headers = edge::request_headers(req);
    let mut request = ApiRequest {
        method: Method::parse(&head.method),
        path: url.path.to_string(),
        query: url.query.to_string(),
        region_override: ApiRequest::region_override(config.ok(), &headers),
        headers,
        body: Vec::new(),
        origin: url.origin.to_string(),
        now_ms: edge::now_ms() as i64,
        version: version.clone(),
    };
    let admitted = match app::body_plan(platform, config, &request) {
        BodyPlan::Read(admitted) => match read_body(req).await {
            Ok(body) => {
                request.body = body;
                admitted
            }
            Err(error) => return into_response(ApiResponse::error(&error)),
        },
        BodyPlan::Ignore(admitted) => {
            // Whatever the method: a GET or HEAD may carry a body on the wire too, and one
            // declared and never sent, left unread, held the answer for good under `wrangler
            // dev`. Without a body this reads `request.body` (null) and nothing else.
            edge::discard_body(req);
            admitted
        }
        BodyPlan::Refuse(refusal) => {
            edge::discard_body(req);
            return into_response(refusal);
        }
    };
    into_response(app::handle(platform, admitted, &request).await)
}

/// The JSON 500 for a request the worker itself failed (never a handler's answer: the core
/// turns every handler error into a JSON response).
pub fn internal_error() -> Result<web_sys::Response, JsValue> {
    into_response(ApiResponse::error(&ApiError::Internal))
}

/// A path outside `/api` reaching a Worker without static assets (a service).
pub fn not_found() -> Result<web_sys::Response, JsValue> {
    into_response(ApiResponse::error(&ApiError::NoSuchPath))
}

/// The core's answer as a runtime `Response`, with the headers every API response carries:
/// who answered and the security policy (given once: [`prepare_isolate`]), and no caching unless the
/// handler chose a policy.
fn into_response(response: ApiResponse) -> Result<web_sys::Response, JsValue> {
    // Appended in order, so several Set-Cookie headers survive.
    let own = response.headers.iter().map(|(name, value)| (name.as_str(), value.as_str()));
    let default_cache = response.header("cache-control").is_none().then_some(("Cache-Control", PRIVATE_NO_STORE));
    edge::response(response.status, own.chain(default_cache), &response.body)
}

/// Gives the edge the headers every API response carries besides its own — the version that
/// answered and [`SECURITY_HEADERS`] — and the version for the data points, once per isolate,
/// before its first response.
pub fn prepare_isolate(version: &VersionInfo) {
    edge::prepare_isolate(&version.id, standard_headers(version));
}

/// Who answered, then the security policy: what every response of this worker carries.
fn standard_headers(version: &VersionInfo) -> impl Iterator<Item = (&str, &str)> {
    let who = [(VERSION_ID_HEADER, version.id.as_str()), (VERSION_TAG_HEADER, version.tag.as_str())];
    who.into_iter().chain(SECURITY_HEADERS.iter().copied())
}

/// How long a request body may take to arrive, all of it: 256 KiB at 26 KB/s — slower than
/// any client we serve, far less than the runtime would wait.
const BODY_DEADLINE_MS: u32 = 10_000;

/// The body, refused past the limit without buffering it whole, whatever its declared length,
/// and refused with 408 when it has not all arrived within [`BODY_DEADLINE_MS`]: a client that
/// promises a body and never sends it holds an isolate's request slot no longer than that
/// (ASVS 5.0 15.2.2: defences against loss of availability through slow, resource-holding
/// requests; 2.4.1).
async fn read_body(req: &web_sys::Request) -> Result<Vec<u8>, ApiError> {
    if let Err(refused) = check_declared_length(req.headers().get("content-length").ok().flatten().as_deref()) {
        edge::discard_body(req);
        return Err(refused.into());
    }
    match edge::body(req, MAX_BODY_BYTES, BODY_DEADLINE_MS).await {
        Ok(Body::Read(body)) => Ok(body),
        Ok(Body::TooLarge) => Err(BodyError::TooLarge.into()),
        Ok(Body::TimedOut) => Err(ApiError::BodyTimeout),
        Err(_) => Err(BodyError::Unreadable.into()),
    }
}

/// Headers every answer carries that did not come from the API (a static asset served to a
/// Worker without `run_worker_first`): who answered and the security policy. Responses passed
/// through from another fetch have immutable headers; those keep theirs.
pub fn with_standard_headers(response: web_sys::Response, version: &VersionInfo) -> web_sys::Response {
    let headers = response.headers();
    for (name, value) in standard_headers(version) {
        let _ = headers.set(name, value);
    }
    if !headers.has("cache-control").unwrap_or(true) {
        let _ = headers.set("Cache-Control", PRIVATE_NO_STORE);
    }
    response
}
