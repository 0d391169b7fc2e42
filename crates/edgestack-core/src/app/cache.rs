//! Read-through caching of public query results (memory tier, then KV, then the database) and
//! HTTP revalidation (ETag / If-None-Match → 304) of public responses.
//!
//! We cache query results, not HTTP responses in a shared edge cache: an entry carries a
//! replication index its rows are at least as new as, so a client that just wrote can skip
//! older entries; a shared HTTP cache cannot make that per-client decision. HTTP caching only
//! revalidates.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::cache::{
    CacheKey, CacheVersion, CachedQuery, FLOOR_TTL_SECONDS, KV_TTL_SECONDS, decode_floor, encode_floor,
    scopes_changed_by_note,
};
use crate::conditional::none_match;
use crate::db::PipelineOutcome;
use crate::error::ApiError;
use crate::notes::DeletedNote;

use super::{ApiRequest, ApiResponse, CacheStatus, Context, IsolateState, KvWrite, Platform};

/// Public responses may be stored anywhere but must be revalidated each time (cheap with the
/// ETag), so no browser or CDN copy outlives a change for its own author.
const PUBLIC_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Answers from the cache when an entry is fresh enough for this client and not below its
/// scope's floor; otherwise runs `load(kept)` and fills both tiers — unless the answer is older
/// than a change this isolate knows of, which a lagging replica may still serve but nobody may
/// keep. `load` returns the JSON body and, when `kept`, the version its rows are at least as new
/// as ([`cached_version`]: never the answer's own index, which can name a change that landed
/// during the read). Without a `key`, or with the cache off, `load(false)` answers
/// alone (`cache;desc=bypass`).
pub async fn read_through<P, L, F>(
    context: &Context<'_, P>,
    key: Option<&CacheKey>,
    load: L,
) -> Result<ApiResponse, ApiError>
where
    P: Platform,
    L: FnOnce(bool) -> F,
    F: Future<Output = Result<(Vec<u8>, Option<CacheVersion>), ApiError>>,
{
    let Some(key) = key.filter(|_| context.config.data_path.read_cache) else {
        context.report.borrow_mut().cache = CacheStatus::Bypass;
        let (body, _) = load(false).await?;
        return Ok(public_json(body));
    };
    let platform = context.platform;
    let memory = &platform.isolate().memory;
    let required = context.requirement.as_ref();
    // An isolate that knows of a failover neither serves nor keeps rows of a dead branch.
    let of_history = |entry: &CachedQuery| {
        let primary = platform.isolate().primary.borrow();
        entry.is_of(primary.record().map(|record| record.history()))
    };
    let serves = |entry: &CachedQuery| entry.is_fresh_for(required) && of_history(entry);
    let from_memory = memory.borrow().get(key, platform.now_ms()).cloned();
    if let Some(entry) = from_memory.filter(serves) {
        context.report.borrow_mut().cache = CacheStatus::HitMemory;
        return Ok(public_json(entry.body));
    }
    let floor_key = key.scope.floor_key();
    let from_kv = match platform.kv_get_many(&[&key.key, &floor_key]).await {
        Ok(values) => {
            let mut values = values.into_iter();
            let (entry, floor) = (values.next().flatten(), values.next().flatten());
            if let Some(floor) = floor.as_deref().and_then(decode_floor) {
                memory.borrow_mut().raise_floor(&key.scope, floor, platform.now_ms());
            }
            entry.and_then(|bytes| CachedQuery::decode(&bytes))
        }
        Err(error) => {
            platform.log(&format!("KV read of {} failed, reading the database: {error}", key.key));
            None
        }
    };
    let usable = |entry: &CachedQuery| {
        let now = platform.now_ms();
        entry.version.holds(&memory.borrow().floor(&key.scope, now)) && now < entry.expires_at_ms()
    };
    if let Some(entry) = from_kv.filter(|entry| serves(entry) && usable(entry)) {
        context.report.borrow_mut().cache = CacheStatus::HitKv;
        memory.borrow_mut().put(key, entry.clone(), platform.now_ms());
        return Ok(public_json(entry.body));
    }
    context.report.borrow_mut().cache = CacheStatus::Miss;
    let (body, version) = load(true).await?;
    // An answer without an index cannot be proven fresh for anyone who wrote: do not keep it.
    // The floor is read again now: a change may have landed while the database answered. What
    // this isolate would not serve from the cache (rows of a dead branch) is not put there for
    // isolates that know less.
    if let Some(version) = version {
        let entry = CachedQuery { version, filled_at_ms: platform.now_ms() as i64, body: body.clone() };
        if !of_history(&entry) {
            return Ok(public_json(body));
        }
        let mut memory = memory.borrow_mut();
        if memory.put(key, entry.clone(), platform.now_ms()) && memory.claim_kv_fill(&key.key, platform.now_ms()) {
            platform.kv_put_in_background(KvWrite::now(&key.key, entry.encode(), KV_TTL_SECONDS));
        }
    }
    Ok(public_json(body))
}

