//! `cargo xtask canary`: the local canary of docs/releases.md in one command. Builds the worker
//! and the gateway, starts a devdb primary (migrated) and one `wrangler dev` with the gateway in
//! front of a blue and a green build (`local_stack::canary`), keeps simulated users sending
//! requests — the health gate needs traffic to judge — and runs `release deploy --local`
//! through the gateway: green is promoted, or, with `--green-fault errors`, rolled back. Then
//! everything it started stops.

use std::time::Duration;

use local_stack::canary::{Canary, CanaryOptions, Load, Sample, user_keys};
use local_stack::process::GroupChild;

use crate::tools::Toolchain;
use crate::{Result, build};

/// Simulated users and the threads they share: enough that a 10 % stage gives green its 20
/// requests and 50 latency samples within a few seconds on two cores.
const USERS: usize = 200;
const LOAD_THREADS: usize = 2;

#[derive(clap::Args)]
pub struct CanaryArgs {
    /// A fault for green only (`EDGESTACK_INJECT_FAULT`): `errors` or `slow:<ms>`. The gate
    /// then rolls green back.
    #[arg(long, value_name = "FAULT")]
    green_fault: Option<String>,
    /// The rollout's stages (docs/releases.md), e.g. `10,50,100` or `eu:100,*:10,100`.
    #[arg(long, default_value = "10,50,100")]
    plan: String,
}

pub fn run(args: &CanaryArgs) -> Result {
    let toolchain = Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    build::build_gateway(&toolchain)?;
    let green = args.green_fault.as_deref().map_or_else(String::new, |fault| format!(" (green with fault `{fault}`)"));
    eprintln!("canary: starting a devdb primary and wrangler dev: the gateway in front of blue and green{green}");
    let options = CanaryOptions {
        green_vars: args.green_fault.iter().map(|fault| ("EDGESTACK_INJECT_FAULT".into(), fault.clone())).collect(),
        green_assets: None,
    };
    let canary = Canary::start(options)?;
    eprintln!("canary: gateway on {}; {USERS} simulated users send requests through it", canary.url());
    let load = Load::start_for(canary.url(), user_keys(USERS), LOAD_THREADS, |_| "na", Duration::from_secs(600));

    // `release deploy --local`, as docs/releases.md runs it, with stages short enough to watch.
    let mut release = local_stack::cargo::command();
    release
        .current_dir(&toolchain.root)
        .args(["run", "--quiet", "--package", "release", "--", "deploy", "--local", canary.url()])
        .args(["--plan", &args.plan, "--min-stage", "3s", "--max-stage", "60s", "--poll", "500ms"])
        // The gateway's token through the environment, never the command line.
        .env("GATEWAY_TOKEN", &canary.gateway_token);
    let shown: Vec<_> = release.get_args().map(|arg| arg.to_string_lossy()).collect();
    eprintln!("canary: GATEWAY_TOKEN=… cargo {}", shown.join(" "));
    let status = GroupChild::spawn_inheriting("release", &mut release)
        .and_then(|mut child| child.wait())
        .map_err(|e| format!("release: {e}"))?;
    let samples = load.stop();
    eprintln!("canary: traffic during the rollout: {}", traffic(&samples));
    drop(canary);
    match status.code() {
        Some(0) => {
            eprintln!("canary: green was promoted and serves 100 %");
            Ok(())
        }
        Some(1) => Err("the gate rolled green back; blue serves 100 % (see the release lines above)".into()),
        _ => Err(format!("release deploy --local failed: {status}")),
    }
}

/// `812 requests: 500 blue, 312 green, 0 failed`.
fn traffic(samples: &[Sample]) -> String {
    let served = |version: &str| samples.iter().filter(|s| s.served_by.as_deref() == Some(version)).count();
    let failed = samples.iter().filter(|s| s.failed()).count();
    format!("{} requests: {} blue, {} green, {failed} failed", samples.len(), served("blue"), served("green"))
}
