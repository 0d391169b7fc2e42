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
use rollout::{Event, HealthSource, Outcome, ReleaseError, Rollout, StageTiming, SystemClock, Versions, Window};
use sources::{AnalyticsEngine, LocalGateway};
use wrangler::{DryRunner, RealRunner, WranglerTraffic};

pub const USAGE: &str = "usage: release <command>

commands:
  deploy [options]                 staged rollout with a health gate; rolls back and exits 1 on failure
      --plan 1,10,50,100           stages (percent, or region:percent like eu:100,*:10,*:50,*:100)
      --dry-run                    print every wrangler command instead of running it
      --tag REV                    version tag (default: git rev-parse --short=12 HEAD)
      --config PATH                wrangler config of the worker (default: wrangler.toml)
      --local URL                  drive the local gateway at URL instead of wrangler
      --gateway-token TOKEN        its token (default: $GATEWAY_TOKEN)
      --min-stage DUR --max-stage DUR --poll DUR   stage timing (e.g. 500ms, 5s, 10m)
      --min-requests N             requests each version needs before a verdict
      --min-latency-samples N      samples each version needs before p95s are compared
      --max-error-increase PCT     allowed error-rate increase in points (default 1)
      --latency-ratio X --latency-slack-ms MS      p95 bound: old × X + MS (default 1.5, 50)
  migrations check [--dir DIR] [--since REV]
                                   refuse migrations that break the previous release
  compat --previous REV [--migrations DIR] [--dry-run]
                                   run REV's API tests against the current migrations";

/// Exit codes: 0 done (promoted / checks pass), 1 rolled back or refused, 2 usage or errors.
pub fn main_with_args(args: Vec<String>) -> u8 {
    let mut args = Args(args);
    let result = match args.0.first().map(String::as_str) {
        Some("deploy") => {
            args.0.remove(0);
            deploy(&mut args)
        }
        Some("migrations") if args.0.get(1).map(String::as_str) == Some("check") => {
            args.0.drain(..2);
            migrations_check(&mut args)
        }
        Some("compat") => {
            args.0.remove(0);
            compat::run(&mut args)
        }
        _ => Err(ReleaseError(USAGE.into())),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("release: {error}");
            2
        }
    }
}

/// Remaining command-line arguments, consumed flag by flag.
pub struct Args(Vec<String>);

