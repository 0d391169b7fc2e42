//! The front Worker: on the public route before the app Worker (service binding `APP`), it gives
//! every request the user's version key (`Cloudflare-Workers-Version-Key`, minting the
//! `edgestack_canary` cookie on a first visit) so a gradual deployment keeps each user on one
//! version, and during a regional release it pins the canary region's users to the canary
//! version (docs/releases.md, "Production: regions and the canary").
//!
//! The rule is in its vars, which `release deploy` sets with `wrangler deploy --var …`: a change
//! of rule is a deployment of this Worker, so it takes effect in new isolates within seconds,
//! costs no I/O per request, and is read once per isolate. The decisions themselves are
//! `release::front::FrontConfig::route` and `release::front::affinity`, pure functions tested on
//! the host.
//!
//! Every request of the site passes through here, so it works on the runtime's own `Request`
//! and `Response` (no workers-rs wrappers, which read the method, URL, every header and `cf`
//! up front and rebuild the answer) behind a plain module export (`front/src/entry.mjs`), and
//! hands the app's answer Promise back untouched unless it sets a cookie (docs/performance.md),
//! and then for the visitor's own cache only (`private`).

use std::sync::OnceLock;

use edgestack_core::assets::{PRIVATE_NO_STORE, cache_control_with_cookie};
use edgestack_core::region::DEV_REGION_HEADER;
use release::front::{APP_BINDING, Affinity, FrontConfig, Route, Visit, affinity};
use release::routing::{VERSION_KEY_HEADER, VERSION_OVERRIDE_HEADER};
use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::Promise;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::{JsFuture, future_to_promise};
use worker::worker_sys::ext::RequestExt;
use worker::{Date, Env, event, web_sys};

/// The rule, parsed on the isolate's first request (vars are fixed for an isolate's life). A bad
/// rule is logged and ignored: every request then passes through to the deployment's split.
static CONFIG: OnceLock<Option<FrontConfig>> = OnceLock::new();

fn config(env: &Env) -> Option<&'static FrontConfig> {
    CONFIG
        .get_or_init(|| match FrontConfig::from_lookup(|name| env.var(name).ok().map(|value| value.to_string())) {
            Ok(config) => Some(config),
            Err(error) => {
                worker::console_error!("front: no canary rule, every request passes through: {error}");
                None
            }
        })
        .as_ref()
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The fetch handler `front/src/entry.mjs` calls: `(request, env) → Promise<Response>`, the
/// app Worker's own answer (a copy with one more `Set-Cookie` for a new visitor).
#[wasm_bindgen(js_name = handleFetch)]
pub fn handle_fetch(req: web_sys::Request, env: Env) -> Result<Promise, JsValue> {
    let app: worker::worker_sys::Fetcher = env.service(APP_BINDING)?.into_rpc();
    let headers = req.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let affinity = affinity(header("cookie").as_deref(), header(VERSION_KEY_HEADER).as_deref(), random_bytes);
    // Without a rule nothing else is read: `cf` and two more headers cost crossings per request.
    let overrides = config(&env).filter(|config| config.canary.is_some()).and_then(|config| {
        let (dev_region, overrides) = (header(DEV_REGION_HEADER), header(VERSION_OVERRIDE_HEADER));
        let continent = req.cf().and_then(|cf| cf.continent().ok().flatten());
        let visit = Visit {
            continent: continent.as_deref(),
            dev_region: dev_region.as_deref(),
            overrides: overrides.as_deref(),
        };
        match config.route(&visit) {
            Route::Canary { overrides } => Some(overrides),
            Route::PassThrough(_) => None,
        }
    });
    let answer = match (affinity.key(), overrides) {
        (None, None) => app.fetch(&req)?,
        (key, overrides) => {
            // The runtime's request has immutable headers; `new Request(req)` takes its body
            // stream (nothing is buffered) and gives headers that can be set.
            let forwarded = web_sys::Request::new_with_request(&req)?;
            let headers = forwarded.headers();
            if let Some(key) = key {
                headers.set(VERSION_KEY_HEADER, key.as_str())?;
            }
            if let Some(overrides) = overrides {
                headers.set(VERSION_OVERRIDE_HEADER, &overrides)?;
            }
            app.fetch(&forwarded)?
        }
    };
    let Affinity::Minted(key) = affinity else {
        return Ok(answer);
    };
    Ok(future_to_promise(async move {
        let response: web_sys::Response = JsFuture::from(answer).await?.dyn_into()?;
        // A fetched response's headers are immutable; a copy keeps every field (each
        // `Set-Cookie` of the app's its own) and takes one more.
        let headers = web_sys::Headers::new_with_headers(&response.headers())?;
        headers.append("set-cookie", &key.set_cookie())?;
        // The key is this visitor's: a shared cache must not keep it with a page or an asset
        // and hand it to everyone it serves next (RFC 9111 §7.3).
        if let Some(private) = cache_control_with_cookie(headers.get("cache-control")?.as_deref()) {
            headers.set("cache-control", &private)?;
        }
        let init = web_sys::ResponseInit::new();
        init.set_status(response.status());
        init.set_status_text(&response.status_text());
        init.set_headers(&headers);
        Ok(web_sys::Response::new_with_opt_readable_stream_and_init(response.body().as_ref(), &init)?.into())
    }))
}

/// What `front/src/entry.mjs` answers when the app's answer rejects, or the call could not be
/// made: the cause logged, the client told [`release::front::app_failed`] (a HEAD without its
/// body), never cached.
#[wasm_bindgen(js_name = appFailed)]
pub fn app_failed(req: web_sys::Request, error: JsValue) -> Result<web_sys::Response, JsValue> {
    worker::console_error!("front: the app Worker did not answer {} {}: {error:?}", req.method(), req.url());
    let failed = release::front::app_failed();
    let headers = web_sys::Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", PRIVATE_NO_STORE)?;
    if let Some((name, value)) = &failed.header {
        headers.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(failed.status);
    init.set_headers(&headers);
    let body = (req.method() != "HEAD").then(|| failed.body_json());
    web_sys::Response::new_with_opt_str_and_init(body.as_deref(), &init)
}

/// 16 bytes for a new visitor's key from `crypto.getRandomValues`.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Only stickiness depends on it; time-based bytes still spread users.
        bytes[..8].copy_from_slice(&Date::now().as_millis().to_le_bytes());
    }
    bytes
}
