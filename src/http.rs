//! The HTTP edge: a workers-rs request into an `ApiRequest`, the core's answer back into a
//! response, bounded body reading, and the headers every API response carries.

use edgestack_core::app::{self, ApiRequest, ApiResponse};
use edgestack_core::assets::{PRIVATE_NO_STORE, SECURITY_HEADERS};
use edgestack_core::error::ApiError;
use edgestack_core::health::VersionInfo;
use edgestack_core::json_body::{MAX_BODY_BYTES, check_declared_length, too_large};
use edgestack_core::region::{DEV_REGION_HEADER, RegionHints, RequestRegion};
use edgestack_core::request_url::RequestUrl;
use edgestack_core::routes::Method;
use edgestack_core::services::Service;
use futures::StreamExt;
use worker::{Date, Headers, Request, Response};

use crate::bindings;
use crate::platform::WorkerPlatform;

pub const VERSION_ID_HEADER: &str = "x-edgestack-version-id";
pub const VERSION_TAG_HEADER: &str = "x-edgestack-version-tag";

pub async fn handle_api(
    mut req: Request,
    url: RequestUrl<'_>,
    platform: &WorkerPlatform<'_>,
    version: &VersionInfo,
) -> worker::Result<Response> {
    let config = bindings::config(platform.env);
    let method = Method::parse(req.method().as_ref());
    let body = match method {
        Method::Get | Method::Head | Method::Options => Vec::new(),
        _ => match read_body(&mut req).await {
            Ok(body) => body,
            Err(error) => return into_response(ApiResponse::error(&error)),
        },
    };
    let headers: Vec<(String, String)> =
        req.headers().entries().map(|(name, value)| (name.to_ascii_lowercase(), value)).collect();
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    // Services are reachable only through the entry's bindings, and the entry always names the
    // region it detected; the public entry honours the header only in development.
    let allow_region_override = config
        .is_ok_and(|config| config.is_development() || matches!(config.service, Service::Accounts | Service::Notes));
    let dev_region = config.ok().and_then(|config| config.dev_region.as_ref()).map(|r| r.as_str().to_string());
    let cf = req.cf();
    let region = RequestRegion::detect(
        &RegionHints {
            continent: cf.and_then(|cf| cf.continent()),
            colo: cf.map(|cf| cf.colo()),
            override_header: header(DEV_REGION_HEADER).or(dev_region),
        },
        allow_region_override,
    );
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
    into_response(app::handle(platform, config, &request).await)
}

/// A path outside `/api` reaching a Worker without static assets (a service).
pub fn not_found() -> worker::Result<Response> {
    into_response(ApiResponse::error(&ApiError::new(404, "not_found", "no such path")))
}

fn into_response(response: ApiResponse) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in &response.headers {
        // `append`, so several Set-Cookie headers survive.
        headers.append(name, value)?;
    }
    Ok(Response::from_bytes(response.body)?.with_status(response.status).with_headers(headers))
}

/// Reads the body chunk by chunk and stops at the limit, so an oversized body is never
/// buffered whole, whatever its declared length.
async fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    check_declared_length(req.headers().get("content-length").ok().flatten().as_deref())?;
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::new(400, "unreadable_body", "the request body could not be read"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Headers every API response carries: who answered, security policy, and no caching unless
/// the handler chose a policy.
pub fn with_standard_headers(mut response: Response, version: &VersionInfo) -> Response {
    let headers = response.headers_mut();
    // Responses passed through from another fetch have immutable headers; those keep theirs.
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
