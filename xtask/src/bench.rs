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
