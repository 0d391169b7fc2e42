//! A regional release in production mode, as `release deploy --dry-run` prints it: every wrangler
//! command and API call in order — the promotion, and the rollback when a gate fails — plus the
//! plans production refuses before anything is uploaded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use release::cli::wrangler::{DRY_RUN_NEW as NEW, DRY_RUN_OLD as OLD};

struct DryRun {
    code: Option<i32>,
    /// stdout without the last line (the JSON summary).
    calls: Vec<String>,
    summary: serde_json::Value,
    stderr: String,
}

fn release(args: &[&str]) -> DryRun {
    let output = Command::new(env!("CARGO_BIN_EXE_release"))
        .current_dir(local_stack::workspace_root())
        .args(["deploy", "--dry-run", "--tag", "abc123"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("--- {args:?} ---\n{stderr}{stdout}");
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let summary = lines.pop().and_then(|line| serde_json::from_str(&line).ok()).unwrap_or_default();
    DryRun { code: output.status.code(), calls: lines, summary, stderr }
}

const GATE: &str =
    "# health gate: POST https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/analytics_engine/sql";

fn front_rule(version: &str, regions: &str, message: &str) -> String {
    format!(
        "npx wrangler deploy --config front/wrangler.toml --var FRONT_APP_WORKER:edgestack --var FRONT_CANARY_VERSION:{version} --var FRONT_CANARY_REGIONS:{regions} --message '{message}'"
    )
}

/// The calls, with each health gate's two lines (the POST and its SQL) folded into `GATE`.
fn calls_in_order(run: &DryRun) -> Vec<String> {
    run.calls.iter().filter(|line| !line.starts_with("#   SELECT")).cloned().collect()
}

#[test]
fn a_regional_release_uploads_deploys_at_zero_points_the_front_worker_widens_promotes_and_cleans_up() {
    let run = release(&["--plan", "eu:100,*:10,*:100"]);
    assert_eq!(
        (run.code, &run.summary["outcome"], &run.summary["dry_run"]),
        (Some(0), &"promoted".into(), &true.into())
    );
    let calls = calls_in_order(&run);
    assert!(calls[0].starts_with("# dry run: nothing is deployed"), "{}", calls[0]);
    assert_eq!(
        calls[1..],
        [
            "npx wrangler deployments status --json".to_string(),
            "npx wrangler versions view 00000000-0000-4000-8000-00000000000a --json".into(),
            "EDGESTACK_VERSION_TAG=abc123 npx wrangler versions upload --tag abc123 --message 'release abc123'".into(),
            format!("npx wrangler versions deploy {NEW}@0% {OLD}@100% --message 'release abc123: eu:100%,*:0%' -y"),
            front_rule(NEW, "eu", "release abc123: eu:100%,*:0%"),
            GATE.into(),
            format!("npx wrangler versions deploy {NEW}@10% {OLD}@90% --message 'release abc123: eu:100%,*:10%' -y"),
            GATE.into(),
            format!("npx wrangler versions deploy {NEW}@100% --message 'release abc123: 100%' -y"),
            front_rule("", "", "release abc123: canary rule cleared, the new version serves 100 %"),
        ]
    );
    // The gate asks for both versions by id.
    let sql = run.calls.iter().find(|line| line.starts_with("#   SELECT")).unwrap();
    assert!(sql.contains(&format!("blob1 IN ('{OLD}', '{NEW}')")), "{sql}");
    assert!(run.stderr.contains("not evaluated (dry run"), "{}", run.stderr);
    // The dry run's replaced version has a tag that is no revision here: said, not fatal.
    assert!(run.stderr.contains("tag `0000000dead0`, which is no git revision here"), "{}", run.stderr);
}

#[test]
fn a_failed_gate_in_a_regional_release_restores_the_old_version_everywhere_then_clears_the_front_rule() {
    for (stage, applied) in [(1, 2), (2, 3)] {
        let stage_arg = stage.to_string();
        let run = release(&["--plan", "eu:100,*:10,*:100", "--dry-run-fail-stage", &stage_arg]);
        assert_eq!((run.code, &run.summary["outcome"]), (Some(1), &"rolled_back".into()), "stage {stage}");
        assert_eq!(run.summary["stage"], stage);
        assert_eq!(run.summary["window"], serde_json::Value::Null, "a dry run's figures are made up");
        let calls = calls_in_order(&run);
        assert!(calls[0].contains(&format!("the health gate fails at stage {stage}")), "{}", calls[0]);
        // upload, the stages up to the failing one (with their gates), then the rollback.
        let rollback = &calls[calls.len() - 2..];
        assert_eq!(
            rollback,
            [
                format!("npx wrangler versions deploy {OLD}@100% --message 'rollback of abc123' -y"),
                front_rule("", "", "rollback of abc123: canary rule cleared"),
            ],
            "stage {stage}"
        );
        let deploys = calls.iter().filter(|line| line.contains("versions deploy")).count();
        assert_eq!(deploys, applied, "stage {stage}: {calls:#?}");
        assert!(!calls.iter().any(|line| line.contains(&format!("{NEW}@100%"))), "never promoted: {calls:#?}");
        assert!(run.stderr.contains("health gate fails as asked"), "{}", run.stderr);
    }
}

#[test]
fn a_percentage_release_never_touches_the_front_worker() {
    for fail in [None, Some("1")] {
        let mut args = vec!["--plan", "1,10,100"];
        args.extend(fail.iter().flat_map(|stage| ["--dry-run-fail-stage", stage]));
        let run = release(&args);
        assert!(run.calls.iter().all(|line| !line.contains("front/wrangler.toml")), "{:#?}", run.calls);
        assert!(run.calls.iter().any(|line| line.contains("versions deploy")));
    }
}

#[test]
fn production_refuses_what_it_cannot_do_before_uploading_anything() {
    // A partial region share would need per-user stickiness the front Worker does not give.
    let partial = release(&["--plan", "eu:50,100"]);
    assert_eq!(partial.code, Some(2));
    assert!(partial.stderr.contains("use `eu:100`, not `eu:50`"), "{}", partial.stderr);
    // The committed front Worker reaches `edgestack`, not the services' entry Worker.
    let entry = release(&["--plan", "eu:100,100", "--config", "services/entry/wrangler.toml"]);
    assert_eq!(entry.code, Some(2));
    assert!(entry.stderr.contains("deploys `edgestack-entry`"), "{}", entry.stderr);
    // A failure rehearsal must name a gated stage.
    let last = release(&["--plan", "10,100", "--dry-run-fail-stage", "2"]);
    assert_eq!(last.code, Some(2));
    // Polling the Analytics Engine SQL API in a tight loop spends its rate limit, and a refused
    // query rolls a healthy release back.
    let tight = release(&["--plan", "10,100", "--poll", "1s"]);
    assert_eq!(tight.code, Some(2));
    assert!(tight.stderr.contains("--poll 1s"), "{}", tight.stderr);
    assert_eq!(release(&["--plan", "10,100", "--poll", "5s"]).code, Some(0));
    for run in [partial, entry, last, tight] {
        assert!(run.calls.iter().all(|line| !line.contains("npx wrangler")), "{:#?}", run.calls);
    }
}
