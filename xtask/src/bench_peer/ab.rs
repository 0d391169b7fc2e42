//! `cargo xtask bench ab A B`: two builds of the worker (copies of `build/`) under the same load
//! at the same time, for one change's cost. Both Worker processes share one pinned core and
//! each gets its own `wrk`, so whatever slows the machine slows both alike: measured one after
//! the other, a lone Worker's CPU per request moves by more than most single changes
//! (bench/README.md). Before anything is measured, A and B must answer the shape alike (by
//! bench peer's rules, `check`). Prints, per round and in total, each side's Worker CPU per
//! request and B ÷ A; a build against itself shows the method's own spread (bench/README.md).

use std::path::{Path, PathBuf};
use std::sync::Barrier;

use local_stack::devdb::DevDb;

use super::cpus;
use super::load::{LoadRun, Wrk};
use super::report::Side;
use super::stack::{self, Seed, Session};
use crate::Result;
use crate::tools::Toolchain;

/// One build's session and its running totals.
struct Contender {
    label: &'static str,
    session: Session,
    wrk: Wrk,
    ticks: u64,
    requests: u64,
}

pub fn run(a: &Path, b: &Path, shape_key: &str, rounds: u32, seconds: u32) -> Result {
    let (a, b) = (build_dir(a)?, build_dir(b)?);
    // Which sessions the shape needs (cache on or off), and whether it writes, is known before
    // the seed exists.
    let known = stack::shapes(&Seed::default());
    let (read_cache, writes) = known
        .iter()
        .find(|shape| shape.key == shape_key)
        .map(|shape| (shape.read_cache, shape.method == "POST"))
        .ok_or_else(|| {
            let keys: Vec<&str> = known.iter().map(|shape| shape.key).collect();
            format!("bench ab: no shape `{shape_key}` ({})", keys.join(", "))
        })?;
    let toolchain = Toolchain::ensure()?;
    super::ensure_load_generator()?;
    let wrk = super::load_generator().ok_or("bench ab needs `wrk` on PATH: `cargo xtask setup` installs it")?;
    // The static assets (`dist/`) both sessions serve, from a copy (`snapshot_build`): a build
    // in the checkout during the run must not make wrangler reload the Workers under load. The
    // worker itself is A's and B's, so the checkout's need not build.
    crate::assets::build_site(&toolchain.root)?;
    let out_dir = toolchain.root.join("target/bench-ab");
    let snapshot = stack::snapshot_build(&out_dir.join("snapshot"), &["dist"])?;
    let dist = snapshot.into_iter().next().ok_or("the snapshot copies dist/")?;
    let placement = cpus::plan();
    match &placement {
        Some(placement) => {
            cpus::pin_self(&placement.rest)?;
            eprintln!("bench ab: {}; both Workers share it", placement.describe());
        }
        None => eprintln!("bench ab: fewer than two cores, nothing pinned"),
    }
    // Declared before the sessions, so it is dropped (stopped) after them.
    let db = DevDb::start_primary(&stack::random_hex(16)?, 0)?;
    db.migrate()?;
    let root_build = toolchain.root.join("build");
    let start = |name: &str, dir: &Path| {
        let mut vars = db.worker_vars();
        vars.push(("READ_CACHE".into(), if read_cache { "on" } else { "off" }.into()));
        let relocations = [(root_build.clone(), dir.to_path_buf()), dist.clone()];
        Session::start(Side::Edgestack, read_cache, name, &out_dir.join("configs"), &relocations, vars)
    };
    // The seed's sign-ups (an Argon2id hash each, which grows the isolate's wasm memory for
    // good) go through a session of their own, so that neither side measured has made them.
    let seed = {
        let seeder = start("bench-ab-seed", &a)?;
        let writers = if writes { stack::writers_needed(super::WARM_UP_SECONDS + rounds * seconds) } else { 1 };
        stack::seed_database(&seeder.base_url, writers)?
    };
    let mut contenders = Vec::new();
    for (label, dir) in [("A", &a), ("B", &b)] {
        let session = start(&format!("bench-ab-{}", label.to_lowercase()), dir)?;
        if let Some(placement) = &placement {
            cpus::pin_process(session.worker_pid, placement.worker)?;
        }
        let wrk = Wrk { program: wrk.clone(), scripts: out_dir.join(format!("wrk-{}", label.to_lowercase())) };
        contenders.push(Contender { label, session, wrk, ticks: 0, requests: 0 });
    }
    let shape = stack::shapes(&seed)
        .into_iter()
        .find(|shape| shape.key == shape_key)
        .ok_or("the shape exists once the seed does")?;
    super::check::same_builds(
        &shape,
        &contenders[0].session.load_url,
        &contenders[1].session.load_url,
        &out_dir.join("answers"),
    )?;
    eprintln!("bench ab: {} — A {} · B {}; they answer alike; warming up", shape.name, a.display(), b.display());
    load_both(&contenders, &shape, super::WARM_UP_SECONDS, false)?;
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        // Requests the last run left in flight end before the counters are read.
        std::thread::sleep(super::SETTLE);
        let before: Vec<u64> = contenders.iter().map(|c| c.session.cpu_ticks()).collect::<Result<_>>()?;
        let runs = load_both(&contenders, &shape, seconds, round % 2 == 0)?;
        let after: Vec<u64> = contenders.iter().map(|c| c.session.cpu_ticks()).collect::<Result<_>>()?;
        let mut line = format!("bench ab: round {round}/{rounds}");
        let mut per_request = Vec::new();
        for (i, contender) in contenders.iter_mut().enumerate() {
            let ticks = after[i] - before[i];
            contender.ticks += ticks;
            contender.requests += runs[i].requests;
            let us = micros_per_request(ticks, runs[i].requests);
            per_request.push(us);
            line.push_str(&format!("  {} {us:.0} µs/req {:.0} req/s", contender.label, runs[i].rps()));
            if runs[i].requests == 0 || runs[i].errors() > 0 {
                return Err(format!(
                    "{line}: {} answered {} of {} requests with errors; the figures would compare failures, not the builds",
                    contender.label,
                    runs[i].errors(),
                    runs[i].requests
                ));
            }
        }
        let ratio = per_request[1] / per_request[0];
        ratios.push(ratio);
        eprintln!("{line}  B ÷ A {ratio:.3}");
    }
    let (a_total, b_total) = (&contenders[0], &contenders[1]);
    let (a_us, b_us) =
        (micros_per_request(a_total.ticks, a_total.requests), micros_per_request(b_total.ticks, b_total.requests));
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "{}: Worker CPU per request A {a_us:.0} µs, B {b_us:.0} µs over {} and {} requests; B ÷ A {:.3} (rounds {low:.3}–{high:.3})",
        shape.name,
        a_total.requests,
        b_total.requests,
        b_us / a_us
    );
    Ok(())
}

