//! Production traffic control through wrangler's gradual deployments: `versions upload` with the
//! git revision as tag, then `versions deploy <new>@p% <old>@(100-p)%` per stage; for regional
//! stages also the front Worker (`front/`), deployed with the canary rule in its vars.
//!
//! Commands go through `CommandRunner`, so `--dry-run` prints them instead and tests check them.
//!
//! Order is what keeps users safe. Raising a share: the app's deployment first (the canary must
//! be in the deployment before an override can reach it), then the front Worker's rule. Promotion
//! and rollback: the app's deployment first (one version at 100 %: an override naming the other
//! one is ignored by Cloudflare from then on), then the rule is cleared.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgestack_core::region::{CONTINENT_REGIONS, RegionName};
use serde_json::Value;

use super::rollout::{ReleaseError, Traffic, Versions};
use crate::front::{APP_BINDING, Canary, rule_vars};
use crate::plan::{FULL_BPS, RolloutPlan, Split, format_percent};
use crate::version_tag::{PREVIOUS_REVISION_ENV, TAG_ENV, check_tag};

/// What one wrangler command left behind.
#[derive(Debug, Default)]
pub struct WranglerOutput {
    /// What it printed on stdout (`deployments status --json` prints its JSON there).
    pub stdout: String,
    /// The entries it wrote to its output file (`WRANGLER_OUTPUT_FILE_PATH`: one JSON object a
    /// line, wrangler's machine-readable record of what it did, e.g. `{"type":
    /// "version-upload", "version_id": …}`), which unlike its human-readable lines is meant
    /// to be read by programs.
    pub entries: Vec<Value>,
}

/// Runs one wrangler command.
pub trait CommandRunner {
    /// `wrangler <args>` with `env` added to its environment.
    fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError>;
}

/// Runs `node node_modules/wrangler/bin/wrangler.js …` from the workspace root (Node ≥ 22 as
/// local-stack finds it), so the release uses the locked wrangler.
pub struct RealRunner {
    pub root: PathBuf,
}

