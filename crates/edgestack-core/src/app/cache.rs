//! Read-through caching of public query results (memory tier, then KV, then the database) and
//! HTTP revalidation (ETag / If-None-Match → 304) of public responses.
//!
//! We cache query results, not HTTP responses in a shared edge cache: an entry carries the
//! replication index it was read at, so a client that just wrote can skip older entries; a
//! shared HTTP cache cannot make that per-client decision. HTTP caching only revalidates.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::cache::{CachedQuery, KV_TTL_SECONDS, keys_invalidated_by_note_change};
use crate::error::ApiError;

use super::{ApiRequest, ApiResponse, CacheStatus, Context, Platform};

/// Public responses may be stored anywhere but must be revalidated each time (cheap with the
/// ETag), so no browser or CDN copy outlives a change for its own author.
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Answers from the cache when an entry is fresh enough for this client; otherwise runs
/// `load` (which returns the JSON body and the replication index it was read at) and fills
/// both tiers.
pub async fn read_through<P, F>(context: &Context<'_, P>, key: &str, load: F) -> Result<ApiResponse, ApiError>
where
    P: Platform,
    F: Future<Output = Result<(Vec<u8>, Option<u64>), ApiError>>,
{
    if !context.config.data_path.read_cache {
        context.report.borrow_mut().cache = CacheStatus::Bypass;
        let (body, _) = load.await?;
        return Ok(public_json(body));
    }
    let platform = context.platform;
    let required = context.consistency.map(|token| token.replication_index);
    let from_memory = platform.isolate().memory.borrow().get(key, platform.now_ms()).cloned();
    if let Some(entry) = from_memory.filter(|entry| entry.is_fresh_for(required)) {
        context.report.borrow_mut().cache = CacheStatus::HitMemory;
        return Ok(public_json(entry.body));
    }
    let from_kv = match platform.kv_get(key).await {
        Ok(value) => value.and_then(|bytes| CachedQuery::decode(&bytes)),
        Err(error) => {
            platform.log(&format!("KV read of {key} failed, reading the database: {error}"));
            None
        }
    };
    if let Some(entry) = from_kv.filter(|entry| entry.is_fresh_for(required)) {
        context.report.borrow_mut().cache = CacheStatus::HitKv;
        platform.isolate().memory.borrow_mut().put(key, entry.clone(), platform.now_ms());
        return Ok(public_json(entry.body));
    }
    context.report.borrow_mut().cache = CacheStatus::Miss;
    let (body, replication_index) = load.await?;
    // An answer without an index cannot be proven fresh for anyone who wrote: do not keep it.
    if let Some(replication_index) = replication_index {
        let entry = CachedQuery { replication_index, body: body.clone() };
        let mut memory = platform.isolate().memory.borrow_mut();
        memory.put(key, entry.clone(), platform.now_ms());
        if memory.claim_kv_fill(key, platform.now_ms()) {
            platform.kv_put_in_background(key, entry.encode(), KV_TTL_SECONDS);
        }
    }
    Ok(public_json(body))
}

/// Drops what a change to note `id` made stale: here at once, in KV (other locations) as fast
/// as KV propagates.
pub fn invalidate_note<P: Platform>(context: &Context<'_, P>, id: &str) {
    if !context.config.data_path.read_cache {
        return;
    }
    for key in keys_invalidated_by_note_change(id) {
        context.platform.isolate().memory.borrow_mut().remove(&key);
        context.platform.kv_delete_in_background(&key);
    }
}

fn public_json(body: Vec<u8>) -> ApiResponse {
    ApiResponse { status: 200, headers: vec![("Content-Type".into(), "application/json".into())], body }
        .with_header("Cache-Control", PUBLIC_CACHE_CONTROL)
}

/// Adds a strong ETag and answers 304 when the client already has this body.
pub fn conditional(request: &ApiRequest, response: ApiResponse) -> ApiResponse {
    let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(&response.body)[..16]));
    let matches = request
        .header("if-none-match")
        .is_some_and(|value| value.split(',').any(|candidate| candidate.trim() == etag || candidate.trim() == "*"));
    if matches {
        let kept: Vec<(String, String)> =
            response.headers.into_iter().filter(|(name, _)| !name.eq_ignore_ascii_case("content-type")).collect();
        return ApiResponse { status: 304, headers: kept, body: Vec::new() }.with_header("ETag", etag);
    }
    response.with_header("ETag", etag)
}
