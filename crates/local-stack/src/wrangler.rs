//! `wrangler dev` on free ports with its own state folder, ready when `/api/health` answers.
//!
//! Vars and secrets reach the first Worker through an env file in that state folder, readable
//! by this user only — never as `--var` arguments, which every user of the machine can read
//! in `ps` and which wrangler prints in its bindings table.

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
    /// Vars and secrets for the first Worker, through `--env-file` (which replaces reading that
    /// Worker's `.dev.vars`; the other Workers read the `.dev.vars` beside their config).
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
    log_path: PathBuf,
    /// The session's configs (the first is the Worker it serves) and where it keeps local
    /// state (KV among it), for [`Self::kv_put`].
    configs: Vec<PathBuf>,
    persist: PathBuf,
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

/// How many times a session is started on new ports when one was taken (see `start_with_registry`).
const PORT_ATTEMPTS: u32 = 3;

impl WranglerDev {
    pub fn start(options: WranglerDevOptions) -> Result<Self, StartError> {
        Self::start_with_registry(options, None)
    }

    /// A session whose service bindings reach Workers of other sessions started with the same
    /// `registry` folder (wrangler's dev registry), and theirs this one's Workers: e.g. the front
    /// Worker in a session of its own before the canary stack's gateway.
    pub fn start_in_registry(options: WranglerDevOptions, registry: &Path) -> Result<Self, StartError> {
        Self::start_with_registry(options, Some(registry))
    }

    /// Starts the session, again on new ports (at most [`PORT_ATTEMPTS`] times) when wrangler
    /// finds one taken: a port found free is closed again before wrangler binds it, and on a
    /// busy machine another session or workerd's own listeners can take it in between.
    fn start_with_registry(options: WranglerDevOptions, registry: Option<&Path>) -> Result<Self, StartError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options, registry) {
                Err(StartError(message)) if attempt < PORT_ATTEMPTS && message.contains("Address already in use") => {
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn start_once(options: &WranglerDevOptions, registry: Option<&Path>) -> Result<Self, StartError> {
        let root = workspace_root();
        let node = find_node(&root).map_err(|error| StartError(error.to_string()))?;
        let state = tempfile::Builder::new()
            .prefix("edgestack-wrangler-")
            .tempdir()
            .map_err(|error| StartError(format!("temp dir: {error}")))?;
        let port = free_port().map_err(|error| StartError(format!("free port: {error}")))?;
        let inspector_port = free_port().map_err(|error| StartError(format!("free port: {error}")))?;
        let persist = state.path().join("persist");

        let mut command = Command::new(&node);
        command
            .current_dir(&root)
            .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
            .arg("dev")
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &inspector_port.to_string()])
            .arg("--persist-to")
            .arg(&persist)
            .args(["--show-interactive-dev-session=false", "--log-level", "info"])
            // `/__scheduled` fires the first Worker's cron (the entry relays it to accounts).
            .arg("--test-scheduled")
            .env("PATH", path_with_node_first(&node))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_LOG_PATH", state.path().join("wrangler-logs"))
            // A registry of its own unless shared on purpose: sessions sharing wrangler's default
            // dev registry reload each other whenever one starts or stops, which drops isolate
            // state mid-test.
            .env("WRANGLER_REGISTRY_PATH", registry.map_or_else(|| state.path().join("registry"), Path::to_path_buf))
            .env("NO_COLOR", "1");
        for config in &options.configs {
            command.arg("--config").arg(config);
        }
        if !options.vars.is_empty() {
            let env_file = state.path().join("vars.env");
            write_env_file(&env_file, &options.vars).map_err(StartError)?;
            command.arg("--env-file").arg(env_file);
        }
        // wrangler runs `cargo xtask build` (the configs' `[build] command`).
        crate::cargo::without_outer_cargo_env(&mut command);
        let started = Instant::now();
        let log_path = state.path().join("wrangler.log");
        let process = GroupChild::spawn("wrangler dev", command, &log_path)
            .map_err(|error| StartError(format!("cannot start wrangler: {error}")))?;
        let mut dev = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            started_in: Duration::ZERO,
            process,
            log_path,
            configs: options.configs.clone(),
            persist,
            _state: state,
        };
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
        &self.log_path
    }

    /// Writes `value` under `key` in the local KV namespace `binding` of the Worker `config`
    /// describes (one of this session's configs), as `wrangler kv key put --local` does in a
    /// project: the running session sees it at its next read. An operator's failover writes the
    /// primary record the same way in production, without `--local` (docs/failover.md).
    pub fn kv_put(&self, config: &Path, binding: &str, key: &str, value: &str) -> Result<(), String> {
        if !self.configs.iter().any(|known| known == config) {
            return Err(format!("{} is not a config of this wrangler dev session", config.display()));
        }
        let root = workspace_root();
        let node = find_node(&root).map_err(|error| error.to_string())?;
        let mut command = Command::new(&node);
        command
            .current_dir(&root)
            .arg(root.join("node_modules/wrangler/bin/wrangler.js"))
            .args(["kv", "key", "put", "--local", "--binding", binding])
            .arg("--persist-to")
            .arg(&self.persist)
            .arg("--config")
            .arg(config)
            .args([key, value])
            .env("PATH", path_with_node_first(&node))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1");
        let output = crate::process::output(&mut command)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("wrangler kv key put {key} failed: {}", String::from_utf8_lossy(&output.stderr)))
        }
    }

    /// The session's configs, the Worker it serves first.
    pub fn configs(&self) -> &[PathBuf] {
        &self.configs
    }

    /// The process id of `wrangler` (node), the leader of the session's process group.
    pub fn pid(&self) -> u32 {
        self.process.id()
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

/// Writes `vars` as a dotenv file (`NAME="value"`, what `.dev.vars` and `--env-file` read)
/// that only this user can read.
pub fn write_env_file(path: &Path, vars: &[(String, String)]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::from("# Written by local-stack for one local run; never committed.\n");
    for (name, value) in vars {
        // wrangler's dotenv reader unescapes nothing but `\n` inside double quotes, so a value
        // with a quote, a backslash or a line break cannot be written faithfully. The message
        // names the variable, never the value (it may be a secret).
        if value.contains(['"', '\\', '\n', '\r']) {
            return Err(format!("{name}: a quote, backslash or line break cannot go into {}", path.display()));
        }
        text.push_str(&format!("{name}=\"{value}\"\n"));
    }
    let describe = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(describe)?;
    file.write_all(text.as_bytes()).map_err(describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_private_and_refuse_what_dotenv_cannot_carry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vars.env");
        let vars =
            vec![("A".to_string(), "http://127.0.0.1:1/x?y=z".to_string()), ("B".to_string(), "ab12".to_string())];
        write_env_file(&path, &vars).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nA=\"http://127.0.0.1:1/x?y=z\"\nB=\"ab12\"\n"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let error = write_env_file(&path, &[("SECRET".to_string(), "a\"b-hunter2".to_string())]).unwrap_err();
        assert!(error.starts_with("SECRET:") && !error.contains("hunter2"), "{error}");
    }
}
