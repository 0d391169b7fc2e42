//! What naming the serving version on static responses costs, measured under `wrangler dev`:
//!
//! ```sh
//! cargo xtask build && cargo run -p release --example version_header_cost [-- ROUNDS SECONDS]
//! ```
//!
//! Four `wrangler dev` sessions of the app Worker (root wrangler.toml, copies of `dist/`), one
//! per way a static response could name its version, started one after another and measured in
//! turn with `wrk` (2 threads, 16 connections), rounds alternating between them:
//!
//! - `today`: Static Assets alone, `_headers` as an untagged build writes it;
//! - `tag`: the same with the version-tag rule a tagged upload's build appends (`_headers`);
//! - `worker pages`: `run_worker_first = ["/*", "!/assets/*"]`: pages through the Worker, which
//!   adds the version id and tag; fingerprinted files as in `tag`;
//! - `worker all`: `run_worker_first = true`: every file through the Worker.
//!
//! For each it prints which version headers `/`, an asset, a 304 and a 404 carry, and the
//! medians over rounds of p50, p99 and requests/s for `/` and the asset. Nothing here is a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use local_stack::canary::standalone_config;
use local_stack::workspace_root;
use local_stack::wrangler::{WranglerDev, WranglerDevOptions};

const TAG: &str = "measured-tag";
const ID_HEADER: &str = "x-edgestack-version-id";
const TAG_HEADER: &str = release::version_tag::VERSION_TAG_HEADER;

struct Variant {
    name: &'static str,
    tagged: bool,
    run_worker_first: &'static str,
}

