//! `cargo xtask bench regions`: the region lab. Runs a read-heavy workload against the local
//! stack from simulated regions, once per configuration (talk level), and reports per region
//! p50/p95/p99 latency, database requests per API request and the cache hit ratio — as a table,
//! `target/region-lab/results.json` and `target/region-lab/latency.svg`.
//!
//! Per configuration: a fresh primary (and replicas), latency proxies standing for the distance
//! between regions, one `wrangler dev` per region; sign-ups and seeding first (not measured),
//! a short warm-up, then the measured window with every user of every region at once.
//!
//! Added round trips (ms), primary in `na` (the table lives in `topology.rs`):
//!
//! | from \ to | na  | eu  | ap  |
//! |-----------|-----|-----|-----|
//! | na        | 5   | 80  | 180 |
//! | eu        | 80  | 5   | 160 |
//! | ap        | 180 | 160 | 5   |
//!
//! Knobs (environment): `REGION_LAB_LEVELS` (`1,4`; all when unset), `REGION_LAB_AUTHORS` and
//! `REGION_LAB_READERS` (per region, 3 each), `REGION_LAB_REQUESTS` (measured per user, 60),
//! `REGION_LAB_WARMUP` (5), `REGION_LAB_THINK_MS` (max pause between a user's requests, 150),
//! `REGION_LAB_SECONDS` (cap on the measured window, 90), `REGION_LAB_SEED_NOTES` (24).
//! See docs/region-lab.md.

pub mod client;
mod report;
mod stack;
mod svg;
mod topology;
mod workload;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tools::Toolchain;
use crate::{Result, build};
use report::{ConfigurationResult, CrossCheck, Report, RoundTrips};
use stack::Stack;
use topology::Configuration;
use workload::Settings;

pub fn run() -> Result {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let configurations = topology::select(topology::configurations(), settings.levels.as_deref())?;
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    let round_trips = RoundTrips::current();
    println!("{}", round_trips.render());
    let mut results = Vec::new();
    for (index, configuration) in configurations.iter().enumerate() {
        eprintln!(
            "region lab: {} ({}) — starting the stack [{}/{}]",
            configuration.label,
            configuration.description,
            index + 1,
            configurations.len()
        );
        let result = run_configuration(configuration, &settings, index)?;
        println!("{}", report::render_configuration(&result));
        results.push(result);
    }
    let report = Report {
        generated_at_unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        round_trip_ms: round_trips,
        settings,
        notes: report::notes(),
        configurations: results,
    };
    let out_dir = toolchain.root.join("target/region-lab");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let json_path = out_dir.join("results.json");
    std::fs::write(&json_path, json + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let svg_path = out_dir.join("latency.svg");
    std::fs::write(&svg_path, svg::render(&report)).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    for note in &report.notes {
        println!("note: {note}");
    }
    println!(
        "wrote {}, {} and worker logs in {}",
        json_path.display(),
        svg_path.display(),
        out_dir.join("logs").display()
    );
    println!("region lab took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn run_configuration(configuration: &Configuration, settings: &Settings, index: usize) -> Result<ConfigurationResult> {
    let token = random_hex(16)?;
    let stack = Stack::start(configuration, &token, &random_hex(32)?)?;
    eprintln!(
        "region lab: stack up in {:.1} s ({})",
        stack.started_in.as_secs_f64(),
        stack.workers.iter().map(|w| format!("{} {}", w.region, w.dev.base_url)).collect::<Vec<_>>().join(", ")
    );
    let run_tag = format!("{}-{index}-{}", configuration.key, std::process::id());
    let public_notes = workload::seed_public_notes(&stack, settings, &run_tag)?;
    let users = workload::sign_up_users(&stack, settings, &run_tag)?;
    stack.wait_for_replicas(Duration::from_secs(15))?;
    // Warm-up: first requests (isolate start, connection set-up, a cold cache) are not measured.
    let warm_deadline = Instant::now() + Duration::from_secs(settings.max_measured_seconds);
    let (users, warm_samples) =
        workload::run_phase(users, &public_notes, settings, settings.warmup_requests_per_user, warm_deadline)?;
    let warm_errors = warm_samples.iter().filter(|sample| !sample.ok).count();
    if warm_errors > 0 {
        eprintln!("region lab: {warm_errors} of {} warm-up requests failed", warm_samples.len());
    }
    let before = stack.pipelines()?;
    let connections_before = stack.database_connections_opened();
    let measured_started = Instant::now();
    let deadline = measured_started + Duration::from_secs(settings.max_measured_seconds);
    let (_users, samples) =
        workload::run_phase(users, &public_notes, settings, settings.measured_requests_per_user, deadline)?;
    let measured = measured_started.elapsed();
    let after = stack.pipelines()?;
    let connections = stack.database_connections_opened() - connections_before;
    keep_worker_logs(&stack, configuration)?;
    let cross_check = CrossCheck::new(&samples, &before, &after, connections);
    Ok(ConfigurationResult::new(
        configuration,
        &samples,
        stack.started_in.as_secs_f64(),
        measured.as_secs_f64(),
        cross_check,
    ))
}

/// Copies each region's `wrangler dev` log to `target/region-lab/logs/` before the stack's
/// temporary folders go, so surprising figures can be traced to what the worker logged.
fn keep_worker_logs(stack: &Stack, configuration: &Configuration) -> Result {
    let logs = local_stack::workspace_root().join("target/region-lab/logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    for worker in &stack.workers {
        let copy = logs.join(format!("{}-{}.log", configuration.key, worker.region));
        std::fs::copy(worker.dev.log_path(), &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    }
    Ok(())
}

/// Random tokens for the database and the consistency key, from the OS.
fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
