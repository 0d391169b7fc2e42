//! The HTTP edge: the runtime's request into an `ApiRequest`, the core's answer back into a
//! response, bounded body reading, and the headers every API response carries.
//!
//! It works on the runtime's own `Request`/`Response` objects and reads only what the API uses,
//! once: workers-rs' `Request` wrapper reads the URL, method, headers and `cf` of every request
//! up front, and a `Response` wrapper is converted again on the way out (docs/performance.md).

use edgestack_core::app::{self, ApiRequest, ApiResponse};
use edgestack_core::assets::{PRIVATE_NO_STORE, SECURITY_HEADERS};
use edgestack_core::error::ApiError;
use edgestack_core::health::VersionInfo;
use edgestack_core::json_body::{MAX_BODY_BYTES, check_declared_length, too_large};
use edgestack_core::region::{DEV_REGION_HEADER, RegionHints, RequestRegion};
use edgestack_core::request_url::RequestUrl;
use edgestack_core::routes::Method;
use edgestack_core::services::Service;
use worker::Date;
use worker::js_sys::{self, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::RequestExt;
use worker::worker_sys::web_sys::{self, ReadableStreamDefaultReader};

use crate::bindings;
use crate::platform::WorkerPlatform;

pub const VERSION_ID_HEADER: &str = "x-edgestack-version-id";
pub const VERSION_TAG_HEADER: &str = "x-edgestack-version-tag";

pub async fn handle_api(
    req: &web_sys::Request,
    url: RequestUrl<'_>,
    platform: &WorkerPlatform<'_>,
    version: &VersionInfo,
) -> Result<web_sys::Response, JsValue> {
    let config = bindings::config(platform.env);
    let method = Method::parse(&req.method());
    let body = match method {
        Method::Get | Method::Head | Method::Options => Vec::new(),
        _ => match read_body(req).await {
            Ok(body) => body,
            Err(error) => return into_response(ApiResponse::error(&error), version),
        },
    };
    let headers = request_headers(&req.headers())?;
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    // Services are reachable only through the entry's bindings, and the entry always names the
    // region it detected; the public entry honours the header only in development.
    let allow_region_override = config
        .is_ok_and(|config| config.is_development() || matches!(config.service, Service::Accounts | Service::Notes));
    let dev_region = config.ok().and_then(|config| config.dev_region.as_ref()).map(|r| r.as_str().to_string());
    let override_header = header(DEV_REGION_HEADER).or(dev_region);
    // `request.cf` is built by the runtime when first read, which costs more than the rest of
    // a cached answer: an override that will be honoured makes it unnecessary.
    let (continent, colo) = match (&override_header, allow_region_override) {
        (Some(_), true) => (None, None),
        _ => match req.cf() {
            Some(cf) => (cf.continent().ok().flatten(), cf.colo().ok()),
            None => (None, None),
        },
    };
    let region = RequestRegion::detect(&RegionHints { continent, colo, override_header }, allow_region_override);
    let request = ApiRequest {
        method,
        path: url.path.to_string(),
        query: url.query.to_string(),
        client_ip: header("cf-connecting-ip"),
        headers,
        body,
        origin: url.origin.to_string(),
        now_ms: i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX),
        region,
        version: version.clone(),
    };
    into_response(app::handle(platform, config, &request).await, version)
}

/// Every request header, names lower-case (the runtime already lower-cases them).
fn request_headers(headers: &web_sys::Headers) -> Result<Vec<(String, String)>, JsValue> {
    let mut all = Vec::new();
    let Some(entries) = js_sys::try_iter(headers)? else { return Ok(all) };
    for entry in entries {
        let pair: js_sys::Array = entry?.unchecked_into();
        if let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
            all.push((name, value));
        }
    }
    Ok(all)
}

/// A path outside `/api` reaching a Worker without static assets (a service).
pub fn not_found(version: &VersionInfo) -> Result<web_sys::Response, JsValue> {
    into_response(ApiResponse::error(&ApiError::new(404, "not_found", "no such path")), version)
}

/// The core's answer as a runtime `Response`, with the headers every API response carries:
/// who answered, the security policy, and no caching unless the handler chose a policy.
fn into_response(response: ApiResponse, version: &VersionInfo) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in &response.headers {
        // `append`, so several Set-Cookie headers survive.
        headers.append(name, value)?;
    }
    headers.append(VERSION_ID_HEADER, &version.id)?;
    headers.append(VERSION_TAG_HEADER, &version.tag)?;
    for (name, value) in SECURITY_HEADERS {
        headers.append(name, value)?;
    }
    if response.header("cache-control").is_none() {
        headers.append("Cache-Control", PRIVATE_NO_STORE)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status);
    init.set_headers(&headers);
    // No body at all for statuses that must not carry one (204, 304), as the runtime requires.
    let body = (!response.body.is_empty()).then(|| Uint8Array::from(response.body.as_slice()));
    web_sys::Response::new_with_opt_buffer_source_and_init(body.as_ref().map(|b| b.as_ref()), &init)
}

/// Reads the body chunk by chunk and stops at the limit, so an oversized body is never
/// buffered whole, whatever its declared length.
async fn read_body(req: &web_sys::Request) -> Result<Vec<u8>, ApiError> {
    let unreadable = |_| ApiError::new(400, "unreadable_body", "the request body could not be read");
    check_declared_length(req.headers().get("content-length").ok().flatten().as_deref())?;
    let Some(stream) = req.body() else {
        return Ok(Vec::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut body = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(unreadable)?;
        if Reflect::get(&chunk, &JsValue::from_str("done")).map_err(unreadable)?.is_truthy() {
            return Ok(body);
        }
        let bytes: Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(unreadable)?.unchecked_into();
        let length = bytes.length() as usize;
        if body.len() + length > MAX_BODY_BYTES {
            // Stop reading: the rest of an oversized body is never buffered.
            let _ = reader.cancel();
            return Err(too_large());
        }
        let start = body.len();
        body.resize(start + length, 0);
        bytes.copy_to(&mut body[start..]);
    }
}

/// Headers every answer carries that did not come from the API (a static asset served to a
/// Worker without `run_worker_first`): who answered and the security policy. Responses passed
/// through from another fetch have immutable headers; those keep theirs.
pub fn with_standard_headers(response: web_sys::Response, version: &VersionInfo) -> web_sys::Response {
    let headers = response.headers();
    let _ = headers.set(VERSION_ID_HEADER, &version.id);
    let _ = headers.set(VERSION_TAG_HEADER, &version.tag);
    for (name, value) in SECURITY_HEADERS {
        let _ = headers.set(name, value);
    }
    if !headers.has("cache-control").unwrap_or(true) {
        let _ = headers.set("Cache-Control", PRIVATE_NO_STORE);
    }
    response
}
