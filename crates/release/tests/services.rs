//! Level 5: each service rolls out, and rolls back, on its own, with its own wrangler config.
//!
//! Dry runs: every wrangler command is printed, and the health gate's answer is made up — healthy,
//! or failing at a chosen stage (`--dry-run-fail-stage`). The outcome therefore comes from the
//! real gate and rollout on that answer, and each test checks the commands a real run would make:
//! a command without the service's config would deploy or roll back another Worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use release::cli::wrangler::{DRY_RUN_NEW, DRY_RUN_OLD};

const SERVICES: [&str; 3] = ["entry", "accounts", "notes"];

struct DryRun {
    code: Option<i32>,
    commands: Vec<String>,
    summary: serde_json::Value,
    stdout: String,
}

fn dry_run(config: &str, extra: &[&str]) -> DryRun {
    let output = Command::new(env!("CARGO_BIN_EXE_release"))
        .current_dir(local_stack::workspace_root())
        .args(["deploy", "--dry-run", "--plan", "10,50,100", "--tag", "test", "--config", config])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let commands = stdout.lines().filter(|line| line.contains("npx wrangler")).map(str::to_string).collect();
    let summary = stdout.lines().last().and_then(|line| serde_json::from_str(line).ok()).unwrap_or_default();
    eprintln!("--- {config} {extra:?} ---\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    DryRun { code: output.status.code(), commands, summary, stdout }
}

#[test]
fn each_service_rolls_out_with_its_own_config() {
    for service in SERVICES {
        let config = format!("services/{service}/wrangler.toml");
        let run = dry_run(&config, &[]);
        assert_eq!((run.code, &run.summary["outcome"]), (Some(0), &"promoted".into()), "{service}: {}", run.stdout);
        assert_eq!(run.summary["dry_run"], true, "a dry run says so");
        let with_config = |command: &str| format!("{command} --config {config}");
        assert_eq!(
            run.commands,
            [
                with_config("npx wrangler deployments status --json"),
                // The replaced version's tag: its static files are kept when it is a revision here.
                with_config(&format!("npx wrangler versions view {DRY_RUN_OLD} --json")),
                with_config(
                    "EDGESTACK_VERSION_TAG=test npx wrangler versions upload --tag test --message 'release test'"
                ),
                with_config(&format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@10% {DRY_RUN_OLD}@90% --message 'release test: 10%' -y"
                )),
                with_config(&format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@50% {DRY_RUN_OLD}@50% --message 'release test: 50%' -y"
                )),
                with_config(&format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@100% --message 'release test: 100%' -y"
                )),
            ],
            "{service}"
        );
    }
}

#[test]
fn each_service_rolls_back_with_its_own_config_when_its_gate_fails() {
    for service in SERVICES {
        let config = format!("services/{service}/wrangler.toml");
        let run = dry_run(&config, &["--dry-run-fail-stage", "2"]);
        assert_eq!((run.code, &run.summary["outcome"]), (Some(1), &"rolled_back".into()), "{service}: {}", run.stdout);
        assert_eq!(run.summary["stage"], 2, "{service}");
        assert!(run.summary["reason"].as_str().unwrap().contains("error rate"), "{}", run.summary);
        assert_eq!(run.summary["dry_run"], true);
        // Stages 1 and 2 applied, then the old version back to 100 % — on this service's Worker.
        assert_eq!(run.commands.len(), 6, "{service}: {:#?}", run.commands);
        assert!(run.commands[4].contains(&format!("{DRY_RUN_NEW}@50%")), "{}", run.commands[4]);
        assert_eq!(
            run.commands[5],
            format!(
                "npx wrangler versions deploy {DRY_RUN_OLD}@100% --message 'rollback of test' -y --config {config}"
            ),
            "{service}"
        );
    }
}
