//! Contract tests between services (Level 5): each Worker's current build next to the other
//! Workers' previous release (`services/previous-release`, built from git), driven through every
//! internal call — entry → accounts (identity, health), entry → notes (forwarded API, identity
//! header), accounts → notes (deletion outbox). Passing in both directions means a service can
//! be deployed before or after the others.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_services_with};

fn previous_revision() -> String {
    let path = local_stack::workspace_root().join("services/previous-release");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#')).unwrap().to_string()
}

/// The services shape with `worker` running the previous release and the others this build.
fn with_previous(worker: &'static str) -> TestApp {
    // One build for all tests of this process, which run in parallel.
    static PREVIOUS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let previous = PREVIOUS
        .get_or_init(|| local_stack::previous::worker_build(&previous_revision()))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    let current = local_stack::workspace_root().join("build/index.js");
    let (current, previous) =
        (format!("main = \"{}\"", current.display()), format!("main = \"{}\"", previous.display()));
    spawn_services_with(&[("EDGESTACK_ENV", "development")], move |name, config| {
        if name == worker {
            assert!(config.contains(&current), "{name}'s config names the current build");
            config.replace(&current, &previous)
        } else {
            config
        }
    })
}

/// Every internal call, each checked by its visible effect.
fn exercise_every_internal_call(app: &TestApp) {
    let health = app.get("/api/health").json();
    for service in ["accounts", "notes"] {
        assert_eq!(health["services"][service]["database"], "configured", "{health}");
    }
    let (client, email) = app.signed_up_client();
    let note = client.create_note("contract", "kept across versions");
    assert_eq!(client.send("PUT", &format!("/api/notes/{note}/publication"), None).status, 200);

    // A second device with only the session cookie: the entry fetches an identity from accounts.
    let other_device = app.client();
    assert_eq!(other_device.sign_in(&email, PASSWORD).status, 200);
    let fresh = app.client();
    fresh.set_cookie(other_device.cookie().as_deref());
    let listed = fresh.send("GET", "/api/notes", None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["notes"][0]["id"], note.as_str());
    assert_eq!(app.get(&format!("/api/public/notes/{note}")).status, 200);

    let user_id = client.send("GET", "/api/me", None).json()["user"]["id"].as_str().unwrap().to_string();
    let deleted = client.send("DELETE", "/api/me", Some(&json!({"password": PASSWORD})));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")), Vec::<String>::new());
    assert_eq!(app.query_text("SELECT id FROM deletion_outbox"), Vec::<String>::new(), "notes acknowledged");
}

#[test]
fn current_entry_and_accounts_work_with_the_previous_notes_release() {
    exercise_every_internal_call(&with_previous("notes"));
}

#[test]
fn current_entry_and_notes_work_with_the_previous_accounts_release() {
    exercise_every_internal_call(&with_previous("accounts"));
}

#[test]
fn current_services_work_with_the_previous_entry_release() {
    exercise_every_internal_call(&with_previous("entry"));
}
