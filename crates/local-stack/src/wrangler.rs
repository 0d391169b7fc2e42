//! `wrangler dev` on free ports with its own state folder, ready when `/api/health` answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::node::{find_node, path_with_node_first};
use crate::process::GroupChild;
use crate::{free_port, workspace_root};

#[derive(Debug, Clone)]
pub struct WranglerDevOptions {
    /// wrangler config files; more than one runs several Workers in one session.
    pub configs: Vec<PathBuf>,
    /// Vars and secrets, passed with `--var` so they override `.dev.vars` (first Worker only).
    pub vars: Vec<(String, String)>,
    /// How long to wait for the first healthy answer (the first start may build the worker).
    pub ready_timeout: Duration,
}

impl Default for WranglerDevOptions {
    fn default() -> Self {
        Self {
            configs: vec![workspace_root().join("wrangler.toml")],
            vars: Vec::new(),
            ready_timeout: Duration::from_secs(120),
        }
    }
}

pub struct WranglerDev {
    pub base_url: String,
    pub started_in: Duration,
    process: GroupChild,
    // Dropped after `process`, so the state folder outlives workerd.
    _state: tempfile::TempDir,
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl WranglerDev {
    pub fn start(options: WranglerDevOptions) -> Result<Self, StartError> {
        let root = workspace_root();
        let node = find_node(&root).map_err(|error| StartError(error.to_string()))?;
        let state = tempfile::Builder::new()
            .prefix("edgestack-wrangler-")
            .tempdir()
            .map_err(|error| StartError(format!("temp dir: {error}")))?;
        let port = free_port().map_err(|error| StartError(format!("free port: {error}")))?;
        let inspector_port = free_port().map_err(|error| StartError(format!("free port: {error}")))?;

        let mut command = Command::new(&node);
        command
            .current_dir(&root)
            .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
            .arg("dev")
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &inspector_port.to_string()])
            .arg("--persist-to")
            .arg(state.path().join("persist"))
            .args(["--show-interactive-dev-session=false", "--log-level", "info"])
            // `/__scheduled` fires the first Worker's cron (the entry relays it to accounts).
            .arg("--test-scheduled")
            .env("PATH", path_with_node_first(&node))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_LOG_PATH", state.path().join("wrangler-logs"))
            // A registry of its own: sessions sharing wrangler's default dev registry reload each
            // other whenever one starts or stops, which drops isolate state mid-test.
            .env("WRANGLER_REGISTRY_PATH", state.path().join("registry"))
            .env("NO_COLOR", "1");
        for config in &options.configs {
            command.arg("--config").arg(config);
        }
        for (name, value) in &options.vars {
            command.arg("--var").arg(format!("{name}:{value}"));
        }
        let started = Instant::now();
        let process = GroupChild::spawn("wrangler dev", command, &state.path().join("wrangler.log"))
            .map_err(|error| StartError(format!("cannot start wrangler: {error}")))?;
        let mut dev =
            Self { base_url: format!("http://127.0.0.1:{port}"), started_in: Duration::ZERO, process, _state: state };
        dev.wait_until_ready(options.ready_timeout)?;
        dev.started_in = started.elapsed();
        Ok(dev)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(4000)
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), StartError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let health = self.url("/api/health");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.process.exited() {
                return Err(StartError(format!("wrangler dev exited ({status}):\n{}", self.log_tail())));
            }
            if agent.get(&health).call().is_ok_and(|response| response.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(StartError(format!("wrangler dev not ready after {timeout:?}:\n{}", self.log_tail())))
    }
}
