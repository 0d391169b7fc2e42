//! Level 5: each service rolls out on its own, with its own wrangler config (dry run: every
//! wrangler command printed, the health gate answered by the dry-run stand-in).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn each_service_rolls_out_with_its_own_config() {
    let root = local_stack::workspace_root();
    for service in ["entry", "accounts", "notes"] {
        let config = format!("services/{service}/wrangler.toml");
        let output = Command::new(env!("CARGO_BIN_EXE_release"))
            .current_dir(&root)
            .args(["deploy", "--dry-run", "--plan", "10,100", "--tag", "test", "--config", &config])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{service}: {stdout}\n{stderr}");
        let wrangler_commands: Vec<&str> = stdout.lines().filter(|line| line.starts_with("npx wrangler")).collect();
        assert!(wrangler_commands.len() >= 4, "{service}: {stdout}");
        for command in &wrangler_commands {
            assert!(command.ends_with(&format!("--config {config}")), "{service}: {command}");
        }
        let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(summary["outcome"], "promoted", "{service}: {stdout}");
        assert_eq!(summary["dry_run"], true, "a dry run says so: {stdout}");
    }
}
