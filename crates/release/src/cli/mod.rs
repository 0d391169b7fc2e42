//! The `release` command: staged rollouts (production through wrangler, or the local gateway),
//! the migration compatibility check, and the previous release's tests against the new schema.

pub mod compat;
pub mod rollout;
pub mod sources;
pub mod wrangler;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::gate::GateThresholds;
use crate::migrations::{MigrationFile, check_file, check_release};
use crate::plan::{DEFAULT_PLAN, RolloutPlan, parse_percent};
use clap::{Parser, Subcommand};
use rollout::{Event, HealthSource, Outcome, ReleaseError, Rollout, StageTiming, SystemClock, Versions, Window};
use sources::{AnalyticsEngine, LocalGateway};
use wrangler::{DryRunner, FrontWorker, RealRunner, WranglerTraffic, check_production_plan};

/// `release`: staged rollouts with a health gate, the migration check, and the compatibility
/// run (docs/releases.md).
#[derive(Parser)]
#[command(name = "release", about = "Releases without downtime (docs/releases.md)")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Staged rollout with a health gate; exits 0 promoted, 1 rolled back, 2 on errors.
    Deploy(DeployArgs),
    /// Schema changes against the previous release.
    #[command(subcommand)]
    Migrations(Migrations),
    /// Run a previous release's API tests against the current migrations.
    Compat(compat::CompatArgs),
}

#[derive(Subcommand)]
enum Migrations {
    /// Refuse migrations that break the previous release (expand, migrate, contract).
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Migrations folder.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also refuse a contract step shipped with other migrations new since this revision.
    #[arg(long, value_name = "REV")]
    since: Option<String>,
}

#[derive(clap::Args)]
struct DeployArgs {
    /// Stages: percent, or region:percent (`eu:100,*:10,*:50,*:100`).
    #[arg(long, default_value = DEFAULT_PLAN, value_parser = RolloutPlan::parse)]
    plan: RolloutPlan,
    /// Print every wrangler command (and the gate's query) instead of running it; the gate is
    /// not evaluated.
    #[arg(long, conflicts_with = "local")]
    dry_run: bool,
    /// With --dry-run: the gate fails at this stage, to print the rollback path.
    #[arg(long, value_name = "STAGE", requires = "dry_run", value_parser = clap::value_parser!(u16).range(1..))]
    dry_run_fail_stage: Option<u16>,
    /// Version tag, also named on every static response by the build's `_headers`
    /// [default: git rev-parse --short=12 HEAD].
    #[arg(long, value_name = "REV")]
    tag: Option<String>,
    /// wrangler config of the worker [default: wrangler.toml].
    #[arg(long, value_name = "PATH")]
    config: Option<String>,
    /// wrangler config of the front Worker that region stages drive in production (its APP
    /// binding must reach the worker being released) [default: front/wrangler.toml].
    #[arg(long, value_name = "PATH")]
    front_config: Option<String>,
    /// Drive the local gateway at URL instead of wrangler; its token comes from $GATEWAY_TOKEN
    /// (never the command line).
    #[arg(long, value_name = "URL")]
    local: Option<String>,
    /// A stage passes no earlier than this (500ms, 5s, 10m) [default: 5s local, 5m production].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    min_stage: Option<Duration>,
    /// A stage without a verdict by then rolls back [default: 60s local, 30m production].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    max_stage: Option<Duration>,
    /// How often the gate reads the counts [default: 500ms local, 30s production].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    poll: Option<Duration>,
    /// Requests each version needs before a verdict [default: 20 local, 100 production].
    #[arg(long, value_name = "N")]
    min_requests: Option<u64>,
    /// Latency samples each version needs before p95s are compared [default: 50 local, 200 production].
    #[arg(long, value_name = "N")]
    min_latency_samples: Option<u64>,
    /// Allowed error-rate increase in percentage points [default: 1].
    #[arg(long, value_name = "POINTS", value_parser = parse_percent)]
    max_error_increase: Option<u16>,
    /// The old version's error rate, in percent, above which it is no yardstick and the gate
    /// waits (an outage both versions share) [default: 5].
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    max_old_error_rate: Option<u16>,
    /// p95 bound: old × X + slack [default: 1.5].
    #[arg(long, value_name = "X", value_parser = ratio_arg)]
    latency_ratio: Option<f64>,
    /// p95 bound's slack in ms [default: 50].
    #[arg(long, value_name = "MS", value_parser = slack_arg)]
    latency_slack_ms: Option<f64>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration like 500ms, 5s or 10m"))
}

