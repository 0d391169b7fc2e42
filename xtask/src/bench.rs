//! Benchmarks that print figures (never timed tests).

use std::io::Write;
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

use serde_json::json;

use crate::region_lab::client::{Answer, UserClient};
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
    println!("build (incremental, or skipped when no input changed): {:.1} s", build_time.as_secs_f64());
    println!("wasm: {:.1} KB raw, {:.1} KB gzip -9", wasm.len() as f64 / 1000.0, gzip.len() as f64 / 1000.0);
    // Three starts of the same kind (a new session with an empty state folder each, the build
    // already up to date), so one slow start on a busy machine shows as such.
    let mut starts = Vec::new();
    for _ in 0..3 {
        let dev = WranglerDev::start(WranglerDevOptions::default()).map_err(|e| e.to_string())?;
        starts.push(dev.started_in.as_secs_f64());
    }
    let rendered: Vec<String> =
        starts.iter().enumerate().map(|(run, seconds)| format!("run {} {seconds:.2} s", run + 1)).collect();
    println!(
        "wrangler dev start → first 200 from /api/health (3 runs, each a new session with empty state, build up to date): {}",
        rendered.join(", ")
    );
    Ok(())
}

/// p50/p95 of note reads and writes through `wrangler dev` with a local primary, and the cost
/// of a password hash: sign-up (hash + one write pipeline) minus a note create (one write
/// pipeline), in CPU time of the session's processes (from `/proc`) and in latency. Workers
/// freeze `Date.now()` while code runs, so in-worker timing cannot see it.
pub fn app() -> Result {
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    let token = format!("bench-{}", std::process::id());
    let db = local_stack::devdb::DevDb::start_primary(&token, 0)?;
    db.migrate()?;
    let options = WranglerDevOptions {
        vars: [db.worker_vars(), vec![("EDGESTACK_ENV".into(), "development".into())]].concat(),
        ..WranglerDevOptions::default()
    };
    let dev = WranglerDev::start(options).map_err(|e| e.to_string())?;
    // wrangler and its workerd processes: their CPU time is the Worker's, whatever the load of
    // the machine (latency is not: on a busy machine it includes waiting for a core).
    let session = local_stack::inspect::tree(dev.pid());
    let cpu = || local_stack::inspect::cpu_seconds(&session);
    let mut client = UserClient::new(&dev.base_url);
    let cpu_before = cpu();
    let sign_ups = time(40, |n| {
        // Sign-ups are limited per client address: each is another user's.
        client.move_to_new_address();
        let body = json!({"email": format!("bench-{n}@example.com"), "password": "correct horse battery"});
        expect(client.write("POST", "/api/accounts", Some(&body)), 201)
    })?;
    let sign_up_cpu_ms = (cpu() - cpu_before) * 1000.0 / sign_ups.len() as f64;
    let mut note_id = String::new();
    let cpu_before = cpu();
    let writes = time(200, |n| {
        let created = expect(
            client.write("POST", "/api/notes", Some(&json!({"title": format!("note {n}"), "body": "benchmark"}))),
            201,
        )?;
        note_id = created.json().and_then(|body| body["note"]["id"].as_str().map(String::from)).unwrap_or_default();
        Ok(created)
    })?;
    let write_cpu_ms = (cpu() - cpu_before) * 1000.0 / writes.len() as f64;
    let reads = time(200, |_| expect(client.get(&format!("/api/notes/{note_id}")), 200))?;
    let public_reads = time(200, |_| expect(client.get("/api/public/notes?limit=20"), 200))?;
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
        "  CPU of wrangler dev's processes per request: sign-up {sign_up_cpu_ms:.1} ms, note write {write_cpu_ms:.1} ms"
    );
    println!(
        "  password hash (Argon2id m=19 MiB, t=2, p=1, in wasm): ≈ {:.1} ms CPU (sign-up − note write CPU), ≈ {:.1} ms latency (sign-up p50 − note write p50; grows on a busy machine)",
        sign_up_cpu_ms - write_cpu_ms,
        percentile(&sign_ups, 50) - percentile(&writes, 50)
    );
    Ok(())
}

fn percentile(samples: &[f64], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied().unwrap_or(f64::NAN)
}

/// Client-side latency in milliseconds of `count` requests, body included.
fn time(count: usize, mut request: impl FnMut(usize) -> Result<Answer>) -> Result<Vec<f64>> {
    (0..count).map(|n| request(n).map(|answer| answer.latency.as_secs_f64() * 1000.0)).collect()
}

fn expect(answer: std::result::Result<Answer, String>, status: u16) -> Result<Answer> {
    let answer = answer?;
    if answer.status == status {
        Ok(answer)
    } else {
        Err(format!("expected {status}, got {}: {}", answer.status, String::from_utf8_lossy(&answer.body)))
    }
}
