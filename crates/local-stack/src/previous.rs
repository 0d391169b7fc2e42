//! A previous release's worker build, for contract tests: the revision is exported with
//! `git archive` (read-only, no worktree) into `target/previous-release/<revision>` and built
//! there with its own `cargo xtask build` and its own target folder: a tree's tools find their
//! workspace by the path compiled into them, so two trees must never share a target folder.
//! A build that exists already is reused: a revision never changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace_root;

/// `build/index.js` of `revision`'s worker, built if needed.
pub fn worker_build(revision: &str) -> Result<PathBuf, String> {
    if revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{revision}` is not a commit hash"));
    }
    let root = workspace_root();
    let tree = root.join("target/previous-release").join(revision);
    let main = tree.join("build/index.js");
    if main.is_file() && tree.join(".built").is_file() {
        return Ok(main);
    }
    have_commit(&root, revision)?;
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    }
    export(&root, revision, &tree)?;
    link_node_modules(&root, &tree)?;
    let mut build = crate::cargo::command();
    build.current_dir(&tree).args(["xtask", "build"]).env("CARGO_TARGET_DIR", tree.join("target"));
    crate::process::run(&mut build).map_err(|e| format!("building {revision}: {e}"))?;
    std::fs::write(tree.join(".built"), revision).map_err(|e| e.to_string())?;
    Ok(main)
}

/// npm packages are not in git: `root`'s serve `tree` when both have the same lock file
/// (otherwise the tree's own xtask runs `npm ci` in its folder).
pub fn link_node_modules(root: &Path, tree: &Path) -> Result<(), String> {
    let lock = |folder: &Path| std::fs::read(folder.join("package-lock.json")).ok();
    if lock(root).is_some() && lock(root) == lock(tree) {
        std::os::unix::fs::symlink(root.join("node_modules"), tree.join("node_modules"))
            .map_err(|e| format!("ln -s node_modules: {e}"))?;
    }
    Ok(())
}

/// Whether the repository at `root` holds commit `revision` (a revision git resolves to one).
pub fn has_commit(root: &Path, revision: &str) -> bool {
    Command::new("git")
        .current_dir(root)
        .args(["cat-file", "-e", &format!("{revision}^{{commit}}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A shallow clone may lack the revision; fetching it is the one way to get it back.
fn have_commit(root: &Path, revision: &str) -> Result<(), String> {
    if has_commit(root, revision) {
        return Ok(());
    }
    let _ = Command::new("git").current_dir(root).args(["fetch", "--quiet", "origin", revision]).status();
    if has_commit(root, revision) {
        Ok(())
    } else {
        Err(format!("commit {revision} is not in this clone and could not be fetched; clone with history"))
    }
}

/// `git archive revision | tar -x -C into`: the tree at `revision`, without touching the checkout.
pub fn export(root: &Path, revision: &str, into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    let mut archive = Command::new("git")
        .current_dir(root)
        .args(["archive", revision])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git archive: {e}"))?;
    let stdout = archive.stdout.take().ok_or("git archive: no output")?;
    let untarred = Command::new("tar").arg("-x").arg("-C").arg(into).stdin(stdout).status();
    let archived = archive.wait().map_err(|e| format!("git archive: {e}"))?;
    match untarred {
        Ok(untarred) if untarred.success() && archived.success() => Ok(()),
        other => Err(format!("exporting {revision} failed (git: {archived}, tar: {other:?})")),
    }
}
