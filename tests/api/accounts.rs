use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

#[test]
fn sign_up_sets_a_host_only_secure_cookie_and_signs_in() {
    let app = spawn_app();
    let client = app.client();

    let response = client.sign_up("Ada@Example.com", PASSWORD);

    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.json()["user"]["email"], "ada@example.com");
    let cookie = response.header("set-cookie").unwrap();
    for attribute in ["__Host-edgestack_session=", "; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute} missing in {cookie}");
    }
    let token = client.cookie().unwrap();
    assert_eq!(token.len(), 43, "256-bit token, base64url");
    let me = client.send("GET", "/api/me", None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["email"], "ada@example.com");
    assert_eq!(me.header("cache-control"), Some("private, no-store"));
}

#[test]
fn sign_up_validates_input_and_refuses_duplicates() {
    let app = spawn_app();
    let client = app.client();
    for (body, status, code) in [
        (json!({"email": "not-an-email", "password": PASSWORD}), 400, "invalid_email"),
        (json!({"email": "a@example.com", "password": "short"}), 400, "weak_password"),
        (json!({"email": "a@example.com", "password": "x".repeat(129)}), 400, "weak_password"),
        (json!({"email": "a@example.com"}), 400, "invalid_body"),
        (json!({"email": "a@example.com", "password": PASSWORD, "admin": true}), 400, "invalid_body"),
    ] {
        let response = client.send("POST", "/api/accounts", Some(&body));
        assert_eq!((response.status, response.error_code().as_str()), (status, code), "{body}");
    }
    assert_eq!(client.sign_up("dup@example.com", PASSWORD).status, 201);
    let again = app.client().sign_up("DUP@example.com", PASSWORD);
    assert_eq!((again.status, again.error_code().as_str()), (409, "email_taken"));
}

#[test]
fn sign_in_failures_do_not_say_which_field_was_wrong() {
    let app = spawn_app();
    let (_, email) = app.signed_up_client();
    let wrong_password = app.client().sign_in(&email, "wrong password");
    let unknown_email = app.client().sign_in("nobody@example.com", PASSWORD);
    let malformed_email = app.client().sign_in("nobody", PASSWORD);
    for response in [&wrong_password, &unknown_email, &malformed_email] {
        assert_eq!(response.status, 401);
        assert_eq!(response.text(), wrong_password.text());
        assert!(response.header("set-cookie").is_none());
    }
    assert_eq!(wrong_password.error_code(), "invalid_credentials");
}

#[test]
fn every_sign_in_issues_a_new_token_and_ignores_planted_ones() {
    let app = spawn_app();
    let (first, email) = app.signed_up_client();
    let signup_token = first.cookie().unwrap();

    // Session fixation: a token the client made up is never adopted.
    let victim = app.client();
    let planted = "A".repeat(43);
    victim.set_cookie(Some(&planted));
    assert_eq!(victim.send("GET", "/api/me", None).status, 401);
    assert_eq!(victim.sign_in(&email, PASSWORD).status, 200);
    let issued = victim.cookie().unwrap();
    assert_ne!(issued, planted);
    assert_ne!(issued, signup_token);

    // Signing in again from a signed-in client replaces its session.
    assert_eq!(first.sign_in(&email, PASSWORD).status, 200);
    let replacement = first.cookie().unwrap();
    assert_ne!(replacement, signup_token);
    first.set_cookie(Some(&signup_token));
    assert_eq!(first.send("GET", "/api/me", None).status, 401, "the replaced session must be gone");
    first.set_cookie(Some(&replacement));
    assert_eq!(first.send("GET", "/api/me", None).status, 200);
}

