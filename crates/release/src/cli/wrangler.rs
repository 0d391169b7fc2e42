//! Production traffic control through wrangler's gradual deployments: `versions upload` with the
//! git revision as tag, then `versions deploy <new>@p% <old>@(100-p)%` per stage.
//!
//! Commands go through `CommandRunner`, so `--dry-run` prints them instead and tests check them.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::rollout::{ReleaseError, Traffic, Versions};
use crate::plan::{FULL_BPS, Split, format_percent};

/// Runs one wrangler command and returns what it printed on stdout.
pub trait CommandRunner {
    fn wrangler(&mut self, args: &[String]) -> Result<String, ReleaseError>;
}

/// Runs `node node_modules/wrangler/bin/wrangler.js …` from the workspace root (Node ≥ 22 as
/// local-stack finds it), so the release uses the locked wrangler.
pub struct RealRunner {
    pub root: PathBuf,
}

impl CommandRunner for RealRunner {
    fn wrangler(&mut self, args: &[String]) -> Result<String, ReleaseError> {
        eprintln!("release: wrangler {}", args.join(" "));
        let node = local_stack::node::find_node(&self.root).map_err(|e| ReleaseError(e.to_string()))?;
        let mut wrangler = Command::new(&node);
        wrangler
            .current_dir(&self.root)
            .arg(self.root.join("node_modules/wrangler/bin/wrangler.js"))
            .args(args)
            .env("PATH", local_stack::node::path_with_node_first(&node))
            .env("WRANGLER_SEND_METRICS", "false");
        // `versions upload` runs the `[build] command` (cargo); in a group that ends with us.
        local_stack::cargo::without_outer_cargo_env(&mut wrangler);
        let output = local_stack::process::output(&mut wrangler).map_err(ReleaseError)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
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

impl CommandRunner for DryRunner {
    fn wrangler(&mut self, args: &[String]) -> Result<String, ReleaseError> {
        let line = format!("npx wrangler {}", args.iter().map(|arg| shell_quote(arg)).collect::<Vec<_>>().join(" "));
        println!("{line}");
        self.printed.push(line);
        Ok(match args.first().map(String::as_str) {
            Some("deployments") => {
                format!(r#"{{"versions":[{{"version_id":"{DRY_RUN_OLD}","percentage":100}}]}}"#)
            }
            Some("versions") if args.get(1).map(String::as_str) == Some("upload") => {
                format!("Worker Version ID: {DRY_RUN_NEW}\n")
            }
            _ => String::new(),
        })
    }
}

fn shell_quote(arg: &str) -> String {
    if arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./@%:=".contains(&b)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The new version id from `wrangler versions upload` output (`Worker Version ID: <uuid>`).
pub fn parse_uploaded_version(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let id = line.split("Worker Version ID:").nth(1)?.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
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
        _ => Err(ReleaseError(format!(
            "the current deployment already splits traffic between {} versions; finish or roll back that rollout first",
            versions.len()
        ))),
    }
}

pub struct WranglerTraffic<R: CommandRunner> {
    pub runner: R,
    /// Extra arguments for every command, e.g. `--config path`.
    pub config_args: Vec<String>,
    /// The version tag (the git revision) and deployment message prefix.
    pub tag: String,
}

impl<R: CommandRunner> WranglerTraffic<R> {
    fn run(&mut self, args: &[&str]) -> Result<String, ReleaseError> {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.extend(self.config_args.iter().cloned());
        self.runner.wrangler(&all)
    }
}

impl<R: CommandRunner> Traffic for WranglerTraffic<R> {
    fn prepare(&mut self) -> Result<Versions, ReleaseError> {
        let old = parse_current_version(&self.run(&["deployments", "status", "--json"])?)?;
        let message = format!("release {}", self.tag);
        let tag = self.tag.clone();
        let uploaded = self.run(&["versions", "upload", "--tag", &tag, "--message", &message])?;
        let new = parse_uploaded_version(&uploaded)
            .ok_or_else(|| ReleaseError(format!("no version id in `wrangler versions upload` output:\n{uploaded}")))?;
        Ok(Versions { old, new })
    }

    fn apply(&mut self, versions: &Versions, split: &Split) -> Result<(), ReleaseError> {
        if !split.regions.is_empty() {
            return Err(ReleaseError(
                "region stages need a front Worker that sets the version override by request.cf (docs/releases.md); wrangler alone splits by percentage only".into(),
            ));
        }
        let new_share = split.default_bps.min(FULL_BPS);
        let message = format!("release {}: {}", self.tag, format_percent(new_share));
        let new_spec = format!("{}@{}", versions.new, format_percent(new_share));
        let old_spec = format!("{}@{}", versions.old, format_percent(FULL_BPS - new_share));
        if new_share == FULL_BPS {
            self.run(&["versions", "deploy", &new_spec, "--message", &message, "-y"])?;
        } else {
            self.run(&["versions", "deploy", &new_spec, &old_spec, "--message", &message, "-y"])?;
        }
        Ok(())
    }

    fn rollback(&mut self, versions: &Versions) -> Result<(), ReleaseError> {
        let spec = format!("{}@100%", versions.old);
        let message = format!("rollback of {}", self.tag);
        self.run(&["versions", "deploy", &spec, "--message", &message, "-y"]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_id_is_read_from_upload_output() {
        let output = "Total Upload: 760.00 KiB / gzip: 290.00 KiB\nWorker Startup Time: 12 ms\nUploaded edgestack (3.1 sec)\nWorker Version ID: 5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01\nVersion Preview URL: https://5d3e8a2c-edgestack.example.workers.dev\n";
        assert_eq!(parse_uploaded_version(output).as_deref(), Some("5d3e8a2c-0bd1-4c9a-9d8c-1f5e3a7b9c01"));
        assert_eq!(parse_uploaded_version("nothing here"), None);
    }

    #[test]
    fn current_version_must_be_alone() {
        let single = r#"{"id":"d","versions":[{"version_id":"aaa","percentage":100}]}"#;
        assert_eq!(parse_current_version(single).unwrap(), "aaa");
        let split = r#"{"versions":[{"version_id":"a","percentage":90},{"version_id":"b","percentage":10}]}"#;
        assert!(parse_current_version(split).is_err());
        assert!(parse_current_version("not json").is_err());
    }

    #[test]
    fn stages_become_versions_deploy_commands() {
        let mut traffic =
            WranglerTraffic { runner: DryRunner::default(), config_args: Vec::new(), tag: "abc123".into() };
        let versions = traffic.prepare().unwrap();
        for bps in [100, 1000, 10_000] {
            traffic.apply(&versions, &Split { default_bps: bps, ..Split::default() }).unwrap();
        }
        traffic.rollback(&versions).unwrap();
        let printed = traffic.runner.printed;
        assert_eq!(printed[0], "npx wrangler deployments status --json");
        assert_eq!(printed[1], "npx wrangler versions upload --tag abc123 --message 'release abc123'");
        assert_eq!(
            printed[2],
            format!(
                "npx wrangler versions deploy {DRY_RUN_NEW}@1% {DRY_RUN_OLD}@99% --message 'release abc123: 1%' -y"
            )
        );
        assert_eq!(
            printed[4],
            format!("npx wrangler versions deploy {DRY_RUN_NEW}@100% --message 'release abc123: 100%' -y")
        );
        assert_eq!(
            printed[5],
            format!("npx wrangler versions deploy {DRY_RUN_OLD}@100% --message 'rollback of abc123' -y")
        );
    }

    #[test]
    fn region_stages_are_refused_by_wrangler_alone() {
        let mut traffic = WranglerTraffic { runner: DryRunner::default(), config_args: Vec::new(), tag: "t".into() };
        let versions = Versions { old: "o".into(), new: "n".into() };
        let split = Split { default_bps: 0, regions: [("eu".to_string(), 10_000)].into() };
        assert!(traffic.apply(&versions, &split).is_err());
    }
}
