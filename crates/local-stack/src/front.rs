//! The production front Worker (`front/wrangler.toml`, docs/releases.md) in a `wrangler dev`
//! session of its own, its `APP` binding pointed at a Worker of another session (the canary
//! stack's gateway, which plays Cloudflare's version routing locally).
//!
//! Its rule comes through vars, as in production, where `release deploy` sets them with
//! `wrangler deploy --var …`: here they go into the session's env file, and a new rule is a new
//! session — the local counterpart of a deployment.

use std::path::Path;
use std::time::Duration;

use crate::canary::standalone_config;
use crate::workspace_root;
use crate::wrangler::{WranglerDev, WranglerDevOptions};

pub struct FrontDev {
    pub dev: WranglerDev,
    _config: tempfile::TempDir,
}

impl FrontDev {
    /// Starts the front Worker (built: `cargo xtask build-front`) with `vars`, bound to
    /// `app_service` — a Worker of a session started with the same `registry`. Ready when
    /// `/api/health` answers 200 through it.
    pub fn start(registry: &Path, app_service: &str, vars: Vec<(String, String)>) -> Result<Self, String> {
        let root = workspace_root();
        if !root.join("front/build/index.js").is_file() {
            return Err("front/build/index.js is missing: run `cargo xtask build-front` first".into());
        }
        let committed = root.join("front/wrangler.toml");
        let text = std::fs::read_to_string(&committed).map_err(|e| format!("{}: {e}", committed.display()))?;
        let copy = rebind_app(&standalone_config(&text, &root.join("front"), None), app_service)?;
        let folder =
            tempfile::Builder::new().prefix("edgestack-front-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let config = folder.path().join("wrangler.toml");
        std::fs::write(&config, copy).map_err(|e| format!("{}: {e}", config.display()))?;
        let options = WranglerDevOptions { configs: vec![config], vars, ready_timeout: Duration::from_secs(120) };
        let dev = WranglerDev::start_in_registry(options, registry).map_err(|e| e.to_string())?;
        Ok(Self { dev, _config: folder })
    }

    pub fn url(&self) -> &str {
        &self.dev.base_url
    }
}

/// `config` with its `APP` service binding's `service` replaced by `service`.
pub fn rebind_app(config: &str, service: &str) -> Result<String, String> {
    let mut copy = String::new();
    let (mut in_app, mut rebound) = (false, false);
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_app = false;
        }
        if trimmed.replace(' ', "") == "binding=\"APP\"" {
            in_app = true;
        }
        if in_app && trimmed.starts_with("service") && trimmed.contains('=') {
            copy.push_str(&format!("service = \"{service}\"\n"));
            rebound = true;
            continue;
        }
        copy.push_str(line);
        copy.push('\n');
    }
    if rebound { Ok(copy) } else { Err("the front config has no [[services]] APP binding with a `service`".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_front_config_is_rebound_to_the_local_gateway() {
        let front = workspace_root().join("front");
        let text = std::fs::read_to_string(front.join("wrangler.toml")).unwrap();
        let copy = rebind_app(&standalone_config(&text, &front, None), "edgestack-gateway").unwrap();
        assert!(copy.contains("binding = \"APP\"\nservice = \"edgestack-gateway\"\n"), "{copy}");
        assert!(!copy.contains("service = \"edgestack\"\n") && !copy.contains("[build]"), "{copy}");
        assert!(rebind_app("name = \"x\"\n", "y").is_err());
    }
}
