//! `cargo xtask <command>`: edgestack's developer commands, in Rust instead of shell scripts.
//!
//! Every process a command starts ends with it: Ctrl-C, SIGTERM and SIGHUP stop them before
//! xtask exits, and local-stack's guardian kills them if xtask is killed outright.

mod assets;
mod bench;
mod bench_peer;
mod build;
mod canary;
mod dev;
mod drill;
mod region_lab;
mod svg;
mod tools;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub type Result<T = ()> = std::result::Result<T, String>;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "edgestack's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent, fast when done).
    Setup,
    /// Fingerprint the site's source in public/ into dist/ (run by `build`).
    Assets,
    /// Assets and the wasm worker (skipped when no input changed).
    Build,
    /// The local canary gateway worker in gateway/ (skipped when no input changed).
    BuildGateway,
    /// The production front Worker in front/ (skipped when no input changed).
    BuildFront,
    /// Start the whole stack locally, `wrangler dev` in the foreground; Ctrl-C stops all of it.
    Dev(DevArgs),
    /// Print a new Ed25519 pair for the services' IDENTITY_SIGNING_KEY / IDENTITY_PUBLIC_KEY.
    IdentityKeys,
    /// Set up, build, and run every test, in both shapes.
    Test {
        /// Passed to `cargo test` (e.g. `-- notes::`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// The release command: deploy (staged, gated), migrations check, compat (docs/releases.md);
    /// `cargo xtask release --help` lists its commands.
    #[command(disable_help_flag = true)]
    Release {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The local canary of docs/releases.md in one command: a database, the gateway in front of
    /// a blue and a green build, a little traffic, and `release deploy --local` through it.
    Canary(canary::CanaryArgs),
    /// Benchmarks that print figures (none of them is a test).
    #[command(subcommand)]
    Bench(Bench),
    /// Drills that break the local stack on purpose and report what it cost
    /// (`drill failover`: docs/failover.md).
    #[command(subcommand)]
    Drill(drill::Drill),
}

#[derive(Args)]
struct DevArgs {
    /// The Level 5 shape: entry, accounts and notes Workers, a database each.
    #[arg(long)]
    services: bool,
    /// Where `wrangler dev` listens.
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// The databases, their token and wrangler's local state, kept between runs
    /// (relative to the workspace root).
    #[arg(long, default_value = ".devdb")]
    data: PathBuf,
}

#[derive(Subcommand)]
enum Bench {
    /// The worker's wasm size (raw and gzip) and three `wrangler dev` starts → first 200.
    Startup,
    /// p50/p95 of note reads and writes and the password-hash cost through `wrangler dev`.
    App,
    /// Region lab: p50/p95/p99, db requests per request and cache hits per simulated region
    /// and level (docs/region-lab.md).
    Regions,
    /// edgestack against a JavaScript peer Worker and a floor Worker under `wrk` (bench/README.md).
    Peer {
        /// Measured rounds per shape and side (1–1000).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(bench_peer::ROUNDS))]
        rounds: u32,
        /// Seconds per measured run (1–600).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(bench_peer::SECONDS))]
        seconds: u32,
        /// Only these shapes (keys: health, public-note, public-note-cached, own-note,
        /// create-note), comma-separated; all by default.
        #[arg(long, value_delimiter = ',')]
        shapes: Vec<String>,
    },
    /// Two builds of the worker (copies of `build/`) under the same load at the same time,
    /// sharing one pinned core: each one's Worker CPU per request and B ÷ A, for one change's
    /// cost (bench/README.md). A build against itself shows the method's own spread.
    Ab {
        /// The build before the change (a copy of `build/`).
        a: PathBuf,
        /// The build after it.
        b: PathBuf,
        /// The request shape (health, public-note, public-note-cached, own-note, create-note).
        #[arg(long, default_value = "health")]
        shape: String,
        /// Measured rounds (1–1000).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(bench_peer::ROUNDS))]
        rounds: u32,
        /// Seconds per round (1–600).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(bench_peer::SECONDS))]
        seconds: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dev` has no other way to end than a signal, so that is its normal end; other commands
    // were interrupted, which callers (CI) must not take for success.
    let dev = matches!(cli.command, Command::Dev(_));
    let on_signal = move |signal| {
        // Not `eprintln!`: after a closed terminal (SIGHUP) the write fails, and that is no reason
        // to panic on the way out.
        let _ = writeln!(
            std::io::stderr(),
            "xtask: stopped by {}; every process it started has ended",
            local_stack::process::signal_name(signal)
        );
        if dev { 0 } else { 128 + signal }
    };
    if let Err(error) = local_stack::process::stop_children_on_signals(on_signal) {
        eprintln!("xtask: cannot handle signals ({error}); Ctrl-C still ends every process through the guardian");
    }
    let outcome = match cli.command {
        Command::Setup => tools::Toolchain::ensure().and_then(|_| tools::ensure_test_tools()),
        Command::Assets => assets::build_site(&local_stack::workspace_root()).map(|_| ()),
        Command::Build => tools::Toolchain::ensure().and_then(|toolchain| build::build_worker(&toolchain)),
        Command::BuildGateway => tools::Toolchain::ensure().and_then(|toolchain| build::build_gateway(&toolchain)),
        Command::BuildFront => tools::Toolchain::ensure().and_then(|toolchain| build::build_front(&toolchain)),
        // The release command's own exit code, not xtask's 1 for any failure: scripts tell a
        // rollback (1) from an error that may have left a split live (2) by it.
        Command::Release { args } => match run_release(&args) {
            Ok(code) => return ExitCode::from(code),
            Err(message) => Err(message),
        },
        Command::Dev(args) => {
            let shape = if args.services { dev::Shape::Services } else { dev::Shape::Monolith };
            dev::run_dev_stack(shape, args.port, &local_stack::workspace_root().join(args.data))
        }
        Command::IdentityKeys => print_identity_keys(),
        Command::Test { cargo_test_args } => run_tests(&cargo_test_args),
        Command::Canary(args) => canary::run(&args),
        Command::Bench(Bench::Startup) => bench::startup(),
        Command::Bench(Bench::App) => bench::app(),
        Command::Bench(Bench::Regions) => region_lab::run(),
        Command::Bench(Bench::Peer { rounds, seconds, shapes }) => bench_peer::run(rounds, seconds, &shapes),
        Command::Bench(Bench::Ab { a, b, shape, rounds, seconds }) => {
            bench_peer::ab::run(&a, &b, &shape, rounds, seconds)
        }
        Command::Drill(drill) => drill::run(drill),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A child ended because a signal is stopping everything: the handler reports and exits.
        Err(_) if local_stack::process::stopping() => loop {
            std::thread::park();
        },
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The README's test command: everything a fresh clone needs, then every test in the workspace.
fn run_tests(extra_args: &[String]) -> Result {
    let toolchain = tools::Toolchain::ensure()?;
    tools::ensure_test_tools()?;
    build::build_worker(&toolchain)?;
    // The rollout tests (crates/release/tests) run the gateway in front of two builds.
    build::build_gateway(&toolchain)?;
    // The regional canary test puts the front Worker before the gateway.
    build::build_front(&toolchain)?;
    tools::run(
        local_stack::cargo::command()
            .current_dir(&toolchain.root)
            .args(["test", "--workspace", "--locked"])
            .args(extra_args),
    )?;
    // The API and browser suites again, against the services shape (Level 5). `edge` pins the
    // single Worker (Level 4 on one database); `services` and `contract` pin the services shape;
    // of the ways to end a test stack, the services shape repeats one (the mechanism is shared).
    let separator: &[&str] = if extra_args.iter().any(|arg| arg == "--") { &[] } else { &["--"] };
    tools::run(
        local_stack::cargo::command()
            .current_dir(&toolchain.root)
            .env("EDGESTACK_SHAPE", "services")
            .args(["test", "--locked", "--package", "edgestack", "--test", "api"])
            .args(extra_args)
            .args(separator)
            .args(["--skip", "edge::", "--skip", "services::", "--skip", "contract::"])
            .args(["--skip", "helpers::lifecycle::other_endings::"]),
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

/// `cargo xtask release …`: the release command of docs/releases.md, built and run by a
/// nested cargo that shares the outer one's environment (so it compiles nothing twice). Gives
/// its exit code (`deploy`: 0 promoted, 1 rolled back, 2 usage or tool error; cargo's 101 when
/// it does not build).
fn run_release(args: &[String]) -> Result<u8> {
    exit_code_of(
        local_stack::cargo::command()
            .current_dir(local_stack::workspace_root())
            .args(["run", "--quiet", "--package", "release", "--"])
            .args(args),
    )
}

/// Runs `command` in its own group to its end and gives its exit code; `Err` when it could not
/// start or a signal ended it.
fn exit_code_of(command: &mut std::process::Command) -> Result<u8> {
    let status = local_stack::process::GroupChild::spawn_inheriting("release", command)
        .and_then(|mut child| child.wait())
        .map_err(|e| format!("release: {e}"))?;
    status.code().and_then(|code| u8::try_from(code).ok()).ok_or_else(|| format!("release ended: {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn release_arguments_pass_through_untouched() {
        let cli = Cli::try_parse_from(["xtask", "release", "deploy", "--help"]).unwrap();
        let Command::Release { args } = cli.command else { panic!("not release") };
        assert_eq!(args, ["deploy", "--help"]);
    }

    /// `deploy` exits 1 after a clean rollback and 2 on an error (docs/releases.md): xtask passes
    /// each on as it came, so a script reading `cargo xtask release deploy` can tell them apart.
    #[test]
    fn the_release_commands_exit_code_is_passed_on() {
        for code in [0u8, 1, 2, 101] {
            let mut command = std::process::Command::new("sh");
            command.args(["-c", &format!("exit {code}")]);
            assert_eq!(exit_code_of(&mut command), Ok(code));
        }
        let mut killed = std::process::Command::new("sh");
        killed.args(["-c", "kill -9 $$"]);
        assert!(exit_code_of(&mut killed).is_err());
    }

    #[test]
    fn bench_ab_takes_two_builds_and_a_shape() {
        let cli = Cli::try_parse_from(["xtask", "bench", "ab", "/tmp/a", "/tmp/b", "--shape", "public-note"]).unwrap();
        let Command::Bench(Bench::Ab { a, b, shape, rounds, seconds }) = cli.command else { panic!("not bench ab") };
        assert_eq!((a, b), (PathBuf::from("/tmp/a"), PathBuf::from("/tmp/b")));
        assert_eq!((shape.as_str(), rounds, seconds), ("public-note", 8, 4));
        assert!(Cli::try_parse_from(["xtask", "bench", "ab", "/tmp/a"]).is_err(), "B is required");
    }

    #[test]
    fn bench_peer_takes_rounds_and_seconds() {
        let cli = Cli::try_parse_from(["xtask", "bench", "peer", "--rounds", "1", "--seconds", "2"]).unwrap();
        assert!(matches!(cli.command, Command::Bench(Bench::Peer { rounds: 1, seconds: 2, .. })));
        let cli = Cli::try_parse_from(["xtask", "bench", "peer"]).unwrap();
        assert!(matches!(cli.command, Command::Bench(Bench::Peer { rounds: 3, seconds: 5, .. })));
    }

    #[test]
    fn bench_runs_outside_their_bounds_are_refused_before_anything_starts() {
        for command in [&["bench", "peer"][..], &["bench", "ab", "/tmp/a", "/tmp/b"]] {
            for (flag, value) in [("--rounds", "0"), ("--rounds", "1001"), ("--seconds", "0"), ("--seconds", "601")] {
                let args = ["xtask"].iter().chain(command).chain(&[flag, value]).copied().collect::<Vec<_>>();
                assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
            }
            let longest = ["xtask"].iter().chain(command).chain(&["--rounds", "1000", "--seconds", "600"]).copied();
            assert!(Cli::try_parse_from(longest.collect::<Vec<_>>()).is_ok());
        }
    }
}
