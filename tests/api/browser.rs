//! The browser test (`tests/browser/notes.spec.mjs`, playwright-core driving headless Chromium)
//! against the real stack; screenshots land in `test-artifacts/browser/`.

use std::process::Command;

use local_stack::node::find_node;
use local_stack::workspace_root;

use crate::helpers::spawn_app;

#[test]
fn a_user_publishes_a_note_and_a_signed_out_visitor_reads_it() {
    let app = spawn_app();
    let root = workspace_root();
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `cargo xtask setup` (installs Debian's chromium) or set CHROMIUM_PATH"
    );
    let artifacts = root.join("test-artifacts/browser");
    let output = Command::new(find_node(&root).unwrap())
        .arg(root.join("tests/browser/notes.spec.mjs"))
        .env("BASE_URL", &app.dev.base_url)
        .env("ARTIFACTS_DIR", &artifacts)
        .env("CHROMIUM_PATH", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}\nwrangler:\n{}", app.dev.log_tail());
    assert!(stdout.contains("browser: 1 passed, 0 failed"), "{stdout}");
    assert!(artifacts.join("2-b-public-note.png").is_file(), "screenshots are saved");
}