// Finite only: an infinite bound (`inf`, `1e999`) would switch the latency check off unseen.
fn ratio_arg(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 1.0)
        .ok_or_else(|| format!("`{text}` is not a ratio of at least 1"))
}

fn slack_arg(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("`{text}` is not a number of ms"))
}

/// Exit codes: 0 done (promoted / checks pass), 1 rolled back or refused, 2 usage or errors.
pub fn main_with_args(args: Vec<String>) -> u8 {
    let cli = match Cli::try_parse_from(std::iter::once("release".to_string()).chain(args)) {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` print and exit 0; usage errors print and exit 2.
            let code = error.exit_code();
            let _ = error.print();
            return u8::try_from(code).unwrap_or(2);
        }
    };
    let result = match cli.command {
        Command::Deploy(args) => deploy(args),
        Command::Migrations(Migrations::Check(args)) => migrations_check(args),
        Command::Compat(args) => compat::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("release: {error}");
            2
        }
    }
}

/// `500ms`, `5s`, `10m`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, "s"), |at| text.split_at(at));
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        _ => None,
    }
}

/// HEAD's revision, with `-dirty` when the working tree differs from it: the upload builds
/// the working tree, and a tag naming a commit whose files were not the ones uploaded would
/// make the next release keep the wrong static files (`WranglerTraffic::replaced_revision`
/// takes only a plain revision).
fn git_revision(root: &std::path::Path) -> Result<String, ReleaseError> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .map_err(|e| ReleaseError(format!("git: {e}; pass --tag")))
    };
    let output = git(&["rev-parse", "--short=12", "HEAD"])?;
    let revision = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || revision.is_empty() {
        return Err(ReleaseError("cannot read the git revision; pass --tag".into()));
    }
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Ok(if status.status.success() && status.stdout.is_empty() { revision } else { format!("{revision}-dirty") })
}

/// The shortest `--poll` against production. Every poll is one Analytics Engine SQL API query,
/// whose answer moves about once a minute (its ingestion delay); polling faster only spends the
/// API's rate limit, and a refused query is a failed health source, which rolls a healthy
/// release back.
const MIN_PRODUCTION_POLL: Duration = Duration::from_secs(5);

fn deploy(args: DeployArgs) -> Result<u8, ReleaseError> {
    let DeployArgs {
        plan,
        dry_run,
        dry_run_fail_stage,
        tag,
        config,
        front_config,
        local,
        min_stage: min,
        max_stage: max,
        poll,
        min_requests,
        min_latency_samples,
        max_error_increase: error_points,
        max_old_error_rate,
        latency_ratio,
        latency_slack_ms: latency_slack,
    } = args;
    // Production and its dry run alike: the rehearsal refuses what the release would.
    if let Some(poll) = poll.filter(|poll| local.is_none() && *poll < MIN_PRODUCTION_POLL) {
        return Err(ReleaseError(format!(
            "--poll {poll:?}: against production each poll is an Analytics Engine SQL API query, and a refused one rolls the release back; poll every {MIN_PRODUCTION_POLL:?} or less often"
        )));
    }
    let token = std::env::var("GATEWAY_TOKEN").ok().filter(|token| !token.is_empty());

    let defaults = GateThresholds::default();
    let min_requests = min_requests.unwrap_or(if local.is_some() { 20 } else { defaults.min_requests });
    let thresholds = GateThresholds {
        max_error_rate_increase: error_points.map_or(defaults.max_error_rate_increase, |bps| f64::from(bps) / 10_000.0),
        max_baseline_error_rate: max_old_error_rate
            .map_or(defaults.max_baseline_error_rate, |bps| f64::from(bps) / 10_000.0),
        max_latency_ratio: latency_ratio.unwrap_or(defaults.max_latency_ratio),
        latency_slack_ms: latency_slack.unwrap_or(defaults.latency_slack_ms),
        min_requests,
        min_baseline_requests: min_requests,
        min_latency_samples: min_latency_samples
            .unwrap_or(if local.is_some() { 50 } else { defaults.min_latency_samples })
            .max(1),
    };
    // Production stages wait for Analytics Engine's ingestion delay (about a minute).
    let (default_min, default_max, default_poll) = match &local {
        Some(_) => (Duration::from_secs(5), Duration::from_secs(60), Duration::from_millis(500)),
        None => (Duration::from_secs(300), Duration::from_secs(1800), Duration::from_secs(30)),
    };
    let timing = if dry_run {
        // Nothing to wait for: each stage is judged on one poll (see DryRunHealth).
        StageTiming { min: Duration::ZERO, max: Duration::ZERO, poll: Duration::ZERO }
    } else {
        StageTiming {
            min: min.unwrap_or(default_min),
            max: max.unwrap_or(default_max).max(min.unwrap_or(default_min)),
            poll: poll.unwrap_or(default_poll),
        }
    };
    if let Some(stage) = dry_run_fail_stage.map(usize::from).filter(|stage| *stage >= plan.stages.len()) {
        return Err(ReleaseError(format!(
            "--dry-run-fail-stage {stage}: the plan has {} gated stage(s) (the last stage is the promotion)",
            plan.stages.len() - 1
        )));
    }
    let rollout = Rollout { plan: &plan, thresholds: &thresholds, timing: &timing };
    let restore = restore_commands(local.as_deref(), config.as_deref(), &plan, front_config.as_deref());
    let mut report = |event: Event| {
        if !dry_run {
            track(&event, &restore);
        }
        eprintln!("release: {}", describe(&event, dry_run));
    };
    let outcome = if let Some(url) = local {
        let token = token.ok_or_else(|| ReleaseError("--local needs the gateway's token in $GATEWAY_TOKEN".into()))?;
        let (mut traffic, mut health) = (LocalGateway::new(&url, &token), LocalGateway::new(&url, &token));
        rollout.run(&mut traffic, &mut health, &mut SystemClock, &mut report)?
    } else {
        let tag = match tag {
            Some(tag) => tag,
            None => git_revision(&local_stack::workspace_root())?,
        };
        // The tag also goes into the build's `_headers` (release::version_tag).
        crate::version_tag::check_tag(&tag).map_err(|e| ReleaseError(e.to_string()))?;
        let root = local_stack::workspace_root();
        let app_config = config.clone().unwrap_or_else(|| "wrangler.toml".into());
        let front = if plan.stages.iter().any(|stage| !stage.regions.is_empty()) {
            let front_config = front_config.unwrap_or_else(|| "front/wrangler.toml".into());
            Some(FrontWorker::from_configs(&root, &front_config, &app_config)?)
        } else {
            None
        };
        check_production_plan(&plan, front.as_ref())?;
        let config_args = config.map(|path| vec!["--config".to_string(), path]).unwrap_or_default();
        if dry_run {
            let failing = dry_run_fail_stage.map_or_else(String::new, |stage| {
                format!("; the health gate fails at stage {stage} (--dry-run-fail-stage) to show the rollback")
            });
            println!(
                "# dry run: nothing is deployed{failing}. Every wrangler command and API call a real run makes, in order:"
            );
            let mut traffic = WranglerTraffic::new(DryRunner::default(), config_args, tag, front);
            let samples = min_requests.max(thresholds.min_latency_samples);
            let mut health = DryRunHealth { samples, fail_stage: dry_run_fail_stage.map(usize::from), polls: 0 };
            rollout.run(&mut traffic, &mut health, &mut SystemClock, &mut report)?
        } else {
            let mut health = AnalyticsEngine::from_env()?;
            let mut traffic = WranglerTraffic::new(RealRunner { root }, config_args, tag, front);
            rollout.run(&mut traffic, &mut health, &mut SystemClock, &mut report)?
        }
    };
    println!("{}", summary(&outcome, dry_run));
    Ok(match outcome {
        Outcome::Promoted { .. } => 0,
        Outcome::RolledBack { .. } => 1,
    })
}

/// What a deploy stopped now (Ctrl-C, a CI job's SIGTERM, a closed SSH session) leaves live and
/// how to put the old version back; `None` outside a rollout. `release`'s signal handler prints it.
static INTERRUPTED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// [`INTERRUPTED`]'s text, for the signal handler.
pub fn interrupted_deploy_state() -> Option<String> {
    INTERRUPTED.lock().ok()?.clone()
}

/// How to restore the old version by hand (`{old}` stands for its id), for the run's options.
fn restore_commands(local: Option<&str>, config: Option<&str>, plan: &RolloutPlan, front: Option<&str>) -> String {
    if let Some(url) = local {
        return format!(r#"POST {url}/__gateway/config {{"split": {{"default_bps": 0}}}}"#);
    }
    let config = config.map_or_else(String::new, |path| format!(" --config {path}"));
    let mut commands = format!("`npx wrangler versions deploy {{old}}@100% -y{config}`");
    if plan.stages.iter().any(|stage| !stage.regions.is_empty()) {
        let front = front.unwrap_or("front/wrangler.toml");
        commands.push_str(&format!(", then clear the front Worker's rule with `npx wrangler deploy --config {front}`"));
    }
    commands
}

/// Keeps [`INTERRUPTED`] in step with the rollout: from the upload until it is promoted or
/// rolled back, the new version may serve up to the share of the stage being applied.
fn track(event: &Event, restore: &str) {
    let Ok(mut state) = INTERRUPTED.lock() else {
        return;
    };
    match event {
        Event::Prepared(versions) => {
            *state = Some(format!(
                "the rollout of {new} was stopped before it finished: {new} may serve the share of the stage being applied beside {old}; restore {old} with {restore}",
                new = versions.new,
                old = versions.old,
                restore = restore.replace("{old}", &versions.old),
            ));
        }
        Event::StageApplied { stage, split } => {
            if let Some(text) = state.as_mut() {
                let base = text.split(" (last stage in force:").next().unwrap_or_default().to_string();
                *text = format!("{base} (last stage in force: {stage}, {split})");
            }
        }
        Event::RolledBack { .. } | Event::Promoted => *state = None,
        _ => {}
    }
}

/// Prints the query production would send, and answers it with made-up figures: healthy, or
/// (`fail_stage`) an error rate the real gate refuses, so a dry run walks the rollback path.
///
/// A dry run's stages have no minimum length, so each is judged on one poll: poll N is stage N.
struct DryRunHealth {
    samples: u64,
    fail_stage: Option<usize>,
    polls: usize,
}

impl HealthSource for DryRunHealth {
    fn window(&mut self, versions: &Versions, _: Duration) -> Result<Window, ReleaseError> {
        self.polls += 1;
        let sql = crate::analytics::window_query(&versions.old, &versions.new, 300)
            .map_err(|e| ReleaseError(e.to_string()))?;
        println!(
            "# health gate: POST https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/analytics_engine/sql\n#   {sql}"
        );
        let counts = |errors| crate::stats::VersionCounts {
            requests: self.samples,
            errors,
            p95_ms: Some(1.0),
            latency_samples: self.samples,
        };
        let new_errors = if self.fail_stage == Some(self.polls) { self.samples } else { 0 };
        Ok(Window { old: counts(0), new: counts(new_errors), split: None })
    }
}

/// One progress line: counts as people read them (`p95 12.0 ms`, `p95 –` without samples).
fn describe(event: &Event, dry_run: bool) -> String {
    let p95 = |p95: Option<f64>| p95.map_or_else(|| "–".to_string(), |ms| format!("{ms:.1} ms"));
    let counts = |window: &Window| {
        format!(
            "old {} requests, {} errors, p95 {} | new {} requests, {} errors, p95 {}",
            window.old.requests,
            window.old.errors,
            p95(window.old.p95_ms),
            window.new.requests,
            window.new.errors,
            p95(window.new.p95_ms)
        )
    };
    match event {
        Event::Prepared(versions) => format!("old version {}, new version {}", versions.old, versions.new),
        Event::StageApplied { stage, split } => format!("stage {stage}: new version at {split}"),
        Event::Reapplied { stage } => format!("stage {stage}: split was lost (gateway restarted?); applied again"),
        // A dry run has no traffic to count; its figures are made up, so none are shown.
        Event::Polled { stage, verdict, .. } if dry_run && verdict.starts_with("FAIL") => {
            format!("stage {stage}: health gate fails as asked (dry run, --dry-run-fail-stage)")
        }
        Event::Polled { stage, .. } if dry_run => {
            format!("stage {stage}: health gate not evaluated (dry run; production waits for Analytics Engine figures)")
        }
        Event::Polled { stage, window, verdict } => format!("stage {stage}: {} → {verdict}", counts(window)),
        Event::StagePassed { stage } if dry_run => format!("stage {stage}: next stage (dry run)"),
        Event::StagePassed { stage } => format!("stage {stage}: healthy"),
        Event::RolledBack { stage, .. } if dry_run => {
            format!("stage {stage}: rolled back (dry run): a real run would have restored the old version everywhere")
        }
        Event::RolledBack { stage, reason } => format!("stage {stage}: ROLLED BACK: {reason}"),
        Event::Promoted if dry_run => "dry run done: a real rollout would now serve the new version at 100 %".into(),
        Event::Promoted => "promoted: the new version serves 100 %".into(),
    }
}

/// One JSON line on stdout, for scripts and tests. `dry_run: true` says nothing was deployed
/// and no gate was evaluated (a dry run's rollback has no window: its figures were made up).
pub fn summary(outcome: &Outcome, dry_run: bool) -> String {
    match outcome {
        Outcome::Promoted { versions } => {
            json!({"outcome": "promoted", "dry_run": dry_run, "old": versions.old, "new": versions.new}).to_string()
        }
        Outcome::RolledBack { versions, stage, split, reason, window } => json!({
            "outcome": "rolled_back",
            "dry_run": dry_run,
            "old": versions.old,
            "new": versions.new,
            "stage": stage,
            "split": split,
            "reason": reason,
            "window": (!dry_run).then(|| json!({"old": window.old, "new": window.new})),
        })
        .to_string(),
    }
}

fn migrations_check(args: CheckArgs) -> Result<u8, ReleaseError> {
    let root = local_stack::workspace_root();
    let dir = args.dir.unwrap_or_else(|| root.join("migrations"));
    let since = args.since;
    let files = read_migrations(&dir)?;
    let mut violations: Vec<_> = files.iter().flat_map(check_file).collect();
    if let Some(revision) = since {
        let shipped = shipped_migrations(&root, &dir, &revision)?;
        let new: Vec<MigrationFile> = files.iter().filter(|file| !shipped.contains(&file.name)).cloned().collect();
        eprintln!("release: {} migration(s) new since {revision}", new.len());
        violations.extend(check_release(&new).into_iter().filter(|v| v.statement.is_empty()));
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    if violations.is_empty() {
        eprintln!("release: {} migration file(s) keep the previous release working", files.len());
        Ok(0)
    } else {
        eprintln!("release: {} problem(s); see docs/releases.md (expand, migrate, contract)", violations.len());
        Ok(1)
    }
}

/// `*.sql` files in `dir`, in name order (the order they are applied in).
pub fn read_migrations(dir: &std::path::Path) -> Result<Vec<MigrationFile>, ReleaseError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReleaseError(format!("{}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| ReleaseError(e.to_string()))?.path();
        if path.extension().is_some_and(|ext| ext == "sql") {
            let sql = std::fs::read_to_string(&path).map_err(|e| ReleaseError(format!("{}: {e}", path.display())))?;
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            files.push(MigrationFile { name, sql });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// File names in `dir` at `revision` (read-only `git ls-tree`).
fn shipped_migrations(
    root: &std::path::Path,
    dir: &std::path::Path,
    revision: &str,
) -> Result<Vec<String>, ReleaseError> {
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    let output = std::process::Command::new("git")
        .current_dir(root)
        .args(["ls-tree", "--name-only", revision, "--"])
        .arg(format!("{}/", relative.display()))
        .output()
        .map_err(|e| ReleaseError(format!("git ls-tree: {e}")))?;
    if !output.status.success() {
        return Err(ReleaseError(format!("git ls-tree {revision}: {}", String::from_utf8_lossy(&output.stderr))));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.rsplit('/').next().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag names a commit only when the upload's files are that commit's.
    #[test]
    fn the_default_tag_says_when_the_working_tree_is_not_its_commit() {
        let repository = tempfile::tempdir().unwrap();
        let root = repository.path();
        let git = |args: &[&str]| {
            let output = std::process::Command::new("git")
                .current_dir(root)
                .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
                .args(args)
                .output()
                .unwrap();
            assert!(output.status.success(), "{args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(root.join("app.js"), "1").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "one"]);
        let clean = git_revision(root).unwrap();
        assert!(clean.len() == 12 && clean.bytes().all(|b| b.is_ascii_hexdigit()), "{clean}");
        std::fs::write(root.join("app.js"), "2").unwrap();
        assert_eq!(git_revision(root).unwrap(), format!("{clean}-dirty"));
    }

    /// A deploy stopped mid-rollout (Ctrl-C, a CI timeout's SIGTERM) says what may be live and
    /// how to restore the old version; nothing once the rollout promoted or rolled back.
    #[test]
    fn an_interrupted_deploy_says_what_may_be_live_and_how_to_restore() {
        let plan = RolloutPlan::parse("eu:100,*:10,100").unwrap();
        let restore = restore_commands(None, Some("services/entry/wrangler.toml"), &plan, Some("front/entry.toml"));
        let versions = Versions { old: "old-id".into(), new: "new-id".into() };
        track(&Event::Prepared(versions.clone()), &restore);
        track(&Event::StageApplied { stage: 2, split: "eu:100%,*:10%".into() }, &restore);
        let state = interrupted_deploy_state().unwrap();
        for part in [
            "new-id may serve the share of the stage being applied beside old-id",
            "`npx wrangler versions deploy old-id@100% -y --config services/entry/wrangler.toml`",
            "`npx wrangler deploy --config front/entry.toml`",
            "(last stage in force: 2, eu:100%,*:10%)",
        ] {
            assert!(state.contains(part), "`{part}` missing: {state}");
        }
        track(&Event::Promoted, &restore);
        assert_eq!(interrupted_deploy_state(), None);
        let local = restore_commands(Some("http://127.0.0.1:8787"), None, &plan, None);
        assert!(local.contains(r#"http://127.0.0.1:8787/__gateway/config {"split": {"default_bps": 0}}"#), "{local}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_duration("x"), None);
    }

    fn window(old_p95: Option<f64>, new_p95: Option<f64>) -> Window {
        let counts =
            |requests, p95_ms| crate::stats::VersionCounts { requests, errors: 0, p95_ms, latency_samples: requests };
        Window { old: counts(40, old_p95), new: counts(3, new_p95), split: None }
    }

    #[test]
    fn progress_lines_read_as_text_not_rust_debug_forms() {
        let verdict = crate::gate::Verdict::Wait("new version has 3 of 20 requests".into()).to_string();
        let line = describe(&Event::Polled { stage: 1, window: window(Some(5.0), None), verdict }, false);
        assert_eq!(
            line,
            "stage 1: old 40 requests, 0 errors, p95 5.0 ms | new 3 requests, 0 errors, p95 – → wait: new version has 3 of 20 requests"
        );
        assert!(!line.contains("Some(") && !line.contains("Wait("), "{line}");
    }

    #[test]
    fn a_dry_run_says_so_and_shows_no_figures() {
        let line =
            describe(&Event::Polled { stage: 2, window: window(Some(1.0), Some(1.0)), verdict: "pass".into() }, true);
        assert!(line.contains("not evaluated (dry run") && !line.contains("requests"), "{line}");
        let versions = Versions { old: "a".into(), new: "b".into() };
        let json: serde_json::Value = serde_json::from_str(&summary(&Outcome::Promoted { versions }, true)).unwrap();
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["outcome"], "promoted");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_and_incomplete_arguments_are_refused() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("release").chain(args.iter().copied()));
        assert!(parse(&["deploy", "--plan", "1,100", "--dry-run"]).is_ok());
        assert!(parse(&["deploy", "--oops"]).is_err());
        assert!(parse(&["deploy", "--plan"]).is_err());
        assert!(parse(&["deploy", "--min-stage", "5h"]).is_err());
        // A dry run prints production's calls; the local gateway has none to print.
        assert!(parse(&["deploy", "--dry-run", "--local", "http://x"]).is_err());
        assert!(parse(&["deploy", "--dry-run-fail-stage", "1"]).is_err(), "needs --dry-run");
        assert!(parse(&["deploy", "--dry-run", "--dry-run-fail-stage", "0"]).is_err());
        // A bound that can never be exceeded switches the latency check off: refused, not taken.
        for (option, value) in [("--latency-ratio", "inf"), ("--latency-ratio", "1e999"), ("--latency-slack-ms", "inf")]
        {
            assert!(parse(&["deploy", option, value]).is_err(), "{option} {value}");
        }
        assert!(parse(&["deploy", "--latency-ratio", "2.5", "--latency-slack-ms", "0"]).is_ok());
        assert!(parse(&["deploy", "--max-old-error-rate", "10%"]).is_ok());
        assert!(parse(&["deploy", "--max-old-error-rate", "101"]).is_err());
        // The gateway token never travels as an argument.
        assert!(parse(&["deploy", "--local", "http://x", "--gateway-token", "t"]).is_err());
    }
}
