//! The local canary stack for the rollout tests — the one `cargo xtask canary` starts
//! (`local_stack::canary`): one `wrangler dev` running the gateway in front of a blue and a
//! green build of edgestack, both on one devdb, plus a steady client load.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use local_stack::canary::{Canary, CanaryOptions, CanaryPlacement};
use local_stack::workspace_root;
use release::plan::Split;
use release::routing::SERVED_BY_HEADER;
use release::stats::GatewayStats;

#[allow(unused_imports)] // Not every test binary uses each.
pub use local_stack::canary::{Load, Sample, user_keys};

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
    /// Give green its own fingerprinted assets (a new build of `public/`), to exercise skew.
    pub new_assets: bool,
}

/// The canary stack of `cargo xtask canary` (local-stack), with what a test needs around it.
pub struct Stack {
    pub canary: Canary,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// A copy of `dist/` as a new build would fingerprint it: every asset changed, so it has a
/// new name, and the pages link the new names.
fn rebuilt_public(into: &Path) -> PathBuf {
    let public = workspace_root().join("dist");
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

/// A copy of `dist/` as a tagged upload's build makes it (`release deploy` →
/// `EDGESTACK_VERSION_TAG` → xtask's asset step): `_headers` with the tag's rule appended.
pub fn tagged_public(into: &Path, name: &str, tag: &str) -> PathBuf {
    let target = into.join(name);
    copy_tree(&workspace_root().join("dist"), &target);
    let headers = target.join("_headers");
    let policy = std::fs::read_to_string(&headers).unwrap();
    let tagged = release::version_tag::with_tag_rule(policy, Some(tag)).unwrap();
    std::fs::write(&headers, tagged).unwrap();
    target
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

impl Stack {
    pub fn start(green: Green) -> Self {
        let dir = tempfile::Builder::new().prefix("edgestack-rollout-").tempdir().unwrap();
        let options = CanaryOptions {
            green_vars: green
                .fault
                .map(|fault| ("EDGESTACK_INJECT_FAULT".to_string(), fault.to_string()))
                .into_iter()
                .collect(),
            green_assets: green.new_assets.then(|| rebuilt_public(dir.path())),
        };
        Self::start_placed(dir, options, CanaryPlacement::default())
    }

    /// The stack with `options` and `placement`; `dir` (which holds any asset copies) lives as
    /// long as the stack.
    pub fn start_placed(dir: tempfile::TempDir, options: CanaryOptions, placement: CanaryPlacement) -> Self {
        let started = Instant::now();
        let canary = Canary::start_placed(options, placement).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("stack: devdb and wrangler dev ready in {:?}", started.elapsed());
        Self { canary, dir, agent: agent() }
    }

    pub fn url(&self) -> &str {
        self.canary.url()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        fetch(&self.agent, &self.canary.dev.url(path), headers)
    }

    pub fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        post_json(&self.agent, &self.canary.dev.url(path), headers, body)
    }

    pub fn gateway(&self) -> release::cli::sources::LocalGateway {
        release::cli::sources::LocalGateway::new(self.url(), &self.canary.gateway_token)
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
            // The token through the environment: never on a command line.
            .env("GATEWAY_TOKEN", &self.canary.gateway_token)
            .args(["deploy", "--local", self.url(), "--plan", plan])
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

/// A client as the tests use it: statuses are answers, redirects are not followed.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
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
