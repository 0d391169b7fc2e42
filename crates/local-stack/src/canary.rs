//! The local canary of docs/releases.md: a devdb primary (migrated) and one `wrangler dev`
//! running the gateway (`gateway/wrangler.toml`) in front of a blue and a green build of
//! edgestack (`gateway/blue.wrangler.toml`, `gateway/green.wrangler.toml`), and [`Load`]:
//! simulated users, each with a sticky canary cookie, so the release gate sees traffic.
//!
//! Each committed config is copied into a folder of its own (paths made absolute, no
//! `[build]`: the builds are made before) with its own `.dev.vars` — blue and green the
//! database, green alone an injected fault, the gateway its token — so no secret is on a
//! command line and two canaries never share a file. Used by `cargo xtask canary` and the
//! rollout tests in `crates/release/tests`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::devdb::DevDb;
use crate::wrangler::{WranglerDev, WranglerDevOptions, write_env_file};
use crate::{random_hex, workspace_root};

/// The API route the load uses: it reads the database, so an injected fault hits it.
pub const LOAD_PATH: &str = "/api/public/notes";
/// The header the gateway names the serving version in (`blue` / `green`).
const SERVED_BY_HEADER: &str = "x-edgestack-served-by";

#[derive(Default)]
pub struct CanaryOptions {
    /// Vars for green only, e.g. `EDGESTACK_INJECT_FAULT=errors`.
    pub green_vars: Vec<(String, String)>,
    /// Green's static assets instead of `dist/` (a new build of `public/`).
    pub green_assets: Option<PathBuf>,
}

/// Where a canary stack runs, beside [`CanaryOptions`] (which callers build field by field).
#[derive(Default)]
pub struct CanaryPlacement {
    /// A dev registry shared with other `wrangler dev` sessions (the front Worker's), so their
    /// service bindings reach the gateway ([`WranglerDev::start_in_registry`]).
    pub registry: Option<PathBuf>,
    /// Blue's static assets instead of `dist/`.
    pub blue_assets: Option<PathBuf>,
}

pub struct Canary {
    // Declared first: wrangler stops before its database.
    pub dev: WranglerDev,
    pub db: DevDb,
    /// Bearer token of `/__gateway/*` (the release command's `GATEWAY_TOKEN`).
    pub gateway_token: String,
    _configs: tempfile::TempDir,
}

impl Canary {
    pub fn start(options: CanaryOptions) -> Result<Self, String> {
        Self::start_placed(options, CanaryPlacement::default())
    }

    pub fn start_placed(options: CanaryOptions, placement: CanaryPlacement) -> Result<Self, String> {
        let root = workspace_root();
        for built in ["build/index.js", "gateway/build/index.js"] {
            if !root.join(built).is_file() {
                return Err(format!(
                    "{built} is missing: run `cargo xtask build` and `cargo xtask build-gateway` first"
                ));
            }
        }
        let db = DevDb::start_primary(&random_hex(16)?, 0)?;
        db.migrate()?;
        let gateway_token = random_hex(16)?;
        let configs =
            tempfile::Builder::new().prefix("edgestack-canary-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let gateway = root.join("gateway");
        let green_vars = [db.worker_vars(), options.green_vars].concat();
        let workers = [
            ("gateway", "wrangler.toml", vec![("GATEWAY_TOKEN".to_string(), gateway_token.clone())], None),
            ("blue", "blue.wrangler.toml", db.worker_vars(), placement.blue_assets.as_deref()),
            ("green", "green.wrangler.toml", green_vars, options.green_assets.as_deref()),
        ];
        let mut paths = Vec::new();
        for (name, file, vars, assets) in workers {
            let folder = configs.path().join(name);
            std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
            let committed = gateway.join(file);
            let text = std::fs::read_to_string(&committed).map_err(|e| format!("{}: {e}", committed.display()))?;
            let config = folder.join("wrangler.toml");
            std::fs::write(&config, standalone_config(&text, &gateway, assets))
                .map_err(|e| format!("{}: {e}", config.display()))?;
            write_env_file(&folder.join(".dev.vars"), &vars)?;
            paths.push(config);
        }
        let options = WranglerDevOptions { configs: paths, vars: Vec::new(), ready_timeout: Duration::from_secs(180) };
        let dev = match &placement.registry {
            Some(registry) => WranglerDev::start_in_registry(options, registry),
            None => WranglerDev::start(options),
        }
        .map_err(|e| e.to_string())?;
        Ok(Self { dev, db, gateway_token, _configs: configs })
    }

    pub fn url(&self) -> &str {
        &self.dev.base_url
    }
}

/// A committed config as a copy elsewhere needs it: `main` and the assets `directory`
/// absolute (they are relative to `folder`, the committed config's), the assets replaced by
/// `assets` when given, and no `[build]` (a copy is started with its builds made).
pub fn standalone_config(text: &str, folder: &Path, assets: Option<&Path>) -> String {
    let mut copy = String::new();
    let mut in_build = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_build = trimmed == "[build]";
        }
        if in_build {
            continue;
        }
        let path_value = |key: &str| {
            let rest = trimmed.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
            rest.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
        };
        if let Some(main) = path_value("main") {
            copy.push_str(&format!("main = {}\n", toml_string(&folder.join(main))));
        } else if let Some(directory) = path_value("directory") {
            let directory = assets.map_or_else(|| folder.join(directory), Path::to_path_buf);
            copy.push_str(&format!("directory = {}\n", toml_string(&directory)));
        } else {
            copy.push_str(line);
            copy.push('\n');
        }
    }
    copy
}

