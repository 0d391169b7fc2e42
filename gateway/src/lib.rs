//! The canary gateway: a Worker in front of two builds of edgestack (service bindings `BLUE` and
//! `GREEN`) that gives each user one version, by percentage and by region, honours the version
//! override header, and counts requests, errors and latency per version for the release gate.
//!
//! State (the split and the counters) lives in the isolate's memory: `wrangler dev` runs one
//! isolate, so it is exact locally; in production a Worker runs in many isolates, which is why
//! production uses Cloudflare's gradual deployments and Analytics Engine instead (see
//! docs/releases.md).

mod admin;
mod state;

use edgestack_core::assets::cache_control_with_cookie;
use edgestack_core::region::{DEV_REGION_HEADER, Location, RegionName, RequestRegion};
use release::routing::{
    Reason, SERVED_BY_HEADER, StickyKey, VERSION_KEY_HEADER, VERSION_OVERRIDE_HEADER, Version, bucket_bps, choose,
    requested_override, resolve_override, sticky_key_from_cookies,
};
use worker::{Context, Date, Env, Headers, Request, Response, Result, event};

use crate::state::with_state;

/// Paths only the gateway answers; everything else goes to blue or green.
const ADMIN_PREFIX: &str = "/__gateway/";
/// The version id header the edgestack worker puts on API responses.
const VERSION_ID_HEADER: &str = "x-edgestack-version-id";
/// Says why the request went where it did (`split` or `override`), for testers.
const REASON_HEADER: &str = "x-edgestack-canary-reason";
/// Set when a fingerprinted asset came from the other version (static asset skew).
const ASSET_FALLBACK_HEADER: &str = "x-edgestack-asset-fallback";

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let settings = Settings::from_env(&env);
    with_state(|state| state.initialize(&settings.initial_split));
    if req.path().starts_with(ADMIN_PREFIX) {
        return admin::handle(req, &settings).await;
    }
    forward(req, &env, &settings).await
}

/// The gateway's vars, read once per request.
pub(crate) struct Settings {
    /// Bearer token for `/__gateway/*`; without one those paths answer 404.
    pub token: Option<String>,
    /// The worker name the override header must name (Cloudflare's format).
    pub worker_name: String,
    pub development: bool,
    /// The green share before any config call, e.g. `0` or `10`.
    pub initial_split: String,
}

impl Settings {
    fn from_env(env: &Env) -> Self {
        let var = |name: &str| env.var(name).ok().map(|value| value.to_string()).filter(|value| !value.is_empty());
        Self {
            token: var("GATEWAY_TOKEN"),
            worker_name: var("GATEWAY_WORKER_NAME").unwrap_or_else(|| "edgestack".into()),
            development: var("EDGESTACK_ENV").as_deref() == Some("development"),
            initial_split: var("GATEWAY_INITIAL_SPLIT").unwrap_or_else(|| "0".into()),
        }
    }
}

fn binding(version: Version) -> &'static str {
    match version {
        Version::Blue => "BLUE",
        Version::Green => "GREEN",
    }
}

async fn forward(req: Request, env: &Env, settings: &Settings) -> Result<Response> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let location = Location { continent: req.cf().and_then(|cf| cf.continent()), colo: req.cf().map(|cf| cf.colo()) };
    let region = RequestRegion::new(
        RegionName::from_override(header(DEV_REGION_HEADER).as_deref(), settings.development),
        &location,
    );
    let (split, blue_id, green_id) = with_state(|state| state.routing_inputs());
    let overridden = header(VERSION_OVERRIDE_HEADER)
        .and_then(|value| requested_override(&value, &settings.worker_name))
        .and_then(|value| resolve_override(&value, blue_id.as_deref(), green_id.as_deref()));
    // As Cloudflare does, a version key decides when the request carries one (the front Worker
    // sets it from the user's cookie, and mints that cookie itself); without one the gateway's
    // own cookie stands in, minted here on a first visit.
    let version_key = header(VERSION_KEY_HEADER).filter(|key| !key.trim().is_empty());
    let (bucket, minted) = match (version_key, header("cookie").and_then(|cookies| sticky_key_from_cookies(&cookies))) {
        (Some(version_key), _) => (bucket_bps(&version_key), None),
        (None, Some(key)) => (key.bucket_bps(), None),
        (None, None) => {
            let key = StickyKey::from_random(random_bytes());
            (key.bucket_bps(), Some(key))
        }
    };
    let (version, reason) = choose(&split, region.name.as_str(), bucket, overridden);

    // Fingerprinted assets may only exist in the other build (skew); keep a copy to retry there.
    let is_asset =
        req.path().starts_with("/assets/") && matches!(req.method(), worker::Method::Get | worker::Method::Head);
    let retry = if is_asset { req.clone().ok() } else { None };

    let started = Date::now().as_millis();
    let answer = env.service(binding(version))?.fetch_request(req).await;
    let latency_ms = u32::try_from(Date::now().as_millis().saturating_sub(started)).unwrap_or(u32::MAX);
    // The chosen version's own answer is what the gate judges it by: an asset it lacks (404) and
    // the other version then serves is not counted with the other's status under its name.
    let (status, version_id) = match &answer {
        Ok(response) => (response.status_code(), response.headers().get(VERSION_ID_HEADER).ok().flatten()),
        Err(_) => (502, None),
    };
    with_state(|state| state.record(version, status, latency_ms, version_id));
    let (mut response, served_by, fallback) = match answer {
        Ok(response) if response.status_code() == 404 && retry.is_some() => {
            match fetch_other(env, version, retry).await {
                Some(other) => (other, version.other(), true),
                None => (response, version, false),
            }
        }
        Ok(response) => (response, version, false),
        Err(error) => {
            worker::console_error!("{} unreachable: {error}", version.as_str());
            let body = serde_json::json!({"error": {"code": "bad_gateway", "message": "version unreachable"}});
            (Response::from_json(&body)?.with_status(502), version, false)
        }
    };

    // Headers of a fetched response are immutable; a copy is not.
    let headers: Headers = response.headers().clone();
    headers.set(SERVED_BY_HEADER, served_by.as_str())?;
    headers.set(REASON_HEADER, if reason == Reason::Override { "override" } else { "split" })?;
    if fallback {
        headers.set(ASSET_FALLBACK_HEADER, "1")?;
    }
    if let Some(key) = minted {
        headers.append("set-cookie", &key.set_cookie())?;
        // The key is this visitor's, as the front Worker's is: kept from shared caches.
        if let Some(private) = cache_control_with_cookie(headers.get("cache-control")?.as_deref()) {
            headers.set("cache-control", &private)?;
        }
    }
    response = response.with_headers(headers);
    Ok(response)
}

/// The asset from the other version, if it has it.
async fn fetch_other(env: &Env, version: Version, retry: Option<Request>) -> Option<Response> {
    let other = env.service(binding(version.other())).ok()?.fetch_request(retry?).await.ok()?;
    (other.status_code() == 200 || other.status_code() == 304).then_some(other)
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Only stickiness depends on it; time-based bytes still spread users.
        let now = Date::now().as_millis().to_le_bytes();
        bytes[..8].copy_from_slice(&now);
    }
    bytes
}
