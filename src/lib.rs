//! The edgestack worker: the thin wasm layer between Cloudflare's runtime and edgestack-core.
//!
//! `/api/*` reaches this code (`run_worker_first` in wrangler.toml); every other path is
//! answered by Workers Static Assets before the worker runs.

mod bindings;
mod http;
mod platform;

use worker::{Context, Date, Env, Request, Response, Result, Router, event};

use crate::platform::WorkerPlatform;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let version = bindings::version_info(&env);
    let (started, path, metrics_env) = (Date::now().as_millis(), req.path(), env.clone());
    let response = Router::with_data((ctx, version.clone()))
        .or_else_any_method_async("/api/*path", |req, route| async move {
            let (ctx, version) = route.data;
            let platform = WorkerPlatform::new(&route.env, &ctx);
            http::handle_api(req, &platform, version).await
        })
        // Only reached if the assets configuration sends a non-API path here.
        .or_else_any_method_async("/*path", |req, route| async move {
            bindings::assets(&route.env)?.fetch_request(req).await
        })
        .run(req, env)
        .await?;
    let latency_ms = Date::now().as_millis().saturating_sub(started) as f64;
    bindings::record_request(&metrics_env, &version, &path, response.status_code(), latency_ms);
    Ok(http::with_standard_headers(response, &version))
}