/// Where in the history a read's rows are at least as new as, for a cache to keep them: its
/// index probe's index under the answering node's term (`PipelineOutcome::term`). `None`
/// without a probe's index.
pub fn cached_version(outcome: &PipelineOutcome) -> Option<CacheVersion> {
    outcome.index_before_read.map(|index| CacheVersion::new(outcome.term, index))
}

/// Leaves a floor at this request's write on every scope a change to note `id` touches: here
/// at once, in KV (other isolates and locations) as fast as KV propagates. Without a known
/// index (a primary that reports none) the floor is the highest possible: nothing is cached in
/// those scopes until it expires.
pub fn invalidate_note<P: Platform>(context: &Context<'_, P>, id: &str) {
    if !context.config.data_path.read_cache {
        return;
    }
    let platform = context.platform;
    let written = context.report.borrow().written.unwrap_or(CacheVersion::MAX);
    for scope in scopes_changed_by_note(id) {
        let delay = {
            let mut memory = platform.isolate().memory.borrow_mut();
            memory.raise_floor(&scope, written, platform.now_ms());
            memory.schedule_floor_write(&scope, platform.now_ms())
        };
        let Some(delay) = delay else { continue };
        let key = scope.floor_key();
        let value = Box::new(move |isolate: &IsolateState, now_ms: f64| {
            isolate.memory.borrow_mut().send_floor_write(&scope, now_ms).map(encode_floor)
        });
        platform.kv_put_in_background(KvWrite {
            key,
            ttl_seconds: FLOOR_TTL_SECONDS,
            after_ms: delay.ceil() as u32,
            value,
        });
    }
}

/// Drops the caches of the published notes among `deleted`.
pub fn invalidate_deleted_notes<P: Platform>(context: &Context<'_, P>, deleted: &[DeletedNote]) {
    for note in deleted.iter().filter(|note| note.was_public) {
        invalidate_note(context, &note.id);
    }
}

fn public_json(body: Vec<u8>) -> ApiResponse {
    ApiResponse { status: 200, headers: vec![("Content-Type".into(), "application/json".into())], body }
        .with_header("Cache-Control", PUBLIC_CACHE_CONTROL)
}

/// Adds a strong ETag and answers 304 when the client already has this body.
pub fn conditional(request: &ApiRequest, response: ApiResponse) -> ApiResponse {
    let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&Sha256::digest(&response.body)[..16]));
    let matches = request.header("if-none-match").is_some_and(|value| none_match(value, &etag));
    if matches {
        let kept: Vec<(String, String)> =
            response.headers.into_iter().filter(|(name, _)| !name.eq_ignore_ascii_case("content-type")).collect();
        return ApiResponse { status: 304, headers: kept, body: Vec::new() }.with_header("ETag", etag);
    }
    response.with_header("ETag", etag)
}
