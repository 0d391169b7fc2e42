//! `cargo xtask bench peer`: edgestack against the JavaScript Worker a team would write instead
//! (`bench/peer`), with a floor Worker (`bench/floor`) that shows the runtime's own cost per
//! shape. One devdb primary seeded through a `wrangler dev` session of its own, six measured
//! sessions (each side with `READ_CACHE=on` and `off`), a fairness check that both sides answer
//! alike, then every shape on every side in turn with `wrk`, for `rounds` × `seconds`. Prints a
//! table and writes `target/bench-peer/results.json`, `table.md` and `chart.svg`. See
//! bench/README.md.
//!
//! Every process it starts (devdb, wrangler and its workerd, wrk) runs in a local-stack process
//! group, so Ctrl-C, SIGTERM and SIGHUP (xtask's handler) and a kill (the guardian) end them.

pub mod ab;
mod check;
mod cpus;
mod load;
mod report;
mod stack;
mod svg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::tools::{self, Toolchain};
use crate::{Result, build};
use load::LoadRun;
use report::{Measurement, Side};
use stack::{Stack, shapes};

/// wrk's settings: two threads and 16 connections, as in issue #15 (pinned, both threads share
/// the cores the Workers do not use: `cpus`).
pub const THREADS: u32 = 2;
pub const CONNECTIONS: u32 = 16;
/// Unmeasured seconds per shape and side before the first round: isolates start, V8 compiles
/// the hot JavaScript, caches fill.
const WARM_UP_SECONDS: u32 = 2;
/// Pause between runs: wrk ends with requests in flight, whose database requests and CPU time
/// must not be counted in the next run.
const SETTLE: Duration = Duration::from_millis(300);
/// The bounds of `--rounds` and `--seconds` (the CLI refuses others): enough for any run this
/// machine can afford, and small enough that the writers a run needs stay countable.
pub const ROUNDS: std::ops::RangeInclusive<i64> = 1..=1000;
pub const SECONDS: std::ops::RangeInclusive<i64> = 1..=600;

pub fn run(rounds: u32, seconds: u32, only: &[String]) -> Result {
    // Before anything starts: a misspelt shape should not cost the stack's start.
    let known = shapes(&stack::Seed::default());
    if let Some(unknown) = only.iter().find(|key| !known.iter().any(|shape| shape.key == key.as_str())) {
        let keys: Vec<&str> = known.iter().map(|shape| shape.key).collect();
        return Err(format!("bench peer: no shape `{unknown}` ({})", keys.join(", ")));
    }
    let started = Instant::now();
    // Installs what is missing, `wrk` included where it can.
    let toolchain = Toolchain::ensure()?;
    ensure_load_generator()?;
    let wrk = load_generator().ok_or(
        "bench peer needs `wrk` on PATH: `cargo xtask setup` installs it from Debian (as root with apt-get); elsewhere install wrk",
    )?;
    build::build_worker(&toolchain)?;
    let out_dir = toolchain.root.join("target/bench-peer");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let writing_seconds = WARM_UP_SECONDS + rounds * seconds;
    // After the build, which needs every core: from here on what this process starts inherits
    // the rest, and the Workers are moved to a core of their own (`cpus`).
    let machine = report::machine();
    let placement = cpus::plan();
    if let Some(placement) = &placement {
        cpus::pin_self(&placement.rest)?;
        eprintln!("bench peer: {}", placement.describe());
    }
    let stack = Stack::start(&out_dir, stack::writers_needed(writing_seconds), placement.as_ref().map(|p| p.worker))?;
    let mut shapes = shapes(&stack.seed);
    if !only.is_empty() {
        shapes.retain(|shape| only.iter().any(|key| key == shape.key));
    }
    check::same_answers(&stack, &shapes, &out_dir.join("check"))?;
    eprintln!(
        "bench peer: both sides answer alike on every shape and probe; warming up ({WARM_UP_SECONDS} s per shape and side)"
    );
    let generator = load::Wrk { program: wrk, scripts: out_dir.join("wrk") };
    for shape in &shapes {
        for side in Side::ALL {
            generator.run(&stack.session(side, shape.read_cache)?.load_url, shape, WARM_UP_SECONDS)?;
        }
    }
    let load_at_start = report::load_average_1m();
    let mut measurements = Vec::new();
    for round in 0..rounds {
        for shape in &shapes {
            // The order of sides turns each round, so drift on a shared machine hits all alike.
            for side in Side::rotated(round as usize) {
                let session = stack.session(side, shape.read_cache)?;
                // Requests the previous run left in flight end before this run's counters are read.
                std::thread::sleep(SETTLE);
                let before = stack.sample(session)?;
                let run: LoadRun = generator.run(&session.load_url, shape, seconds)?;
                let after = stack.sample(session)?;
                let measurement = Measurement::new(shape, side, &run, &before, &after);
                eprintln!("bench peer: round {}/{rounds} {}", round + 1, measurement.one_line());
                measurements.push(measurement);
            }
        }
    }
    // Stop the stack before writing: nothing measured depends on it any more.
    drop(stack);
    let mut results = report::Results::new(&shapes, &measurements, rounds, seconds);
    results.machine = match &placement {
        Some(placement) => format!("{machine}; {}", placement.describe()),
        None => machine,
    };
    results.load_average = load_at_start.zip(report::load_average_1m());
    println!("{}", results.render_table());
    let json_path = out_dir.join("results.json");
    let json = serde_json::to_string_pretty(&results.to_json()).map_err(|e| e.to_string())?;
    write(&json_path, &(json + "\n"))?;
    let table_path = out_dir.join("table.md");
    write(&table_path, &results.render_markdown())?;
    let svg_path = out_dir.join("chart.svg");
    write(&svg_path, &svg::render(&results))?;
    println!(
        "wrote {}, {} and {} in {:.0} s",
        json_path.display(),
        table_path.display(),
        svg_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `wrk` for `cargo xtask setup`: Debian's package when this is a Debian-like machine and we
/// are root (as for Chromium); elsewhere a note, and `bench peer` refuses until it is installed.
pub fn ensure_load_generator() -> Result {
    if load_generator().is_some() {
        return Ok(());
    }
    let has_apt = Path::new("/usr/bin/apt-get").exists();
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !(has_apt && is_root) {
        eprintln!("xtask: no `wrk` on PATH; `cargo xtask bench peer` needs it (install wrk from your package manager)");
        return Ok(());
    }
    eprintln!("xtask: installing Debian's wrk (once)");
    tools::run(Command::new("apt-get").args(["update", "-qq"]))?;
    tools::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The `wrk` executable on PATH, if any.
fn load_generator() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|folder| folder.join("wrk")).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|meta| {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        })
    })
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
