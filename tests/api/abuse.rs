//! Abuse of working features over the real worker (issue #17), in the shape `EDGESTACK_SHAPE`
//! names: guessing from many addresses that must not lock the owner out (ASVS 5.0 6.1.1/6.3.1),
//! common passwords (6.2.4), the sign-up limit and note quotas through real bindings and
//! databases (2.4.1), control characters in titles, a body that never arrives, a missing limiter
//! binding (fail closed), and — services shape whatever the variable says — a copied session
//! that must stop writing at sign-out (7.4.1). Every branch is also tested in-process:
//! `crates/edgestack-core/tests/app/abuse.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use edgestack_core::json_body::MAX_BODY_BYTES;
use serde_json::json;

use crate::helpers::{
    PASSWORD, TestApp, TestClient, TestResponse, edited_config, random_hex, spawn_app, spawn_app_from_config,
    spawn_services_with,
};

const DEVICE_COOKIE: &str = "__Host-edgestack_device";
const SESSION_COOKIE: &str = "__Host-edgestack_session";
const IDENTITY_COOKIE: &str = "__Host-edgestack_identity";

/// A JSON request from `client`'s cookie jar, sent from the address `ip` (`cf-connecting-ip`,
/// which `wrangler dev` passes on as the edge would set it).
fn from_address(
    client: &mut TestClient<'_>,
    ip: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> TestResponse {
    client.extra_headers = vec![("cf-connecting-ip".to_string(), ip.to_string())];
    client.send(method, path, Some(&body))
}

fn sign_in_from(client: &mut TestClient<'_>, ip: &str, email: &str, password: &str) -> TestResponse {
    from_address(client, ip, "POST", "/api/sessions", json!({"email": email, "password": password}))
}

fn status_and_code(response: &TestResponse) -> (u16, String) {
    let code = if response.status >= 400 { response.error_code() } else { String::new() };
    (response.status, code)
}

#[test]
fn an_attacker_guessing_from_many_addresses_cannot_lock_the_owner_out() {
    let app = spawn_app();
    let (mut laptop, email) = app.signed_up_client();
    assert!(laptop.cookie_named(DEVICE_COOKIE).is_some(), "sign-up makes the browser a known device");
    assert_eq!(laptop.send("DELETE", "/api/sessions/current", None).status, 204);

    // Twelve wrong guesses, each from another address and another browser. The first five are
    // checked; then the pause is made two minutes long (in-process tests walk the doubling from
    // one second), so the rest of the test does not race a one-second pause on a busy machine.
    let mut guess =
        |n: usize| status_and_code(&sign_in_from(&mut app.client(), &format!("203.0.113.{n}"), &email, "guess guess"));
    let checked: Vec<(u16, String)> = (1..=5).map(&mut guess).collect();
    assert!(checked.iter().all(|(status, _)| *status == 401), "{checked:?}");
    app.query_text("UPDATE sign_in_throttle SET next_allowed_at = next_allowed_at + 120000");
    let paused: Vec<(u16, String)> = (6..=12).map(&mut guess).collect();
    assert!(paused.iter().all(|answer| *answer == (429, "rate_limited".to_string())), "{paused:?}");
    let own = sign_in_from(&mut laptop, "192.0.2.10", &email, PASSWORD);
    assert_eq!(own.status, 200, "the owner's known device is not held up: {}", own.text());
    let change = json!({"current_password": PASSWORD, "new_password": "another long passphrase"});
    assert_eq!(laptop.send("PUT", "/api/me/password", Some(&change)).status, 204, "nor is a password change");
    // A browser the owner never signed in on waits with the strangers, for the time it is told.
    let paused = sign_in_from(&mut app.client(), "192.0.2.11", &email, "another long passphrase");
    assert_eq!(status_and_code(&paused), (429, "rate_limited".to_string()));
    let seconds: u64 = paused.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=121).contains(&seconds), "{seconds}");
}