impl CommandRunner for RealRunner {
    fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError> {
        eprintln!("release: {}", shown(env, args, "wrangler"));
        static COMMANDS: AtomicUsize = AtomicUsize::new(0);
        let output_file = std::env::temp_dir().join(format!(
            "edgestack-wrangler-{}-{}.ndjson",
            std::process::id(),
            COMMANDS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&output_file);
        let node = local_stack::node::find_node(&self.root).map_err(|e| ReleaseError(e.to_string()))?;
        let mut wrangler = Command::new(&node);
        wrangler
            .current_dir(&self.root)
            .arg(self.root.join("node_modules/wrangler/bin/wrangler.js"))
            .args(args)
            .env("PATH", local_stack::node::path_with_node_first(&node))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_OUTPUT_FILE_PATH", &output_file);
        // `versions upload` and `deploy` run the `[build] command` (cargo); in a group that ends with us.
        local_stack::cargo::without_outer_cargo_env(&mut wrangler);
        wrangler.envs(env.iter().map(|(name, value)| (name, value)));
        let output = local_stack::process::output(&mut wrangler).map_err(ReleaseError);
        let written = std::fs::read_to_string(&output_file).unwrap_or_default();
        let _ = std::fs::remove_file(&output_file);
        let output = output?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            // A line that is not JSON is no entry (wrangler writes each whole, one a line).
            let entries = written.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
            Ok(WranglerOutput { stdout, entries })
        } else {
            Err(ReleaseError(format!(
                "wrangler {} failed ({}):\n{stdout}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

/// Prints each command and answers with placeholders, so a dry run walks the whole plan.
#[derive(Default)]
pub struct DryRunner {
    pub printed: Vec<String>,
}

pub const DRY_RUN_OLD: &str = "00000000-0000-4000-8000-00000000000a";
pub const DRY_RUN_NEW: &str = "00000000-0000-4000-8000-00000000000b";
/// The tag a dry run's replaced version has (no revision of this checkout: its files are not kept).
pub const DRY_RUN_OLD_TAG: &str = "0000000dead0";

impl CommandRunner for DryRunner {
    fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError> {
        let line = shown(env, args, "npx wrangler");
        println!("{line}");
        self.printed.push(line);
        Ok(match args.first().map(String::as_str) {
            Some("deployments") => WranglerOutput {
                stdout: format!(r#"{{"versions":[{{"version_id":"{DRY_RUN_OLD}","percentage":100}}]}}"#),
                entries: Vec::new(),
            },
            Some("versions") if args.get(1).map(String::as_str) == Some("view") => WranglerOutput {
                stdout: format!(r#"{{"id":"{DRY_RUN_OLD}","annotations":{{"workers/tag":"{DRY_RUN_OLD_TAG}"}}}}"#),
                entries: Vec::new(),
            },
            Some("versions") if args.get(1).map(String::as_str) == Some("upload") => WranglerOutput {
                stdout: String::new(),
                entries: vec![serde_json::json!({"type": "version-upload", "version_id": DRY_RUN_NEW})],
            },
            _ => WranglerOutput::default(),
        })
    }
}

/// `NAME=value … <program> args…`, each word quoted for a POSIX shell where needed.
fn shown(env: &[(String, String)], args: &[String], program: &str) -> String {
    let env = env.iter().map(|(name, value)| format!("{name}={}", shell_quote(value)));
    let args = args.iter().map(|arg| shell_quote(arg));
    env.chain(std::iter::once(program.to_string())).chain(args).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    if arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./@%:=,".contains(&b)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A git object name, full or abbreviated: 7 to 40 hexadecimal digits.
fn is_object_name(tag: &str) -> bool {
    (7..=40).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the workspace's repository holds commit `revision`.
pub fn git_knows_revision(revision: &str) -> bool {
    local_stack::previous::has_commit(&local_stack::workspace_root(), revision)
}

/// The new version id `wrangler versions upload` recorded in its output file (the
/// `version-upload` entry's `version_id`; null on a `--dry-run`, which uploads nothing).
pub fn parse_uploaded_version(output: &WranglerOutput) -> Option<String> {
    let upload = output.entries.iter().find(|entry| entry["type"] == "version-upload")?;
    upload["version_id"].as_str().filter(|id| !id.trim().is_empty()).map(str::to_string)
}

/// The version serving 100 % from `wrangler deployments status --json`; `Err` when a split is
/// already in progress (finish or roll back that one first).
pub fn parse_current_version(json: &str) -> Result<String, ReleaseError> {
    let status: Value =
        serde_json::from_str(json).map_err(|e| ReleaseError(format!("deployments status is not JSON: {e}")))?;
    let versions =
        status["versions"].as_array().ok_or_else(|| ReleaseError("deployments status: no versions".into()))?;
    match versions.as_slice() {
        [only] => only["version_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ReleaseError("deployments status: no version_id".into())),
        [] => Err(ReleaseError(
            "no version of this Worker is deployed yet: deploy it once (`wrangler deploy`) before a gradual release"
                .into(),
        )),
        _ => Err(ReleaseError(format!(
            "the current deployment already splits traffic between {} versions; finish or roll back that rollout first",
            versions.len()
        ))),
    }
}

/// The regions a stage gives the new version ahead of everyone else. In production the front
/// Worker pins a whole region to the canary, so such a region must be at 100 %: a share between
/// the default and 100 % would need per-user stickiness the front Worker does not give.
pub fn canary_regions(split: &Split) -> Result<BTreeSet<RegionName>, ReleaseError> {
    let ahead = split.regions.iter().filter(|(_, bps)| **bps > split.default_bps);
    ahead
        .map(|(region, bps)| {
            if *bps < FULL_BPS {
                return Err(ReleaseError(format!(
                    "stage {}: in production a region goes to the new version all at once (the front Worker pins the whole region); use `{region}:100`, not `{region}:{}`",
                    split.describe(),
                    format_percent(*bps).trim_end_matches('%')
                )));
            }
            // The front Worker assigns requests to regions by continent: another name pins
            // nobody, and the stage would wait for canary traffic until it rolls back.
            RegionName::parse(region).filter(|name| CONTINENT_REGIONS.contains(&name.as_str())).ok_or_else(|| {
                ReleaseError(format!(
                    "stage {}: `{region}` is not a region the front Worker assigns requests to ({})",
                    split.describe(),
                    CONTINENT_REGIONS.join(", ")
                ))
            })
        })
        .collect()
}

/// Refuses, before anything is uploaded, a plan production cannot carry out.
pub fn check_production_plan(plan: &RolloutPlan, front: Option<&FrontWorker>) -> Result<(), ReleaseError> {
    for split in &plan.stages {
        if !canary_regions(split)?.is_empty() && front.is_none() {
            return Err(ReleaseError(
                "region stages need the front Worker (--front-config) or the local gateway (--local); wrangler alone splits by percentage".into(),
            ));
        }
    }
    Ok(())
}

/// The front Worker a regional release drives (`front/wrangler.toml`, docs/releases.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontWorker {
    /// Its wrangler config, as passed to `--config`.
    pub config: String,
    /// The app Worker's name: what its override names, and what its APP binding must reach.
    pub app_worker: String,
}

impl FrontWorker {
    /// Reads both configs and refuses a front Worker whose APP binding reaches another Worker
    /// than the one being released (its override would name a Worker it never calls).
    pub fn from_configs(root: &Path, front_config: &str, app_config: &str) -> Result<Self, ReleaseError> {
        let read = |path: &str| {
            let full = root.join(path);
            std::fs::read_to_string(&full).map_err(|e| ReleaseError(format!("{}: {e}", full.display())))
        };
        let app_worker = worker_name(&read(app_config)?).map_err(|e| ReleaseError(format!("{app_config}: {e}")))?;
        let bound = bound_service(&read(front_config)?, APP_BINDING)
            .map_err(|e| ReleaseError(format!("{front_config}: {e}")))?;
        if bound != app_worker {
            return Err(ReleaseError(format!(
                "{front_config}: its {APP_BINDING} binding reaches `{bound}`, but {app_config} deploys `{app_worker}`; the canary override would never reach it"
            )));
        }
        Ok(Self { config: front_config.to_string(), app_worker })
    }
}

/// The top-level `name` of a wrangler config.
pub fn worker_name(config: &str) -> Result<String, String> {
    let table: toml::Table = toml::from_str(config).map_err(|e| e.to_string())?;
    table.get("name").and_then(toml::Value::as_str).map(str::to_string).ok_or_else(|| "no `name`".to_string())
}

/// The Worker a `[[services]]` binding named `binding` reaches.
pub fn bound_service(config: &str, binding: &str) -> Result<String, String> {
    let table: toml::Table = toml::from_str(config).map_err(|e| e.to_string())?;
    let services = table.get("services").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    services
        .iter()
        .find(|service| service.get("binding").and_then(toml::Value::as_str) == Some(binding))
        .and_then(|service| service.get("service").and_then(toml::Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| format!("no [[services]] binding `{binding}`"))
}

/// What this run has put in force so far: `None` until it first wrote each.
#[derive(Debug, Default)]
struct Applied {
    /// The new version's share in the app's deployment.
    share: Option<u16>,
    /// The front Worker's rule (`Some(None)`: cleared).
    rule: Option<Option<Canary>>,
}

pub struct WranglerTraffic<R: CommandRunner> {
    pub runner: R,
    /// Extra arguments for every app command, e.g. `--config path`.
    pub config_args: Vec<String>,
    /// The version tag (the git revision) and deployment message prefix.
    pub tag: String,
    /// The front Worker, when the plan has regional stages.
    pub front: Option<FrontWorker>,
    /// Whether this checkout can read a git revision (the replaced version's tag), whose
    /// fingerprinted files the upload then keeps: [`git_knows_revision`] unless a test says.
    pub knows_revision: fn(&str) -> bool,
    applied: Applied,
}

impl<R: CommandRunner> WranglerTraffic<R> {
    pub fn new(runner: R, config_args: Vec<String>, tag: String, front: Option<FrontWorker>) -> Self {
        Self { runner, config_args, tag, front, knows_revision: git_knows_revision, applied: Applied::default() }
    }

    /// The revision whose static files the upload keeps beside its own: the replaced version's
    /// tag (`wrangler versions view <old> --json`, `annotations["workers/tag"]`; a release
    /// tags each upload with its git revision) when git can read it here. Otherwise none, said
    /// on stderr: the release goes on, and a page loaded from the old version just before the
    /// promotion may miss a script (docs/releases.md, "Static asset skew").
    fn replaced_revision(&mut self, old: &str) -> Option<String> {
        let not_kept = |why: String| eprintln!("release: {why}; its static files are not kept in this upload");
        let viewed = match self.run(&[], &["versions", "view", old, "--json"]) {
            Ok(viewed) => viewed,
            Err(error) => {
                not_kept(format!("the replaced version {old} could not be read ({error})"));
                return None;
            }
        };
        let tag = serde_json::from_str::<Value>(&viewed.stdout)
            .ok()
            .and_then(|version| version["annotations"]["workers/tag"].as_str().map(str::to_string))
            .filter(|tag| check_tag(tag).is_ok());
        match tag {
            // Only an object name: a branch or tag name (`--tag main`) names another commit by
            // now, and a `-dirty` tag names no commit whose files were the ones uploaded.
            Some(tag) if is_object_name(&tag) && (self.knows_revision)(&tag) => Some(tag),
            Some(tag) => {
                not_kept(format!("the replaced version {old} has tag `{tag}`, which is no git revision here"));
                None
            }
            None => {
                not_kept(format!("the replaced version {old} has no tag"));
                None
            }
        }
    }

    fn run(&mut self, env: &[(String, String)], args: &[&str]) -> Result<WranglerOutput, ReleaseError> {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.extend(self.config_args.iter().cloned());
        self.runner.wrangler(env, &all)
    }

    /// `versions deploy`: the new version at `share`, the old one at the rest.
    fn deploy_share(&mut self, versions: &Versions, share: u16, message: &str) -> Result<(), ReleaseError> {
        let new_spec = format!("{}@{}", versions.new, format_percent(share));
        let old_spec = format!("{}@{}", versions.old, format_percent(FULL_BPS - share));
        let specs: Vec<&str> = if share >= FULL_BPS { vec![&new_spec] } else { vec![&new_spec, &old_spec] };
        let mut args = vec!["versions", "deploy"];
        args.extend(specs);
        args.extend(["--message", message, "-y"]);
        self.run(&[], &args)?;
        self.applied.share = Some(share);
        Ok(())
    }

    /// `deploy` of the front Worker with `canary` as its rule (`None` clears it). Its vars are
    /// replaced whole (no `--keep-vars`): the config's resting values plus these.
    fn deploy_rule(&mut self, canary: Option<Canary>, message: &str) -> Result<(), ReleaseError> {
        let Some(front) = &self.front else {
            return Ok(());
        };
        let mut args = vec!["deploy".to_string(), "--config".to_string(), front.config.clone()];
        for (name, value) in rule_vars(&front.app_worker, canary.as_ref()) {
            args.extend(["--var".to_string(), format!("{name}:{value}")]);
        }
        args.extend(["--message".to_string(), message.to_string()]);
        self.runner.wrangler(&[], &args)?;
        self.applied.rule = Some(canary);
        Ok(())
    }
}

impl<R: CommandRunner> Traffic for WranglerTraffic<R> {
    fn prepare(&mut self) -> Result<Versions, ReleaseError> {
        let old = parse_current_version(&self.run(&[], &["deployments", "status", "--json"])?.stdout)?;
        // The gate can only ask Analytics Engine about UUIDs: an id of another shape stops the
        // release here, before an upload or a stage, not at the first gate with a canary live.
        let version_id = |id: &str, source: &str| {
            crate::analytics::checked_id(id).map(|_| ()).map_err(|error| ReleaseError(format!("{source}: {error}")))
        };
        version_id(&old, "wrangler deployments status")?;
        let message = format!("release {}", self.tag);
        let tag = self.tag.clone();
        // The build names the tag on static responses too (`_headers`, release::version_tag),
        // and keeps the replaced version's fingerprinted files.
        let mut env = vec![(TAG_ENV.to_string(), tag.clone())];
        if let Some(revision) = self.replaced_revision(&old) {
            env.push((PREVIOUS_REVISION_ENV.to_string(), revision));
        }
        let uploaded = self.run(&env, &["versions", "upload", "--tag", &tag, "--message", &message])?;
        let new = parse_uploaded_version(&uploaded).ok_or_else(|| {
            ReleaseError(format!(
                "`wrangler versions upload` recorded no version id in its output file (WRANGLER_OUTPUT_FILE_PATH): {:?}\n{}",
                uploaded.entries, uploaded.stdout
            ))
        })?;
        version_id(&new, "wrangler versions upload")?;
        Ok(Versions { old, new })
    }

    fn apply(&mut self, versions: &Versions, split: &Split) -> Result<(), ReleaseError> {
        let regions = canary_regions(split)?;
        if !regions.is_empty() && self.front.is_none() {
            return Err(ReleaseError(
                "region stages need the front Worker that sets the version override by request.cf (docs/releases.md); wrangler alone splits by percentage only".into(),
            ));
        }
        let share = split.default_bps.min(FULL_BPS);
        let message = format!("release {}: {}", self.tag, split.describe());
        // First the deployment: a regional stage at 0 % still deploys the new version, because an
        // override only reaches a version in the current deployment.
        if self.applied.share != Some(share) {
            self.deploy_share(versions, share, &message)?;
        }
        let rule = (!regions.is_empty() && share < FULL_BPS).then(|| Canary { version: versions.new.clone(), regions });
        let rule_changes = self.applied.rule.as_ref() != Some(&rule);
        // Plans without regional stages never touch the front Worker.
        if self.front.is_some() && rule_changes {
            let message = match &rule {
                Some(_) => message,
                None => format!("release {}: canary rule cleared, the new version serves 100 %", self.tag),
            };
            self.deploy_rule(rule, &message)?;
        }
        Ok(())
    }

    fn rollback(&mut self, versions: &Versions) -> Result<(), ReleaseError> {
        let spec = format!("{}@100%", versions.old);
        let message = format!("rollback of {}", self.tag);
        // The old version alone in the deployment: from here the front Worker's override names a
        // version outside it, which Cloudflare ignores, so everyone is back on the old version.
        self.run(&[], &["versions", "deploy", &spec, "--message", &message, "-y"]).map_err(|error| {
            let config = self.config_args.iter().map(|arg| format!(" {arg}")).collect::<String>();
            let front = self.front.as_ref().map_or_else(String::new, |front| {
                format!(", then clear the front Worker's rule with `npx wrangler deploy --config {}`", front.config)
            });
            ReleaseError(format!(
                "{error}\nThe new version {} may still serve its share beside the old version {}: restore the old one with `npx wrangler versions deploy {spec} -y{config}`{front}",
                versions.new, versions.old
            ))
        })?;
        self.applied.share = Some(0);
        if self.front.is_some() && self.applied.rule != Some(None) {
            let message = format!("rollback of {}: canary rule cleared", self.tag);
            self.deploy_rule(None, &message).map_err(|error| {
                let config = self.front.as_ref().map_or("front/wrangler.toml", |front| front.config.as_str());
                ReleaseError(format!(
                    "the old version serves 100 %, but the front Worker's canary rule was not cleared (it is ignored while that version is not deployed); clear it with `npx wrangler deploy --config {config}`: {error}"
                ))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dry(front: Option<FrontWorker>) -> WranglerTraffic<DryRunner> {
        WranglerTraffic::new(DryRunner::default(), Vec::new(), "abc123".into(), front)
    }

    fn front() -> FrontWorker {
        FrontWorker { config: "front/wrangler.toml".into(), app_worker: "edgestack".into() }
    }

    /// Runs `plan` through `traffic` (prepare, every stage; rollback after `fail_at` if given).
    fn walk(traffic: &mut WranglerTraffic<DryRunner>, plan: &str, fail_at: Option<usize>) -> Vec<String> {
        let versions = traffic.prepare().unwrap();
        for (index, split) in RolloutPlan::parse(plan).unwrap().stages.iter().enumerate() {
            traffic.apply(&versions, split).unwrap();
            if fail_at == Some(index + 1) {
                traffic.rollback(&versions).unwrap();
                break;
            }
        }
        traffic.runner.printed.clone()
    }

    #[test]
    fn the_version_id_is_read_from_the_upload_entry_of_the_output_file() {
        let entries = |lines: &[&str]| WranglerOutput {
            stdout: "Worker Version ID: 11111111-0000-4000-8000-000000000000\n".to_string(),
            entries: lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect(),
        };
        let uploaded = entries(&[
            r#"{"type":"wrangler-session","version":1,"wrangler_version":"4.164.0"}"#,
            r#"{"type":"version-upload","version":1,"worker_name":"edgestack","worker_tag":"t","version_id":"5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01"}"#,
        ]);
        assert_eq!(parse_uploaded_version(&uploaded).as_deref(), Some("5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01"));
        // The human-readable line is not read: its wording is wrangler's to change.
        assert_eq!(parse_uploaded_version(&entries(&[])), None);
        assert_eq!(parse_uploaded_version(&entries(&[r#"{"type":"version-upload","version_id":null}"#])), None);
        assert_eq!(parse_uploaded_version(&entries(&[r#"{"type":"deploy","version_id":"x"}"#])), None);
    }

    /// The locked wrangler, run as a release runs it, writes the entry the release reads: a
    /// `--dry-run` records the upload it would make (its `version_id` null: nothing uploaded).
    #[test]
    fn the_locked_wrangler_records_a_version_upload_in_its_output_file() {
        let mut runner = RealRunner { root: local_stack::workspace_root() };
        let args = ["versions", "upload", "--dry-run", "--tag", "output-file-test", "--message", "test"];
        let output = runner.wrangler(&[], &args.map(str::to_string)).unwrap();

        let upload = output.entries.iter().find(|entry| entry["type"] == "version-upload");
        let upload = upload.unwrap_or_else(|| panic!("no version-upload entry: {:?}", output.entries));
        assert_eq!(upload["worker_name"], "edgestack", "{upload}");
        assert!(upload["version_id"].is_null(), "a dry run uploads nothing: {upload}");
        assert_eq!(parse_uploaded_version(&output), None);
    }

    #[test]
    fn current_version_must_be_alone() {
        let single = r#"{"id":"d","versions":[{"version_id":"aaa","percentage":100}]}"#;
        assert_eq!(parse_current_version(single).unwrap(), "aaa");
        let split = r#"{"versions":[{"version_id":"a","percentage":90},{"version_id":"b","percentage":10}]}"#;
        assert!(parse_current_version(split).is_err());
        assert!(parse_current_version("not json").is_err());
        let none = parse_current_version(r#"{"versions":[]}"#).unwrap_err().to_string();
        assert!(none.contains("no version of this Worker is deployed yet"), "{none}");
    }

    #[test]
    fn stages_become_versions_deploy_commands() {
        let printed = walk(&mut dry(None), "1,10,100", Some(3));
        assert_eq!(
            printed,
            [
                "npx wrangler deployments status --json".to_string(),
                format!("npx wrangler versions view {DRY_RUN_OLD} --json"),
                "EDGESTACK_VERSION_TAG=abc123 npx wrangler versions upload --tag abc123 --message 'release abc123'"
                    .to_string(),
                format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@1% {DRY_RUN_OLD}@99% --message 'release abc123: 1%' -y"
                ),
                format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@10% {DRY_RUN_OLD}@90% --message 'release abc123: 10%' -y"
                ),
                format!("npx wrangler versions deploy {DRY_RUN_NEW}@100% --message 'release abc123: 100%' -y"),
                format!("npx wrangler versions deploy {DRY_RUN_OLD}@100% --message 'rollback of abc123' -y"),
            ]
        );
    }

    #[test]
    fn a_regional_release_deploys_at_zero_then_points_the_front_worker_then_widens_and_cleans_up() {
        let printed = walk(&mut dry(Some(front())), "eu:100,*:10,*:100", None);
        let rule = format!(
            "npx wrangler deploy --config front/wrangler.toml --var FRONT_APP_WORKER:edgestack --var FRONT_CANARY_VERSION:{DRY_RUN_NEW} --var FRONT_CANARY_REGIONS:eu --message 'release abc123: eu:100%,*:0%'"
        );
        let cleared = "npx wrangler deploy --config front/wrangler.toml --var FRONT_APP_WORKER:edgestack --var FRONT_CANARY_VERSION: --var FRONT_CANARY_REGIONS: --message 'release abc123: canary rule cleared, the new version serves 100 %'";
        assert_eq!(
            printed[3..],
            [
                format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@0% {DRY_RUN_OLD}@100% --message 'release abc123: eu:100%,*:0%' -y"
                ),
                rule,
                // The rule is unchanged at *:10: only the deployment moves.
                format!(
                    "npx wrangler versions deploy {DRY_RUN_NEW}@10% {DRY_RUN_OLD}@90% --message 'release abc123: eu:100%,*:10%' -y"
                ),
                format!("npx wrangler versions deploy {DRY_RUN_NEW}@100% --message 'release abc123: 100%' -y"),
                cleared.to_string(),
            ]
        );
    }

    #[test]
    fn a_failed_regional_stage_restores_the_old_version_first_then_clears_the_rule() {
        let printed = walk(&mut dry(Some(front())), "eu:100,*:10,*:100", Some(1));
        assert_eq!(printed.len(), 7, "{printed:#?}");
        assert_eq!(
            printed[5],
            format!("npx wrangler versions deploy {DRY_RUN_OLD}@100% --message 'rollback of abc123' -y")
        );
        assert_eq!(
            printed[6],
            "npx wrangler deploy --config front/wrangler.toml --var FRONT_APP_WORKER:edgestack --var FRONT_CANARY_VERSION: --var FRONT_CANARY_REGIONS: --message 'rollback of abc123: canary rule cleared'"
        );
    }

    /// A rollback whose `versions deploy` fails says what may still be live and the commands that
    /// restore the old version (the release exits 2 without its summary line).
    #[test]
    fn a_failed_rollback_names_the_commands_that_restore_the_old_version() {
        struct DeployOldFails(DryRunner);
        impl CommandRunner for DeployOldFails {
            fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError> {
                // The rollback's deploy: the old version alone (a stage at 0 % names both).
                let alone = !args.iter().any(|arg| arg.starts_with(DRY_RUN_NEW));
                if alone && args.iter().any(|arg| *arg == format!("{DRY_RUN_OLD}@100%")) {
                    return Err(ReleaseError("wrangler versions deploy failed (exit status: 1)".into()));
                }
                self.0.wrangler(env, args)
            }
        }
        let config = vec!["--config".to_string(), "services/entry/wrangler.toml".to_string()];
        let mut traffic =
            WranglerTraffic::new(DeployOldFails(DryRunner::default()), config, "abc123".into(), Some(front()));
        let versions = traffic.prepare().unwrap();
        traffic.apply(&versions, &RolloutPlan::parse("eu:100,100").unwrap().stages[0]).unwrap();
        let error = traffic.rollback(&versions).unwrap_err();
        for part in [
            "exit status: 1",
            &format!("The new version {DRY_RUN_NEW} may still serve its share beside the old version {DRY_RUN_OLD}"),
            &format!("`npx wrangler versions deploy {DRY_RUN_OLD}@100% -y --config services/entry/wrangler.toml`"),
            "`npx wrangler deploy --config front/wrangler.toml`",
        ] {
            assert!(error.0.contains(part), "`{part}` missing: {error}");
        }
    }

    /// Reading the replaced version's tag is a convenience of the upload: when wrangler cannot
    /// answer it, the release goes on without the old files rather than stopping.
    #[test]
    fn a_failed_version_view_leaves_the_old_files_out_and_the_release_goes_on() {
        struct ViewFails(DryRunner);
        impl CommandRunner for ViewFails {
            fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError> {
                if args.get(1).map(String::as_str) == Some("view") {
                    return Err(ReleaseError("wrangler versions view failed (HTTP 500)".into()));
                }
                self.0.wrangler(env, args)
            }
        }
        let mut traffic = WranglerTraffic::new(ViewFails(DryRunner::default()), Vec::new(), "abc123".into(), None);
        traffic.knows_revision = |_| true;
        assert_eq!(traffic.prepare().unwrap(), Versions { old: DRY_RUN_OLD.into(), new: DRY_RUN_NEW.into() });
        assert_eq!(
            traffic.runner.0.printed[1],
            "EDGESTACK_VERSION_TAG=abc123 npx wrangler versions upload --tag abc123 --message 'release abc123'"
        );
    }

    /// Version ids are UUIDs, and the health gate's query can only name such ids
    /// (`analytics::window_query`). One that is not — wrangler's output read wrongly, or changed —
    /// is refused before anything is uploaded or deployed, not at the first gate after stage 1.
    #[test]
    fn a_version_id_that_is_not_a_uuid_is_refused_before_any_stage() {
        struct Answers {
            runner: DryRunner,
            old: &'static str,
            new: &'static str,
        }
        impl CommandRunner for Answers {
            fn wrangler(&mut self, env: &[(String, String)], args: &[String]) -> Result<WranglerOutput, ReleaseError> {
                let mut output = self.runner.wrangler(env, args)?;
                output.stdout = output.stdout.replace(DRY_RUN_OLD, self.old);
                for entry in &mut output.entries {
                    entry["version_id"] = self.new.into();
                }
                Ok(output)
            }
        }
        for (old, new, refused) in [
            ("4d5e", DRY_RUN_NEW, "4d5e"),
            ("'); DROP", DRY_RUN_NEW, "'); DROP"),
            (DRY_RUN_OLD, "Worker Version ID: 5d3e8a2c", "Worker Version ID: 5d3e8a2c"),
        ] {
            let runner = Answers { runner: DryRunner::default(), old, new };
            let mut traffic = WranglerTraffic::new(runner, Vec::new(), "abc123".into(), None);
            let error = traffic.prepare().unwrap_err().to_string();
            assert!(error.contains(&format!("`{refused}` is not a version id")), "{error}");
            let printed = &traffic.runner.runner.printed;
            assert!(!printed.iter().any(|line| line.contains("versions deploy")), "{printed:?}");
            if old != DRY_RUN_OLD {
                assert!(!printed.iter().any(|line| line.contains("versions upload")), "nothing uploaded: {printed:?}");
            }
        }
    }

    /// The upload keeps the replaced version's static files when its tag is a revision git can
    /// read here, and goes on without them otherwise (docs/releases.md, "Static asset skew").
    #[test]
    fn the_upload_keeps_the_replaced_versions_files_when_its_tag_is_a_known_revision() {
        let upload = |knows_revision: fn(&str) -> bool| {
            let mut traffic = dry(None);
            traffic.knows_revision = knows_revision;
            assert_eq!(traffic.prepare().unwrap(), Versions { old: DRY_RUN_OLD.into(), new: DRY_RUN_NEW.into() });
            traffic.runner.printed[2].clone()
        };
        assert_eq!(
            upload(|revision| revision == DRY_RUN_OLD_TAG),
            format!(
                "EDGESTACK_VERSION_TAG=abc123 EDGESTACK_PREVIOUS_ASSETS_REVISION={DRY_RUN_OLD_TAG} npx wrangler versions upload --tag abc123 --message 'release abc123'"
            )
        );
        assert_eq!(
            upload(|_| false),
            "EDGESTACK_VERSION_TAG=abc123 npx wrangler versions upload --tag abc123 --message 'release abc123'"
        );
        assert!(git_knows_revision("HEAD") && !git_knows_revision(DRY_RUN_OLD_TAG));
        // Names git would resolve to another commit by now, or to none that was uploaded.
        for tag in ["main", "v1.4.0", "0000000dead0-dirty", "abc12", "HEAD"] {
            assert!(!is_object_name(tag), "{tag}");
        }
        assert!(is_object_name(DRY_RUN_OLD_TAG) && is_object_name("5d3e8a2c0bd14c9a9d8c1f5e3a7b9c0112345678"));
    }

    #[test]
    fn region_stages_are_refused_without_the_front_worker_or_below_100_percent() {
        let versions = Versions { old: "o".into(), new: "n".into() };
        let eu = |bps| Split { default_bps: 0, regions: [("eu".to_string(), bps)].into() };
        assert!(dry(None).apply(&versions, &eu(10_000)).is_err());
        assert!(dry(Some(front())).apply(&versions, &eu(5_000)).is_err());
        let plan = |text| RolloutPlan::parse(text).unwrap();
        assert!(check_production_plan(&plan("eu:100,*:10,100"), None).is_err());
        assert!(check_production_plan(&plan("eu:100,*:10,100"), Some(&front())).is_ok());
        let error = check_production_plan(&plan("eu:50,100"), Some(&front())).unwrap_err();
        assert!(error.0.contains("use `eu:100`, not `eu:50`"), "{error}");
        assert!(check_production_plan(&plan("1,10,100"), None).is_ok());
        // A region no request is assigned to would pin nobody and only time out.
        let error = check_production_plan(&plan("europe:100,100"), Some(&front())).unwrap_err();
        assert!(
            error.0.contains("`europe` is not a region the front Worker assigns requests to (na, eu, ap)"),
            "{error}"
        );
        // A region at or below the default is no canary region (the plan drops it anyway).
        assert!(
            canary_regions(&Split { default_bps: 1_000, regions: [("eu".into(), 1_000)].into() }).unwrap().is_empty()
        );
    }

    #[test]
    fn the_committed_front_worker_reaches_the_committed_app_worker() {
        let root = local_stack::workspace_root();
        let front = FrontWorker::from_configs(&root, "front/wrangler.toml", "wrangler.toml").unwrap();
        assert_eq!(front.app_worker, "edgestack");
        // Level 5: the entry Worker is another name; the same front config is refused for it.
        let error =
            FrontWorker::from_configs(&root, "front/wrangler.toml", "services/entry/wrangler.toml").unwrap_err();
        assert!(
            error.0.contains("reaches `edgestack`, but services/entry/wrangler.toml deploys `edgestack-entry`"),
            "{error}"
        );
    }

    #[test]
    fn the_committed_front_config_rests_without_a_rule() {
        let text = std::fs::read_to_string(local_stack::workspace_root().join("front/wrangler.toml")).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let vars = table["vars"].as_table().unwrap();
        let lookup = |name: &str| vars.get(name).and_then(toml::Value::as_str).map(str::to_string);
        let config = crate::front::FrontConfig::from_lookup(lookup).unwrap();
        assert_eq!((config.app_worker.as_str(), config.canary, config.development), ("edgestack", None, false));
    }
}