#[test]
fn sign_out_revokes_the_session_at_once() {
    let app = spawn_app();
    let (client, _) = app.signed_up_client();
    let token = client.cookie().unwrap();

    let response = client.send("DELETE", "/api/sessions/current", None);

    assert_eq!(response.status, 204);
    assert!(response.header("set-cookie").unwrap().contains("Max-Age=0"));
    client.set_cookie(Some(&token));
    let me = client.send("GET", "/api/me", None);
    assert_eq!((me.status, me.error_code().as_str()), (401, "unauthenticated"));
    assert_eq!(client.send("DELETE", "/api/sessions/current", None).status, 401);
}

#[test]
fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    const IDLE: Duration = Duration::from_secs(3);
    const ABSOLUTE: Duration = Duration::from_secs(8);
    let app = spawn_app_with(&[
        ("EDGESTACK_ENV", "development"),
        ("SESSION_IDLE_SECONDS", "3"),
        ("SESSION_ABSOLUTE_SECONDS", "8"),
    ]);
    let (idle, _) = app.signed_up_client();
    let (active, _) = app.signed_up_client();
    let signed_in_at = Instant::now();

    // Activity (a write) every second keeps `active` alive past the idle limit.
    while signed_in_at.elapsed() < IDLE + Duration::from_secs(1) {
        let note = active.send("POST", "/api/notes", Some(&json!({"title": "tick"})));
        assert_eq!(note.status, 201, "active session at {:?}: {}", signed_in_at.elapsed(), note.text());
        sleep(Duration::from_secs(1));
    }
    assert_eq!(idle.send("GET", "/api/me", None).status, 401, "idle for over 3 s");
    assert_eq!(active.send("GET", "/api/me", None).status, 200);

    // Past the absolute limit even an active session ends.
    while signed_in_at.elapsed() < ABSOLUTE + Duration::from_millis(500) {
        active.send("POST", "/api/notes", Some(&json!({"title": "tick"})));
        sleep(Duration::from_secs(1));
    }
    assert_eq!(active.send("GET", "/api/me", None).status, 401, "older than 8 s");
}

#[test]
fn password_change_ends_every_other_session() {
    let app = spawn_app();
    let (laptop, email) = app.signed_up_client();
    let phone = app.client();
    assert_eq!(phone.sign_in(&email, PASSWORD).status, 200);
    let new_password = "a brand new passphrase";

    let wrong = laptop.send(
        "PUT",
        "/api/me/password",
        Some(&json!({"current_password": "nope nope", "new_password": new_password})),
    );
    assert_eq!((wrong.status, wrong.error_code().as_str()), (401, "invalid_credentials"));
    let weak =
        laptop.send("PUT", "/api/me/password", Some(&json!({"current_password": PASSWORD, "new_password": "short"})));
    assert_eq!(weak.status, 400);

    let changed = laptop.send(
        "PUT",
        "/api/me/password",
        Some(&json!({"current_password": PASSWORD, "new_password": new_password})),
    );

    assert_eq!(changed.status, 204, "{}", changed.text());
    assert_eq!(laptop.send("GET", "/api/me", None).status, 200, "the changer gets a fresh session");
    assert_eq!(phone.send("GET", "/api/me", None).status, 401, "other sessions end");
    assert_eq!(app.client().sign_in(&email, PASSWORD).status, 401);
    assert_eq!(app.client().sign_in(&email, new_password).status, 200);
}

