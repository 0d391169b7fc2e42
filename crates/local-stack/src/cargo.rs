//! Cargo started from a program that cargo started (`cargo xtask`, a test binary), or from a
//! tool that such a program starts (wrangler's `[build] command`).
//!
//! Cargo gives the program it runs the variables it sets for a crate (`CARGO_MANIFEST_DIR`,
//! `CARGO_PKG_NAME`, …). A nested cargo that inherits them hands them to build scripts, and
//! build scripts that watch one (ring's watches `CARGO_MANIFEST_DIR`) then count as changed:
//! the nested build recompiles ring, rustls, ureq and all that depends on them, and the next
//! outer build compiles them back. Without those variables both builds see one environment,
//! and a second run compiles nothing.

use std::ffi::OsStr;
use std::process::Command;

/// Variables cargo sets for the crate it builds, runs or tests, one by one.
const SET_FOR_A_CRATE: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_MAKEFLAGS",
    "OUT_DIR",
];
/// Prefixes of the variables cargo sets for a crate (`CARGO_PKG_NAME`, `CARGO_BIN_EXE_release`, …).
const SET_FOR_A_CRATE_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_", "CARGO_FEATURE_"];

/// `cargo` (the one that built us, if cargo started us) without the outer cargo's
/// per-crate variables.
pub fn command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    without_outer_cargo_env(&mut command);
    command
}

/// Removes the outer cargo's per-crate variables from what `command` inherits: for cargo
/// itself, and for any tool that may run cargo (wrangler runs `cargo xtask build`).
pub fn without_outer_cargo_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if set_by_cargo_for_a_crate(&name) {
            command.env_remove(&name);
        }
    }
    command
}

fn set_by_cargo_for_a_crate(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    SET_FOR_A_CRATE.contains(&name) || SET_FOR_A_CRATE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_what_cargo_sets_for_a_crate_and_keeps_the_user_configuration() {
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_BIN_EXE_release", "OUT_DIR", "CARGO_CRATE_NAME"] {
            assert!(set_by_cargo_for_a_crate(OsStr::new(name)), "{name}");
        }
        for name in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR", "CARGO", "PATH", "RUSTUP_TOOLCHAIN"] {
            assert!(!set_by_cargo_for_a_crate(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn the_nested_command_inherits_none_of_them() {
        // This test runs under `cargo test`, which set CARGO_MANIFEST_DIR for it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command = command();
        let removed: Vec<_> = command.get_envs().filter(|(_, value)| value.is_none()).map(|(name, _)| name).collect();
        assert!(removed.contains(&OsStr::new("CARGO_MANIFEST_DIR")), "{removed:?}");
        assert!(removed.contains(&OsStr::new("CARGO_PKG_NAME")), "{removed:?}");
    }
}
