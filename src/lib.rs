//! The edgestack worker: the thin wasm layer between Cloudflare's runtime and edgestack-core.
//!
//! One build serves every shape (`EDGESTACK_SERVICE`): the single Worker and the entry reach
//! this code for `/api` and `/api/*` only (`run_worker_first`; Workers Static Assets answers the rest);
//! the `accounts` and `notes` services have no assets and no public route, only their service
//! bindings, and also answer `/internal/*`.

mod bindings;
mod edge;
mod http;
mod platform;

use std::future::Future;
use std::task::{Poll, Waker};
use worker::worker_sys::web_sys;

use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{Context, Env, Error, Request, Result, ScheduleContext, ScheduledEvent, event};

use edgestack_core::health::VersionInfo;
use edgestack_core::request_url::RequestUrl;
use edgestack_core::services::Service;

use crate::edge::RequestHead;
use crate::platform::WorkerPlatform;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The fetch handler `src/entry.mjs` calls: `(request, env, ctx) → Response | Promise<Response>`.
///
/// It runs the request until it first waits on I/O. An answer that needs none — health, a
/// memory-cache hit, a refusal — goes back at once, without the Promise and the microtask an
/// async export costs on every request; otherwise the rest runs as a Promise (docs/performance.md).
/// That first poll has a no-op waker, so every future on the request path must take its waker
/// anew on each poll (JS Promises do; see `platform::timer`).
#[wasm_bindgen(js_name = handleFetch)]
pub fn handle_fetch(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let mut answer = Box::pin(fetch(req, env, Context::new(ctx)));
    match answer.as_mut().poll(&mut std::task::Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(response)) => response.into(),
        // Only if even an error response could not be built: the runtime answers 500.
        Poll::Ready(Err(error)) => js_sys::Promise::reject(&error).into(),
        Poll::Pending => future_to_promise(async move { answer.await.map(JsValue::from) }).into(),
    }
}

async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> std::result::Result<web_sys::Response, JsValue> {
    let started = edge::now_ms();
    let version = bindings::version_info(&env);
    http::prepare_isolate(version);
    match respond(req, &env, &ctx, version, started).await {
        Ok(response) => Ok(response),
        Err(error) => {
            worker::console_error!("request failed: {error}");
            answer_failure(env, started)
        }
    }
}

/// The answer to a request the worker could not answer itself — an error before it had a
/// response, or, called by `src/entry.mjs`, a panic or exception: recorded as a `5xx` data point
/// started at `started_ms` (the `Date.now()` of its arrival; the route is unknown here: `/`),
/// since the release gate counts what the Worker answered and a canary that fails this way would
/// otherwise look clean (docs/releases.md), and answered with the API's JSON `500 internal`, not
/// the runtime's HTML error page. After a panic this is the call that resets the wasm instance
/// (the glue's recovery), so the isolate's standard headers are given again first. Throws when
/// even this answer cannot be built; the entry then lets the original error go on.
#[wasm_bindgen(js_name = answerFailure)]
pub fn answer_failure(env: Env, started_ms: f64) -> std::result::Result<web_sys::Response, JsValue> {
    http::prepare_isolate(bindings::version_info(&env));
    bindings::record_request(&env, "/", 500, (edge::now_ms() - started_ms).max(0.0));
    http::internal_error()
}

async fn respond(
    req: web_sys::Request,
    env: &Env,
    ctx: &Context,
    version: &VersionInfo,
    started: f64,
) -> Result<web_sys::Response> {
    let head = RequestHead::of(&req)?;
    // The runtime's own serialization, split rather than parsed again (docs/performance.md).
    let href = head.url.clone();
    let url = RequestUrl::split(&href).ok_or_else(|| Error::RustError(format!("not a URL: {href}")))?;
    let path = url.path;
    let response = if path == "/api" || path.starts_with("/api/") || path.starts_with("/internal/") {
        let platform = WorkerPlatform::new(env, ctx, Some(&req));
        http::handle_api(&req, head, url, &platform, version).await?
    } else {
        // Only reached if the assets configuration sends a non-API path here.
        let answer = match bindings::assets(env) {
            Ok(assets) => web_sys::Response::from(assets.fetch_request(Request::from(req)).await?),
            Err(_) => http::not_found()?,
        };
        http::with_standard_headers(answer, version)
    };
    let latency_ms = (edge::now_ms() - started).max(0.0);
    bindings::record_request(env, path, response.status(), latency_ms);
    Ok(response)
}

/// The `accounts` service's cron trigger: retries account deletions `notes` has not yet
/// acknowledged (docs/services.md).
///
/// Locally, `wrangler dev` fires only its first Worker's cron (`/__scheduled`), so the entry
/// relays a cron event to `accounts`; deployed, the entry has no trigger and accounts its own.
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, ctx: ScheduleContext) {
    let config = match bindings::config(&env) {
        Ok(config) => config,
        Err(error) => return worker::console_error!("scheduled run skipped, configuration error: {error}"),
    };
    match config.service {
        Service::Accounts => {}
        Service::Entry => {
            if let Err(error) = bindings::relay_scheduled(&env, Service::Accounts, &event).await {
                worker::console_error!("cron relay to accounts failed: {error}");
            }
            return;
        }
        Service::Monolith | Service::Notes => return,
    }
    let platform = WorkerPlatform::new(&env, &ctx, None);
    let now_ms = edge::now_ms() as i64;
    match edgestack_core::app::deliver_pending_deletions(&platform, config, now_ms).await {
        Ok(report) => {
            worker::console_log!(
                "deletion outbox: {} delivered, {} pending; {} rechecked, {} rechecks pending; {} left for the next run",
                report.delivered,
                report.failed,
                report.rechecked,
                report.recheck_failed,
                report.deferred
            )
        }
        Err(error) => worker::console_error!("deletion outbox not read: {error}"),
    }
}
