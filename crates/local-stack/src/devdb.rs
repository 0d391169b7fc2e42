//! Local libSQL servers (`devdb`): a primary, replicas with injected lag and latency, and the
//! project's migrations applied to the primary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::GroupChild;
use crate::workspace_root;

pub struct DevDb {
    pub url: String,
    pub token: String,
    // Behind a lock so a test can crash and restart the server while other threads use it.
    process: Mutex<GroupChild>,
    db_path: PathBuf,
    args: Vec<String>,
    // Dropped after `process`.
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub latency_ms: Option<u64>,
    pub lag_ms: Option<u64>,
    pub fail_requests: Option<bool>,
}

/// Builds `devdb` once per process (a no-op when it is up to date) and returns its path.
pub fn devdb_binary() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let mut build = crate::cargo::command();
            build.current_dir(&root).args(["build", "--quiet", "--package", "devdb", "--bin", "devdb"]);
            crate::process::run(&mut build)?;
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
            Ok(target.join("debug/devdb"))
        })
        .clone()
}

impl DevDb {
    /// A primary with a fresh database in a temporary folder.
    pub fn start_primary(token: &str, latency_ms: u64) -> Result<Self, String> {
        let dir = temp_dir()?;
        let db_path = dir.path().join("primary.db");
        let args = vec!["--role".into(), "primary".into(), "--latency-ms".into(), latency_ms.to_string()];
        Self::spawn(token, db_path, args, Some(dir))
    }

    /// A replica of `primary`, with its own fresh copy.
    pub fn start_replica(primary: &DevDb, lag_ms: u64, latency_ms: u64) -> Result<Self, String> {
        let dir = temp_dir()?;
        let db_path = dir.path().join("replica.db");
        let args = vec![
            "--role".into(),
            "replica".into(),
            "--primary".into(),
            primary.url.clone(),
            "--lag-ms".into(),
            lag_ms.to_string(),
            "--latency-ms".into(),
            latency_ms.to_string(),
        ];
        Self::spawn(&primary.token, db_path, args, Some(dir))
    }

    /// A server on a database file that outlives it (for `cargo xtask dev`).
    pub fn start_persistent(token: &str, db_path: &Path, role_args: Vec<String>) -> Result<Self, String> {
        if let Some(parent) = db_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        Self::spawn(token, db_path.to_path_buf(), role_args, None)
    }

    fn spawn(token: &str, db_path: PathBuf, args: Vec<String>, dir: Option<tempfile::TempDir>) -> Result<Self, String> {
        let log_path = db_path.with_extension("log");
        let command = serve_command(&args, &db_path, "127.0.0.1:0", token)?;
        let mut process =
            GroupChild::spawn("devdb", command, &log_path).map_err(|e| format!("cannot start devdb: {e}"))?;
        let url = wait_for_listening(&mut process, Duration::from_secs(30))?;
        Ok(Self { url, token: token.to_string(), process: Mutex::new(process), db_path, args, _dir: dir })
    }

