//! The services shape over `wrangler dev` (Level 5), whatever `EDGESTACK_SHAPE` says: what needs
//! real Workers, service bindings and wrangler's cron — account deletion that completes across
//! databases after the notes service recovers, and internal paths that never reach a Worker from
//! the public entry. Forwarding, identities, internal routes and the outbox's every branch are
//! tested in-process: `crates/edgestack-core/tests/app/{entry,internal_routes,outbox}.rs`; every
//! internal call over real bindings, against the previous release, in `contract.rs`.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_services_with};

const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";
/// `wrangler dev --test-scheduled`: fires the entry's cron, which the entry relays to accounts.
const CRON: &str = "/cdn-cgi/local/scheduled?cron=*+*+*+*+*";

fn services() -> TestApp {
    spawn_services_with(&[("EDGESTACK_ENV", "development")], |_, config| config)
}

fn pipelines(app: &TestApp) -> Vec<u64> {
    app.databases().iter().map(|db| db.stats().unwrap()["pipelines"].as_u64().unwrap()).collect()
}

/// Internal routes are for service bindings only. On the public entry `/internal/*` is not a
/// Worker-first path (`run_worker_first = ["/api", "/api/*"]`), so Static Assets answers it with the
/// site's 404 page (and other methods with its own 405) and no Worker code runs — deliberately: the entry would refuse these routes
/// with the API's JSON 404 (proved in-process, `tests/app/internal_routes.rs`), but a path that
/// never reaches a Worker cannot be opened by a routing bug either. Every Worker response
/// carries `x-edgestack-version-id` and `Server-Timing`; the assets' 404 page carries neither.
#[test]
fn internal_paths_on_the_entry_are_answered_by_static_assets_and_never_reach_a_worker() {
    let app = services();
    let (client, _) = app.signed_up_client();
    let user_id = client.send("GET", "/api/me", None).json()["user"]["id"].as_str().unwrap().to_string();
    let note = client.create_note("kept", "by every refused internal call");
    let cookie = format!("__Host-edgestack_session={}", client.cookie().unwrap());
    let headers = [("x-edgestack-client", "1"), ("x-edgestack-internal-api", "1"), ("cookie", cookie.as_str())];
    let before = pipelines(&app);

    for (method, path, status) in [
        ("GET", "/internal/health".to_string(), 404),
        ("GET", "/api/../internal/health".to_string(), 404),
        // Static Assets serves only GET and HEAD; it refuses other methods itself.
        ("POST", "/internal/identity".to_string(), 405),
        ("DELETE", format!("/internal/users/{user_id}/notes"), 405),
    ] {
        let response = app.request(method, &path, &headers, None);
        assert_eq!(response.status, status, "{method} {path}: {}", response.text());
        assert!(response.header("x-edgestack-version-id").is_none(), "{method} {path}: a Worker answered");
        assert!(response.header("server-timing").is_none(), "{method} {path}: a Worker answered");
        assert!(response.header("set-cookie").is_none(), "{method} {path}");
        if status == 404 {
            assert!(response.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{method} {path}");
            assert!(response.text().contains("Not found"), "{method} {path}: {}", response.text());
        } else {
            assert!(response.body.is_empty(), "{method} {path}: {}", response.text());
        }
    }

    assert_eq!(pipelines(&app), before, "no service and no database was reached");
    let listed = client.send("GET", "/api/notes", None);
    assert_eq!(listed.json()["notes"][0]["id"], note.as_str(), "the user's notes are untouched");
    // The same names under /api reach the entry, which answers the API's JSON 404.
    let under_api = app.request("GET", "/api/internal/health", &headers, None);
    assert_eq!((under_api.status, under_api.error_code().as_str()), (404, "not_found"));
    assert!(under_api.header("x-edgestack-version-id").is_some(), "this one did reach the entry Worker");
}

#[test]
fn account_deletion_reaches_the_notes_service_after_it_recovers() {
    let app = services();
    let notes_db = app.notes_db.as_ref().unwrap();
    let (client, email) = app.signed_up_client();
    let note = client.create_note("soon orphaned", "unless the outbox works");
    assert_eq!(client.send("PUT", &format!("/api/notes/{note}/publication"), None).status, 200);
    let user_id = client.send("GET", "/api/me", None).json()["user"]["id"].as_str().unwrap().to_string();
    let stale_identity = client.cookie_named(IDENTITY_COOKIE).unwrap();
    let stale_session = client.cookie().unwrap();

    notes_db.kill();
    let deleted = client.send("DELETE", "/api/me", Some(&json!({"password": PASSWORD})));

    assert_eq!(deleted.status, 204, "the account is deleted even while notes is down: {}", deleted.text());
    assert_eq!(client.sign_in(&email, PASSWORD).status, 401);
    let attempts_sql = format!("SELECT CAST(attempts AS TEXT) FROM deletion_outbox WHERE user_id = '{user_id}'");
    assert_eq!(app.query_text_in(&app.db, &attempts_sql), vec!["1".to_string()], "one outbox row waits, tried once");

    // A cron run while notes is still down keeps the row and counts the attempt.
    assert_eq!(app.get(CRON).status, 200);
    assert_eq!(app.query_text_in(&app.db, &attempts_sql), vec!["2".to_string()]);

    notes_db.restart().unwrap();
    assert_eq!(
        app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")),
        vec![note.clone()],
        "the notes outlived the account until delivery"
    );
    assert_eq!(app.get(CRON).status, 200);

    let mut outbox = app.query_text("SELECT id FROM deletion_outbox");
    for _ in 0..50 {
        if outbox.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        outbox = app.query_text("SELECT id FROM deletion_outbox");
    }
    assert_eq!(outbox, Vec::<String>::new(), "delivered and acknowledged");
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")), Vec::<String>::new());
    assert_eq!(app.get(&format!("/api/public/notes/{note}")).status, 404);
    // The deleted user's identity is still within its lifetime, but notes refuses it now.
    let replay = app.request(
        "POST",
        "/api/notes",
        &[
            ("x-edgestack-client", "1"),
            ("content-type", "application/json"),
            ("cookie", &format!("__Host-edgestack_session={stale_session}; {IDENTITY_COOKIE}={stale_identity}")),
        ],
        Some(br#"{"title": "from beyond"}"#),
    );
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")), Vec::<String>::new());
}

/// A service that hangs is given up at `SERVICE_DEADLINE_MS`: over a real service binding the
/// runtime's `AbortSignal.timeout` cancels the call (`src/edge.js` `callService`). Every call
/// site, the default and the nested deadline are tested in-process (`tests/app/entry.rs`,
/// `tests/app/outbox.rs`).
#[test]
fn a_service_that_does_not_answer_is_given_up_at_the_service_deadline() {
    let app =
        spawn_services_with(&[("EDGESTACK_ENV", "development"), ("SERVICE_DEADLINE_MS", "1000")], |name, config| {
            if name == "notes" {
                let service = "EDGESTACK_SERVICE = \"notes\"";
                assert!(config.contains(service), "{config}");
                config.replace(service, &format!("{service}\nEDGESTACK_INJECT_FAULT = \"slow:8000\""))
            } else {
                config
            }
        });

    let started = std::time::Instant::now();
    let feed = app.get("/api/public/notes");
    let waited = started.elapsed();
    let health = app.get("/api/health");

    assert_eq!((feed.status, feed.error_code().as_str()), (503, "service_unavailable"), "{}", feed.text());
    assert_eq!(feed.header("retry-after"), Some("5"));
    assert!(waited < std::time::Duration::from_secs(5), "answered after {waited:?}, not when notes would (8 s)");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["services"]["notes"]["status"], "unreachable", "{}", health.text());
    assert_eq!(health.json()["services"]["accounts"]["status"], "ok", "{}", health.text());
}
