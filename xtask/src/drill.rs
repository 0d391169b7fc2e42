//! `cargo xtask drill failover`: Level 4's price, measured (issue #13, docs/failover.md). Once
//! per replication lag (0, 200 and 1000 ms by default): a primary in `na` and a replica in
//! each of `na`, `eu` and `ap`, the single Worker in `wrangler dev`, and a writer and a reader
//! per region (`x-edgestack-region`) under steady load. Then, as an operator's tooling would:
//! the primary is killed (SIGKILL), a health check sees it gone, the most advanced replica is
//! promoted (`POST /_devdb/promote`), and the primary record goes into the worker's KV
//! (`wrangler kv key put --local`) — no redeploy. The load runs on; then the new primary's
//! notes are compared with every write a client was told had succeeded.
//!
//! Reported per run (table, `target/drill/failover.json`, `target/drill/failover.svg`):
//! seconds without a successful write, acknowledged writes the new primary lacks (the
//! data-loss window: about the replication lag at the kill), failed reads, and reads that
//! missed the reader's own surviving write. Every process a run starts stops with it, on
//! Ctrl-C too (local-stack, xtask's signal handling).

mod load;
mod report;
mod stack;
mod svg;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use edgestack_core::datapath::primary::record_key;
use local_stack::devdb::DevDb;

use crate::tools::Toolchain;
use crate::{Result, build};
use load::Load;
use report::{Report, RunResult, Timeline};
use stack::{Stack, note_ids, replication_index};

#[derive(Subcommand)]
pub enum Drill {
    /// Kill the primary under load from three regions, promote the most advanced replica,
    /// switch the worker through the primary record in KV, and report what it cost.
    Failover(FailoverArgs),
}

#[derive(Args)]
pub struct FailoverArgs {
    /// Replication lags to run at, in ms (one run each, on a fresh stack).
    #[arg(long, value_delimiter = ',', default_value = "0,200,1000")]
    lags: Vec<u64>,
    /// Seconds of steady load before the kill.
    #[arg(long, default_value_t = 4)]
    before: u64,
    /// Seconds of load after the record is in KV.
    #[arg(long, default_value_t = 6)]
    after: u64,
    /// Pause between one user's requests, in ms.
    #[arg(long, default_value_t = 50)]
    think_ms: u64,
}

pub fn run(drill: Drill) -> Result {
    match drill {
        Drill::Failover(args) => failover(&args),
    }
}

fn failover(args: &FailoverArgs) -> Result {
    let started = Instant::now();
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    let out_dir = toolchain.root.join("target/drill");
    std::fs::create_dir_all(out_dir.join("logs")).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let mut results = Vec::new();
    for (n, lag_ms) in args.lags.iter().copied().enumerate() {
        eprintln!("drill: replication lag {lag_ms} ms — starting the stack [{}/{}]", n + 1, args.lags.len());
        let result = run_once(lag_ms, args, n, &out_dir)?;
        println!("{}", report::table(std::slice::from_ref(&result)));
        results.push(result);
    }
    println!("\nfailover drill: {}\n\n{}", settings(args), report::table(&results));
    let report = Report {
        runs: results.iter().map(|r| &r.figures).collect(),
        details: results.iter().map(|r| &r.details).collect(),
    };
    let json_path = out_dir.join("failover.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, json + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    let svg_path = out_dir.join("failover.svg");
    std::fs::write(&svg_path, svg::render(&results, &settings(args)))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!(
        "\nwrote {}, {} and worker logs in {}",
        json_path.display(),
        svg_path.display(),
        out_dir.join("logs").display()
    );
    println!("drill took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn settings(args: &FailoverArgs) -> String {
    format!(
        "primary na, replicas na/eu/ap; a writer and a reader per region, {} ms between requests; {} s of load before the kill, {} s after the switch; one wrangler dev",
        args.think_ms, args.before, args.after
    )
}

fn run_once(lag_ms: u64, args: &FailoverArgs, n: usize, out_dir: &std::path::Path) -> Result<RunResult> {
    let stack = Stack::start(lag_ms)?;
    eprintln!("drill: stack up in {:.1} s ({})", stack.started_in.as_secs_f64(), stack.dev.base_url);
    let users = load::prepare(&stack.dev.base_url, n as u64)?;
    stack.wait_for_replicas(Duration::from_secs(15))?;
    let clock = Instant::now();
    let load = Load::start(users, clock, Duration::from_millis(args.think_ms));
    std::thread::sleep(Duration::from_secs(args.before));

    let primary_index_before_kill = replication_index(&stack.primary)?;
    let kill_s = clock.elapsed().as_secs_f64();
    stack.primary.kill();
    let detected_s = detect_down(&stack.primary, clock);
    let (promoted_region, promoted, promoted_index) = most_advanced(&stack)?;
    promoted.promote()?;
    let promoted_s = clock.elapsed().as_secs_f64();
    let record = promoted.primary_record()?;
    stack.dev.kv_put(stack.config()?, "CACHE", &record_key("main"), &record)?;
    let switched_s = clock.elapsed().as_secs_f64();
    eprintln!(
        "drill: killed at {kill_s:.2} s, {promoted_region} promoted at index {promoted_index} ({:.2} s), record in KV at {switched_s:.2} s",
        promoted_s
    );
    std::thread::sleep(Duration::from_secs(args.after));
    let samples = load.finish();
    let end_s = clock.elapsed().as_secs_f64();

    let survived = note_ids(promoted)?;
    let log_copy = out_dir.join("logs").join(format!("lag-{lag_ms}.log"));
    std::fs::copy(stack.dev.log_path(), &log_copy).map_err(|e| format!("{}: {e}", log_copy.display()))?;
    let timeline = Timeline {
        kill_s,
        detected_s,
        promoted_s,
        switched_s,
        end_s,
        promoted_region: promoted_region.to_string(),
        promoted_index,
        primary_index_before_kill,
    };
    Ok(report::evaluate(lag_ms, timeline, samples, survived))
}

/// The operator's health check: polls the primary until it stops answering; when it did.
fn detect_down(primary: &DevDb, clock: Instant) -> f64 {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_millis(250))).build().into();
    let health = format!("{}/health", primary.url);
    for _ in 0..200 {
        if agent.get(&health).call().is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    clock.elapsed().as_secs_f64()
}

/// The replica with the highest replication index: the one that loses the fewest writes.
fn most_advanced(stack: &Stack) -> Result<(&'static str, &DevDb, u64)> {
    let mut best: Option<(&'static str, &DevDb, u64)> = None;
    for (region, replica) in &stack.replicas {
        let index = replication_index(replica)?;
        if best.is_none_or(|(_, _, known)| index > known) {
            best = Some((region, replica, index));
        }
    }
    best.ok_or_else(|| "no replica to promote".to_string())
}
