//! The migration check as CI runs it: `release migrations check --dir …` over fixture folders
//! and over the project's own `migrations/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Exit code and stderr of `release migrations check` with `args`.
fn check(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_release")).args(["migrations", "check"]).args(args).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn check_dir(name: &str) -> (Option<i32>, String) {
    check(&["--dir", fixtures(name).to_str().unwrap()])
}

#[test]
fn additive_migration_is_accepted() {
    let (code, stderr) = check_dir("accepted");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn drop_column_outside_a_contract_step_is_rejected() {
    let (code, stderr) = check_dir("rejected");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("0002_drop_legacy.sql") && stderr.contains("DROP COLUMN legacy_flag"), "{stderr}");
    assert!(stderr.contains("contract step"), "{stderr}");
}

#[test]
fn drop_column_in_a_contract_step_is_accepted() {
    let (code, stderr) = check_dir("contract");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn rename_and_not_null_without_default_are_rejected() {
    let (code, stderr) = check_dir("together");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("RENAME COLUMN title TO heading"), "{stderr}");
    assert!(stderr.contains("owner_id TEXT NOT NULL") && stderr.contains("DEFAULT"), "{stderr}");
}

#[test]
fn project_migrations_keep_the_previous_release_working() {
    let (code, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A trigger whose body has the word `begin` in a string once kept the splitter "inside the
/// trigger" past its `END;`, so the DROP after it (which SQLite runs as its own statement) was
/// classified with the CREATE as Expand, and CI passed a migration that drops a column the
/// previous release reads.
#[test]
fn a_drop_after_a_trigger_with_begin_in_a_string_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0004_audit.sql"),
        "CREATE TRIGGER notes_audit AFTER UPDATE ON notes BEGIN\n  INSERT INTO audit (event) VALUES ('begin edit');\nEND;\nALTER TABLE notes DROP COLUMN published_at;\n",
    )
    .unwrap();
    let (code, stderr) = check(&["--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("DROP COLUMN published_at"), "{stderr}");
}