/// A TOML basic string (JSON's escaping is a subset of TOML's).
fn toml_string(path: &Path) -> String {
    serde_json::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Sample {
    pub user: usize,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer was read.
    pub at: Instant,
    /// 0: no answer.
    pub status: u16,
    pub served_by: Option<String>,
}

impl Sample {
    pub fn failed(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

/// `count` sticky keys, `load-user-0000` …
pub fn user_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("load-user-{i:04}")).collect()
}

/// Simulated users, each with its own sticky cookie; a user's requests come from one thread,
/// in order. Bounded: stops when told, and in any case after `max`.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
    pub users: Arc<Vec<String>>,
}

impl Load {
    /// `region(user)` picks the `x-edgestack-region` each user sends.
    pub fn start(base_url: &str, users: Vec<String>, threads: usize, region: fn(usize) -> &'static str) -> Self {
        Self::start_for(base_url, users, threads, region, Duration::from_secs(120))
    }

    pub fn start_for(
        base_url: &str,
        users: Vec<String>,
        threads: usize,
        region: fn(usize) -> &'static str,
        max: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let users = Arc::new(users);
        let threads = (0..threads)
            .map(|thread| {
                let (stop, users, url) = (stop.clone(), users.clone(), format!("{base_url}{LOAD_PATH}"));
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(10)))
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let mine: Vec<usize> = (thread..users.len()).step_by(threads).collect();
                    let mut samples = Vec::new();
                    let deadline = Instant::now() + max;
                    'outer: while Instant::now() < deadline {
                        for user in &mine {
                            if stop.load(Ordering::Relaxed) {
                                break 'outer;
                            }
                            let sent = Instant::now();
                            let answer = agent
                                .get(&url)
                                .header("cookie", &format!("edgestack_canary={}", users[*user]))
                                .header("x-edgestack-region", region(*user))
                                .call();
                            let (status, served_by) = match answer {
                                Ok(mut response) => {
                                    let served_by = response
                                        .headers()
                                        .get(SERVED_BY_HEADER)
                                        .and_then(|value| value.to_str().ok())
                                        .map(str::to_string);
                                    let _ = response.body_mut().read_to_vec();
                                    (response.status().as_u16(), served_by)
                                }
                                // A transport failure is a failed request as a user sees it.
                                Err(_) => (0, None),
                            };
                            samples.push(Sample { user: *user, sent, at: Instant::now(), status, served_by });
                        }
                    }
                    samples
                })
            })
            .collect();
        Self { stop, threads, users }
    }

    /// Stops the users and returns every sample, in the order the answers came.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples: Vec<Sample> =
            self.threads.into_iter().flat_map(|thread| thread.join().unwrap_or_default()).collect();
        samples.sort_by_key(|sample| sample.at);
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_make_paths_absolute_and_drop_the_build_step() {
        let committed = "name = \"edgestack-green\"\nmain = \"../build/index.js\"\n\n[build]\ncommand = \"cargo xtask build-gateway\"\nwatch_dir = [\"src\"]\n\n[assets]\ndirectory = \"../dist\"\nbinding = \"ASSETS\"\n";
        let copy = standalone_config(committed, Path::new("/repo/gateway"), None);
        assert_eq!(
            copy,
            "name = \"edgestack-green\"\nmain = \"/repo/gateway/../build/index.js\"\n\n[assets]\ndirectory = \"/repo/gateway/../dist\"\nbinding = \"ASSETS\"\n"
        );
        let copy = standalone_config(committed, Path::new("/repo/gateway"), Some(Path::new("/tmp/green-public")));
        assert!(copy.contains("directory = \"/tmp/green-public\"\n"), "{copy}");
    }

    #[test]
    fn the_committed_configs_copy_cleanly() {
        let gateway = workspace_root().join("gateway");
        for file in ["wrangler.toml", "blue.wrangler.toml", "green.wrangler.toml"] {
            let copy = standalone_config(&std::fs::read_to_string(gateway.join(file)).unwrap(), &gateway, None);
            assert!(
                !copy.contains("[build]") && !copy.contains("= \"../") && !copy.contains("main = \"build"),
                "{copy}"
            );
        }
    }
}
