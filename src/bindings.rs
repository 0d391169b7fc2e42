//! Turns `Env` bindings (vars, secrets, version metadata, assets) into plain values for the core.

use edgestack_core::config::{Config, ConfigError};
use edgestack_core::health::VersionInfo;
use worker::{Env, Fetcher, WorkerVersionMetadata};

/// Name of the `[version_metadata]` binding in wrangler.toml.
const VERSION_METADATA: &str = "CF_VERSION_METADATA";
/// Name of the `[assets]` binding in wrangler.toml.
const ASSETS: &str = "ASSETS";

pub fn config(env: &Env) -> Result<Config, ConfigError> {
    // Secrets and vars are both plain strings to the runtime; one lookup serves both.
    Config::from_lookup(|name| env.var(name).ok().map(|value| value.to_string()))
}

/// A missing binding reports an empty version rather than failing the request it labels.
pub fn version_info(env: &Env) -> VersionInfo {
    match env.get_binding::<WorkerVersionMetadata>(VERSION_METADATA) {
        Ok(metadata) => VersionInfo { id: metadata.id(), tag: metadata.tag(), timestamp: metadata.timestamp() },
        Err(_) => VersionInfo::default(),
    }
}

pub fn assets(env: &Env) -> worker::Result<Fetcher> {
    env.assets(ASSETS)
}