impl Args {
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|arg| arg != name);
        self.0.len() != before
    }

    pub fn value(&mut self, name: &str) -> Result<Option<String>, ReleaseError> {
        let Some(at) = self.0.iter().position(|arg| arg == name) else {
            return Ok(None);
        };
        if at + 1 >= self.0.len() {
            return Err(ReleaseError(format!("{name} needs a value")));
        }
        let value = self.0.remove(at + 1);
        self.0.remove(at);
        Ok(Some(value))
    }

    fn parsed<T>(&mut self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ReleaseError> {
        match self.value(name)? {
            None => Ok(None),
            Some(text) => parse(&text).map(Some).ok_or_else(|| ReleaseError(format!("{name}: bad value `{text}`"))),
        }
    }

    pub fn finish(&self) -> Result<(), ReleaseError> {
        match self.0.first() {
            None => Ok(()),
            Some(extra) => Err(ReleaseError(format!("unexpected argument `{extra}`\n\n{USAGE}"))),
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

fn git_revision() -> Result<String, ReleaseError> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(local_stack::workspace_root())
        .output()
        .map_err(|e| ReleaseError(format!("git: {e}; pass --tag")))?;
    let revision = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && !revision.is_empty() {
        Ok(revision)
    } else {
        Err(ReleaseError("cannot read the git revision; pass --tag".into()))
    }
}

fn deploy(args: &mut Args) -> Result<u8, ReleaseError> {
    let plan = RolloutPlan::parse(&args.value("--plan")?.unwrap_or_else(|| DEFAULT_PLAN.into()))
        .map_err(|e| ReleaseError(format!("--plan: {e}")))?;
    let dry_run = args.flag("--dry-run");
    let local = args.value("--local")?;
    let token = args.value("--gateway-token")?;
    let tag = args.value("--tag")?;
    let config = args.value("--config")?;
    let min = args.parsed("--min-stage", parse_duration)?;
    let max = args.parsed("--max-stage", parse_duration)?;
    let poll = args.parsed("--poll", parse_duration)?;
    let min_requests = args.parsed("--min-requests", |text| text.parse::<u64>().ok())?;
    let min_latency_samples = args.parsed("--min-latency-samples", |text| text.parse::<u64>().ok())?;
    let error_points = args.parsed("--max-error-increase", |text| parse_percent(text).ok())?;
    let latency_ratio = args.parsed("--latency-ratio", |text| text.parse::<f64>().ok().filter(|x| *x >= 1.0))?;
    let latency_slack = args.parsed("--latency-slack-ms", |text| text.parse::<f64>().ok().filter(|x| *x >= 0.0))?;
    args.finish()?;

    let defaults = GateThresholds::default();
    let min_requests = min_requests.unwrap_or(if local.is_some() { 20 } else { defaults.min_requests });
    let thresholds = GateThresholds {
        max_error_rate_increase: error_points.map_or(defaults.max_error_rate_increase, |bps| f64::from(bps) / 10_000.0),
        max_latency_ratio: latency_ratio.unwrap_or(defaults.max_latency_ratio),
        latency_slack_ms: latency_slack.unwrap_or(defaults.latency_slack_ms),
        min_requests,
        min_baseline_requests: min_requests,
        min_latency_samples: min_latency_samples
            .unwrap_or(if local.is_some() { 50 } else { defaults.min_latency_samples })
            .max(1),
    };
    // Production stages wait for Analytics Engine's ingestion delay (about a minute).
    let (default_min, default_max, default_poll) = match (&local, dry_run) {
        (_, true) => (Duration::ZERO, Duration::ZERO, Duration::ZERO),
        (Some(_), false) => (Duration::from_secs(5), Duration::from_secs(60), Duration::from_millis(500)),
        (None, false) => (Duration::from_secs(300), Duration::from_secs(1800), Duration::from_secs(30)),
    };
    let timing = StageTiming {
        min: min.unwrap_or(default_min),
        max: max.unwrap_or(default_max).max(min.unwrap_or(default_min)),
        poll: poll.unwrap_or(default_poll),
    };
    let rollout = Rollout { plan: &plan, thresholds: &thresholds, timing: &timing };
    let mut report = |event: Event| eprintln!("release: {}", describe(&event));
    let outcome = if let Some(url) = local {
        let token = token
            .or_else(|| std::env::var("GATEWAY_TOKEN").ok())
            .ok_or_else(|| ReleaseError("--local needs --gateway-token or $GATEWAY_TOKEN".into()))?;
        let (mut traffic, mut health) = (LocalGateway::new(&url, &token), LocalGateway::new(&url, &token));
        rollout.run(&mut traffic, &mut health, &mut SystemClock, &mut report)?
    } else {
        if plan.stages.iter().any(|stage| !stage.regions.is_empty()) {
            return Err(ReleaseError(
                "region stages need the gateway (--local) or a front Worker in production (docs/releases.md); wrangler alone splits by percentage".into(),
            ));
        }
        let tag = match tag {
            Some(tag) => tag,
            None => git_revision()?,
        };
        let config_args = config.map(|path| vec!["--config".to_string(), path]).unwrap_or_default();
        if dry_run {
            let mut traffic = WranglerTraffic { runner: DryRunner::default(), config_args, tag };
            let samples = min_requests.max(thresholds.min_latency_samples);
            rollout.run(&mut traffic, &mut DryRunHealth { min_requests: samples }, &mut SystemClock, &mut report)?
        } else {
            let mut health = AnalyticsEngine::from_env()?;
            let runner = RealRunner { root: local_stack::workspace_root() };
            let mut traffic = WranglerTraffic { runner, config_args, tag };
            rollout.run(&mut traffic, &mut health, &mut SystemClock, &mut report)?
        }
    };
    println!("{}", summary(&outcome));
    Ok(match outcome {
        Outcome::Promoted { .. } => 0,
        Outcome::RolledBack { .. } => 1,
    })
}

/// Passes every gate and prints the query production would send.
struct DryRunHealth {
    min_requests: u64,
}

impl HealthSource for DryRunHealth {
    fn window(&mut self, versions: &Versions, _: Duration) -> Result<Window, ReleaseError> {
        let sql = crate::analytics::window_query(&versions.old, &versions.new, 300)
            .map_err(|e| ReleaseError(e.to_string()))?;
        println!(
            "# health gate: POST https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/analytics_engine/sql\n#   {sql}"
        );
        let healthy = crate::stats::VersionCounts {
            requests: self.min_requests,
            errors: 0,
            p95_ms: Some(1.0),
            latency_samples: self.min_requests,
        };
        Ok(Window { old: healthy.clone(), new: healthy, split: None })
    }
}

fn describe(event: &Event) -> String {
    let counts = |window: &Window| {
        format!(
            "old {} req {} err p95 {:?} | new {} req {} err p95 {:?}",
            window.old.requests,
            window.old.errors,
            window.old.p95_ms,
            window.new.requests,
            window.new.errors,
            window.new.p95_ms
        )
    };
    match event {
        Event::Prepared(versions) => format!("old version {}, new version {}", versions.old, versions.new),
        Event::StageApplied { stage, split } => format!("stage {stage}: new version at {split}"),
        Event::Reapplied { stage } => format!("stage {stage}: split was lost (gateway restarted?); applied again"),
        Event::Polled { stage, window, verdict } => format!("stage {stage}: {} → {verdict}", counts(window)),
        Event::StagePassed { stage } => format!("stage {stage}: healthy"),
        Event::RolledBack { stage, reason } => format!("stage {stage}: ROLLED BACK: {reason}"),
        Event::Promoted => "promoted: the new version serves 100 %".into(),
    }
}

/// One JSON line on stdout, for scripts and tests.
pub fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Promoted { versions } => {
            json!({"outcome": "promoted", "old": versions.old, "new": versions.new}).to_string()
        }
        Outcome::RolledBack { versions, stage, split, reason, window } => json!({
            "outcome": "rolled_back",
            "old": versions.old,
            "new": versions.new,
            "stage": stage,
            "split": split,
            "reason": reason,
            "window": {"old": window.old, "new": window.new},
        })
        .to_string(),
    }
}

fn migrations_check(args: &mut Args) -> Result<u8, ReleaseError> {
    let root = local_stack::workspace_root();
    let dir = args.value("--dir")?.map(PathBuf::from).unwrap_or_else(|| root.join("migrations"));
    let since = args.value("--since")?;
    args.finish()?;
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

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn args_are_consumed_and_leftovers_refused() {
        let mut args = Args(vec!["--plan".into(), "1,100".into(), "--dry-run".into(), "--oops".into()]);
        assert_eq!(args.value("--plan").unwrap().as_deref(), Some("1,100"));
        assert!(args.flag("--dry-run"));
        assert!(args.finish().is_err());
        assert!(Args(vec!["--plan".into()]).value("--plan").is_err());
    }
}