const VARIANTS: [Variant; 4] = [
    Variant { name: "today", tagged: false, run_worker_first: r#"["/api/*"]"# },
    Variant { name: "tag", tagged: true, run_worker_first: r#"["/api/*"]"# },
    Variant { name: "worker pages", tagged: true, run_worker_first: r#"["/*", "!/assets/*"]"# },
    Variant { name: "worker all", tagged: true, run_worker_first: "true" },
];

#[derive(Clone, Copy, Default)]
struct Run {
    p50_ms: f64,
    p99_ms: f64,
    per_second: f64,
    /// User + system CPU of the whole `wrangler dev` session (node and both workerd
    /// processes) per request, in µs.
    cpu_us: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(3, |n| n.parse().unwrap());
    let seconds: u32 = args.next().map_or(5, |n| n.parse().unwrap());
    let root = workspace_root();
    let dir = tempfile::Builder::new().prefix("edgestack-version-cost-").tempdir().unwrap();
    let asset = std::fs::read_dir(root.join("dist/assets"))
        .unwrap()
        .map(|entry| format!("/assets/{}", entry.unwrap().file_name().to_string_lossy()))
        .find(|path| path.ends_with(".js"))
        .expect("a .js file in dist/assets: run `cargo xtask build`");
    let script = dir.path().join("summary.lua");
    std::fs::write(&script, LUA).unwrap();

    // One after another: sessions started together can race for workerd's sockets.
    let sessions: Vec<WranglerDev> = VARIANTS.iter().map(|variant| start(&root, dir.path(), variant)).collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    println!("version headers per path (id / tag), asset {asset}:");
    for (variant, dev) in VARIANTS.iter().zip(&sessions) {
        let page = agent.get(&dev.url("/")).call().unwrap();
        let etag = page.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let names = |response: &ureq::http::Response<ureq::Body>| {
            let value = |name: &str| match response.headers().get(name).and_then(|value| value.to_str().ok()) {
                None => "-".to_string(),
                Some("") => "\"\"".to_string(),
                Some(value) if value.len() > 12 => format!("{}…", &value[..8]),
                Some(value) => value.to_string(),
            };
            format!("{} {} / {}", response.status().as_u16(), value(ID_HEADER), value(TAG_HEADER))
        };
        let asset_answer = agent.get(&dev.url(&asset)).call().unwrap();
        let not_modified = agent.get(&dev.url("/")).header("if-none-match", &etag).call().unwrap();
        let missing = agent.get(&dev.url("/no-such-page")).call().unwrap();
        println!(
            "  {:<13} /: {:<26} asset: {:<26} / again (If-None-Match): {:<26} /no-such-page: {}",
            variant.name,
            names(&page),
            names(&asset_answer),
            names(&not_modified),
            names(&missing)
        );
    }

    let shapes = ["/", asset.as_str()];
    let mut runs = vec![vec![Vec::new(); shapes.len()]; VARIANTS.len()];
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for (shape_index, shape) in shapes.iter().enumerate() {
            for (variant_index, dev) in sessions.iter().enumerate() {
                let session = local_stack::inspect::tree(dev.pid());
                let before = local_stack::inspect::cpu_seconds(&session);
                let mut run = wrk(&script, &dev.url(shape), seconds);
                let cpu = local_stack::inspect::cpu_seconds(&session) - before;
                run.cpu_us = cpu * 1e6 / (run.per_second * f64::from(seconds)).max(1.0);
                runs[variant_index][shape_index].push(run);
            }
        }
    }
    println!(
        "\nmedians over {rounds} round(s) of {seconds} s, wrk 2 threads / 16 connections (load average {}):",
        load()
    );
    println!("  {:<13} {:>38} {:>38}", "", "GET / (page)", "GET asset");
    let columns = ["p50 ms", "p99 ms", "req/s", "CPU µs"];
    println!("  {:<13} {}", "", columns.iter().chain(&columns).map(|c| format!("{c:>9}")).collect::<String>());
    for (variant, shapes) in VARIANTS.iter().zip(&runs) {
        let cells: String = shapes
            .iter()
            .map(|runs| median(runs))
            .map(|run| format!("{:>9.2}{:>9.2}{:>9.0}{:>9.0}", run.p50_ms, run.p99_ms, run.per_second, run.cpu_us))
            .collect();
        println!("  {:<13} {cells}", variant.name);
    }
}

fn start(root: &Path, dir: &Path, variant: &Variant) -> WranglerDev {
    let folder = dir.join(variant.name.replace(' ', "-"));
    let public = folder.join("public");
    copy_tree(&root.join("dist"), &public);
    if variant.tagged {
        let headers = public.join("_headers");
        let policy = std::fs::read_to_string(&headers).unwrap();
        std::fs::write(&headers, release::version_tag::with_tag_rule(policy, Some(TAG)).unwrap()).unwrap();
    }
    let committed = std::fs::read_to_string(root.join("wrangler.toml")).unwrap();
    let config: String = standalone_config(&committed, root, Some(&public))
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("run_worker_first") {
                format!("run_worker_first = {}\n", variant.run_worker_first)
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let path = folder.join("wrangler.toml");
    std::fs::write(&path, config).unwrap();
    let vars = vec![("EDGESTACK_ENV".to_string(), "development".to_string())];
    let options = WranglerDevOptions { configs: vec![path], vars, ready_timeout: Duration::from_secs(120) };
    let dev = WranglerDev::start(options).unwrap_or_else(|e| panic!("{}: {e}", variant.name));
    eprintln!("{}: ready on {} in {:?}", variant.name, dev.base_url, dev.started_in);
    dev
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_tree(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

const LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format('RESULT %d %d %.1f %.1f %d\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;

fn wrk(script: &Path, url: &str, seconds: u32) -> Run {
    let output = local_stack::process::output(
        Command::new("wrk")
            .args(["-t2", "-c16", &format!("-d{seconds}s"), "--timeout", "10s", "-s"])
            .arg(script)
            .arg(url),
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("wrk: {stdout}"));
    let fields: Vec<f64> = line.split(' ').map(|field| field.parse().unwrap()).collect();
    assert_eq!(fields[4], 0.0, "{url}: wrk counted errors: {stdout}");
    let per_second = fields[0] / (fields[1] / 1e6);
    Run { p50_ms: fields[2] / 1000.0, p99_ms: fields[3] / 1000.0, per_second, cpu_us: 0.0 }
}

fn median(runs: &[Run]) -> Run {
    let pick = |value: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(value).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Run {
        p50_ms: pick(|run| run.p50_ms),
        p99_ms: pick(|run| run.p99_ms),
        per_second: pick(|run| run.per_second),
        cpu_us: pick(|run| run.cpu_us),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
