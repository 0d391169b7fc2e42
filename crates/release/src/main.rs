//! `release`: staged rollouts with a health gate, the migration check, and the compatibility
//! run (see `release` without arguments, and docs/releases.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(release::cli::main_with_args(std::env::args().skip(1).collect()))
}
