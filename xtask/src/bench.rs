//! Benchmarks that print figures (never timed tests).

use std::io::Write;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

use crate::tools::Toolchain;
use crate::{Result, build};

/// Wasm size (raw and gzip -9) and `wrangler dev` start → first 200 from `/api/health`.
pub fn startup() -> Result {
    let toolchain = Toolchain::ensure()?;
    let build_started = Instant::now();
    build::build_worker(&toolchain)?;
    let build_time = build_started.elapsed();
    let wasm =
        std::fs::read(toolchain.root.join("build/index_bg.wasm")).map_err(|e| format!("build/index_bg.wasm: {e}"))?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&wasm).map_err(|e| e.to_string())?;
    let gzip = encoder.finish().map_err(|e| e.to_string())?;
    println!("build (incremental or skipped): {:.1} s", build_time.as_secs_f64());
    println!("wasm: {:.1} KB raw, {:.1} KB gzip -9", wasm.len() as f64 / 1000.0, gzip.len() as f64 / 1000.0);
    let mut starts = Vec::new();
    for _ in 0..3 {
        let dev = WranglerDev::start(WranglerDevOptions::default()).map_err(|e| e.to_string())?;
        starts.push(dev.started_in.as_secs_f64());
    }
    let rendered: Vec<String> = starts.iter().map(|s| format!("{s:.2} s")).collect();
    println!("wrangler dev start → first 200: {}", rendered.join(", "));
    Ok(())
}

/// p50/p95 of note reads and writes through `wrangler dev` with a local primary, and the cost
/// of a password hash: sign-up (hash + one write pipeline) minus a note create (one write
/// pipeline). Workers freeze `Date.now()` while code runs, so in-worker timing cannot see it.
pub fn app() -> Result {
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    let token = format!("bench-{}", std::process::id());
    let db = local_stack::devdb::DevDb::start_primary(&token, 0)?;
    db.migrate()?;
    let options = WranglerDevOptions {
        vars: vec![
            ("LIBSQL_PRIMARY_URL".into(), db.url.clone()),
            ("LIBSQL_AUTH_TOKEN".into(), db.token.clone()),
            ("EDGESTACK_ENV".into(), "development".into()),
        ],
        ..WranglerDevOptions::default()
    };
    let dev = WranglerDev::start(options).map_err(|e| e.to_string())?;
    let client = BenchClient::new(&dev.base_url);
    let sign_ups = client.time(40, |n| {
        client.post(
            "/api/accounts",
            &format!(r#"{{"email":"bench-{n}@example.com","password":"correct horse battery"}}"#),
            201,
        )
    })?;
    let writes = client
        .time(200, |n| client.post("/api/notes", &format!(r#"{{"title":"note {n}","body":"benchmark"}}"#), 201))?;
    let note_id = client.last_note_id()?;
    let reads = client.time(200, |_| client.get(&format!("/api/notes/{note_id}"), 200))?;
    let public_reads = client.time(200, |_| client.get("/api/public/notes?limit=20", 200))?;
    println!("through wrangler dev (workerd) + devdb primary on loopback, sequential requests:");
    for (name, samples) in [
        ("note write (POST /api/notes)", &writes),
        ("note read (GET /api/notes/{id})", &reads),
        ("public feed (GET /api/public/notes)", &public_reads),
        ("sign-up (Argon2id + write)", &sign_ups),
    ] {
        println!(
            "  {name:<38} p50 {:>6.1} ms   p95 {:>6.1} ms   n={}",
            percentile(samples, 50),
            percentile(samples, 95),
            samples.len()
        );
    }
    println!(
        "  password hash (sign-up p50 − note write p50): ≈ {:.1} ms (Argon2id m=19 MiB, t=2, p=1, in wasm)",
        percentile(&sign_ups, 50) - percentile(&writes, 50)
    );
    Ok(())
}

fn percentile(samples: &[f64], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied().unwrap_or(f64::NAN)
}

/// A signed-in HTTP client for benchmarks: keeps the latest session cookie.
struct BenchClient {
    base: String,
    agent: ureq::Agent,
    cookie: std::cell::RefCell<String>,
    last_body: std::cell::RefCell<Vec<u8>>,
}

impl BenchClient {
    fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { base: base.to_string(), agent, cookie: Default::default(), last_body: Default::default() }
    }

    fn time(&self, count: usize, request: impl Fn(usize) -> Result) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(count);
        for n in 0..count {
            let started = Instant::now();
            request(n)?;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(samples)
    }

    fn finish(
        &self,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        expected: u16,
    ) -> Result {
        let mut response = response.map_err(|e| e.to_string())?;
        if let Some(cookie) = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            *self.cookie.borrow_mut() = cookie.split(';').next().unwrap_or_default().to_string();
        }
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        if status != expected {
            return Err(format!("expected {expected}, got {status}: {}", String::from_utf8_lossy(&body)));
        }
        *self.last_body.borrow_mut() = body;
        Ok(())
    }

    fn post(&self, path: &str, body: &str, expected: u16) -> Result {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-edgestack-client", "1")
            .header("cookie", self.cookie.borrow().as_str())
            .send(body);
        self.finish(response, expected)
    }

    fn get(&self, path: &str, expected: u16) -> Result {
        let response =
            self.agent.get(&format!("{}{path}", self.base)).header("cookie", self.cookie.borrow().as_str()).call();
        self.finish(response, expected)
    }

    fn last_note_id(&self) -> Result<String> {
        let body: serde_json::Value = serde_json::from_slice(&self.last_body.borrow()).map_err(|e| e.to_string())?;
        body["note"]["id"].as_str().map(String::from).ok_or_else(|| "no note id in the last answer".to_string())
    }
}
