//! `cargo xtask canary`, the local canary of docs/releases.md in one command: a good green is
//! promoted, a faulty one rolled back, and afterwards nothing it started runs and nothing was
//! left in the source tree.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use local_stack::inspect;

/// Runs `cargo xtask canary <args>`; returns its exit code and everything it printed, after
/// checking that nothing it started outlived it.
fn canary(args: &[&str]) -> (Option<i32>, String) {
    let root = local_stack::workspace_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(&root)
        .arg("canary")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, note everything it started (the tree only grows until the rollout ends).
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        for process in inspect::tree(child.id()) {
            if !seen.contains(&process) {
                seen.push(process);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let output = child.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let survivors = inspect::survivors_after(&seen, Duration::from_secs(5));
    assert!(survivors.is_empty(), "still running after the canary: {survivors:#?}\n{printed}");
    assert!(!root.join("gateway/.wrangler").exists() || git_ignores(&root, "gateway/.wrangler"));
    (output.status.code(), printed)
}

fn git_ignores(root: &std::path::Path, path: &str) -> bool {
    Command::new("git").current_dir(root).args(["check-ignore", "-q", path]).status().unwrap().success()
}

/// The JSON summary `release deploy` ends with.
fn summary(printed: &str) -> serde_json::Value {
    let line = printed.lines().find(|line| line.starts_with("{\"")).unwrap_or_else(|| panic!("no summary:\n{printed}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn canary_promotes_a_good_green_and_rolls_back_a_faulty_one() {
    let (code, printed) = canary(&[]);
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(summary(&printed)["outcome"], "promoted", "{printed}");
    assert!(printed.contains("green was promoted"), "{printed}");
    assert!(printed.contains(" green, 0 failed"), "{printed}");

    let (code, printed) = canary(&["--green-fault", "errors"]);
    assert_eq!(code, Some(1), "{printed}");
    let summary = summary(&printed);
    assert_eq!(summary["outcome"], "rolled_back", "{printed}");
    assert_eq!(summary["stage"], 1, "{printed}");
}
