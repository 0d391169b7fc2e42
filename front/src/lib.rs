//! The front Worker: on the public route before the app Worker (service binding `APP`), it sends
//! the canary region's users to the canary version during a regional release and forwards every
//! other request unchanged (docs/releases.md, "Production: regions and the canary").
//!
//! The rule is in its vars, which `release deploy` sets with `wrangler deploy --var …`: a change
//! of rule is a deployment of this Worker, so it takes effect in new isolates within seconds,
//! costs no I/O per request, and is read once per isolate. The decision itself is
//! `release::front::FrontConfig::route`, a pure function tested on the host.

use std::sync::OnceLock;

use edgestack_core::region::DEV_REGION_HEADER;
use release::front::{APP_BINDING, FrontConfig, Route, Visit};
use release::routing::VERSION_OVERRIDE_HEADER;
use worker::{Context, Env, Request, Response, Result, event};

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

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let app = env.service(APP_BINDING)?;
    let route = match config(&env) {
        Some(config) => {
            let header = |name: &str| req.headers().get(name).ok().flatten();
            let (dev_region, overrides) = (header(DEV_REGION_HEADER), header(VERSION_OVERRIDE_HEADER));
            let continent = req.cf().and_then(|cf| cf.continent());
            config.route(&Visit {
                continent: continent.as_deref(),
                dev_region: dev_region.as_deref(),
                overrides: overrides.as_deref(),
            })
        }
        None => return app.fetch_request(req).await,
    };
    match route {
        Route::PassThrough(_) => app.fetch_request(req).await,
        Route::Canary { overrides } => {
            // The runtime's request has immutable headers; `new Request(req)` takes its body
            // stream (nothing is buffered) and gives headers that can be set.
            let mut pinned = req.clone_mut()?;
            pinned.headers_mut()?.set(VERSION_OVERRIDE_HEADER, &overrides)?;
            app.fetch_request(pinned).await
        }
    }
}
