//! `cargo xtask <command>`: edgestack's developer commands, in Rust instead of shell scripts.

mod assets;
mod bench;
mod bench_peer;
mod build;
mod dev;
mod region_lab;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup          install what building and testing need (idempotent, fast when done)
  assets         fingerprint web/ into public/ (run by `build`)
  build          assets + the wasm worker (skipped when no input changed)
  build-gateway  the local canary gateway worker in gateway/ (skipped when no input changed)
  dev            start the whole stack locally and run `wrangler dev` in the foreground
  dev --services the same in the Level 5 shape: entry, accounts and notes Workers, a database each
  identity-keys  print a new Ed25519 pair for the services' IDENTITY_SIGNING_KEY / IDENTITY_PUBLIC_KEY
  test           set up, build, and run every test
  release ...    the release command: deploy (staged, gated), migrations check, compat (docs/releases.md)
  bench startup  print the worker's wasm size and `wrangler dev` start → first 200
  bench app      p50/p95 of note reads and writes and the password-hash cost through wrangler dev
  bench regions  region lab: p50/p95/p99, db requests per request and cache hits per simulated region and level";

pub type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["setup"] => tools::Toolchain::ensure().map(|_| ()),
        ["assets"] => assets::build_public(&local_stack::workspace_root()).map(|_| ()),
        ["build"] => tools::Toolchain::ensure().and_then(|toolchain| build::build_worker(&toolchain)),
        ["build-gateway"] => tools::Toolchain::ensure().and_then(|toolchain| build::build_gateway(&toolchain)),
        ["release", rest @ ..] => run_release(rest),
        ["dev"] => dev::run_dev_stack(dev::Shape::Monolith),
        ["dev", "--services"] => dev::run_dev_stack(dev::Shape::Services),
        ["identity-keys"] => print_identity_keys(),
        ["test", rest @ ..] => run_tests(rest),
        ["bench", "startup"] => bench::startup(),
        ["bench", "app"] => bench::app(),
        ["bench", "regions"] => region_lab::run(),
        // Temporary until the clap conversion (issue #16) wires `bench peer [--rounds N] [--seconds S]`.
        ["bench", "peer", rest @ ..] => {
            bench_peer::parse_args(rest).and_then(|(rounds, seconds)| bench_peer::run(rounds, seconds))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The README's test command: everything a fresh clone needs, then every test in the workspace.
fn run_tests(extra_args: &[&str]) -> Result {
    let toolchain = tools::Toolchain::ensure()?;
    build::build_worker(&toolchain)?;
    // The rollout tests (crates/release/tests) run the gateway in front of two builds.
    build::build_gateway(&toolchain)?;
    tools::run(
        std::process::Command::new(tools::cargo())
            .current_dir(&toolchain.root)
            .args(["test", "--workspace", "--locked"])
            .args(extra_args),
    )?;
    // The API and browser suites again, against the services shape (Level 5). `edge` pins the
    // single Worker (Level 4 on one database); `services` and `contract` pin the services shape.
    let separator: &[&str] = if extra_args.contains(&"--") { &[] } else { &["--"] };
    tools::run(
        std::process::Command::new(tools::cargo())
            .current_dir(&toolchain.root)
            .env("EDGESTACK_SHAPE", "services")
            .args(["test", "--locked", "--package", "edgestack", "--test", "api"])
            .args(extra_args)
            .args(separator)
            .args(["--skip", "edge::", "--skip", "services::", "--skip", "contract::"]),
    )
}

/// A production key pair for the services shape (docs/services.md): the signing key is a secret
/// of `accounts` only; the public key goes to the entry and `notes`.
fn print_identity_keys() -> Result {
    let (signing, public) = local_stack::services::identity_keys()?;
    println!("IDENTITY_SIGNING_KEY={signing}");
    println!("IDENTITY_PUBLIC_KEY={public}");
    Ok(())
}

/// `cargo xtask release …`: the release command of docs/releases.md.
fn run_release(args: &[&str]) -> Result {
    tools::run(
        std::process::Command::new(tools::cargo())
            .current_dir(local_stack::workspace_root())
            .args(["run", "--quiet", "--package", "release", "--"])
            .args(args),
    )
}
