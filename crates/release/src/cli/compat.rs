//! `release compat --previous REV`: the previous release's API tests against the new schema.
//!
//! Blue (the previous release) keeps running on the database green migrates, so the previous
//! release's own tests must still pass once the current migrations are applied. The previous
//! tree is exported with `git archive` (read-only, no worktree), its `migrations/` replaced by
//! the current ones, then it is built and its `tests/api` run as they are — its test harness
//! applies `migrations/` to a fresh devdb, which is now the new schema. Cost is bounded by one
//! build of the previous tree in its own cached target folder (`target/compat/target-<rev>`:
//! a tree's tools find their workspace by the path compiled into them, so trees never share one).

use std::path::{Path, PathBuf};

use super::rollout::ReleaseError;

#[derive(clap::Args)]
pub struct CompatArgs {
    /// The previous release (a git revision).
    #[arg(long, value_name = "REV")]
    previous: String,
    /// Another migrations folder than `migrations/`, to rehearse a migration before adding it.
    #[arg(long, value_name = "DIR")]
    migrations: Option<PathBuf>,
    /// Print the steps instead of running them.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: CompatArgs) -> Result<u8, ReleaseError> {
    let CompatArgs { previous, migrations, dry_run } = args;
    if previous.is_empty() || !previous.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./~^".contains(&b)) {
        return Err(ReleaseError(format!("`{previous}` is not a git revision")));
    }
    let root = local_stack::workspace_root();
    let compat = root.join("target/compat");
    let tree = compat.join(previous.replace(['/', '~', '^'], "_"));
    let target_dir = compat.join(format!("target-{}", previous.replace(['/', '~', '^'], "_")));
    let migrations = migrations.unwrap_or_else(|| root.join("migrations"));
    let steps = plan(&root, &migrations, &tree, &target_dir, &previous);
    for step in &steps {
        println!("{}", step.describe());
        if !dry_run {
            step.run()?;
        }
    }
    if !dry_run {
        eprintln!("release: the tests of {previous} pass against the current migrations");
    }
    Ok(0)
}

enum Step {
    Clean(PathBuf),
    Export { root: PathBuf, revision: String, into: PathBuf },
    ReplaceMigrations { from: PathBuf, into: PathBuf },
    Link { target: PathBuf, link: PathBuf },
    Cargo { dir: PathBuf, target_dir: PathBuf, args: Vec<&'static str> },
}

fn plan(root: &Path, migrations: &Path, tree: &Path, target_dir: &Path, revision: &str) -> Vec<Step> {
    vec![
        Step::Clean(tree.to_path_buf()),
        Step::Export { root: root.to_path_buf(), revision: revision.to_string(), into: tree.to_path_buf() },
        Step::ReplaceMigrations { from: migrations.to_path_buf(), into: tree.join("migrations") },
        // npm packages are not in git; the current ones serve the previous tree when its lock
        // file is the same (otherwise its xtask runs `npm ci` in its own folder).
        Step::Link { target: root.join("node_modules"), link: tree.join("node_modules") },
        Step::Cargo { dir: tree.to_path_buf(), target_dir: target_dir.to_path_buf(), args: vec!["xtask", "build"] },
        Step::Cargo {
            dir: tree.to_path_buf(),
            target_dir: target_dir.to_path_buf(),
            args: vec!["test", "--locked", "--package", "edgestack", "--test", "api"],
        },
    ]
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Self::Clean(dir) => format!("rm -rf {}", dir.display()),
            Self::Export { root, revision, into } => {
                format!("mkdir -p {1} && git -C {0} archive {revision} | tar -x -C {1}", root.display(), into.display())
            }
            Self::ReplaceMigrations { from, into } => {
                format!("rm -rf {1} && cp -r {0} {1}", from.display(), into.display())
            }
            Self::Link { target, link } => format!(
                "cmp -s {0}/../package-lock.json {1}/../package-lock.json && ln -s {0} {1}",
                target.display(),
                link.display()
            ),
            Self::Cargo { dir, target_dir, args } => {
                format!("(cd {} && CARGO_TARGET_DIR={} cargo {})", dir.display(), target_dir.display(), args.join(" "))
            }
        }
    }

    fn run(&self) -> Result<(), ReleaseError> {
        let io = |what: &str, e: std::io::Error| ReleaseError(format!("{what}: {e}"));
        match self {
            Self::Clean(dir) => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
                }
                Ok(())
            }
            Self::Export { root, revision, into } => {
                local_stack::previous::export(root, revision, into).map_err(ReleaseError)
            }
            Self::ReplaceMigrations { from, into } => {
                if into.exists() {
                    std::fs::remove_dir_all(into).map_err(|e| io("migrations", e))?;
                }
                std::fs::create_dir_all(into).map_err(|e| io("migrations", e))?;
                copy_tree(from, into).map_err(|e| io("migrations", e))
            }
            Self::Link { target, link } => match (target.parent(), link.parent()) {
                (Some(root), Some(tree)) => local_stack::previous::link_node_modules(root, tree).map_err(ReleaseError),
                _ => Ok(()),
            },
            Self::Cargo { dir, target_dir, args } => {
                // In a process group that ends with this command, without the outer cargo's
                // per-crate variables.
                let mut cargo = local_stack::cargo::command();
                cargo.current_dir(dir).args(args).env("CARGO_TARGET_DIR", target_dir);
                local_stack::process::run(&mut cargo).map_err(|e| ReleaseError(format!("in {}: {e}", dir.display())))
            }
        }
    }
}

/// `from`'s files and folders (the services' `migrations/accounts`, `migrations/notes`) into `into`.
fn copy_tree(from: &Path, into: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(into)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let Some(name) = path.file_name() else { continue };
        if path.is_dir() {
            copy_tree(&path, &into.join(name))?;
        } else {
            std::fs::copy(&path, into.join(name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_exports_swaps_migrations_builds_and_tests() {
        let steps = plan(
            Path::new("/repo"),
            Path::new("/repo/migrations"),
            Path::new("/repo/target/compat/abc"),
            Path::new("/repo/target/compat/target"),
            "abc",
        );
        let described: Vec<String> = steps.iter().map(Step::describe).collect();
        assert_eq!(
            described[1],
            "mkdir -p /repo/target/compat/abc && git -C /repo archive abc | tar -x -C /repo/target/compat/abc"
        );
        assert_eq!(
            described[2],
            "rm -rf /repo/target/compat/abc/migrations && cp -r /repo/migrations /repo/target/compat/abc/migrations"
        );
        assert!(described[5].ends_with("cargo test --locked --package edgestack --test api)"), "{}", described[5]);
    }
}
