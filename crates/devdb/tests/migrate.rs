//! `devdb migrate`: applies migrations once each through the libSQL client, refuses edits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Server, TOKEN, dump, must, wait_index};

fn migrate(url: &str, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_devdb"))
        .args(["migrate", "--url", url, "--token", TOKEN, "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_once_in_order_and_reach_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("p.db"));
    let replica = Server::replica(&dir.path().join("r.db"), &primary.url);
    let mdir = dir.path().join("migrations");
    std::fs::create_dir(&mdir).unwrap();
    std::fs::write(
        mdir.join("0001_users.sql"),
        "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE);\n\
         -- seed\nINSERT INTO users(email) VALUES ('a@example.com');\n",
    )
    .unwrap();
    std::fs::write(
        mdir.join("0002_notes.sql"),
        "CREATE TABLE notes(user_id INTEGER REFERENCES users(id), body TEXT, at TEXT DEFAULT (datetime('now')));\n\
         CREATE INDEX notes_user ON notes(user_id);\nINSERT INTO notes(user_id, body) VALUES (1, 'hi');",
    )
    .unwrap();
    std::fs::write(mdir.join("README.md"), "not a migration").unwrap();

    let out = migrate(&primary.url, &mdir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("applied 0001_users.sql") && stdout.contains("applied 0002_notes.sql"), "{stdout}");
    let rows = must(&primary.url, "SELECT name FROM _migrations ORDER BY name").await;
    assert_eq!(rows["rows"].as_array().unwrap().len(), 2);

    // Idempotent.
    let out = migrate(&primary.url, &mdir);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 migration(s) applied, 2 already present"));
    let n = must(&primary.url, "SELECT count(*) FROM users").await;
    assert_eq!(n["rows"][0][0]["value"], "1");

    // A new file is applied; a failing one leaves nothing behind.
    std::fs::write(mdir.join("0003_bad.sql"), "CREATE TABLE half(x);\nINSERT INTO nope VALUES (1);").unwrap();
    let out = migrate(&primary.url, &mdir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0003_bad.sql"));
    let half = must(&primary.url, "SELECT count(*) FROM sqlite_master WHERE name = 'half'").await;
    assert_eq!(half["rows"][0][0]["value"], "0");
    std::fs::remove_file(mdir.join("0003_bad.sql")).unwrap();

    // Editing an applied file is refused, with a clear message and no change.
    std::fs::write(mdir.join("0001_users.sql"), "CREATE TABLE users(id INTEGER PRIMARY KEY);").unwrap();
    let out = migrate(&primary.url, &mdir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("0001_users.sql") && stderr.contains("changed"), "{stderr}");

    // Schema and data reached the replica.
    let last = common::index(&primary.url).await;
    wait_index(&replica.url, last, Duration::from_secs(10)).await;
    common::assert_same(&dump(&primary.url).await, &dump(&replica.url).await);
}