/// `dir` if it holds a worker build (`build::WORKER_FILES`), made absolute.
fn build_dir(dir: &Path) -> Result<PathBuf> {
    let absolute = std::fs::canonicalize(dir).map_err(|e| format!("bench ab: {}: {e}", dir.display()))?;
    for file in crate::build::WORKER_FILES {
        if !absolute.join(file).is_file() {
            return Err(format!(
                "bench ab: {} has no {file}: give copies of `build/` (cp -r build /tmp/a after `cargo xtask build`)",
                dir.display()
            ));
        }
    }
    Ok(absolute)
}

/// Both sides' `wrk` at once, each on its own Worker, released together; `b_first` turns
/// which one is started first, so neither always has the core to itself for the first moment.
fn load_both(contenders: &[Contender], shape: &stack::Shape, seconds: u32, b_first: bool) -> Result<Vec<LoadRun>> {
    let start = Barrier::new(contenders.len());
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    if b_first {
        order.reverse();
    }
    std::thread::scope(|scope| {
        let mut runs: Vec<(usize, _)> = order
            .into_iter()
            .map(|i| {
                let (contender, start) = (&contenders[i], &start);
                let run = scope.spawn(move || {
                    start.wait();
                    contender.wrk.run(&contender.session.load_url, shape, seconds)
                });
                (i, run)
            })
            .collect();
        runs.sort_by_key(|(i, _)| *i);
        runs.into_iter().map(|(_, run)| run.join().map_err(|_| "a load thread panicked".to_string())?).collect()
    })
}

fn micros_per_request(ticks: u64, requests: u64) -> f64 {
    let seconds = ticks as f64 / stack::ticks_per_second();
    if requests == 0 { 0.0 } else { seconds * 1e6 / requests as f64 }
}