#[test]
fn repeated_sign_ins_are_rate_limited() {
    let app = spawn_app();
    let (_, email) = app.signed_up_client();
    let attacker = app.client();
    let statuses: Vec<u16> = (0..8).map(|_| attacker.sign_in(&email, "guess guess guess").status).collect();
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    let limited = attacker.sign_in(&email, PASSWORD);
    assert_eq!((limited.status, limited.error_code().as_str()), (429, "rate_limited"), "even the right password waits");
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[test]
fn deleting_an_account_needs_its_password_and_removes_its_sessions_and_notes() {
    let app = spawn_app();
    let (client, email) = app.signed_up_client();
    let other_device = app.client();
    assert_eq!(other_device.sign_in(&email, PASSWORD).status, 200);
    let private = client.create_note("private", "mine only");
    let public = client.create_note("public", "for everyone");
    assert_eq!(client.send("PUT", &format!("/api/notes/{public}/publication"), None).status, 200);
    assert_eq!(app.get(&format!("/api/public/notes/{public}")).status, 200);
    let user_id = client.send("GET", "/api/me", None).json()["user"]["id"].as_str().unwrap().to_string();

    let wrong = client.send("DELETE", "/api/me", Some(&json!({"password": "not my password at all"})));
    assert_eq!((wrong.status, wrong.error_code().as_str()), (401, "invalid_credentials"));
    let unconfirmed = client.send("DELETE", "/api/me", None);
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.text());
    let stranger = app.client().send("DELETE", "/api/me", Some(&json!({"password": PASSWORD})));
    assert_eq!(stranger.status, 401);
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")).len(), 2);

    let deleted = client.send("DELETE", "/api/me", Some(&json!({"password": PASSWORD})));

    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.headers_named("set-cookie").iter().any(|c| c.starts_with("__Host-edgestack_session=;")));
    assert_eq!(client.cookie(), None, "the session cookie is cleared");
    assert_eq!(other_device.send("GET", "/api/me", None).status, 401, "every session ends");
    assert_eq!(client.sign_in(&email, PASSWORD).status, 401, "the account is gone");
    assert_eq!(app.query_text(&format!("SELECT id FROM users WHERE id = '{user_id}'")), Vec::<String>::new());
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE owner_id = '{user_id}'")), Vec::<String>::new());
    assert_eq!(app.get(&format!("/api/public/notes/{public}")).status, 404, "the public copy is gone too");
    assert_eq!(other_device.send("GET", &format!("/api/notes/{private}"), None).status, 401);
    assert_eq!(client.sign_up(&email, PASSWORD).status, 201, "the email is free again");
}

#[test]
fn account_deletion_refuses_bad_input_with_json_errors_and_keeps_the_account() {
    let app = spawn_app();
    let (client, email) = app.signed_up_client();
    let note = client.create_note("kept", "through every bad request");
    let cookie = format!("__Host-edgestack_session={}", client.cookie().unwrap());
    let oversized = format!(r#"{{"password": "{}"}}"#, "x".repeat(70 * 1024));
    let cases: [(&str, &[u8], u16); 7] = [
        ("application/json", b"{not json", 400),
        ("application/json", b"null", 400),
        ("application/json", br#"{"password": 12345}"#, 400),
        ("application/json", br#"{"password": "correct horse battery staple", "admin": true}"#, 400),
        ("application/json", br#"{"password": "' OR 1=1 --"}"#, 401),
        ("text/plain", br#"{"password": "correct horse battery staple"}"#, 415),
        ("application/json", oversized.as_bytes(), 413),
    ];
    for (content_type, body, status) in cases {
        let response = app.request(
            "DELETE",
            "/api/me",
            &[("content-type", content_type), ("x-edgestack-client", "1"), ("cookie", &cookie)],
            Some(body),
        );
        assert_eq!(
            response.status,
            status,
            "{content_type} {}: {}",
            String::from_utf8_lossy(&body[..body.len().min(60)]),
            response.text()
        );
        assert!(!response.error_code().is_empty());
    }
    // A garbage identity cookie (or one a client makes up) is never taken for an identity.
    let garbage = format!("{cookie}; __Host-edgestack_identity=eyJ2IjoxfQ.AAAA");
    let listed = app.request("GET", "/api/notes", &[("x-edgestack-client", "1"), ("cookie", &garbage)], None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["notes"][0]["id"], note.as_str());

    assert_eq!(client.send("GET", "/api/me", None).status, 200, "the account is still there");
    assert_eq!(app.query_text(&format!("SELECT id FROM notes WHERE id = '{note}'")), vec![note.clone()]);
    assert_eq!(app.client().sign_in(&email, PASSWORD).status, 200);
}
