//! A local canary stack for the rollout tests: one `wrangler dev` running the gateway in front
//! of a blue and a green build of edgestack, both on one devdb, plus a steady client load.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use local_stack::devdb::DevDb;
use local_stack::workspace_root;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};
use release::plan::Split;
use release::routing::SERVED_BY_HEADER;
use release::stats::GatewayStats;

pub const GATEWAY_TOKEN: &str = "local-gateway-token";
/// The route the load uses: an API route that reads the database, so the injected fault hits it.
pub const LOAD_PATH: &str = "/api/public/notes";

/// Tests share two cores; one stack at a time keeps latencies comparable.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // Each `wrangler dev` gets a private dev registry from local-stack, so sessions do not
    // reload each other and drop the gateway's in-memory state.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the green build does differently.
#[derive(Default)]
pub struct Green {
    /// `EDGESTACK_INJECT_FAULT` for green only (`errors`, `slow:<ms>`).
    pub fault: Option<&'static str>,
    /// Give green its own fingerprinted assets (a new build of `web/`), to exercise skew.
    pub new_assets: bool,
}

pub struct Stack {
    pub dev: WranglerDev,
    pub db: DevDb,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

fn worker_config(name: &str, assets: &Path, vars: &[(&str, String)]) -> String {
    let root = workspace_root();
    let vars: String = vars.iter().map(|(key, value)| format!("{key} = {}\n", toml_string(value))).collect();
    format!(
        r#"name = "{name}"
main = {main}
compatibility_date = "2026-11-01"

[assets]
directory = {assets}
binding = "ASSETS"
run_worker_first = ["/api/*"]
not_found_handling = "404-page"

[version_metadata]
binding = "CF_VERSION_METADATA"

[[kv_namespaces]]
binding = "CACHE"

[vars]
{vars}
[[ratelimits]]
name = "SIGNIN_PER_ACCOUNT"
namespace_id = "1001"
simple = {{ limit = 5, period = 60 }}

[[ratelimits]]
name = "SIGNIN_PER_CLIENT"
namespace_id = "1002"
simple = {{ limit = 30, period = 60 }}
"#,
        main = toml_string(&root.join("build/index.js").to_string_lossy()),
        assets = toml_string(&assets.to_string_lossy()),
    )
}

fn gateway_config() -> String {
    let main = workspace_root().join("gateway/build/index.js");
    format!(
        r#"name = "edgestack-gateway"
main = {main}
compatibility_date = "2026-11-01"

[[services]]
binding = "BLUE"
service = "edgestack-blue"

[[services]]
binding = "GREEN"
service = "edgestack-green"

[vars]
EDGESTACK_ENV = "development"
GATEWAY_INITIAL_SPLIT = "0"
GATEWAY_WORKER_NAME = "edgestack"
GATEWAY_TOKEN = "{GATEWAY_TOKEN}"
"#,
        main = toml_string(&main.to_string_lossy()),
    )
}

/// A copy of `public/` as a new build would fingerprint it: every asset changed, so it has a
/// new name, and the pages link the new names.
fn rebuilt_public(into: &Path) -> PathBuf {
    let public = workspace_root().join("public");
    let target = into.join("green-public");
    std::fs::create_dir_all(target.join("assets")).unwrap();
    let mut renames = Vec::new();
    for entry in std::fs::read_dir(public.join("assets")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // `app.4ddd4a430e.js` → `app.bddd4a430e.js`-like: flip the hash's first digit.
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(parts.len(), 3, "unexpected asset name {name}");
        let hash = parts[1];
        let flipped = format!("{}{}", if hash.starts_with('f') { 'e' } else { 'f' }, &hash[1..]);
        let new_name = format!("{}.{flipped}.{}", parts[0], parts[2]);
        let mut content = std::fs::read(&path).unwrap();
        if !name.ends_with(".svg") {
            content.extend_from_slice(b"\n/* green build */\n");
        }
        std::fs::write(target.join("assets").join(&new_name), content).unwrap();
        renames.push((name, new_name));
    }
    for entry in std::fs::read_dir(&public).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let mut text = std::fs::read_to_string(&path).unwrap();
            for (old, new) in &renames {
                text = text.replace(old.as_str(), new.as_str());
            }
            std::fs::write(target.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    target
}

impl Stack {
    pub fn start(green: Green) -> Self {
        let root = workspace_root();
        for built in ["build/index.js", "gateway/build/index.js"] {
            assert!(
                root.join(built).is_file(),
                "{built} is missing: run `cargo xtask build` and `cargo xtask build-gateway` first"
            );
        }
        let started = Instant::now();
        let db = DevDb::start_primary("rollout-test-token", 0).unwrap();
        db.migrate().unwrap();
        let db_ready = started.elapsed();
        let dir = tempfile::Builder::new().prefix("edgestack-rollout-").tempdir().unwrap();
        let database = [
            ("EDGESTACK_ENV", "development".to_string()),
            ("LIBSQL_PRIMARY_URL", db.url.clone()),
            ("LIBSQL_AUTH_TOKEN", db.token.clone()),
        ];
        let mut green_vars = database.to_vec();
        if let Some(fault) = green.fault {
            green_vars.push(("EDGESTACK_INJECT_FAULT", fault.to_string()));
        }
        let green_assets = if green.new_assets { rebuilt_public(dir.path()) } else { root.join("public") };
        let configs = [
            ("gateway.toml", gateway_config()),
            ("blue.toml", worker_config("edgestack-blue", &root.join("public"), &database)),
            ("green.toml", worker_config("edgestack-green", &green_assets, &green_vars)),
        ];
        for (name, text) in &configs {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let options = WranglerDevOptions {
            configs: configs.iter().map(|(name, _)| dir.path().join(name)).collect(),
            vars: Vec::new(),
            ready_timeout: Duration::from_secs(120),
        };
        let dev = WranglerDev::start(options).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("stack: devdb ready in {db_ready:?}, wrangler dev in {:?}", started.elapsed());
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Self { dev, db, dir, agent }
    }

    pub fn url(&self) -> &str {
        &self.dev.base_url
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        fetch(&self.agent, &self.dev.url(path), headers)
    }

    pub fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        post_json(&self.agent, &self.dev.url(path), headers, body)
    }

    pub fn gateway(&self) -> release::cli::sources::LocalGateway {
        release::cli::sources::LocalGateway::new(self.url(), GATEWAY_TOKEN)
    }

    pub fn set_split(&self, split: &Split) {
        self.gateway().set_split(split).unwrap();
    }

    pub fn stats(&self) -> GatewayStats {
        self.gateway().stats().unwrap()
    }

    /// Runs `release deploy --local` against this stack with short, bounded stages.
    pub fn release(&self, plan: &str) -> ReleaseRun {
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_release"))
            .args(["deploy", "--local", self.url(), "--gateway-token", GATEWAY_TOKEN, "--plan", plan])
            .args(["--min-stage", "2s", "--max-stage", "45s", "--poll", "250ms"])
            .args(["--min-requests", "20", "--min-latency-samples", "40"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        eprintln!("--- release {plan} ---\n{stderr}{stdout}");
        let summary = stdout.lines().last().and_then(|line| serde_json::from_str(line).ok()).unwrap_or_default();
        ReleaseRun { code: output.status.code(), summary, finished_at: Instant::now(), took: started.elapsed() }
    }
}

pub struct ReleaseRun {
    pub code: Option<i32>,
    pub summary: serde_json::Value,
    pub finished_at: Instant,
    pub took: Duration,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn served_by(&self) -> Option<&str> {
        self.header(SERVED_BY_HEADER)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str()).collect()
    }
}

pub fn fetch(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call())
}

/// A JSON POST as the web UI sends it (with the CSRF client header).
pub fn post_json(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut request = agent.post(url).header("content-type", "application/json").header("x-edgestack-client", "1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send(body))
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    match result {
        Ok(mut response) => {
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_string()))
                .collect();
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            Answer { status, headers, body }
        }
        // A transport failure is a failed request as a user sees it.
        Err(error) => Answer { status: 0, headers: Vec::new(), body: error.to_string() },
    }
}

/// One request of the steady load.
#[derive(Debug, Clone)]
pub struct Sample {
    pub user: usize,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer was read.
    pub at: Instant,
    pub status: u16,
    pub served_by: Option<String>,
}

impl Sample {
    pub fn failed(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

/// Simulated users, each with its own sticky cookie; a user's requests come from one thread,
/// in order.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
    pub users: Arc<Vec<String>>,
}

pub fn user_keys(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("load-user-{i:04}")).collect()
}

impl Load {
    /// `region(user)` picks the `x-edgestack-region` each user sends.
    pub fn start(base_url: &str, users: Vec<String>, threads: usize, region: fn(usize) -> &'static str) -> Self {
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
                    // Bounded: stops when told, and in any case after two minutes.
                    let deadline = Instant::now() + Duration::from_secs(120);
                    'outer: while Instant::now() < deadline {
                        for user in &mine {
                            if stop.load(Ordering::Relaxed) {
                                break 'outer;
                            }
                            let cookie = format!("edgestack_canary={}", users[*user]);
                            let sent = Instant::now();
                            let answer =
                                fetch(&agent, &url, &[("cookie", &cookie), ("x-edgestack-region", region(*user))]);
                            samples.push(Sample {
                                user: *user,
                                sent,
                                at: Instant::now(),
                                status: answer.status,
                                served_by: answer.served_by().map(str::to_string),
                            });
                        }
                    }
                    samples
                })
            })
            .collect();
        Self { stop, threads, users }
    }

    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples: Vec<Sample> = self.threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect();
        samples.sort_by_key(|sample| sample.at);
        samples
    }
}

/// Users whose version went back from green to blue, or changed more than once.
pub fn unstable_users(samples: &[Sample], users: usize) -> Vec<(usize, Vec<String>)> {
    let mut sequences: Vec<Vec<String>> = vec![Vec::new(); users];
    for sample in samples {
        if let Some(version) = &sample.served_by {
            let sequence = &mut sequences[sample.user];
            if sequence.last() != Some(version) {
                sequence.push(version.clone());
            }
        }
    }
    sequences
        .into_iter()
        .enumerate()
        .filter(|(_, sequence)| {
            !(sequence.is_empty() || sequence == &["blue"] || sequence == &["green"] || sequence == &["blue", "green"])
        })
        .collect()
}
