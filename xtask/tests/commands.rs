//! The developer commands as a developer meets them: every command and subcommand answers
//! `--help`, and a nested cargo (here `cargo xtask release …`) compiles nothing the outer cargo
//! built, so the second run of a command compiles nothing at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

/// The command names under `Commands:` in a clap help text (`help` left out).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_command_and_subcommand_answers_help() {
    let mut pending = vec![Vec::<String>::new()];
    let mut answered = Vec::new();
    while let Some(path) = pending.pop() {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(local_stack::workspace_root())
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        let shown = format!("xtask {} --help", path.join(" "));
        assert_eq!(output.status.code(), Some(0), "{shown}: {help}{}", String::from_utf8_lossy(&output.stderr));
        assert!(help.contains("Usage:"), "{shown}: {help}");
        for name in subcommands(&help) {
            pending.push([path.clone(), vec![name]].concat());
        }
        answered.push(path.join(" "));
    }
    // `release` forwards to the release command's own parser: its commands are reached too.
    for expected in
        ["dev", "test", "canary", "bench peer", "release deploy", "release migrations check", "release compat"]
    {
        assert!(answered.iter().any(|path| path == expected), "{expected} not reached: {answered:?}");
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

/// `cargo xtask release migrations check` as a developer's shell runs it: none of the
/// variables cargo sets for this test binary.
fn release_migrations_check() -> f64 {
    let keep = ["PATH", "HOME", "USER", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR"];
    let mut command = Command::new("cargo");
    command.env_clear().envs(keep.iter().filter_map(|name| Some((name, std::env::var_os(name)?))));
    command.current_dir(local_stack::workspace_root()).args(["xtask", "release", "migrations", "check"]);
    let started = Instant::now();
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    started.elapsed().as_secs_f64()
}

#[test]
fn a_second_release_migrations_check_compiles_nothing() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| local_stack::workspace_root().join("target"));
    let binaries = [target.join("debug/xtask"), target.join("debug/release")];
    let first = release_migrations_check();
    let built: Vec<_> = binaries.iter().map(|binary| modified(binary)).collect();
    let second = release_migrations_check();
    let rebuilt: Vec<_> = binaries.iter().map(|binary| modified(binary)).collect();
    eprintln!("cargo xtask release migrations check: first {first:.1} s, second {second:.1} s");
    // Anything recompiled (ring, ureq, local-stack, …) relinks the binaries that use it: the
    // outer cargo's xtask and the nested cargo's release.
    assert_eq!(built, rebuilt, "the second run rebuilt xtask or release ({second:.1} s)");
}