    /// Starts the server again on the same file and port (killing it first if it still runs),
    /// so clients keep their URL.
    pub fn restart(&self) -> Result<(), String> {
        self.kill();
        let listen = self.url.trim_start_matches("http://").to_string();
        let log_path = self.db_path.with_extension("restarted.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let command = serve_command(&self.args, &self.db_path, &listen, &self.token)?;
            let mut process = GroupChild::spawn("devdb", command, &log_path).map_err(|e| e.to_string())?;
            match wait_for_listening(&mut process, Duration::from_secs(30)) {
                Ok(_) => {
                    if let Ok(mut current) = self.process.lock() {
                        *current = process;
                    }
                    return Ok(());
                }
                // The old socket may linger a moment.
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The server's process id (the leader of its process group).
    pub fn pid(&self) -> Option<u32> {
        self.process.lock().ok().map(|process| process.id())
    }

    /// `Some(how)` once the server has ended without being stopped (it crashed, or something
    /// killed it); reaps it, so an ended server never lingers as a zombie.
    pub fn exited(&self) -> Option<String> {
        self.process.lock().ok().and_then(|mut process| process.exited())
    }

    /// The file the server's output goes to (a restart writes a new one beside it).
    pub fn log_path(&self) -> Option<PathBuf> {
        self.process.lock().ok().and_then(|process| process.log_path().map(Path::to_path_buf))
    }

    /// The last `max_bytes` or so of what the server printed, for messages.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.process.lock().map(|process| process.log_tail(max_bytes)).unwrap_or_default()
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&self) {
        if let Ok(mut process) = self.process.lock() {
            process.kill();
        }
    }

    /// The vars that make a worker use this server as its primary.
    pub fn worker_vars(&self) -> Vec<(String, String)> {
        vec![("LIBSQL_PRIMARY_URL".into(), self.url.clone()), ("LIBSQL_AUTH_TOKEN".into(), self.token.clone())]
    }

    /// Applies the single Worker's `migrations/` through the real libSQL client.
    pub fn migrate(&self) -> Result<(), String> {
        self.migrate_dir(&workspace_root().join("migrations"))
    }

    /// Applies the `*.sql` files of `dir` (`devdb migrate`), e.g. `migrations/notes`.
    pub fn migrate_dir(&self, dir: &Path) -> Result<(), String> {
        let mut migrate = Command::new(devdb_binary()?);
        // The token goes through the environment, never the command line (`ps` shows that).
        migrate.args(["migrate", "--url", &self.url, "--dir"]).arg(dir).env("DEVDB_TOKEN", &self.token);
        let output = crate::process::output(&mut migrate)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("devdb migrate failed: {}", String::from_utf8_lossy(&output.stderr)))
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// `/_devdb/stats`: requests served since start, the replication index, the role.
    pub fn stats(&self) -> Result<serde_json::Value, String> {
        let mut response = Self::agent()
            .get(&format!("{}/_devdb/stats", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&response.body_mut().read_to_vec().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }

    /// `POST /_devdb/promote`: this replica becomes the primary at its applied index and a new
    /// term (docs/failover.md). Answers the node's `/_devdb/primary` view.
    pub fn promote(&self) -> Result<serde_json::Value, String> {
        self.admin_post("promote", serde_json::json!({}))
    }

    /// `POST /_devdb/follow`: this replica (or fenced former primary) follows `primary`; with
    /// `resync` it drops its data first and copies the primary's.
    pub fn follow(&self, primary: &DevDb, resync: bool) -> Result<serde_json::Value, String> {
        self.admin_post("follow", serde_json::json!({"primary": primary.url, "resync": resync}))
    }

    /// `GET /_devdb/primary`: what this node knows of its cluster's primary (role, term, index,
    /// the history of terms).
    pub fn primary_view(&self) -> Result<serde_json::Value, String> {
        self.admin_get("primary")
    }

    /// The primary record the worker reads from KV after a failover (`v1/primary/<database>`):
    /// this node's URL, term and history of terms, from its own view — so call it on the node
    /// just promoted.
    pub fn primary_record(&self) -> Result<String, String> {
        let view = self.primary_view()?;
        if view["role"] != "primary" {
            return Err(format!("{} is not a primary: {view}", self.url));
        }
        let record = serde_json::json!({"url": self.url, "term": view["term"], "terms": view["terms"]}).to_string();
        // The worker's own parser decides what a record is; a record it would ignore is an error here.
        edgestack_core::datapath::PrimaryRecord::parse(record.as_bytes())
            .map(|record| record.encode())
            .ok_or_else(|| format!("{} answered no usable primary record: {view}", self.url))
    }

    fn admin_get(&self, endpoint: &str) -> Result<serde_json::Value, String> {
        let response = Self::agent()
            .get(&format!("{}/_devdb/{endpoint}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        Self::admin_answer(endpoint, response)
    }

    fn admin_post(&self, endpoint: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let response = Self::agent()
            .post(&format!("{}/_devdb/{endpoint}", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        Self::admin_answer(endpoint, response)
    }

    /// An admin endpoint's JSON, or its status and body as the error.
    fn admin_answer(
        endpoint: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, String> {
        let mut response = response.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("/_devdb/{endpoint}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    pub fn set_faults(&self, faults: &Faults) -> Result<(), String> {
        let mut body = serde_json::Map::new();
        if let Some(latency) = faults.latency_ms {
            body.insert("latency_ms".into(), latency.into());
        }
        if let Some(lag) = faults.lag_ms {
            body.insert("lag_ms".into(), lag.into());
        }
        if let Some(fail) = faults.fail_requests {
            body.insert("fail_requests".into(), fail.into());
        }
        let response = Self::agent()
            .post(&format!("{}/_devdb/faults", self.url))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(serde_json::Value::Object(body).to_string())
            .map_err(|e| e.to_string())?;
        if response.status().is_success() { Ok(()) } else { Err(format!("faults: HTTP {}", response.status())) }
    }
}

fn temp_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new().prefix("edgestack-devdb-").tempdir().map_err(|e| format!("temp dir: {e}"))
}

fn serve_command(role_args: &[String], db_path: &Path, listen: &str, token: &str) -> Result<Command, String> {
    let mut command = Command::new(devdb_binary()?);
    command.arg("serve").args(role_args).arg("--db").arg(db_path).args(["--listen", listen]).env("DEVDB_TOKEN", token);
    Ok(command)
}

/// Waits for devdb's one ready line and returns the URL it names.
fn wait_for_listening(process: &mut GroupChild, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let log_path = process.log_path().map(Path::to_path_buf).unwrap_or_default();
    while Instant::now() < deadline {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(url) = log.lines().find_map(|line| line.strip_prefix("devdb listening on ")) {
            return Ok(url.trim().to_string());
        }
        if let Some(status) = process.exited() {
            return Err(format!("devdb exited ({status}):\n{}", process.log_tail(4000)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("devdb did not start within {timeout:?}:\n{}", process.log_tail(4000)))
}
