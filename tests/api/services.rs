//! The services shape's own guarantees (Level 5), whatever `EDGESTACK_SHAPE` says: identities
//! instead of a hop per request, internal routes kept internal, and account deletion that
//! completes across databases after the notes service recovers.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_services_with};

const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";
/// `wrangler dev --test-scheduled`: fires the entry's cron, which the entry relays to accounts.
const CRON: &str = "/cdn-cgi/local/scheduled?cron=*+*+*+*+*";

fn services() -> TestApp {
    spawn_services_with(&[("EDGESTACK_ENV", "development")], |_, config| config)
}

fn timing(response: &crate::helpers::TestResponse, metric: &str) -> Option<String> {
    let header = response.header("server-timing")?;
    header.split(',').map(str::trim).find(|entry| entry.starts_with(&format!("{metric};"))).map(str::to_string)
}

#[test]
fn notes_trust_a_signed_identity_so_most_requests_skip_the_accounts_database() {
    let app = services();
    let (client, _) = app.signed_up_client();
    assert!(client.cookie_named(IDENTITY_COOKIE).is_some(), "sign-up hands out an identity");
    let accounts_before = app.db.stats().unwrap()["pipelines"].as_u64().unwrap();

    let created = client.send("POST", "/api/notes", Some(&json!({"title": "t"})));
    let listed = client.send("GET", "/api/notes", None);

    assert_eq!((created.status, listed.status), (201, 200), "{}", created.text());
    for response in [&created, &listed] {
        assert_eq!(timing(response, "identity").as_deref(), Some("identity;desc=cookie"));
        assert_eq!(response.header("x-edgestack-db-requests"), Some("1"), "the notes database only");
    }
    assert_eq!(app.db.stats().unwrap()["pipelines"].as_u64().unwrap(), accounts_before, "no accounts round trip");

    // Without the identity cookie the entry asks accounts once and hands out a new one.
    let session = client.cookie().unwrap();
    let fresh = app.client();
    fresh.set_cookie(Some(&session));
    let refreshed = fresh.send("GET", "/api/notes", None);
    assert_eq!(refreshed.status, 200);
    assert!(timing(&refreshed, "identity").unwrap().starts_with("identity;desc=refreshed"));
    assert_eq!(refreshed.header("x-edgestack-db-requests"), Some("2"), "accounts (session) + notes");
    assert!(fresh.cookie_named(IDENTITY_COOKIE).is_some());
    assert_eq!(refreshed.json()["notes"].as_array().unwrap().len(), 1);
}

#[test]
fn identities_are_bound_to_their_session_and_cannot_be_planted() {
    let app = services();
    let (alice, _) = app.signed_up_client();
    let (bob, _) = app.signed_up_client();
    let alice_note = alice.create_note("alice's", "private");
    let alice_identity = alice.cookie_named(IDENTITY_COOKIE).unwrap();

    // Bob's session with Alice's identity cookie: the entry sees it is not Bob's and refreshes.
    let planted = app.request(
        "GET",
        &format!("/api/notes/{alice_note}"),
        &[
            ("x-edgestack-client", "1"),
            (
                "cookie",
                &format!("__Host-edgestack_session={}; {IDENTITY_COOKIE}={alice_identity}", bob.cookie().unwrap()),
            ),
        ],
        None,
    );
    assert_eq!(planted.status, 404, "Bob cannot read Alice's note: {}", planted.text());
    // A client cannot hand notes an identity header either: the entry drops it.
    let forged = app.request(
        "GET",
        &format!("/api/notes/{alice_note}"),
        &[("x-edgestack-client", "1"), ("x-edgestack-identity", &alice_identity)],
        None,
    );
    assert_eq!(forged.status, 401);
    // Internal routes are not public: static assets answer them (404, or 405 to a POST).
    for (method, path) in
        [("POST", "/internal/identity"), ("GET", "/internal/health"), ("GET", "/api/../internal/health")]
    {
        let response = app.request(method, path, &[("x-edgestack-client", "1")], None);
        assert!([404, 405].contains(&response.status), "{method} {path}: {}", response.status);
        assert!(!response.text().contains("identity"), "{method} {path}");
    }
}

#[test]
fn health_reports_every_service() {
    let app = services();
    let health = app.get("/api/health").json();
    assert_eq!(health["database"], "configured");
    for service in ["accounts", "notes"] {
        assert_eq!(health["services"][service]["status"], "ok", "{health}");
        assert_eq!(health["services"][service]["database"], "configured", "{health}");
    }
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
