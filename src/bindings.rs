//! Turns `Env` bindings (vars, secrets, version metadata, assets) into plain values for the core.

use std::sync::OnceLock;

use edgestack_core::config::{Config, ConfigError};
use edgestack_core::health::VersionInfo;
use edgestack_core::services::Service;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::{self, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Fetcher, ScheduledEvent, WorkerVersionMetadata};

/// Name of the `[version_metadata]` binding in wrangler.toml.
const VERSION_METADATA: &str = "CF_VERSION_METADATA";
/// Name of the `[[analytics_engine_datasets]]` binding in wrangler.toml.
const REQUEST_METRICS: &str = "REQUEST_METRICS";
/// Name of the `[assets]` binding in wrangler.toml.
const ASSETS: &str = "ASSETS";

// Vars, secrets and version metadata are fixed for an isolate's life: changing any of them is
// a new deployment, which runs in new isolates. So each is read and parsed once per isolate
// (reading fifteen vars across the JS boundary and building key objects on every request cost
// more than the rest of a health check; docs/performance.md).
static CONFIG: OnceLock<Result<Config, ConfigError>> = OnceLock::new();
static VERSION: OnceLock<VersionInfo> = OnceLock::new();

/// The deployment's configuration, parsed on the isolate's first request.
pub fn config(env: &Env) -> Result<&'static Config, &'static ConfigError> {
    // Secrets and vars are both plain strings to the runtime; one lookup serves both.
    CONFIG.get_or_init(|| Config::from_lookup(|name| env.var(name).ok().map(|value| value.to_string()))).as_ref()
}

/// The running version. A missing binding reports an empty version rather than failing the
/// request it labels.
pub fn version_info(env: &Env) -> &'static VersionInfo {
    VERSION.get_or_init(|| match env.get_binding::<WorkerVersionMetadata>(VERSION_METADATA) {
        Ok(metadata) => VersionInfo { id: metadata.id(), tag: metadata.tag(), timestamp: metadata.timestamp() },
        Err(_) => VersionInfo::default(),
    })
}

pub fn assets(env: &Env) -> worker::Result<Fetcher> {
    env.assets(ASSETS)
}

/// One Analytics Engine data point per API response, for the release gate (docs/releases.md):
/// index and blob1 the version id, blob2 the route (`/api/<first segment>`, so ids never reach
/// analytics), blob3 the status class, double1 the latency in ms; the version is the one the
/// isolate's first response handed the edge. Without the binding (or if the write fails) the
/// response is unaffected.
pub fn record_request(env: &Env, path: &str, status: u16, latency_ms: f64) {
    let route = path.split('/').filter(|segment| !segment.is_empty()).take(2).collect::<Vec<_>>().join("/");
    let status_class = format!("{}xx", status / 100);
    // A lost data point only thins the release gate's sample.
    let _ = crate::edge::record_request(env, REQUEST_METRICS, &format!("/{route}"), &status_class, latency_ms);
}

#[wasm_bindgen]
extern "C" {
    /// A service binding seen as what it also is in JavaScript: a way to fire the bound
    /// Worker's `scheduled` handler.
    #[wasm_bindgen(extends = Object)]
    type ScheduledTarget;

    #[wasm_bindgen(method, catch)]
    fn scheduled(this: &ScheduledTarget, options: &JsValue) -> Result<Promise, JsValue>;
}

/// Fires `service`'s `scheduled` handler with `event`'s cron and time.
pub async fn relay_scheduled(env: &Env, service: Service, event: &ScheduledEvent) -> Result<(), String> {
    let binding = service.binding().ok_or_else(|| format!("{} has no binding", service.as_str()))?;
    let target: ScheduledTarget = env.service(binding).map_err(|e| e.to_string())?.into_rpc();
    let options = Object::new();
    let set = |name: &str, value: JsValue| Reflect::set(&options, &JsValue::from_str(name), &value).map(|_| ());
    set("cron", JsValue::from_str(&event.cron())).map_err(|e| format!("{e:?}"))?;
    let time = js_sys::Date::new(&JsValue::from_f64(event.schedule()));
    set("scheduledTime", time.unchecked_into()).map_err(|e| format!("{e:?}"))?;
    let promise = target.scheduled(&options).map_err(|e| format!("{e:?}"))?;
    worker::wasm_bindgen_futures::JsFuture::from(promise).await.map(|_| ()).map_err(|e| format!("{e:?}"))
}