/// The per-address limit through the real binding (`SIGNIN_PER_CLIENT`, 30 a minute), robust to
/// its window rolling over mid-test: wherever the window starts, 61 attempts within a minute put
/// more than 30 in one window. Each attempt names another email, so the per-account throttle
/// (a database row, not a window) never answers first.
#[test]
fn one_address_guessing_across_accounts_is_limited_by_the_binding() {
    let app = spawn_app();
    let (mut laptop, email) = app.signed_up_client();
    let mut stuffer = app.client();
    let started = Instant::now();

    let limited = (0..61)
        .map(|n| sign_in_from(&mut stuffer, "198.18.0.1", &format!("stuffed-{n}@example.com"), "guess guess"))
        .find(|response| response.status != 401)
        .expect("no 429 within 61 attempts from one address");

    assert!(started.elapsed() < Duration::from_secs(60), "the attempts spanned more than two windows");
    assert_eq!(status_and_code(&limited), (429, "rate_limited".to_string()));
    assert_eq!(limited.header("retry-after"), Some("60"));
    // A known device behind the same address (a shared NAT) is not held up.
    assert_eq!(sign_in_from(&mut laptop, "198.18.0.1", &email, PASSWORD).status, 200);
}

#[test]
fn common_passwords_are_refused() {
    let app = spawn_app();
    for common in ["password", "12345678", "qwertyui", "11111111", "iloveyou"] {
        let email = format!("common-{}@example.com", random_hex(4));
        let refused = app.client().sign_up(&email, common);
        assert_eq!(status_and_code(&refused), (400, "weak_password".to_string()), "{common}");
    }
    let (owner, _) = app.signed_up_client();
    let change = json!({"current_password": PASSWORD, "new_password": "baseball"});
    assert_eq!(status_and_code(&owner.send("PUT", "/api/me/password", Some(&change))), (400, "weak_password".into()));
}

/// `SIGNUP_PER_CLIENT` (5 a minute) through the real binding; robust to the window rolling
/// over as above: 11 sign-ups within a minute put more than 5 in one window.
#[test]
fn sign_ups_from_one_address_are_limited_by_the_binding() {
    let app = spawn_app();
    let mut bot = app.client();
    let limited = (0..11)
        .map(|_| {
            let body = json!({"email": format!("bot-{}@example.com", random_hex(4)), "password": PASSWORD});
            from_address(&mut bot, "198.18.1.1", "POST", "/api/accounts", body)
        })
        .find(|response| response.status != 201)
        .expect("no 429 within 11 sign-ups from one address");

    assert_eq!(status_and_code(&limited), (429, "rate_limited".to_string()));
    assert_eq!(limited.header("retry-after"), Some("60"));
    let elsewhere = json!({"email": format!("human-{}@example.com", random_hex(4)), "password": PASSWORD});
    assert_eq!(from_address(&mut app.client(), "198.18.1.2", "POST", "/api/accounts", elsewhere).status, 201);
}

#[test]
fn notes_are_limited_per_account_and_titles_refuse_control_characters() {
    let app = spawn_app();
    let (owner, _) = app.signed_up_client();
    let user_id = owner.send("GET", "/api/me", None).json()["user"]["id"].as_str().unwrap().to_string();
    // 999 notes straight into the database (the quota's triggers count them as any insert).
    app.query_text(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
         INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) \
         SELECT 'seed' || i, '{user_id}', 't', 'b', NULL, i, i FROM n"
    ));

    owner.create_note("the thousandth", "");
    let refused = owner.send("POST", "/api/notes", Some(&json!({"title": "one too many"})));
    let control = owner.send("POST", "/api/notes", Some(&json!({"title": "nul\u{0}byte"})));

    assert_eq!(status_and_code(&refused), (403, "quota_exceeded".to_string()), "{}", refused.text());
    assert_eq!(status_and_code(&control), (400, "invalid_title".to_string()));
    let count = app.query_text(&format!("SELECT CAST(count(*) AS TEXT) FROM notes WHERE owner_id = '{user_id}'"));
    assert_eq!(count, ["1000"]);
}

/// `POST path` over a raw socket declaring `declared` body bytes and sending only `sent`; the
/// whole answer (read up to `patience`) and how long it took from the last byte sent.
fn post_short_body(app: &TestApp, path: &str, declared: usize, sent: &str, patience: Duration) -> (String, Duration) {
    short_body(app, "POST", path, "X-Edgestack-Client: 1\r\n", declared, sent, patience)
}

