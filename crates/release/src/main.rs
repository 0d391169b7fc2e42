//! `release`: staged rollouts with a health gate, the migration check, and the compatibility
//! run (`release --help`, and docs/releases.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    // Ctrl-C, SIGTERM or SIGHUP during `compat` or a deploy stop the builds, tests and
    // wrangler commands it started before it exits (the local-stack guardian covers SIGKILL).
    let interrupted = |signal| {
        eprintln!("release: stopped by {}", local_stack::process::signal_name(signal));
        // A deploy stopped mid-rollout leaves its last stage live, with no gate watching it.
        if let Some(state) = release::cli::interrupted_deploy_state() {
            eprintln!("release: {state}");
        }
        128 + signal
    };
    if let Err(error) = local_stack::process::stop_children_on_signals(interrupted) {
        eprintln!("release: cannot handle signals: {error}");
    }
    ExitCode::from(release::cli::main_with_args(std::env::args().skip(1).collect()))
}
