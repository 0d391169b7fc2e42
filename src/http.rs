//! The HTTP edge: errors and JSON into responses, bounded body reading, standard headers.

use edgestack_core::assets::{PRIVATE_NO_STORE, SECURITY_HEADERS};
use edgestack_core::error::ApiError;
use edgestack_core::health::VersionInfo;
use edgestack_core::json_body::{MAX_BODY_BYTES, check_declared_length, too_large};
use futures::StreamExt;
use serde::Serialize;
use worker::{Headers, Request, Response};

pub const VERSION_ID_HEADER: &str = "x-edgestack-version-id";
pub const VERSION_TAG_HEADER: &str = "x-edgestack-version-tag";

pub fn error_response(error: &ApiError) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    for (name, value) in &error.headers {
        headers.set(name, value)?;
    }
    Ok(Response::from_bytes(error.body_json().into_bytes())?.with_status(error.status).with_headers(headers))
}

pub fn json_response<T: Serialize>(status: u16, body: &T) -> Result<Response, ApiError> {
    Response::from_json(body).map(|response| response.with_status(status)).map_err(internal)
}

pub fn empty_response(status: u16) -> Result<Response, ApiError> {
    Response::empty().map(|response| response.with_status(status)).map_err(internal)
}

/// Logs the cause and hides it from the client.
pub fn internal(error: impl std::fmt::Display) -> ApiError {
    worker::console_error!("internal error: {error}");
    ApiError::internal()
}

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Reads the body chunk by chunk and stops at the limit, so an oversized body is never
/// buffered whole, whatever its declared length.
pub async fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    check_declared_length(header(req, "content-length").as_deref())?;
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