/// As [`post_short_body`], with any method and `extra` header lines (each ending in CRLF).
fn short_body(
    app: &TestApp,
    method: &str,
    path: &str,
    extra: &str,
    declared: usize,
    sent: &str,
    patience: Duration,
) -> (String, Duration) {
    let address = app.dev.base_url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {declared}\r\nConnection: close\r\n\r\n{sent}"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// A client that declares a body and never sends it gets 408 once the worker's body deadline
/// (10 s) passes, not whenever the runtime gives up.
#[test]
fn a_body_promised_and_never_sent_is_refused_at_its_deadline() {
    let app = spawn_app();
    let (answer, waited) = post_short_body(&app, "/api/sessions", 100, "{\"email\":", Duration::from_secs(30));
    assert!(answer.starts_with("HTTP/1.1 408"), "after {waited:?}: {answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(20), "{waited:?}");
}

/// A request refused from its head, or to a route that takes no body, is answered at once even
/// when the body it declares never arrives (a review found `POST /api/nope` waiting for the body
/// deadline, 10 s, to answer 408).
#[test]
fn a_request_that_needs_no_body_is_answered_without_waiting_for_one() {
    let app = spawn_app();
    let proof = "X-Edgestack-Client: 1\r\n";
    for (method, path, extra, status) in [
        ("POST", "/api/nope", proof, "404"),
        ("PUT", "/api/health", proof, "405"),
        ("POST", "/api/notes", "", "403"),
        ("DELETE", "/api/sessions/current", proof, "401"),
    ] {
        let (answer, waited) = short_body(&app, method, path, extra, 100, "{\"title\":", Duration::from_secs(15));
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{method} {path} after {waited:?}: {answer}");
        assert!(waited < Duration::from_secs(5), "{method} {path}: {waited:?}");
    }
}

/// A report: a body declared over the limit of which only a few bytes arrive got no answer at all
/// under `wrangler dev` — the worker refused it from the header without reading, and wrangler
/// waited to drain the rest. The refusal discards the body, so it is answered at once.
#[test]
fn a_body_declared_too_large_is_refused_at_once_even_if_never_sent() {
    let app = spawn_app();
    let (answer, waited) =
        post_short_body(&app, "/api/notes", MAX_BODY_BYTES + 1, "{\"title\":\"x\"}", Duration::from_secs(15));
    assert!(answer.starts_with("HTTP/1.1 413"), "after {waited:?}: {answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// Without its binding, the per-client limiter cannot answer: sign-in is refused (503), never
/// let through unlimited.
#[test]
fn a_missing_rate_limit_binding_refuses_sign_in_rather_than_letting_it_through() {
    let config =
        edited_config(|text| text.replace("name = \"SIGNIN_PER_CLIENT\"", "name = \"SIGNIN_PER_CLIENT_GONE\""));
    let app = spawn_app_from_config(config, &[], &[("EDGESTACK_ENV", "development")]);
    let (_, email) = app.signed_up_client();
    let stranger = app.client();

    let refused = stranger.sign_in(&email, PASSWORD);

    assert_eq!(status_and_code(&refused), (503, "rate_limiter_unavailable".to_string()), "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(stranger.cookie().is_none(), "no session");
}

fn services() -> TestApp {
    spawn_services_with(&[("EDGESTACK_ENV", "development")], |_, config| config)
}

/// Services shape, whatever `EDGESTACK_SHAPE` says: the identity `notes` trusts lives a minute,
/// but a write has its session checked by `accounts` first.
#[test]
fn services_a_copied_session_cannot_write_after_sign_out() {
    let app = services();
    let (owner, _) = app.signed_up_client();
    let note = owner.create_note("mine", "");
    let copied = format!(
        "{SESSION_COOKIE}={}; {IDENTITY_COOKIE}={}",
        owner.cookie().unwrap(),
        owner.cookie_named(IDENTITY_COOKIE).unwrap()
    );
    let replay = |method: &str, path: &str, body: Option<&[u8]>| {
        let headers = [("x-edgestack-client", "1"), ("content-type", "application/json"), ("cookie", copied.as_str())];
        app.request(method, path, &headers, body)
    };

    assert_eq!(owner.send("DELETE", "/api/sessions/current", None).status, 204);
    let write = replay("POST", "/api/notes", Some(br#"{"title": "one second after sign-out"}"#));
    let change = replay("PATCH", &format!("/api/notes/{note}"), Some(br#"{"title": "defaced"}"#));
    let read = replay("GET", "/api/notes", None);

    assert_eq!(status_and_code(&write), (401, "unauthenticated".to_string()), "{}", write.text());
    assert_eq!(status_and_code(&change), (401, "unauthenticated".to_string()), "{}", change.text());
    assert_eq!(app.query_text("SELECT title FROM notes"), ["mine"]);
    // Reads stay within the documented bound: the copied identity, for the rest of its minute.
    assert_eq!(read.status, 200, "{}", read.text());
}
